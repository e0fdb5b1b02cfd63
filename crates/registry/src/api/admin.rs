//! The admin API under `/api/v1`: the registry's state and read-only holds, the audit trail, and
//! maintenance.
//!
//! Access: with an admin token configured (`admin.token_file` or `WHARF_ADMIN_TOKEN`), every
//! request must carry `Authorization: Bearer <token>`; without one, only clients on a loopback
//! address are answered. Errors have the same JSON shape as the registry API's.

mod backups;
mod maintenance;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use super::AppState;
use crate::config::AdminToken;
use crate::registry::GcSettings;

/// Who may use the admin API, and what it needs to know.
pub struct AdminAccess {
    token: ArcSwapOption<AdminToken>,
    /// The settings `POST /api/v1/gc` collects with.
    pub gc: GcSettings,
}

impl AdminAccess {
    /// Access with an optional token.
    pub fn new(token: Option<AdminToken>, gc: GcSettings) -> Self {
        AdminAccess {
            token: ArcSwapOption::from(token.map(Arc::new)),
            gc,
        }
    }

    /// Replaces the token (the token file changed).
    pub fn set_token(&self, token: Option<AdminToken>) {
        let had = self.token.load().is_some();
        if had && token.is_none() {
            tracing::warn!(
                "the admin token was removed: the admin API now answers only direct loopback clients"
            );
        }
        self.token.store(token.map(Arc::new));
    }
}

/// The authenticated caller, for the audit trail.
#[derive(Debug, Clone)]
struct Actor(String);

/// The `/api/v1` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
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
        .fallback(|| async {
            AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such admin endpoint")
        })
}

/// Admits a request to the admin API, or answers 401/403.
pub async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let actor = match state.admin.token.load_full() {
        Some(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            if !presented.is_some_and(|presented| token.matches(presented)) {
                let mut response = AdminError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "the admin API needs Authorization: Bearer <admin token>",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"wharf-admin\""),
                );
                return response;
            }
            "admin (token)".to_owned()
        }
        // A request a proxy forwarded comes from the proxy's address, which may be local: only
        // a direct local caller is trusted without a token.
        None if peer.ip().to_canonical().is_loopback() && !is_forwarded(request.headers()) => {
            format!("local admin ({})", peer.ip().to_canonical())
        }
        None => {
            return AdminError::new(
                StatusCode::FORBIDDEN,
                "DENIED",
                "the admin API answers only direct loopback clients until an admin token is \
                 configured (admin.token_file or WHARF_ADMIN_TOKEN)",
            )
            .into_response();
        }
    };
    request.extensions_mut().insert(Actor(actor));
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID", message)
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "admin request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal error; the registry's log has the details",
        )
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
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
