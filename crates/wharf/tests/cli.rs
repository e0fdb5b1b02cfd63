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
    // Durations as the example and the documentation write them, not humantime's `30days`.
    for line in [
        "refresh_token_ttl: 30d",
        "upload_expiry: 1d",
        "token_ttl: 5m",
    ] {
        assert!(defaults.contains(line), "{line}: {defaults}");
    }
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

/// A command that changes or reads a registry, run where there is none and pointed at none,
/// refuses, says what it looked for, and creates nothing — it never takes a hold on (or backs up)
/// a registry nobody uses while the real one stays writable.
#[test]
fn commands_pointed_at_no_registry_refuse_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run_here = |args: &[&str]| {
        let output = std::process::Command::new(wharf_binary())
            .args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_URL")
            .env_remove("WHARF_STORAGE_DATA_DIR")
            .output()
            .expect("run wharf");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let looked_for = dir.path().canonicalize().unwrap().join("wharf-data");
    let commands: &[&[&str]] = &[
        &["read-only", "on", "--reason", "nightly backup"],
        &["read-only", "on", "--reason", "nightly backup", "--wait"],
        &["read-only", "off"],
        &["read-only", "status"],
        &["gc"],
        &["user", "list"],
        &["repo", "visibility-rules"],
        &["backup", "create", "--to", "backup"],
        &["backup", "create", "--hold-only"],
    ];
    for args in commands {
        let (code, stderr) = run_here(args);
        assert_ne!(code, 0, "wharf {args:?} acted on no registry: {stderr}");
        assert!(
            stderr.contains("no registry to act on")
                && stderr.contains(&format!("{} does not exist", looked_for.display()))
                && stderr.contains("--url")
                && stderr.contains("--config"),
            "wharf {args:?}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "wharf {args:?} created {left:?}");
    }
    // A folder that exists but holds no registry is refused the same way, and left as it was.
    std::fs::create_dir(dir.path().join("wharf-data")).unwrap();
    let (code, stderr) = run_here(&["read-only", "on", "--reason", "x"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("holds no Wharf registry"), "{stderr}");
    let inside: Vec<_> = std::fs::read_dir(dir.path().join("wharf-data"))
        .unwrap()
        .collect();
    assert!(inside.is_empty(), "{inside:?}");
}

/// Output closed early (`wharf read-only status | head -1`) ends the command quietly, by
/// SIGPIPE as other commands end, not with a panic.
#[test]
fn a_closed_output_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), "");
    // The reading end is closed before the command starts: its first write finds no reader.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(wharf_binary())
        .args(["read-only", "status", "--url", &server.url])
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run wharf");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(13),
        "{:?} {stderr}",
        output.status
    );
}
