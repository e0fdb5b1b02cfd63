//! The token endpoint, `/auth/token`, as registry clients expect it:
//!
//! - `GET` with optional Basic credentials, `service` and any number of `scope` parameters
//!   (Docker's token protocol);
//! - `POST` with an OAuth2 form: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), `scope` (space-separated), `service`,
//!   `client_id`, `access_type=offline`.
//!
//! The answer grants, of the scopes asked for, what the caller may do; asking for more is not
//! an error. Without credentials the token is anonymous (public repositories). Nothing is
//! written: this works while the registry is read-only.
//!
//! Only the OAuth2 form gets a refresh token (`access_type=offline`). `docker login` asks the
//! `GET` form for one (`offline_token=true`) and keeps what comes back as an `identitytoken` in
//! its config file — which podman, skopeo and buildah read too, and then refuse to log in
//! (`currently logged in, auth file contains an Identity token`). Answered without one, as
//! Harbor and Quay answer it, docker keeps the credentials instead and every client on the
//! machine works.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Credentials;
use super::errors::OciError;
use wharf_auth::tokens::ResourceActions;
use wharf_auth::{Authenticator, IssuedTokens, Login, LoginError};
use wharf_registry::RegistryError;

/// The most scopes one request may ask for.
const MAX_SCOPES: usize = 100;

/// `GET /auth/token`.
pub async fn get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, OciError> {
    let authenticator = authenticator(&state)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| {
        RegistryError::BadRequest(format!("the query string is malformed: {e}"))
    })?;
    let scopes = scopes(
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )?;
    let login = match Credentials::of(&headers)
        .map_err(|why| state.auth.unauthorized(&headers, None, &why, None))?
    {
        Credentials::None => None,
        Credentials::Basic { username, password } => Some(
            authenticator
                .login(&username, &password, peer.ip())
                .await
                .map_err(|e| state.auth.login_failed(&headers, e))?,
        ),
        Credentials::Bearer(_) => {
            return Err(state
                .auth
                .unauthorized(
                    &headers,
                    None,
                    "log in with Basic credentials, or trade a refresh token with POST",
                    None,
                )
                .into());
        }
    };
    // `offline_token=true` is not honoured: see the module's documentation.
    let issued = issue(authenticator, login.as_ref(), &scopes, false).await?;
    Ok(answer(&issued, false))
}

/// The OAuth2 form.
#[derive(Debug, Deserialize)]
struct Form {
    grant_type: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    access_type: Option<String>,
    // `service` and `client_id` are sent and not needed: the service is this registry's, and
    // any client may ask.
}

/// `POST /auth/token`.
pub async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OciError> {
    let authenticator = authenticator(&state)?;
    let form: Form = serde_urlencoded::from_bytes(&body).map_err(|e| {
        RegistryError::BadRequest(format!(
            "the body must be an OAuth2 form (grant_type=password or refresh_token): {e}"
        ))
    })?;
    let scopes = scopes(form.scope.as_deref().unwrap_or("").split_whitespace())?;
    let login = match form.grant_type.as_str() {
        "password" => {
            let (Some(username), Some(password)) = (&form.username, &form.password) else {
                return Err(RegistryError::BadRequest(
                    "grant_type=password needs username and password".to_owned(),
                )
                .into());
            };
            authenticator.login(username, password, peer.ip()).await
        }
        "refresh_token" => {
            let Some(token) = &form.refresh_token else {
                return Err(RegistryError::BadRequest(
                    "grant_type=refresh_token needs refresh_token".to_owned(),
                )
                .into());
            };
            authenticator.refresh(token).await
        }
        other => {
            return Err(RegistryError::BadRequest(format!(
                "unsupported grant_type {other:?}: use password or refresh_token"
            ))
            .into());
        }
    }
    .map_err(|e: LoginError| state.auth.login_failed(&headers, e))?;
    let offline = form.access_type.as_deref() == Some("offline");
    let issued = issue(authenticator, Some(&login), &scopes, offline).await?;
    Ok(answer(&issued, true))
}

fn authenticator(state: &AppState) -> Result<&Authenticator, RegistryError> {
    state
        .auth
        .authenticator
        .as_deref()
        .ok_or(RegistryError::EndpointUnknown)
}

fn scopes<'a>(texts: impl Iterator<Item = &'a str>) -> Result<Vec<ResourceActions>, RegistryError> {
    // A client may send several scopes in one parameter, separated by spaces.
    let scopes: Vec<ResourceActions> = texts
        .flat_map(str::split_whitespace)
        .filter_map(ResourceActions::parse_scope)
        .collect();
    if scopes.len() > MAX_SCOPES {
        return Err(RegistryError::BadRequest(format!(
            "at most {MAX_SCOPES} scopes per token"
        )));
    }
    Ok(scopes)
}

async fn issue(
    authenticator: &Authenticator,
    login: Option<&Login>,
    scopes: &[ResourceActions],
    offline: bool,
) -> Result<IssuedTokens, RegistryError> {
    let issued = authenticator
        .issue(login, scopes, offline)
        .await
        .map_err(RegistryError::internal)?;
    let who = login.map_or_else(|| "anonymous".to_owned(), |l| l.principal.to_string());
    tracing::debug!(
        principal = %who,
        granted = ?issued.granted.iter().map(ResourceActions::scope).collect::<Vec<_>>(),
        "token issued"
    );
    Ok(issued)
}

fn answer(issued: &IssuedTokens, oauth: bool) -> Response {
    let issued_at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(issued.access.issued_at),
    )
    .to_string();
    let mut body = json!({
        "access_token": issued.access.token,
        "expires_in": issued.access.ttl.as_secs(),
        "issued_at": issued_at,
    });
    if oauth {
        body["scope"] = issued
            .granted
            .iter()
            .map(ResourceActions::scope)
            .collect::<Vec<_>>()
            .join(" ")
            .into();
    } else {
        body["token"] = issued.access.token.clone().into();
    }
    if let Some(refresh) = &issued.refresh {
        body["refresh_token"] = refresh.token.clone().into();
    }
    (
        StatusCode::OK,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}
