//! The registry's behaviour through its HTTP API: the server runs in-process on a loopback port
//! (`wharf_server::serve`), with a real SQLite database and real files in a temporary folder —
//! or, with `WHARF_TEST_METADATA=postgres`, a real PostgreSQL database (see `app.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
#[path = "../../../wharf/tests/support/certificates.rs"]
mod certificates;

mod auth;
mod backup;
mod base;
mod blobs;
mod config_reload;
mod connections;
mod housekeeping;
mod listing;
mod manifests;
mod outage;
mod read_only;
mod s3;
mod shutdown;
mod tls;
mod ui;
mod ui_browser;
mod uploads;
mod webdriver;
