//! Authentication and authorization: who is calling, and what they may do.
//!
//! Wharf speaks the token protocol every registry client knows: a request without credentials
//! is answered 401 with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge;
//! the client logs in at the token endpoint (Basic credentials, or the OAuth2 form) and comes
//! back with a short-lived signed JWT granting exactly the actions it may do. Basic credentials
//! sent straight to the registry work too. Nothing here writes to the database: logins, token
//! issuance and pulls work while the registry is read-only.
//!
//! # Layout
//!
//! - [`Role`], [`Action`], [`Principal`] (here): the vocabulary.
//! - [`access`]: [`Permissions`] — what one caller may do.
//! - [`accounts`]: [`Accounts`] — creating and changing accounts, through the write gate.
//! - [`tokens`]: scopes and the JWTs the token endpoint issues.
//! - [`keys`]: the signing keys (files, or one generated into the data folder).
//! - [`limiter`]: failed-login rate limiting.
//! - [`secrets`]: password hashing and random secrets.
//! - [`names`]: account names.
//! - [`Authenticator`] (here): logins, tokens, and the first superuser.

pub mod access;
pub mod accounts;
pub mod keys;
pub mod limiter;
pub mod names;
pub mod secrets;
pub mod tokens;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use access::Permissions;
pub use accounts::Accounts;

use keys::SigningKeys;
use limiter::{LoginLimiter, LoginLimits};
use secrets::{SecretError, constant_time_eq, fingerprint, sha256_hex, verify_password};
use tokens::{ResourceActions, SignedToken, TokenError, TokenIssuer, TokenUse, VerifiedToken};
use wharf_core::reference::RepositoryName;
use wharf_core::role::Action;
use wharf_core::time::now_millis;
use wharf_gate::ControlWrite;
use wharf_metadata::accounts::UserRecord;
use wharf_metadata::{MetadataError, MetadataStore};

/// The name of the superuser created at first start.
pub const FIRST_SUPERUSER: &str = "admin";

/// The file in the data folder that receives the first superuser's generated password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// The environment variable that may give the first superuser's password.
pub const ADMIN_PASSWORD_VARIABLE: &str = "WHARF_ADMIN_PASSWORD";

/// How long a checked password is remembered, so that Basic credentials sent with every
/// request do not cost an argon2 hash each. A changed password is still refused at once: the
/// account's current hash is compared on every use.
const LOGIN_CACHE_TTL: Duration = Duration::from_secs(60);

/// The most logins remembered.
const LOGIN_CACHE_SIZE: usize = 10_000;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Nobody logged in.
    Anonymous,
    /// A user.
    User(String),
    /// A robot account (`organization+name`).
    Robot(String),
}

impl Principal {
    /// The principal a token subject names (empty: anonymous; with a `+`: a robot).
    pub fn from_subject(subject: &str) -> Principal {
        if subject.is_empty() {
            Principal::Anonymous
        } else if subject.contains('+') {
            Principal::Robot(subject.to_owned())
        } else {
            Principal::User(subject.to_owned())
        }
    }

    /// The account's name; `None` for anonymous callers.
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User(name) | Principal::Robot(name) => Some(name),
        }
    }

    /// The name a token is issued to (empty for anonymous callers).
    pub fn subject(&self) -> &str {
        self.name().unwrap_or("")
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name().unwrap_or("anonymous"))
    }
}

/// How the token endpoint and the registry behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The service tokens are issued for (their audience).
    pub service: String,
    /// The token endpoint's URL given in challenges; `None`: derived from each request.
    pub realm: Option<String>,
    /// The lifetime of access tokens.
    pub token_ttl: Duration,
    /// The lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// How far past its `exp` (or before its `nbf`) a token is still accepted: replicas sharing
    /// the signing keys verify tokens other replicas issued, by their own clocks.
    pub token_leeway: Duration,
    /// Failed-login limits.
    pub login_limits: LoginLimits,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Who logged in.
    pub principal: Principal,
    /// The fingerprint of the credential used, which refresh tokens carry.
    pub credential: String,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The name or the password is wrong (which one is not said).
    #[error("incorrect username or password")]
    Invalid,
    /// Too many failed logins for the account from the address, or from the address.
    #[error("too many failed logins; retry in {} seconds", .0.as_secs().max(1))]
    TooMany(Duration),
    /// A refresh token that is not valid (any more).
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] MetadataError),
}

/// What the token endpoint gives.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The access token.
    pub access: SignedToken,
    /// What it grants.
    pub granted: Vec<ResourceActions>,
    /// A refresh token, when one was asked for after a login.
    pub refresh: Option<SignedToken>,
}

#[derive(Debug, Clone)]
struct RememberedLogin {
    login: Login,
    until: Instant,
}

/// Logins, token verification and issuance.
pub struct Authenticator {
    store: Arc<dyn MetadataStore>,
    tokens: TokenIssuer,
    limiter: LoginLimiter,
    settings: AuthSettings,
    remembered: Mutex<HashMap<String, RememberedLogin>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Signs and verifies tokens with `keys` from now on (the key files changed).
    pub fn replace_signing_keys(&self, keys: SigningKeys) {
        self.tokens.replace_keys(keys);
    }

