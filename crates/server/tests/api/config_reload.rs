//! The configuration file, followed while the server runs: `read_only` toggled by editing in
//! place, by renaming a new file over it, and by a Kubernetes-style `..data` symlink swap; an
//! invalid file changes nothing; drain settings apply at once.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::app::{HeldBody, TestApp, eventually, staged_size};

const ON: &str = "read_only:\n  enabled: true\n  reason: moving to new storage\n";
const OFF: &str = "read_only:\n  enabled: false\n";

/// The file's fixed part (written by `TestApp::start_from_file`) followed by `tail`.
fn content(file: &Path, tail: &str) -> String {
    let current = std::fs::read_to_string(file).unwrap();
    let base: String = current
        .lines()
        .take_while(|l| !l.starts_with("read_only:") && !l.starts_with("drain:"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{base}{tail}")
}

fn config_hold(state: &Value) -> Option<Value> {
    state["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "config")
        .cloned()
}

#[tokio::test]
async fn editing_the_file_in_place_toggles_read_only() {
    let (app, file) = TestApp::start_from_file(OFF).await;
    assert_eq!(app.state().await["effective"], "read-write");

    std::fs::write(&file, content(&file, ON)).unwrap();
    let state = app.wait_for_mode("read-only").await;
    let hold = config_hold(&state).unwrap();
    assert_eq!(hold["reason"], "moving to new storage");
    assert_eq!(hold["source"], "config");
    assert_eq!(hold["set_by"], "configuration file");
    let response = app
        .request(Method::POST, "/v2/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    std::fs::write(&file, content(&file, OFF)).unwrap();
    let state = app.wait_for_mode("read-write").await;
    assert_eq!(config_hold(&state), None);
}

#[tokio::test]
async fn renaming_a_new_file_over_it_toggles_read_only() {
    let (app, file) = TestApp::start_from_file(OFF).await;
    let new = file.with_extension("yaml.new");
    std::fs::write(&new, content(&file, ON)).unwrap();
    std::fs::rename(&new, &file).unwrap();
    app.wait_for_mode("read-only").await;
    std::fs::write(&new, content(&file, OFF)).unwrap();
    std::fs::rename(&new, &file).unwrap();
    app.wait_for_mode("read-write").await;
}

#[tokio::test]
async fn a_kubernetes_configmap_update_toggles_read_only() {
    // What the kubelet does: the file is a symlink to ..data/<file>, ..data a symlink to a
    // timestamped folder; an update writes a new folder and swaps ..data atomically.
    let (app, file) = TestApp::start_from_file(OFF).await;
    let folder = file.parent().unwrap();
    let base = content(&file, OFF);
    let version = |name: &str, text: &str| {
        let dir = folder.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("wharf.yaml"), text).unwrap();
    };
    let swap = |target: &str| {
        let tmp = folder.join("..data_tmp");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, folder.join("..data")).unwrap();
    };
    version("..2026_11_22_01", &base);
    swap("..2026_11_22_01");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("..data/wharf.yaml", &file).unwrap();
    assert_eq!(app.state().await["effective"], "read-write");

    version("..2026_11_22_02", &content(&file, ON));
    swap("..2026_11_22_02");
    std::fs::remove_dir_all(folder.join("..2026_11_22_01")).unwrap();
    app.wait_for_mode("read-only").await;

    version("..2026_11_22_03", &content(&file, OFF));
    swap("..2026_11_22_03");
    app.wait_for_mode("read-write").await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing() {
    let (app, file) = TestApp::start_from_file(ON).await;
    app.wait_for_mode("read-only").await;
    // Broken YAML, then an unknown key: each would release the hold if it were applied. Each is
    // followed by a valid file that only changes the reason; once that reason shows, the broken
    // file has been read (events are handled in order) — and refused.
    let broken = [
        "read_only:\n  enabled: false\n  reason: [\n",
        "read_only:\n  enabled: false\n  surprise: 1\n",
    ];
    for (i, broken) in broken.iter().enumerate() {
        std::fs::write(&file, content(&file, broken)).unwrap();
        let reason = format!("still read-only {i}");
        std::fs::write(
            &file,
            content(
                &file,
                &format!("read_only:\n  enabled: true\n  reason: {reason}\n"),
            ),
        )
        .unwrap();
        for _ in 0..1500 {
            if config_hold(&app.state().await).is_some_and(|h| h["reason"] == reason.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            config_hold(&app.state().await).unwrap()["reason"],
            reason.as_str()
        );
    }
    let events: Value = app.get("/api/v1/events").await.json().await.unwrap();
    let events = events["events"].as_array().unwrap();
    assert!(
        !events.iter().any(|e| e["kind"] == "hold-released"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e["to"] == "read-write"),
        "{events:#?}"
    );
    // A valid file applies again.
    std::fs::write(&file, content(&file, OFF)).unwrap();
    app.wait_for_mode("read-write").await;
}

#[tokio::test]
async fn drain_settings_apply_while_draining() {
    let (app, file) = TestApp::start_from_file("drain:\n  timeout: 1h\n").await;
    let session = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &session)
            .body(request_body)
            .send(),
    );
    body.send(&vec![1; 2 * 1024 * 1024]).await;
    eventually("the chunk is being written", || {
        staged_size(&app, &session) > 0
    })
    .await;

    let response = app
        .hold(
            "admin",
            serde_json::json!({ "reason": "drain settings" }),
            "",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let state = app.state().await;
    assert_eq!(state["effective"], "draining");
    assert_eq!(state["drain"]["timeout"], "1h");

    std::fs::write(&file, content(&file, "drain:\n  timeout: 300ms\n")).unwrap();
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(state["last_transition"]["reason"], "drain timeout");
    assert_eq!(state["last_transition"]["cancelled_writes"], 1);
    drop(body);
    let _ = patch.await;
}

#[tokio::test]
async fn a_registry_configured_read_only_starts_read_only() {
    let (app, _file) = TestApp::start_from_file(ON).await;
    let state = app.wait_for_mode("read-only").await;
    assert_eq!(
        config_hold(&state).unwrap()["reason"],
        "moving to new storage"
    );
    // The API cannot release the file's hold.
    assert_eq!(app.release("config").await.status(), StatusCode::CONFLICT);
}
