//! The metadata store's behavioural suite (`wharf_metadata::suite`), run against SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tempfile::TempDir;
use wharf_metadata_sqlite::SqliteStore;

/// A fresh store in a folder of its own, which lives as long as the test.
async fn open() -> (TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    (dir, Arc::new(store))
}

wharf_metadata::store_suite!(open);
