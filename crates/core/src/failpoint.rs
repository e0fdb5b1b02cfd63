//! Failpoints: named places where a test can make the process die, to check that a crash at
//! exactly that step leaves nothing inconsistent. `WHARF_FAILPOINT=<name>` in a process's
//! environment makes it abort (like `kill -9`: no clean-up runs) when it reaches that place.
//! Unset — always, outside tests — a failpoint does nothing.

/// The environment variable naming the failpoint to die at.
pub const VARIABLE: &str = "WHARF_FAILPOINT";

/// Dies here if `WHARF_FAILPOINT` names this place.
pub fn hit(name: &str) {
    if std::env::var_os(VARIABLE).is_some_and(|wanted| wanted == name) {
        tracing::error!(failpoint = name, "dying at a failpoint ({VARIABLE} is set)");
        std::process::abort();
    }
}
