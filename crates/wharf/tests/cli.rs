//! The `wharf` command line: configuration handling and start-up errors.

mod support;

use support::{WharfServer, wharf, wharf_binary};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(wharf_binary());
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
fn config_example_is_valid_and_complete() {
    let (code, example, _) = run(&["config", "example"], &[]);
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.yaml");
    std::fs::write(&path, &example).unwrap();
    let (code, effective, stderr) = run(
        &["--config", path.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, defaults, _) = run(&["config", "check"], &[]);
    assert_eq!(effective, defaults, "the example must be the defaults");
    assert!(defaults.contains("listen: 127.0.0.1:5000"), "{defaults}");
    assert!(defaults.contains("data_dir: ./wharf-data"), "{defaults}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "server:\n  listen: 127.0.0.1:0\n  bogus_key: 1\n").unwrap();
    let (code, _, stderr) = run(&["--config", path.to_str().unwrap(), "serve"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("bogus_key"), "{stderr}");

    std::fs::write(&path, "limits:\n  max_manifest_size: lots\n").unwrap();
    let (code, _, stderr) = run(&["--config", path.to_str().unwrap(), "serve"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("limits.max_manifest_size"), "{stderr}");

    let (code, _, stderr) = run(&["serve"], &[("WHARF_SERVER_LISTEN", "not-an-address")]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("WHARF_SERVER_LISTEN") && stderr.contains("server.listen"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["config", "check"], &[("WHARF_NO_SUCH_KEY", "1")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("WHARF_NO_SUCH_KEY"), "{stderr}");
}

#[test]
fn environment_overrides_the_file() {
    let (code, effective, stderr) = run(
        &["config", "check"],
        &[("WHARF_GC_INTERVAL", "5m"), ("WHARF_LOG_FORMAT", "json")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(effective.contains("interval: 5m"), "{effective}");
    assert!(effective.contains("format: json"), "{effective}");
}

#[test]
fn a_data_folder_serves_one_server_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = WharfServer::start(&data, "");
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("another Wharf server is using the data folder"),
        "{stderr}"
    );
    drop(first);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = WharfServer::start(&dir.path().join("data"), "");
    assert!(
        server.terminate(),
        "wharf serve should exit 0 on SIGTERM:\n{}",
        server.log()
    );
    assert!(server.log().contains("stopped"), "{}", server.log());
    // The data folder is free again, and consistent.
    let (code, stdout, stderr) = wharf(&server.config_file, &["fsck"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn maintenance_commands_refuse_a_folder_without_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let (code, _, stderr) = run(
        &["fsck"],
        &[("WHARF_STORAGE_DATA_DIR", missing.to_str().unwrap())],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("no registry in"), "{stderr}");
    assert!(!missing.exists(), "fsck must not create a registry");
}

#[test]
fn serving_beyond_loopback_needs_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, stderr) = run(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0") && stderr.contains("auth.mode: token"),
        "{stderr}"
    );
    // With authentication it serves; without, only when told something else authenticates.
    let answers = |server: &WharfServer| {
        use std::io::{Read, Write};
        let port = server.address.rsplit(':').next().unwrap();
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.starts_with("HTTP/1.1 200")
    };
    let server = WharfServer::start_on(&data, "0.0.0.0:0", "auth:\n  mode: token\n");
    assert!(server.address.starts_with("0.0.0.0:"), "{}", server.address);
    assert!(answers(&server));
    drop(server);
    let server = WharfServer::start_with_flags(&data, "0.0.0.0:0", "", &["--insecure-no-auth"]);
    assert!(answers(&server));
}
