//! Talking to a running registry's admin API (`/api/v1`) from the command line.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use wharf_registry::Config;
use wharf_registry::config::ADMIN_TOKEN_VARIABLE;

/// A client of a running registry's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client of the registry at `url`, or by default of the one `config` describes (its
    /// `server.listen`, on loopback), with the admin token the configuration gives.
    pub fn new(url: Option<&str>, config: &Config) -> anyhow::Result<AdminClient> {
        let url = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut address = config.server.listen;
                if address.ip().is_unspecified() {
                    address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{address}")
            }
        };
        let token = config
            .admin_token(std::env::var(ADMIN_TOKEN_VARIABLE).ok())?
            .map(|t| t.expose().to_owned());
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            // A connection that stalls fails instead of hanging (a download streams on).
            .read_timeout(Duration::from_secs(300))
            .build()?;
        Ok(AdminClient { http, url, token })
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams the body of `GET path` (a download); a refusal becomes an error.
    pub async fn stream(&self, path: &str) -> anyhow::Result<wharf_registry::storage::BlobStream> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            let answer: Value = response.json().await.unwrap_or_default();
            let message = answer["errors"][0]["message"]
                .as_str()
                .unwrap_or("no message");
            bail!("the registry refused ({status}): {message}");
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
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
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
            let message = answer["errors"][0]["message"]
                .as_str()
                .unwrap_or("no message");
            bail!("the registry refused ({status}): {message}");
        }
        Ok((status, answer))
    }
}