    /// An authenticator over the accounts in `store`, signing with `keys`.
    pub fn new(store: Arc<dyn MetadataStore>, keys: SigningKeys, settings: AuthSettings) -> Self {
        Authenticator {
            tokens: TokenIssuer::new(keys, "wharf", &settings.service, settings.token_leeway),
            limiter: LoginLimiter::new(settings.login_limits),
            store,
            settings,
            remembered: Mutex::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Checks a name and a secret: a user's password, or a robot's token. Failures count
    /// towards the limits of the account at `address` and of `address` (see [`limiter`]).
    pub async fn login(
        &self,
        name: &str,
        secret: &str,
        address: IpAddr,
    ) -> Result<Login, LoginError> {
        let attempt = self
            .limiter
            .check(name, address)
            .map_err(LoginError::TooMany)?;
        let key = sha256_hex(&format!("{name}\0{secret}"));
        let remembered = self.remembered_login(&key);
        // A database failure drops the attempt undecided: it says nothing of the password.
        let current = self.current_credential(name).await?;
        let login = match (current, remembered) {
            (Some((principal, hash)), Some(remembered))
                if remembered.login.credential == fingerprint(&hash) =>
            {
                Some(Login {
                    principal,
                    ..remembered.login
                })
            }
            (Some((principal, hash)), _) => {
                let matches = match &principal {
                    Principal::Robot(_) => constant_time_eq(&sha256_hex(secret), &hash),
                    _ => {
                        let (secret, stored) = (secret.to_owned(), hash.clone());
                        tokio::task::spawn_blocking(move || verify_password(&secret, &stored))
                            .await
                            .unwrap_or(false)
                    }
                };
                matches.then(|| Login {
                    principal,
                    credential: fingerprint(&hash),
                })
            }
            (None, _) => None,
        };
        match login {
            Some(login) => {
                attempt.succeeded();
                self.remember(key, &login);
                Ok(login)
            }
            None => {
                attempt.failed();
                tracing::info!(account = %name.chars().take(64).collect::<String>(), %address, "failed login");
                Err(LoginError::Invalid)
            }
        }
    }

    /// Trades a refresh token for the login it was issued to, if its account and credential
    /// are unchanged.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Login, LoginError> {
        let verified = self.tokens.verify(refresh_token, TokenUse::Refresh)?;
        let current = self.current_credential(&verified.subject).await?;
        match (current, verified.credential) {
            (Some((principal, hash)), Some(credential)) if fingerprint(&hash) == credential => {
                Ok(Login {
                    principal,
                    credential,
                })
            }
            _ => Err(
                TokenError("the refresh token is no longer valid; log in again".to_owned()).into(),
            ),
        }
    }

    /// The account `name` and the hash of its credential, if it exists.
    async fn current_credential(
        &self,
        name: &str,
    ) -> Result<Option<(Principal, String)>, MetadataError> {
        if name.contains('+') {
            Ok(self
                .store
                .robot(name)
                .await?
                .map(|robot| (Principal::Robot(robot.name), robot.token_hash)))
        } else {
            Ok(self
                .store
                .user(name)
                .await?
                .map(|user| (Principal::User(user.name), user.password_hash)))
        }
    }

    fn remembered_login(&self, key: &str) -> Option<RememberedLogin> {
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered
            .get(key)
            .filter(|r| r.until > Instant::now())
            .cloned()
    }

    fn remember(&self, key: String, login: &Login) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered.len() >= LOGIN_CACHE_SIZE {
            let now = Instant::now();
            remembered.retain(|_, r| r.until > now);
            if remembered.len() >= LOGIN_CACHE_SIZE {
                remembered.clear();
            }
        }
        remembered.insert(
            key,
            RememberedLogin {
                login: login.clone(),
                until: Instant::now() + LOGIN_CACHE_TTL,
            },
        );
    }

    /// Verifies an access token presented to the registry.
    pub fn verify_access(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.tokens.verify(token, TokenUse::Access)
    }

    /// What `principal` may do, as the accounts say now.
    pub async fn permissions(&self, principal: &Principal) -> Result<Permissions, MetadataError> {
        Permissions::load(self.store.as_ref(), principal).await
    }

    /// Issues an access token granting, of the `scopes` asked for, what the caller may do (and
    /// nothing else: asking for more is not an error, the token just lacks it), and a refresh
    /// token when `offline` is asked after a login.
    pub async fn issue(
        &self,
        login: Option<&Login>,
        scopes: &[ResourceActions],
        offline: bool,
    ) -> Result<IssuedTokens, IssueError> {
        let principal = login.map_or(Principal::Anonymous, |l| l.principal.clone());
        let permissions = self.permissions(&principal).await?;
        let granted = grant(&permissions, scopes);
        let access = self.tokens.access_token(
            principal.subject(),
            granted.clone(),
            self.settings.token_ttl,
        )?;
        let refresh = match login {
            Some(login) if offline => Some(self.tokens.refresh_token(
                login.principal.subject(),
                &login.credential,
                self.settings.refresh_token_ttl,
            )?),
            _ => None,
        };
        Ok(IssuedTokens {
            access,
            granted,
            refresh,
        })
    }

