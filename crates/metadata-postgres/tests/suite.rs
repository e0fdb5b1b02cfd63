//! The metadata store's behavioural suite (`wharf_metadata::suite`), run against PostgreSQL:
//! each test on a fresh database of its own on the server `scripts/test` started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use wharf_metadata_postgres::PostgresStore;
use wharf_metadata_postgres::testing::TestDatabase;

/// A fresh store on a database of its own, which lives as long as the test.
async fn open() -> (TestDatabase, Arc<PostgresStore>) {
    let database = TestDatabase::create().await.expect("a test database");
    let store = PostgresStore::connect(&database.options())
        .await
        .expect("connecting to the test database");
    (database, Arc::new(store))
}

wharf_metadata::store_suite!(open);
