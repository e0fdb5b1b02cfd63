//! Configuration: a YAML file (every key optional, unknown keys rejected), overridden by
//! `WHARF_<SECTION>_<KEY>` environment variables, validated before anything starts.
//!
//! The environment variable names are derived from the key tree itself, so every key has one and
//! no variable can name a key that does not exist. `wharf config example` prints
//! [`EXAMPLE`], a fully commented file equal to the defaults (a test keeps them equal).

mod metadata;
pub mod reload;
mod s3;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use metadata::{DatabaseUrl, MetadataConfig, PASSWORD_VARIABLE, Secret};
pub use s3::{S3Config, StorageBackend};
pub use units::{ByteSize, HumanDuration};

use wharf_core::network::IpNetwork;
use wharf_gate::{ClusterSettings, DrainSettings};
use wharf_registry::{DataPaths, GcSettings, Limits};

/// A fully commented configuration file whose values are the defaults.
pub const EXAMPLE: &str = include_str!("example.yaml");

/// Environment variables starting with `WHARF_` that are not configuration keys: the
/// configuration file, the first superuser's password, the command line's registry URL,
/// credentials and CA certificate, the metadata database's password, a test's failpoint.
pub const NON_KEY_VARIABLES: &[&str] = &[
    "WHARF_CONFIG",
    wharf_auth::ADMIN_PASSWORD_VARIABLE,
    "WHARF_URL",
    "WHARF_USERNAME",
    "WHARF_PASSWORD",
    "WHARF_CA_CERT",
    PASSWORD_VARIABLE,
    wharf_core::failpoint::VARIABLE,
];

/// The prefix of the variables Wharf's own test runs set (`WHARF_TEST_POSTGRES_URL`, …), which
/// the processes they start inherit: not configuration keys either.
pub const TEST_VARIABLE_PREFIX: &str = "WHARF_TEST_";

/// Keys that take effect when the configuration file changes; every other key needs a restart.
pub const HOT_KEYS: &[&str] = &[
    "read_only.enabled",
    "read_only.reason",
    "drain.timeout",
    "drain.push_grace",
    "log.level",
];

/// Wharf's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    pub server: ServerConfig,
    /// Where data is kept.
    pub storage: StorageConfig,
    /// Which database holds the metadata.
    pub metadata: MetadataConfig,
    /// Limits on what clients may push.
    pub limits: LimitsConfig,
    /// Garbage collection.
    pub gc: GcConfig,
    /// Logging.
    pub log: LogConfig,
    /// How a drain to read-only behaves.
    pub drain: DrainConfig,
    /// How the replicas of a registry tell each other their state.
    pub cluster: ClusterConfig,
    /// Holding the registry read-only from this file.
    pub read_only: ReadOnlyConfig,
    /// Authentication and authorization.
    pub auth: AuthConfig,
    /// HTTPS.
    pub tls: TlsConfig,
}

/// How a drain to read-only behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainConfig {
    /// How long writes admitted before a hold may take to finish; those still running then are
    /// cancelled cleanly.
    pub timeout: HumanDuration,
    /// How long a push under way at the hold may pause between two of its writes (and how
    /// recently before the hold its upload must have been active for it to count as under way).
    pub push_grace: HumanDuration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        let settings = DrainSettings::default();
        DrainConfig {
            timeout: HumanDuration(settings.timeout),
            push_grace: HumanDuration(settings.push_grace),
        }
    }
}

/// How the replicas of a registry (several `wharf serve` over one PostgreSQL database) tell
/// each other their state: each writes a row (its heartbeat) that the others read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How often a replica writes its row when nothing changes (it also writes at every change
    /// of mode, and continually while draining).
    pub heartbeat: HumanDuration,
    /// A replica whose row is older than this is lost: reported as lost, and not waited for.
    /// At least twice `heartbeat`.
    pub lost_after: HumanDuration,
    /// How often the holds are re-read even without a notification: what guarantees that a
    /// change made elsewhere is seen when notifications are lost.
    pub reread_holds: HumanDuration,
    /// Where this replica says it serves, in the state report; `null`: the host name and the
    /// port it listens on.
    pub advertise_address: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let settings = ClusterSettings::default();
        ClusterConfig {
            heartbeat: HumanDuration(settings.heartbeat),
            lost_after: HumanDuration(settings.lost_after),
            reread_holds: HumanDuration(settings.reread_holds),
            advertise_address: None,
        }
    }
}

