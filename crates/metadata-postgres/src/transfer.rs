//! Backups of PostgreSQL metadata and restores into it ([`wharf_metadata::transfer`]).
//!
//! A backup reads every carried table in one `REPEATABLE READ` transaction: its rows are those
//! of the moment the transaction took its snapshot, which happens while the registry is held
//! read-only; the copy itself runs after the hold is released, so the registry is read-only
//! for as long as the drain and that first statement take, not for the copy.
//!
//! A restore writes a snapshot's rows into an empty database in one transaction: a restore
//! that fails or is killed leaves the database as empty as it found it.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use wharf_metadata::transfer::{
    CARRIED_TABLES, Cell, RowSink, RowSource, carries_column, copy_table, insert_statement,
    select_statement,
};
use wharf_metadata::{MetadataError, Result};

use crate::PostgresStore;

/// Every carried table's columns with their types, in the current schema, in column order.
const COLUMNS: &str = "SELECT table_name::text, column_name::text, data_type::text
     FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ANY($1)
     ORDER BY table_name, ordinal_position";

/// A column: its name and its PostgreSQL type.
type Columns = Vec<(String, String)>;

/// The columns of every carried table, read in `tx`.
async fn carried_columns(
    tx: &mut Transaction<'static, Postgres>,
) -> Result<HashMap<String, Columns>> {
    let tables: Vec<String> = CARRIED_TABLES.iter().map(|t| (*t).to_owned()).collect();
    let rows: Vec<(String, String, String)> = sqlx::query_as(COLUMNS)
        .bind(&tables)
        .fetch_all(&mut **tx)
        .await?;
    let mut columns: HashMap<String, Columns> = HashMap::new();
    for (table, column, kind) in rows {
        if carries_column(&table, &column) {
            columns.entry(table).or_default().push((column, kind));
        }
    }
    for table in CARRIED_TABLES {
        if !columns.contains_key(*table) {
            return Err(MetadataError::Corrupt(format!(
                "the database has no table {table}"
            )));
        }
    }
    Ok(columns)
}

impl PostgresStore {
    /// Begins a backup's read: the transaction, and its snapshot taken by its first statement.
    pub(crate) async fn begin_export(&self) -> Result<Box<dyn RowSource>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // The copy of a large registry may take longer than one statement may.
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        // The first query takes the transaction's snapshot: from here on, every read sees the
        // database as it is now.
        let columns = carried_columns(&mut tx).await?;
        Ok(Box::new(Export { tx, columns }))
    }

    /// Begins a restore into this database, which must hold no registry yet: no row in any
    /// carried table (a server started on it would have created its superuser).
    pub async fn begin_import(&self) -> Result<Import> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let columns = carried_columns(&mut tx).await?;
        if let Some(table) = first_used_table(&mut tx).await? {
            return Err(MetadataError::Settings(holds_a_registry(table)));
        }
        Ok(Import { tx, columns })
    }

    /// Why this database cannot be restored into, if it cannot: it holds a registry already.
    pub async fn refuses_restore(&self) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let used = first_used_table(&mut tx).await?;
        tx.rollback().await?;
        Ok(used.map(holds_a_registry))
    }
}

