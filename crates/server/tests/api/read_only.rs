//! Read-only mode: holds, the drain, what clients and operators see. Concurrency is arranged
//! with held-open request bodies; waiting is only ever for an effect the test caused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wharf_config::HumanDuration;
use wharf_core::digest::Digest;

use crate::app::{
    HeldBody, OCI_INDEX, OCI_MANIFEST, TestApp, TestImage, eventually, expect_error, header,
    random_bytes, staged_size, with_query,
};

const READ_ONLY: &str = "System is currently read-only. Pulls will succeed but all write operations are currently suspended.";
const MIB: usize = 1024 * 1024;

/// Asserts a registry write was denied for read-only, with the exact message; returns the detail.
async fn expect_denied(response: reqwest::Response) -> Value {
    assert_eq!(
        response.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "{response:?}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert_eq!(body["errors"][0]["message"], READ_ONLY, "{body}");
    body["errors"][0]["detail"].clone()
}

fn short_grace(config: &mut wharf_config::Config) {
    config.drain.push_grace = HumanDuration(Duration::from_millis(300));
}

/// A grace far longer than any test waits (`wait_for_mode` gives up after 15 s): a drain that
/// ends with it ended because its pushes completed, not because a grace ran out.
fn long_grace(config: &mut wharf_config::Config) {
    config.drain.push_grace = HumanDuration(Duration::from_secs(60));
}

#[tokio::test]
async fn a_push_under_way_at_the_hold_completes_and_read_only_follows_its_tagged_manifest() {
    let app = TestApp::start_with(long_grace).await;
    let existing = app.push_image("library/base", "v1", 1).await;

    // A push in progress as docker and podman push: one layer done, the last layer mid-body,
    // and the config blob still to come after the layers.
    let image = TestImage::generate(2);
    app.push_blob("team/app", &image.layers[0]).await;
    let session = app.open_upload("team/app").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    let layer = &image.layers[1];
    body.send(&layer[..500]).await;
    app.wait_for_writes_in_flight(1).await;

    let response = app
        .hold(
            "backup-1",
            json!({ "reason": "nightly backup", "ttl": "1h" }),
            "",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["created"], true);
    assert_eq!(answer["hold"]["name"], "backup-1");
    assert_eq!(answer["state"]["desired"], "read-only");
    assert_eq!(answer["state"]["effective"], "draining");

    // A new push is denied at once, with the message clients print.
    let other = TestImage::generate(1);
    let response = app
        .request(Method::POST, "/v2/team/other/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let detail = expect_denied(response).await;
    assert_eq!(detail["mode"], "draining");
    assert_eq!(detail["reason"], "nightly backup (backup-1)");
    assert_eq!(detail["holds"], json!(["backup-1"]));
    let response = app
        .request(
            Method::POST,
            &format!(
                "/v2/team/other/blobs/uploads/?digest={}",
                Digest::sha256_of(&other.config)
            ),
        )
        .body(other.config.clone())
        .send()
        .await
        .unwrap();
    expect_denied(response).await;
    expect_denied(
        app.delete(&format!("/v2/library/base/manifests/{}", existing.digest))
            .await,
    )
    .await;

    // Pulls keep working.
    let pulled = app.get("/v2/library/base/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(
        pulled.bytes().await.unwrap().as_ref(),
        existing.manifest.as_slice()
    );
    let state = app.state().await;
    assert_eq!(state["effective"], "draining");
    assert_eq!(state["read_only_in_effect"], false);
    assert_eq!(state["writes_in_flight"], 1);

    // The held upload finishes, then the push: the last layer, then its manifest.
    body.send(&layer[500..]).await;
    body.finish();
    assert_eq!(patch.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.state().await["effective"],
        "draining",
        "the session is still open"
    );
    let response = app
        .request(
            Method::PUT,
            &with_query(&session, &format!("digest={}", Digest::sha256_of(layer))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // The push goes on: its config blob is a new upload, opened during the drain.
    app.push_blob("team/app", &image.config).await;
    assert_eq!(
        app.state().await["effective"],
        "draining",
        "the push has not put its manifest"
    );
    let response = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the manifest completing the push is admitted"
    );

    // The push is complete: read-only takes effect, without waiting out the grace.
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["read_only_in_effect"], true);
    assert_eq!(state["replicas_read_only"], "1/1");
    let transition = &state["last_transition"];
    assert_eq!(
        (transition["from"].as_str(), transition["to"].as_str()),
        (Some("draining"), Some("read-only"))
    );
    assert_eq!(transition["pushes_completed"], 1);
    assert_eq!(transition["pushes_cut_off"], 0);
    assert_eq!(transition["cancelled_writes"], 0);
    assert_eq!(transition["abandoned_uploads"], 0);
    assert!(transition["drain_ms"].as_u64().unwrap() > 0);

    // Now every write is denied, the pushed image pulls.
    let response = app
        .put_manifest("team/app", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(expect_denied(response).await["mode"], "read-only");
    let pulled = app.get("/v2/team/app/manifests/v1").await;
    assert_eq!(
        pulled.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );

    // Releasing the last hold makes the registry writable at once.
    let response = app.release("backup-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["state"]["effective"], "read-write");
    app.push_image("team/other", "v1", 1).await;
}

/// A multi-arch push as podman and skopeo make it: each image's blobs and manifest (by digest),
/// then the index by tag. A manifest put by digest keeps the push going; the index ends it.
#[tokio::test]
async fn a_multi_arch_push_under_way_completes_with_its_index() {
    let app = TestApp::start_with(long_grace).await;
    let images = [TestImage::generate(1), TestImage::generate(1)];
    app.push_blob("team/multi", &images[0].layers[0]).await;
    app.hold_read_only("backup-1", "nightly backup").await;
    assert_eq!(app.state().await["effective"], "draining");

    let mut entries = Vec::new();
    for image in &images {
        for blob in image.blobs() {
            app.push_blob("team/multi", blob).await;
        }
        let digest = Digest::sha256_of(&image.manifest);
        let response = app
            .put_manifest(
                "team/multi",
                &digest.to_string(),
                OCI_MANIFEST,
                &image.manifest,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest.to_string(),
            "size": image.manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
        }));
        assert_eq!(
            app.state().await["effective"],
            "draining",
            "a manifest by digest keeps the push going"
        );
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    let response = app
        .put_manifest("team/multi", "v1", OCI_INDEX, &index)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["last_transition"]["pushes_completed"], 1);
    assert_eq!(state["last_transition"]["pushes_cut_off"], 0);
    let pulled = app.get("/v2/team/multi/manifests/v1").await;
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), index.as_slice());
}

