//! The `wharf` command line on PostgreSQL metadata: two servers on one database and one data
//! folder (nothing locks it then), the account commands, `fsck` and `gc` acting on the database
//! in process alongside them, the URL's password kept out of the log, and `backup`/`restore`
//! refused in one line.

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

#[test]
fn backup_and_restore_refuse_postgresql_metadata_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "WHARF_METADATA_URL",
            "postgres://wharf:hunter2@127.0.0.1:1/wharf",
        ),
        ("WHARF_STORAGE_DATA_DIR", dir.path().to_str().unwrap()),
    ];
    let to = dir.path().join("backup");
    let restored = dir.path().join("restored");
    for args in [
        vec!["backup", "create", "--to", to.to_str().unwrap()],
        vec![
            "restore",
            "--from",
            to.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
    ] {
        let (code, _, stderr) = run(&args, &env);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            stderr.contains("not supported yet with PostgreSQL metadata"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!to.exists() && !restored.exists(), "nothing is created");
    }
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