    /// Creates the first superuser (`admin`) if there is none: with the password in
    /// `WHARF_ADMIN_PASSWORD` if given, else a random one written to `admin-password` in the data
    /// folder (0600). The log says where the password is, never the password. A control-plane
    /// write (`control`, from the registry's gate): it is made even while read-only.
    pub async fn create_first_superuser(
        &self,
        control: &ControlWrite,
        data_dir: &Path,
        password: Option<String>,
    ) -> Result<(), BootstrapError> {
        if self.store.has_superuser().await? {
            return Ok(());
        }
        let (password, file) = match password.filter(|p| !p.is_empty()) {
            Some(password) => {
                secrets::check_password(&password).map_err(|why| {
                    BootstrapError::Password(format!("{ADMIN_PASSWORD_VARIABLE}: {why}"))
                })?;
                (password, None)
            }
            None => (
                secrets::random_secret("")?,
                Some(data_dir.join(ADMIN_PASSWORD_FILE)),
            ),
        };
        let hash = {
            let password = password.clone();
            tokio::task::spawn_blocking(move || secrets::hash_password(&password))
                .await
                .map_err(|e| BootstrapError::Password(e.to_string()))??
        };
        if let Some(file) = &file {
            write_private_file(file, &format!("{password}\n")).map_err(|e| {
                BootstrapError::Password(format!("cannot write {}: {e}", file.display()))
            })?;
        }
        let user = UserRecord {
            name: FIRST_SUPERUSER.to_owned(),
            password_hash: hash,
            superuser: true,
            created_at: now_millis(),
        };
        if self.store.bootstrap_superuser(control, &user).await? {
            match &file {
                Some(file) => tracing::warn!(
                    user = FIRST_SUPERUSER, password_file = %file.display(),
                    "created the first superuser; its password is in the password file: read it, then delete the file"
                ),
                None => tracing::warn!(
                    user = FIRST_SUPERUSER,
                    "created the first superuser with the password from {ADMIN_PASSWORD_VARIABLE}"
                ),
            }
        } else {
            if let Some(file) = &file {
                let _ = std::fs::remove_file(file);
            }
            tracing::warn!(
                "no superuser exists, and the name {FIRST_SUPERUSER} is taken: create one with \
                 `wharf user add <name> --superuser` while the registry is stopped"
            );
        }
        Ok(())
    }
}

/// Of the scopes asked for, what `permissions` allow.
fn grant(permissions: &Permissions, scopes: &[ResourceActions]) -> Vec<ResourceActions> {
    let mut granted: Vec<ResourceActions> = Vec::new();
    for scope in scopes {
        let actions: Vec<String> = match scope.kind.as_str() {
            // Everyone may list; the listing shows only what the caller may pull.
            "registry" => vec!["*".to_owned()],
            _ if scope.name.parse::<RepositoryName>().is_err() => continue,
            _ => Action::ALL
                .into_iter()
                .filter(|action| {
                    scope
                        .actions
                        .iter()
                        .any(|a| a == action.as_str() || a == "*")
                        && permissions.allows(&scope.name, *action)
                })
                .map(|action| action.as_str().to_owned())
                .collect(),
        };
        if actions.is_empty() {
            continue;
        }
        match granted
            .iter_mut()
            .find(|g| g.kind == scope.kind && g.name == scope.name)
        {
            Some(existing) => {
                for action in actions {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => granted.push(ResourceActions {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions,
            }),
        }
    }
    granted
}

/// Why tokens could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] MetadataError),
    /// Signing failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Why the first superuser could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] MetadataError),
    /// The password could not be made, hashed or kept.
    #[error("the first superuser's password: {0}")]
    Password(String),
    /// Randomness or hashing failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Writes a file only its owner may read, whole or not at all.
pub fn write_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(Principal::from_subject(""), Principal::Anonymous);
        assert_eq!(
            Principal::from_subject("acme+ci"),
            Principal::Robot("acme+ci".to_owned())
        );
        assert_eq!(
            Principal::from_subject("alice"),
            Principal::User("alice".to_owned())
        );
        assert_eq!(Principal::Anonymous.to_string(), "anonymous");
    }

    #[test]
    fn tokens_grant_what_is_asked_and_allowed_only() {
        let everything = Permissions::unrestricted(Principal::User("root".to_owned()));
        let scopes: Vec<ResourceActions> = [
            "repository:a/b:pull,push",
            "repository:a/b:delete",
            "repository:Bad Name:pull",
            "repository:c/d:pull,frobnicate",
            "registry:catalog:*",
        ]
        .iter()
        .filter_map(|s| ResourceActions::parse_scope(s))
        .collect();
        let granted = grant(&everything, &scopes);
        assert_eq!(
            granted
                .iter()
                .map(ResourceActions::scope)
                .collect::<Vec<_>>(),
            [
                "repository:a/b:pull,push,delete",
                "repository:c/d:pull",
                "registry:catalog:*"
            ]
        );
    }
}
