//! What the web UI reads that the Distribution API does not: repositories with their last push
//! and size, sorted and searched, a page at a time; a repository's tags with their manifests.
//!
//! Pages continue after a key (keyset pagination), never at an offset, so the thousandth page of
//! 100,000 repositories reads as few rows as the first: the sorts read the indexes of
//! `repository_stats` (migration 0009, kept up to date by triggers). The SQL reads the same on
//! both backends and lives here once.

use wharf_core::digest::Digest;
use wharf_core::time::Millis;

use crate::rows::{parse, to_u64};
use crate::{MetadataError, Result};

/// How repositories are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepositorySort {
    /// By name, A to Z.
    #[default]
    Name,
    /// The last pushed first.
    LastPush,
    /// The largest first.
    Size,
}

/// Where a page of repositories continues: after this repository, in the order asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryCursor {
    /// The sort key of the last repository shown (its last push or size; unused by name).
    pub key: i64,
    /// Its name (the key when sorted by name).
    pub name: String,
    /// Its id, which breaks ties between equal keys.
    pub id: i64,
}

/// A request for a page of repositories.
#[derive(Debug, Clone)]
pub struct RepositoryQuery<'a> {
    /// The order.
    pub sort: RepositorySort,
    /// Only repositories whose name contains this (empty: all).
    pub search: &'a str,
    /// Continue after this one; `None` starts at the beginning.
    pub after: Option<&'a RepositoryCursor>,
    /// The most repositories to return.
    pub limit: u32,
}

/// A repository as the UI lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySummary {
    /// The repository's id (the tie-breaker of pages).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// When a manifest was last put or a tag last moved in it.
    pub last_push_at: Millis,
    /// Its manifests, plus each blob they reference, counted once.
    pub size: u64,
    /// How many manifests it holds.
    pub manifests: u64,
    /// How many tags it has.
    pub tags: u64,
}

impl RepositorySummary {
    /// Where the page after this repository starts, in `sort`'s order.
    pub fn cursor(&self, sort: RepositorySort) -> RepositoryCursor {
        let key = match sort {
            RepositorySort::Name => 0,
            RepositorySort::LastPush => self.last_push_at,
            RepositorySort::Size => i64::try_from(self.size).unwrap_or(i64::MAX),
        };
        RepositoryCursor {
            key,
            name: self.name.clone(),
            id: self.id,
        }
    }
}

/// A tag as the UI lists it, with its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSummary {
    /// The tag.
    pub name: String,
    /// The manifest it points at.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest, the blobs it references and (an index) those of its manifests.
    pub size: u64,
    /// When the tag was last pointed at its manifest.
    pub pushed_at: Millis,
    /// The manifest's bytes (an index names its platforms).
    pub content: Vec<u8>,
}

