//! A command whose output is closed early (`wharf read-only status | head -1`) ends quietly, as
//! other Unix commands do, instead of panicking in `println!`: Rust ignores SIGPIPE, so a write
//! to a closed pipe fails, and `println!` panics on the failure. The server keeps SIGPIPE
//! ignored: a client that hangs up must cost it one connection, not the process.

/// Lets SIGPIPE end the process, as it does by default outside Rust. Call it first thing in
/// `main`, before any thread starts, and not for `wharf serve`.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn end_quietly_when_closed() {
    // SAFETY: restoring a signal's default disposition touches no memory of this program; it
    // happens before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Elsewhere there is no SIGPIPE.
#[cfg(not(unix))]
pub fn end_quietly_when_closed() {}
