//! The HTTP API: the OCI Distribution API under `/v2/`, the token endpoint (`/auth/token`), the
//! admin API (`/api/v1`), health endpoints and metrics; and the web UI (`wharf_ui`) under `/ui/`.
//!
//! Handlers are thin: parse the request, call the [`Registry`], map the result. Every error is a
//! [`RegistryError`], which [`errors`] turns into the OCI error body; a panic, which is a bug,
//! still answers with a JSON 500 instead of dropping the connection.

pub mod admin;
pub mod auth;
mod errors;
mod headers;
mod health;
mod ranges;
mod route;
mod token;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use route::{Route, RouteError, recognize};

use errors::OciError;
use wharf_registry::{Registry, RegistryError};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub registry: Registry,
    /// What the admin API needs.
    pub admin: Arc<admin::AdminAccess>,
    /// Authentication.
    pub auth: auth::ApiAuth,
}

impl FromRef<AppState> for Registry {
    fn from_ref(state: &AppState) -> Registry {
        state.registry.clone()
    }
}

/// The application: every route, with its middleware.
pub fn router(state: AppState) -> Router {
    let distribution = Router::new()
        .route("/v2", any(v2::dispatch))
        .route("/v2/", any(v2::dispatch))
        .route("/v2/{*path}", any(v2::dispatch))
        .layer(axum::middleware::map_response(api_version));
    let admin = admin::routes(state.clone());
    let ui = wharf_ui::Ui::new(
        state.registry.clone(),
        state.auth.authenticator.clone(),
        wharf_ui::UiSettings {
            title: "Wharf".to_owned(),
            https: state.auth.scheme == "https",
            gc: state.admin.gc,
        },
    );
    Router::new()
        .merge(distribution)
        .merge(admin)
        .nest_service("/ui", ui.routes())
        .route("/", get(root))
        .route(auth::TOKEN_PATH, get(token::get).post(token::post))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { OciError(RegistryError::EndpointUnknown) })
        .layer(axum::middleware::from_fn_with_state(
            state.registry.clone(),
            record_write_outcome,
        ))
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}

/// A browser asking for `/` is sent to the UI; anything else gets the API's "no such endpoint".
async fn root(headers: axum::http::HeaderMap) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if html {
        axum::response::Redirect::to("/ui/").into_response()
    } else {
        OciError(RegistryError::EndpointUnknown).into_response()
    }
}

/// Prometheus metrics, in the text exposition format.
async fn metrics(State(registry): State<Registry>) -> Response {
    // A database that does not answer leaves the last known number of open uploads.
    let uploads_open = registry.open_uploads().await.ok();
    let metrics = registry.gate().metrics();
    let body = match uploads_open {
        Some(open) => metrics.render(open),
        None => metrics.render_cached(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

/// Tells the registry's write health how each write request ended: a failure inside the registry
/// (marked on the response by the error's conversion) sets it failing, a success clears it.
async fn record_write_outcome(
    State(registry): State<Registry>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path() != auth::TOKEN_PATH;
    let response = next.run(request).await;
    if writes {
        let health = registry.write_health();
        match response.extensions().get::<errors::WriteFailed>() {
            Some(failed) => health.failed(failed.kind, &failed.message),
            None if response.status().is_success() && health.succeeded() => {
                tracing::info!("writes succeed again");
            }
            None => {}
        }
    }
    response
}

/// Tells clients they talk to a registry, on every `/v2` response (errors included).
async fn api_version(mut response: Response) -> Response {
    response.headers_mut().insert(
        headers::DOCKER_DISTRIBUTION_API_VERSION,
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let mut response = errors::oci_error(RegistryError::internal(format!(
        "a request handler panicked: {what}"
    )));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
