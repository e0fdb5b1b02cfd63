//! Signing in and out; the repositories, a repository, a manifest; deleting tags.

// The error of these helpers is the page to answer with, made once per request: boxing it
// would save nothing that matters.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Viewer, encode, human_size, see_other, session};
use wharf_auth::LoginError;
use wharf_core::digest::Digest;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::role::Action;
use wharf_core::time::{format_time, now_millis};
use wharf_gate::WriteRefused;
use wharf_metadata::browse::{RepositoryCursor, RepositoryQuery, RepositorySort};
use wharf_registry::RegistryError;

/// Repositories and tags a page shows.
const PAGE_SIZE: u32 = 50;

/// A form's body, or a 400 page saying what is wrong with it.
pub(crate) fn form<T: DeserializeOwned>(viewer: &Viewer, body: &Bytes) -> Result<T, Response> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        viewer.error(
            StatusCode::BAD_REQUEST,
            &format!("The form is incomplete or malformed: {e}"),
        )
    })
}

fn repository_name(viewer: &Viewer, name: &str) -> Result<RepositoryName, Response> {
    name.parse().map_err(|_| {
        viewer.error(
            StatusCode::BAD_REQUEST,
            "That is not a valid repository name.",
        )
    })
}

/// A repository the viewer may pull, or the same 404 as one that does not exist.
fn visible_repository(viewer: &Viewer, name: &str) -> Result<RepositoryName, Response> {
    let repository = repository_name(viewer, name)?;
    if !viewer.may(repository.as_str(), Action::Pull) {
        return Err(viewer.error(StatusCode::NOT_FOUND, "There is no such repository."));
    }
    Ok(repository)
}

// ---- Signing in and out ----

pub(crate) async fn sign_in_form(viewer: Viewer) -> Response {
    sign_in_page(&viewer, StatusCode::OK, None)
}

