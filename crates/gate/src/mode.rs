//! The registry's modes and what is known about them: the effective mode of this replica, since
//! when, the holds, and the last transition (how long its drain took, what it cancelled).

use std::time::Duration;

use serde::Serialize;

use super::holds::Hold;
use wharf_core::time::Millis;

/// A replica's effective mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every write is admitted.
    ReadWrite,
    /// A hold exists: new writes are denied, writes admitted before it finish.
    Draining,
    /// Nothing is being written; every write is denied.
    ReadOnly,
}

impl Mode {
    /// The mode's name, as the API and logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "read-write",
            Mode::Draining => "draining",
            Mode::ReadOnly => "read-only",
        }
    }

    /// The value of the `wharf_mode` metric: 0 read-write, 1 draining, 2 read-only.
    pub fn metric_value(self) -> f64 {
        match self {
            Mode::ReadWrite => 0.0,
            Mode::Draining => 1.0,
            Mode::ReadOnly => 2.0,
        }
    }
}

/// How the drain behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long a drain may last before the writes still under way are cancelled.
    pub timeout: Duration,
    /// How long after an upload finished its client may still put the manifest that completes
    /// the push (and how recently before the hold an upload must have been active to count).
    pub push_grace: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            timeout: Duration::from_secs(60),
            push_grace: Duration::from_secs(5),
        }
    }
}

/// A change of mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The mode before.
    pub from: Mode,
    /// The mode after.
    pub to: Mode,
    /// When it happened.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub at: Millis,
    /// For the end of a drain: how long it took, in milliseconds.
    pub drain_ms: Option<u64>,
    /// For the end of a drain: pushes under way at the hold that completed during it.
    pub pushes_completed: u64,
    /// For the end of a drain: pushes under way at the hold that it cut off (they paused past
    /// the grace, or were still going at the drain timeout).
    pub pushes_cut_off: u64,
    /// For the end of a drain: writes in flight cancelled at the drain timeout.
    pub cancelled_writes: u64,
    /// For the end of a drain: uploads that were still open (they can no longer continue).
    pub abandoned_uploads: u64,
    /// Why, in a sentence.
    pub reason: String,
}

/// What this replica's gate knows, published after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSnapshot {
    /// The effective mode.
    pub mode: Mode,
    /// Since when.
    pub since: Millis,
    /// When the first of the current holds was set (the moment writes started being refused);
    /// `None` while read-write.
    pub hold_at: Option<Millis>,
    /// The current holds.
    pub holds: Vec<Hold>,
    /// The last transition, if any since start-up.
    pub last_transition: Option<Transition>,
}

impl ModeSnapshot {
    /// Whether the registry is desired read-only (a hold exists).
    pub fn desired_read_only(&self) -> bool {
        !self.holds.is_empty()
    }

    /// The holds' reasons, for messages.
    pub fn reasons(&self) -> String {
        reasons(&self.holds)
    }
}

/// Holds' reasons, for messages: `reason (hold name)`, joined.
pub fn reasons(holds: &[Hold]) -> String {
    holds
        .iter()
        .map(|h| format!("{} ({})", h.reason, h.name))
        .collect::<Vec<_>>()
        .join("; ")
}
