//! A fresh, empty database per test, on the PostgreSQL server the test run started
//! (`scripts/test` starts one with `scripts/postgres` and sets `WHARF_TEST_POSTGRES_URL`), so
//! tests run in parallel without seeing each other's rows. Each is a schema of the server's
//! database, which the store's connections put first in their `search_path`: tables, the
//! migrations' record and all, land in it. A schema takes milliseconds to create where a
//! database takes most of a second.
//!
//! A test that needs PostgreSQL fails, never skips, when the variable is unset: a skipped test
//! would count as passing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::PostgresOptions;

/// The variable that names the test server: a URL of its `postgres` database, as a superuser.
pub const URL_VARIABLE: &str = "WHARF_TEST_POSTGRES_URL";

/// A database (schema) created for one test, dropped with everything in it when this is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database of its own for the calling test on the server named by
    /// `WHARF_TEST_POSTGRES_URL`. Fails with a message saying how to get a server when the
    /// variable is unset or the server does not answer.
    pub async fn create() -> Result<Self, String> {
        let server = std::env::var(URL_VARIABLE).map_err(|_| {
            format!(
                "{URL_VARIABLE} is not set: this test needs PostgreSQL. Run the tests with \
                 scripts/test, which starts one, or start one with `eval \"$(scripts/postgres start)\"`"
            )
        })?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "wharf_test_{}_{}_{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = PgConnection::connect(&server)
            .await
            .map_err(|e| format!("the test PostgreSQL at {URL_VARIABLE} does not answer: {e}"))?;
        // The name is made of digits, letters and underscores only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut connection)
            .await
            .map_err(|e| format!("creating the test database {name}: {e}"))?;
        let _ = connection.close().await;
        let url = with_search_path(&server, &name);
        Ok(TestDatabase { server, name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of its schema, which is also the application name of its connections.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Options for a store on this database, with short timeouts for tests.
    pub fn options(&self) -> PostgresOptions {
        let mut options = PostgresOptions::new(self.url.clone());
        options.max_connections = 8;
        options.acquire_timeout = Duration::from_secs(10);
        options
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime; a thread with a runtime of its own does the
        // asynchronous work. A database left behind would only take room in the test server,
        // which the test run throws away.
        let server = self.server.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut connection)
                .await
                .ok()
            })
        });
        let _ = dropped.join();
    }
}

/// `server` (a URL) with `schema` first in the `search_path` of its connections, which also
/// take the schema's name as their application name (so a test can find its own sessions in
/// `pg_stat_activity`).
fn with_search_path(server: &str, schema: &str) -> String {
    let separator = if server.contains('?') { '&' } else { '?' };
    format!("{server}{separator}options[search_path]={schema}&application_name={schema}")
}

/// A PostgreSQL server of its own for a test that stops and starts it (an outage), so the
/// shared test server is never disturbed: started with `scripts/postgres`, stopped and deleted
/// when this is dropped.
pub struct PrivateServer {
    url: String,
    dir: String,
}

/// `scripts/postgres` of this repository.
fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(script())
        .args(args)
        .output()
        .map_err(|e| format!("running scripts/postgres {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/postgres {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl PrivateServer {
    /// Starts a server (a few seconds: `initdb`, then the server).
    pub fn start() -> Result<Self, String> {
        let exports = run_script(&["start"])?;
        let value = |name: &str| {
            exports
                .lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .map(str::to_owned)
                .ok_or_else(|| format!("scripts/postgres start printed no {name}: {exports}"))
        };
        Ok(PrivateServer {
            url: value(URL_VARIABLE)?,
            dir: value("WHARF_TEST_POSTGRES_DIR")?,
        })
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server (`pg_ctl stop -m fast`: its sessions are ended, as in a restart; what was
    /// committed is kept, which an immediate stop would not promise with the test server's
    /// `synchronous_commit = off`).
    pub fn pause(&self) -> Result<(), String> {
        run_script(&["pause", &self.dir]).map(drop)
    }

    /// Starts it again, on the same port.
    pub fn resume(&self) -> Result<(), String> {
        run_script(&["resume", &self.dir]).map(drop)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = run_script(&["stop", &self.dir]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_goes_into_the_url() {
        assert_eq!(
            super::with_search_path("postgres://u@127.0.0.1:5/postgres", "t1"),
            "postgres://u@127.0.0.1:5/postgres?options[search_path]=t1&application_name=t1"
        );
        assert_eq!(
            super::with_search_path("postgres://u@h:5/d?sslmode=disable", "t1"),
            "postgres://u@h:5/d?sslmode=disable&options[search_path]=t1&application_name=t1"
        );
    }
}