/// The first carried table that has a row.
async fn first_used_table(tx: &mut Transaction<'static, Postgres>) -> Result<Option<&'static str>> {
    for table in CARRIED_TABLES {
        let used: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            // A name from CARRIED_TABLES, not from input.
            "SELECT EXISTS (SELECT 1 FROM {table})"
        )))
        .fetch_one(&mut **tx)
        .await?;
        if used {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

fn holds_a_registry(table: &str) -> String {
    format!(
        "the PostgreSQL database already holds a registry (its table {table} has rows); restore \
         into an empty database"
    )
}

/// A backup's read of the database, as of its snapshot.
struct Export {
    tx: Transaction<'static, Postgres>,
    columns: HashMap<String, Columns>,
}

#[async_trait]
impl RowSource for Export {
    async fn copy_into(mut self: Box<Self>, sink: &mut dyn RowSink) -> Result<()> {
        for table in CARRIED_TABLES {
            let columns = &self.columns[*table];
            let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
            let select = select_statement(table, &names)?;
            let rows = sqlx::query(select.sql()).fetch(&mut *self.tx);
            copy_table(table, &names, rows, |row| cells(row, columns), sink).await?;
        }
        self.tx.rollback().await?;
        Ok(())
    }
}

/// A row's values as cells.
fn cells(row: &PgRow, columns: &Columns) -> Result<Vec<Cell>> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            Ok(match kind.as_str() {
                "bigint" => row.try_get::<Option<i64>, _>(i)?.map(Cell::Integer),
                "integer" => row
                    .try_get::<Option<i32>, _>(i)?
                    .map(|v| Cell::Integer(v.into())),
                "boolean" => row
                    .try_get::<Option<bool>, _>(i)?
                    .map(|v| Cell::Integer(v.into())),
                "text" => row.try_get::<Option<String>, _>(i)?.map(Cell::Text),
                "bytea" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Bytes),
                other => return Err(unsupported(name, other)),
            }
            .unwrap_or(Cell::Null))
        })
        .collect()
}

fn unsupported(column: &str, kind: &str) -> MetadataError {
    MetadataError::Corrupt(format!(
        "column {column} has type {kind}, which backups do not carry"
    ))
}

/// A restore into an empty database, in one transaction: nothing is visible until
/// [`Import::commit`].
pub struct Import {
    tx: Transaction<'static, Postgres>,
    columns: HashMap<String, Columns>,
}

impl Import {
    /// Makes the restored rows visible. The identity columns' sequences continue after the
    /// restored ids, so new rows do not collide with them.
    pub async fn commit(mut self) -> Result<()> {
        for table in CARRIED_TABLES {
            // Text ids (upload sessions', backup leases') have no sequence.
            let numbered = self.columns[*table]
                .iter()
                .any(|(name, kind)| name == "id" && kind == "bigint");
            if numbered {
                // A name from CARRIED_TABLES, not from input.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence($1, 'id')::regclass, MAX(id)) FROM {table}
                     HAVING MAX(id) IS NOT NULL"
                )))
                .bind(table)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl RowSink for Import {
    async fn insert(&mut self, table: &str, columns: &[String], rows: &[Vec<Cell>]) -> Result<()> {
        let known = self.columns.get(table).ok_or_else(|| {
            MetadataError::Corrupt(format!(
                "the backup has a table {table} this Wharf does not"
            ))
        })?;
        let kinds = columns
            .iter()
            .map(|column| {
                known
                    .iter()
                    .find(|(name, _)| name == column)
                    .map(|(_, kind)| kind.as_str())
                    .ok_or_else(|| {
                        MetadataError::Corrupt(format!(
                            "the backup's table {table} has a column {column} this Wharf does not"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let statement = insert_statement(table, columns, |i| format!("${i}"))?;
        for row in rows {
            let mut query = sqlx::query(statement.sql());
            for ((cell, kind), column) in row.iter().zip(&kinds).zip(columns) {
                let mismatch = || {
                    MetadataError::Corrupt(format!(
                        "the backup's {table}.{column} holds {cell:?}, not a {kind}"
                    ))
                };
                query = match (*kind, cell) {
                    ("bigint", Cell::Integer(v)) => query.bind(*v),
                    ("bigint", Cell::Null) => query.bind(None::<i64>),
                    ("integer", Cell::Integer(v)) => {
                        query.bind(i32::try_from(*v).map_err(|_| mismatch())?)
                    }
                    ("integer", Cell::Null) => query.bind(None::<i32>),
                    ("boolean", Cell::Null) => query.bind(None::<bool>),
                    ("boolean", cell) => query.bind(cell.as_bool().ok_or_else(mismatch)?),
                    ("text", Cell::Text(v)) => query.bind(v.as_str()),
                    ("text", Cell::Null) => query.bind(None::<String>),
                    ("bytea", Cell::Bytes(v)) => query.bind(v.as_slice()),
                    ("bytea", Cell::Null) => query.bind(None::<Vec<u8>>),
                    ("bigint" | "integer" | "text" | "bytea", _) => return Err(mismatch()),
                    (other, _) => return Err(unsupported(column, other)),
                };
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}