/// Holding the registry read-only from the configuration file (the hold named `config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOnlyConfig {
    /// Hold the registry read-only while true.
    pub enabled: bool,
    /// Why, as shown to everyone.
    pub reason: String,
}

impl Default for ReadOnlyConfig {
    fn default() -> Self {
        ReadOnlyConfig {
            enabled: false,
            reason: "set read-only in the configuration file".to_owned(),
        }
    }
}

/// How callers authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Nobody authenticates: only allowed on a loopback address (or with `--insecure-no-auth`).
    None,
    /// Docker/OCI token authentication against the accounts in the metadata database.
    Token,
}

/// Authentication and authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `none` or `token`.
    pub mode: AuthMode,
    /// The service name tokens are issued for (their audience).
    pub service: String,
    /// The token endpoint's URL given to clients; `null` derives it from each request.
    pub realm: Option<String>,
    /// How long an access token is valid.
    pub token_ttl: HumanDuration,
    /// How long a refresh token (issued to the OAuth2 form's `access_type=offline`) is valid.
    pub refresh_token_ttl: HumanDuration,
    /// How far past its expiry, or before its start, a token is still accepted. It exists only
    /// because replicas sharing the signing keys verify each other's tokens by their own clocks;
    /// a few seconds cover clocks kept by NTP, and each second is a second longer that a
    /// revoked account's token keeps working. Whole seconds, at most [`MAX_TOKEN_LEEWAY`] and
    /// at most `token_ttl`.
    pub token_leeway: HumanDuration,
    /// PEM files of the keys that sign tokens (the first signs, all verify); empty: one key
    /// generated into the data folder.
    pub signing_keys: Vec<PathBuf>,
    /// Failed-login limits.
    pub failed_logins: FailedLoginsConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            service: "wharf".to_owned(),
            realm: None,
            token_ttl: HumanDuration(Duration::from_secs(5 * 60)),
            refresh_token_ttl: HumanDuration(Duration::from_secs(30 * 24 * 3600)),
            token_leeway: HumanDuration(Duration::from_secs(5)),
            signing_keys: Vec::new(),
            failed_logins: FailedLoginsConfig::default(),
        }
    }
}

/// The longest `auth.token_leeway`: clocks further apart than a minute are broken, and should be
/// fixed rather than hidden by letting every token live longer.
pub const MAX_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// Failed-login limits: past them, logins are refused (429) until the window ends; the rule is
/// [`wharf_auth::limiter`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailedLoginsConfig {
    /// Failures allowed for one account from one client address in a window; past them, that
    /// account is refused from that address, the right password included.
    pub per_account_and_address: u32,
    /// Failures allowed from one client address, for any accounts, in a window; past them,
    /// every login from the address is refused. Larger than `per_account_and_address`, so
    /// that only failures for several accounts reach it.
    pub per_address: u32,
    /// The window.
    pub window: HumanDuration,
}

impl Default for FailedLoginsConfig {
    fn default() -> Self {
        FailedLoginsConfig {
            per_account_and_address: 10,
            // Ten accounts' worth of failures: a shared NAT's users mistyping do not reach it,
            // one address trying passwords on many accounts does.
            per_address: 100,
            window: HumanDuration(Duration::from_secs(10 * 60)),
        }
    }
}