macro_rules! repositories_query {
    ($page:literal) => {
        concat!(
            "SELECT r.id, r.name, s.last_push_at, s.size, s.manifests,
                    (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags
             FROM repositories r JOIN repository_stats s ON s.repository_id = r.id
             WHERE s.manifests > 0 AND r.name LIKE $1 ESCAPE '\\' ",
            $page
        )
    };
}

/// Repositories by name whose name matches the `LIKE` pattern `$1`, after name `$2`, at
/// most `$3`.
pub const REPOSITORIES_BY_NAME: &str =
    repositories_query!("AND r.name > $2 ORDER BY r.name LIMIT $3");

/// As [`REPOSITORIES_BY_NAME`], the last pushed first, after last push `$2` and id `$3`.
pub const REPOSITORIES_BY_PUSH: &str = repositories_query!(
    "AND (s.last_push_at, s.repository_id) < ($2, $3)
     ORDER BY s.last_push_at DESC, s.repository_id DESC LIMIT $4"
);

/// As [`REPOSITORIES_BY_NAME`], the largest first, after size `$2` and id `$3`.
pub const REPOSITORIES_BY_SIZE: &str = repositories_query!(
    "AND (s.size, s.repository_id) < ($2, $3)
     ORDER BY s.size DESC, s.repository_id DESC LIMIT $4"
);

/// What a backend binds to the query of `query.sort`.
pub enum RepositoryParams {
    /// [`REPOSITORIES_BY_NAME`]: pattern, name after, limit.
    ByName(String, String, i64),
    /// [`REPOSITORIES_BY_PUSH`] or [`REPOSITORIES_BY_SIZE`]: pattern, key after, id after, limit.
    ByKey(String, i64, i64, i64),
}

impl RepositoryParams {
    /// The query and its parameters for `query`.
    pub fn of(query: &RepositoryQuery<'_>) -> (&'static str, RepositoryParams) {
        let pattern = like_pattern(query.search);
        let limit = i64::from(query.limit);
        match query.sort {
            RepositorySort::Name => (
                REPOSITORIES_BY_NAME,
                RepositoryParams::ByName(
                    pattern,
                    query.after.map(|c| c.name.clone()).unwrap_or_default(),
                    limit,
                ),
            ),
            sort => {
                let sql = if sort == RepositorySort::LastPush {
                    REPOSITORIES_BY_PUSH
                } else {
                    REPOSITORIES_BY_SIZE
                };
                let (key, id) = query.after.map_or((i64::MAX, i64::MAX), |c| (c.key, c.id));
                (sql, RepositoryParams::ByKey(pattern, key, id, limit))
            }
        }
    }
}

/// `%text%` with `LIKE`'s wildcards in `text` escaped, so a search finds what was typed.
pub fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A page of repository `$1`'s tags after `$2`, at most `$3`, with their manifests and sizes.
pub const TAGS: &str = "SELECT t.name, m.digest, m.media_type, t.updated_at, m.content,
            m.size + CAST(coalesce((SELECT sum(b.size) FROM blobs b WHERE b.digest IN (
                SELECT mr.child_digest FROM manifest_references mr
                WHERE mr.repository_id = m.repository_id AND mr.child_kind = 'blob'
                  AND (mr.manifest_digest = m.digest OR mr.manifest_digest IN (
                      SELECT c.child_digest FROM manifest_references c
                      WHERE c.repository_id = m.repository_id AND c.manifest_digest = m.digest
                        AND c.child_kind = 'manifest')))), 0) AS BIGINT) AS size
     FROM repositories r
     JOIN tags t ON t.repository_id = r.id
     JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
     WHERE r.name = $1 AND t.name > $2
     ORDER BY t.name LIMIT $3";

/// A row of [`repositories_sql`].
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct RepositorySummaryRow {
    pub id: i64,
    pub name: String,
    pub last_push_at: i64,
    pub size: i64,
    pub manifests: i64,
    pub tags: i64,
}

impl TryFrom<RepositorySummaryRow> for RepositorySummary {
    type Error = MetadataError;
    fn try_from(row: RepositorySummaryRow) -> Result<Self> {
        Ok(RepositorySummary {
            id: row.id,
            name: row.name,
            last_push_at: row.last_push_at,
            size: to_u64(row.size)?,
            manifests: to_u64(row.manifests)?,
            tags: to_u64(row.tags)?,
        })
    }
}

/// A row of [`TAGS`].
#[derive(sqlx::FromRow)]
#[allow(missing_docs)]
pub struct TagSummaryRow {
    pub name: String,
    pub digest: String,
    pub media_type: String,
    pub updated_at: i64,
    pub content: Vec<u8>,
    pub size: i64,
}

impl TryFrom<TagSummaryRow> for TagSummary {
    type Error = MetadataError;
    fn try_from(row: TagSummaryRow) -> Result<Self> {
        Ok(TagSummary {
            name: row.name,
            digest: parse(&row.digest, "digest")?,
            media_type: row.media_type,
            size: to_u64(row.size)?,
            pushed_at: row.updated_at,
            content: row.content,
        })
    }
}

/// Binds a [`RepositoryParams`] to `$query` (a `sqlx` query of [`RepositoryParams::of`]'s
/// statement, or of an `EXPLAIN` of it), whichever backend it is for.
#[macro_export]
macro_rules! bind_repository_params {
    ($query:expr, $params:expr) => {
        match $params {
            $crate::browse::RepositoryParams::ByName(pattern, after, limit) => {
                $query.bind(pattern).bind(after).bind(limit)
            }
            $crate::browse::RepositoryParams::ByKey(pattern, key, id, limit) => {
                $query.bind(pattern).bind(key).bind(id).bind(limit)
            }
        }
    };
}

/// The web UI's reads over a backend's pool, written once: each backend's `browse.rs` expands
/// it with its pool and database types (`browse_reads!(sqlx::SqlitePool, sqlx::Sqlite)`). A
/// macro rather than functions generic over `sqlx::Database`: the binding and decoding bounds
/// such functions need would be longer than the three functions.
#[macro_export]
macro_rules! browse_reads {
    ($pool:ty, $db:ty) => {
        pub(crate) async fn repositories(
            pool: &$pool,
            query: &$crate::browse::RepositoryQuery<'_>,
        ) -> $crate::Result<Vec<$crate::browse::RepositorySummary>> {
            let (statement, params) = $crate::browse::RepositoryParams::of(query);
            let statement =
                ::sqlx::query_as::<$db, $crate::browse::RepositorySummaryRow>(statement);
            let rows = $crate::bind_repository_params!(statement, params)
                .fetch_all(pool)
                .await?;
            $crate::rows::collect(rows)
        }

        pub(crate) async fn tags(
            pool: &$pool,
            repository: &::wharf_core::reference::RepositoryName,
            page: $crate::Page<'_>,
        ) -> $crate::Result<Option<Vec<$crate::browse::TagSummary>>> {
            let exists: bool = ::sqlx::query_scalar($crate::sql::REPOSITORY_EXISTS)
                .bind(repository.as_str())
                .fetch_one(pool)
                .await?;
            if !exists {
                return Ok(None);
            }
            let rows: Vec<$crate::browse::TagSummaryRow> = ::sqlx::query_as($crate::browse::TAGS)
                .bind(repository.as_str())
                .bind(page.last.unwrap_or(""))
                .bind(i64::from(page.limit))
                .fetch_all(pool)
                .await?;
            $crate::rows::collect(rows).map(Some)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_escapes_wildcards() {
        assert_eq!(like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
        assert_eq!(like_pattern(""), "%%");
    }
}
