//! Rows in and out of SQLite ([`wharf_metadata::transfer`]): a backup of PostgreSQL metadata
//! is written into a new SQLite file ([`SnapshotFile`]), the format of every backup, and a
//! restored snapshot is read back out of one ([`SqliteStore::begin_export`]) into PostgreSQL.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use wharf_metadata::rows::corrupt;
use wharf_metadata::transfer::{
    CARRIED_TABLES, Cell, RowSink, RowSource, copy_table, insert_statement, select_statement,
};
use wharf_metadata::{MetadataError, Result};

use crate::SqliteStore;

/// A column: its name and its declared type.
type Columns = Vec<(String, String)>;

/// A table's columns, in order.
async fn columns_of(connection: &mut SqliteConnection, table: &str) -> Result<Columns> {
    let columns: Columns =
        sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
            .bind(table)
            .fetch_all(connection)
            .await?;
    if columns.is_empty() {
        return Err(corrupt(format!("the database has no table {table}")));
    }
    Ok(columns)
}

/// A new SQLite snapshot file being written from another database's rows: the current schema,
/// then the rows in one transaction. Until [`SnapshotFile::finish`] it is no snapshot (a backup
/// that dies meanwhile leaves a file its clean-up removes).
pub struct SnapshotFile {
    pool: SqlitePool,
    connection: PoolConnection<Sqlite>,
    path: PathBuf,
}

impl SnapshotFile {
    /// Creates the file at `path`, which must not exist, with the current schema.
    pub async fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            return Err(corrupt(format!("{} exists already", path.display())));
        }
        // One file, no WAL beside it: the snapshot is copied as that file. Not flushed as it is
        // written — finish() flushes it once, whole.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Off)
            .foreign_keys(false);
        // A pool of one (not a bare connection): the migrator's future on a pool is Send for
        // every lifetime, which a spawned backup needs.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let mut connection = pool.acquire().await?;
        sqlx::query("BEGIN").execute(&mut *connection).await?;
        Ok(SnapshotFile {
            pool,
            connection,
            path: path.to_owned(),
        })
    }

    /// Commits the rows, closes the file and flushes it to disk.
    pub async fn finish(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut *self.connection).await?;
        drop(self.connection);
        self.pool.close().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
            .await
            .map_err(|e| corrupt(format!("flushing the snapshot: {e}")))?
            .map_err(|e| corrupt(format!("flushing {}: {e}", self.path.display())))?;
        Ok(())
    }
}

#[async_trait]
impl RowSink for SnapshotFile {
    async fn insert(&mut self, table: &str, columns: &[String], rows: &[Vec<Cell>]) -> Result<()> {
        let statement = insert_statement(table, columns, |_| "?".to_owned())?;
        for row in rows {
            let mut query = sqlx::query(statement.sql());
            for cell in row {
                query = match cell {
                    Cell::Null => query.bind(None::<i64>),
                    Cell::Integer(v) => query.bind(*v),
                    Cell::Text(v) => query.bind(v.as_str()),
                    Cell::Bytes(v) => query.bind(v.as_slice()),
                };
            }
            query.execute(&mut *self.connection).await?;
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Begins a consistent read of every carried table, for a restore into PostgreSQL.
    pub async fn begin_export(&self) -> Result<Box<dyn RowSource>> {
        let mut tx = self.reader.begin().await?;
        let mut columns = Vec::with_capacity(CARRIED_TABLES.len());
        for table in CARRIED_TABLES {
            columns.push(columns_of(&mut tx, table).await?);
        }
        Ok(Box::new(Export { tx, columns }))
    }
}

/// A read of a SQLite database's rows, in one transaction.
struct Export {
    tx: Transaction<'static, Sqlite>,
    /// Each carried table's columns, in the order of [`CARRIED_TABLES`].
    columns: Vec<Columns>,
}

#[async_trait]
impl RowSource for Export {
    async fn copy_into(mut self: Box<Self>, sink: &mut dyn RowSink) -> Result<()> {
        for (table, columns) in CARRIED_TABLES.iter().zip(&self.columns) {
            let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
            let select = select_statement(table, &names)?;
            let rows = sqlx::query(select.sql()).fetch(&mut *self.tx);
            copy_table(table, &names, rows, |row| cells(row, columns), sink).await?;
        }
        self.tx.rollback().await?;
        Ok(())
    }
}

/// A row's values as cells, by each column's declared type (SQLite's type affinity).
fn cells(row: &SqliteRow, columns: &Columns) -> Result<Vec<Cell>> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, declared))| {
            let declared = declared.to_ascii_uppercase();
            Ok(if declared.contains("INT") {
                row.try_get::<Option<i64>, _>(i)?.map(Cell::Integer)
            } else if declared.contains("BLOB") {
                row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Bytes)
            } else if declared.contains("TEXT") {
                row.try_get::<Option<String>, _>(i)?.map(Cell::Text)
            } else {
                return Err(MetadataError::Corrupt(format!(
                    "column {name} has type {declared}, which backups do not carry"
                )));
            }
            .unwrap_or(Cell::Null))
        })
        .collect()
}