/// HTTPS: a certificate chain and its private key, both PEM, re-read when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (the server's certificate first).
    pub cert: Option<PathBuf>,
    /// The private key.
    pub key: Option<PathBuf>,
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address and port to listen on.
    pub listen: SocketAddr,
    /// How long shutdown waits for requests in flight before cancelling the writes among them.
    pub shutdown_grace: HumanDuration,
    /// How long a client has to send a request's headers: from the connection's start (after
    /// its TLS handshake, which gets as long again) for the first request, from the request's
    /// first byte for later ones. 30s is ample for headers from any client on any network, and
    /// bounds what a connection that sends part of a request and then nothing costs.
    pub header_read_timeout: HumanDuration,
    /// How long a kept-alive connection may wait for its next request before it is closed; a
    /// request in progress (a slow upload, a long download) is never cut by it. 2 minutes is
    /// longer than the idle timeout of the clients that keep connections (Go's standard HTTP
    /// transport, which most registry clients are built on, closes them after 90s) and of load
    /// balancers (often 60s), so normally the client closes first and never sends a request on
    /// a connection the server is closing.
    pub idle_timeout: HumanDuration,
    /// How many connections are served at once. At the limit the server accepts no more until
    /// one closes, and newcomers wait in the kernel's listen queue: a flood of connections slows
    /// service down instead of exhausting the process's open files. Each connection costs a
    /// file handle (two while it moves a blob) and some memory; 8192 serves a big CI fleet at
    /// once and fits the usual limits. Lowered, with a warning, when the open-file limit is
    /// too low for it.
    pub max_connections: u32,
    /// The proxies (load balancers, an ingress) in front of Wharf, as addresses or networks
    /// (`10.0.0.0/8`): only from them are `Forwarded` and `X-Forwarded-For` believed, so that
    /// the drain's "same client" and the failed-login limits see each client, not the
    /// balancer. From anybody else the headers are ignored.
    pub trusted_proxies: Vec<IpNetwork>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            header_read_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(120)),
            max_connections: 8192,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Where data is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The data folder: `metadata.db` (SQLite) and `storage/` (blobs), created if missing.
    pub data_dir: PathBuf,
    /// Flush blob content and folder entries to disk before a blob is committed.
    pub fsync: bool,
    /// Where blobs are kept: `filesystem` (the data folder) or `s3` (`storage.s3`).
    pub backend: StorageBackend,
    /// The bucket, with `backend: s3`.
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./wharf-data"),
            fsync: true,
            backend: StorageBackend::Filesystem,
            s3: S3Config::default(),
        }
    }
}

/// Limits on what clients may push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest manifest accepted.
    pub max_manifest_size: ByteSize,
    /// The largest blob accepted; `null` for no limit.
    pub max_blob_size: Option<ByteSize>,
    /// Accept manifests naming blobs or manifests the repository does not have.
    pub sparse_manifests: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        LimitsConfig {
            max_manifest_size: ByteSize(limits.max_manifest_size),
            max_blob_size: limits.max_blob_size.map(ByteSize),
            sparse_manifests: limits.sparse_manifests,
        }
    }
}

