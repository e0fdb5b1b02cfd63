//! Prometheus metrics, served at `/metrics`.
//!
//! Each registry has its own recorder (not the process-wide one the `metrics` macros use), so
//! several registries in one process — as in the tests — keep their numbers apart. Counters and
//! histograms are updated where things happen; gauges of things that live elsewhere (upload
//! sessions in the database) are read when scraped.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::{Mode, ModeSnapshot};

const MODE: &str = "wharf_mode";
const DESIRED_READ_ONLY: &str = "wharf_read_only_desired";
const HOLDS: &str = "wharf_read_only_holds";
const WRITES_IN_FLIGHT: &str = "wharf_writes_in_flight";
const UPLOADS_OPEN: &str = "wharf_uploads_open";
const WRITES_DENIED: &str = "wharf_writes_denied_total";
const WRITES_CANCELLED: &str = "wharf_writes_cancelled_total";
const DRAIN_SECONDS: &str = "wharf_drain_duration_seconds";
const TRANSITIONS: &str = "wharf_mode_transitions_total";
const WRITE_FAILURES: &str = "wharf_write_failures_total";
const WRITES_FAILING: &str = "wharf_writes_failing";

/// Drain durations span a quiet registry (milliseconds) to the drain timeout (a minute or more).
const DRAIN_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The registry's metrics.
pub struct Metrics {
    handle: PrometheusHandle,
    mode: Gauge,
    desired_read_only: Gauge,
    holds: Gauge,
    writes_in_flight: Gauge,
    uploads_open: Gauge,
    denied_read_only: Counter,
    denied_draining: Counter,
    cancelled: Counter,
    drain_seconds: Histogram,
    transitions: Counter,
    write_failures_storage_full: Counter,
    write_failures_internal: Counter,
    write_failures_database_unavailable: Counter,
    write_failures_blob_storage_unavailable: Counter,
    writes_failing: Gauge,
}

