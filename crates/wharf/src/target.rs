//! Where a command that changes the registry sends its admin API requests: to the server running
//! on the data folder (or at `--url`), or — with no server running — to the same API served in
//! this process over the data folder itself, which stays locked meanwhile so no server starts.
//! One set of requests therefore works both ways, and a stopped registry is managed by whoever
//! may read its data folder (such as root recovering a lost superuser password).

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
    /// The registry's URL (default: the server running on the data folder, else the data folder
    /// itself).
    #[arg(long, env = "WHARF_URL", global = true)]
    pub url: Option<String>,
    /// Print the API's JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A registry to send admin requests to.
pub enum Target {
    /// A running server.
    Remote(AdminClient),
    /// The data folder, with no server running.
    Local {
        router: axum::Router,
        registry: Registry,
        _lock: DataFolderLock,
    },
}

impl Target {
    /// The server at `url`, else the server running on the configured data folder, else the
    /// data folder itself (created if missing).
    pub async fn open(config: &Config, url: Option<&str>) -> anyhow::Result<Target> {
        if url.is_some() {
            return Ok(Target::Remote(AdminClient::new(url, config)?));
        }
        let lock = match lock_data_folder(&config.storage.data_dir) {
            Ok(lock) => lock,
            Err(ServeError::DataFolderInUse(_)) => {
                return Ok(Target::Remote(AdminClient::new(None, config)?));
            }
            Err(error) => return Err(error.into()),
        };
        let registry = config.open_registry().await?;
        let state = AppState {
            registry: registry.clone(),
            admin: Arc::new(AdminAccess {
                gc: config.gc_settings(),
            }),
            auth: ApiAuth::off(),
        };
        Ok(Target::Local {
            router: wharf_server::api::router(state),
            registry,
            _lock: lock,
        })
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
