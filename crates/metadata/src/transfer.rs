//! Copying the metadata's rows from one database to another, whatever their backends: what
//! makes a backup of PostgreSQL metadata (its rows, read in one consistent snapshot, written
//! into a SQLite file — the one format every backup has) and restores a backup into
//! PostgreSQL (the snapshot's rows into an empty database).
//!
//! The two backends' schemas have the same tables and columns (their migrations are kept in
//! step); only the types differ (`BOOLEAN` against `INTEGER`, `BYTEA` against `BLOB`), so a
//! row travels as [`Cell`]s, which each side converts from and to its own column types.

use async_trait::async_trait;
use futures_util::{Stream, TryStreamExt};

use crate::{MetadataError, Result};

/// The tables a backup carries, parents before the children whose foreign keys name them.
/// Not carried: `replicas`, `job_leases` and `job_runs` (the state of the processes running now),
/// `hold_changes` (a counter each database starts for itself), `repository_stats` (derived:
/// the schema's triggers compute it again as the rows are written) and the migrations' own
/// table.
pub const CARRIED_TABLES: &[&str] = &[
    "repositories",
    "blobs",
    "repository_blobs",
    "manifests",
    "manifest_references",
    "tags",
    "upload_sessions",
    "push_manifests",
    "read_only_holds",
    "mode_events",
    "backup_leases",
    "users",
    "organizations",
    "teams",
    "team_members",
    "robots",
    "repository_grants",
    "visibility",
];

/// Columns of carried tables that a backup leaves out: which request holds an upload session
/// (a claim that lapses within seconds; only PostgreSQL has them, for replicas).
pub const UNCARRIED_COLUMNS: &[(&str, &str)] = &[
    ("upload_sessions", "writer"),
    ("upload_sessions", "writer_until"),
];

/// Whether a backup carries `table`'s `column`.
pub fn carries_column(table: &str, column: &str) -> bool {
    !UNCARRIED_COLUMNS.contains(&(table, column))
}

/// How many rows travel to a sink at once.
const BATCH: usize = 256;

/// One value of a row on its way between databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer (booleans travel as 0 and 1).
    Integer(i64),
    /// Text.
    Text(String),
    /// Bytes (a manifest's content, an upload's hash state).
    Bytes(Vec<u8>),
}

impl Cell {
    /// The cell as a boolean column's value, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Cell::Integer(value) => Some(*value != 0),
            _ => None,
        }
    }
}

/// Where copied rows go: a new SQLite snapshot file, or an empty PostgreSQL database.
#[async_trait]
pub trait RowSink: Send {
    /// Inserts `rows`, whose cells are the values of `columns`, into `table`.
    async fn insert(&mut self, table: &str, columns: &[String], rows: &[Vec<Cell>]) -> Result<()>;
}

/// A consistent read of a whole database, begun ([`crate::MetadataStore::begin_export`]): the
/// rows it copies are those of the moment it began, whatever is written meanwhile.
#[async_trait]
pub trait RowSource: Send {
    /// Copies every row of [`CARRIED_TABLES`] into `sink`, table by table in that order.
    async fn copy_into(self: Box<Self>, sink: &mut dyn RowSink) -> Result<()>;
}

/// Copies one table's `rows` (a query's result stream) into `sink` in batches, each row made
/// cells by `cells`: the loop both backends' [`RowSource`]s share.
pub async fn copy_table<R>(
    table: &str,
    columns: &[String],
    mut rows: impl Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin + Send,
    cells: impl Fn(&R) -> Result<Vec<Cell>> + Send,
    sink: &mut dyn RowSink,
) -> Result<()>
where
    R: Send,
{
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(row) = rows.try_next().await? {
        batch.push(cells(&row)?);
        if batch.len() == BATCH {
            sink.insert(table, columns, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        sink.insert(table, columns, &batch).await?;
    }
    Ok(())
}

/// `table` checked to be one of [`CARRIED_TABLES`], so that it may be written into SQL (names
/// are never taken from anywhere else).
pub fn carried(table: &str) -> Result<&'static str> {
    CARRIED_TABLES
        .iter()
        .find(|carried| **carried == table)
        .copied()
        .ok_or_else(|| MetadataError::Corrupt(format!("table {table} is not one a backup carries")))
}

/// `column` checked to be a plain lower-case identifier, as every column of the schema is, so
/// that it may be written into SQL unquoted.
pub fn column_name(column: &str) -> Result<&str> {
    let plain = !column.is_empty()
        && column
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        Ok(column)
    } else {
        Err(MetadataError::Corrupt(format!(
            "column {column:?} is not a plain identifier"
        )))
    }
}

/// A statement built from a carried table's name and plain column names only ([`carried`],
/// [`column_name`]): safe to run, though not a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSql(String);

impl CheckedSql {
    /// The statement, for `sqlx::query`.
    pub fn sql(&self) -> sqlx::AssertSqlSafe<&str> {
        sqlx::AssertSqlSafe(&self.0)
    }

    /// The statement's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `INSERT INTO table (columns) VALUES (placeholders)` for one row, with `placeholder(i)` for
/// the i-th value (counted from 1): `?` for SQLite, `$i` for PostgreSQL.
pub fn insert_statement(
    table: &str,
    columns: &[String],
    placeholder: impl Fn(usize) -> String,
) -> Result<CheckedSql> {
    let table = carried(table)?;
    let names = columns
        .iter()
        .map(|column| column_name(column))
        .collect::<Result<Vec<_>>>()?;
    let values: Vec<String> = (1..=names.len()).map(placeholder).collect();
    Ok(CheckedSql(format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    )))
}

/// `SELECT columns FROM table`.
pub fn select_statement(table: &str, columns: &[String]) -> Result<CheckedSql> {
    let table = carried(table)?;
    let names = columns
        .iter()
        .map(|column| column_name(column))
        .collect::<Result<Vec<_>>>()?;
    Ok(CheckedSql(format!(
        "SELECT {} FROM {table}",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_carried_tables_and_plain_columns_make_statements() {
        let columns = vec!["name".to_owned(), "created_at".to_owned()];
        assert_eq!(
            insert_statement("repositories", &columns, |i| format!("${i}"))
                .unwrap()
                .as_str(),
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2)"
        );
        assert_eq!(
            select_statement("tags", &columns).unwrap().as_str(),
            "SELECT name, created_at FROM tags"
        );
        assert!(select_statement("replicas", &columns).is_err());
        assert!(select_statement("tags; DROP TABLE tags", &columns).is_err());
        let quoted = vec!["name\"; --".to_owned()];
        assert!(insert_statement("tags", &quoted, |_| "?".to_owned()).is_err());
    }
}
