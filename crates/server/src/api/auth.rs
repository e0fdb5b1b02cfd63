//! Who is calling the registry API, and whether they may do what they ask.
//!
//! A request's credentials are a bearer token from the token endpoint, Basic credentials sent
//! straight to the registry (a user's password or a robot's token), or nothing (anonymous: it
//! may pull public repositories). What is refused:
//! - with no credentials (or an anonymous token): 401 with a `WWW-Authenticate: Bearer`
//!   challenge naming the scope to ask for, so the client logs in, fetches a token and retries;
//! - a read the caller's token does not grant: 401 with the challenge and
//!   `error="insufficient_scope"`, as other registries answer it (clients take a 401 to a `HEAD`
//!   for "not there", and fetch a token for the scope named);
//! - a write the caller's token does not grant: 403 `DENIED` with the same challenge, as RFC 6750
//!   (section 3.1) answers `insufficient_scope`: oras-py fetches a new token only on a 403 — on a
//!   401 it retries with the token it has, and fails — while docker, podman, skopeo, buildah and
//!   containerd ask for `push` before their first write and never meet it;
//! - Basic credentials that may not do it: 403 `DENIED`;
//! - with a bad token or password: 401; with too many failed logins: 429.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use wharf_auth::tokens::ResourceActions;
use wharf_auth::{Authenticator, LoginError, Permissions, Principal};
use wharf_core::role::Action;
use wharf_registry::RegistryError;

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Authentication as the API applies it.
#[derive(Clone)]
pub struct ApiAuth {
    /// `None` when authentication is off: everyone may do everything (the server then listens
    /// on loopback only, unless told otherwise).
    pub authenticator: Option<Arc<Authenticator>>,
    /// `https` when the server serves TLS, for the realm derived from requests.
    pub scheme: &'static str,
}

/// Credentials a request carries.
#[derive(Debug)]
pub enum Credentials {
    /// None.
    None,
    /// `Authorization: Basic`.
    Basic {
        /// The user or robot name.
        username: String,
        /// The password or robot token.
        password: String,
    },
    /// `Authorization: Bearer`.
    Bearer(String),
}

impl Credentials {
    /// The credentials of a request; malformed ones are refused.
    pub fn of(headers: &HeaderMap) -> Result<Credentials, String> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Credentials::None);
        };
        let value = value
            .to_str()
            .map_err(|_| "the Authorization header is not text".to_owned())?
            .trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Credentials::Bearer(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    "the Basic credentials are not base64 of user:password".to_owned()
                })?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| "the Basic credentials are not user:password".to_owned())?;
            return Ok(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        Err("use Authorization: Bearer <token> or Basic <credentials>".to_owned())
    }
}

/// What a caller may do, as far as the request's credentials tell.
#[derive(Clone, Debug)]
enum Grant {
    /// Authentication is off.
    Everything,
    /// A verified access token's grants.
    Token(Vec<ResourceActions>),
    /// An account's (or anonymity's) permissions, checked per request.
    Account(Arc<Permissions>),
}

/// The caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who it is.
    pub principal: Principal,
    /// Whether it presented a token or credentials at all.
    authenticated: bool,
    grant: Grant,
}

/// What a request needs.
#[derive(Debug, Clone, Copy)]
pub enum Needed<'a> {
    /// `/v2/`: to be authenticated (it is how clients discover that they must log in).
    Base,
    /// The catalog.
    Catalog,
    /// An action on a repository.
    Repository(&'a str, Action),
}

/// What a refused write says when the caller may not do it.
const DENIED: &str = "requested access to the resource is denied";

/// Why [`ApiAuth::authorize`] refused a request.
#[derive(Debug)]
pub enum Refusal {
    /// Answered as the registry's error is.
    Registry(RegistryError),
    /// A write the caller's access token does not grant: `403 DENIED` with a `WWW-Authenticate`
    /// challenge naming the scope it needs and `error="insufficient_scope"` (a header the
    /// registry's `Denied` does not carry).
    WriteNotInToken {
        /// The `WWW-Authenticate` header's value.
        challenge: String,
        /// Why, and what to do.
        message: String,
    },
}

