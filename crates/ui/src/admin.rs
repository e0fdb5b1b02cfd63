//! Administration (registry administrators): the registry's state, holds, the audit trail,
//! garbage collection.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::pages::form;
use super::{Viewer, human_size, see_other};
use wharf_core::time::{format_duration, format_time, now_millis};
use wharf_gate::{HoldError, HoldName, HoldRequest, HoldSource};
use wharf_registry::RegistryError;

fn forbidden(viewer: &Viewer) -> Response {
    viewer.error(
        StatusCode::FORBIDDEN,
        "Only a registry administrator (a superuser) may see and change the registry's state.",
    )
}

/// The actor holds and audit events name.
fn actor(viewer: &Viewer) -> String {
    match viewer.signed_in() {
        Some(name) => format!("{name} (web UI)"),
        None => "local admin (web UI)".to_owned(),
    }
}

pub(crate) async fn page(viewer: Viewer) -> Response {
    if !viewer.admin {
        return forbidden(&viewer);
    }
    render(&viewer, StatusCode::OK, None).await
}

async fn render(viewer: &Viewer, status: StatusCode, notice: Option<&str>) -> Response {
    let registry = viewer.registry();
    let state = registry.state_report().await;
    let events = match registry.gate().events(50).await {
        Ok(events) => events,
        Err(error) => return viewer.registry_error(RegistryError::store_failed(error)),
    };
    let last_gc = match registry.last_gc().await {
        Ok(run) => run,
        Err(error) => return viewer.registry_error(error),
    };
    let gc_disabled = viewer.read_only().map(|reason| {
        format!("Disabled: garbage collection writes, and the registry is read-only ({reason}).")
    });
    let body = html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        h2 { "State" }
        // ui.js refreshes the fields with an id from state.json, the same report.
        dl id="live-state" data-src="/ui/admin/state.json" {
            dt { "Mode" } dd id="live-mode" { (state.effective.as_str()) }
            dt { "Desired" } dd id="live-desired" { (state.desired) }
            dt { "Since" } dd { (format_time(state.since)) }
            dt { "Read-only on replicas" } dd id="live-replicas" { (state.replicas_read_only) }
            dt { "Writes in flight" } dd id="live-in-flight" { (state.writes_in_flight) }
            dt { "Uploads open" } dd id="live-uploads" {
                @match state.uploads_open { Some(n) => (n), None => "unknown (the database did not answer)" }
            }
            dt { "Drain" } dd id="live-progress" { (state.progress.as_deref().unwrap_or("none under way")) }
            @if let Some(drain) = &state.drain {
                dt { "Draining since" } dd { (format_time(drain.started_at)) }
                dt { "Drain deadline" } dd {
                    (format_time(drain.deadline)) " (timeout " (format_duration(drain.timeout))
                    ", push grace " (format_duration(drain.push_grace)) ")"
                }
            }
            @if let Some(transition) = &state.last_transition {
                dt { "Last transition" } dd {
                    (transition.from.as_str()) " → " (transition.to.as_str()) " at " (format_time(transition.at))
                    " (" (transition.reason) ")"
                    @if let Some(ms) = transition.drain_ms {
                        "; the drain took " (format_duration(Duration::from_millis(ms))) ": "
                        (transition.pushes_completed) " push(es) completed, "
                        (transition.pushes_cut_off) " cut off, "
                        (transition.cancelled_writes) " write(s) cancelled, "
                        (transition.abandoned_uploads) " upload(s) abandoned"
                    }
                }
            }
        }
        @if let Some(why) = &state.replicas_unknown { p.error role="alert" { (why) } }
        @if let Some(failing) = &state.writes_failing {
            p.error role="alert" {
                "Writes have been failing since " (format_time(failing.since)) " ("
                (failing.failures) " failure(s)): " (failing.message)
            }
        }
        h2 { "Replicas" }
        table {
            thead { tr { th scope="col" { "Replica" } th scope="col" { "Address" } th scope="col" { "Mode" }
                th scope="col" { "Writes in flight" } th scope="col" { "Pushes running" }
                th scope="col" { "Holds applied" } th scope="col" { "Last seen" } } }
            tbody { @for replica in &state.replicas {
                tr {
                    td { (replica.state.name) @if replica.this { " (this one)" } }
                    td { (replica.state.address) }
                    td { (replica.state.mode.as_str()) @if !replica.live { " (lost)" } }
                    td { (replica.state.writes_in_flight) }
                    td {
                        @if replica.state.pushes_running.is_empty() { "—" }
                        @for push in &replica.state.pushes_running { div { (push.repository) " from " (push.client) } }
                    }
                    td { (replica.state.holds_applied) }
                    td { (format_time(replica.state.last_seen)) }
                }
            } }
        }
        h2 { "Holds" }
        @if state.holds.is_empty() { p { "No holds: the registry is writable." } }
        @else {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Reason" } th scope="col" { "Who" }
                    th scope="col" { "Since" } th scope="col" { "Expires" } th scope="col" { "Release" } } }
                tbody { @for hold in &state.holds {
                    tr {
                        td { (hold.name.as_str()) }
                        td { (hold.reason) }
                        td { (hold.set_by) " (" (hold.source.as_str()) ")" }
                        td { (format_time(hold.created_at)) }
                        td { @match hold.expires_at { Some(at) => (format_time(at)), None => "never" } }
                        td {
                            @if hold.source == HoldSource::Config {
                                span.why { "Set by the configuration file: change it there." }
                            } @else {
                                form.inline method="post" action="/ui/admin/holds/release" {
                                    (viewer.csrf_field())
                                    input type="hidden" name="name" value=(hold.name.as_str());
                                    button type="submit" aria-label={ "Release hold " (hold.name.as_str()) } { "Release" }
                                }
                            }
                        }
                    }
                } }
            }
        }
        form method="post" action="/ui/admin/holds" {
            fieldset {
                legend { "Take a hold (the registry turns read-only once the pushes under way finish)" }
                (viewer.csrf_field())
                label for="hold-name" { "Name" }
                input id="hold-name" name="name" value="admin" required;
                label for="hold-reason" { "Reason (required)" }
                input id="hold-reason" name="reason" required;
                label for="hold-ttl" { "Expires after (optional, such as 30m or 2h)" }
                input id="hold-ttl" name="ttl";
                p { button type="submit" { "Take hold" } }
            }
        }
        h2 { "Garbage collection" }
        @match &last_gc {
            None => { p { "Garbage collection has not run yet." } }
            Some(run) => {
                @match &run.outcome {
                    Ok(report) => {
                        p id="last-gc" { "Last run " (format_time(run.finished_at)) " on " (run.replica) ": deleted "
                            (report.deleted_blobs) " blob(s), " (human_size(report.deleted_bytes)) "; expired "
                            (report.expired_uploads) " upload(s); pruned " (report.pruned_links) " link(s); removed "
                            (report.orphan_objects + report.orphan_staging) " leftover(s)." }
                    }
                    Err(why) => {
                        p.error id="last-gc" { "Last run " (format_time(run.finished_at)) " on " (run.replica) " failed: " (why) }
                    }
                }
            }
        }
        form method="post" action="/ui/admin/gc" {
            (viewer.csrf_field())
            button type="submit" disabled[gc_disabled.is_some()] { "Collect garbage now" }
            @if let Some(why) = &gc_disabled { p.why { (why) } }
        }
        h2 { "Audit trail" }
        table {
            thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Hold" }
                th scope="col" { "Who" } th scope="col" { "Why" } th scope="col" { "Change" } } }
            tbody { @for event in &events {
                tr {
                    td { (format_time(event.at)) }
                    td { (event.kind.as_str()) }
                    td { (event.hold.as_deref().unwrap_or("")) }
                    td { (event.actor) }
                    td { (event.reason) }
                    td {
                        @if let (Some(from), Some(to)) = (event.from, event.to) { (from.as_str()) " → " (to.as_str()) }
                        @if let Some(ms) = event.drain_ms { " (drained in " (ms) " ms)" }
                    }
                }
            } }
        }
    };
    viewer.page(status, "Administration", body)
}

