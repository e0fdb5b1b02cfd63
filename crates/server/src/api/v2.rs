//! The OCI Distribution API under `/v2/`: one handler recognises the route (see [`route`]) and
//! hands the request to the endpoint's handler, which parses it, calls the [`Registry`] and turns
//! the result into a response.
//!
//! [`route`]: super::route

mod blobs;
mod listing;
mod manifests;
mod uploads;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::{ApiAuth, Caller, Needed};
use super::errors::oci_error;
use super::route::{Route, RouteError, recognize};
use wharf_core::role::Action;
use wharf_registry::{Registry, RegistryError};

/// The query parameters any endpoint reads; each endpoint ignores those it does not use.
#[derive(Debug, Default, Deserialize)]
struct Params {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    n: Option<String>,
    last: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    /// An upload's `digest-algorithm`: what the digest completing it will use.
    #[serde(rename = "digest-algorithm")]
    digest_algorithm: Option<String>,
    /// A manifest push's `tag` parameters (repeated, so not deserialised with the rest).
    #[serde(skip)]
    tags: Vec<String>,
}

/// Parses a query string: the parameters, and the repeated `tag` ones.
fn parse_query(query: &str) -> Result<Params, serde_urlencoded::de::Error> {
    let mut params: Params = serde_urlencoded::from_str(query)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)?;
    params.tags = pairs
        .into_iter()
        .filter_map(|(key, value)| (key == "tag").then_some(value))
        .collect();
    Ok(params)
}

/// What a handler needs of the request besides its body.
struct Call {
    registry: Registry,
    method: Method,
    headers: HeaderMap,
    params: Params,
    /// Who pushes, for the drain's "push in progress": the account, or an anonymous caller's
    /// address.
    client: String,
    /// The caller.
    caller: Caller,
    /// Authentication, to check what else the caller may do (a mount's source, the catalog).
    auth: ApiAuth,
}

impl Call {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Handles every request under `/v2`.
pub async fn dispatch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let route = decode_segments(path.strip_prefix("/v2").unwrap_or(path))
        .ok_or(RouteError::NotFound)
        .and_then(|segments| recognize(&segments.iter().map(String::as_str).collect::<Vec<_>>()));
    // Bad credentials are refused before anything else is looked at.
    let caller = match state.auth.identify(&parts.headers, peer.ip()).await {
        Ok(caller) => caller,
        Err(error) => return oci_error(error),
    };
    let route = match route {
        Ok(route) => route,
        Err(RouteError::Name(e)) => return oci_error(RegistryError::from(e)),
        Err(RouteError::NotFound) => return oci_error(RegistryError::EndpointUnknown),
    };
    if let Err(error) = state
        .auth
        .authorize(&parts.headers, &caller, needed(&route, &parts.method))
        .await
    {
        return oci_error(error);
    }
    let params = match parts.uri.query() {
        Some(query) => match parse_query(query) {
            Ok(params) => params,
            Err(e) => {
                return oci_error(RegistryError::BadRequest(format!(
                    "the query string is malformed: {e}"
                )));
            }
        },
        None => Params::default(),
    };
    let call = Call {
        registry: state.registry,
        method: parts.method,
        headers: parts.headers,
        params,
        client: caller.push_identity(peer.ip()),
        caller,
        auth: state.auth,
    };
    handle(call, route, body).await.unwrap_or_else(oci_error)
}

/// What a request on a route needs the caller to be allowed.
fn needed<'a>(route: &'a Route, method: &Method) -> Needed<'a> {
    let on = |repository: &'a wharf_core::reference::RepositoryName, action| {
        Needed::Repository(repository.as_str(), action)
    };
    match route {
        Route::Base => Needed::Base,
        Route::Catalog => Needed::Catalog,
        Route::Tags(repository) | Route::Referrers(repository, _) => on(repository, Action::Pull),
        Route::Manifest(repository, _) | Route::Blob(repository, _) => match *method {
            Method::PUT => on(repository, Action::Push),
            Method::DELETE => on(repository, Action::Delete),
            _ => on(repository, Action::Pull),
        },
        Route::UploadStart(repository) | Route::Upload(repository, _) => {
            on(repository, Action::Push)
        }
    }
}

/// Splits the path after `/v2` into percent-decoded segments; `None` if a segment does not
/// decode to text without `/`.
fn decode_segments(rest: &str) -> Option<Vec<String>> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    rest.split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()?;
            (!decoded.contains('/')).then(|| decoded.into_owned())
        })
        .collect()
}

async fn handle(call: Call, route: Route, body: Body) -> Result<Response, RegistryError> {
    use Method as M;
    match (route, call.method.clone()) {
        (Route::Base, M::GET | M::HEAD) => Ok(base()),
        (Route::Catalog, M::GET) => listing::catalog(&call).await,
        (Route::Tags(repository), M::GET) => listing::tags(&call, &repository).await,
        (Route::Referrers(repository, digest), M::GET) => {
            listing::referrers(&call, &repository, &digest).await
        }
        (Route::Manifest(repository, reference), M::GET | M::HEAD) => {
            manifests::get(&call, &repository, &reference).await
        }
        (Route::Manifest(repository, reference), M::PUT) => {
            manifests::put(&call, &repository, &reference, body).await
        }
        (Route::Manifest(repository, reference), M::DELETE) => {
            manifests::delete(&call, &repository, &reference).await
        }
        (Route::Blob(repository, digest), M::GET | M::HEAD) => {
            blobs::get(&call, &repository, &digest).await
        }
        (Route::Blob(repository, digest), M::DELETE) => {
            blobs::delete(&call, &repository, &digest).await
        }
        (Route::UploadStart(repository), M::POST) => uploads::start(&call, &repository, body).await,
        (Route::Upload(repository, id), M::GET) => uploads::status(&call, &repository, &id).await,
        (Route::Upload(repository, id), M::PATCH) => {
            uploads::patch(&call, &repository, &id, body).await
        }
        (Route::Upload(repository, id), M::PUT) => {
            uploads::put(&call, &repository, &id, body).await
        }
        (Route::Upload(repository, id), M::DELETE) => {
            uploads::cancel(&call, &repository, &id).await
        }
        (_, method) => Err(RegistryError::Unsupported(format!(
            "{method} is not allowed on this endpoint"
        ))),
    }
}

fn base() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}

/// A response with no body and the given status.
fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments() {
        assert_eq!(
            decode_segments("/a/blobs/sha256%3Aab"),
            Some(vec![
                "a".to_owned(),
                "blobs".to_owned(),
                "sha256:ab".to_owned()
            ])
        );
        assert_eq!(decode_segments("/"), Some(vec![String::new()]));
        assert_eq!(decode_segments(""), Some(vec![String::new()]));
        assert_eq!(decode_segments("/a%2Fb/tags/list"), None);
        assert_eq!(decode_segments("/%ff/tags/list"), None);
    }
}
