//! The registry's admin API as the operator uses it: read the state, take and release the
//! hold named `operator`. See docs/api.md ("Admin API").

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// The hold the operator owns on each registry it runs.
pub const HOLD_NAME: &str = "operator";

/// How long one request to the registry may take (a `?wait=` included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long taking the hold waits for read-only to be in effect before answering: long enough
/// that an idle registry reports read-only in the same reconcile, short enough that a long
/// drain does not hold a reconcile (the reconciler looks again while draining).
const HOLD_WAIT: &str = "2s";

/// Why a request to the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryApiError {
    /// No answer (connection refused, timeout, TLS).
    #[error("the registry at {url} does not answer: {source}")]
    Unreachable {
        /// Where it was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than the one expected.
    #[error("the registry at {url} answered {status}: {body}")]
    Refused {
        /// Where it was asked.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// The error body, cut short.
        body: String,
    },
}

/// `GET /api/v1/state`, the fields the operator reads.
#[derive(Debug, Clone, Deserialize)]
pub struct StateReport {
    /// The registry's effective mode: `read-write`, `draining`, `read-only`.
    pub effective: String,
    /// Whether read-only is in effect on every replica.
    pub read_only_in_effect: bool,
    /// Replicas read-only over all, such as `1/1`.
    pub replicas_read_only: String,
    /// Since when the effective mode holds.
    pub since: Option<String>,
    /// The holds in place.
    pub holds: Vec<HoldReport>,
    /// Writes holding a permit.
    pub writes_in_flight: u64,
    /// Upload sessions open (absent when the database did not answer).
    pub uploads_open: Option<u64>,
    /// While draining: the drain's progress in words, as the registry words it.
    #[serde(default)]
    pub progress: Option<String>,
    /// The last change of state.
    pub last_transition: Option<TransitionReport>,
    /// Each replica's mode.
    #[serde(default)]
    pub replicas: Vec<ReplicaReport>,
}

impl StateReport {
    /// The hold named `name`, if in place.
    pub fn hold(&self, name: &str) -> Option<&HoldReport> {
        self.holds.iter().find(|h| h.name == name)
    }
}

/// A hold in the state report.
#[derive(Debug, Clone, Deserialize)]
pub struct HoldReport {
    /// Its name.
    pub name: String,
    /// Its reason.
    pub reason: String,
}

/// A change of state in the state report.
#[derive(Debug, Clone, Deserialize)]
pub struct TransitionReport {
    /// The mode before.
    pub from: String,
    /// The mode after.
    pub to: String,
    /// When.
    pub at: String,
    /// How long the drain took.
    pub drain_ms: Option<u64>,
    /// Pushes completed during the drain.
    pub pushes_completed: u64,
    /// Pushes cut off.
    pub pushes_cut_off: u64,
    /// Writes cancelled at the timeout.
    pub cancelled_writes: u64,
}

/// A replica in the state report.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaReport {
    /// Its name.
    pub name: String,
    /// Its mode.
    pub mode: String,
    /// Writes in flight on it.
    pub writes_in_flight: u64,
    /// Whether it is live; a lost one (its heartbeat too old) is not waited for. Registries
    /// that report one replica do not say.
    #[serde(default = "live_by_default")]
    pub live: bool,
}

fn live_by_default() -> bool {
    true
}

/// Credentials of a registry administrator.
#[derive(Clone)]
pub struct AdminCredentials {
    /// The account.
    pub username: String,
    /// Its password or robot token.
    pub password: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One registry's admin API.
#[derive(Debug, Clone)]
pub struct RegistryApi {
    http: reqwest::Client,
    base: String,
    credentials: AdminCredentials,
}

impl RegistryApi {
    /// The admin API of the registry at `base` (such as `http://wharf.ns.svc:5000`).
    pub fn new(http: reqwest::Client, base: &str, credentials: AdminCredentials) -> Self {
        RegistryApi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
        }
    }

    /// Where the registry is.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The state report.
    pub async fn state(&self) -> Result<StateReport, RegistryApiError> {
        let url = format!("{}/api/v1/state", self.base);
        let request = self.http.get(&url);
        let body = self.send(&url, request, &[reqwest::StatusCode::OK]).await?;
        Self::parse(&url, &body)
    }

    /// Takes (or renews, with a new reason) the operator's hold; answers the state after it.
    pub async fn take_hold(&self, reason: &str) -> Result<StateReport, RegistryApiError> {
        let url = format!(
            "{}/api/v1/state/holds/{HOLD_NAME}?wait={HOLD_WAIT}",
            self.base
        );
        let request = self.http.put(&url).json(&json!({ "reason": reason }));
        // 202: the hold is taken and the drain still runs.
        let accepted = [reqwest::StatusCode::OK, reqwest::StatusCode::ACCEPTED];
        let body = self.send(&url, request, &accepted).await?;
        #[derive(Deserialize)]
        struct Taken {
            state: StateReport,
        }
        Ok(Self::parse::<Taken>(&url, &body)?.state)
    }

    /// Releases the operator's hold; `false` if there was none.
    pub async fn release_hold(&self) -> Result<bool, RegistryApiError> {
        let url = format!("{}/api/v1/state/holds/{HOLD_NAME}", self.base);
        let request = self.http.delete(&url);
        let ok = [reqwest::StatusCode::OK, reqwest::StatusCode::NOT_FOUND];
        let response = self.send_raw(&url, request).await?;
        let status = response.status();
        if ok.contains(&status) {
            return Ok(status == reqwest::StatusCode::OK);
        }
        Err(refused(&url, status, response).await)
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        expected: &[reqwest::StatusCode],
    ) -> Result<String, RegistryApiError> {
        let response = self.send_raw(url, request).await?;
        let status = response.status();
        if !expected.contains(&status) {
            return Err(refused(url, status, response).await);
        }
        response
            .text()
            .await
            .map_err(|source| RegistryApiError::Unreachable {
                url: url.to_owned(),
                source,
            })
    }

    async fn send_raw(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryApiError> {
        request
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| RegistryApiError::Unreachable {
                url: url.to_owned(),
                source,
            })
    }

    fn parse<T: serde::de::DeserializeOwned>(url: &str, body: &str) -> Result<T, RegistryApiError> {
        serde_json::from_str(body).map_err(|e| RegistryApiError::Refused {
            url: url.to_owned(),
            status: reqwest::StatusCode::OK,
            body: format!("an answer the operator does not understand: {e}"),
        })
    }
}

async fn refused(
    url: &str,
    status: reqwest::StatusCode,
    response: reqwest::Response,
) -> RegistryApiError {
    let mut body = response.text().await.unwrap_or_default();
    // The error body is one short JSON document; keep a status condition's message readable.
    body.truncate(body.floor_char_boundary(300));
    RegistryApiError::Refused {
        url: url.to_owned(),
        status,
        body,
    }
}
