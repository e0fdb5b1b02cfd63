//! Accounts through the real binary: `wharf user|org|robot|repo` against a running server with
//! authentication (as a superuser, and as someone who may not), and against a stopped registry's
//! data folder (setting up before the first start, recovering a lost password); serving without
//! authentication only on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};

use support::{WharfServer, wharf_with};

const WITH_AUTH: &str = "auth:\n  mode: token\n";

/// The status of `GET path` with Basic credentials, over a plain socket.
fn status_as(server: &WharfServer, path: &str, user: &str, password: &str) -> u16 {
    use base64_like::encode;
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
        server.address,
        encode(&format!("{user}:{password}"))
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Base64 for Basic credentials, written out so the test does not share the server's code.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes() {
        assert_eq!(encode("a"), "YQ==");
        assert_eq!(encode("ab"), "YWI=");
        assert_eq!(encode("abc"), "YWJj");
        assert_eq!(encode("admin:pw"), "YWRtaW46cHc=");
    }
}

fn admin_env(server: &WharfServer) -> Vec<(&'static str, String)> {
    let password = std::fs::read_to_string(server.data_dir.join("admin-password")).unwrap();
    vec![
        ("WHARF_USERNAME", "admin".to_owned()),
        ("WHARF_PASSWORD", password.trim().to_owned()),
    ]
}