/// A push that stops writing for longer than the grace is cut off: the drain ends without it,
/// and its manifest is refused afterwards.
#[tokio::test]
async fn a_push_that_pauses_past_the_grace_is_cut_off() {
    let app = TestApp::start_with(short_grace).await;
    let image = TestImage::generate(1);
    for blob in image.blobs() {
        app.push_blob("team/app", blob).await;
    }
    app.hold_read_only("backup-1", "nightly backup").await;

    let state = app.wait_for_mode("read-only").await;
    let transition = &state["last_transition"];
    assert_eq!(transition["pushes_completed"], 0);
    assert_eq!(transition["pushes_cut_off"], 1);
    assert_eq!(transition["reason"], "drain complete");
    let response = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(expect_denied(response).await["mode"], "read-only");
}

/// A push that was complete before the hold (its tag put last) is not waited for, and a push
/// that begins during the drain is refused at its first write even when it comes from the
/// same client, in another repository.
#[tokio::test]
async fn a_push_complete_before_the_hold_is_not_waited_for() {
    let app = TestApp::start_with(long_grace).await;
    app.push_image("team/done", "v1", 1).await;
    app.hold_read_only("backup-1", "nightly backup").await;
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["last_transition"]["pushes_completed"], 0);
    assert_eq!(state["last_transition"]["pushes_cut_off"], 0);
    expect_denied(
        app.request(Method::POST, "/v2/team/done/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
}

/// A client that keeps opening uploads keeps its push going, but not past the drain timeout:
/// then it is cut off and the registry is read-only.
#[tokio::test]
async fn a_push_that_never_ends_is_cut_off_at_the_drain_timeout() {
    let app = TestApp::start_with(|config| {
        long_grace(config);
        config.drain.timeout = HumanDuration(Duration::from_millis(1500));
    })
    .await;
    app.push_blob("team/app", &random_bytes(1000)).await;
    app.hold_read_only("backup-1", "nightly backup").await;

    // Each new blob is a write of the push, well within the grace of the previous one.
    let mut admitted = 0;
    let denied = loop {
        assert!(admitted < 10_000, "the drain never timed out");
        let response = app
            .request(Method::POST, "/v2/team/app/blobs/uploads/")
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::ACCEPTED {
            break response;
        }
        admitted += 1;
    };
    assert!(
        admitted > 0,
        "the push in progress may go on during the drain"
    );
    // Refused from the timeout on: while the cancelled writes stop, and then read-only.
    let mode = expect_denied(denied).await["mode"].clone();
    assert!(mode == "draining" || mode == "read-only", "{mode}");
    let state = app.wait_for_mode("read-only").await;
    let transition = &state["last_transition"];
    assert_eq!(transition["reason"], "drain timeout");
    assert_eq!(transition["pushes_cut_off"], 1);
    assert_eq!(transition["abandoned_uploads"], admitted);
}

#[tokio::test]
async fn a_stalled_upload_is_cancelled_at_the_drain_timeout() {
    let app =
        TestApp::start_with(|c| c.drain.timeout = HumanDuration(Duration::from_millis(500))).await;
    let session = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    body.send(&vec![7; 2 * MIB]).await;
    eventually("the chunk is being written", || {
        staged_size(&app, &session) > 0
    })
    .await;
    // A monolithic upload stalled too.
    let content = vec![8; 3 * MIB];
    let digest = Digest::sha256_of(&content);
    let (whole, whole_body) = HeldBody::new();
    let post = tokio::spawn(
        app.request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
        )
        .body(whole_body)
        .send(),
    );
    whole.send(&content[..2 * MIB]).await;
    app.wait_for_writes_in_flight(2).await;

    app.hold_read_only("maintenance", "storage migration").await;
    let state = app.wait_for_mode("read-only").await;
    let transition = &state["last_transition"];
    assert_eq!(transition["reason"], "drain timeout");
    assert_eq!(transition["cancelled_writes"], 2, "{state}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("wharf_writes_cancelled_total 2"),
        "{metrics}"
    );
    assert!(transition["drain_ms"].as_u64().unwrap() >= 500);
    assert_eq!(state["writes_in_flight"], 0);

    for request in [patch, post] {
        if let Ok(response) = request.await.unwrap() {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    drop((body, whole));
    // Nothing of them is visible.
    assert_eq!(header(&app.get(&session).await, "range"), "0-0");
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(app.registry().await.fsck(true).await.unwrap().is_clean());

    // The audit trail tells the story (its event is written just after the switch).
    let events = app
        .events_until("the drain's end is recorded", |e| {
            e["kind"] == "mode-changed" && e["to"] == "read-only"
        })
        .await;
    let drained = events
        .iter()
        .find(|e| e["kind"] == "mode-changed" && e["to"] == "read-only")
        .unwrap();
    assert_eq!(drained["cancelled_writes"], 2, "{events:#?}");
    assert!(events.iter().any(|e| e["kind"] == "hold-set"
        && e["hold"] == "maintenance"
        && e["reason"] == "storage migration"
        && e["actor"] == "local admin (127.0.0.1)"));
}

#[tokio::test]
async fn wait_returns_when_read_only_is_in_effect() {
    let app = TestApp::start().await;
    let response = app
        .hold("admin", json!({ "reason": "upgrade" }), "wait=10s")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["state"]["effective"], "read-only");
    assert_eq!(answer["state"]["read_only_in_effect"], true);
}

#[tokio::test]
async fn wait_reports_a_drain_still_running() {
    let app = TestApp::start().await;
    let session = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    body.send(&vec![1; 2 * MIB]).await;
    eventually("the chunk is being written", || {
        staged_size(&app, &session) > 0
    })
    .await;

    let response = app
        .hold("admin", json!({ "reason": "upgrade" }), "wait=300ms")
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the drain is still running"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["state"]["effective"], "draining");
    assert_eq!(answer["state"]["writes_in_flight"], 1);
    assert!(answer["state"]["drain"]["deadline"].is_string());
    body.finish();
    assert_eq!(patch.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn pulls_never_fail_and_pushes_complete_or_are_denied_cleanly_through_toggles() {
    let app = Arc::new(TestApp::start_with(short_grace).await);
    let image = app.push_image("pulled", "v1", 2).await;
    let layer = Digest::sha256_of(&image.layers[1]);
    let stop = Arc::new(AtomicBool::new(false));
    let pulls = Arc::new(AtomicU64::new(0));

    let puller = tokio::spawn({
        let (app, stop, pulls) = (app.clone(), stop.clone(), pulls.clone());
        let manifest = image.manifest.clone();
        async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = app.get("/v2/pulled/manifests/v1").await;
                if response.status() != StatusCode::OK
                    || response.bytes().await.unwrap() != manifest
                {
                    failures.push("manifest");
                }
                let response = app.get(&format!("/v2/pulled/blobs/{layer}")).await;
                if response.status() != StatusCode::OK {
                    failures.push("blob");
                }
                pulls.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }
    });
    let pusher = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let mut completed = Vec::new();
            let mut denied = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let image = TestImage::generate(1);
                let tag = format!("t{}", completed.len() + denied as usize);
                let mut clean = true;
                for blob in image.blobs() {
                    let digest = Digest::sha256_of(blob);
                    let response = app
                        .request(
                            Method::POST,
                            &format!("/v2/pusher/blobs/uploads/?digest={digest}"),
                        )
                        .body(blob.clone())
                        .send()
                        .await
                        .unwrap();
                    match response.status() {
                        StatusCode::CREATED => {}
                        _ => {
                            expect_denied(response).await;
                            clean = false;
                            break;
                        }
                    }
                }
                if clean {
                    let response = app
                        .put_manifest("pusher", &tag, OCI_MANIFEST, &image.manifest)
                        .await;
                    if response.status() == StatusCode::CREATED {
                        completed.push((tag, image.manifest));
                        continue;
                    }
                    expect_denied(response).await;
                }
                denied += 1;
            }
            (completed, denied)
        }
    });

    for toggle in 0..200 {
        let response = app
            .hold(
                "toggle",
                json!({ "reason": format!("toggle {toggle}") }),
                "",
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = app.release("toggle").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    stop.store(true, Ordering::Relaxed);
    let failures = puller.await.unwrap();
    let (completed, denied) = pusher.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} pulls failed: {failures:?}",
        failures.len()
    );
    assert!(pulls.load(Ordering::Relaxed) > 0);
    assert!(!completed.is_empty() || denied > 0, "the push loop ran");
    for (tag, manifest) in &completed {
        let response = app.get(&format!("/v2/pusher/manifests/{tag}")).await;
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            manifest.as_slice(),
            "{tag}"
        );
    }
    assert!(app.registry().await.fsck(true).await.unwrap().is_clean());
}