/// The state report the page shows (the admin API's), for ui.js to refresh it.
pub(crate) async fn state_json(viewer: Viewer) -> Response {
    if !viewer.admin {
        return forbidden(&viewer);
    }
    axum::Json(viewer.registry().state_report().await).into_response()
}

#[derive(Deserialize)]
pub(crate) struct HoldForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ttl: String,
}

/// An admin form: the caller an administrator and its CSRF token right.
fn admitted(viewer: &Viewer, csrf: &str) -> Option<Response> {
    if !viewer.admin {
        return Some(forbidden(viewer));
    }
    (!viewer.csrf_ok(csrf)).then(|| viewer.csrf_refused())
}

fn hold_error(viewer: &Viewer, error: HoldError) -> Response {
    match error {
        HoldError::Reason | HoldError::Ttl | HoldError::ManagedByConfig => {
            viewer.error(StatusCode::BAD_REQUEST, &error.to_string())
        }
        HoldError::Store(error) => viewer.registry_error(RegistryError::store_failed(error)),
    }
}

pub(crate) async fn take_hold(viewer: Viewer, body: Bytes) -> Response {
    let form: HoldForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some(refused) = admitted(&viewer, &form.csrf) {
        return refused;
    }
    let name: HoldName = match form.name.trim().parse() {
        Ok(name) => name,
        Err(error) => return viewer.error(StatusCode::BAD_REQUEST, &format!("{error}")),
    };
    if form.reason.trim().is_empty() {
        return viewer.error(
            StatusCode::BAD_REQUEST,
            "Say why the registry is held read-only: the reason is required.",
        );
    }
    let ttl: Option<Duration> = match form.ttl.trim() {
        "" => None,
        ttl => match humantime::parse_duration(ttl) {
            Ok(ttl) => Some(ttl),
            Err(_) => {
                return viewer.error(
                    StatusCode::BAD_REQUEST,
                    "Give the expiry as a duration, such as 30m or 2h.",
                );
            }
        },
    };
    let request = HoldRequest {
        name,
        reason: form.reason.trim().to_owned(),
        ttl,
        actor: actor(&viewer),
        source: HoldSource::Api,
    };
    match viewer.registry().gate().set_hold(request).await {
        Ok(_) => see_other("/ui/admin"),
        Err(error) => hold_error(&viewer, error),
    }
}

