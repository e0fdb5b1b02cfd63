//! The web UI's reads ([`wharf_metadata::browse`], whose SQL both backends share).

use sqlx::{PgPool, Postgres};

use wharf_core::digest::Digest;
use wharf_core::reference::RepositoryName;
use wharf_metadata::browse::{
    self, RepositoryParams, RepositoryQuery, RepositorySummary, RepositorySummaryRow, TagSummary,
    TagSummaryRow,
};
use wharf_metadata::rows::collect;
use wharf_metadata::{Page, Result, sql};

pub(crate) async fn repositories(
    pool: &PgPool,
    query: &RepositoryQuery<'_>,
) -> Result<Vec<RepositorySummary>> {
    let (statement, params) = RepositoryParams::of(query);
    let statement = sqlx::query_as::<Postgres, RepositorySummaryRow>(statement);
    let rows = match params {
        RepositoryParams::ByName(pattern, after, limit) => {
            statement.bind(pattern).bind(after).bind(limit)
        }
        RepositoryParams::ByKey(pattern, key, id, limit) => {
            statement.bind(pattern).bind(key).bind(id).bind(limit)
        }
    }
    .fetch_all(pool)
    .await?;
    collect(rows)
}

pub(crate) async fn tags(
    pool: &PgPool,
    repository: &RepositoryName,
    page: Page<'_>,
) -> Result<Option<Vec<TagSummary>>> {
    let exists: bool = sqlx::query_scalar(sql::REPOSITORY_EXISTS)
        .bind(repository.as_str())
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<TagSummaryRow> = sqlx::query_as(browse::TAGS)
        .bind(repository.as_str())
        .bind(page.last.unwrap_or(""))
        .bind(i64::from(page.limit))
        .fetch_all(pool)
        .await?;
    collect(rows).map(Some)
}

pub(crate) async fn manifest_blobs(
    pool: &PgPool,
    repository: &RepositoryName,
    digest: &Digest,
) -> Result<Vec<(Digest, u64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(browse::MANIFEST_BLOBS)
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_all(pool)
        .await?;
    browse::manifest_blobs(rows)
}
