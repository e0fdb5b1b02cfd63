//! Progress of long copies on standard error: a bar redrawn in place on a terminal (bytes, blobs,
//! rate, ETA), or a plain line every few seconds when standard error is a file or a pipe.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wharf_backup::Progress;

/// How often a terminal bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(200);
/// How often a plain line is written.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Reports a copy's progress.
pub struct ProgressReport {
    verb: &'static str,
    bar: bool,
    state: Mutex<State>,
}

struct State {
    blobs: u64,
    bytes: u64,
    blobs_done: u64,
    bytes_done: u64,
    /// Of `bytes_done`, those only found already there (they do not count in the rate).
    bytes_skipped: u64,
    finished: bool,
    started: Instant,
    last_shown: Option<Instant>,
}

impl ProgressReport {
    /// A report of `verb`ing ("copied", "checked", "restored").
    pub fn new(verb: &'static str) -> Self {
        ProgressReport {
            verb,
            bar: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                blobs: 0,
                bytes: 0,
                blobs_done: 0,
                bytes_done: 0,
                bytes_skipped: 0,
                finished: false,
                started: Instant::now(),
                last_shown: None,
            }),
        }
    }

    fn show(&self, force: bool) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let every = if self.bar { BAR_EVERY } else { LINE_EVERY };
        if !force
            && state
                .last_shown
                .is_some_and(|shown| shown.elapsed() < every)
        {
            return;
        }
        state.last_shown = Some(Instant::now());
        let elapsed = state.started.elapsed().as_secs_f64().max(0.001);
        let rate = (state.bytes_done - state.bytes_skipped) as f64 / elapsed;
        let remaining = state.bytes.saturating_sub(state.bytes_done) as f64;
        let eta = if rate > 0.0 {
            humantime::format_duration(Duration::from_secs((remaining / rate) as u64)).to_string()
        } else {
            "?".to_owned()
        };
        let percent = if state.bytes == 0 {
            100.0
        } else {
            state.bytes_done as f64 * 100.0 / state.bytes as f64
        };
        let summary = format!(
            "{} {} of {} ({}/{} blobs), {}/s, ETA {eta}",
            self.verb,
            size(state.bytes_done),
            size(state.bytes),
            state.blobs_done,
            state.blobs,
            size(rate as u64),
        );
        let mut stderr = std::io::stderr().lock();
        if self.bar {
            let filled = (percent / 5.0) as usize;
            let _ = write!(
                stderr,
                "\r\x1b[2K[{}{}] {percent:5.1}% {summary}",
                "#".repeat(filled.min(20)),
                " ".repeat(20 - filled.min(20)),
            );
        } else {
            let _ = writeln!(stderr, "{percent:.0}% {summary}");
        }
        let _ = stderr.flush();
    }

    /// Writes the final state (and ends the bar's line).
    pub fn done(&self) {
        self.show(true);
        self.end_line();
    }

    fn end_line(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.bar && !state.finished && state.last_shown.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        state.finished = true;
    }
}

impl Drop for ProgressReport {
    /// A copy that failed leaves its bar's line ended, so the error reads on its own line.
    fn drop(&mut self) {
        self.end_line();
    }
}

impl Progress for ProgressReport {
    fn start(&self, blobs: u64, bytes: u64) {
        {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.blobs = blobs;
            state.bytes = bytes;
            state.started = Instant::now();
        }
        self.show(true);
    }

    fn advance(&self, bytes: u64) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bytes_done += bytes;
        self.show(false);
    }

    fn skipped(&self, bytes: u64) {
        {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.bytes_done += bytes;
            state.bytes_skipped += bytes;
        }
        self.show(false);
    }

    fn blob_done(&self, _copied: bool) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .blobs_done += 1;
        self.show(false);
    }
}

/// A size for people: `1.2 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
