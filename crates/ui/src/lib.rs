//! Wharf's web UI, under `/ui/`: server-rendered pages (maud escapes every interpolation),
//! embedded in the binary, that work without JavaScript.
//!
//! # Layout
//! - `lib.rs`: the routes, who is looking ([`Viewer`]), the page layout and its read-only banner.
//! - `session.rs`: sessions and CSRF tokens.
//! - `pages.rs`: signing in and out; repositories, a repository, a manifest; deleting tags.
//! - `admin.rs`: the registry's state, holds, garbage collection (registry administrators).
//!
//! The UI reads through [`Registry`] and writes through it (deletions admitted by its write
//! gate) or through the gate's own hold operations, and checks every action with the caller's
//! [`Permissions`] from [`Authenticator`], as the API does. A write the gate refuses shows the
//! read-only message with 503, never an error page.

mod admin;
mod pages;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use wharf_auth::{Authenticator, Permissions, Principal};
use wharf_core::role::Action;
use wharf_core::time::format_time;
use wharf_gate::{Mode, WriteRefused};
use wharf_registry::{GcSettings, Registry, RegistryError};

pub use session::COOKIE;
use session::{Session, Sessions};

/// The words Quay users know, after the registry's title.
pub const READ_ONLY_MESSAGE: &str = "is currently in read-only mode. Pulls and other read-only operations will succeed but all other operations are currently suspended.";

/// What the UI is served with.
pub struct UiSettings {
    /// The registry's name on every page and in the banner.
    pub title: String,
    /// Whether the server speaks HTTPS (the session cookie is then `Secure`).
    pub https: bool,
    /// The settings a garbage collection started from the UI runs with.
    pub gc: GcSettings,
}

/// The UI: the registry, its accounts, and the sessions of this process.
#[derive(Clone)]
pub struct Ui(Arc<Inner>);

struct Inner {
    registry: Registry,
    authenticator: Option<Arc<Authenticator>>,
    settings: UiSettings,
    sessions: Sessions,
}

impl Ui {
    /// The UI over `registry`; `authenticator` is `None` when authentication is off.
    pub fn new(
        registry: Registry,
        authenticator: Option<Arc<Authenticator>>,
        settings: UiSettings,
    ) -> Self {
        Ui(Arc::new(Inner {
            registry,
            authenticator,
            settings,
            sessions: Sessions::default(),
        }))
    }

    /// The routes, to be nested under `/ui`.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/", get(pages::repositories))
            .route("/repository", get(pages::repository))
            .route("/manifest", get(pages::manifest))
            .route("/tags/delete", post(pages::delete_tag))
            .route("/tags/delete-matching", post(pages::delete_matching))
            .route("/sign-in", get(pages::sign_in_form).post(pages::sign_in))
            .route("/sign-out", post(pages::sign_out))
            .route("/admin", get(admin::page))
            .route("/admin/state.json", get(admin::state_json))
            .route("/admin/holds", post(admin::take_hold))
            .route("/admin/holds/release", post(admin::release_hold))
            .route("/admin/gc", post(admin::collect_garbage))
            .route("/static/ui.css", get(|| static_file(CSS, "text/css")))
            .route("/static/ui.js", get(|| static_file(JS, "text/javascript")))
            .fallback(|viewer: Viewer| async move {
                viewer.error(StatusCode::NOT_FOUND, "There is no such page.")
            })
            .layer(axum::middleware::map_response(security_headers))
            .with_state(self)
    }
}

const CSS: &str = include_str!("../static/ui.css");
const JS: &str = include_str!("../static/ui.js");

async fn static_file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// No inline script or style runs, nothing frames the UI, and pages are not cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Who is looking at a page, and what they may do.
pub struct Viewer {
    ui: Ui,
    session: Option<Session>,
    /// A session made for this request, whose cookie the response sets.
    new_session: bool,
    /// `None`: everything (authentication off).
    permissions: Option<Arc<Permissions>>,
    admin: bool,
    host: String,
}

impl FromRequestParts<Ui> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        let mut session = ui.0.sessions.of(&parts.headers);
        let mut new_session = false;
        if session.is_none() {
            session = ui.0.sessions.create(Principal::Anonymous);
            new_session = session.is_some();
        }
        let principal = session
            .as_ref()
            .map_or(Principal::Anonymous, |s| s.principal.clone());
        let (permissions, admin) = match &ui.0.authenticator {
            // As the admin API: with authentication off, only a direct local client administers.
            None => {
                let local = peer.is_some_and(|ip| ip.is_loopback()) && !forwarded(&parts.headers);
                (None, local)
            }
            Some(authenticator) => match authenticator.permissions(&principal).await {
                Ok(permissions) => {
                    let admin =
                        principal != Principal::Anonymous && permissions.is_registry_admin();
                    (Some(Arc::new(permissions)), admin)
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read a UI visitor's permissions");
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The registry's database does not answer; try again shortly.",
                    )
                        .into_response());
                }
            },
        };
        Ok(Viewer {
            ui: ui.clone(),
            session,
            new_session,
            permissions,
            admin,
            host: host(&parts.headers),
        })
    }
}

/// Whether a proxy says it forwarded the request (the admin API's rule, for the same reason).
fn forwarded(headers: &HeaderMap) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
}

/// The registry's address for pull commands: the request's `Host`, if it is a plain host name.
fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("localhost")
        .to_owned()
}

impl Viewer {
    fn registry(&self) -> &Registry {
        &self.ui.0.registry
    }

