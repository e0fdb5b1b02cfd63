//! The resource's status from what the registry reported: the `Available` and `ReadOnly`
//! conditions and `status.readOnly`.
//!
//! A condition's `lastTransitionTime` changes only when its `status` does, so a status written
//! again from the same facts is the same document (and the API server keeps its
//! resourceVersion).

use crate::crd::{Condition, ReadOnlyStatus, TransitionStatus};
use crate::registry_api::{HOLD_NAME, StateReport};

/// The condition saying whether the registry answers.
pub const AVAILABLE: &str = "Available";

/// The condition saying whether read-only is in effect (on every replica).
pub const READ_ONLY: &str = "ReadOnly";

/// A condition before its transition time is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `Available` or `ReadOnly`.
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// One CamelCase word.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl Observed {
    fn new(
        type_: &'static str,
        status: &'static str,
        reason: &'static str,
        message: String,
    ) -> Self {
        Observed {
            type_,
            status,
            reason,
            message,
        }
    }
}

/// The conditions `previous` becomes with `observed`: a condition keeps its transition time
/// unless its status changed; conditions of other types are kept.
pub fn merge(
    previous: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| !observed.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    for o in observed {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == o.type_ && c.status == o.status)
            .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        conditions.push(Condition {
            type_: o.type_.to_owned(),
            status: o.status.to_owned(),
            reason: o.reason.to_owned(),
            message: o.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

/// The conditions when the registry answered with `state`, having asked for read-only or not.
pub fn from_state(url: &str, state: &StateReport, want_read_only: bool) -> Vec<Observed> {
    let available = Observed::new(
        AVAILABLE,
        "True",
        "RegistryAnswers",
        format!("the registry answers at {url}"),
    );
    let replicas = &state.replicas_read_only;
    let read_only = if state.read_only_in_effect {
        let others: Vec<&str> = state
            .holds
            .iter()
            .filter(|h| h.name != HOLD_NAME)
            .map(|h| h.name.as_str())
            .collect();
        if want_read_only || others.is_empty() {
            Observed::new(
                READ_ONLY,
                "True",
                "InEffect",
                format!("read-only on {replicas} replicas"),
            )
        } else {
            // The resource asks for writable, but another actor (a backup, an administrator)
            // holds it: the condition reports the fact, and names who.
            Observed::new(
                READ_ONLY,
                "True",
                "HeldByOthers",
                format!(
                    "read-only on {replicas} replicas, held by {}",
                    others.join(", ")
                ),
            )
        }
    } else if state.effective == "draining" || !state.holds.is_empty() {
        Observed::new(READ_ONLY, "Unknown", "Draining", draining_message(state))
    } else if want_read_only {
        // The hold was just taken and the registry has not moved yet: look again.
        Observed::new(
            READ_ONLY,
            "Unknown",
            "Draining",
            "draining: the hold is taken, waiting for the registry".to_owned(),
        )
    } else {
        Observed::new(READ_ONLY, "False", "Writable", "writable".to_owned())
    };
    vec![available, read_only]
}

/// The registry's own account of the drain, which names what is in flight and where.
fn draining_message(state: &StateReport) -> String {
    match &state.progress {
        Some(progress) => format!("draining: {progress}"),
        None => format!(
            "draining: read-only on {} replicas",
            state.replicas_read_only
        ),
    }
}

/// The conditions when the registry did not answer (`refused: false`) or refused the operator.
pub fn unanswered(why: &str, refused: bool) -> Vec<Observed> {
    let reason = if refused {
        "RegistryRefused"
    } else {
        "RegistryUnreachable"
    };
    vec![
        Observed::new(AVAILABLE, "False", reason, why.to_owned()),
        Observed::new(
            READ_ONLY,
            "Unknown",
            reason,
            format!("the registry's state is unknown: {why}"),
        ),
    ]
}

/// The condition when the spec cannot be rendered.
pub fn invalid(why: &str) -> Vec<Observed> {
    vec![Observed::new(
        AVAILABLE,
        "False",
        "InvalidSpec",
        why.to_owned(),
    )]
}

/// `status.readOnly` from the state report.
pub fn read_only_status(state: &StateReport) -> ReadOnlyStatus {
    ReadOnlyStatus {
        state: state.effective.clone(),
        replicas: state.replicas_read_only.clone(),
        since: state.since.clone(),
        last_transition: state.last_transition.as_ref().map(|t| TransitionStatus {
            from: t.from.clone(),
            to: t.to.clone(),
            at: t.at.clone(),
            drain_ms: t.drain_ms,
            pushes_completed: t.pushes_completed,
            pushes_cut_off: t.pushes_cut_off,
            cancelled_writes: t.cancelled_writes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(status: &'static str) -> Observed {
        Observed::new(READ_ONLY, status, "X", "m".to_owned())
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let first = merge(&[], &[observed("False")], Some(1), "t1");
        assert_eq!(first[0].last_transition_time, "t1");
        let same = merge(&first, &[observed("False")], Some(2), "t2");
        assert_eq!(same[0].last_transition_time, "t1");
        assert_eq!(same[0].observed_generation, Some(2));
        let changed = merge(&same, &[observed("True")], Some(3), "t3");
        assert_eq!(changed[0].last_transition_time, "t3");
    }

    #[test]
    fn other_conditions_are_kept_and_sorted() {
        let available = Observed::new(AVAILABLE, "True", "R", "m".to_owned());
        let first = merge(&[], &[available], Some(1), "t1");
        let both = merge(&first, &[observed("False")], Some(1), "t2");
        let types: Vec<&str> = both.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [AVAILABLE, READ_ONLY]);
        assert_eq!(both[0].last_transition_time, "t1");
    }
}