/// Garbage collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Whether the server collects garbage in the background.
    pub enabled: bool,
    /// How often.
    pub interval: HumanDuration,
    /// How long unreferenced blobs are kept (a push uploads blobs before its manifest).
    pub grace: HumanDuration,
    /// How long an upload session may receive nothing before it expires.
    pub upload_expiry: HumanDuration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: true,
            interval: HumanDuration(Duration::from_secs(3600)),
            grace: HumanDuration(Duration::from_secs(3600)),
            upload_expiry: HumanDuration(Duration::from_secs(24 * 3600)),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A filter such as `info` or `wharf_gate=debug,info`.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration could not be loaded; the message names the file or variable and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads the configuration from an optional YAML file and the environment variables given
    /// (normally `std::env::vars()`), validating the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let password = env
            .iter()
            .find(|(name, _)| name == PASSWORD_VARIABLE)
            .map(|(_, value)| value.clone());
        let (mut tree, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "cannot read the configuration file {}: {e}",
                        path.display()
                    ))
                })?;
                (
                    parse_yaml(&text, &path.display().to_string())?,
                    path.display().to_string(),
                )
            }
            None => (Value::Object(Default::default()), "the defaults".to_owned()),
        };
        let overridden = apply_environment(&mut tree, env)?;
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            let source = if overridden.is_empty() {
                origin.clone()
            } else {
                format!("{origin} with {}", overridden.join(", "))
            };
            ConfigError(format!(
                "invalid configuration ({source}): {key}{}",
                e.into_inner()
            ))
        })?;
        config.metadata.resolve_password(password)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a YAML document (as `wharf config example` prints) without environment overrides.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(parse_yaml(text, "the document")?)
            .map_err(|e| {
                ConfigError(format!(
                    "invalid configuration: {}: {}",
                    e.path(),
                    e.inner()
                ))
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout.0,
            ),
            ("server.idle_timeout", self.server.idle_timeout.0),
            ("gc.interval", self.gc.interval.0),
            ("gc.upload_expiry", self.gc.upload_expiry.0),
            ("drain.timeout", self.drain.timeout.0),
            ("cluster.heartbeat", self.cluster.heartbeat.0),
            ("cluster.reread_holds", self.cluster.reread_holds.0),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(ConfigError(format!(
                    "invalid configuration: {key} must be longer than 0s"
                )));
            }
        }
        if self.cluster.lost_after.0 < 2 * self.cluster.heartbeat.0 {
            return Err(ConfigError(
                "invalid configuration: cluster.lost_after must be at least twice cluster.heartbeat"
                    .to_owned(),
            ));
        }
        if self.server.max_connections == 0 {
            return Err(ConfigError(
                "invalid configuration: server.max_connections must be at least 1".to_owned(),
            ));
        }
        if self.limits.max_manifest_size.0 < 1024 {
            return Err(ConfigError(
                "invalid configuration: limits.max_manifest_size must be at least 1KiB".to_owned(),
            ));
        }
        if !wharf_gate::holds::is_valid_reason(self.read_only.reason.trim()) {
            return Err(ConfigError(
                "invalid configuration: read_only.reason must be 1 to 1024 characters on one line"
                    .to_owned(),
            ));
        }
        for (key, value) in [
            ("auth.token_ttl", self.auth.token_ttl.0),
            ("auth.refresh_token_ttl", self.auth.refresh_token_ttl.0),
            (
                "auth.failed_logins.window",
                self.auth.failed_logins.window.0,
            ),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigError(format!(
                    "invalid configuration: {key} must be at least 1s"
                )));
            }
        }
        let leeway = self.auth.token_leeway;
        if leeway.0.subsec_nanos() != 0 {
            return Err(ConfigError(format!(
                "invalid configuration: auth.token_leeway must be whole seconds, as token times \
                 are (such as 5s); got {leeway}"
            )));
        }
        if leeway.0 > MAX_TOKEN_LEEWAY {
            return Err(ConfigError(format!(
                "invalid configuration: auth.token_leeway must be at most {}; got {leeway} \
                 (clocks further apart need fixing, with NTP)",
                HumanDuration(MAX_TOKEN_LEEWAY)
            )));
        }
        if leeway > self.auth.token_ttl {
            return Err(ConfigError(format!(
                "invalid configuration: auth.token_leeway ({leeway}) must not be longer than \
                 auth.token_ttl ({})",
                self.auth.token_ttl
            )));
        }
        let limits = &self.auth.failed_logins;
        if limits.per_account_and_address == 0 {
            return Err(ConfigError(
                "invalid configuration: auth.failed_logins.per_account_and_address must be at least 1"
                    .to_owned(),
            ));
        }
        if limits.per_address <= limits.per_account_and_address {
            return Err(ConfigError(format!(
                "invalid configuration: auth.failed_logins.per_address ({}) must be larger than \
                 per_account_and_address ({}), or one account's mistyped password would lock \
                 every account out of its address",
                limits.per_address, limits.per_account_and_address
            )));
        }
        if !is_header_safe(&self.auth.service) || self.auth.service.is_empty() {
            return Err(ConfigError(
                "invalid configuration: auth.service must be 1 to 255 characters without quotes or spaces"
                    .to_owned(),
            ));
        }
        if let Some(realm) = &self.auth.realm
            && !((realm.starts_with("https://") || realm.starts_with("http://"))
                && is_header_safe(realm))
        {
            return Err(ConfigError(format!(
                "invalid configuration: auth.realm must be an http(s) URL such as \
                 https://registry.example.com/auth/token; got {realm:?}"
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError(
                "invalid configuration: tls.cert and tls.key go together; give both, or neither"
                    .to_owned(),
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError(
                "invalid configuration: storage.data_dir is empty".to_owned(),
            ));
        }
        if self.storage.backend == StorageBackend::S3 {
            self.storage.s3.validate()?;
        }
        self.metadata.validate()
    }

    /// The data folder's layout.
    pub fn data_paths(&self) -> DataPaths {
        DataPaths::in_folder(&self.storage.data_dir)
    }

    /// Opens (creating if missing) the registry in the data folder, with these settings.
    pub async fn open_registry(
        &self,
    ) -> Result<wharf_registry::Registry, wharf_registry::RegistryError> {
        let paths = self.data_paths();
        let blobs = match self.storage.backend {
            StorageBackend::Filesystem => {
                wharf_storage::BlobStore::filesystem(&paths.storage, self.storage.fsync)?
            }
            StorageBackend::S3 => {
                let settings = self
                    .storage
                    .s3
                    .settings()
                    .map_err(wharf_registry::RegistryError::internal)?;
                wharf_storage::BlobStore::s3(&settings).await?
            }
        };
        wharf_registry::Registry::open(
            &self.metadata.database(),
            &paths,
            blobs,
            self.limits(),
            self.drain_settings(),
        )
        .await
    }

    /// The push limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_manifest_size: self.limits.max_manifest_size.0,
            max_blob_size: self.limits.max_blob_size.map(|size| size.0),
            sparse_manifests: self.limits.sparse_manifests,
        }
    }

    /// The garbage collection settings.
    pub fn gc_settings(&self) -> GcSettings {
        GcSettings {
            grace: self.gc.grace.0,
            upload_expiry: self.gc.upload_expiry.0,
        }
    }

    /// How replicas publish their state.
    pub fn cluster_settings(&self) -> ClusterSettings {
        ClusterSettings {
            heartbeat: self.cluster.heartbeat.0,
            lost_after: self.cluster.lost_after.0,
            reread_holds: self.cluster.reread_holds.0,
        }
    }

    /// The drain settings.
    pub fn drain_settings(&self) -> DrainSettings {
        DrainSettings {
            timeout: self.drain.timeout.0,
            push_grace: self.drain.push_grace.0,
        }
    }

    /// The authentication settings.
    pub fn auth_settings(&self) -> wharf_auth::AuthSettings {
        wharf_auth::AuthSettings {
            service: self.auth.service.clone(),
            realm: self.auth.realm.clone(),
            token_ttl: self.auth.token_ttl.0,
            refresh_token_ttl: self.auth.refresh_token_ttl.0,
            token_leeway: self.auth.token_leeway.0,
            login_limits: wharf_auth::limiter::LoginLimits {
                per_account_and_address: self.auth.failed_logins.per_account_and_address,
                per_address: self.auth.failed_logins.per_address,
                window: self.auth.failed_logins.window.0,
            },
        }
    }

    /// The keys whose values differ between two configurations.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let (mine, theirs) = (
            serde_json::to_value(self).unwrap_or(Value::Null),
            serde_json::to_value(other).unwrap_or(Value::Null),
        );
        Config::keys()
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| {
                let path: Vec<&str> = key.split('.').collect();
                pointer(&mine, &path) != pointer(&theirs, &path)
            })
            .collect()
    }

    /// Every configuration key (`section.key`) with its environment variable.
    pub fn keys() -> Vec<(String, String)> {
        let mut keys = Vec::new();
        let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
        collect_leaves(&defaults, &mut Vec::new(), &mut keys);
        keys.into_iter()
            .map(|path| {
                let variable = format!("WHARF_{}", path.join("_").to_uppercase());
                (path.join("."), variable)
            })
            .collect()
    }
}

