//! Where a command that changes the registry sends its admin API requests: to the server running
//! on the data folder (or at `--url`), or — with no server running — to the same API served in
//! this process over the data folder itself, which stays locked meanwhile so no server starts.
//! One set of requests therefore works both ways, and a stopped registry is managed by whoever
//! may read its data folder (such as root recovering a lost superuser password). With
//! PostgreSQL metadata, which several processes share, a command without `--url` acts in
//! process on the database, whether servers run on it or not, and locks nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use serde_json::Value;
use tower::ServiceExt;
use wharf_config::Config;
use wharf_registry::Registry;
use wharf_server::ServeError;
use wharf_server::api::AppState;
use wharf_server::api::admin::AdminAccess;
use wharf_server::api::auth::ApiAuth;
use wharf_server::server::{DataFolderLock, lock_data_folder};

use crate::admin_client::{AdminClient, refusal};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The most an in-process answer may be (listings are small).
const MAX_ANSWER: usize = 64 << 20;

/// Which registry a command talks to, and how it prints the answers.
#[derive(clap::Args)]
pub struct Via {
    /// The registry's URL (default: the server running on the configured data folder, else that
    /// folder itself; it must hold a registry).
    #[arg(long, env = "WHARF_URL", global = true)]
    pub url: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where a command finds the registry it acts on. It never guesses: a command that changes or
/// reads a registry acts on the one named by `--url`, or on the data folder the configuration
/// names (`--config`, `WHARF_CONFIG`, `WHARF_STORAGE_DATA_DIR`, else `./wharf-data`) — through
/// the server running on it if there is one — and that folder must hold a registry already:
/// only `wharf serve` creates one. Acting on a folder created by mistake would report success
/// for a registry nobody uses (a backup taken while the real one is still written).
pub enum Location {
    /// The server at `--url`.
    Url(String),
    /// The server running on the configured data folder (which it holds locked).
    Server,
    /// The configured data folder, with no server running; locked for as long as this lives
    /// (with SQLite metadata; with PostgreSQL there is no lock, and servers may be running).
    Folder(Option<DataFolderLock>),
}

impl Location {
    /// Finds the registry: see [`Location`].
    pub fn find(config: &Config, url: Option<&str>) -> anyhow::Result<Location> {
        if let Some(url) = url {
            return Ok(Location::Url(url.to_owned()));
        }
        let data_dir = &config.storage.data_dir;
        let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.clone());
        if config.metadata.is_postgres() {
            // The database says whether it holds a registry; the blobs' folder must exist.
            if !data_dir.is_dir() {
                anyhow::bail!(
                    "no registry to act on: the data folder {} (its blob storage) does not \
                     exist; only `wharf serve` creates one",
                    shown.display()
                );
            }
            return Ok(Location::Folder(None));
        }
        if !config.data_paths().metadata.is_file() {
            let what = if data_dir.is_dir() {
                "holds no Wharf registry (no metadata.db)"
            } else {
                "does not exist"
            };
            anyhow::bail!(
                "no registry to act on: the data folder {} {what}; name the registry with \
                 --url URL (or WHARF_URL) for a running server, or --config FILE (or \
                 WHARF_CONFIG) for its configuration, or run this where its wharf-data folder is",
                shown.display()
            );
        }
        match lock_data_folder(data_dir) {
            Ok(lock) => Ok(Location::Folder(Some(lock))),
            Err(ServeError::DataFolderInUse(_)) => Ok(Location::Server),
            Err(error) => Err(error.into()),
        }
    }

    /// A client of the server this is, or the data folder's lock (if it has one) when the
    /// command acts on the registry in process.
    pub fn into_client(
        self,
        config: &Config,
    ) -> anyhow::Result<Result<AdminClient, Option<DataFolderLock>>> {
        Ok(match self {
            Location::Url(url) => Ok(AdminClient::new(Some(&url), config)?),
            Location::Server => Ok(AdminClient::new(None, config)?),
            Location::Folder(lock) => Err(lock),
        })
    }
}

/// A registry to send admin requests to.
pub enum Target {
    /// A running server.
    Remote(AdminClient),
    /// The data folder, with no server running.
    Local {
        router: axum::Router,
        registry: Registry,
        folder: std::path::PathBuf,
        /// The PostgreSQL database, shown without its password, if the metadata is there.
        database: Option<String>,
        _lock: Option<DataFolderLock>,
    },
}

impl Target {
    /// The registry the command names (see [`Location`]): a server, or the data folder itself
    /// served in process.
    pub async fn open(config: &Config, url: Option<&str>) -> anyhow::Result<Target> {
        let lock = match Location::find(config, url)?.into_client(config)? {
            Ok(client) => return Ok(Target::Remote(client)),
            Err(lock) => lock,
        };
        let registry = config.open_registry().await?;
        let state = AppState {
            registry: registry.clone(),
            admin: Arc::new(AdminAccess {
                gc: config.gc_settings(),
            }),
            auth: ApiAuth::off(),
        };
        let folder = &config.storage.data_dir;
        Ok(Target::Local {
            router: wharf_server::api::router(state),
            registry,
            folder: std::path::absolute(folder).unwrap_or_else(|_| folder.clone()),
            database: config
                .metadata
                .is_postgres()
                .then(|| config.metadata.url.redacted()),
            _lock: lock,
        })
    }

    /// Which registry this is, for the command's output: `registry at URL`, or `registry in
    /// the data folder PATH (no server runs on it)`.
    pub fn describe(&self) -> String {
        match self {
            Target::Remote(client) => format!("registry at {}", client.url()),
            Target::Local {
                database: Some(database),
                folder,
                ..
            } => format!(
                "registry in the PostgreSQL database {database} with blobs in {}",
                folder.display()
            ),
            Target::Local { folder, .. } => format!(
                "registry in the data folder {} (no server runs on it)",
                folder.display()
            ),
        }
    }

    /// Sends a request; returns the answer, or the refusal as an error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.send(method, path, body, TIMEOUT).await?.1)
    }

    /// Sends a request that may take up to `timeout`; returns the status and the answer, or
    /// the refusal as an error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        match self {
            Target::Remote(client) => client.send(method, path, body, timeout).await,
            Target::Local { router, .. } => {
                let body = match body {
                    Some(body) => axum::body::Body::from(serde_json::to_vec(&body)?),
                    None => axum::body::Body::empty(),
                };
                let mut request = axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("content-type", "application/json")
                    .body(body)?;
                // The in-process API takes this process for a direct local caller: the one it
                // trusts as the administrator with authentication off.
                request
                    .extensions_mut()
                    .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0))));
                let response = tokio::time::timeout(timeout, router.clone().oneshot(request))
                    .await
                    .context("the admin API in process did not answer in time")?
                    .context("calling the admin API in process")?;
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER).await?;
                let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if status.is_success() {
                    Ok((status, answer))
                } else {
                    Err(refusal(status, &answer))
                }
            }
        }
    }

    /// Whether this is the data folder itself, with no server running.
    pub fn is_local(&self) -> bool {
        matches!(self, Target::Local { .. })
    }

    /// Closes the data folder's registry, if this is one.
    pub async fn close(self) {
        if let Target::Local { registry, .. } = self {
            registry.close().await;
        }
    }
}
