//! How to reach the database and how long to wait for it: [`PostgresOptions`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use wharf_metadata::{MetadataError, Result};

/// Where the PostgreSQL database is and how the store's pool uses it. The password is never
/// shown: `Debug` and [`PostgresOptions::redacted_url`] leave it out.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A `postgres://user[:password]@host[:port]/database[?…]` URL.
    pub url: String,
    /// The password, if not in the URL (read from a file or the environment).
    pub password: Option<String>,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a query waits for a connection (and a connection for the server) before the
    /// store reports the database unavailable.
    pub acquire_timeout: Duration,
    /// How long the server lets one statement run (waiting for a lock included) before it
    /// cancels it.
    pub statement_timeout: Duration,
}

impl PostgresOptions {
    /// Options for `url` with the default pool size and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            password: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }

    /// The URL with its password, if any, replaced by `***`: what logs and messages show.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The connection options sqlx needs: the URL, the password, and the statement timeout as
    /// a setting of every connection.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        // sqlx's own error would quote the URL, password included.
        let mut options = PgConnectOptions::from_str(&self.url).map_err(|error| {
            MetadataError::Settings(format!(
                "{} is not a PostgreSQL URL: {}",
                self.redacted_url(),
                redact_url(&error.to_string())
            ))
        })?;
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        // The name the server shows for the store's connections, unless the URL gives one.
        if options.get_application_name().is_none() {
            options = options.application_name("wharf");
        }
        let statement_timeout = format!("{}ms", self.statement_timeout.as_millis().max(1));
        Ok(options.options([("statement_timeout", statement_timeout.as_str())]))
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.redacted_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `text` with the password of any `scheme://user:password@` in it replaced by `***`.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest.find(['/', '?', '#', ' ']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://wharf:s3cr%40t@db:5432/wharf?sslmode=disable"),
            "postgres://wharf:***@db:5432/wharf?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://wharf@db/wharf"),
            "postgres://wharf@db/wharf"
        );
        assert_eq!(redact_url("postgres://db/wharf"), "postgres://db/wharf");
        assert_eq!(
            redact_url("bad url postgres://u:p@h/d here"),
            "bad url postgres://u:***@h/d here"
        );
        let mut options = PostgresOptions::new("postgres://u:hunter2@h/d");
        options.password = Some("hunter3".to_owned());
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
