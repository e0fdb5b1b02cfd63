//! The admin API under `/api/v1`: the registry's state and read-only holds, the audit trail,
//! maintenance, backups, and accounts.
//!
//! Access: with authentication on, every request carries credentials (Basic, or a bearer token
//! from the token endpoint); the operations (state, holds, events, gc, backups) need a registry
//! administrator (a superuser or an admin robot), and account changes are checked by
//! [`Accounts`](wharf_auth::Accounts). With authentication off, only clients on a loopback
//! address, not forwarded by a proxy, are answered — as administrators. Errors have the same
//! JSON shape as the registry API's.

mod accounts;
mod backups;
mod maintenance;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use super::AppState;
use super::auth::Credentials;
use wharf_auth::{LoginError, Permissions, Principal};
use wharf_registry::{GcSettings, RegistryError, WriteFailure};

/// What the admin API needs to know besides the registry.
pub struct AdminAccess {
    /// The settings `POST /api/v1/gc` collects with.
    pub gc: GcSettings,
}

/// The authenticated caller, for the audit trail.
#[derive(Debug, Clone)]
struct Actor(String);

/// What the authenticated caller may do.
#[derive(Debug, Clone)]
struct AdminCaller(Arc<Permissions>);

/// The `/api/v1` routes.
pub fn routes(state: AppState) -> Router<AppState> {
    let operations = Router::new()
        .route("/api/v1/state", get(state::show))
        .route(
            "/api/v1/state/holds/{name}",
            put(state::set_hold).delete(state::release_hold),
        )
        .route("/api/v1/events", get(state::events))
        .route("/api/v1/gc", post(maintenance::collect_garbage))
        .route("/api/v1/backups", post(backups::create))
        .route(
            "/api/v1/backups/{id}",
            axum::routing::delete(backups::end).put(backups::renew),
        )
        .route("/api/v1/backups/{id}/metadata", get(backups::metadata))
        .route("/api/v1/backups/{id}/blobs", get(backups::blobs))
        .route("/api/v1/backups/{id}/blobs/{digest}", get(backups::blob))
        .layer(axum::middleware::from_fn(require_registry_admin));
    Router::new()
        .merge(operations)
        .merge(accounts::routes())
        .fallback(|| async {
            AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such admin endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// Identifies the caller of an admin request, or answers 401/403/429.
async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(authenticator) = state.auth.authenticator.clone() else {
        // A request a proxy forwarded comes from the proxy's address, which may be local: only
        // a direct local caller is trusted.
        if !peer.ip().to_canonical().is_loopback() || is_forwarded(request.headers()) {
            return AdminError::new(
                StatusCode::FORBIDDEN,
                "DENIED",
                "with authentication off (auth.mode: none), the admin API answers only direct loopback clients",
            )
            .into_response();
        }
        let actor = format!("local admin ({})", peer.ip().to_canonical());
        let permissions = Permissions::unrestricted(Principal::User(actor.clone()));
        request.extensions_mut().insert(Actor(actor));
        request
            .extensions_mut()
            .insert(AdminCaller(Arc::new(permissions)));
        return next.run(request).await;
    };
    let principal = match Credentials::of(request.headers()) {
        Ok(Credentials::Basic { username, password }) => {
            match authenticator.login(&username, &password, peer.ip()).await {
                Ok(login) => login.principal,
                Err(LoginError::TooMany(retry_after)) => {
                    return AdminError {
                        retry_after: Some(retry_after.as_secs().max(1)),
                        ..AdminError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "TOOMANYREQUESTS",
                            "too many failed logins; retry later",
                        )
                    }
                    .into_response();
                }
                Err(LoginError::Store(error)) => {
                    return AdminError::internal(error).into_response();
                }
                Err(_) => return unauthorized("incorrect username or password"),
            }
        }
        Ok(Credentials::Bearer(token)) => match authenticator.verify_access(&token) {
            Ok(verified) => Principal::from_subject(&verified.subject),
            Err(error) => return unauthorized(&error.0),
        },
        Ok(Credentials::None) => {
            return unauthorized(
                "the admin API needs credentials: a user's or robot's (Basic), or a token from /auth/token",
            );
        }
        Err(why) => return unauthorized(&why),
    };
    if principal == Principal::Anonymous {
        return unauthorized("an anonymous token does not open the admin API; log in");
    }
    let permissions = match authenticator.permissions(&principal).await {
        Ok(permissions) => permissions,
        Err(error) => return AdminError::internal(error).into_response(),
    };
    request
        .extensions_mut()
        .insert(Actor(principal.to_string()));
    request
        .extensions_mut()
        .insert(AdminCaller(Arc::new(permissions)));
    next.run(request).await
}

/// Lets only registry administrators through.
async fn require_registry_admin(request: Request, next: Next) -> Response {
    let admin = request
        .extensions()
        .get::<AdminCaller>()
        .is_some_and(|caller| caller.0.is_registry_admin());
    if !admin {
        return AdminError::new(
            StatusCode::FORBIDDEN,
            "DENIED",
            "only a registry administrator (a superuser, or an admin robot) may do this",
        )
        .into_response();
    }
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        AdminError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wharf admin\""),
    );
    response
}

