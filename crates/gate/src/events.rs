//! The audit trail's entries: every hold taken, released or expired, and every change of mode,
//! with who, when, why and where from.

use serde::Serialize;

use crate::holds::{Hold, HoldSource};
use crate::mode::{Mode, Transition};
use wharf_core::time::{Millis, now_millis};

/// What kind of change an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A hold was taken or renewed.
    HoldSet,
    /// A hold was released.
    HoldReleased,
    /// A hold expired.
    HoldExpired,
    /// The effective mode changed.
    ModeChanged,
}

impl EventKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::HoldSet => "hold-set",
            EventKind::HoldReleased => "hold-released",
            EventKind::HoldExpired => "hold-expired",
            EventKind::ModeChanged => "mode-changed",
        }
    }
}

/// An entry of the audit trail: who changed what, when, why, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeEvent {
    /// When.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub at: Millis,
    /// What happened.
    pub kind: EventKind,
    /// The hold concerned, if any.
    pub hold: Option<String>,
    /// Who did it.
    pub actor: String,
    /// From where.
    pub source: String,
    /// Why.
    pub reason: String,
    /// The replica that recorded it.
    pub replica: String,
    /// For a mode change: the mode before.
    pub from: Option<Mode>,
    /// For a mode change: the mode after.
    pub to: Option<Mode>,
    /// For the end of a drain: how long it took, in milliseconds.
    pub drain_ms: Option<u64>,
    /// For the end of a drain: pushes under way at the hold that completed during it.
    pub pushes_completed: Option<u64>,
    /// For the end of a drain: pushes under way at the hold that it cut off.
    pub pushes_cut_off: Option<u64>,
    /// For the end of a drain: writes cancelled at the timeout.
    pub cancelled_writes: Option<u64>,
    /// For the end of a drain: uploads still open, which can no longer continue.
    pub abandoned_uploads: Option<u64>,
}

/// An audit event before the replica's name is added.
pub(crate) struct Event(pub(crate) ModeEvent);

impl Event {
    /// An event about a hold; for a release or an expiry the store fills in the hold's name and
    /// reason from the row it deletes.
    pub(crate) fn hold(
        kind: EventKind,
        hold: Option<&Hold>,
        actor: &str,
        source: HoldSource,
    ) -> Event {
        Event(ModeEvent {
            at: now_millis(),
            kind,
            hold: hold.map(|h| h.name.to_string()),
            actor: actor.to_owned(),
            source: source.as_str().to_owned(),
            reason: hold.map(|h| h.reason.clone()).unwrap_or_default(),
            replica: String::new(),
            from: None,
            to: None,
            drain_ms: None,
            pushes_completed: None,
            pushes_cut_off: None,
            cancelled_writes: None,
            abandoned_uploads: None,
        })
    }

    pub(crate) fn state(
        from: Mode,
        to: Mode,
        reason: &str,
        transition: Option<&Transition>,
    ) -> Event {
        Event(ModeEvent {
            at: transition.map_or_else(now_millis, |t| t.at),
            kind: EventKind::ModeChanged,
            hold: None,
            actor: "wharf".to_owned(),
            source: HoldSource::System.as_str().to_owned(),
            reason: reason.to_owned(),
            replica: String::new(),
            from: Some(from),
            to: Some(to),
            drain_ms: transition.and_then(|t| t.drain_ms),
            pushes_completed: transition
                .filter(|t| t.drain_ms.is_some())
                .map(|t| t.pushes_completed),
            pushes_cut_off: transition
                .filter(|t| t.drain_ms.is_some())
                .map(|t| t.pushes_cut_off),
            cancelled_writes: transition
                .filter(|t| t.drain_ms.is_some())
                .map(|t| t.cancelled_writes),
            abandoned_uploads: transition
                .filter(|t| t.drain_ms.is_some())
                .map(|t| t.abandoned_uploads),
        })
    }
}
