//! The `wharf` command line on PostgreSQL metadata: two servers on one database and one data
//! folder (nothing locks it then), the account commands, `fsck` and `gc` acting on the database
//! in process alongside them, the URL's password kept out of the log, and `backup`/`restore`
//! beside running servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{WharfServer, wharf_binary};
use wharf_metadata_postgres::testing::TestDatabase;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(wharf_binary());
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run wharf");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Pushes a one-layer image through `url`; returns its manifest.
async fn push_image(http: &reqwest::Client, url: &str, repository: &str, tag: &str) -> Vec<u8> {
    let layer = format!("a layer of {repository}:{tag}").into_bytes();
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for blob in [&layer, &config] {
        let digest = format!("sha256:{}", sha256_hex(blob));
        let pushed = http
            .post(format!(
                "{url}/v2/{repository}/blobs/uploads/?digest={digest}"
            ))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201, "{}", pushed.text().await.unwrap());
    }
    let descriptor = |media_type: &str, blob: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", sha256_hex(blob)),
            "size": blob.len(),
        })
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    let put = http
        .put(format!("{url}/v2/{repository}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    manifest
}

/// `wharf backup create` and `wharf restore` on PostgreSQL metadata: the backup runs in process
/// on the database while two servers run on it (its hold drains them both), and restores into
/// an empty database, where a server serves the image. A restore killed once its rows are
/// written, before they are committed, leaves the database empty, so the same command then
/// succeeds; a database that holds a registry already is refused in one line, which does not
/// show the password.
#[tokio::test]
async fn backup_and_restore_work_on_postgresql_beside_running_servers() {
    let source = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!("metadata:\n  url: {:?}\n", source.url());
    let first = WharfServer::start(&data, &yaml);
    let second = WharfServer::start(&data, &yaml);
    let http = reqwest::Client::new();
    let manifest = push_image(&http, &first.url, "team/app", "v1").await;

    let backup = dir.path().join("backup");
    let env = [
        ("WHARF_METADATA_URL", source.url()),
        ("WHARF_STORAGE_DATA_DIR", data.to_str().unwrap()),
    ];
    let (code, out, stderr) = run(
        &["backup", "create", "--to", backup.to_str().unwrap()],
        &env,
    );
    assert_eq!(code, 0, "{out}{stderr}");
    assert!(
        out.contains("1 repositories, 1 manifests, 1 tags, 2 blobs"),
        "{out}"
    );
    // Both servers went read-only for the backup (each records its own transitions in the
    // shared audit trail), and both are writable again.
    let events: serde_json::Value = http
        .get(format!("{}/api/v1/events", first.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for server in [&first, &second] {
        let replica = format!(":{}", server.pid().unwrap());
        let read_only = events["events"].as_array().unwrap().iter().any(|event| {
            event["to"] == "read-only" && event["replica"].as_str().unwrap().ends_with(&replica)
        });
        assert!(read_only, "replica {replica} went read-only: {events}");
        let state: serde_json::Value = http
            .get(format!("{}/api/v1/state", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["effective"], "read-write", "{state}");
    }

    let target = TestDatabase::create().await.expect("a PostgreSQL database");
    let restored = dir.path().join("restored");
    let into_target = |data: &std::path::Path| {
        vec![
            ("WHARF_METADATA_URL".to_owned(), target.url().to_owned()),
            (
                "WHARF_STORAGE_DATA_DIR".to_owned(),
                data.to_str().unwrap().to_owned(),
            ),
        ]
    };
    let restore = [
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ];
    let mut dying = into_target(&restored);
    dying.push((
        "WHARF_FAILPOINT".to_owned(),
        "restore-rows-written".to_owned(),
    ));
    let (code, _, _) = run_owned(&restore, &dying);
    assert_eq!(code, -1, "the restore died at its failpoint");
    assert!(!restored.exists(), "a killed restore leaves no data folder");
    let (code, out, stderr) = run_owned(&restore, &into_target(&restored));
    assert_eq!(code, 0, "the database was left empty: {out}{stderr}");
    assert!(out.contains("fsck: no problems found"), "{out}");

    let elsewhere = dir.path().join("elsewhere");
    let again = [
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        elsewhere.to_str().unwrap(),
    ];
    let (code, _, stderr) = run_owned(&again, &into_target(&elsewhere));
    assert_ne!(code, 0);
    assert!(stderr.contains("already holds a registry"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let password = target
        .url()
        .split_once("wharf:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .unwrap();
    assert!(!stderr.contains(&password), "{stderr}");
    assert!(!elsewhere.exists());

    let served = WharfServer::start(
        &restored,
        &format!("metadata:\n  url: {:?}\n", target.url()),
    );
    let pulled = http
        .get(format!("{}/v2/team/app/manifests/v1", served.url))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    push_image(&http, &served.url, "team/app", "v2").await;
}

fn run_owned(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run(args, &env)
}

#[tokio::test]
async fn two_servers_share_one_postgresql_registry_and_maintenance_runs_beside_them() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let password = database
        .url()
        .split_once("wharf:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .expect("the test server's URL has a password");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!("metadata:\n  url: {:?}\n", database.url());
    let first = WharfServer::start(&data, &yaml);
    // No data-folder lock with PostgreSQL: a second server starts on the same folder.
    let second = WharfServer::start(&data, &yaml);

    let http = reqwest::Client::new();
    let blob = b"a layer shared by both servers";
    let digest = format!("sha256:{}", sha256_hex(blob));
    let pushed = http
        .post(format!(
            "{}/v2/team/app/blobs/uploads/?digest={digest}",
            first.url
        ))
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201, "{}", pushed.text().await.unwrap());
    let pulled = http
        .get(format!("{}/v2/team/app/blobs/{digest}", second.url))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), blob);

    // The account commands, fsck and gc act on the database in process, beside the servers.
    let env = [
        ("WHARF_METADATA_URL", database.url()),
        ("WHARF_STORAGE_DATA_DIR", data.to_str().unwrap()),
    ];
    let (code, _, stderr) = run(&["user", "add", "alice"], &env);
    assert_eq!(code, 0, "{stderr}");
    let (code, users, stderr) = run(&["user", "list"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(users.contains("alice"), "{users}");
    let listed: serde_json::Value = http
        .get(format!("{}/api/v1/users", second.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.to_string().contains("alice"), "{listed}");
    let (code, report, stderr) = run(&["fsck"], &env);
    assert_eq!(code, 0, "{report}{stderr}");
    let (code, report, stderr) = run(&["gc"], &env);
    assert_eq!(code, 0, "{report}{stderr}");

    for server in [&first, &second] {
        let log = server.log();
        assert!(log.contains("metadata=postgres://wharf:***@"), "{log}");
        assert!(
            !log.contains(&password),
            "the password is in the log: {log}"
        );
    }
}

fn sha256_hex(content: &[u8]) -> String {
    let output = {
        use std::io::Write;
        let mut child = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(content).unwrap();
        child.wait_with_output().unwrap()
    };
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
