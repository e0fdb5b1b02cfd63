//! Read-only mode through the real binary: `wharf read-only on|off|status` (with and without
//! authentication), SIGHUP, and maintenance commands that wait while the registry is read-only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{WharfServer, wharf, wharf_binary, wharf_with};

/// Turns authentication on: the first superuser's password is generated into the data folder,
/// where the command line finds it.
const WITH_AUTH: &str = "auth:\n  mode: token\n";

/// The first superuser's generated password, if the server made one.
fn admin_password(server: &WharfServer) -> Option<String> {
    std::fs::read_to_string(server.data_dir.join("admin-password"))
        .ok()
        .map(|p| p.trim().to_owned())
}

/// `wharf read-only status --json`, without the server's configuration file (which a test may
/// have broken on purpose); credentials, if needed, are the first superuser's.
fn status_json(server: &WharfServer) -> Value {
    let mut command = Command::new(wharf_binary());
    command
        .args(["read-only", "status", "--json", "--url", &server.url])
        .env_remove("RUST_LOG");
    if let Some(password) = admin_password(server) {
        command
            .env("WHARF_USERNAME", "admin")
            .env("WHARF_PASSWORD", password);
    }
    let output = command.output().unwrap();
    let (code, stdout, stderr) = (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn wait_for(server: &WharfServer, mode: &str) -> Value {
    for _ in 0..1000 {
        let state = status_json(server);
        if state["effective"] == mode {
            return state;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never {mode}: {}", status_json(server));
}

/// Sends SIGHUP and waits until the server has handled it.
fn sighup(server: &WharfServer) {
    let handled = "configuration re-read on SIGHUP";
    let before = server.log().matches(handled).count();
    let pid = server.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..1000 {
        if server.log().matches(handled).count() > before {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the SIGHUP was not handled:\n{}", server.log());
}

#[test]
fn the_command_line_takes_and_releases_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), WITH_AUTH);
    let url = server.url.as_str();
    let config = &server.config_file;

    let (code, stdout, stderr) = wharf(
        config,
        &[
            "read-only",
            "on",
            "--reason",
            "upgrade to 2.0",
            "--ttl",
            "2h",
            "--wait",
            "--url",
            url,
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("hold \"admin\" taken: upgrade to 2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("registry: read-only"), "{stdout}");
    assert!(stdout.contains("read-only on 1/1 replicas"), "{stdout}");
    assert!(
        stdout.contains("admin: upgrade to 2.0 (by admin via api"),
        "{stdout}"
    );
    assert!(stdout.contains("expires"), "{stdout}");

    let (code, stdout, _) = wharf(
        config,
        &[
            "read-only",
            "on",
            "--reason",
            "backup",
            "--hold",
            "backup-1",
            "--url",
            url,
        ],
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("hold \"backup-1\" taken"), "{stdout}");

    let (code, stdout, _) = wharf(config, &["read-only", "status", "--url", url]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("admin: upgrade to 2.0") && stdout.contains("backup-1: backup"),
        "{stdout}"
    );
    assert!(
        stdout.contains("last transition: draining -> read-only"),
        "{stdout}"
    );

    let (code, stdout, _) = wharf(config, &["read-only", "off", "--url", url]);
    assert_eq!(code, 0);
    assert!(stdout.contains("hold \"admin\" released"), "{stdout}");
    assert!(
        stdout.contains("registry: read-only"),
        "backup-1 still holds it: {stdout}"
    );
    let (code, stdout, _) = wharf(
        config,
        &[
            "read-only",
            "off",
            "--hold",
            "backup-1",
            "--json",
            "--url",
            url,
        ],
    );
    assert_eq!(code, 0);
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["state"]["effective"], "read-write");
    assert_eq!(answer["released"]["name"], "backup-1");

    // Errors say what is wrong.
    let (code, _, stderr) = wharf(
        config,
        &["read-only", "off", "--hold", "nobody", "--url", url],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("there is no hold named nobody"), "{stderr}");
    let (code, _, stderr) = wharf_with(
        config,
        &["read-only", "status", "--url", url],
        &[
            ("WHARF_USERNAME", "admin"),
            ("WHARF_PASSWORD", "not-the-password"),
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("401 Unauthorized")
            && stderr.contains("incorrect username or password")
            && stderr.contains("WHARF_USERNAME"),
        "{stderr}"
    );
    let (code, _, stderr) = wharf(
        config,
        &["read-only", "status", "--url", "http://127.0.0.1:1"],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot reach the registry at http://127.0.0.1:1"),
        "{stderr}"
    );
    // The password never shows in the server's log; where it is does.
    let password = admin_password(&server).unwrap();
    assert!(!server.log().contains(&password));
    assert!(server.log().contains("admin-password"), "{}", server.log());
}

#[test]
fn sighup_rereads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "");
    let config = &server.config_file;
    assert_eq!(status_json(&server)["effective"], "read-write");

    // The configuration file, edited and signalled.
    let original = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        format!("{original}read_only:\n  enabled: true\n  reason: signalled\n"),
    )
    .unwrap();
    sighup(&server);
    let state = wait_for(&server, "read-only");
    assert_eq!(state["holds"][0]["name"], "config");
    assert_eq!(state["holds"][0]["reason"], "signalled");
    std::fs::write(config, &original).unwrap();
    sighup(&server);
    wait_for(&server, "read-write");
}

#[test]
fn an_invalid_configuration_file_is_refused_with_one_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(
        &dir.path().join("data"),
        "read_only:\n  enabled: true\n  reason: before\n",
    );
    wait_for(&server, "read-only");
    let original = std::fs::read_to_string(&server.config_file).unwrap();
    let broken = original.replace("reason: before", "reason: before\n  enabld: false");
    std::fs::write(&server.config_file, &broken).unwrap();
    let refused = "ignoring the changed configuration file, keeping the running configuration";
    for _ in 0..1000 {
        if server.log().contains(refused) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(refused))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("enabld"), "the line names the key: {line}");
    // The same content again (a SIGHUP) is not judged twice; the state did not change.
    sighup(&server);
    let state = status_json(&server);
    assert_eq!(state["effective"], "read-only");
    assert_eq!(state["holds"][0]["reason"], "before");
    assert_eq!(server.log().matches(refused).count(), 1, "{}", server.log());
}

#[test]
fn maintenance_commands_go_through_the_server_and_wait_while_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = WharfServer::start(&dir.path().join("data"), "");
    let config = &server.config_file.clone();
    let url = server.url.clone();

    // With a server on the data folder, `wharf gc` asks it to collect: the collection is one of
    // the server's writes, which its drain sees.
    let (code, stdout, stderr) = wharf(config, &["gc", "--json", "--url", &url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["deleted_blobs"], 0);

    let (code, _, stderr) = wharf(
        config,
        &[
            "read-only",
            "on",
            "--reason",
            "backup",
            "--wait",
            "--url",
            &url,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = wharf(config, &["gc", "--url", &url]);
    assert_ne!(code, 0);
    assert!(stderr.contains("503 Service Unavailable"), "{stderr}");
    assert!(
        stderr.contains("the registry is read-only (backup (admin)): garbage collection waits until it is read-write"),
        "{stderr}"
    );
    // fsck only reads: it works.
    let (code, stdout, stderr) = wharf(config, &["fsck"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(server.terminate());

    // Without a server, `wharf gc` works on the data folder itself, and still respects the hold.
    let (code, _, stderr) = wharf(config, &["gc"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "the registry is read-only (backup (admin)): garbage collection waits until it is read-write"
        ),
        "{stderr}"
    );
}
