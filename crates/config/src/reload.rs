//! Reloading the configuration file while the server runs.
//!
//! The file's folder is watched, not the file: Kubernetes updates a mounted ConfigMap by swapping
//! a `..data` symlink, and editors save by renaming a new file over the old one, so the file
//! itself may never see an event. Any event in the folder (and a SIGHUP, which the binary turns
//! into a [`Notify`]) makes the file be read again; only a change of its content counts, and a
//! content that does not load is refused with one log line, keeping the running configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::Config;

/// Re-reads a configuration file and tells when its content changed to a valid configuration.
pub struct Reloader {
    path: PathBuf,
    environment: Vec<(String, String)>,
    /// The content last read, valid or not: the same content is not judged twice.
    last_seen: Option<Vec<u8>>,
}

impl Reloader {
    /// A reloader for `path`. `environment` is what the configuration was loaded with (its
    /// `WHARF_*` overrides apply to every reload too). The first [`Reloader::reload`] reads the
    /// file whatever it holds: it may have changed since the running configuration was loaded.
    pub fn new(path: PathBuf, environment: Vec<(String, String)>) -> Self {
        Reloader {
            path,
            environment,
            last_seen: None,
        }
    }

    /// The file this reloader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again: the new configuration if its content changed and loads, `None`
    /// otherwise (unchanged, unreadable or invalid — the latter two are logged, once per
    /// content).
    pub fn reload(&mut self) -> Option<Config> {
        let content = match std::fs::read(&self.path) {
            Ok(content) => content,
            Err(error) => {
                if self.last_seen.take().is_some() {
                    tracing::error!(
                        file = %self.path.display(), %error,
                        "cannot read the configuration file; keeping the running configuration"
                    );
                }
                return None;
            }
        };
        if self.last_seen.as_ref() == Some(&content) {
            return None;
        }
        self.last_seen = Some(content);
        match Config::load(Some(&self.path), self.environment.iter().cloned()) {
            Ok(config) => Some(config),
            Err(error) => {
                tracing::error!(
                    file = %self.path.display(),
                    "ignoring the changed configuration file, keeping the running configuration: {error}"
                );
                None
            }
        }
    }
}

/// Watches the folder of `path` and notifies `wake` on the events that may have changed the
/// file: those naming it, and those naming a `..`-prefixed entry (Kubernetes mounts a ConfigMap
/// or Secret file as a symlink through `..data`, which it swaps atomically). Other files in the
/// folder, such as a log written beside the config, wake nobody. The watch lasts as long as the
/// returned watcher.
pub fn watch_folder(path: &Path, wake: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error or an event without paths (a queue overflow) may hide a change: wake.
        let relevant = event.map_or(true, |event| {
            event.paths.is_empty() || event.paths.iter().any(|p| may_change(p, name.as_deref()))
        });
        if relevant {
            wake.notify_one();
        }
    })?;
    watcher.watch(folder, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether an event on `changed` may change the watched file called `watched`.
fn may_change(changed: &Path, watched: Option<&std::ffi::OsStr>) -> bool {
    match changed.file_name() {
        Some(changed) => Some(changed) == watched || changed.as_encoded_bytes().starts_with(b".."),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_valid_content_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.yaml");
        std::fs::write(&path, "gc:\n  interval: 1h\n").unwrap();
        let mut reloader = Reloader::new(path.clone(), Vec::new());
        assert!(
            reloader.reload().is_some(),
            "the first read reports the file"
        );
        assert_eq!(reloader.reload(), None, "unchanged");

        std::fs::write(&path, "gc:\n  interval: 2h\n").unwrap();
        let config = reloader.reload().unwrap();
        assert_eq!(config.gc.interval.0, std::time::Duration::from_secs(7200));
        assert_eq!(reloader.reload(), None, "read once");

        std::fs::write(&path, "gc:\n  interval: [\n").unwrap();
        assert_eq!(reloader.reload(), None, "invalid");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reloader.reload(), None, "missing");

        std::fs::write(&path, "gc:\n  interval: 3h\n").unwrap();
        assert_eq!(
            reloader.reload().unwrap().gc.interval.0,
            std::time::Duration::from_secs(3 * 3600)
        );
    }

    #[test]
    fn only_events_that_may_change_the_file_count() {
        let watched = Some(std::ffi::OsStr::new("wharf.yaml"));
        for (changed, counts) in [
            ("/etc/wharf/wharf.yaml", true),
            ("/etc/wharf/..data", true),
            ("/etc/wharf/..data_tmp", true),
            ("/etc/wharf/..2026_11_22_12_00_00.123", true),
            ("/etc/wharf/wharf.log", false),
            ("/etc/wharf/wharf.yaml.swp", false),
            ("/etc/wharf/.wharf.yaml", false),
        ] {
            assert_eq!(may_change(Path::new(changed), watched), counts, "{changed}");
        }
    }

    #[test]
    fn environment_overrides_apply_to_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.yaml");
        std::fs::write(&path, "").unwrap();
        let mut reloader = Reloader::new(
            path.clone(),
            vec![("WHARF_DRAIN_TIMEOUT".into(), "5s".into())],
        );
        reloader.reload();
        std::fs::write(&path, "read_only:\n  enabled: true\n").unwrap();
        let config = reloader.reload().unwrap();
        assert!(config.read_only.enabled);
        assert_eq!(config.drain.timeout.0, std::time::Duration::from_secs(5));
    }
}
