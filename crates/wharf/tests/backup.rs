//! `wharf backup` and `wharf restore` through the real binary: a backup killed at each step
//! leaves the registry writable (at worst once its hold's TTL passes) and the destination marked
//! incomplete; `--hold-only`; a stopped registry's backup and restore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{WharfServer, wharf, wharf_binary};

/// `wharf <args>` with `WHARF_FAILPOINT` set; returns (exit code, stderr). An abort is -1.
fn wharf_dying_at(config: &Path, args: &[&str], failpoint: &str) -> (i32, String) {
    let output = Command::new(wharf_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env("WHARF_FAILPOINT", failpoint)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn http(server: &WharfServer, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n",
        server.address,
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    // Bodies may be binary (a snapshot); only the head and JSON bodies are read as text.
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// Pushes a one-layer image under `tag`; returns the status of the manifest put.
fn push(server: &WharfServer, repository: &str, tag: &str) -> u16 {
    let layer = format!(
        "layer of {repository}:{tag} {:?}",
        std::time::SystemTime::now()
    )
    .into_bytes();
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for blob in [&layer, &config] {
        let digest = wharf_core::digest::Digest::sha256_of(blob);
        let (status, body) = http(
            server,
            "POST",
            &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
            blob,
        );
        if status != 201 {
            assert!(body.contains("DENIED"), "{body}");
            return status;
        }
    }
    let descriptor = |media: &str, blob: &[u8]| {
        format!(
            r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
            wharf_core::digest::Digest::sha256_of(blob),
            blob.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", &config),
        descriptor("application/vnd.oci.image.layer.v1.tar", &layer)
    );
    http(
        server,
        "PUT",
        &format!("/v2/{repository}/manifests/{tag}"),
        manifest.as_bytes(),
    )
    .0
}

fn state(server: &WharfServer) -> Value {
    let (status, body) = http(server, "GET", "/api/v1/state", b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for(server: &WharfServer, mode: &str) -> Value {
    for _ in 0..1500 {
        let state = state(server);
        if state["effective"] == mode {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never {mode}: {}", state(server));
}

fn assert_incomplete(config: &Path, backup: &Path) {
    let (code, stdout, _) = wharf(config, &["backup", "verify", backup.to_str().unwrap()]);
    assert_ne!(code, 0, "an interrupted backup must not verify:\n{stdout}");
    assert!(
        stdout.contains("incomplete") || stdout.contains("not a backup"),
        "{stdout}"
    );
    let target = backup.with_extension("restored");
    let (code, _, stderr) = wharf(
        config,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("incomplete") || stderr.contains("not a backup"),
        "{stderr}"
    );
}

/// A backup of a running registry, killed at each step of its copy: the registry is writable at
/// once (the server took the snapshot and released its hold), the folder is marked incomplete,
/// and the next backup into the same folder completes it.
#[test]
fn a_backup_killed_at_any_step_of_its_copy_leaves_nothing_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "drain:\n  push_grace: 100ms\n");
    assert_eq!(push(&server, "team/app", "v1"), 201);
    assert_eq!(push(&server, "team/app", "v2"), 201);
    let config = server.config_file.clone();
    let backup = dir.path().join("backup");
    let args = [
        "backup",
        "create",
        "--to",
        backup.to_str().unwrap(),
        "--url",
        &server.url,
    ];

    for failpoint in [
        "backup-metadata-copied",
        "backup-blob-copied",
        "backup-finishing",
        "backup-manifest-written",
    ] {
        let (code, stderr) = wharf_dying_at(&config, &args, failpoint);
        assert_eq!(
            code, -1,
            "{failpoint}: the backup should have died: {stderr}"
        );
        assert!(stderr.contains(failpoint), "{stderr}");
        assert_eq!(state(&server)["effective"], "read-write", "{failpoint}");
        assert_eq!(
            push(&server, "team/app", failpoint),
            201,
            "writable after {failpoint}"
        );
        assert_incomplete(&config, &backup);
    }

    // Killed right after the commit (the rename of backup.json), before the mark is removed:
    // the backup is complete.
    let (code, stderr) = wharf_dying_at(&config, &args, "backup-committed");
    assert_eq!(code, -1, "{stderr}");
    assert!(backup.join("INCOMPLETE").exists());
    let (code, stdout, _) = wharf(&config, &["backup", "verify", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "a committed backup verifies:\n{stdout}");

    let (code, stdout, stderr) = wharf(&config, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!backup.join("INCOMPLETE").exists());
    let (code, stdout, _) = wharf(&config, &["backup", "verify", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("complete and intact"), "{stdout}");
    let good_id = stdout.split_whitespace().nth(1).unwrap().to_owned();
    // Every snapshot the server took released its hold, killed copies or not.
    let events = http(&server, "GET", "/api/v1/events?limit=1000", b"").1;
    assert_eq!(
        events.matches("\"hold-set\"").count(),
        events.matches("\"hold-released\"").count()
    );

    // A later backup into the same folder, killed: the folder still holds the previous one.
    assert_eq!(push(&server, "team/app", "v3"), 201);
    for failpoint in ["backup-blob-copied", "backup-manifest-written"] {
        let (code, stderr) = wharf_dying_at(&config, &args, failpoint);
        assert_eq!(code, -1, "{failpoint}: {stderr}");
        let (code, stdout, _) = wharf(&config, &["backup", "verify", backup.to_str().unwrap()]);
        assert_eq!(
            code, 0,
            "the previous backup must survive a killed re-run ({failpoint}):\n{stdout}"
        );
        assert!(stdout.contains(&good_id), "{stdout}");
    }
}

/// A restore killed once it has started writing leaves the target as it was (absent), and the
/// next restore into it succeeds, clearing what the killed one left beside it.
#[test]
fn a_restore_killed_midway_leaves_no_registry_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "");
    assert_eq!(push(&server, "team/app", "v1"), 201);
    let config = server.config_file.clone();
    let backup = dir.path().join("backup");
    let (code, stdout, stderr) = wharf(
        &config,
        &[
            "backup",
            "create",
            "--to",
            backup.to_str().unwrap(),
            "--url",
            &server.url,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let target = dir.path().join("restored");
    let args = [
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        target.to_str().unwrap(),
    ];
    let (code, stderr) = wharf_dying_at(&config, &args, "restore-started");
    assert_eq!(code, -1, "{stderr}");
    assert!(
        !target.exists(),
        "a killed restore leaves no registry where it was going"
    );
    let leftover = dir.path().join(".restored.restoring");
    assert!(
        leftover.exists(),
        "the failpoint fires once the restore has begun writing"
    );

    let (code, stdout, stderr) = wharf(&config, &args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!leftover.exists());
    let restored = WharfServer::start(&target, "");
    let (status, body) = http(&restored, "GET", "/v2/team/app/manifests/v1", b"");
    assert_eq!(status, 200, "{body}");
}

/// Writes an HTTP request head and part of its body, and keeps the connection: a request held
/// open mid-body.
fn held_request(
    server: &WharfServer,
    method: &str,
    path: &str,
    length: usize,
    first: &[u8],
) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {length}\r\n\r\n",
        server.address
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    stream
}

/// The command killed while the server is still draining for its snapshot: the server releases
/// its hold once the snapshot is taken, and ends the snapshot nobody waits for.
#[test]
fn a_backup_killed_during_its_snapshot_leaves_no_hold_and_no_lease() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "drain:\n  push_grace: 100ms\n");
    assert_eq!(push(&server, "r", "v1"), 201);
    // An upload held open mid-body keeps the drain going.
    let session = {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
        write!(stream, "POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .to_owned()
    };
    let mut held = held_request(&server, "PATCH", &session, 20, b"0123456789");
    for _ in 0..500 {
        if state(&server)["writes_in_flight"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(state(&server)["writes_in_flight"], 1);

    let backup = dir.path().join("backup");
    let mut command = Command::new(wharf_binary())
        .arg("--config")
        .arg(&server.config_file)
        .args([
            "backup",
            "create",
            "--to",
            backup.to_str().unwrap(),
            "--url",
            &server.url,
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hold = loop {
        let now = state(&server);
        if let Some(hold) = now["holds"].as_array().and_then(|h| h.first()) {
            assert_eq!(now["effective"], "draining");
            break hold["name"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    command.kill().unwrap();
    command.wait().unwrap();
    // The held chunk finishes (its answer read: a connection closed early would cancel it) and
    // its client writes nothing more: its push is cut off a push_grace later, which ends the
    // drain; the snapshot is taken and ended, and the hold goes. (The client's cancelling its
    // upload would not end the push sooner: only a tagged manifest completes one.)
    held.write_all(b"0123456789").unwrap();
    held.flush().unwrap();
    let mut answer = [0; 12];
    std::io::Read::read_exact(&mut held, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 202");
    drop(held);
    let after = wait_for(&server, "read-write");
    assert_eq!(after["holds"], Value::Array(vec![]), "{after}");
    assert_eq!(
        http(&server, "DELETE", &session, b"").0,
        204,
        "the upload that was cut off can be cancelled once writable again"
    );
    let id = hold.strip_prefix("backup-").unwrap();
    let mut ended = false;
    for _ in 0..500 {
        if http(
            &server,
            "GET",
            &format!("/api/v1/backups/{id}/metadata"),
            b"",
        )
        .0 == 404
        {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ended, "the abandoned snapshot must be ended");
    assert_incomplete(&server.config_file, &backup);
}

/// A backup of a stopped registry killed while it holds the registry read-only: the hold is in
/// the database with its TTL, so a server started meanwhile is read-only, and read-write once
/// the TTL passes.
#[test]
fn a_backup_killed_while_holding_a_stopped_registry_ends_with_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = WharfServer::start(&data, "drain:\n  push_grace: 100ms\n");
    assert_eq!(push(&server, "r", "v1"), 201);
    let config = server.config_file.clone();
    assert!(server.terminate());

    let backup = dir.path().join("backup");
    for failpoint in ["backup-hold-taken", "backup-lease-taken"] {
        let (code, stderr) = wharf_dying_at(
            &config,
            &[
                "backup",
                "create",
                "--to",
                backup.to_str().unwrap(),
                "--hold-ttl",
                "5s",
                "--wait",
                "4s",
            ],
            failpoint,
        );
        assert_eq!(code, -1, "{failpoint}: {stderr}");
        let server = WharfServer::start(&data, "drain:\n  push_grace: 100ms\n");
        let started = state(&server);
        assert_eq!(
            started["effective"], "read-only",
            "the dead backup's hold is still there"
        );
        assert!(
            started["holds"][0]["name"]
                .as_str()
                .unwrap()
                .starts_with("backup-"),
            "{started}"
        );
        assert_eq!(push(&server, "r", "denied"), 405);
        wait_for(&server, "read-write");
        assert_eq!(push(&server, "r", failpoint), 201);
        drop(server);
        assert_incomplete(&config, &backup);
    }

    // The same command, not killed, on the stopped registry.
    let (code, stdout, stderr) = wharf(
        &config,
        &[
            "backup",
            "create",
            "--to",
            backup.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let manifest: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(manifest["counts"]["manifests"], 3);
    assert_eq!(manifest["source"], data.display().to_string());
    let restored = dir.path().join("restored");
    let (code, stdout, stderr) = wharf(
        &config,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("fsck: no problems found"), "{stdout}");
    let restored_server = WharfServer::start(&restored, "");
    assert_eq!(state(&restored_server)["effective"], "read-write");
    for tag in ["v1", "backup-hold-taken", "backup-lease-taken"] {
        assert_eq!(
            http(
                &restored_server,
                "GET",
                &format!("/v2/r/manifests/{tag}"),
                b""
            )
            .0,
            200,
            "{tag}"
        );
    }
}

/// `--hold-only`: read-only while the command runs, for a volume snapshot; released on SIGTERM.
#[test]
fn hold_only_holds_the_registry_until_told_to_release() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "");
    let mut holder = Command::new(wharf_binary())
        .arg("--config")
        .arg(&server.config_file)
        .args([
            "backup",
            "create",
            "--hold-only",
            "--ttl",
            "30s",
            "--url",
            &server.url,
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("read-only in effect (hold backup-"),
        "{first}"
    );
    let state_now = state(&server);
    assert_eq!(state_now["effective"], "read-only");
    assert!(
        state_now["holds"][0]["expires_at"].is_string(),
        "the hold has a TTL: {state_now}"
    );
    assert_eq!(push(&server, "r", "during"), 405);

    let pid = holder.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let released = lines.next().unwrap().unwrap();
    assert!(released.starts_with("released hold backup-"), "{released}");
    assert!(holder.wait().unwrap().success());
    assert_eq!(state(&server)["effective"], "read-write");
    assert_eq!(push(&server, "r", "after"), 201);

    // On a registry no server runs on, there is nothing to hold.
    let stopped = tempfile::tempdir().unwrap();
    let config = stopped.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  data_dir: {}\n",
            stopped.path().join("data").display()
        ),
    )
    .unwrap();
    let mut stopped_server = WharfServer::start(&stopped.path().join("data"), "");
    assert!(stopped_server.terminate());
    let (code, _, stderr) = wharf(&config, &["backup", "create", "--hold-only"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no server runs on"), "{stderr}");
}

/// A restore into an S3 bucket Wharf cannot use stops before it writes anything, in one line
/// naming the bucket and what failed. (Restores into a bucket: crates/server/tests/api/s3.rs.)
#[test]
fn a_restore_into_an_unusable_bucket_stops_in_one_line() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: this test needs an S3-compatible server. Run scripts/test, \
                 or start one with: eval \"$(scripts/s3 start /tmp/wharf-s3)\""
            )
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = (dir.path().join("id"), dir.path().join("secret"));
    std::fs::write(&id, var("S3_TEST_ACCESS_KEY_ID")).unwrap();
    std::fs::write(&secret, var("S3_TEST_SECRET_ACCESS_KEY")).unwrap();
    let config = dir.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  backend: s3\n  s3:\n    bucket: no-such-bucket\n    endpoint: {}\n    \
             path_style: true\n    allow_http: true\n    access_key_id_file: {}\n    \
             secret_access_key_file: {}\n",
            var("S3_TEST_ENDPOINT"),
            id.display(),
            secret.display()
        ),
    )
    .unwrap();
    let target = dir.path().join("restored");
    let (code, _, stderr) = wharf(
        &config,
        &[
            "restore",
            "--from",
            dir.path().join("backup").to_str().unwrap(),
            "--data",
            target.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("\"no-such-bucket\"") && stderr.contains("cannot list objects"),
        "{stderr}"
    );
    assert!(!target.exists());
}
