//! Hearing of hold changes at once: every change of the holds notifies the channel
//! `wharf_holds` in its transaction (PostgreSQL delivers it at the commit), and every replica
//! LISTENs on a connection of its own, outside the pool, so a busy pool never delays it.
//!
//! Notifications are a speed-up, never the guarantee: the gate re-reads the holds every few
//! seconds anyway. So on every (re)connection the replica is told to re-read them (whatever
//! changed while it was disconnected was not notified to it), and it sends itself a
//! notification through the pool to prove that LISTEN delivers: behind PgBouncer's transaction
//! pooling it silently does not, and then the log says so.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::PostgresStore;

/// The channel hold changes are notified on.
const CHANNEL: &str = "wharf_holds";

/// Notifies [`CHANNEL`] with the payload `$1`, after the schema's name: the channel is the
/// database's, and registries in other schemas of it (the tests' among them) ignore it.
pub(crate) const NOTIFY: &str = "SELECT pg_notify('wharf_holds', current_schema() || ' ' || $1)";

/// How long the proof that LISTEN delivers may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait before connecting again after the connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Listens until `stop` is cancelled, calling `changed` for every notification and after every
/// (re)connection.
pub(crate) async fn follow(
    store: &PostgresStore,
    replica: &str,
    changed: &(dyn Fn() + Send + Sync),
    stop: CancellationToken,
) {
    let mut connections = 0u64;
    let mut failing = false;
    while !stop.is_cancelled() {
        connections += 1;
        let probe = format!("probe {replica} {connections}");
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = listen(store, &probe, changed) => outcome,
        };
        match outcome {
            Ok(()) => {
                tracing::warn!(
                    "the connection that listens for hold changes was lost; reconnecting"
                );
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(error = %crate::options::redact_url(&error.to_string()),
                    "cannot listen for hold changes; re-reading the holds every few seconds meanwhile");
            }
            Err(_) => {}
        }
        // Whatever changed while disconnected was not notified: look again.
        changed();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

/// One connection's life: connect, LISTEN, prove delivery, then pass notifications on until the
/// connection is lost (`Ok`) or fails (`Err`).
async fn listen(
    store: &PostgresStore,
    probe: &str,
    changed: &(dyn Fn() + Send + Sync),
) -> Result<(), sqlx::Error> {
    // A pool of one, only so that sqlx's listener can connect; nothing else uses it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(store.acquire_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(store.connect.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&store.pool)
        .await?;
    tracing::info!("listening for hold changes");
    changed();
    sqlx::query(NOTIFY).bind(probe).execute(&store.pool).await?;
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    let mut probing = true;
    loop {
        let next = if probing {
            match tokio::time::timeout_at(deadline, listener.try_recv()).await {
                Ok(next) => next,
                Err(_) => {
                    probing = false;
                    tracing::warn!(
                        "LISTEN does not deliver notifications on this connection (behind \
                         PgBouncer's transaction pooling, say): hold changes are seen when the \
                         holds are re-read, every few seconds, not at once"
                    );
                    continue;
                }
            }
        } else {
            listener.try_recv().await
        };
        let Some(notification) = next? else {
            return Ok(());
        };
        let Some(payload) = notification
            .payload()
            .strip_prefix(schema.as_str())
            .and_then(|rest| rest.strip_prefix(' '))
        else {
            continue;
        };
        if payload == probe {
            probing = false;
            tracing::debug!("LISTEN delivers hold changes");
        } else if !payload.starts_with("probe ") {
            changed();
        }
    }
}