impl From<RegistryError> for Refusal {
    fn from(error: RegistryError) -> Self {
        Refusal::Registry(error)
    }
}

impl ApiAuth {
    /// Authentication off.
    pub fn off() -> Self {
        ApiAuth {
            authenticator: None,
            scheme: "http",
        }
    }

    /// Identifies the caller of a request.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<Caller, RegistryError> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(Caller {
                principal: Principal::Anonymous,
                authenticated: true,
                grant: Grant::Everything,
            });
        };
        let credentials =
            Credentials::of(headers).map_err(|why| self.unauthorized(headers, None, &why, None))?;
        match credentials {
            Credentials::None => Ok(Caller {
                principal: Principal::Anonymous,
                authenticated: false,
                grant: Grant::Account(Arc::new(
                    authenticator.permissions(&Principal::Anonymous).await?,
                )),
            }),
            Credentials::Bearer(token) => match authenticator.verify_access(&token) {
                Ok(verified) => Ok(Caller {
                    principal: Principal::from_subject(&verified.subject),
                    authenticated: true,
                    grant: Grant::Token(verified.access),
                }),
                Err(error) => {
                    Err(self.unauthorized(headers, None, &error.0, Some("invalid_token")))
                }
            },
            Credentials::Basic { username, password } => {
                match authenticator.login(&username, &password, peer).await {
                    Ok(login) => Ok(Caller {
                        grant: Grant::Account(Arc::new(
                            authenticator.permissions(&login.principal).await?,
                        )),
                        principal: login.principal,
                        authenticated: true,
                    }),
                    Err(error) => Err(self.login_failed(headers, error)),
                }
            }
        }
    }

    /// Turns a failed login into its answer.
    pub fn login_failed(&self, headers: &HeaderMap, error: LoginError) -> RegistryError {
        match error {
            LoginError::TooMany(retry_after) => RegistryError::TooManyRequests {
                retry_after,
                message: error.to_string(),
            },
            LoginError::Store(error) => error.into(),
            other => self.unauthorized(headers, None, &other.to_string(), None),
        }
    }

    /// Admits the request if the caller may do what it needs; otherwise the answer that tells
    /// the client what to do.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
        needed: Needed<'_>,
    ) -> Result<(), Refusal> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(());
        };
        let allowed = match (&caller.grant, needed) {
            (Grant::Everything, _) => true,
            (_, Needed::Base) => caller.authenticated,
            (Grant::Token(access), Needed::Catalog) => {
                access.iter().any(|a| a.grants("registry", "catalog", "*"))
            }
            (Grant::Account(_), Needed::Catalog) => caller.authenticated,
            (Grant::Token(access), Needed::Repository(name, action)) => access
                .iter()
                .any(|a| a.grants("repository", name, action.as_str())),
            (Grant::Account(permissions), Needed::Repository(name, action)) => {
                permissions.allows(name, action)
            }
        };
        if allowed {
            return Ok(());
        }
        let scope = match needed {
            Needed::Base => None,
            Needed::Catalog => Some("registry:catalog:*".to_owned()),
            Needed::Repository(name, action) => Some(match action {
                Action::Pull => format!("repository:{name}:pull"),
                other => format!("repository:{name}:pull,{}", other.as_str()),
            }),
        };
        if !caller.authenticated || caller.principal == Principal::Anonymous {
            // Not logged in, or logged in as nobody: the challenge sends the client to log in.
            let error = caller.authenticated.then_some("insufficient_scope");
            return Err(self
                .unauthorized(headers, scope.as_deref(), "authentication required", error)
                .into());
        }
        // Basic credentials are the account itself: no token would grant it more.
        let Grant::Token(_) = caller.grant else {
            return Err(RegistryError::Denied(DENIED.to_owned()).into());
        };
        // A token holder may just have asked for too little: if its account may do it, the
        // message says to fetch a token that grants it.
        let could = match needed {
            Needed::Base | Needed::Catalog => true,
            Needed::Repository(name, action) => authenticator
                .permissions(&caller.principal)
                .await
                .map_err(RegistryError::from)?
                .allows(name, action),
        };
        let message = match (could, &scope) {
            (true, Some(scope)) => format!("the token does not grant this: fetch one for {scope}"),
            _ => DENIED.to_owned(),
        };
        let challenge = self.challenge(headers, scope.as_deref(), Some("insufficient_scope"));
        // A write is a 403 (for oras-py), a read a 401 (for a `HEAD`): see the module's doc.
        if matches!(needed, Needed::Repository(_, action) if action != Action::Pull) {
            Err(Refusal::WriteNotInToken { challenge, message })
        } else {
            Err(RegistryError::Unauthorized { challenge, message }.into())
        }
    }

    /// Whether the caller may pull `repository` (for a cross-repository mount's source, which
    /// is only used when it may).
    pub fn may_pull(&self, caller: &Caller, repository: &str) -> bool {
        match &caller.grant {
            Grant::Everything => true,
            Grant::Token(access) => access
                .iter()
                .any(|a| a.grants("repository", repository, "pull")),
            Grant::Account(permissions) => permissions.allows(repository, Action::Pull),
        }
    }

    /// What the caller may see in the catalog: `None` for everything.
    pub async fn listing_permissions(
        &self,
        caller: &Caller,
    ) -> Result<Option<Arc<Permissions>>, RegistryError> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(None);
        };
        match &caller.grant {
            Grant::Everything => Ok(None),
            Grant::Account(permissions) => Ok(Some(permissions.clone())),
            Grant::Token(_) => Ok(Some(Arc::new(
                authenticator.permissions(&caller.principal).await?,
            ))),
        }
    }

    /// A 401 with the challenge that sends the client to the token endpoint.
    pub fn unauthorized(
        &self,
        headers: &HeaderMap,
        scope: Option<&str>,
        message: &str,
        error: Option<&str>,
    ) -> RegistryError {
        RegistryError::Unauthorized {
            challenge: self.challenge(headers, scope, error),
            message: message.to_owned(),
        }
    }

    /// The `WWW-Authenticate` value that sends the client to the token endpoint for `scope`.
    fn challenge(&self, headers: &HeaderMap, scope: Option<&str>, error: Option<&str>) -> String {
        let service = self
            .authenticator
            .as_ref()
            .map_or("wharf", |a| a.settings().service.as_str());
        let mut challenge = format!(
            "Bearer realm=\"{}\",service=\"{service}\"",
            self.realm(headers)
        );
        if let Some(scope) = scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        challenge
    }

    /// The token endpoint's URL: configured, or from the request's Host.
    fn realm(&self, headers: &HeaderMap) -> String {
        if let Some(realm) = self
            .authenticator
            .as_ref()
            .and_then(|a| a.settings().realm.clone())
        {
            return realm;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/'))
            })
            .unwrap_or("localhost");
        format!("{}://{host}{TOKEN_PATH}", self.scheme)
    }
}

impl Caller {
    /// The name pushes are attributed to (for the drain's "push in progress"): the account, or
    /// the address of an anonymous caller.
    pub fn push_identity(&self, peer: IpAddr) -> String {
        match self.principal.name() {
            Some(name) => name.to_owned(),
            None => peer.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn credentials() {
        assert!(matches!(
            Credentials::of(&HeaderMap::new()),
            Ok(Credentials::None)
        ));
        assert!(
            matches!(Credentials::of(&with_authorization("Bearer abc")), Ok(Credentials::Bearer(t)) if t == "abc")
        );
        let basic = Credentials::of(&with_authorization(&format!(
            "basic {}",
            STANDARD.encode("al:i:ce")
        )))
        .unwrap();
        assert!(
            matches!(basic, Credentials::Basic { username, password } if username == "al" && password == "i:ce")
        );
        for bad in ["Basic !!!", "Basic bm9jb2xvbg==", "Digest x", "Bearer"] {
            assert!(Credentials::of(&with_authorization(bad)).is_err(), "{bad}");
        }
    }
}
