//! Running the server: take the data folder, serve the API (over TLS when configured), follow
//! holds and drains, collect garbage in the background, follow the configuration file and the
//! TLS files, and shut down gracefully.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::AppState;
use crate::api::admin::AdminAccess;
use crate::api::auth::ApiAuth;
use crate::connections::{ConnectionLimits, raise_open_file_limit, serve_connections};
use crate::tls::{CertificateReloader, TlsError};
use wharf_auth::keys::SigningKeys;
use wharf_auth::{ADMIN_PASSWORD_VARIABLE, Authenticator};
use wharf_config::reload::{Reloader, watch_folder};
use wharf_config::{AuthMode, Config, ConfigError, HOT_KEYS, ReadOnlyConfig};
use wharf_gate::holds::CONFIG_HOLD;
use wharf_gate::{HoldError, HoldName, HoldRequest, HoldSource, WriteGate};
use wharf_registry::{Registry, RegistryError};

/// How long shutdown waits, after cancelling writes, for the last connections to close.
const CLOSE_AFTER_CANCEL: Duration = Duration::from_secs(5);
/// Events in the configuration file's folder come in bursts (an editor's save, a symlink swap):
/// the file is read once they settle.
const RELOAD_SETTLE: Duration = Duration::from_millis(100);
/// How often the configuration file's hold is checked against the file even without a change
/// (applying it may have failed, say, on a busy database).
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// Who the configuration file's hold is set by, in the audit trail.
const CONFIG_ACTOR: &str = "configuration file";

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
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry could not be opened. Its error is in the message, not a source too: a
    /// source would be printed a second time after it (`wharf: {error:#}`).
    #[error("cannot open the registry: {0}")]
    Registry(RegistryError),
    /// Authentication could not be set up.
    #[error("cannot set up authentication: {0}")]
    Auth(String),
    /// The TLS certificate cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The configuration file's read-only hold could not be applied.
    #[error("cannot apply read_only from the configuration: {0}")]
    Hold(#[from] HoldError),
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<RegistryError> for ServeError {
    fn from(error: RegistryError) -> Self {
        ServeError::Registry(error)
    }
}

/// Applies a new log filter; the logger belongs to the binary.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the server needs besides its configuration to follow the configuration's changes.
#[derive(Default)]
pub struct ServeOptions {
    /// The file the configuration was loaded from; its folder is watched for changes.
    pub config_file: Option<PathBuf>,
    /// The environment the configuration was loaded with (its `WHARF_*` overrides apply to
    /// reloads too, and `WHARF_ADMIN_PASSWORD` may give the first superuser's password).
    pub environment: Vec<(String, String)>,
    /// Notified to re-read the configuration file (the binary does so on SIGHUP).
    pub reload: Option<Arc<Notify>>,
    /// Serve without authentication on an address other than loopback (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Applies `log.level` when it changes.
    pub set_log_level: Option<LogLevelSetter>,
}

/// Serves the registry configured by `config` on `listener` until `shutdown` resolves. See
/// [`serve_with`]; this one does not follow a configuration file.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(config, listener, shutdown, ServeOptions::default()).await
}

