//! Whether writes are failing: set by a write that failed inside the registry (its storage full,
//! its database failing), cleared by the next write that succeeds. `/readyz`, the metrics and the
//! admin state report it, so a full disk is seen from outside while pulls go on being served.
//!
//! It is told of outcomes by whoever sees a write's end (the HTTP layer, for every write
//! request), not found out by probing: a probe small enough to be harmless can succeed in space
//! a real push would not find.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wharf_core::time::{Millis, now_millis};
use wharf_gate::metrics::Metrics;
pub use wharf_gate::metrics::WriteFailure;

/// Writes failing since the first failure after the last success.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WritesFailing {
    /// When the first of these failures happened.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub since: Millis,
    /// How many writes failed since.
    pub failures: u64,
    /// Why the latest one failed.
    pub kind: WriteFailure,
    /// What the latest one reported.
    pub message: String,
}

/// The registry's record of whether writes are failing, kept in its metrics too.
pub struct WriteHealth {
    /// Whether `failing` holds a failure: lets every successful write skip the lock.
    flagged: AtomicBool,
    failing: Mutex<Option<WritesFailing>>,
    metrics: Arc<Metrics>,
}

impl WriteHealth {
    /// Nothing failing yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        WriteHealth {
            flagged: AtomicBool::new(false),
            failing: Mutex::new(None),
            metrics,
        }
    }

    /// Records a write that failed.
    pub fn failed(&self, kind: WriteFailure, message: &str) {
        self.metrics.write_failed(kind);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failing.get_or_insert_with(|| WritesFailing {
            since: now_millis(),
            failures: 0,
            kind,
            message: String::new(),
        });
        entry.failures += 1;
        entry.kind = kind;
        message.clone_into(&mut entry.message);
        self.flagged.store(true, Ordering::Release);
    }

    /// Records a write that succeeded. Returns whether writes had been failing until now.
    pub fn succeeded(&self) -> bool {
        if !self.flagged.load(Ordering::Acquire) {
            return false;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        self.flagged.store(false, Ordering::Release);
        self.metrics.writes_recovered();
        failing.take().is_some()
    }

    /// Whether writes are failing, and since when.
    pub fn failing(&self) -> Option<WritesFailing> {
        if !self.flagged.load(Ordering::Acquire) {
            return None;
        }
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_from_the_first_failure_until_the_next_success() {
        let metrics = Arc::new(Metrics::new());
        let health = WriteHealth::new(Arc::clone(&metrics));
        assert_eq!(health.failing(), None);
        assert!(!health.succeeded());
        health.failed(WriteFailure::Internal, "first");
        health.failed(WriteFailure::StorageFull, "disk full");
        let failing = health.failing().unwrap();
        assert_eq!(failing.failures, 2);
        assert_eq!(failing.kind, WriteFailure::StorageFull);
        assert_eq!(failing.message, "disk full");
        let rendered = metrics.render_cached();
        assert!(rendered.contains("wharf_writes_failing 1"), "{rendered}");
        assert!(
            rendered.contains(r#"wharf_write_failures_total{reason="storage_full"} 1"#),
            "{rendered}"
        );
        assert!(health.succeeded());
        assert!(metrics.render_cached().contains("wharf_writes_failing 0"));
        assert_eq!(health.failing(), None);
        assert!(!health.succeeded());
    }
}