fn run(
    server: &WharfServer,
    env: &[(&str, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = args.to_vec();
    args.extend(["--url", server.url.as_str()]);
    wharf_with(&server.config_file, &args, &env, stdin)
}

#[test]
fn a_superuser_manages_accounts_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = WharfServer::start(&dir.path().join("data"), WITH_AUTH);
    let admin = admin_env(&server);

    let (code, stdout, stderr) = run(
        &server,
        &admin,
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("created user alice"), "{stdout}");
    assert!(
        !stdout.contains("alice-password"),
        "a given password is not echoed"
    );
    let (code, stdout, _) = run(&server, &admin, &["user", "add", "bob"], None);
    assert_eq!(code, 0);
    let bob_password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    assert_eq!(
        status_as(&server, "/v2/", "bob", &bob_password),
        200,
        "the printed password works"
    );
    assert!(
        !server.log().contains(&bob_password),
        "passwords are never logged"
    );

    for args in [
        &["org", "add", "acme"][..],
        &["org", "team", "acme", "devs", "write"],
        &["org", "add-member", "acme", "devs", "alice"],
        &["repo", "visibility", "acme/*", "public"],
        &["user", "grant", "bob", "acme/app", "read"],
    ] {
        let (code, stdout, stderr) = run(&server, &admin, args, None);
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    }
    let (code, stdout, _) = run(
        &server,
        &admin,
        &["robot", "add", "acme+ci", "--description", "CI pushes"],
        None,
    );
    assert_eq!(code, 0);
    let robot_token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_owned();
    assert_eq!(status_as(&server, "/v2/", "acme+ci", &robot_token), 200);
    assert!(
        !server.log().contains(&robot_token),
        "robot tokens are never logged"
    );

    let (_, stdout, _) = run(&server, &admin, &["org", "teams", "acme"], None);
    assert_eq!(stdout.trim(), "devs (write): alice");
    let (_, stdout, _) = run(&server, &admin, &["user", "list"], None);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["admin (superuser)", "alice", "bob"]
    );
    let (_, stdout, _) = run(&server, &admin, &["user", "grants", "bob"], None);
    assert_eq!(stdout.trim(), "bob read acme/app");
    let (_, stdout, _) = run(
        &server,
        &admin,
        &["repo", "visibility-rules", "--json"],
        None,
    );
    let rules: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rules["visibility"][0]["pattern"], "acme/*");

    // Someone who may not is refused with the registry's reason; bad names are named.
    let alice = vec![
        ("WHARF_USERNAME", "alice".to_owned()),
        ("WHARF_PASSWORD", "alice-password".to_owned()),
    ];
    let (code, _, stderr) = run(&server, &alice, &["user", "add", "mallory"], None);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("403 Forbidden") && stderr.contains("only a registry administrator"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        &server,
        &alice,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("alice-new-password\n"),
    );
    assert_eq!(code, 0, "everyone may change their own password: {stderr}");
    assert_eq!(
        status_as(&server, "/v2/", "alice", "alice-new-password"),
        200
    );
    let (code, _, stderr) = run(&server, &admin, &["org", "add", "Not Valid"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid organization name"), "{stderr}");
    // On the server's machine, the generated password file is used when no credentials are
    // given; wrong ones are refused with a hint.
    let (code, stdout, _) = run(&server, &[], &["user", "list"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("admin (superuser)"), "{stdout}");
    let wrong = vec![
        ("WHARF_USERNAME", "admin".to_owned()),
        ("WHARF_PASSWORD", "wrong".to_owned()),
    ];
    let (code, _, stderr) = run(&server, &wrong, &["user", "list"], None);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("401 Unauthorized") && stderr.contains("WHARF_USERNAME"),
        "{stderr}"
    );

    let (code, _, _) = run(&server, &admin, &["robot", "remove", "acme+ci"], None);
    assert_eq!(code, 0);
    assert_eq!(status_as(&server, "/v2/", "acme+ci", &robot_token), 401);
}

#[test]
fn a_stopped_registry_is_managed_on_its_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("wharf.yaml");
    std::fs::write(
        &config,
        format!("storage:\n  data_dir: {}\n{WITH_AUTH}", data.display()),
    )
    .unwrap();
    // A command never creates a registry (only `wharf serve` does): before the first start
    // there is nothing to manage.
    let add_root = || {
        wharf_with(
            &config,
            &["user", "add", "root", "--superuser", "--password-stdin"],
            &[],
            Some("root-password-1\n"),
        )
    };
    let (code, _, stderr) = add_root();
    assert_ne!(code, 0);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!data.exists(), "the command created the data folder");
    // Once served and stopped, the registry is managed on its data folder.
    let mut server = WharfServer::start(&data, WITH_AUTH);
    assert!(server.terminate());
    // The generated superuser's password file is read, then deleted, as the log asks.
    std::fs::remove_file(data.join("admin-password")).unwrap();
    let (code, stdout, stderr) = add_root();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("registry in the data folder"), "{stderr}");
    let mut server = WharfServer::start(&data, WITH_AUTH);
    assert_eq!(
        status_as(&server, "/api/v1/state", "root", "root-password-1"),
        200
    );
    // While the server runs, the command goes through it (and needs credentials).
    let (code, _, stderr) = run(&server, &[], &["user", "list"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("401"), "{stderr}");
    let root = vec![
        ("WHARF_USERNAME", "root".to_owned()),
        ("WHARF_PASSWORD", "root-password-1".to_owned()),
    ];
    let (code, stdout, _) = run(&server, &root, &["user", "list"], None);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "admin (superuser)\nroot (superuser)");
    assert!(server.terminate());

    // The password is lost, and a hold keeps the registry read-only: whoever may read the data
    // folder releases the hold and sets a new password.
    let (code, _, stderr) = wharf_with(
        &config,
        &["read-only", "on", "--reason", "maintenance"],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = wharf_with(
        &config,
        &["read-only", "on", "--reason", "x", "--wait"],
        &[],
        None,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("no server runs"), "{stderr}");
    let (code, _, stderr) = wharf_with(
        &config,
        &["user", "passwd", "root", "--password-stdin"],
        &[],
        Some("root-password-2\n"),
    );
    assert_ne!(code, 0, "account changes are writes");
    assert!(
        stderr.contains("503") && stderr.contains("read-only"),
        "{stderr}"
    );
    let (code, stdout, stderr) = wharf_with(&config, &["read-only", "off"], &[], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("registry: read-write"), "{stdout}");
    let (code, _, stderr) = wharf_with(
        &config,
        &["user", "passwd", "root", "--password-stdin"],
        &[],
        Some("root-password-2\n"),
    );
    assert_eq!(code, 0, "{stderr}");
    let server = WharfServer::start(&data, WITH_AUTH);
    assert_eq!(
        status_as(&server, "/api/v1/state", "root", "root-password-1"),
        401
    );
    assert_eq!(
        status_as(&server, "/api/v1/state", "root", "root-password-2"),
        200
    );
}