/// Serves the registry configured by `config` on `listener` until `shutdown` resolves, then
/// lets requests in flight finish for `server.shutdown_grace`, cancels the writes still running
/// (cleanly: nothing half-written becomes visible) and returns.
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let address = listener.local_addr()?;
    if config.auth.mode == AuthMode::None
        && !address.ip().to_canonical().is_loopback()
        && !options.insecure_no_auth
    {
        return Err(ServeError::Config(ConfigError(format!(
            "refusing to serve on {address} without authentication: set auth.mode: token, \
             listen on a loopback address, or pass --insecure-no-auth if something in front of \
             Wharf authenticates"
        ))));
    }
    // First, before the database and the files are opened: every connection takes a file.
    let limits = ConnectionLimits::new(&config.server, raise_open_file_limit());
    // With SQLite, uploads in progress are coordinated in this process: one server per data
    // folder. PostgreSQL is shared by every server of the registry, so nothing is locked.
    let _data_lock = if config.metadata.database().needs_data_folder_lock() {
        Some(lock_data_folder(&config.storage.data_dir)?)
    } else {
        None
    };
    let registry = config.open_registry().await?;
    let gate = registry.gate().clone();
    gate.set_cluster_settings(config.cluster_settings());
    apply_read_only(&gate, &config.read_only).await?;
    let admin = Arc::new(AdminAccess {
        gc: config.gc_settings(),
    });
    let certificate = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(CertificateReloader::load(cert, key)?),
        _ => None,
    };
    let auth = ApiAuth {
        authenticator: match config.auth.mode {
            AuthMode::None => None,
            AuthMode::Token => Some(
                open_authenticator(
                    &config,
                    &registry,
                    variable(&options.environment, ADMIN_PASSWORD_VARIABLE),
                )
                .await?,
            ),
        },
        scheme: if certificate.is_some() {
            "https"
        } else {
            "http"
        },
    };

    let background = TaskTracker::new();
    let stop_background = CancellationToken::new();
    background.spawn({
        let gate = gate.clone();
        let stop = stop_background.clone();
        async move { gate.run(stop).await }
    });
    // Every replica's row in the database: what the state report lists, and what a drain and
    // a wait for read-only on every replica read.
    background.spawn({
        let gate = gate.clone();
        let stop = stop_background.clone();
        let advertised = config
            .cluster
            .advertise_address
            .clone()
            .unwrap_or_else(|| format!("{}:{}", wharf_gate::host_name(), address.port()));
        async move { gate.publish_heartbeats(advertised, stop).await }
    });
    if config.gc.enabled {
        let registry = registry.clone();
        let stop = stop_background.clone();
        let (settings, interval) = (config.gc_settings(), config.gc.interval.0);
        background.spawn(async move {
            registry
                .collect_garbage_periodically(settings, interval, stop.cancelled_owned())
                .await;
        });
    }
    // A reload request (SIGHUP) re-reads the configuration file and the TLS files.
    let reload_requests = fan_out(
        options.reload.unwrap_or_default(),
        3,
        stop_background.clone(),
        &background,
    );
    if let Some(path) = options.config_file.clone() {
        let follower = ConfigFollower {
            reloader: Reloader::new(path, options.environment.clone()),
            running: config.clone(),
            gate: gate.clone(),
            set_log_level: options.set_log_level,
        };
        background.spawn(follower.run(reload_requests[0].clone(), stop_background.clone()));
    }
    if let Some(certificate) = &certificate {
        background.spawn(
            certificate
                .clone()
                .follow(reload_requests[1].clone(), stop_background.clone()),
        );
    }
    if let Some(authenticator) = &auth.authenticator
        && !config.auth.signing_keys.is_empty()
    {
        background.spawn(crate::key_files::follow(
            authenticator.clone(),
            config.auth.signing_keys.clone(),
            config.storage.data_dir.clone(),
            reload_requests[2].clone(),
            stop_background.clone(),
        ));
    }
    background.close();

    let scheme = auth.scheme;
    let metadata = if config.metadata.is_postgres() {
        config.metadata.url.redacted()
    } else {
        config.data_paths().metadata.display().to_string()
    };
    tracing::info!(%address, data = %config.storage.data_dir.display(), %metadata, "Wharf is serving on {scheme}://{address}");

    let state = AppState {
        registry: registry.clone(),
        admin,
        auth,
    };
    let app = crate::api::router(state);
    let tls = match &certificate {
        Some(certificate) => Some(TlsAcceptor::from(certificate.server_config()?)),
        None => None,
    };
    let stop_accepting = CancellationToken::new();
    let stopped = stop_accepting.clone().cancelled_owned();
    // Aborting this task closes every connection still open.
    let mut server = tokio::spawn(serve_connections(listener, tls, app, limits, stopped));

    tokio::select! {
        result = &mut server => {
            // It ends only after `stop_accepting`, unless it panicked.
            result.map_err(std::io::Error::other)?;
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
    background.wait().await;
    registry.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn variable(environment: &[(String, String)], name: &str) -> Option<String> {
    environment
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// Copies each notification of `source` to `n` new notifies (one per follower: a `Notify`
/// wakes one waiter only).
fn fan_out(
    source: Arc<Notify>,
    n: usize,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Vec<Arc<Notify>> {
    let targets: Vec<Arc<Notify>> = (0..n).map(|_| Arc::new(Notify::new())).collect();
    let copies = targets.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = source.notified() => copies.iter().for_each(|t| t.notify_one()),
            }
        }
    });
    targets
}

/// The authenticator of `auth.mode: token`: its signing keys, and the first superuser.
async fn open_authenticator(
    config: &Config,
    registry: &Registry,
    admin_password: Option<String>,
) -> Result<Arc<Authenticator>, ServeError> {
    let keys = SigningKeys::load(&config.auth.signing_keys, &config.storage.data_dir)
        .map_err(|e| ServeError::Auth(e.to_string()))?;
    let authenticator =
        Authenticator::new(registry.metadata().clone(), keys, config.auth_settings());
    authenticator
        .create_first_superuser(
            &registry.gate().control_write(),
            &config.storage.data_dir,
            admin_password,
        )
        .await
        .map_err(|e| ServeError::Auth(e.to_string()))?;
    Ok(Arc::new(authenticator))
}

