//! The `metadata` section: which database holds the registry's metadata. Without a URL it is
//! SQLite in the data folder (the default); with `url: postgres://…` it is PostgreSQL, whose
//! password comes from `password_file` or `WHARF_METADATA_PASSWORD` and is never shown: the URL
//! prints (in `wharf config check`, in `Debug`, in logs) with its password replaced by `***`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ConfigError, HumanDuration};
use wharf_metadata_postgres::options::redact_url;
use wharf_registry::{MetadataDatabase, PostgresOptions};

/// The environment variable the PostgreSQL password may come from (not a configuration key:
/// a password has no place in the file).
pub const PASSWORD_VARIABLE: &str = "WHARF_METADATA_PASSWORD";

/// Which database holds the registry's metadata, and how the PostgreSQL pool behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// Empty: SQLite in the data folder. `postgres://user@host:port/database`: PostgreSQL.
    pub url: DatabaseUrl,
    /// A file holding the PostgreSQL password (its first line), if not in the URL or
    /// `WHARF_METADATA_PASSWORD`.
    pub password_file: Option<PathBuf>,
    /// The most connections each server opens to PostgreSQL.
    pub max_connections: u32,
    /// How long a request waits for a PostgreSQL connection before it is answered `503`.
    pub acquire_timeout: HumanDuration,
    /// How long PostgreSQL lets one statement run before cancelling it.
    pub statement_timeout: HumanDuration,
    /// The password, read from `password_file` or the environment when the configuration is
    /// loaded; never printed.
    #[serde(skip)]
    pub password: Secret,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            url: DatabaseUrl::default(),
            password_file: None,
            max_connections: 16,
            acquire_timeout: HumanDuration(Duration::from_secs(5)),
            statement_timeout: HumanDuration(Duration::from_secs(30)),
            password: Secret::default(),
        }
    }
}

impl MetadataConfig {
    /// Whether the metadata is in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        !self.url.0.is_empty()
    }

    /// The database, as the registry opens it.
    pub fn database(&self) -> MetadataDatabase {
        if !self.is_postgres() {
            return MetadataDatabase::Sqlite;
        }
        MetadataDatabase::Postgres(PostgresOptions {
            url: self.url.0.clone(),
            password: self.password.0.clone(),
            max_connections: self.max_connections,
            acquire_timeout: self.acquire_timeout.0,
            statement_timeout: self.statement_timeout.0,
        })
    }

    /// Reads the password from `password_file`, or takes `from_environment`
    /// (`WHARF_METADATA_PASSWORD`); giving it twice is refused, so that nobody wonders which
    /// one counts.
    pub(crate) fn resolve_password(
        &mut self,
        from_environment: Option<String>,
    ) -> Result<(), ConfigError> {
        let from_file = match &self.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "invalid configuration: cannot read metadata.password_file {}: {e}",
                        path.display()
                    ))
                })?;
                let password = text.lines().next().unwrap_or("").to_owned();
                if password.is_empty() {
                    return Err(ConfigError(format!(
                        "invalid configuration: metadata.password_file {} is empty",
                        path.display()
                    )));
                }
                Some(password)
            }
            None => None,
        };
        let from_environment = from_environment.filter(|password| !password.is_empty());
        self.password = Secret(match (from_file, from_environment) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(format!(
                    "invalid configuration: the metadata password is given twice, by \
                     metadata.password_file and by {PASSWORD_VARIABLE}; give one"
                )));
            }
            (file, environment) => file.or(environment),
        });
        Ok(())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.url.0;
        if !self.is_postgres() {
            if self.password_file.is_some() || self.password.0.is_some() {
                return Err(ConfigError(format!(
                    "invalid configuration: a metadata password (metadata.password_file or \
                     {PASSWORD_VARIABLE}) is given, but metadata.url is not: without a URL the \
                     metadata is in SQLite, which takes none"
                )));
            }
            return Ok(());
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError(format!(
                "invalid configuration: metadata.url must be a PostgreSQL URL such as \
                 postgres://wharf@db.example.com:5432/wharf (or empty for SQLite); got {}",
                redact_url(url)
            )));
        }
        if self.password.0.is_some() && redact_url(url) != *url {
            return Err(ConfigError(
                "invalid configuration: metadata.url holds a password and another is given \
                 (metadata.password_file or WHARF_METADATA_PASSWORD); give one"
                    .to_owned(),
            ));
        }
        if !(1..=10_000).contains(&self.max_connections) {
            return Err(ConfigError(format!(
                "invalid configuration: metadata.max_connections must be 1 to 10000; got {}",
                self.max_connections
            )));
        }
        for (key, value) in [
            ("metadata.acquire_timeout", self.acquire_timeout.0),
            ("metadata.statement_timeout", self.statement_timeout.0),
        ] {
            if value < Duration::from_millis(1) {
                return Err(ConfigError(format!(
                    "invalid configuration: {key} must be at least 1ms"
                )));
            }
        }
        Ok(())
    }
}