fn sign_in_page(viewer: &Viewer, status: StatusCode, problem: Option<&str>) -> Response {
    if viewer.ui.0.authenticator.is_none() {
        return viewer.error(
            StatusCode::NOT_FOUND,
            "Authentication is off (auth.mode: none): there is nothing to sign in to.",
        );
    }
    viewer.page(
        status,
        "Sign in",
        html! {
            @if let Some(problem) = problem { p.error role="alert" { (problem) } }
            form method="post" action="/ui/sign-in" {
                (viewer.csrf_field())
                label for="username" { "User name" }
                input id="username" name="username" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    csrf: String,
    username: String,
    password: String,
}

pub(crate) async fn sign_in(
    viewer: Viewer,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Some(authenticator) = viewer.ui.0.authenticator.clone() else {
        return sign_in_page(&viewer, StatusCode::NOT_FOUND, None);
    };
    let form: SignInForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !viewer.csrf_ok(&form.csrf) {
        return viewer.csrf_refused();
    }
    // The token endpoint's login: the same failed-login limits, per account and address.
    match authenticator
        .login(&form.username, &form.password, peer.ip())
        .await
    {
        Ok(login) => {
            // A fresh session on sign-in, so that a session id known before is worth nothing.
            if let Some(old) = &viewer.session {
                viewer.ui.0.sessions.end(&old.id);
            }
            let Some(session) = viewer.ui.0.sessions.create(login.principal) else {
                tracing::error!("no randomness for a UI session");
                return viewer.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The registry cannot make a session now; try again shortly.",
                );
            };
            let mut response = see_other("/ui/");
            if let Ok(value) = HeaderValue::from_str(&session.cookie(viewer.ui.0.settings.https)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(LoginError::TooMany(retry_after)) => {
            let mut response = sign_in_page(
                &viewer,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed sign-ins; wait a while and try again."),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(LoginError::Store(error)) => {
            tracing::error!(%error, "a UI sign-in could not read the accounts");
            viewer.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The registry's database does not answer; try again shortly.",
            )
        }
        Err(_) => sign_in_page(
            &viewer,
            StatusCode::UNAUTHORIZED,
            Some("Incorrect user name or password."),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn sign_out(viewer: Viewer, body: Bytes) -> Response {
    let form: CsrfForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !viewer.csrf_ok(&form.csrf) {
        return viewer.csrf_refused();
    }
    if let Some(session) = &viewer.session {
        viewer.ui.0.sessions.end(&session.id);
    }
    let mut response = see_other("/ui/");
    if let Ok(value) = HeaderValue::from_str(&session::cleared_cookie(viewer.ui.0.settings.https)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---- Repositories ----

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    /// The cursor: `key.id.name`.
    #[serde(default)]
    after: String,
}

/// The sorts as the page's links and form name them.
const SORTS: [(&str, RepositorySort); 3] = [
    ("name", RepositorySort::Name),
    ("push", RepositorySort::LastPush),
    ("size", RepositorySort::Size),
];

fn parse_sort(sort: &str) -> Option<RepositorySort> {
    if sort.is_empty() {
        return Some(RepositorySort::Name);
    }
    SORTS
        .iter()
        .find(|(name, _)| *name == sort)
        .map(|(_, s)| *s)
}

fn sort_name(sort: RepositorySort) -> &'static str {
    SORTS
        .iter()
        .find(|(_, s)| *s == sort)
        .map_or("name", |(name, _)| *name)
}

fn parse_cursor(text: &str) -> Option<RepositoryCursor> {
    let mut parts = text.splitn(3, '.');
    Some(RepositoryCursor {
        key: parts.next()?.parse().ok()?,
        id: parts.next()?.parse().ok()?,
        name: parts.next()?.to_owned(),
    })
}

pub(crate) async fn repositories(
    viewer: Viewer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return viewer.error(StatusCode::BAD_REQUEST, "The query string is malformed.");
    };
    let Some(sort) = parse_sort(&query.sort) else {
        return viewer.error(StatusCode::BAD_REQUEST, "Sort by name, push or size.");
    };
    let after = if query.after.is_empty() {
        None
    } else {
        match parse_cursor(&query.after) {
            Some(cursor) => Some(cursor),
            None => return viewer.error(StatusCode::BAD_REQUEST, "The page link is malformed."),
        }
    };
    if query.q.len() > 256 {
        return viewer.error(
            StatusCode::BAD_REQUEST,
            "Search for at most 256 characters.",
        );
    }
    let visible = |name: &str| viewer.may(name, Action::Pull);
    let listing = viewer
        .registry()
        .browse_repositories(
            &RepositoryQuery {
                sort,
                search: &query.q,
                after: after.as_ref(),
                limit: PAGE_SIZE,
            },
            &visible,
        )
        .await;
    let (repositories, next) = match listing {
        Ok(listing) => listing,
        Err(error) => return viewer.registry_error(error),
    };
    let body = html! {
        form method="get" action="/ui/" role="search" {
            label for="q" { "Search repositories" }
            input id="q" name="q" type="search" value=(query.q);
            label for="sort" { "Sort by" }
            select id="sort" name="sort" {
                option value="name" selected[sort == RepositorySort::Name] { "Name" }
                option value="push" selected[sort == RepositorySort::LastPush] { "Last push (newest first)" }
                option value="size" selected[sort == RepositorySort::Size] { "Size (largest first)" }
            }
            " " button type="submit" { "Show" }
        }
        @if repositories.is_empty() {
            p { "No repositories to show." }
        } @else {
            table {
                thead { tr { th scope="col" { "Repository" } th scope="col" { "Tags" } th scope="col" { "Size" } th scope="col" { "Last push" } } }
                tbody {
                    @for repository in &repositories {
                        tr {
                            td { a href={ "/ui/repository?name=" (encode(&repository.name)) } { (repository.name) } }
                            td { (repository.tags) }
                            td { (human_size(repository.size)) }
                            td { (format_time(repository.last_push_at)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a rel="next" href={ "/ui/?q=" (encode(&query.q)) "&sort=" (sort_name(sort)) "&after="
                (encode(&format!("{}.{}.{}", next.key, next.id, next.name))) } { "Next page" } }
        }
    };
    viewer.page(StatusCode::OK, "Repositories", body)
}

// ---- A repository ----

#[derive(Deserialize)]
pub(crate) struct RepositoryQueryString {
    name: String,
    #[serde(default)]
    after: String,
}

/// The platforms an index names (`os/architecture[/variant]`).
fn platforms(content: &[u8]) -> Vec<String> {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(content) else {
        return Vec::new();
    };
    document["manifests"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .filter_map(|child| platform(&child["platform"]))
                .collect()
        })
        .unwrap_or_default()
}

fn platform(value: &serde_json::Value) -> Option<String> {
    let os = value["os"].as_str()?;
    let architecture = value["architecture"].as_str()?;
    Some(match value["variant"].as_str() {
        Some(variant) => format!("{os}/{architecture}/{variant}"),
        None => format!("{os}/{architecture}"),
    })
}

/// Why a write control is disabled, or nothing when it is enabled.
fn disabled_because(viewer: &Viewer) -> Option<String> {
    viewer
        .read_only()
        .map(|reason| format!("Disabled: the registry is read-only ({reason})."))
}

pub(crate) async fn repository(
    viewer: Viewer,
    query: Result<Query<RepositoryQueryString>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return viewer.error(StatusCode::BAD_REQUEST, "Name a repository: ?name=...");
    };
    let repository = match visible_repository(&viewer, &query.name) {
        Ok(repository) => repository,
        Err(response) => return response,
    };
    let after = (!query.after.is_empty()).then_some(query.after.as_str());
    let tags = match viewer
        .registry()
        .browse_tags(&repository, after, PAGE_SIZE + 1)
        .await
    {
        Ok(tags) => tags,
        Err(error) => return viewer.registry_error(error),
    };
    let more = tags.len() > PAGE_SIZE as usize;
    let tags = &tags[..tags.len().min(PAGE_SIZE as usize)];
    let mut attached = Vec::new();
    for tag in tags {
        match viewer
            .registry()
            .referrers(&repository, &tag.digest, None)
            .await
        {
            Ok(referrers) => attached.push(referrers),
            Err(error) => return viewer.registry_error(error),
        }
    }
    let may_delete = viewer.may(repository.as_str(), Action::Delete);
    let disabled = disabled_because(&viewer);
    let name = repository.as_str();
    let body = html! {
        @if tags.is_empty() { p { "This repository has no tags." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Tag" } th scope="col" { "Digest" } th scope="col" { "Size" }
                    th scope="col" { "Platforms" } th scope="col" { "Pushed" } th scope="col" { "Attached" }
                    th scope="col" { "Pull" }
                    @if may_delete { th scope="col" { "Delete" } }
                } }
                tbody {
                    @for (i, (tag, referrers)) in tags.iter().zip(&attached).enumerate() {
                        tr {
                            td { (tag.name) }
                            td.mono { a href={ "/ui/manifest?name=" (encode(name)) "&digest=" (encode(&tag.digest.to_string())) } { (tag.digest) } }
                            td { (human_size(tag.size)) }
                            td { @let p = platforms(&tag.content); @if p.is_empty() { "—" } @else { (p.join(", ")) } }
                            td { (format_time(tag.pushed_at)) }
                            td {
                                @if referrers.is_empty() { "—" }
                                @for referrer in referrers {
                                    div { a href={ "/ui/manifest?name=" (encode(name)) "&digest=" (encode(&referrer.digest.to_string())) } {
                                        (referrer.artifact_type.as_deref().unwrap_or(&referrer.media_type)) } }
                                }
                            }
                            td {
                                label.visually-hidden for={ "pull-" (i) } { "Pull command for " (tag.name) }
                                input.mono id={ "pull-" (i) } readonly size="40"
                                    value={ "podman pull " (viewer.host) "/" (name) ":" (tag.name) };
                                button type="button" data-copy={ "pull-" (i) } { "Copy" }
                            }
                            @if may_delete {
                                td {
                                    form.inline method="post" action="/ui/tags/delete" {
                                        (viewer.csrf_field())
                                        input type="hidden" name="name" value=(name);
                                        input type="hidden" name="tag" value=(tag.name);
                                        button.danger type="submit" disabled[disabled.is_some()]
                                            aria-label={ "Delete tag " (tag.name) } { "Delete" }
                                    }
                                    @if let Some(why) = &disabled { p.why { (why) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if more {
            @if let Some(last) = tags.last() {
                p { a rel="next" href={ "/ui/repository?name=" (encode(name)) "&after=" (encode(&last.name)) } { "More tags" } }
            }
        }
        @if may_delete {
            form method="post" action="/ui/tags/delete-matching" {
                fieldset {
                    legend { "Delete tags by filter" }
                    (viewer.csrf_field())
                    input type="hidden" name="name" value=(name);
                    label for="matching" { "Tag matches (* for any characters)" }
                    input id="matching" name="matching" placeholder="pr-*";
                    label for="older_than_days" { "Pushed more than this many days ago" }
                    input id="older_than_days" name="older_than_days" type="number" min="0";
                    p { button.danger type="submit" disabled[disabled.is_some()] { "Delete matching tags" } }
                    @if let Some(why) = &disabled { p.why { (why) } }
                }
            }
        }
    };
    viewer.page(StatusCode::OK, name, body)
}

#[derive(Deserialize)]
pub(crate) struct DeleteTagForm {
    #[serde(default)]
    csrf: String,
    name: String,
    tag: String,
}

/// A form that writes to a repository: its CSRF token, its name, and the right to delete.
fn deletable(viewer: &Viewer, csrf: &str, name: &str) -> Result<RepositoryName, Response> {
    if !viewer.csrf_ok(csrf) {
        return Err(viewer.csrf_refused());
    }
    let repository = visible_repository(viewer, name)?;
    if !viewer.may(repository.as_str(), Action::Delete) {
        return Err(viewer.error(
            StatusCode::FORBIDDEN,
            "You may not delete in this repository.",
        ));
    }
    Ok(repository)
}

pub(crate) async fn delete_tag(viewer: Viewer, body: Bytes) -> Response {
    let form: DeleteTagForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let repository = match deletable(&viewer, &form.csrf, &form.name) {
        Ok(repository) => repository,
        Err(response) => return response,
    };
    let Ok(tag) = form.tag.parse::<Tag>() else {
        return viewer.error(StatusCode::BAD_REQUEST, "That is not a valid tag.");
    };
    match viewer
        .registry()
        .delete_manifest(&repository, &Reference::Tag(tag))
        .await
    {
        Ok(()) => see_other(&format!(
            "/ui/repository?name={}",
            encode(repository.as_str())
        )),
        Err(error) => viewer.registry_error(error),
    }
}

#[derive(Deserialize)]
pub(crate) struct DeleteMatchingForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    matching: String,
    #[serde(default)]
    older_than_days: String,
}

/// Whether `text` matches `pattern`, where `*` stands for any characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

pub(crate) async fn delete_matching(viewer: Viewer, body: Bytes) -> Response {
    let form: DeleteMatchingForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let repository = match deletable(&viewer, &form.csrf, &form.name) {
        Ok(repository) => repository,
        Err(response) => return response,
    };
    let older_than = match form.older_than_days.trim() {
        "" => None,
        days => match days.parse::<u32>() {
            Ok(days) => Some(now_millis() - i64::from(days) * 86_400_000),
            Err(_) => {
                return viewer.error(
                    StatusCode::BAD_REQUEST,
                    "Give the age as a whole number of days.",
                );
            }
        },
    };
    let matching = form.matching.trim();
    if matching.is_empty() && older_than.is_none() {
        return viewer.error(
            StatusCode::BAD_REQUEST,
            "Give a pattern, an age or both: deleting every tag takes a filter.",
        );
    }
    // Collected first, deleted after, so that the listing's pages do not shift under it.
    let mut doomed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = match viewer
            .registry()
            .browse_tags(&repository, after.as_deref(), 1000)
            .await
        {
            Ok(page) => page,
            Err(error) => return viewer.registry_error(error),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        doomed.extend(
            page.into_iter()
                .filter(|t| matching.is_empty() || glob(matching, &t.name))
                .filter(|t| older_than.is_none_or(|cutoff| t.pushed_at < cutoff))
                .map(|t| t.name),
        );
    }
    let mut deleted = 0;
    for name in &doomed {
        let Ok(tag) = name.parse::<Tag>() else {
            continue;
        };
        match viewer
            .registry()
            .delete_manifest(&repository, &Reference::Tag(tag))
            .await
        {
            Ok(()) | Err(RegistryError::ManifestUnknown) => deleted += 1,
            // A hold taken part-way: say how far the deletion got.
            Err(RegistryError::Refused(WriteRefused::ReadOnly { .. })) if deleted == 0 => {
                return viewer.read_only_refusal("Nothing was deleted.");
            }
            Err(RegistryError::Refused(WriteRefused::ReadOnly { .. })) => {
                return viewer.read_only_refusal(&format!(
                    "{deleted} of the {} matching tag(s) of {} were deleted before the \
                     registry turned read-only; the others are still there.",
                    doomed.len(),
                    repository.as_str()
                ));
            }
            Err(error) => return viewer.registry_error(error),
        }
    }
    let body = html! {
        p.notice role="status" { "Deleted " (deleted) " tag(s) of " (repository.as_str()) "." }
        p { a href={ "/ui/repository?name=" (encode(repository.as_str())) } { "Back to the repository" } }
    };
    viewer.page(StatusCode::OK, "Tags deleted", body)
}

// ---- A manifest ----

#[derive(Deserialize)]
pub(crate) struct ManifestQuery {
    name: String,
    digest: String,
}

fn descriptor_row(name: &str, value: &serde_json::Value, link: bool) -> Markup {
    let digest = value["digest"].as_str().unwrap_or("");
    html! {
        tr {
            td.mono {
                @if link { a href={ "/ui/manifest?name=" (encode(name)) "&digest=" (encode(digest)) } { (digest) } }
                @else { (digest) }
            }
            td { (value["mediaType"].as_str().unwrap_or("")) }
            td { (value["size"].as_u64().map(human_size).unwrap_or_default()) }
            td { (platform(&value["platform"]).unwrap_or_default()) }
        }
    }
}

pub(crate) async fn manifest(
    viewer: Viewer,
    query: Result<Query<ManifestQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return viewer.error(
            StatusCode::BAD_REQUEST,
            "Name a repository and a digest: ?name=...&digest=...",
        );
    };
    let repository = match visible_repository(&viewer, &query.name) {
        Ok(repository) => repository,
        Err(response) => return response,
    };
    let Ok(digest) = query.digest.parse::<Digest>() else {
        return viewer.error(StatusCode::BAD_REQUEST, "That is not a valid digest.");
    };
    let record = match viewer
        .registry()
        .manifest(&repository, &Reference::Digest(digest.clone()))
        .await
    {
        Ok(record) => record,
        Err(error) => return viewer.registry_error(error),
    };
    let referrers = match viewer
        .registry()
        .referrers(&repository, &digest, None)
        .await
    {
        Ok(referrers) => referrers,
        Err(error) => return viewer.registry_error(error),
    };
    let document: serde_json::Value = serde_json::from_slice(&record.content).unwrap_or_default();
    let name = repository.as_str();
    let empty = Vec::new();
    let layers = document["layers"].as_array().unwrap_or(&empty);
    let children = document["manifests"].as_array().unwrap_or(&empty);
    let annotations = document["annotations"].as_object();
    let body = html! {
        p { "Repository " a href={ "/ui/repository?name=" (encode(name)) } { (name) } }
        dl {
            dt { "Digest" } dd.mono { (record.digest) }
            dt { "Media type" } dd { (record.media_type) }
            dt { "Size" } dd { (human_size(record.content.len() as u64)) }
            @if let Some(artifact) = document["artifactType"].as_str() { dt { "Artifact type" } dd { (artifact) } }
            @if let Some(subject) = document["subject"]["digest"].as_str() {
                dt { "Subject" } dd.mono { a href={ "/ui/manifest?name=" (encode(name)) "&digest=" (encode(subject)) } { (subject) } }
            }
        }
        @if document["config"].is_object() {
            h2 { "Config" }
            table { thead { tr { th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" { "Size" } th scope="col" { "Platform" } } }
                tbody { (descriptor_row(name, &document["config"], false)) } }
        }
        @if !layers.is_empty() {
            h2 { "Layers" }
            table { thead { tr { th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" { "Size" } th scope="col" { "Platform" } } }
                tbody { @for layer in layers { (descriptor_row(name, layer, false)) } } }
        }
        @if !children.is_empty() {
            h2 { "Platforms" }
            table { thead { tr { th scope="col" { "Manifest" } th scope="col" { "Media type" } th scope="col" { "Size" } th scope="col" { "Platform" } } }
                tbody { @for child in children { (descriptor_row(name, child, true)) } } }
        }
        h2 { "Annotations" }
        @match annotations {
            Some(annotations) if !annotations.is_empty() => {
                table { thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
                    tbody { @for (key, value) in annotations { tr { td.mono { (key) } td { (value.as_str().unwrap_or("")) } } } } }
            }
            _ => { p { "None." } }
        }
        h2 { "Attached (referrers)" }
        @if referrers.is_empty() { p { "Nothing is attached to this manifest." } }
        @else {
            ul { @for referrer in &referrers {
                li { a href={ "/ui/manifest?name=" (encode(name)) "&digest=" (encode(&referrer.digest.to_string())) } {
                    (referrer.artifact_type.as_deref().unwrap_or(&referrer.media_type)) " " (referrer.digest) } }
            } }
        }
    };
    viewer.page(StatusCode::OK, "Manifest", body)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("pr-*", "pr-12"));
        assert!(glob("*", "anything"));
        assert!(glob("v1", "v1"));
        assert!(!glob("v1", "v12"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("*-rc", "1.0-rc"));
        assert!(!glob("ab*ba", "aba"));
    }
}
