//! Running the server: take the data folder, serve the API, collect garbage in the background,
//! and shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gate::WriteGate;
use crate::registry::{Registry, RegistryError};

/// How long shutdown waits, after cancelling writes, for the last connections to close.
const CLOSE_AFTER_CANCEL: Duration = Duration::from_secs(5);

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another server is using the data folder.
    #[error(
        "another Wharf server is using the data folder {0}; stop it, or give this one another storage.data_dir"
    )]
    DataFolderInUse(String),
    /// The data folder could not be prepared.
    #[error("cannot use the data folder {path}: {error}")]
    DataFolder {
        /// The folder.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The registry could not be opened.
    #[error("cannot open the registry: {0}")]
    Registry(#[from] RegistryError),
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the registry configured by `config` on `listener` until `shutdown` resolves, then
/// lets requests in flight finish for `server.shutdown_grace`, cancels the writes still running
/// (cleanly: nothing half-written becomes visible) and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let _data_lock = lock_data_folder(&config.storage.data_dir)?;
    let gate = WriteGate::new();
    let registry = Registry::open_local(
        &config.data_paths(),
        config.storage.fsync,
        gate.clone(),
        config.limits(),
    )
    .await?;

    let stop_background = CancellationToken::new();
    let gc = config.gc.enabled.then(|| {
        let registry = registry.clone();
        let stop = stop_background.clone();
        let settings = config.gc_settings();
        let interval = config.gc.interval.0;
        tokio::spawn(async move {
            registry
                .collect_garbage_periodically(settings, interval, stop.cancelled_owned())
                .await;
        })
    });

    let address = listener.local_addr()?;
    tracing::info!(%address, data = %config.storage.data_dir.display(), "Wharf is serving on http://{address}");

    let app =
        crate::api::router(registry.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop_accepting = CancellationToken::new();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(stop_accepting.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        result = &mut server => {
            result.map_err(std::io::Error::other)??;
        }
        () = shutdown => {
            tracing::info!(in_flight_writes = gate.in_flight(), "shutting down: finishing requests in flight");
            stop_accepting.cancel();
            let grace = config.server.shutdown_grace.0;
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!(in_flight_writes = gate.in_flight(), "grace period over: cancelling writes in flight");
                gate.cancel_all();
                if tokio::time::timeout(CLOSE_AFTER_CANCEL, &mut server).await.is_err() {
                    tracing::warn!("closing the connections still open");
                    server.abort();
                }
            }
        }
    }

    stop_background.cancel();
    if let Some(gc) = gc {
        let _ = gc.await;
    }
    registry.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Takes an exclusive lock on the data folder (created if missing) for this process's lifetime:
/// uploads in progress are coordinated in memory, so two servers must not share a folder.
fn lock_data_folder(path: &Path) -> Result<std::fs::File, ServeError> {
    let folder_error = |error| ServeError::DataFolder {
        path: path.display().to_string(),
        error,
    };
    std::fs::create_dir_all(path).map_err(folder_error)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join(".lock"))
        .map_err(folder_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServeError::DataFolderInUse(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(error)) => Err(folder_error(error)),
    }
}