    fn title(&self) -> &str {
        &self.ui.0.settings.title
    }

    fn may(&self, repository: &str, action: Action) -> bool {
        self.permissions
            .as_ref()
            .is_none_or(|p| p.allows(repository, action))
    }

    fn signed_in(&self) -> Option<&str> {
        self.session.as_ref().and_then(|s| s.principal.name())
    }

    fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf.as_str())
    }

    /// Whether `token` is this session's CSRF token; a fresh session has none to match.
    fn csrf_ok(&self, token: &str) -> bool {
        !self.new_session && self.session.as_ref().is_some_and(|s| s.csrf_matches(token))
    }

    /// Why writes are disabled now, if they are: the registry is draining or read-only.
    fn read_only(&self) -> Option<String> {
        let snapshot = self.registry().gate().snapshot();
        (snapshot.mode != Mode::ReadWrite).then(|| snapshot.reasons())
    }

    /// A hidden field with the session's CSRF token.
    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf()); }
    }

    /// A full page: header, navigation, the banner while read-only, then `body`.
    fn page(&self, status: StatusCode, heading: &str, body: Markup) -> Response {
        let snapshot = self.registry().gate().snapshot();
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (heading) " · " (self.title()) }
                    link rel="stylesheet" href="/ui/static/ui.css";
                }
                body {
                    header {
                        a.brand href="/ui/" { (self.title()) }
                        nav aria-label="Main" {
                            a href="/ui/" { "Repositories" }
                            @if self.admin { a href="/ui/admin" { "Administration" } }
                            @if let Some(name) = self.signed_in() {
                                span { "Signed in as " strong { (name) } }
                                form.inline method="post" action="/ui/sign-out" {
                                    (self.csrf_field())
                                    button type="submit" { "Sign out" }
                                }
                            } @else if self.ui.0.authenticator.is_some() {
                                a href="/ui/sign-in" { "Sign in" }
                            }
                        }
                    }
                    @if snapshot.mode != Mode::ReadWrite {
                        div.banner role="status" id="read-only-banner" {
                            p { strong { (self.title()) " " (READ_ONLY_MESSAGE) } }
                            p {
                                "Reason: " (snapshot.reasons())
                                " — since " (format_time(snapshot.hold_at.unwrap_or(snapshot.since)))
                                " (" (snapshot.mode.as_str()) ")"
                            }
                        }
                    }
                    main id="main" {
                        h1 { (heading) }
                        (body)
                    }
                    script src="/ui/static/ui.js" defer {}
                }
            }
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response();
        if self.new_session
            && let Some(session) = &self.session
            && let Ok(value) = HeaderValue::from_str(&session.cookie(self.ui.0.settings.https))
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// A page saying what went wrong, with `status`.
    fn error(&self, status: StatusCode, message: &str) -> Response {
        let heading = status.canonical_reason().unwrap_or("Error");
        self.page(
            status,
            heading,
            html! { p.error role="alert" { (message) } },
        )
    }

    /// A refused form: its CSRF token missing or wrong.
    fn csrf_refused(&self) -> Response {
        self.error(
            StatusCode::FORBIDDEN,
            "This form is out of date or was not sent from this site; reload the page and try again.",
        )
    }

    /// A write the gate refused because the registry is read-only: the read-only message, what
    /// became of the write (`outcome`), and the way back; 503 with `Retry-After`, for clients
    /// that read statuses, but a page in the banner's words, not an error page.
    fn read_only_refusal(&self, outcome: &str) -> Response {
        let reason = self.read_only().unwrap_or_default();
        let body = html! {
            p.notice role="status" id="read-only-refusal" {
                strong { (self.title()) " " (READ_ONLY_MESSAGE) }
            }
            @if !reason.is_empty() { p { "Reason: " (reason) } }
            p { (outcome) }
            p { a href="/ui/" { "Back to the repositories" } }
        };
        let mut response = self.page(StatusCode::SERVICE_UNAVAILABLE, "Read-only mode", body);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        response
    }

    /// The answer to a registry error: the read-only message for a write the gate refused, a
    /// 4xx for what the caller can fix, and a 5xx whose details go to the log only.
    fn registry_error(&self, error: RegistryError) -> Response {
        match error {
            RegistryError::Refused(WriteRefused::ReadOnly { .. }) => {
                self.read_only_refusal("Nothing was changed.")
            }
            RegistryError::Refused(WriteRefused::Cancelled) => self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The write was cancelled before it completed; try it again.",
            ),
            RegistryError::NameUnknown => {
                self.error(StatusCode::NOT_FOUND, "There is no such repository.")
            }
            RegistryError::ManifestUnknown => {
                self.error(StatusCode::NOT_FOUND, "There is no such tag or manifest.")
            }
            RegistryError::ManifestInUse(index) => self.error(
                StatusCode::CONFLICT,
                &format!(
                    "An index ({index}) still refers to this manifest; delete the index first."
                ),
            ),
            other => {
                tracing::error!(error = %other, "a UI request failed");
                self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed inside the registry; its log has the details.",
                )
            }
        }
    }
}

/// A redirect after a form (303: the browser follows with `GET`).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Sizes as people read them.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// A percent-encoded query value.
fn encode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s[2..].to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_hosts() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("reg.example:5000"));
        assert_eq!(host(&headers), "reg.example:5000");
        headers.insert(header::HOST, HeaderValue::from_static("x\"><b>"));
        assert_eq!(host(&headers), "localhost");
        assert_eq!(encode("a/b c"), "a%2Fb+c");
    }
}
