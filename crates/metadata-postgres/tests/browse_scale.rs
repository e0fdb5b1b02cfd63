//! The web UI's repository pages over 100,000 repositories on PostgreSQL: every page continues
//! exactly, and a deep page is read from an index in the order asked for, never by a scan of a
//! whole table nor a sort (keyset pagination, `wharf_metadata::browse`). A plan, not a timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{PgPool, Row};

use wharf_metadata::MetadataStore;
use wharf_metadata::browse::{RepositoryParams, RepositoryQuery};
use wharf_metadata::suite::scale::{FILL_REPOSITORIES, deep_repository_pages_continue_exactly};
use wharf_metadata_postgres::PostgresStore;
use wharf_metadata_postgres::testing::TestDatabase;

#[tokio::test]
async fn a_deep_page_of_100000_repositories_reads_an_index_in_order() {
    let database = TestDatabase::create().await.expect("a test database");
    let store = PostgresStore::connect(&database.options()).await.unwrap();
    let pool = PgPool::connect(database.url()).await.unwrap();
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
        let explain = format!("EXPLAIN {statement}");
        let query = sqlx::query(sqlx::AssertSqlSafe(explain));
        let plan: Vec<String> = wharf_metadata::bind_repository_params!(query, params)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Sort"), "{sort:?} sorts:\n{plan}");
        // (The tags count's subquery may scan `tags`, empty here.)
        assert!(
            !plan.contains("Seq Scan on repositories")
                && !plan.contains("Seq Scan on repository_stats"),
            "{sort:?} reads a whole table:\n{plan}"
        );
        assert!(plan.contains("Index"), "{sort:?}:\n{plan}");
    }
    pool.close().await;
    store.close().await;
}
