//! The tokens the token endpoint issues: JWTs in the shape of the Docker registry token
//! specification (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`, `access`), signed with the
//! [signing keys](super::keys), and the scopes clients ask for
//! (`repository:team/app:pull,push`, `registry:catalog:*`).
//!
//! Access tokens are short-lived and carry exactly the actions granted. Refresh tokens (for
//! clients that ask the OAuth2 form for `access_type=offline`) carry no access, only who they
//! are for and a fingerprint of the credential they were issued against: a changed password or
//! robot token invalidates them, with nothing stored per token. Each kind carries its use, so
//! one is never accepted for the other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::SigningKeys;
use super::secrets::{SecretError, random_secret};

/// A resource and actions on it: one scope a client asks for, and one entry of a token's
/// `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository's name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, or `*`.
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// Parses a scope: `repository:<name>:<actions>` (also `repository(plugin):...`) or
    /// `registry:catalog:*`. Other resource types are not Wharf's and give `None`.
    pub fn parse_scope(scope: &str) -> Option<ResourceActions> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = match kind.split_once('(').map_or(kind, |(kind, _)| kind) {
            "repository" => "repository",
            "registry" if name == "catalog" => "registry",
            _ => return None,
        };
        let actions: Vec<String> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        (!name.is_empty()).then(|| ResourceActions {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// Whether this entry grants `action` on the resource `kind:name`.
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }

    /// The scope text (`repository:team/app:pull,push`).
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented to the registry, with the actions it grants.
    Access,
    /// Traded at the token endpoint for new access tokens.
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    #[serde(default)]
    access: Vec<ResourceActions>,
    #[serde(rename = "use")]
    token_use: TokenUse,
    /// Refresh tokens: the fingerprint of the credential they were issued against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cred: Option<String>,
}

/// A token whose signature, issuer, audience, times and use were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who it was issued to (empty for anonymous callers).
    pub subject: String,
    /// What it grants (access tokens).
    pub access: Vec<ResourceActions>,
    /// The credential fingerprint (refresh tokens).
    pub credential: Option<String>,
}

/// Why a token was refused; said to clients in a `WWW-Authenticate` header, so it gives the
/// reason but nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// Issues and verifies tokens for one service.
#[derive(Debug)]
pub struct TokenIssuer {
    /// Replaced whole when the key files change (see [`TokenIssuer::replace_keys`]).
    keys: arc_swap::ArcSwap<SigningKeys>,
    issuer: String,
    service: String,
    leeway: Duration,
}