#[tokio::test]
async fn holds_overlap_and_release_independently() {
    let app = TestApp::start().await;
    app.hold_read_only("backup-7", "backup").await;
    app.hold_read_only("admin", "upgrade").await;
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["holds"].as_array().unwrap().len(), 2);

    assert_eq!(app.release("backup-7").await.status(), StatusCode::OK);
    let state = app.state().await;
    assert_eq!(state["effective"], "read-only", "admin still holds it");
    assert_eq!(state["holds"][0]["name"], "admin");
    expect_denied(
        app.request(Method::POST, "/v2/r/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(app.release("admin").await.status(), StatusCode::OK);
    assert_eq!(app.state().await["effective"], "read-write");
    assert_eq!(
        app.request(Method::POST, "/v2/r/blobs/uploads/")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );

    // Renewing a hold keeps it (and when it started), with the new reason.
    app.hold_read_only("admin", "first").await;
    let first = app.state().await["holds"][0].clone();
    app.hold_read_only("admin", "second").await;
    let second = app.state().await["holds"][0].clone();
    assert_eq!(first["created_at"], second["created_at"]);
    assert_eq!(second["reason"], "second");
}

#[tokio::test]
async fn an_expiring_hold_ends_read_only_by_itself() {
    let app = TestApp::start().await;
    let response = app
        .hold(
            "backup-9",
            json!({ "reason": "backup", "ttl": "700ms" }),
            "wait=5s",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["hold"]["expires_at"].is_string());
    let state = app.wait_for_mode("read-write").await;
    assert_eq!(state["holds"], json!([]));
    let events: Value = app.get("/api/v1/events").await.json().await.unwrap();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "hold-expired" && e["hold"] == "backup-9")
    );
}