/// Whether a proxy says it forwarded the request.
fn is_forwarded(headers: &axum::http::HeaderMap) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
}

/// An admin API error: `{"errors":[{"code","message"}]}` with a status.
#[derive(Debug)]
struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// Set when a write failed inside the registry, for the registry's write health.
    failure: Option<(WriteFailure, String)>,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            failure: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID", message)
    }

    /// A write the gate refused: 503 with `Retry-After`; `waiting` says what waits.
    fn refused(refused: wharf_gate::WriteRefused, waiting: &str) -> Self {
        match refused {
            wharf_gate::WriteRefused::ReadOnly { reason, .. } => AdminError {
                retry_after: Some(state::READ_ONLY_RETRY_AFTER),
                ..AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    format!("the registry is read-only ({reason}): {waiting}"),
                )
            },
            wharf_gate::WriteRefused::Cancelled => AdminError {
                retry_after: Some(5),
                ..AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the write was cancelled before it completed; retry it",
                )
            },
        }
    }

    /// A failure inside the registry: a full storage is said as such (507), anything else is
    /// an internal error whose details go to the log only.
    fn internal(error: impl std::error::Error + 'static) -> Self {
        match (&error as &dyn std::error::Error).downcast_ref::<RegistryError>() {
            Some(registry_error) => Self::registry(registry_error),
            None => Self::registry(&RegistryError::store_failed(error)),
        }
    }

    fn registry(error: &RegistryError) -> Self {
        match error {
            RegistryError::StorageFull(message) => {
                tracing::error!(error = %message, "storage full: the admin request failed");
                AdminError {
                    failure: Some((WriteFailure::StorageFull, message.clone())),
                    ..Self::new(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE", message)
                }
            }
            RegistryError::DatabaseUnavailable(detail) => {
                tracing::error!(error = %detail, "metadata database unreachable: the admin request failed");
                AdminError {
                    failure: Some((WriteFailure::DatabaseUnavailable, detail.clone())),
                    retry_after: Some(5),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UNAVAILABLE",
                        super::errors::DATABASE_UNAVAILABLE,
                    )
                }
            }
            other => {
                tracing::error!(error = %other, "admin request failed");
                AdminError {
                    failure: Some((WriteFailure::Internal, other.to_string())),
                    ..Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "UNKNOWN",
                        "internal error; the registry's log has the details",
                    )
                }
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{ "code": self.code, "message": self.message }] });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if let Some((kind, message)) = self.failure {
            super::errors::mark_write_failed(&mut response, kind, message);
        }
        response
    }
}