/// The metadata database's URL: read as written, shown with its password replaced by `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    /// The URL as it may be shown.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    /// Redacted: what is serialised is printed (`wharf config check`) or compared.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(deserializer).map(|url| DatabaseUrl(url.unwrap_or_default()))
    }
}

/// A password: compared, never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Option<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(***)"
        } else {
            "None"
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use wharf_registry::MetadataDatabase;

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        Config::load(
            None,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .map_err(|e| e.0)
    }

    #[test]
    fn sqlite_is_the_default() {
        let config = load(&[]).unwrap();
        assert!(!config.metadata.is_postgres());
        assert!(matches!(
            config.metadata.database(),
            MetadataDatabase::Sqlite
        ));
    }

    #[test]
    fn postgres_is_chosen_by_url_with_the_password_from_the_environment() {
        let config = load(&[
            ("WHARF_METADATA_URL", "postgres://wharf@db:5432/wharf"),
            ("WHARF_METADATA_PASSWORD", "hunter2"),
            ("WHARF_METADATA_MAX_CONNECTIONS", "4"),
            ("WHARF_METADATA_ACQUIRE_TIMEOUT", "2s"),
        ])
        .unwrap();
        let MetadataDatabase::Postgres(options) = config.metadata.database() else {
            panic!("expected PostgreSQL");
        };
        assert_eq!(options.url, "postgres://wharf@db:5432/wharf");
        assert_eq!(options.password.as_deref(), Some("hunter2"));
        assert_eq!(options.max_connections, 4);
        assert_eq!(options.acquire_timeout, std::time::Duration::from_secs(2));
        // Nothing that shows the configuration shows the password.
        let shown = [
            format!("{config:?}"),
            format!("{options:?}"),
            serde_saphyr::to_string(&config).unwrap(),
        ];
        for shown in shown {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let config = load(&[("WHARF_METADATA_URL", "postgres://wharf:hunter2@db/wharf")]).unwrap();
        let printed = serde_saphyr::to_string(&config).unwrap();
        assert!(
            printed.contains("postgres://wharf:***@db/wharf"),
            "{printed}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            config.metadata.url.to_string(),
            "postgres://wharf:***@db/wharf"
        );
    }

    #[test]
    fn the_password_is_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = load(&[
            ("WHARF_METADATA_URL", "postgres://wharf@db/wharf"),
            ("WHARF_METADATA_PASSWORD_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(config.metadata.password.0.as_deref(), Some("s3cret"));
        let missing = dir.path().join("missing");
        let error = load(&[
            ("WHARF_METADATA_URL", "postgres://wharf@db/wharf"),
            ("WHARF_METADATA_PASSWORD_FILE", missing.to_str().unwrap()),
        ])
        .unwrap_err();
        assert!(error.contains("metadata.password_file"), "{error}");
    }

    #[test]
    fn bad_metadata_settings_are_refused_naming_the_key() {
        let url = ("WHARF_METADATA_URL", "postgres://wharf@db/wharf");
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[("WHARF_METADATA_URL", "mysql://u:hunter2@db/x")],
                "metadata.url",
            ),
            (&[("WHARF_METADATA_PASSWORD", "x")], "metadata.url is not"),
            (
                &[url, ("WHARF_METADATA_MAX_CONNECTIONS", "0")],
                "metadata.max_connections",
            ),
            (
                &[url, ("WHARF_METADATA_ACQUIRE_TIMEOUT", "0s")],
                "metadata.acquire_timeout",
            ),
            (
                &[url, ("WHARF_METADATA_STATEMENT_TIMEOUT", "0s")],
                "metadata.statement_timeout",
            ),
            (
                &[
                    ("WHARF_METADATA_URL", "postgres://wharf:a@db/wharf"),
                    ("WHARF_METADATA_PASSWORD", "b"),
                ],
                "give one",
            ),
        ];
        for (env, expected) in cases {
            let error = load(env).unwrap_err();
            assert!(error.contains(expected), "{env:?}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
