//! Listings: `GET /v2/_catalog`, `GET /v2/<name>/tags/list` and
//! `GET /v2/<name>/referrers/<digest>`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Call;
use crate::api::headers::{self, OCI_FILTERS_APPLIED};
use wharf_core::digest::Digest;
use wharf_core::manifest::OCI_INDEX;
use wharf_core::reference::RepositoryName;
use wharf_metadata::Names;
use wharf_registry::{ListPage, RegistryError};

pub(super) async fn catalog(call: &Call) -> Result<Response, RegistryError> {
    let n = page_size(call)?;
    // Only what the caller may pull is listed.
    let permissions = call.auth.listing_permissions(&call.caller).await?;
    let visible = |name: &str| {
        permissions
            .as_ref()
            .is_none_or(|p| p.allows(name, wharf_core::role::Action::Pull))
    };
    let page = call
        .registry
        .repositories(n, call.params.last.as_deref(), &visible)
        .await?;
    #[derive(Serialize)]
    struct Catalog<'a> {
        repositories: &'a Names,
    }
    let body = Catalog {
        repositories: &page.items,
    };
    Ok(paged_json(&body, &page, n, "/v2/_catalog"))
}

pub(super) async fn tags(
    call: &Call,
    repository: &RepositoryName,
) -> Result<Response, RegistryError> {
    let n = page_size(call)?;
    let page = call
        .registry
        .tags(repository, n, call.params.last.as_deref())
        .await?;
    #[derive(Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: &'a Names,
    }
    let body = TagList {
        name: repository.as_str(),
        tags: &page.items,
    };
    Ok(paged_json(
        &body,
        &page,
        n,
        &format!("/v2/{repository}/tags/list"),
    ))
}

pub(super) async fn referrers(
    call: &Call,
    repository: &RepositoryName,
    digest: &str,
) -> Result<Response, RegistryError> {
    let subject: Digest = digest.parse().map_err(RegistryError::digest)?;
    let artifact_type = call
        .params
        .artifact_type
        .as_deref()
        .filter(|t| !t.is_empty());
    let referrers = call
        .registry
        .referrers(repository, &subject, artifact_type)
        .await?;
    let manifests: Vec<ReferrerDescriptor> = referrers
        .iter()
        .map(|r| ReferrerDescriptor {
            media_type: &r.media_type,
            digest: &r.digest,
            size: r.size,
            artifact_type: r.artifact_type.as_deref(),
            // Stored as a JSON object of strings, as the manifest's parser read them.
            annotations: r
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok()),
        })
        .collect();
    let body = ReferrerIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    };
    let body = match serde_json::to_vec(&body) {
        Ok(body) => body,
        Err(error) => return Err(RegistryError::internal(error)),
    };
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, OCI_INDEX)], body).into_response();
    if artifact_type.is_some() {
        headers::insert(response.headers_mut(), OCI_FILTERS_APPLIED, "artifactType");
    }
    Ok(response)
}

/// The referrers list: an image index of descriptors, serialised straight from the rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerIndex<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<ReferrerDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerDescriptor<'a> {
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

/// The `n` query parameter: how many entries a page should have at most.
fn page_size(call: &Call) -> Result<Option<u32>, RegistryError> {
    call.params
        .n
        .as_deref()
        .map(|n| {
            n.parse::<u32>().map_err(|_| {
                RegistryError::PaginationInvalid(format!("n must be a whole number, not {n:?}"))
            })
        })
        .transpose()
}

/// A JSON listing with a `Link` to the next page when there is one. The body is serialised
/// straight from the page (no `Value` tree in between: a listing can have 10,000 entries).
fn paged_json(body: &impl Serialize, page: &ListPage, n: Option<u32>, path: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers::insert(&mut headers, header::CONTENT_TYPE, "application/json");
    if page.has_more
        && let Some(last) = page.items.last()
    {
        let last: String = url_encode(last);
        let n = n.map(|n| format!("n={n}&")).unwrap_or_default();
        headers::insert(
            &mut headers,
            header::LINK,
            format!("<{path}?{n}last={last}>; rel=\"next\""),
        );
    }
    match serde_json::to_vec(body) {
        Ok(body) => (StatusCode::OK, headers, body).into_response(),
        // Names and strings only: serialising cannot fail.
        Err(error) => crate::api::errors::oci_error(RegistryError::internal(error)),
    }
}

fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
