//! Talking to a running registry's admin API (`/api/v1`) from the command line.
//!
//! Credentials: `WHARF_USERNAME` and `WHARF_PASSWORD` (a user's password or a robot's token),
//! else — on the registry's own machine — the first superuser's generated password in the data
//! folder, if it is still there and readable. HTTPS servers are verified against the system's
//! roots, or the CA certificate in the file `WHARF_CA_CERT` names.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use wharf_auth::{ADMIN_PASSWORD_FILE, FIRST_SUPERUSER};
use wharf_config::Config;

/// A client of a running registry's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    url: String,
    credentials: Option<(String, String)>,
}

/// The credentials the environment gives, or the first superuser's generated password.
fn credentials(config: &Config) -> Option<(String, String)> {
    let from_environment = (
        std::env::var("WHARF_USERNAME")
            .ok()
            .filter(|u| !u.is_empty()),
        std::env::var("WHARF_PASSWORD").ok(),
    );
    if let (Some(username), Some(password)) = from_environment {
        return Some((username, password));
    }
    let generated = config.storage.data_dir.join(ADMIN_PASSWORD_FILE);
    std::fs::read_to_string(generated)
        .ok()
        .map(|password| (FIRST_SUPERUSER.to_owned(), password.trim().to_owned()))
}

impl AdminClient {
    /// A client of the registry at `url`, or by default of the one `config` describes (its
    /// `server.listen`, on loopback; https when it serves TLS).
    pub fn new(url: Option<&str>, config: &Config) -> anyhow::Result<AdminClient> {
        let url = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut address = config.server.listen;
                if address.ip().is_unspecified() {
                    address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if config.tls.cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{address}")
            }
        };
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            // A connection that stalls fails instead of hanging (a download streams on).
            .read_timeout(Duration::from_secs(300));
        if let Some(ca) = std::env::var_os("WHARF_CA_CERT").filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&ca)
                .with_context(|| format!("cannot read WHARF_CA_CERT {}", ca.to_string_lossy()))?;
            let certificate = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!(
                    "WHARF_CA_CERT {} is not a PEM certificate",
                    ca.to_string_lossy()
                )
            })?;
            http = http.add_root_certificate(certificate);
        }
        Ok(AdminClient {
            http: http.build()?,
            url,
            credentials: credentials(config),
        })
    }

    fn authenticated(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((username, password)) => request.basic_auth(username, Some(password)),
            None => request,
        }
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams the body of `GET path` (a download); a refusal becomes an error.
    pub async fn stream(&self, path: &str) -> anyhow::Result<wharf_storage::BlobStream> {
        use futures_util::{StreamExt, TryStreamExt};
        let response = self
            .authenticated(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            let answer: Value = response.json().await.unwrap_or_default();
            return Err(refusal(status, &answer));
        }
        Ok(response
            .bytes_stream()
            .map_err(std::io::Error::other)
            .boxed())
    }

    /// Sends a request; a refusal becomes an error with the registry's message.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut request = self
            .authenticated(self.http.request(method, format!("{}{path}", self.url)))
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.url))?;
        let status = response.status();
        let answer: Value = response.json().await.with_context(|| {
            format!(
                "the registry at {} gave an answer that is not JSON",
                self.url
            )
        })?;
        if !status.is_success() {
            return Err(refusal(status, &answer));
        }
        Ok((status, answer))
    }
}

/// A refusal, with the registry's message, and what to do about missing credentials.
pub fn refusal(status: reqwest::StatusCode, answer: &Value) -> anyhow::Error {
    let message = answer["errors"][0]["message"]
        .as_str()
        .unwrap_or("no message");
    let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
        "; give credentials in WHARF_USERNAME and WHARF_PASSWORD"
    } else {
        ""
    };
    anyhow::anyhow!("the registry refused ({status}): {message}{hint}")
}