/// Makes the configuration file's hold (`config`) match its `read_only` section.
async fn apply_read_only(gate: &WriteGate, read_only: &ReadOnlyConfig) -> Result<(), HoldError> {
    let name: HoldName = CONFIG_HOLD
        .parse()
        .map_err(|_| HoldError::ManagedByConfig)?;
    let current = gate.snapshot().holds.into_iter().find(|h| h.name == name);
    match (read_only.enabled, current) {
        (true, Some(hold)) if hold.reason == read_only.reason.trim() => {}
        (true, _) => {
            let request = HoldRequest {
                name,
                reason: read_only.reason.clone(),
                ttl: None,
                actor: CONFIG_ACTOR.to_owned(),
                source: HoldSource::Config,
            };
            gate.set_hold(request).await?;
        }
        (false, Some(_)) => {
            gate.release_hold(&name, CONFIG_ACTOR, HoldSource::Config)
                .await?;
        }
        (false, None) => {}
    }
    Ok(())
}

/// Follows the configuration file: applies what can change at runtime, says what needs a restart.
struct ConfigFollower {
    reloader: Reloader,
    running: Config,
    gate: WriteGate,
    set_log_level: Option<LogLevelSetter>,
}

impl ConfigFollower {
    async fn run(mut self, requests: Arc<Notify>, stop: CancellationToken) {
        let changes = Arc::new(Notify::new());
        let _watch = match watch_folder(self.reloader.path(), changes.clone()) {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::error!(
                    file = %self.reloader.path().display(), %error,
                    "cannot watch the configuration file; it is re-read on SIGHUP only"
                );
                None
            }
        };
        // Read once now that the folder is watched: the file may have changed since the running
        // configuration was loaded, and no event would tell.
        let mut settled = true;
        loop {
            let mut signalled = false;
            if !settled {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = changes.notified() => {}
                    () = requests.notified() => signalled = true,
                    () = tokio::time::sleep(RECONCILE_EVERY) => {
                        self.reconcile_read_only().await;
                        continue;
                    }
                }
                tokio::time::sleep(RELOAD_SETTLE).await;
            }
            settled = false;
            let changed = self.reloader.reload();
            let applied = changed.is_some();
            if let Some(config) = changed {
                self.apply(config).await;
            }
            if signalled {
                tracing::info!(file = %self.reloader.path().display(), applied, "configuration re-read on SIGHUP");
            }
        }
    }

    async fn apply(&mut self, config: Config) {
        let changed = self.running.changed_keys(&config);
        if changed.is_empty() {
            return;
        }
        tracing::info!(file = %self.reloader.path().display(), changed = ?changed, "configuration file changed");
        for key in changed.iter().filter(|k| !HOT_KEYS.contains(&k.as_str())) {
            tracing::warn!(
                "{key} changed in the configuration file; it takes effect after a restart"
            );
        }
        let read_only_changed = config.read_only != self.running.read_only;
        if config.drain != self.running.drain {
            self.gate.set_drain_settings(config.drain_settings());
        }
        if config.log.level != self.running.log.level
            && let Some(set) = &self.set_log_level
            && let Err(error) = set(&config.log.level)
        {
            tracing::error!(%error, "cannot apply log.level from the configuration file");
        }
        self.running = config;
        if read_only_changed {
            self.reconcile_read_only().await;
        }
    }

    /// Makes the `config` hold match the running configuration (a no-op when it does).
    async fn reconcile_read_only(&self) {
        if let Err(error) = apply_read_only(&self.gate, &self.running.read_only).await {
            tracing::error!(%error, "cannot apply read_only from the configuration file; retrying");
        }
    }
}

/// The exclusive right to a data folder, held until dropped.
#[derive(Debug)]
pub struct DataFolderLock(#[allow(dead_code)] std::fs::File);

/// Takes an exclusive lock on the data folder (created if missing): uploads in progress are
/// coordinated in memory, so two servers must not share a folder, and a maintenance command
/// that writes must go through the server's gate when one runs. Fails with
/// [`ServeError::DataFolderInUse`] when another process holds it.
pub fn lock_data_folder(path: &Path) -> Result<DataFolderLock, ServeError> {
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
        Ok(()) => Ok(DataFolderLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServeError::DataFolderInUse(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(error)) => Err(folder_error(error)),
    }
}
