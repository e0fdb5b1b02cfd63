//! What both backends do with their connections: check one given back to its pool, and commit
//! a write at its commit point.

/// Whether `connection`, given back to its pool, is outside any transaction; if not, the pool
/// closes it and opens a fresh one for the next write.
///
/// A transaction dropped without a commit is rolled back by a `ROLLBACK` sqlx queues on the
/// connection. When the database has already ended the transaction itself — SQLite rolls one
/// back when a commit or statement fails because the disk is full — that `ROLLBACK` fails, and
/// sqlx still counts the connection as inside a transaction, refusing every `BEGIN` after: a
/// writer would refuse every write until a restart. A committed transaction costs one check
/// here; only one that was dropped waits for its queued rollback (the ping runs after it).
pub async fn leaves_no_transaction<C: sqlx::Connection>(connection: &mut C) -> sqlx::Result<bool> {
    if connection.is_in_transaction() {
        connection.ping().await?;
    }
    let clean = !connection.is_in_transaction();
    if !clean {
        tracing::warn!(
            "discarding a metadata database connection left inside a failed transaction"
        );
    }
    Ok(clean)
}

/// Commits a write transaction at its commit point: the permit is checked once more, so a write
/// cancelled while it waited for the database (or ran) stops here, with nothing visible.
pub async fn commit<DB: sqlx::Database>(
    tx: sqlx::Transaction<'static, DB>,
    permit: &wharf_gate::WritePermit,
) -> crate::Result<()> {
    permit.check()?;
    tx.commit().await?;
    Ok(())
}