#[tokio::test]
async fn a_registry_restarted_with_a_hold_starts_read_only() {
    let app = TestApp::start().await;
    app.push_image("r", "v1", 1).await;
    app.hold_read_only("admin", "maintenance").await;
    let app = app.restart().await;
    let state = app.state().await;
    assert_eq!(state["effective"], "read-only");
    assert_eq!(state["holds"][0]["reason"], "maintenance");
    expect_denied(
        app.request(Method::POST, "/v2/r/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(app.get("/v2/r/manifests/v1").await.status(), StatusCode::OK);
    assert_eq!(app.release("admin").await.status(), StatusCode::OK);
    app.push_image("r", "v2", 1).await;
}

#[tokio::test]
async fn maintenance_waits_while_read_only() {
    let app = TestApp::start().await;
    app.push_blob("r", b"garbage soon").await;
    app.hold_read_only("admin", "backup").await;
    let response = app
        .request(Method::POST, "/api/v1/gc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "60");
    // A maintenance command on the data (another process would do the same) is refused too.
    let registry = app.registry().await;
    let refused = registry
        .collect_garbage(
            wharf_registry::GcSettings {
                grace: Duration::ZERO,
                upload_expiry: Duration::ZERO,
            },
            wharf_core::time::now_millis(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(wharf_registry::RegistryError::Refused(
            wharf_gate::WriteRefused::ReadOnly { .. }
        ))
    ));
    app.release("admin").await;
    let response = app
        .request(Method::POST, "/api/v1/gc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn holds_are_validated() {
    let app = TestApp::start().await;
    let cases = [
        ("Admin", json!({ "reason": "x" })),
        ("admin", json!({})),
        ("admin", json!({ "reason": "  " })),
        ("admin", json!({ "reason": "x", "ttl": "0s" })),
        ("admin", json!({ "reason": "x", "ttl": "soon" })),
        ("admin", json!({ "reason": "x", "extra": 1 })),
        ("admin", json!({ "reason": "two\nlines" })),
        ("admin", json!({ "reason": "x".repeat(1025) })),
    ];
    for (name, body) in cases {
        let response = app.hold(name, body.clone(), "").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name} {body}");
    }
    let response = app
        .hold("admin", json!({ "reason": "x" }), "wait=never")
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = app.hold("config", json!({ "reason": "x" }), "").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(app.release("config").await.status(), StatusCode::CONFLICT);
    assert_eq!(app.release("nobody").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.state().await["effective"],
        "read-write",
        "nothing was held"
    );
}

/// No push grace: an upload session idle at the hold is abandoned, not waited for.
fn no_grace(config: &mut wharf_config::Config) {
    config.drain.push_grace = HumanDuration(Duration::ZERO);
}

#[tokio::test]
async fn metrics_report_the_mode() {
    let app = TestApp::start_with(no_grace).await;
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let text = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&text, "wharf_mode "), 0.0);
    assert_eq!(metric(&text, "wharf_read_only_holds "), 0.0);

    app.open_upload("r").await;
    app.hold_read_only("admin", "metrics").await;
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(
        state["last_transition"]["abandoned_uploads"], 1,
        "an idle session is not waited for, and is counted as abandoned"
    );
    expect_denied(
        app.request(Method::POST, "/v2/r/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let response = app.get("/metrics").await;
    assert!(header(&response, "content-type").starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert_eq!(metric(&text, "wharf_mode "), 2.0);
    assert_eq!(metric(&text, "wharf_read_only_desired "), 1.0);
    assert_eq!(metric(&text, "wharf_read_only_holds "), 1.0);
    assert_eq!(metric(&text, "wharf_writes_in_flight "), 0.0);
    assert_eq!(metric(&text, "wharf_uploads_open "), 1.0);
    assert_eq!(
        metric(&text, "wharf_writes_denied_total{reason=\"read-only\"}"),
        1.0
    );
    assert_eq!(metric(&text, "wharf_drain_duration_seconds_count"), 1.0);
    assert!(metric(&text, "wharf_mode_transitions_total") >= 2.0);
}

#[tokio::test]
async fn health_stays_green_while_read_only() {
    let app = TestApp::start().await;
    app.hold_read_only("admin", "health").await;
    app.wait_for_mode("read-only").await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
    let catalog = app.get("/v2/_catalog").await;
    assert_eq!(catalog.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_kind_of_write_is_denied_while_read_only() {
    let app = TestApp::start_with(no_grace).await;
    let image = app.push_image("r", "v1", 1).await;
    let layer = Digest::sha256_of(&image.layers[0]);
    let session = app.open_upload("r").await;
    app.hold_read_only("admin", "everything").await;
    app.wait_for_mode("read-only").await;
    let requests = vec![
        app.request(Method::POST, "/v2/r/blobs/uploads/"),
        app.request(
            Method::POST,
            &format!("/v2/s/blobs/uploads/?mount={layer}&from=r"),
        ),
        app.request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={layer}"),
        )
        .body(image.layers[0].clone()),
        app.request(Method::PATCH, &session).body(vec![1; 10]),
        app.request(
            Method::PUT,
            &with_query(&session, &format!("digest={layer}")),
        ),
        app.request(Method::DELETE, &session),
        app.request(Method::PUT, "/v2/r/manifests/v2")
            .header("content-type", OCI_MANIFEST)
            .body(image.manifest.clone()),
        app.request(Method::DELETE, "/v2/r/manifests/v1"),
        app.request(Method::DELETE, &format!("/v2/r/manifests/{}", image.digest)),
        app.request(Method::DELETE, &format!("/v2/r/blobs/{layer}")),
    ];
    for request in requests {
        expect_denied(request.send().await.unwrap()).await;
    }
    // Reads still answer, including the status of an upload session.
    assert_eq!(app.get(&session).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v2/r/tags/list").await.status(), StatusCode::OK);
    assert_eq!(
        app.get(&format!("/v2/r/referrers/{}", image.digest))
            .await
            .status(),
        StatusCode::OK
    );
    expect_error(
        app.get("/v2/r/manifests/nope").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

/// Without a token, the admin API trusts only direct loopback callers: not a remote address,
/// and not a request a local proxy forwarded. The router is driven directly, with the peer
/// address the server would give it, since this machine may have no other interface to call from.
#[tokio::test]
async fn without_a_token_only_direct_loopback_callers_reach_the_admin_api() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    use wharf_server::api::AppState;
    use wharf_server::api::admin::AdminAccess;

    let dir = tempfile::tempdir().unwrap();
    let mut config = wharf_config::Config::default();
    config.storage.data_dir = dir.path().join("data");
    let registry = wharf_registry::Registry::open_local(
        &config.data_paths(),
        false,
        config.limits(),
        config.drain_settings(),
    )
    .await
    .unwrap();
    let state = AppState {
        registry,
        admin: Arc::new(AdminAccess {
            gc: config.gc_settings(),
        }),
        auth: wharf_server::api::auth::ApiAuth::off(),
    };
    let app = wharf_server::api::router(state);
    let status = |peer: &str, forwarded: Option<(&str, &str)>| {
        let mut request = axum::http::Request::get("/api/v1/state")
            .extension(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
        if let Some((name, value)) = forwarded {
            request = request.header(name, value);
        }
        let request = request.body(axum::body::Body::empty()).unwrap();
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    assert_eq!(status("127.0.0.1:40000", None).await, StatusCode::OK);
    assert_eq!(status("[::1]:40000", None).await, StatusCode::OK);
    assert_eq!(
        status("[::ffff:127.0.0.1]:40000", None).await,
        StatusCode::OK
    );
    assert_eq!(status("10.1.2.3:40000", None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        status("[2001:db8::1]:40000", None).await,
        StatusCode::FORBIDDEN
    );
    for header in [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        assert_eq!(
            status("127.0.0.1:40000", Some(header)).await,
            StatusCode::FORBIDDEN,
            "{header:?}"
        );
    }
    // The registry API itself is for everyone.
    let request = axum::http::Request::get("/v2/")
        .extension(ConnectInfo(
            "10.1.2.3:40000".parse::<std::net::SocketAddr>().unwrap(),
        ))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
}

/// A write in flight whose session the database shows as idle (it started sending long before
/// the hold) is not waited for past the drain timeout: it is cancelled like any other.
#[tokio::test]
async fn a_write_the_database_does_not_show_is_cancelled_at_the_timeout() {
    let app = TestApp::start_with(|c| {
        no_grace(c);
        c.drain.timeout = HumanDuration(Duration::from_millis(300));
    })
    .await;
    let session = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    body.send(&vec![3; 2 * MIB]).await;
    app.wait_for_writes_in_flight(1).await;

    app.hold_read_only("admin", "stalled client").await;
    let state = app.wait_for_mode("read-only").await;
    let transition = &state["last_transition"];
    assert_eq!(transition["reason"], "drain timeout");
    assert_eq!(transition["cancelled_writes"], 1);
    assert_eq!(transition["abandoned_uploads"], 1);
    assert_eq!(
        state["writes_in_flight"], 0,
        "read-only only once nothing is written"
    );
    drop(body);
    let _ = patch.await;
    assert_eq!(header(&app.get(&session).await, "range"), "0-0");
}