/// A signed token and when it expires.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// The JWT.
    pub token: String,
    /// Seconds since the Unix epoch when it was issued.
    pub issued_at: u64,
    /// Its lifetime.
    pub ttl: Duration,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// An issuer named `issuer` for the service (the tokens' audience) `service`. Tokens it
    /// verifies may be `leeway` past their `exp` or before their `nbf`: the replicas that issue
    /// and verify them read different clocks. Token times are whole seconds, and so is the
    /// leeway (a fraction is dropped).
    pub fn new(keys: SigningKeys, issuer: &str, service: &str, leeway: Duration) -> TokenIssuer {
        TokenIssuer {
            keys: arc_swap::ArcSwap::from_pointee(keys),
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            leeway,
        }
    }

    /// Signs and verifies with `keys` from now on (the key files changed). Tokens signed by a
    /// key no longer among them stop verifying: keep the old key in the list while its tokens
    /// live to rotate without a cut.
    pub fn replace_keys(&self, keys: SigningKeys) {
        self.keys.store(std::sync::Arc::new(keys));
    }

    /// The service tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Signs an access token for `subject` granting `access`, valid for `ttl`.
    pub fn access_token(
        &self,
        subject: &str,
        access: Vec<ResourceActions>,
        ttl: Duration,
    ) -> Result<SignedToken, SecretError> {
        self.sign(subject, access, None, TokenUse::Access, ttl)
    }

    /// Signs a refresh token for `subject` issued against the credential with `fingerprint`.
    pub fn refresh_token(
        &self,
        subject: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<SignedToken, SecretError> {
        self.sign(
            subject,
            Vec::new(),
            Some(fingerprint.to_owned()),
            TokenUse::Refresh,
            ttl,
        )
    }

    fn sign(
        &self,
        subject: &str,
        access: Vec<ResourceActions>,
        cred: Option<String>,
        token_use: TokenUse,
        ttl: Duration,
    ) -> Result<SignedToken, SecretError> {
        let keys = self.keys.load();
        let key = keys.signer();
        let now = now_seconds();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + ttl.as_secs().max(1),
            nbf: now.saturating_sub(1),
            iat: now,
            jti: random_secret("")?,
            access,
            token_use,
            cred,
        };
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.id.clone());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding())
            .map_err(|e| SecretError::Hash(format!("cannot sign a token: {e}")))?;
        Ok(SignedToken {
            token,
            issued_at: now,
            ttl,
        })
    }

    /// Verifies a token of the given use: its signature by one of the keys, the issuer, the
    /// audience (this service), its times (`exp` and `nbf`, each with the leeway; `iat` is not
    /// checked on its own, as the tokens Wharf signs are valid from a second before it).
    pub fn verify(&self, token: &str, expected: TokenUse) -> Result<VerifiedToken, TokenError> {
        let refused = |why: &str| TokenError(why.to_owned());
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refused("the token is malformed"))?;
        let keys = self.keys.load();
        let key = header
            .kid
            .as_deref()
            .and_then(|id| keys.find(id))
            .ok_or_else(|| refused("the token was not signed by a key of this registry"))?;
        if header.alg != key.algorithm {
            return Err(refused("the token's algorithm is not its key's"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Claims>(token, key.decoding(), &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                refused(match e.kind() {
                    K::ExpiredSignature => {
                        "the token has expired; get a new one from the token endpoint"
                    }
                    // Only a replica whose clock is ahead of this one's by more than the leeway
                    // issues such a token, so the message names the likely cause.
                    K::ImmatureSignature => {
                        "the token is not valid yet: the clocks of the registry's replicas disagree"
                    }
                    K::InvalidAudience => "the token is for another service",
                    K::InvalidIssuer => "the token is from another issuer",
                    K::InvalidSignature => "the token's signature is invalid",
                    _ => "the token is invalid",
                })
            })?
            .claims;
        if claims.token_use != expected {
            return Err(refused(match expected {
                TokenUse::Access => "a refresh token is not an access token",
                TokenUse::Refresh => "an access token is not a refresh token",
            }));
        }
        Ok(VerifiedToken {
            subject: claims.sub,
            access: claims.access,
            credential: claims.cred,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_pem;

    fn issuer(pem: &str, service: &str) -> TokenIssuer {
        TokenIssuer::new(
            SigningKeys::from_pems(&[pem.as_bytes()]).unwrap(),
            "wharf",
            service,
            Duration::from_secs(5),
        )
    }

    /// An access token signed by `issuer` with these times, in seconds from now.
    fn token_with_times(issuer: &TokenIssuer, exp: i64, nbf: i64) -> String {
        let now = now_seconds();
        let at = |offset: i64| now.checked_add_signed(offset).unwrap();
        let claims = Claims {
            iss: "wharf".to_owned(),
            sub: "alice".to_owned(),
            aud: issuer.service.clone(),
            exp: at(exp),
            nbf: at(nbf),
            iat: at(nbf),
            jti: "t".to_owned(),
            access: Vec::new(),
            token_use: TokenUse::Access,
            cred: None,
        };
        let keys = issuer.keys.load();
        let key = keys.signer();
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.id.clone());
        jsonwebtoken::encode(&header, &claims, key.encoding()).unwrap()
    }

    #[test]
    fn times_are_checked_with_the_leeway_only() {
        let pem = generate_pem().unwrap();
        let keys = || SigningKeys::from_pems(&[pem.as_bytes()]).unwrap();
        let lenient = TokenIssuer::new(keys(), "wharf", "wharf", Duration::from_secs(30));
        let verify = |issuer: &TokenIssuer, exp, nbf| {
            issuer
                .verify(&token_with_times(issuer, exp, nbf), TokenUse::Access)
                .map(|_| ())
        };
        // Margins of many seconds on both sides of the leeway: a slow test run cannot cross them.
        assert_eq!(
            verify(&lenient, -10, -300),
            Ok(()),
            "expired within the leeway"
        );
        assert_eq!(
            verify(&lenient, 300, 10),
            Ok(()),
            "valid soon, within the leeway"
        );
        let expired = verify(&lenient, -60, -300).unwrap_err();
        assert!(expired.0.contains("has expired"), "{expired}");
        let early = verify(&lenient, 300, 60).unwrap_err();
        assert!(early.0.contains("not valid yet"), "{early}");

        let strict = TokenIssuer::new(keys(), "wharf", "wharf", Duration::ZERO);
        assert!(
            verify(&strict, -1, -300).is_err(),
            "no leeway: expired a second ago is expired"
        );
        assert!(
            verify(&strict, 300, 30).is_err(),
            "no leeway: not valid yet"
        );
        assert_eq!(verify(&strict, 300, 0), Ok(()));
    }

    #[test]
    fn scopes() {
        let scope = ResourceActions::parse_scope("repository:team/app:pull,push").unwrap();
        assert_eq!(scope.kind, "repository");
        assert_eq!(scope.name, "team/app");
        assert_eq!(scope.actions, ["pull", "push"]);
        assert_eq!(scope.scope(), "repository:team/app:pull,push");
        assert_eq!(
            ResourceActions::parse_scope("repository(plugin):a:pull")
                .unwrap()
                .kind,
            "repository"
        );
        assert_eq!(
            ResourceActions::parse_scope("registry:catalog:*")
                .unwrap()
                .actions,
            ["*"]
        );
        assert!(ResourceActions::parse_scope("registry:other:*").is_none());
        assert!(ResourceActions::parse_scope("something:a:pull").is_none());
        assert!(ResourceActions::parse_scope("repository:pull").is_none());
        assert!(ResourceActions::parse_scope("repository::pull").is_none());
        assert!(scope.grants("repository", "team/app", "push"));
        assert!(!scope.grants("repository", "team/app", "delete"));
        assert!(!scope.grants("repository", "team/other", "pull"));
    }

    #[test]
    fn tokens_verify_for_their_use_and_service_only() {
        let pem = generate_pem().unwrap();
        let issuer = issuer(&pem, "wharf");
        let access = vec![ResourceActions::parse_scope("repository:a/b:pull").unwrap()];
        let token = issuer
            .access_token("alice", access.clone(), Duration::from_secs(60))
            .unwrap();
        let verified = issuer.verify(&token.token, TokenUse::Access).unwrap();
        assert_eq!(verified.subject, "alice");
        assert_eq!(verified.access, access);
        assert!(issuer.verify(&token.token, TokenUse::Refresh).is_err());

        let refresh = issuer
            .refresh_token("alice", "f1", Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            issuer
                .verify(&refresh.token, TokenUse::Refresh)
                .unwrap()
                .credential
                .as_deref(),
            Some("f1")
        );
        assert!(issuer.verify(&refresh.token, TokenUse::Access).is_err());

        let other_key = self::issuer(&generate_pem().unwrap(), "wharf");
        assert!(
            other_key.verify(&token.token, TokenUse::Access).is_err(),
            "another key"
        );
        let other_service = self::issuer(&pem, "elsewhere");
        assert!(
            other_service
                .verify(&token.token, TokenUse::Access)
                .is_err(),
            "another service"
        );

        let mut tampered = token.token.clone();
        let payload_start = tampered.find('.').unwrap() + 1;
        tampered.replace_range(payload_start..payload_start + 1, "x");
        assert!(issuer.verify(&tampered, TokenUse::Access).is_err());
        assert!(issuer.verify("not.a.token", TokenUse::Access).is_err());
    }
}