#[derive(Deserialize)]
pub(crate) struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    name: String,
}

pub(crate) async fn release_hold(viewer: Viewer, body: Bytes) -> Response {
    let form: ReleaseForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some(refused) = admitted(&viewer, &form.csrf) {
        return refused;
    }
    let name: HoldName = match form.name.parse() {
        Ok(name) => name,
        Err(error) => return viewer.error(StatusCode::BAD_REQUEST, &format!("{error}")),
    };
    match viewer
        .registry()
        .gate()
        .release_hold(&name, &actor(&viewer), HoldSource::Api)
        .await
    {
        Ok(Some(_)) => see_other("/ui/admin"),
        Ok(None) => viewer.error(
            StatusCode::NOT_FOUND,
            &format!("There is no hold named {name}."),
        ),
        Err(error) => hold_error(&viewer, error),
    }
}

#[derive(Deserialize)]
pub(crate) struct GcForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn collect_garbage(viewer: Viewer, body: Bytes) -> Response {
    let form: GcForm = match form(&viewer, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some(refused) = admitted(&viewer, &form.csrf) {
        return refused;
    }
    let settings = viewer.ui.0.settings.gc;
    // The registry records the run's outcome, which the page shows; a refusal (read-only)
    // answers with the read-only notice.
    match viewer
        .registry()
        .collect_garbage(settings, now_millis())
        .await
    {
        Err(error @ RegistryError::Refused(_)) => viewer.registry_error(error),
        _ => see_other("/ui/admin"),
    }
}