/// Why a write failed inside the registry, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteFailure {
    /// The storage is full.
    StorageFull,
    /// The metadata database cannot be reached.
    DatabaseUnavailable,
    /// The blob storage (S3) cannot be reached or throttles.
    BlobStorageUnavailable,
    /// Anything else.
    Internal,
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        let recorder: PrometheusRecorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(DRAIN_SECONDS.to_owned()),
                &DRAIN_BUCKETS,
            )
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let metadata = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        let describe = |name: &'static str, help: &'static str| {
            (KeyName::from(name), SharedString::from(help))
        };
        let (name, help) = describe(
            MODE,
            "This replica's mode: 0 read-write, 1 draining, 2 read-only.",
        );
        recorder.describe_gauge(name, None, help);
        let (name, help) = describe(
            DESIRED_READ_ONLY,
            "1 while at least one read-only hold exists.",
        );
        recorder.describe_gauge(name, None, help);
        let (name, help) = describe(HOLDS, "Read-only holds in place.");
        recorder.describe_gauge(name, None, help);
        let (name, help) = describe(
            WRITES_IN_FLIGHT,
            "Writes holding a permit of the write gate.",
        );
        recorder.describe_gauge(name, None, help);
        let (name, help) = describe(UPLOADS_OPEN, "Blob upload sessions open.");
        recorder.describe_gauge(name, None, help);
        let (name, help) = describe(
            WRITES_DENIED,
            "Writes refused by the write gate, by reason: draining or read-only.",
        );
        recorder.describe_counter(name, None, help);
        let (name, help) = describe(
            WRITES_CANCELLED,
            "Admitted writes cancelled at a drain timeout.",
        );
        recorder.describe_counter(name, None, help);
        let (name, help) = describe(
            DRAIN_SECONDS,
            "How long drains took, from the first hold to read-only.",
        );
        recorder.describe_histogram(name, Some(metrics::Unit::Seconds), help);
        let (name, help) = describe(TRANSITIONS, "Changes of mode.");
        recorder.describe_counter(name, None, help);

        let (name, help) = describe(
            WRITE_FAILURES,
            "Writes that failed inside the registry, by reason: storage_full or internal.",
        );
        recorder.describe_counter(name, None, help);
        let (name, help) = describe(
            WRITES_FAILING,
            "1 from a write failing inside the registry until one succeeds again.",
        );
        recorder.describe_gauge(name, None, help);

        let failed = |reason: &'static str| {
            recorder.register_counter(
                &Key::from_parts(WRITE_FAILURES, vec![Label::new("reason", reason)]),
                &metadata,
            )
        };
        let denied = |reason: &'static str| {
            recorder.register_counter(
                &Key::from_parts(WRITES_DENIED, vec![Label::new("reason", reason)]),
                &metadata,
            )
        };
        Metrics {
            mode: recorder.register_gauge(&Key::from_name(MODE), &metadata),
            desired_read_only: recorder
                .register_gauge(&Key::from_name(DESIRED_READ_ONLY), &metadata),
            holds: recorder.register_gauge(&Key::from_name(HOLDS), &metadata),
            writes_in_flight: recorder.register_gauge(&Key::from_name(WRITES_IN_FLIGHT), &metadata),
            uploads_open: recorder.register_gauge(&Key::from_name(UPLOADS_OPEN), &metadata),
            denied_read_only: denied(Mode::ReadOnly.as_str()),
            denied_draining: denied(Mode::Draining.as_str()),
            cancelled: recorder.register_counter(&Key::from_name(WRITES_CANCELLED), &metadata),
            drain_seconds: recorder.register_histogram(&Key::from_name(DRAIN_SECONDS), &metadata),
            transitions: recorder.register_counter(&Key::from_name(TRANSITIONS), &metadata),
            write_failures_storage_full: failed("storage_full"),
            write_failures_internal: failed("internal"),
            write_failures_database_unavailable: failed("database_unavailable"),
            write_failures_blob_storage_unavailable: failed("blob_storage_unavailable"),
            writes_failing: recorder.register_gauge(&Key::from_name(WRITES_FAILING), &metadata),
            handle: recorder.handle(),
        }
    }

    /// The metrics in the Prometheus text format, after updating the number of open uploads.
    pub fn render(&self, uploads_open: u64) -> String {
        self.uploads_open.set(uploads_open as f64);
        self.handle.render()
    }

    /// The metrics as they are, without reading anything anew.
    pub fn render_cached(&self) -> String {
        self.handle.render()
    }

    /// Counts a write that failed inside the registry; writes are failing until
    /// [`Metrics::writes_recovered`].
    pub fn write_failed(&self, why: WriteFailure) {
        match why {
            WriteFailure::StorageFull => self.write_failures_storage_full.increment(1),
            WriteFailure::Internal => self.write_failures_internal.increment(1),
            WriteFailure::DatabaseUnavailable => {
                self.write_failures_database_unavailable.increment(1)
            }
            WriteFailure::BlobStorageUnavailable => {
                self.write_failures_blob_storage_unavailable.increment(1)
            }
        }
        self.writes_failing.set(1.0);
    }

    /// A write succeeded after writes had been failing.
    pub fn writes_recovered(&self) {
        self.writes_failing.set(0.0);
    }

    pub(crate) fn set_mode(&self, snapshot: &ModeSnapshot) {
        self.mode.set(snapshot.mode.metric_value());
        self.desired_read_only.set(if snapshot.desired_read_only() {
            1.0
        } else {
            0.0
        });
        self.holds.set(snapshot.holds.len() as f64);
    }

    pub(crate) fn transitioned(&self) {
        self.transitions.increment(1);
    }

    pub(crate) fn set_writes_in_flight(&self, in_flight: u64) {
        self.writes_in_flight.set(in_flight as f64);
    }

    pub(crate) fn write_denied(&self, mode: Mode) {
        match mode {
            Mode::Draining => self.denied_draining.increment(1),
            Mode::ReadOnly | Mode::ReadWrite => self.denied_read_only.increment(1),
        }
    }

    pub(crate) fn writes_cancelled(&self, count: u64) {
        self.cancelled.increment(count);
    }

    pub(crate) fn drain_finished(&self, duration: Duration) {
        self.drain_seconds.record(duration.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