/// Whether a value can go inside a quoted `WWW-Authenticate` parameter as it is.
fn is_header_safe(value: &str) -> bool {
    value.len() <= 255
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_saphyr::from_str(text)
        .map_err(|e| ConfigError(format!("{origin} is not valid YAML: {e}")))?;
    match value {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(value),
        _ => Err(ConfigError(format!(
            "{origin} must be a YAML mapping of sections"
        ))),
    }
}

fn collect_leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

/// Applies `WHARF_...` variables onto the configuration tree; returns the names applied.
fn apply_environment(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let keys = Config::keys();
    let mut applied = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("WHARF_")
                && !NON_KEY_VARIABLES.contains(&name.as_str())
                && !name.starts_with(TEST_VARIABLE_PREFIX)
        })
        .collect();
    env.sort();
    for (name, raw) in env {
        let Some((key, _)) = keys.iter().find(|(_, variable)| *variable == name) else {
            return Err(ConfigError(format!(
                "unknown environment variable {name}: no configuration key has that name \
                 (see `wharf config example`)"
            )));
        };
        let path: Vec<&str> = key.split('.').collect();
        // A string key takes the text as it is; others read it as a YAML value (`true`, `5`).
        let is_text = matches!(pointer(&defaults, &path), Some(Value::String(_)));
        let value = if is_text {
            Value::String(raw)
        } else {
            serde_saphyr::from_str::<Value>(&raw)
                .map_err(|e| ConfigError(format!("{name}: not a valid value for {key}: {e}")))?
        };
        set(tree, &path, value).map_err(|()| {
            ConfigError(format!(
                "{name}: cannot set {key}: the file gives that section another shape"
            ))
        })?;
        applied.push(name);
    }
    Ok(applied)
}

