//! The web UI's repository pages over 100,000 repositories on SQLite: every page continues
//! exactly, and a deep page reads an index in the order asked for, never the whole table nor a
//! sort of it (keyset pagination, `wharf_metadata::browse`). A plan, not a timing: it holds
//! however busy the machine is, and it is what keeps the thousandth page as fast as the first.

#![allow(clippy::unwrap_used)]

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Row, SqlitePool};

use wharf_metadata::MetadataStore;
use wharf_metadata::browse::{RepositoryParams, RepositoryQuery};
use wharf_metadata::suite::scale::{FILL_REPOSITORIES, deep_repository_pages_continue_exactly};
use wharf_metadata_sqlite::SqliteStore;

#[tokio::test]
async fn a_deep_page_of_100000_repositories_reads_an_index_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    for statement in FILL_REPOSITORIES {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();

    for (sort, cursor) in deep_repository_pages_continue_exactly(&store).await {
        let (statement, params) = RepositoryParams::of(&RepositoryQuery {
            sort,
            search: "",
            after: Some(&cursor),
            limit: 50,
        });
        let explain = format!("EXPLAIN QUERY PLAN {statement}");
        let query = sqlx::query(sqlx::AssertSqlSafe(explain));
        let plan: Vec<String> = wharf_metadata::bind_repository_params!(query, params)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("TEMP B-TREE"), "{sort:?} sorts:\n{plan}");
        assert!(
            !plan
                .lines()
                .any(|l| l.starts_with("SCAN r") || l.starts_with("SCAN s")),
            "{sort:?} reads a whole table:\n{plan}"
        );
        assert!(plan.contains("USING"), "{sort:?}:\n{plan}");
    }
    pool.close().await;
    store.close().await;
}