fn pointer<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

fn set(tree: &mut Value, path: &[&str], value: Value) -> Result<(), ()> {
    let (last, parents) = path.split_last().ok_or(())?;
    let mut node = tree;
    for key in parents {
        let map = node.as_object_mut().ok_or(())?;
        node = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    node.as_object_mut()
        .ok_or(())?
        .insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn example_is_the_defaults_and_names_every_key() {
        assert_eq!(Config::from_yaml(EXAMPLE).unwrap(), Config::default());
        let example: Value = serde_saphyr::from_str(EXAMPLE).unwrap();
        let mut listed = Vec::new();
        collect_leaves(&example, &mut Vec::new(), &mut listed);
        let listed: Vec<String> = listed.iter().map(|p| p.join(".")).collect();
        let keys: Vec<String> = Config::keys().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            listed, keys,
            "the example must spell out every key, in order"
        );
    }

    #[test]
    fn the_configuration_reference_shows_the_example_as_printed() {
        // docs/configuration.md's "A complete file" is what `wharf config example` prints;
        // this keeps the page from falling behind when a key is added.
        let reference = include_str!("../../../docs/configuration.md");
        let block = reference
            .split_once("This is what `wharf config example` prints:\n\n```yaml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(block, _)| block)
            .expect("docs/configuration.md has its complete file");
        assert_eq!(block, EXAMPLE, "copy `wharf config example` into the page");
    }

    #[test]
    fn the_defaults_print_as_the_example_writes_them_and_read_back() {
        // As `wharf config check` prints them.
        let printed = serde_saphyr::to_string(&Config::default()).unwrap();
        assert_eq!(Config::from_yaml(&printed).unwrap(), Config::default());
        let (printed, example): (Value, Value) = (
            serde_saphyr::from_str(&printed).unwrap(),
            serde_saphyr::from_str(EXAMPLE).unwrap(),
        );
        let mut keys = Vec::new();
        collect_leaves(&example, &mut Vec::new(), &mut keys);
        for key in keys {
            let key: Vec<&str> = key.iter().map(String::as_str).collect();
            assert_eq!(
                pointer(&printed, &key),
                pointer(&example, &key),
                "{} prints otherwise than the example writes it",
                key.join(".")
            );
        }
    }

    #[test]
    fn configuration_reference_documents_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        for (key, variable) in Config::keys() {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/configuration.md lacks `{key}`"
            );
            assert!(
                doc.contains(&format!("`{variable}`")),
                "docs/configuration.md lacks `{variable}`"
            );
        }
    }

    #[test]
    fn no_file_means_defaults() {
        assert_eq!(Config::load(None, []).unwrap(), Config::default());
        assert_eq!(load("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn reads_values_and_units() {
        let config = load(
            "server:\n  listen: 0.0.0.0:8080\nlimits:\n  max_blob_size: 2GiB\ngc:\n  grace: 90m\nlog:\n  format: json\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.limits.max_blob_size, Some(ByteSize(2 << 30)));
        assert_eq!(config.gc.grace.0, Duration::from_secs(90 * 60));
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_are_named() {
        let error = load("server:\n  listn: 1.2.3.4:5\n", &[]).unwrap_err().0;
        assert!(
            error.contains("server") && error.contains("listn"),
            "{error}"
        );
        let error = load("servr: {}\n", &[]).unwrap_err().0;
        assert!(error.contains("servr"), "{error}");
    }

    #[test]
    fn bad_values_are_named() {
        let error = load("server:\n  listen: nowhere\n", &[]).unwrap_err().0;
        assert!(error.contains("server.listen"), "{error}");
        let error = load("gc:\n  interval: soon\n", &[]).unwrap_err().0;
        assert!(error.contains("gc.interval"), "{error}");
        let error = load("gc:\n  interval: 0s\n", &[]).unwrap_err().0;
        assert!(error.contains("gc.interval"), "{error}");
        let error = load("limits:\n  max_manifest_size: 12 parsecs\n", &[])
            .unwrap_err()
            .0;
        assert!(error.contains("limits.max_manifest_size"), "{error}");
        let error = load("log:\n  format: xml\n", &[]).unwrap_err().0;
        assert!(error.contains("log.format"), "{error}");
        assert!(load("- a\n- b\n", &[]).is_err());
        assert!(load("server: [\n", &[]).is_err());
    }

    #[test]
    fn token_leeway_is_whole_seconds_within_a_minute_and_the_token_ttl() {
        let leeway =
            |yaml: &str| load(&format!("auth:\n{yaml}"), &[]).map(|c| c.auth.token_leeway.0);
        assert_eq!(leeway("  token_leeway: 0s\n"), Ok(Duration::ZERO));
        assert_eq!(leeway("  token_leeway: 1m\n"), Ok(Duration::from_secs(60)));
        for (yaml, says) in [
            ("  token_leeway: 61s\n", "at most 1m"),
            ("  token_leeway: 1500ms\n", "whole seconds"),
            (
                "  token_ttl: 20s\n  token_leeway: 30s\n",
                "auth.token_ttl (20s)",
            ),
        ] {
            let error = leeway(yaml).unwrap_err().0;
            assert!(
                error.contains("auth.token_leeway") && error.contains(says),
                "{yaml}: {error}"
            );
        }
    }

    #[test]
    fn the_failed_login_ceiling_of_an_address_is_above_one_accounts_limit() {
        let error = load(
            "auth:\n  failed_logins:\n    per_account_and_address: 10\n    per_address: 10\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert!(
            error.contains("per_address (10) must be larger than per_account_and_address (10)"),
            "{error}"
        );
        let error = load(
            "auth:\n  failed_logins:\n    per_account_and_address: 0\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert!(error.contains("per_account_and_address"), "{error}");
        // The key before it was counted per address too: an old file is refused, naming the new.
        let error = load("auth:\n  failed_logins:\n    per_account: 10\n", &[])
            .unwrap_err()
            .0;
        assert!(
            error.contains("per_account") && error.contains("per_account_and_address"),
            "{error}"
        );
    }

    #[test]
    fn connection_limits_are_read_and_must_be_positive() {
        let config = load(
            "server:\n  header_read_timeout: 5s\n  idle_timeout: 10m\n  max_connections: 100\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.server.header_read_timeout.0, Duration::from_secs(5));
        assert_eq!(config.server.idle_timeout.0, Duration::from_secs(600));
        assert_eq!(config.server.max_connections, 100);

        for (yaml, key) in [
            ("header_read_timeout: 0s", "server.header_read_timeout"),
            ("idle_timeout: 0ms", "server.idle_timeout"),
            ("max_connections: 0", "server.max_connections"),
        ] {
            let error = load(&format!("server:\n  {yaml}\n"), &[]).unwrap_err().0;
            assert!(error.contains(key), "{yaml}: {error}");
        }
        let error = load("", &[("WHARF_SERVER_MAX_CONNECTIONS", "0")])
            .unwrap_err()
            .0;
        assert!(error.contains("server.max_connections"), "{error}");
        let error = load("server:\n  max_connections: -1\n", &[]).unwrap_err().0;
        assert!(error.contains("server.max_connections"), "{error}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            "server:\n  listen: 0.0.0.0:8080\n",
            &[
                ("WHARF_SERVER_LISTEN", "127.0.0.1:9999"),
                ("WHARF_GC_ENABLED", "false"),
                ("WHARF_STORAGE_DATA_DIR", "/srv/wharf"),
                ("WHARF_LIMITS_MAX_BLOB_SIZE", "10MiB"),
                ("WHARF_CONFIG", "ignored.yaml"),
                ("WHARF_TEST_POSTGRES_URL", "postgres://ignored"),
                ("WHARF_URL", "http://127.0.0.1:5000"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9999".parse().unwrap());
        assert!(!config.gc.enabled);
        assert_eq!(config.storage.data_dir, PathBuf::from("/srv/wharf"));
        assert_eq!(config.limits.max_blob_size, Some(ByteSize(10 << 20)));
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let error = load("", &[("WHARF_SERVER_LISTN", "x")]).unwrap_err().0;
        assert!(error.contains("WHARF_SERVER_LISTN"), "{error}");
        let error = load("", &[("WHARF_GC_ENABLED", "perhaps")]).unwrap_err().0;
        assert!(
            error.contains("WHARF_GC_ENABLED") && error.contains("gc.enabled"),
            "{error}"
        );
    }
}
