//! Real clients against a real `wharf serve`: skopeo, podman and buildah, as packaged by Debian
//! (`apt-get install -y podman skopeo buildah`), pushing, pulling and copying images, image
//! indexes and Docker manifest lists, and checking that what comes back is byte-identical.
//!
//! Every client command runs isolated: its own HOME, configuration files (passed by environment
//! variables and `$HOME/.config/containers`), vfs storage and TMPDIR, in a private mount
//! namespace (`unshare --mount`) where `/var/lib/containers` (the blob-info cache, which no flag
//! or variable moves and which decides whether clients mount or upload blobs) and `/var/tmp` are
//! folders of the test (with the test's own files bound back into them when the checkout lives
//! there), and `/etc/containers` and `/usr/share/containers` are hidden behind
//! empty tmpfs, so the clients neither read nor change the machine's configuration. This needs
//! root. A missing client fails the tests with the `apt-get install` line to run.
//!
//! Fixture images are built once per test process with buildah (from scratch, from random
//! files) and exported to `dir:` folders with uncompressed layers, under
//! `target/tmp/clients-fixtures/<pid>` (removed by the next run); each test imports the ones it
//! needs into its own storage. Every test has its own server, port and temporary folder; set
//! `WHARF_TEST_KEEP=1` to keep a failed test's folder.
//!
//! The helpers ([`Session`], [`Clients::run`], [`Outcome`]) are meant for more tests here, e.g.
//! clients against a read-only server: `Session::start_with(extra_yaml)`, then
//! `session.clients.run(…)` gives the exit code, stdout and stderr of a command that fails.
//!
//! Pushes under way when read-only is switched on also run docker (Debian's `docker.io`), each
//! test with a `dockerd` of its own ([`Dockerd`]), and go through a loopback proxy
//! ([`HoldingProxy`]) that holds a layer's body part way: the hold is taken while the push is
//! certainly under way, and the push goes on when the body is released.
//!
//! containerd's `ctr` (Debian's `containerd`) talks to a containerd of the test's own
//! ([`Containerd`]); oras-py (PyPI's `oras`, installed by `scripts/test`) runs as a script of a
//! user's would ([`ORAS_PY`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::WharfServer;
use support::proxy::{HoldingProxy, HttpAnswer, HttpBody, HttpClient};

/// What the tests need on the machine, and how to get it.
const REQUIRED: &[(&str, &str)] = &[
    ("skopeo", "apt-get install -y podman skopeo buildah"),
    ("podman", "apt-get install -y podman skopeo buildah"),
    ("buildah", "apt-get install -y podman skopeo buildah"),
    ("unshare", "apt-get install -y util-linux"),
    ("mount", "apt-get install -y mount"),
    ("gzip", "apt-get install -y gzip"),
    ("sha256sum", "apt-get install -y coreutils"),
    ("tar", "apt-get install -y tar"),
    ("diff", "apt-get install -y diffutils"),
    ("cmp", "apt-get install -y diffutils"),
    ("dockerd", "apt-get install -y docker.io"),
    ("docker", "apt-get install -y docker.io"),
    ("setpriv", "apt-get install -y util-linux"),
    ("containerd", "apt-get install -y containerd"),
    ("ctr", "apt-get install -y containerd"),
    ("python3", "apt-get install -y python3 python3-pip"),
];

/// The Python package the oras-py tests import, and how to get it (`scripts/test` does).
const ORAS_PY_INSTALL: &str = "python3 -m pip install oras==0.2.43";

/// How long one client command may take before it is killed and the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Run by `sh -c` inside `unshare --mount --propagation private`: gives the command a private
/// `/var/lib/containers` (blob-info cache, default signature store) and `/var/tmp` (where
/// `skopeo copy … containers-storage:` stages blobs whatever TMPDIR says), hides the machine's
/// container configuration, then runs the command. `$1` is the environment's `state` folder, the
/// rest is the command.
const ISOLATE: &str = r#"set -e
state=$1; fixtures=$2; shift 2
env=${state%/state}
# Covering /var/tmp and /var/lib/containers hides the test's own files when they live under
# one of them (a checkout in /var/tmp): keep the original tree reachable first, and once they
# are covered, bind back the top folders under them that hold the environment and the fixtures.
keep=/run/wharf-isolate
mkdir -p "$keep" /var/lib/containers /var/tmp
mount --rbind / "$keep"
mount --bind "$state/var-lib-containers" /var/lib/containers
mount --bind "$state/var-tmp" /var/tmp
for path in "$env" "$fixtures"; do
  for covered in /var/tmp /var/lib/containers; do
    case $path in
      "$covered"/*)
        rest=${path#"$covered"/}
        top=$covered/${rest%%/*}
        if ! mountpoint -q "$top"; then
          mkdir -p "$top"
          mount --bind "$keep$top" "$top"
        fi
        ;;
    esac
  done
done
for hidden in /etc/containers /usr/share/containers; do
  if [ -d "$hidden" ]; then mount -t tmpfs -o size=4m,mode=0755 wharf-test-hidden "$hidden"; fi
done
exec "$@"
"#;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

// ---------------------------------------------------------------------------------------------
// Running client commands
// ---------------------------------------------------------------------------------------------

/// Fails the test, saying what to install, when a client or tool is missing or we are not root.
fn preflight() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut missing = Vec::new();
        for (tool, install) in REQUIRED {
            if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
                missing.push(format!("`{tool}` is not installed (install it: {install})"));
            }
        }
        let oras = Command::new("python3").args(["-c", "import oras.client"]).output();
        if !oras.is_ok_and(|o| o.status.success()) {
            missing.push(format!(
                "the Python package `oras` (oras-py) is not installed (install it: {ORAS_PY_INSTALL})"
            ));
        }
        if !missing.is_empty() {
            return Err(format!(
                "the client tests need the real clients and a few tools:\n  {}",
                missing.join("\n  ")
            ));
        }
        let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
        if uid.unwrap_or_default().trim_ascii() != b"0" {
            return Err(
                "the client tests must run as root: they isolate every client \
                        command with `unshare --mount` and bind mounts"
                    .to_owned(),
            );
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// The result of one client command.
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; -1 when killed by a signal (or by the timeout).
    pub code: i32,
    /// Standard output, exactly.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
    /// How long it took.
    pub elapsed: Duration,
}

impl Outcome {
    /// Standard output as text, without the final newline.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_owned()
    }

    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stdout = String::from_utf8_lossy(&self.stdout);
        let clip = |s: &str| {
            let mut s = s.to_owned();
            if s.len() > 8000 {
                let mut cut = 8000;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push_str(" […]");
            }
            s
        };
        write!(
            f,
            "$ {}\nexit code {} after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            self.elapsed,
            clip(&stdout),
            clip(&self.stderr)
        )
    }
}

/// One isolated client environment: HOME, configuration, storage, TMPDIR and blob-info cache,
/// all under one folder. Every command run through it shares that state (which is what makes
/// cross-repository mounts happen) and nothing else.
pub struct Clients {
    dir: PathBuf,
    /// Whether the credentials live where a user's machine keeps them (see
    /// [`Clients::with_a_users_auth_files`]) rather than in a file of podman's own.
    users_auth_files: bool,
}

impl Clients {
    /// Sets up an environment in `dir` (created) that talks plain HTTP to `registries`
    /// (`host:port` each).
    pub fn new(dir: &Path, registries: &[&str]) -> Clients {
        let make = |p: &Path| std::fs::create_dir_all(p).unwrap();
        let cfg = dir.join("cfg");
        let home_cfg = dir.join("home/.config/containers");
        let state = ["state/var-lib-containers/cache", "state/var-tmp"];
        for sub in ["tmp", "net", "libpod", "volumes"].iter().chain(&state) {
            make(&dir.join(sub));
        }
        make(&cfg);
        make(&home_cfg);
        let d = |sub: &str| dir.join(sub).display().to_string();
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            d("run"),
            d("root")
        );
        let mut registries_conf =
            String::from("unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n");
        for registry in registries {
            registries_conf.push_str(&format!(
                "\n[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
            ));
        }
        let policy = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;
        let containers = format!(
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{}\"\ntmp_dir = \"{}\"\nstatic_dir = \"{}\"\n\
             volume_path = \"{}\"\n\n[network]\nnetwork_config_dir = \"{}\"\n",
            d("tmp/events.log"),
            d("tmp"),
            d("libpod"),
            d("volumes"),
            d("net")
        );
        let write = |p: PathBuf, text: &str| std::fs::write(p, text).unwrap();
        write(cfg.join("storage.conf"), &storage);
        write(cfg.join("registries.conf"), &registries_conf);
        write(cfg.join("containers.conf"), &containers);
        write(cfg.join("policy.json"), policy);
        write(cfg.join("auth.json"), r#"{"auths":{}}"#);
        // skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF, and podman push ignores
        // --signature-policy: both read these before the files in /etc.
        write(home_cfg.join("registries.conf"), &registries_conf);
        write(home_cfg.join("policy.json"), policy);
        Clients {
            dir: dir.to_owned(),
            users_auth_files: false,
        }
    }

    /// Keeps credentials where they are on a user's machine: docker in
    /// `$HOME/.docker/config.json`; podman, skopeo and buildah in
    /// `$XDG_RUNTIME_DIR/containers/auth.json` (no `REGISTRY_AUTH_FILE`), and, for a registry
    /// that file does not name, in docker's file, which they read too.
    pub fn with_a_users_auth_files(mut self) -> Clients {
        let run = self.dir.join("run-user");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        self.users_auth_files = true;
        self
    }

    /// The environment's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The isolated command, not started.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let d = |sub: &str| self.dir.join(sub);
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                ISOLATE,
                "wharf-isolate",
            ])
            .arg(d("state"))
            .arg(env!("CARGO_TARGET_TMPDIR"))
            .arg(program)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("LC_ALL", "C")
            .env("HOME", d("home"))
            .env("XDG_CONFIG_HOME", d("home/.config"))
            .env("TMPDIR", d("tmp"))
            .env("CONTAINERS_STORAGE_CONF", d("cfg/storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d("cfg/registries.conf"))
            .env("CONTAINERS_CONF", d("cfg/containers.conf"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        if self.users_auth_files {
            command.env("XDG_RUNTIME_DIR", d("run-user"));
        } else {
            command.env("REGISTRY_AUTH_FILE", d("cfg/auth.json"));
        }
        command
    }

    /// Runs `program args…` isolated and returns what happened, whatever the exit code.
    pub fn run(&self, program: &str, args: &[&str]) -> Outcome {
        let mut line = vec![program.to_owned()];
        line.extend(args.iter().map(|a| {
            if a.is_empty() || a.contains([' ', '"', '\'', '[', '{']) {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        }));
        let command_line = line.join(" ");
        let started = Instant::now();
        let mut child = self
            .command(program, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `unshare` for {command_line}: {e}"));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                timed_out = true;
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
        if timed_out {
            stderr.push_str(&format!("\n[killed after {COMMAND_TIMEOUT:?}]"));
        }
        let outcome = Outcome {
            command: command_line,
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap(),
            stderr,
            elapsed: started.elapsed(),
        };
        eprintln!(
            "[{:>6.2}s] exit {:<3} $ {}",
            outcome.elapsed.as_secs_f64(),
            outcome.code,
            outcome.command
        );
        if !outcome.success() {
            let last = outcome.stderr.trim_end().lines().last().unwrap_or_default();
            eprintln!("           stderr: {last}");
        }
        outcome
    }

    /// Runs the command and fails the test unless it succeeds.
    pub fn ok(&self, program: &str, args: &[&str]) -> Outcome {
        let outcome = self.run(program, args);
        assert!(outcome.success(), "a client command failed:\n{outcome}");
        outcome
    }
}

/// `dir:<path>`, a skopeo transport that keeps manifests and blobs exactly as they are.
fn dir(path: &Path) -> String {
    format!("dir:{}", s(path))
}

/// `path` as a `&str` (the test folders are ASCII).
fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

// ---------------------------------------------------------------------------------------------
// A test session: a Wharf server and a client environment that trusts it
// ---------------------------------------------------------------------------------------------

/// A Wharf server with its own data folder and port, and a client environment for it.
pub struct Session {
    dir: Option<tempfile::TempDir>,
    /// The running server, logging every request (`tower_http=debug`).
    pub server: WharfServer,
    /// The main client environment.
    pub clients: Clients,
}

impl Session {
    /// Starts a server and sets up clients for it.
    pub fn start() -> Session {
        Self::start_with("")
    }

    /// Like [`Session::start`], with more configuration for the server (YAML sections other
    /// than `server`, `storage.data_dir` and `log`).
    pub fn start_with(extra_yaml: &str) -> Session {
        preflight();
        let dir = tempfile::Builder::new()
            .prefix("wharf-clients-")
            .tempdir()
            .unwrap();
        let server = WharfServer::start(
            &dir.path().join("data"),
            &format!("log:\n  level: tower_http=debug,info\n{extra_yaml}"),
        );
        let clients = Clients::new(&dir.path().join("clients"), &[&server.address]);
        Session {
            dir: Some(dir),
            server,
            clients,
        }
    }

    /// The session's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.as_ref().unwrap().path().join(name)
    }

    /// Another client environment for the same server, with its own storage and cache.
    pub fn more_clients(&self, name: &str) -> Clients {
        Clients::new(&self.path(name), &[&self.server.address])
    }

    /// `host:port/wharf/<reference>`
    pub fn reference(&self, reference: &str) -> String {
        format!("{}/wharf/{reference}", self.server.address)
    }

    /// `docker://host:port/wharf/<reference>`
    pub fn docker(&self, reference: &str) -> String {
        format!("docker://{}", self.reference(reference))
    }

    /// Runs the command with the main clients; fails the test, with the server's recent
    /// requests, unless it succeeds.
    pub fn ok(&self, program: &str, args: &[&str]) -> Outcome {
        self.ok_with(&self.clients, program, args)
    }

    /// Like [`Session::ok`] with other clients.
    pub fn ok_with(&self, clients: &Clients, program: &str, args: &[&str]) -> Outcome {
        let outcome = clients.run(program, args);
        assert!(
            outcome.success(),
            "a client command failed:\n{outcome}\n--- last requests Wharf answered ---\n{}",
            self.request_tail(40)
        );
        outcome
    }

    /// Runs the command with the given clients; fails the test if it succeeds.
    pub fn fails_with(&self, clients: &Clients, program: &str, args: &[&str]) -> Outcome {
        let outcome = clients.run(program, args);
        assert!(
            !outcome.success(),
            "a client command should have failed:\n{outcome}\n--- last requests ---\n{}",
            self.request_tail(20)
        );
        outcome
    }

    /// The requests the server answered so far.
    pub fn requests(&self) -> Vec<Served> {
        self.server.log_barrier();
        served_requests(&self.server.log())
    }

    fn request_tail(&self, n: usize) -> String {
        let requests = self.requests();
        let skip = requests.len().saturating_sub(n);
        let lines: Vec<String> = requests[skip..].iter().map(Served::to_string).collect();
        let other: Vec<String> = self
            .server
            .log()
            .lines()
            .filter(|l| !l.contains("tower_http::trace"))
            .map(str::to_owned)
            .collect();
        format!(
            "{}\n--- other server log lines ---\n{}",
            lines.join("\n"),
            other.join("\n")
        )
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as Wharf serves them.
    pub fn raw_manifest(&self, reference: &str) -> Vec<u8> {
        self.ok("skopeo", &["inspect", "--raw", &self.docker(reference)])
            .stdout
    }

    /// `skopeo list-tags`, as a list.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let out = self.ok("skopeo", &["list-tags", &self.docker(repository)]);
        let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listing["Repository"], self.reference(repository), "{out}");
        listing["Tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no Tags in {out}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }

    /// Imports a fixture image into the main clients' storage as `name`.
    pub fn import(&self, fixture: &Image, name: &str) {
        let to = format!("containers-storage:{name}");
        self.copy_with(&self.clients, &[], &dir(&fixture.dir), &to);
    }

    /// `skopeo copy --quiet <options…> <from> <to>` with the main clients; must succeed.
    pub fn copy(&self, options: &[&str], from: &str, to: &str) -> Outcome {
        self.copy_with(&self.clients, options, from, to)
    }

    /// Like [`Session::copy`] with other clients.
    pub fn copy_with(&self, clients: &Clients, options: &[&str], from: &str, to: &str) -> Outcome {
        let mut args = vec!["copy", "--quiet"];
        args.extend_from_slice(options);
        args.extend([from, to]);
        self.ok_with(clients, "skopeo", &args)
    }

    /// Runs `wharf fsck` (the server may keep running) and fails the test unless it is clean.
    pub fn assert_fsck_clean(&self) {
        let (code, stdout, stderr) = support::wharf(&self.server.config_file, &["fsck"]);
        assert_eq!(code, 0, "wharf fsck found problems:\n{stdout}\n{stderr}");
        assert!(stdout.contains("no problems found"), "{stdout}\n{stderr}");
        eprintln!("wharf fsck: {}", stdout.trim().replace('\n', "; "));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("WHARF_TEST_KEEP").is_some() {
            let dir = self.dir.take().unwrap().keep();
            eprintln!("WHARF_TEST_KEEP: kept {}", dir.display());
        }
    }
}

/// One request the server answered, from its `tower_http` log line.
#[derive(Debug, Clone)]
pub struct Served {
    /// GET, PUT…
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The response status.
    pub status: u16,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {:?} -> {}",
            self.method, self.path, self.query, self.status
        )
    }
}

/// Parses the `tower_http::trace::on_response` lines of a text log.
fn served_requests(log: &str) -> Vec<Served> {
    log.lines()
        .filter(|line| line.contains("tower_http::trace::on_response"))
        .filter_map(|line| {
            let method = line.split("method=").nth(1)?.split(' ').next()?.to_owned();
            let uri = line.split(" uri=").nth(1)?.split(' ').next()?;
            let status = line
                .split("status=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            let query = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect();
            Some(Served {
                method,
                path: path.to_owned(),
                query,
                status,
            })
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Content checks, with the system's tools (independent of Wharf's code)
// ---------------------------------------------------------------------------------------------

/// `sha256:<hex>` of some bytes, by `sha256sum`.
fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    format!("sha256:{}", &text[..64])
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The hex part of `sha256:<hex>`.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let output = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(
        output.status.success(),
        "gzip -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `diff -r a b` must find nothing.
fn assert_same_tree(a: &Path, b: &Path) {
    let output = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `cmp a b` must find nothing.
fn assert_same_file(a: &Path, b: &Path) {
    let output = Command::new("cmp").arg(a).arg(b).output().unwrap();
    assert!(
        output.status.success(),
        "cmp {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every blob file of a `dir:` folder is named by its content's digest.
fn assert_blob_files_match_their_names(dir: &Path) {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let hex_name = name.strip_suffix(".manifest.json").unwrap_or(&name);
        if hex_name.len() == 64 && hex_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            assert_eq!(
                sha256(&read(&path)),
                format!("sha256:{hex_name}"),
                "{} does not match its name",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count > 0, "no blobs in {}", dir.display());
}

/// Checks an image manifest found in a `dir:` copy against the fixture it was built from:
/// descriptor sizes and digests, the layers (decompressed) byte for byte, and, when
/// `same_config`, the configuration byte for byte (pushing only compresses layers, which leaves
/// an OCI or Docker configuration unchanged; converting OCI to Docker rewrites it).
fn assert_image_matches(dir: &Path, manifest: &Value, fixture: &Image, same_config: bool) {
    let (layer_type, config_type) = match manifest["mediaType"].as_str() {
        Some(OCI_MANIFEST) => (OCI_LAYER_GZIP, "application/vnd.oci.image.config.v1+json"),
        Some(DOCKER_MANIFEST) => (DOCKER_LAYER_GZIP, DOCKER_CONFIG),
        other => panic!("unexpected manifest media type {other:?}: {manifest}"),
    };
    let descriptor_file = |d: &Value| {
        let digest = d["digest"].as_str().unwrap();
        let path = dir.join(hex(digest));
        let bytes = read(&path);
        assert_eq!(
            bytes.len() as u64,
            d["size"].as_u64().unwrap(),
            "size of {digest}"
        );
        assert_eq!(sha256(&bytes), digest, "content of {}", path.display());
        (path, bytes)
    };
    assert_eq!(manifest["config"]["mediaType"], config_type, "{manifest}");
    let (_, config) = descriptor_file(&manifest["config"]);
    if same_config {
        assert!(
            config == fixture.config,
            "the configuration changed on the way"
        );
    } else {
        let config = json(&config);
        let original = json(&fixture.config);
        assert_eq!(config["architecture"], original["architecture"]);
        assert_eq!(config["rootfs"]["diff_ids"], original["rootfs"]["diff_ids"]);
    }
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), fixture.layers.len(), "{manifest}");
    for (i, (layer, original)) in layers.iter().zip(&fixture.layers).enumerate() {
        assert_eq!(layer["mediaType"], layer_type, "layer {i}: {manifest}");
        let (path, _) = descriptor_file(layer);
        assert!(
            gunzip(&path) == *original,
            "layer {i} ({}) is not the fixture's layer once decompressed",
            layer["digest"]
        );
    }
}

/// Checks a `dir:` copy of an image: `manifest.json` is exactly `raw`, every blob matches its
/// digest, and the content is the fixture's. Returns the manifest.
fn assert_dir_copy(dir: &Path, raw: &[u8], fixture: &Image) -> Value {
    let manifest_bytes = read(&dir.join("manifest.json"));
    assert!(
        manifest_bytes == raw,
        "manifest.json of the copy is not the manifest Wharf serves:\n{}\n{}",
        String::from_utf8_lossy(&manifest_bytes),
        String::from_utf8_lossy(raw)
    );
    assert_blob_files_match_their_names(dir);
    let manifest = json(raw);
    assert_image_matches(dir, &manifest, fixture, true);
    manifest
}

/// Checks a `dir:` copy (`--all`) of an index or manifest list with one child per fixture:
/// the list bytes, each child's bytes (`<hex>.manifest.json`), digest, size and platform, and
/// each child's content. Returns the child manifests' bytes by architecture.
fn assert_dir_list_copy(
    dir: &Path,
    raw: &[u8],
    fixtures: &[&Image],
    child_type: &str,
    same_config: bool,
) -> BTreeMap<String, Vec<u8>> {
    let list_bytes = read(&dir.join("manifest.json"));
    assert!(
        list_bytes == raw,
        "manifest.json of the copy is not the list Wharf serves"
    );
    assert_blob_files_match_their_names(dir);
    let list = json(raw);
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), fixtures.len(), "{list}");
    let mut children = BTreeMap::new();
    for entry in entries {
        assert_eq!(entry["mediaType"], child_type, "{list}");
        let digest = entry["digest"].as_str().unwrap();
        let bytes = read(&dir.join(format!("{}.manifest.json", hex(digest))));
        assert_eq!(sha256(&bytes), digest);
        assert_eq!(bytes.len() as u64, entry["size"].as_u64().unwrap());
        let arch = entry["platform"]["architecture"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(entry["platform"]["os"], "linux");
        let fixture = fixtures
            .iter()
            .find(|f| json(&f.config)["architecture"] == arch.as_str())
            .unwrap_or_else(|| panic!("no fixture for platform {arch}"));
        let child = json(&bytes);
        assert_eq!(child["mediaType"], child_type);
        assert_image_matches(dir, &child, fixture, same_config);
        children.insert(arch, bytes);
    }
    assert_eq!(
        children.keys().map(String::as_str).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    children
}

/// Mounts (vfs: no real mount) a pulled image and compares its files with the fixture's.
fn assert_pulled_files(session: &Session, clients: &Clients, reference: &str, fixture: &Image) {
    let root = session
        .ok_with(clients, "podman", &["image", "mount", reference])
        .text();
    for (inside, original) in &fixture.files {
        assert_same_file(
            &Path::new(&root).join(inside.trim_start_matches('/')),
            original,
        );
    }
    session.ok_with(clients, "podman", &["image", "unmount", reference]);
}

fn digest_file(path: &Path) -> String {
    let text = String::from_utf8(read(path)).unwrap();
    assert!(
        text.starts_with("sha256:") && text.trim().len() == 71,
        "{text:?}"
    );
    text.trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Fixtures: built once per test process with buildah, exported to dir: with plain layers
// ---------------------------------------------------------------------------------------------

/// A fixture image, exported with `buildah push … dir:` (uncompressed layers).
pub struct Image {
    /// The `dir:` export.
    pub dir: PathBuf,
    /// Its `manifest.json`.
    pub manifest: Value,
    /// The configuration blob.
    pub config: Vec<u8>,
    /// The uncompressed layers, in manifest order.
    pub layers: Vec<Vec<u8>>,
    /// (path in the image, generated file) for each file.
    pub files: Vec<(String, PathBuf)>,
}

/// `<target>/tmp/clients-fixtures/<pid>`, removing the folders of processes that are gone.
fn fixture_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients-fixtures");
        std::fs::create_dir_all(&base).unwrap();
        let me = std::process::id().to_string();
        for entry in std::fs::read_dir(&base).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let gone = name.parse::<u32>().is_ok() && !Path::new("/proc").join(&name).exists();
            if name == me || gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let root = base.join(me);
        std::fs::create_dir_all(&root).unwrap();
        root
    })
}

fn random_file(path: &Path, size: usize) {
    let mut bytes = vec![0; size];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Builds `localhost/wharf-test/<name>:latest` from scratch, one layer per (path, size) random
/// file, in `format` (oci or docker), reproducibly (timestamp 0), and exports it to `dir:`.
fn build_image(name: &str, format: &str, files: &[(&str, usize)], config: &[&str]) -> Image {
    preflight();
    let started = Instant::now();
    let work = fixture_root().join(name);
    let ctx = work.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let clients = Clients::new(&work.join("env"), &[]);
    let image = format!("localhost/wharf-test/{name}:latest");
    let mut generated = Vec::new();
    let mut base = "scratch".to_owned();
    for (i, (inside, size)) in files.iter().enumerate() {
        let source = ctx.join(Path::new(inside).file_name().unwrap());
        random_file(&source, *size);
        generated.push(((*inside).to_owned(), source.clone()));
        let container = format!("{name}-{i}");
        clients.ok(
            "buildah",
            &[
                "from",
                "--quiet",
                "--pull=never",
                "--name",
                &container,
                &base,
            ],
        );
        clients.ok(
            "buildah",
            &["copy", "--quiet", &container, s(&source), inside],
        );
        if i == 0 {
            let mut args = vec!["config"];
            args.extend_from_slice(config);
            args.push(&container);
            clients.ok("buildah", &args);
        }
        let step = if i + 1 == files.len() {
            image.clone()
        } else {
            format!("localhost/wharf-test/{name}:step{i}")
        };
        clients.ok(
            "buildah",
            &[
                "commit",
                "--quiet",
                "--rm",
                "--timestamp",
                "0",
                "--identity-label=false",
                "--format",
                format,
                &container,
                &step,
            ],
        );
        base = step;
    }
    let dir = work.join("dir");
    clients.ok(
        "buildah",
        &[
            "push",
            "--quiet",
            "--disable-compression",
            &image,
            &format!("dir:{}", s(&dir)),
        ],
    );
    // The storage is not needed any more; the dir: export is.
    std::fs::remove_dir_all(clients.dir()).unwrap();
    let manifest = json(&read(&dir.join("manifest.json")));
    let blob = |d: &Value| read(&dir.join(hex(d["digest"].as_str().unwrap())));
    let config = blob(&manifest["config"]);
    let layers: Vec<Vec<u8>> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(blob)
        .collect();
    assert_eq!(layers.len(), files.len(), "one layer per file: {manifest}");
    let diff_ids = json(&config)["rootfs"]["diff_ids"].clone();
    for (layer, diff_id) in layers.iter().zip(diff_ids.as_array().unwrap()) {
        assert_eq!(
            sha256(layer),
            diff_id.as_str().unwrap(),
            "an exported layer is compressed"
        );
    }
    eprintln!(
        "fixture {name} ({format}) built in {:.2?}",
        started.elapsed()
    );
    Image {
        dir,
        manifest,
        config,
        layers,
        files: generated,
    }
}

/// A three-layer OCI image with a configuration worth keeping.
fn oci_image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        build_image(
            "multi-oci",
            "oci",
            &[
                ("/layer1.bin", 100_000),
                ("/data/layer2.bin", 400_000),
                ("/data/deep/layer3.bin", 1_600_000),
            ],
            &[
                "--cmd",
                r#"["/layer1.bin"]"#,
                "--env",
                "FOO=bar",
                "--label",
                "org.example.test=wharf",
                "--arch",
                "amd64",
                "--os",
                "linux",
            ],
        )
    })
}

/// A two-layer Docker schema2 image (`buildah commit --format docker`).
fn docker_image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let image = build_image(
            "multi-docker",
            "docker",
            &[("/docker1.bin", 300_000), ("/opt/docker2.bin", 700_000)],
            &[
                "--cmd",
                r#"["/docker1.bin"]"#,
                "--arch",
                "amd64",
                "--os",
                "linux",
            ],
        );
        assert_eq!(
            image.manifest["mediaType"], DOCKER_MANIFEST,
            "{}",
            image.manifest
        );
        image
    })
}

/// Two one-layer OCI images, linux/amd64 and linux/arm64, with different content.
fn platform_images() -> &'static [Image; 2] {
    static IMAGES: OnceLock<[Image; 2]> = OnceLock::new();
    IMAGES.get_or_init(|| {
        ["amd64", "arm64"].map(|arch| {
            let payload = format!("/payload-{arch}.bin");
            build_image(
                &format!("platform-{arch}"),
                "oci",
                &[(payload.as_str(), 50_000)],
                &["--arch", arch, "--os", "linux"],
            )
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// With `--preserve-digests`, skopeo fails rather than change a manifest or blob.
const EXACT: &[&str] = &["--preserve-digests"];

/// The isolation every client command gets: no machine configuration, a private
/// `/var/lib/containers` (blob-info cache) and `/var/tmp`, and the environment's own HOME and
/// TMPDIR.
#[test]
fn client_commands_are_isolated() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let clients = Clients::new(&tmp.path().join("clients"), &["127.0.0.1:9"]);
    // Prints nothing for the hidden folders, then the environment.
    let script = "find /etc/containers /usr/share/containers -mindepth 1 2>/dev/null; \
                  touch /var/lib/containers/cache/probe /var/tmp/wharf-probe; \
                  echo \"HOME=$HOME TMPDIR=$TMPDIR\"";
    let probe = clients.ok("sh", &["-c", script]);
    let home = clients.dir().join("home");
    let tmp_dir = clients.dir().join("tmp");
    let expected = format!("HOME={} TMPDIR={}", home.display(), tmp_dir.display());
    assert_eq!(probe.text(), expected, "{probe}");
    let state = clients.dir().join("state");
    assert!(state.join("var-lib-containers/cache/probe").exists());
    assert!(state.join("var-tmp/wharf-probe").exists());
    assert!(!Path::new("/var/lib/containers/cache/probe").exists());
    assert!(!Path::new("/var/tmp/wharf-probe").exists());
}

/// A multi-layer OCI image: `podman push`, then `skopeo inspect --raw`, `skopeo copy` to `dir:`
/// and `podman pull` (by tag and by digest, into fresh storage) give back exactly what was pushed.
#[test]
fn oci_image_podman_push_then_podman_pull_and_skopeo_copy() {
    let fixture = oci_image();
    let session = Session::start();
    session.import(fixture, "localhost/wharf-test/multi:oci");
    let pushed = session.path("pushed.digest");
    let target = session.docker("oci-image:v1");
    let local = "localhost/wharf-test/multi:oci";
    session.ok(
        "podman",
        &[
            "push",
            "--quiet",
            "--digestfile",
            s(&pushed),
            local,
            &target,
        ],
    );
    let digest = digest_file(&pushed);

    // What Wharf serves is what podman pushed: same bytes (same digest), OCI, gzip layers.
    let raw = session.raw_manifest("oci-image:v1");
    assert_eq!(
        sha256(&raw),
        digest,
        "the manifest served is not the one pushed"
    );
    let manifest = json(&raw);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
    assert_eq!(manifest["config"], fixture.manifest["config"]);
    let config = session.ok("skopeo", &["inspect", "--raw", "--config", &target]);
    assert!(
        config.stdout == fixture.config,
        "the configuration served is not the one pushed"
    );
    let by_digest = session.raw_manifest(&format!("oci-image@{digest}"));
    assert!(by_digest == raw, "by digest and by tag differ");

    // skopeo copy to dir:, byte for byte.
    let copy = session.path("copy");
    session.copy(EXACT, &target, &dir(&copy));
    assert_dir_copy(&copy, &raw, fixture);

    // podman pull into fresh storage (nothing cached), by tag then by digest.
    let puller = session.more_clients("puller");
    let tag = session.reference("oci-image:v1");
    let id = session
        .ok_with(&puller, "podman", &["pull", "--quiet", &tag])
        .text();
    assert_eq!(
        format!("sha256:{id}"),
        fixture.manifest["config"]["digest"].as_str().unwrap()
    );
    let inspect = ["image", "inspect", "--format", "{{.Digest}}", &tag];
    assert_eq!(session.ok_with(&puller, "podman", &inspect).text(), digest);
    assert_pulled_files(&session, &puller, &tag, fixture);
    let pinned = session.reference(&format!("oci-image@{digest}"));
    let id_again = session
        .ok_with(&puller, "podman", &["pull", "--quiet", &pinned])
        .text();
    assert_eq!(id_again, id);

    session.assert_fsck_clean();
}

/// A Docker schema2 image: `buildah push`, then `skopeo copy` to `dir:` gives it back byte for
/// byte, a second push of that copy (fresh clients: every blob uploaded) stores the same bytes,
/// and `podman pull` gets the files back.
#[test]
fn docker_schema2_image_buildah_push_and_byte_identical_round_trip() {
    let fixture = docker_image();
    let session = Session::start();
    session.import(fixture, "localhost/wharf-test/multi:docker");
    let pushed = session.path("pushed.digest");
    let target = session.docker("docker-image:v1");
    let local = "localhost/wharf-test/multi:docker";
    session.ok(
        "buildah",
        &[
            "push",
            "--quiet",
            "--digestfile",
            s(&pushed),
            local,
            &target,
        ],
    );
    let digest = digest_file(&pushed);
    let raw = session.raw_manifest("docker-image:v1");
    assert_eq!(
        sha256(&raw),
        digest,
        "the manifest served is not the one pushed"
    );
    let manifest = json(&raw);
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST, "{manifest}");
    assert_eq!(manifest["schemaVersion"], 2);

    let copy = session.path("copy");
    session.copy(EXACT, &target, &dir(&copy));
    assert_dir_copy(&copy, &raw, fixture);

    // dir: -> Wharf -> dir: with clients that know nothing: every blob is uploaded as it is.
    let fresh = session.more_clients("fresh");
    let again = session.path("again.digest");
    let options = ["--preserve-digests", "--digestfile", s(&again)];
    session.copy_with(
        &fresh,
        &options,
        &dir(&copy),
        &session.docker("docker-copy:v1"),
    );
    assert_eq!(digest_file(&again), digest);
    let uploaded: BTreeSet<String> = session
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 201)
        .filter(|r| r.path.starts_with("/v2/wharf/docker-copy/blobs/uploads/"))
        .filter_map(|r| r.query.get("digest").cloned())
        .collect();
    let blobs: BTreeSet<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        uploaded, blobs,
        "every blob should have been uploaded to docker-copy"
    );
    assert!(session.raw_manifest("docker-copy:v1") == raw);
    let back = session.path("back");
    session.copy_with(
        &fresh,
        EXACT,
        &session.docker("docker-copy:v1"),
        &dir(&back),
    );
    assert_same_tree(&copy, &back);

    let puller = session.more_clients("puller");
    let tag = session.reference("docker-copy:v1");
    session.ok_with(&puller, "podman", &["pull", "--quiet", &tag]);
    let inspect = ["image", "inspect", "--format", "{{.Digest}}", &tag];
    assert_eq!(session.ok_with(&puller, "podman", &inspect).text(), digest);
    assert_pulled_files(&session, &puller, &tag, fixture);

    session.assert_fsck_clean();
}

/// Two platforms: `buildah manifest push --all` (an OCI index) and `podman manifest push --all
/// --format v2s2` (a Docker manifest list), copied back with `skopeo copy --all` byte for byte,
/// pushed again from the copy, and pulled per platform.
#[test]
fn image_index_and_manifest_list_push_all_and_copy_all() {
    let [amd64, arm64] = platform_images();
    let session = Session::start();
    session.import(amd64, "localhost/wharf-test/platform:amd64");
    session.import(arm64, "localhost/wharf-test/platform:arm64");
    let children = [
        "containers-storage:localhost/wharf-test/platform:amd64",
        "containers-storage:localhost/wharf-test/platform:arm64",
    ];
    let all: &[&str] = &["--all", "--preserve-digests"];

    // buildah: an OCI index.
    let index = "localhost/wharf-test/index:v1";
    session.ok("buildah", &["manifest", "create", index]);
    for child in children {
        session.ok("buildah", &["manifest", "add", index, child]);
    }
    let pushed = session.path("index.digest");
    let target = session.docker("index:v1");
    let push = [
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--digestfile",
        s(&pushed),
        index,
        &target,
    ];
    session.ok("buildah", &push);
    let raw = session.raw_manifest("index:v1");
    assert_eq!(
        sha256(&raw),
        digest_file(&pushed),
        "the index served is not the one pushed"
    );
    assert_eq!(
        json(&raw)["mediaType"],
        OCI_INDEX,
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let copy = session.path("index-copy");
    session.copy(all, &target, &dir(&copy));
    let manifests = assert_dir_list_copy(&copy, &raw, &[amd64, arm64], OCI_MANIFEST, true);

    // The copy pushed again (the layers get mounted) and copied back: identical.
    session.copy(all, &dir(&copy), &session.docker("index-copy:v1"));
    assert!(session.raw_manifest("index-copy:v1") == raw);
    let back = session.path("index-back");
    session.copy(all, &session.docker("index-copy:v1"), &dir(&back));
    assert_same_tree(&copy, &back);

    // One platform out of the index.
    let arm = session.path("arm64-only");
    let args = [
        "--override-arch",
        "arm64",
        "copy",
        "--quiet",
        &target,
        &dir(&arm),
    ];
    session.ok("skopeo", &args);
    assert!(read(&arm.join("manifest.json")) == manifests["arm64"]);
    assert_image_matches(&arm, &json(&manifests["arm64"]), arm64, true);

    // podman: a Docker manifest list (the children converted to Docker schema2 on the way).
    let list = "localhost/wharf-test/list:v1";
    session.ok("podman", &["manifest", "create", list]);
    for child in children {
        session.ok("podman", &["manifest", "add", list, child]);
    }
    let pushed = session.path("list.digest");
    let target = session.docker("list:v1");
    let push = [
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--format",
        "v2s2",
        "--digestfile",
        s(&pushed),
        list,
        &target,
    ];
    session.ok("podman", &push);
    let raw = session.raw_manifest("list:v1");
    assert_eq!(
        sha256(&raw),
        digest_file(&pushed),
        "the list served is not the one pushed"
    );
    assert_eq!(
        json(&raw)["mediaType"],
        DOCKER_LIST,
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let copy = session.path("list-copy");
    session.copy(all, &target, &dir(&copy));
    assert_dir_list_copy(&copy, &raw, &[amd64, arm64], DOCKER_MANIFEST, false);

    // podman pull of one platform of the list, into fresh storage.
    let puller = session.more_clients("puller");
    let tag = session.reference("list:v1");
    session.ok_with(
        &puller,
        "podman",
        &["pull", "--quiet", "--arch", "arm64", &tag],
    );
    assert_pulled_files(&session, &puller, &tag, arm64);

    session.assert_fsck_clean();
}

/// `skopeo copy docker://…/a docker://…/b` with clients that know where the blobs are mounts
/// every layer (`POST …/b/blobs/uploads/?mount=…&from=a` answered 201) instead of uploading it,
/// and Wharf then serves them from `b`, also once `a` is deleted and garbage collected.
#[test]
fn copy_between_repositories_uses_cross_repository_mount() {
    let fixture = oci_image();
    let session = Session::start();
    let source = session.docker("mount-src:v1");
    let target = session.docker("mount-dst:v1");
    // Push, then read back: the clients' blob-info cache now knows the blobs are in mount-src.
    session.copy(&[], &dir(&fixture.dir), &source);
    let source_copy = session.path("source");
    session.copy(EXACT, &source, &dir(&source_copy));
    let raw = session.raw_manifest("mount-src:v1");
    let manifest = assert_dir_copy(&source_copy, &raw, fixture);
    let layers: BTreeSet<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();

    let before = session.requests().len();
    session.copy(EXACT, &source, &target);
    let during: Vec<Served> = session.requests().split_off(before);
    let listing = || {
        during
            .iter()
            .map(Served::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mounts: Vec<&Served> = during
        .iter()
        .filter(|r| r.method == "POST" && r.query.contains_key("mount"))
        .collect();
    let mounted: BTreeSet<String> = mounts.iter().map(|r| r.query["mount"].clone()).collect();
    assert_eq!(
        mounted,
        layers,
        "every layer, and only layers, should be mounted:\n{}",
        listing()
    );
    for mount in &mounts {
        assert_eq!(mount.path, "/v2/wharf/mount-dst/blobs/uploads/", "{mount}");
        assert_eq!(
            mount.query.get("from").map(String::as_str),
            Some("wharf/mount-src"),
            "{mount}"
        );
        assert_eq!(
            mount.status,
            201,
            "Wharf did not mount: {mount}\n{}",
            listing()
        );
    }
    for layer in &layers {
        let moved = during.iter().find(|r| {
            (r.method == "GET" && r.path.ends_with(&format!("/blobs/{layer}")))
                || (r.method == "PUT" && r.query.get("digest") == Some(layer))
        });
        assert!(
            moved.is_none(),
            "{layer} was transferred, not mounted: {moved:?}\n{}",
            listing()
        );
    }

    // Wharf's side: the target serves the same manifest and every blob, to clients that know
    // nothing.
    assert!(session.raw_manifest("mount-dst:v1") == raw);
    let target_copy = session.path("target");
    session.copy_with(
        &session.more_clients("fresh"),
        EXACT,
        &target,
        &dir(&target_copy),
    );
    assert_same_tree(&source_copy, &target_copy);
    session.assert_fsck_clean();

    // Delete the source and collect garbage with no grace: the mounted blobs belong to the target.
    session.ok("skopeo", &["delete", &source]);
    let gc = Command::new(support::wharf_binary())
        .arg("--config")
        .arg(&session.server.config_file)
        .args(["gc", "--url", &session.server.url])
        .env_remove("RUST_LOG")
        .env("WHARF_GC_GRACE", "0s")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&gc.stdout);
    assert!(
        gc.status.success(),
        "wharf gc: {report}{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    eprintln!("wharf gc: {}", report.trim().replace('\n', "; "));
    let after_gc = session.path("after-gc");
    session.copy_with(
        &session.more_clients("fresher"),
        EXACT,
        &target,
        &dir(&after_gc),
    );
    assert_same_tree(&source_copy, &after_gc);
    session.assert_fsck_clean();
}

/// `skopeo list-tags` lists the tags; `skopeo delete` removes the manifest (and, like
/// Distribution, every tag pointing to it), after which pulls by tag or digest fail with
/// "manifest unknown" while other manifests stay intact.
#[test]
fn list_tags_and_delete() {
    let fixture = oci_image();
    let session = Session::start();
    let image = |reference: &str| session.docker(reference);
    session.copy(&[], &dir(&fixture.dir), &image("tags:v1"));
    session.copy(&[], &image("tags:v1"), &image("tags:v2"));
    session.copy(
        &["--format", "v2s2"],
        &image("tags:v1"),
        &image("tags:docker"),
    );
    session.copy(&[], &dir(&fixture.dir), &image("other:v1"));
    assert_eq!(session.tags("tags"), ["docker", "v1", "v2"]);
    assert_eq!(session.tags("other"), ["v1"]);

    let raw_v1 = session.raw_manifest("tags:v1");
    let digest_v1 = sha256(&raw_v1);
    assert!(session.raw_manifest("tags:v2") == raw_v1);
    let raw_docker = session.raw_manifest("tags:docker");
    assert_eq!(json(&raw_docker)["mediaType"], DOCKER_MANIFEST);
    let digest_docker = sha256(&raw_docker);
    // `skopeo inspect` (not --raw) reads the manifest, the configuration and the tag list.
    let inspect = session.ok("skopeo", &["inspect", &image("tags:v1")]);
    let inspected = json(&inspect.stdout);
    assert_eq!(inspected["Digest"], digest_v1.as_str(), "{inspect}");
    assert_eq!(
        inspected["RepoTags"],
        serde_json::json!(["docker", "v1", "v2"]),
        "{inspect}"
    );
    assert_eq!(inspected["Architecture"], "amd64", "{inspect}");
    assert_eq!(
        inspected["Labels"]["org.example.test"], "wharf",
        "{inspect}"
    );

    session.ok("skopeo", &["delete", &image("tags:v1")]);
    assert_eq!(
        session.tags("tags"),
        ["docker"],
        "v1 and v2 named the deleted manifest"
    );
    assert_eq!(
        session.tags("other"),
        ["v1"],
        "another repository is not affected"
    );

    let puller = session.more_clients("puller");
    let nothing = dir(&session.path("nothing"));
    for gone in [
        "tags:v1".to_owned(),
        "tags:v2".to_owned(),
        format!("tags@{digest_v1}"),
    ] {
        let inspect = ["inspect", "--raw", &image(&gone)];
        let failed = session.fails_with(&session.clients, "skopeo", &inspect);
        assert!(failed.stderr.contains("manifest unknown"), "{failed}");
        let copy = ["copy", "--quiet", &image(&gone), &nothing];
        let failed = session.fails_with(&session.clients, "skopeo", &copy);
        assert!(failed.stderr.contains("manifest unknown"), "{failed}");
        let pull = ["pull", "--quiet", &session.reference(&gone)];
        let failed = session.fails_with(&puller, "podman", &pull);
        assert_eq!(failed.code, 125, "{failed}");
        assert!(failed.stderr.contains("manifest unknown"), "{failed}");
    }

    // The other manifest of the repository is intact, and so is the other repository.
    let copy = session.path("docker-copy");
    session.copy(EXACT, &image("tags:docker"), &dir(&copy));
    assert!(read(&copy.join("manifest.json")) == raw_docker);
    assert_image_matches(&copy, &json(&raw_docker), fixture, false);
    let other = session.reference("other:v1");
    session.ok_with(&puller, "podman", &["pull", "--quiet", &other]);
    assert_pulled_files(&session, &puller, &other, fixture);

    // Deleting by digest; deleting again fails.
    let by_digest = image(&format!("tags@{digest_docker}"));
    session.ok("skopeo", &["delete", &by_digest]);
    assert_eq!(session.tags("tags"), Vec::<String>::new());
    session.fails_with(&session.clients, "skopeo", &["delete", &by_digest]);

    session.assert_fsck_clean();
}

/// The line podman, skopeo and buildah print for a write a read-only registry refuses.
const DENIED: &str = "denied: System is currently read-only. Pulls will succeed but all write operations are currently suspended.";

/// `wharf read-only <args> --url <server>`; must succeed.
fn read_only_command(session: &Session, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.extend(["--url", &session.server.url]);
    let (code, stdout, stderr) = support::wharf(
        &session.server.config_file,
        &[&["read-only"], &args[..]].concat(),
    );
    assert_eq!(code, 0, "wharf read-only {args:?}:\n{stdout}{stderr}");
    stdout
}

/// Pushes into a read-only registry fail with the read-only message; pulls work; once read-only
/// is switched off with `wharf read-only off`, the same pushes succeed.
#[test]
fn read_only_refuses_pushes_with_a_clear_message_and_keeps_pulls_working() {
    let fixture = oci_image();
    let session = Session::start();
    session.import(fixture, "localhost/wharf-test/multi:oci");
    session.ok(
        "podman",
        &[
            "push",
            "--quiet",
            "localhost/wharf-test/multi:oci",
            &session.docker("before:v1"),
        ],
    );

    let out = read_only_command(
        &session,
        &["on", "--reason", "backup in progress", "--wait"],
    );
    assert!(out.contains("registry: read-only"), "{out}");

    let podman = session.fails_with(
        &session.clients,
        "podman",
        &[
            "push",
            "--quiet",
            "localhost/wharf-test/multi:oci",
            &session.docker("during:v1"),
        ],
    );
    assert!(
        podman.stderr.contains(DENIED),
        "podman should print the message:\n{podman}"
    );
    let skopeo = session.fails_with(
        &session.clients,
        "skopeo",
        &[
            "copy",
            "--quiet",
            &dir(&fixture.dir),
            &session.docker("during:v1"),
        ],
    );
    assert!(
        skopeo.stderr.contains(DENIED),
        "skopeo should print the message:\n{skopeo}"
    );
    // Deleting is a write too (skopeo prints the error body as it came, not as `denied: …`).
    let delete = session.fails_with(
        &session.clients,
        "skopeo",
        &["delete", &session.docker("before:v1")],
    );
    assert!(
        delete.stderr.contains(&DENIED["denied: ".len()..]),
        "{delete}"
    );
    assert!(delete.stderr.contains("405 Method Not Allowed"), "{delete}");

    // Pulls keep working, with fresh clients (nothing cached).
    let puller = session.more_clients("puller");
    let copy = session.path("pulled");
    session.copy_with(&puller, EXACT, &session.docker("before:v1"), &dir(&copy));
    let raw = session.raw_manifest("before:v1");
    assert_dir_copy(&copy, &raw, fixture);
    session.ok_with(
        &puller,
        "podman",
        &["pull", "--quiet", &session.reference("before:v1")],
    );

    let out = read_only_command(&session, &["off"]);
    assert!(out.contains("registry: read-write"), "{out}");
    session.ok(
        "podman",
        &[
            "push",
            "--quiet",
            "localhost/wharf-test/multi:oci",
            &session.docker("during:v1"),
        ],
    );
    session.copy(&[], &dir(&fixture.dir), &session.docker("after:v1"));
    assert_eq!(session.raw_manifest("during:v1"), raw);
    session.assert_fsck_clean();
}

/// One push of the push loop that runs during a backup.
struct Push {
    tag: String,
    started: std::time::SystemTime,
    ended: std::time::SystemTime,
    outcome: Outcome,
}

/// A `dir:` copy of `fixture` that is an image of its own: one more layer (a tar of a random
/// file) and a configuration that lists it, so nothing of its manifest, configuration or new
/// layer is shared with any other image.
fn unique_variant(fixture: &Image, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(&fixture.dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let content = dir.join("content");
    std::fs::create_dir_all(&content).unwrap();
    random_file(&content.join(format!("{name}.bin")), 20_000);
    let tar = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&content)
        .arg(format!("{name}.bin"))
        .status()
        .unwrap();
    assert!(status.success(), "tar of {name}");
    std::fs::remove_dir_all(&content).unwrap();
    let layer = read(&tar);
    std::fs::remove_file(&tar).unwrap();
    let layer_digest = sha256(&layer);
    std::fs::write(dir.join(hex(&layer_digest)), &layer).unwrap();

    let mut config = json(&fixture.config);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(layer_digest.clone().into());
    if let Some(history) = config["history"].as_array_mut() {
        history.push(serde_json::json!({ "created_by": format!("wharf test: {name}") }));
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config);
    std::fs::remove_file(dir.join(hex(fixture.manifest["config"]["digest"].as_str().unwrap())))
        .unwrap();
    std::fs::write(dir.join(hex(&config_digest)), &config).unwrap();

    let mut manifest = fixture.manifest.clone();
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config.len().into();
    let media_type = manifest["layers"][0]["mediaType"].clone();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": media_type,
            "digest": layer_digest,
            "size": layer.len(),
        }));
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    dir.to_owned()
}

/// Waits until `done()` (another thread's progress) or fails the test after `limit`.
fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pushes go on while `wharf backup create` runs. The backup holds every push that completed
/// before read-only took effect, none that started after the registry was writable again, and
/// each push it holds is complete: restored, every tag pulls byte-identical with skopeo, and
/// fsck is clean. Pushes refused in between are clean denials.
#[test]
fn a_backup_taken_during_pushes_restores_byte_identical() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let fixture = oci_image();
    let session = Session::start_with("drain:\n  push_grace: 200ms\n");
    session.copy(EXACT, &dir(&fixture.dir), &session.docker("seed:v1"));

    let pushes: Arc<Mutex<Vec<Push>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = session.more_clients("pusher");
    let successes = |pushes: &Mutex<Vec<Push>>| {
        pushes
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.outcome.success())
            .count()
    };
    let backup = session.path("backup");
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let tag = format!("t{i}");
                let image = unique_variant(fixture, &session.path(&format!("push-{tag}")), &tag);
                let target = session.docker(&format!("loop:{tag}"));
                let started = std::time::SystemTime::now();
                let outcome = pusher.run(
                    "skopeo",
                    &[
                        "copy",
                        "--quiet",
                        "--preserve-digests",
                        &dir(&image),
                        &target,
                    ],
                );
                let ended = std::time::SystemTime::now();
                pushes.lock().unwrap().push(Push {
                    tag,
                    started,
                    ended,
                    outcome,
                });
            }
        });
        // The pusher stops however this ends: a failed assertion here must not leave the scope
        // waiting for it forever.
        struct StopOnExit<'a>(&'a AtomicBool);
        impl Drop for StopOnExit<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnExit(&stop);
        // Some pushes complete before the backup, some after it.
        wait_until("two pushes before the backup", COMMAND_TIMEOUT, || {
            successes(&pushes) >= 2
        });
        let (code, stdout, stderr) = support::wharf(
            &session.server.config_file,
            &[
                "backup",
                "create",
                "--to",
                s(&backup),
                "--url",
                &session.server.url,
                "--json",
            ],
        );
        assert_eq!(code, 0, "wharf backup create:\n{stdout}{stderr}");
        let after = successes(&pushes);
        wait_until("two pushes after the backup", COMMAND_TIMEOUT, || {
            successes(&pushes) >= after + 2
        });
        serde_json::from_str::<Value>(&stdout).unwrap()
    });
    let time = |field: &str| {
        humantime::parse_rfc3339(report["read_only"][field].as_str().unwrap()).unwrap()
    };
    let (read_only_from, read_only_until) = (time("from"), time("until"));
    let pushes = Arc::into_inner(pushes).unwrap().into_inner().unwrap();
    for push in pushes.iter().filter(|p| !p.outcome.success()) {
        assert!(
            push.outcome.stderr.contains(DENIED),
            "a push failed other than by a clean denial:\n{}",
            push.outcome
        );
    }

    let restored_data = session.path("restored");
    let (code, stdout, stderr) = support::wharf(
        &session.server.config_file,
        &["restore", "--from", s(&backup), "--data", s(&restored_data)],
    );
    assert_eq!(code, 0, "wharf restore:\n{stdout}{stderr}");
    let restored = WharfServer::start(&restored_data, "");
    let clients = Clients::new(&session.path("restored-clients"), &[&restored.address]);
    let restored_ref = |reference: &str| format!("docker://{}/wharf/{reference}", restored.address);
    let listing = clients.run("skopeo", &["list-tags", &restored_ref("loop")]);
    assert!(listing.success(), "{listing}");
    let tags: Vec<String> = json(&listing.stdout)["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let (mut before, mut after) = (0, 0);
    for push in &pushes {
        let held = tags.contains(&push.tag);
        assert!(
            !held || push.outcome.success(),
            "{} is in the backup, but its push failed:\n{}",
            push.tag,
            push.outcome
        );
        if push.outcome.success() && push.ended < read_only_from {
            assert!(
                held,
                "{} completed before read-only, but is not in the backup",
                push.tag
            );
            before += 1;
        }
        if push.started > read_only_until {
            assert!(
                !held,
                "{} started after the backup's read-only window, but is in it",
                push.tag
            );
            after += 1;
        }
    }
    assert!(
        before >= 2 && after >= 2,
        "the loop pushed around the backup: {before} before, {after} after"
    );
    let pushed: Vec<(String, PathBuf)> = tags
        .iter()
        .map(|t| (format!("loop:{t}"), session.path(&format!("push-{t}"))))
        .chain([("seed:v1".to_owned(), fixture.dir.clone())])
        .collect();
    for (tag, original) in pushed {
        let copy = session.path(&format!("pulled-{}", tag.replace(':', "-")));
        let out = clients.run(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--preserve-digests",
                &restored_ref(&tag),
                &dir(&copy),
            ],
        );
        assert!(out.success(), "{out}");
        assert_same_tree(&original, &copy);
    }
    let (code, stdout, stderr) = support::wharf(&restored.config_file, &["fsck"]);
    assert_eq!(code, 0, "fsck of the restored registry:\n{stdout}{stderr}");
    eprintln!(
        "backup during pushes: {} pushes ({before} before read-only, {after} after), {} restored tags, read-only for {} ms",
        pushes.len(),
        tags.len(),
        report["read_only"]["read_only_ms"]
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication and TLS with real clients
// ---------------------------------------------------------------------------------------------

/// `wharf <args> --url <server>` as the first superuser, with `stdin`; must succeed.
fn as_admin(session: &Session, args: &[&str], stdin: Option<&str>) -> String {
    let password = std::fs::read_to_string(session.server.data_dir.join("admin-password")).unwrap();
    let mut args = args.to_vec();
    args.extend(["--url", session.server.url.as_str()]);
    let (code, stdout, stderr) = support::wharf_with(
        &session.server.config_file,
        &args,
        &[
            ("WHARF_USERNAME", "admin"),
            ("WHARF_PASSWORD", password.trim()),
        ],
        stdin,
    );
    assert_eq!(code, 0, "wharf {args:?}:\n{stdout}{stderr}");
    stdout
}

/// podman and skopeo log in (tokens from Wharf's token endpoint), push to their own namespace,
/// are denied someone else's, cannot pull a private repository they have no role on, and
/// anyone pulls it anonymously once it is public — byte-identical.
#[test]
fn podman_and_skopeo_log_in_push_pull_and_are_denied_what_is_not_theirs() {
    let fixture = oci_image();
    let session = Session::start_with("auth:\n  mode: token\n");
    as_admin(
        &session,
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    as_admin(
        &session,
        &["user", "add", "bob", "--password-stdin"],
        Some("bob-password\n"),
    );
    let registry = session.server.address.clone();
    let at = |reference: &str| format!("{registry}/{reference}");
    let local = "localhost/wharf-test/multi:oci";
    session.import(fixture, local);

    // Not logged in: the push is refused with 401 (podman's first refusal is a HEAD, whose
    // 401 has no body to show).
    let refused = session.fails_with(
        &session.clients,
        "podman",
        &["push", "--quiet", local, &at("alice/app:v1")],
    );
    assert!(refused.stderr.contains("401"), "{refused}");

    session.ok(
        "podman",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "alice-password",
            &registry,
        ],
    );
    session.ok("podman", &["push", "--quiet", local, &at("alice/app:v1")]);
    // podman pulls it back into fresh storage, logged in as alice there too.
    let puller = session.more_clients("alice-puller");
    session.ok_with(
        &puller,
        "podman",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "alice-password",
            &registry,
        ],
    );
    let id = session
        .ok_with(&puller, "podman", &["pull", "--quiet", &at("alice/app:v1")])
        .text();
    assert_eq!(
        format!("sha256:{id}"),
        fixture.manifest["config"]["digest"].as_str().unwrap()
    );
    assert_pulled_files(&session, &puller, &at("alice/app:v1"), fixture);
    let denied = session.fails_with(
        &session.clients,
        "podman",
        &["push", "--quiet", local, &at("bob/app:v1")],
    );
    assert!(
        denied
            .stderr
            .contains("requested access to the resource is denied"),
        "{denied}"
    );
    let wrong = session.fails_with(
        &session.clients,
        "podman",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "not-her-password",
            &registry,
        ],
    );
    assert!(
        wrong.stderr.contains("invalid username/password"),
        "{wrong}"
    );

    // skopeo, logged in as bob: alice's repository is private.
    let bob = session.more_clients("bob");
    session.ok_with(
        &bob,
        "skopeo",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "bob",
            "-p",
            "bob-password",
            &registry,
        ],
    );
    let copy = session.path("bob-copy");
    let private = session.fails_with(
        &bob,
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("docker://{}", at("alice/app:v1")),
            &dir(&copy),
        ],
    );
    assert!(
        private.stderr.contains("denied") || private.stderr.contains("unauthorized"),
        "{private}"
    );
    session.copy_with(
        &bob,
        EXACT,
        &dir(&fixture.dir),
        &format!("docker://{}", at("bob/tool:v1")),
    );

    // Public: anyone pulls it, anonymously, byte for byte.
    as_admin(
        &session,
        &["repo", "visibility", "alice/app", "public"],
        None,
    );
    let anonymous = session.more_clients("anonymous");
    let pulled = session.path("anonymous-copy");
    session.copy_with(
        &anonymous,
        EXACT,
        &format!("docker://{}", at("alice/app:v1")),
        &dir(&pulled),
    );
    let raw = read(&pulled.join("manifest.json"));
    assert_dir_copy(&pulled, &raw, fixture);
    let push = session.fails_with(
        &anonymous,
        "skopeo",
        &[
            "copy",
            "--quiet",
            &dir(&fixture.dir),
            &format!("docker://{}", at("alice/app:v2")),
        ],
    );
    assert!(
        push.stderr.contains("authentication required") || push.stderr.contains("unauthorized"),
        "{push}"
    );

    // Secrets never reach the log.
    let log = session.server.log();
    for secret in ["alice-password", "bob-password", "not-her-password"] {
        assert!(!log.contains(secret), "{secret} is in the server's log");
    }
    session.assert_fsck_clean();
}

/// A session with authentication on and the user `alice` (password `alice-password`), who may
/// push to `alice/...`.
fn session_with_alice() -> Session {
    let session = Session::start_with("auth:\n  mode: token\n");
    as_admin(
        &session,
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password\n"),
    );
    session
}

/// On one machine, `docker login`, then `podman login` and `skopeo login` (which read docker's
/// config file too) all succeed, and each then pushes: docker keeps the password (Wharf gives
/// its login no refresh token), not an identity token, over which podman and skopeo refuse to
/// log in (`currently logged in, auth file contains an Identity token`).
#[test]
fn docker_podman_and_skopeo_log_in_on_one_machine_and_each_pushes() {
    let fixture = oci_image();
    let session = session_with_alice();
    let registry = session.server.address.clone();
    let machine = session.more_clients("machine").with_a_users_auth_files();
    let daemon = Dockerd::start(&session.path("dockerd"));
    daemon.load(&session, &machine, fixture, LOCAL_IMAGE);
    let to = format!("containers-storage:{LOCAL_IMAGE}");
    session.copy_with(&machine, &[], &dir(&fixture.dir), &to);
    let login = ["-u", "alice", "-p", "alice-password"];

    let docker_login = daemon.run(&machine, &[&["login"], &login[..], &[&registry]].concat());
    assert!(docker_login.success(), "docker login:\n{docker_login}");
    for program in ["podman", "skopeo"] {
        let args = [&["login", "--tls-verify=false"], &login[..], &[&registry]].concat();
        session.ok_with(&machine, program, &args);
    }
    // podman and skopeo wrote their own file, and docker's still has docker's login.
    let config = machine.dir().join("home/.docker/config.json");
    let entry = json(&read(&config))["auths"][&registry].clone();
    assert!(
        entry["auth"].is_string() && entry["identitytoken"].is_null(),
        "docker should keep the credentials, not an identity token: {entry}"
    );
    let theirs = machine.dir().join("run-user/containers/auth.json");
    assert!(json(&read(&theirs))["auths"][&registry]["auth"].is_string());

    let target = |name: &str| format!("{registry}/alice/{name}:v1");
    let tagged = daemon.run(&machine, &["tag", LOCAL_IMAGE, &target("docker")]);
    assert!(tagged.success(), "docker tag:\n{tagged}");
    let pushed = daemon.run(&machine, &["push", &target("docker")]);
    assert!(
        pushed.success(),
        "docker push after the other logins:\n{pushed}\n{}",
        session.request_tail(20)
    );
    session.ok_with(
        &machine,
        "podman",
        &["push", "--quiet", LOCAL_IMAGE, &target("podman")],
    );
    session.copy_with(
        &machine,
        &[],
        &dir(&fixture.dir),
        &format!("docker://{}", target("skopeo")),
    );
    for name in ["docker", "podman", "skopeo"] {
        let listing = session.ok_with(
            &machine,
            "skopeo",
            &["list-tags", &format!("docker://{registry}/alice/{name}")],
        );
        assert_eq!(
            json(&listing.stdout)["Tags"],
            serde_json::json!(["v1"]),
            "{listing}"
        );
    }
}

/// oras-py as a script of a user's uses it: `login REGISTRY USER PASSWORD` (kept in
/// `$HOME/.docker/config.json`), `push TARGET FILE…` (paths below the working folder, as
/// oras-py wants), `pull TARGET OUTDIR` (prints the files pulled, one a line), over plain HTTP.
/// A failure is oras-py's exception, as it raises it.
const ORAS_PY: &str = r#"
import sys
import oras.client

action, registry, *args = sys.argv[1:]
client = oras.client.OrasClient(hostname=registry, insecure=True)
if action == "login":
    client.login(username=args[0], password=args[1], hostname=registry)
elif action == "push":
    response = client.push(target=args[0], files=args[1:])
    response.raise_for_status()
elif action == "pull":
    for path in client.pull(target=args[0], outdir=args[1]):
        print(path)
"#;

/// Runs [`ORAS_PY`] with `args` in `clients`. oras-py's `login` logs in through a docker daemon
/// when the `docker` Python package is installed and one answers (and then writes no
/// credentials): `DOCKER_HOST` names none, so it always keeps them in docker's file itself.
fn oras_py(clients: &Clients, args: &[&str]) -> Outcome {
    let no_daemon = format!(
        "DOCKER_HOST=unix://{}",
        s(&clients.dir().join("no-docker.sock"))
    );
    clients.run(
        "env",
        &[&[no_daemon.as_str(), "python3", "-c", ORAS_PY], args].concat(),
    )
}

/// oras-py logs in, pushes files as an artifact and pulls them back byte for byte with
/// authentication on: its pull-only token (from a `HEAD`'s challenge) is refused for the upload
/// with a 403 that names the scope, on which oras-py fetches a token with `push` (on a 401 it
/// would retry with the same token and fail). Once read-only, its push fails with the
/// read-only message and its pull still works.
#[test]
fn oras_py_pushes_and_pulls_with_authentication_and_sees_the_read_only_message() {
    preflight();
    let session = session_with_alice();
    let registry = session.server.address.clone();
    let clients = session.more_clients("oras");
    let files = clients.dir().join("artifact");
    std::fs::create_dir_all(&files).unwrap();
    random_file(&files.join("model.bin"), 300_000);
    std::fs::write(files.join("notes.txt"), "pushed by oras-py\n").unwrap();
    let target = format!("{registry}/alice/artifact:v1");
    let check = |outcome: Outcome| {
        assert!(
            outcome.success(),
            "oras-py failed:\n{outcome}\n--- last requests Wharf answered ---\n{}",
            session.request_tail(20)
        );
        outcome
    };
    check(oras_py(
        &clients,
        &["login", &registry, "alice", "alice-password"],
    ));
    check(oras_py(
        &clients,
        &[
            "push",
            &registry,
            &target,
            "artifact/model.bin",
            "artifact/notes.txt",
        ],
    ));
    let uploads = session
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/alice/artifact/blobs/uploads/")
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert!(
        uploads.first() == Some(&403) && !uploads.contains(&401),
        "oras-py's pull-only token should be refused with a 403, not a 401: {uploads:?}"
    );

    let pull = |outdir: &str| {
        let out = clients.dir().join(outdir);
        let pulled = check(oras_py(&clients, &["pull", &registry, &target, s(&out)]));
        assert_eq!(pulled.text().lines().count(), 2, "{pulled}");
        for name in ["model.bin", "notes.txt"] {
            assert_same_file(&out.join(name), &files.join(name));
        }
    };
    pull("pulled");

    read_only_command(&session, &["on", "--reason", HOLD_REASON, "--wait"]);
    std::fs::write(files.join("later.txt"), "pushed while read-only\n").unwrap();
    let refused = oras_py(
        &clients,
        &[
            "push",
            &registry,
            &format!("{registry}/alice/later:v1"),
            "artifact/later.txt",
        ],
    );
    assert!(
        !refused.success() && refused.stderr.contains(&DENIED["denied: ".len()..]),
        "oras-py should fail with the read-only message:\n{refused}"
    );
    eprintln!(
        "oras-py refused while read-only:\n{}",
        refused.stderr.trim()
    );
    pull("pulled-while-read-only");
}

/// With TLS and a test CA, skopeo verifies the registry's certificate: it pushes and pulls back
/// byte-identical with the CA given, and refuses the registry without it.
#[test]
fn skopeo_verifies_the_registrys_certificate() {
    preflight();
    let fixture = oci_image();
    let dir_ = tempfile::Builder::new()
        .prefix("wharf-tls-")
        .tempdir()
        .unwrap();
    let ca = support::certificates::TestCa::new(&dir_.path().join("ca"));
    let (cert, key) = ca.issue("registry");
    let server = WharfServer::start(
        &dir_.path().join("data"),
        &format!(
            "tls:\n  cert: {}\n  key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let port = server.address.rsplit(':').next().unwrap();
    let target = format!("docker://localhost:{port}/tls/app:v1");
    // No registry is marked insecure: TLS is verified.
    let clients = Clients::new(&dir_.path().join("clients"), &[]);
    let certs = dir_.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca.cert, certs.join("ca.crt")).unwrap();

    let untrusted = clients.run("skopeo", &["copy", "--quiet", &dir(&fixture.dir), &target]);
    assert!(!untrusted.success(), "{untrusted}");
    assert!(untrusted.stderr.contains("certificate"), "{untrusted}");

    let pushed = clients.run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-cert-dir",
            s(&certs),
            &dir(&fixture.dir),
            &target,
        ],
    );
    assert!(pushed.success(), "{pushed}");
    let copy = dir_.path().join("copy");
    let pulled = clients.run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-cert-dir",
            s(&certs),
            &target,
            &dir(&copy),
        ],
    );
    assert!(pulled.success(), "{pulled}");
    assert_same_tree(&fixture.dir, &copy);
}

// ---------------------------------------------------------------------------------------------
// Pushes under way when read-only is switched on
// ---------------------------------------------------------------------------------------------

/// The drain of these tests: a timeout no push here comes near, so only a straggler meets it,
/// and a grace that a client's next write always comes well within.
const DRAIN_FOR_PUSHES: &str = "drain:\n  timeout: 60s\n  push_grace: 3s\n";

/// Where the proxy holds a layer's body of `oci_image()`: past the whole of its 100 kB and
/// 400 kB layers, inside its 1.6 MB one (random bytes: gzip keeps them as large).
const HOLD_AFTER: u64 = 1 << 20;

/// The reason the tests give for their holds.
const HOLD_REASON: &str = "a push under way finishes";

/// `wharf read-only status --json` of the session's server.
fn state(session: &Session) -> Value {
    json(read_only_command(session, &["status", "--json"]).as_bytes())
}

/// A docker daemon of one test's own (Debian's `docker.io`): data, state and socket in a folder
/// of the test, no networking of its own, none of the machine's configuration. Stopped
/// (SIGTERM, then SIGKILL) when dropped, and sent SIGTERM by the kernel if the thread that
/// started it ends first, so it never outlives the test.
pub struct Dockerd {
    child: Option<std::process::Child>,
    dir: PathBuf,
    /// `unix://<dir>/docker.sock`
    host: String,
}

impl Dockerd {
    /// Starts `dockerd` in `dir` (created) and waits until it answers on its socket.
    pub fn start(dir: &Path) -> Dockerd {
        preflight();
        let started = Instant::now();
        for sub in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let socket = dir.join("docker.sock");
        let host = format!("unix://{}", s(&socket));
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let path = |sub: &str| s(&dir.join(sub)).to_owned();
        // In a mount namespace of its own, where /etc/docker (its key) and /run (its plugin
        // folders) are the test's: the daemon writes there whatever its flags say.
        std::fs::create_dir_all(dir.join("etc-docker")).unwrap();
        let script = r#"set -e
mount --bind "$1/etc-docker" /etc/docker
mount -t tmpfs -o size=4m,mode=0755 wharf-test-run /run
shift
exec "$@"
"#;
        let mut child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "TERM",
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", script, "wharf-dockerd", s(dir), "dockerd"])
            .args(["--config-file", &path("daemon.json")])
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["-H", &host, "--storage-driver=vfs", "--bridge=none"])
            .args(["--iptables=false", "--ip-forward=false", "--ip-masq=false"])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dockerd did not start ({exited:?}); its log:\n{}",
                    String::from_utf8_lossy(&read(&dir.join("dockerd.log")))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("dockerd started in {:.2?}", started.elapsed());
        Dockerd {
            child: Some(child),
            dir: dir.to_owned(),
            host,
        }
    }

    /// Runs `docker -H <this daemon> <args…>` isolated in `clients` (whose HOME keeps the
    /// docker command's own configuration).
    pub fn run(&self, clients: &Clients, args: &[&str]) -> Outcome {
        let mut all = vec!["-H", self.host.as_str()];
        all.extend_from_slice(args);
        clients.run("docker", &all)
    }

    /// Loads the `dir:` image `fixture` into the daemon as `name` (no registry involved: skopeo
    /// writes a docker archive, which `docker load` reads).
    pub fn load(&self, session: &Session, clients: &Clients, fixture: &Image, name: &str) {
        let archive = self
            .dir
            .join(format!("{}.tar", name.replace(['/', ':'], "-")));
        let to = format!("docker-archive:{}:{name}", s(&archive));
        session.copy_with(clients, &[], &dir(&fixture.dir), &to);
        let loaded = self.run(clients, &["load", "--quiet", "-i", s(&archive)]);
        assert!(loaded.success(), "docker load:\n{loaded}");
        std::fs::remove_file(&archive).unwrap();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            let log = String::from_utf8_lossy(&read(&self.dir.join("dockerd.log"))).into_owned();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- the end of dockerd's log ---\n{}", tail.join("\n"));
        }
    }
}

/// A containerd of one test's own (Debian's `containerd`), for `ctr`: root, state, socket and
/// plugin folder in a folder of the test, the Kubernetes (CRI) plugin off, in a mount namespace
/// of its own with a private `/run`. Stopped (SIGTERM, then SIGKILL) when dropped, and sent
/// SIGTERM by the kernel if the thread that started it ends first.
pub struct Containerd {
    child: Option<std::process::Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Containerd {
    /// Starts `containerd` in `dir` (created) and waits until it answers on its socket.
    pub fn start(dir: &Path) -> Containerd {
        preflight();
        let started = Instant::now();
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let d = |sub: &str| s(&dir.join(sub)).to_owned();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{}\"\n",
            d("root"),
            d("state"),
            s(&socket),
            s(&socket),
            d("opt")
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let script =
            "set -e\nmount -t tmpfs -o size=4m,mode=0755 wharf-test-run /run\nexec \"$@\"\n";
        let mut child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "TERM",
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", script, "wharf-containerd", "containerd"])
            .args(["--config", &d("config.toml")])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "containerd did not start ({exited:?}); its log:\n{}",
                    String::from_utf8_lossy(&read(&dir.join("containerd.log")))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("containerd started in {:.2?}", started.elapsed());
        Containerd {
            child: Some(child),
            dir: dir.to_owned(),
            socket,
        }
    }

    /// Runs `ctr --address <this containerd> --namespace wharf <args…>` isolated in `clients`.
    pub fn ctr(&self, clients: &Clients, args: &[&str]) -> Outcome {
        let mut all = vec!["--address", s(&self.socket), "--namespace", "wharf"];
        all.extend_from_slice(args);
        clients.run("ctr", &all)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            let log = String::from_utf8_lossy(&read(&self.dir.join("containerd.log"))).into_owned();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- the end of containerd's log ---\n{}", tail.join("\n"));
        }
    }
}

/// `ctr images push` and `ctr images pull` (its own containerd, plain HTTP, authentication on)
/// give back the image byte for byte; once read-only, a push fails with `405 Method Not
/// Allowed` (ctr prints the status, not the message) and a pull still works.
#[test]
fn ctr_pushes_and_pulls_and_is_refused_while_read_only() {
    let fixture = oci_image();
    let session = session_with_alice();
    let registry = session.server.address.clone();
    let clients = session.more_clients("ctr");
    let daemon = Containerd::start(&session.path("containerd"));
    let ctr = |args: &[&str]| {
        let outcome = daemon.ctr(&clients, args);
        assert!(
            outcome.success(),
            "ctr failed:\n{outcome}\n--- last requests Wharf answered ---\n{}",
            session.request_tail(20)
        );
        outcome
    };
    let remote = ["--plain-http", "--user", "alice:alice-password"];

    // The fixture with gzip layers, as an OCI archive ctr imports without unpacking.
    let archive = session.path("image.tar");
    let to = format!("oci-archive:{}:{LOCAL_IMAGE}", s(&archive));
    session.copy_with(&clients, &["--dest-compress"], &dir(&fixture.dir), &to);
    ctr(&["images", "import", "--no-unpack", s(&archive)]);
    let index = Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("index.json")
        .output()
        .unwrap();
    let digest = json(&index.stdout)["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let target = format!("{registry}/alice/ctr:v1");
    ctr(&[&["images", "push"], &remote[..], &[&target, LOCAL_IMAGE]].concat());
    let creds = ["--creds", "alice:alice-password"];
    let raw = session
        .ok_with(
            &clients,
            "skopeo",
            &[
                &["inspect", "--raw"],
                &creds[..],
                &[&format!("docker://{target}")],
            ]
            .concat(),
        )
        .stdout;
    assert_eq!(
        sha256(&raw),
        digest,
        "the manifest served is not the one ctr pushed"
    );
    let copy = session.path("pulled");
    session.copy_with(
        &clients,
        &["--src-creds", "alice:alice-password", "--preserve-digests"],
        &format!("docker://{target}"),
        &dir(&copy),
    );
    assert_dir_copy(&copy, &raw, fixture);

    // Forgotten locally (content and all), then pulled back from Wharf.
    ctr(&["images", "rm", "--sync", LOCAL_IMAGE]);
    let before = session.requests().len();
    ctr(&[
        &["images", "pull", "--snapshotter", "native"],
        &remote[..],
        &[&target],
    ]
    .concat());
    let fetched: BTreeSet<String> = session.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.contains("/blobs/"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    let manifest = json(&raw);
    let blobs: BTreeSet<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fetched, blobs,
        "ctr pull should fetch every blob from Wharf"
    );
    assert!(ctr(&["content", "get", &digest]).stdout == raw);

    read_only_command(&session, &["on", "--reason", HOLD_REASON, "--wait"]);
    let later = format!("{registry}/alice/later:v1");
    let refused = daemon.ctr(
        &clients,
        &[&["images", "push"], &remote[..], &[&later, &target]].concat(),
    );
    assert!(
        !refused.success() && refused.stderr.contains("405 Method Not Allowed"),
        "ctr push should fail with 405 while read-only:\n{refused}"
    );
    eprintln!(
        "ctr refused while read-only: {}",
        refused
            .stderr
            .lines()
            .filter(|l| l.starts_with("ctr:"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    ctr(&["images", "rm", "--sync", &target]);
    ctr(&[
        &["images", "pull", "--snapshotter", "native"],
        &remote[..],
        &[&target],
    ]
    .concat());
}

/// The client programs that push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// `skopeo copy dir:… docker://…`
    Skopeo,
    /// `podman push`
    Podman,
    /// `buildah push`
    Buildah,
    /// `docker push`, through a dockerd of the test's own.
    Docker,
}

/// The name of the pushed image in the pushers' local storage.
const LOCAL_IMAGE: &str = "localhost/wharf-test/multi:oci";

/// A client program that pushes a fixture image through a proxy: its environment (which
/// trusts the proxy's address, and the server's), and docker's daemon.
struct Pusher<'a> {
    program: Program,
    session: &'a Session,
    fixture: &'a Image,
    /// `host:port` of the proxy.
    registry: String,
    clients: Clients,
    docker: Option<Dockerd>,
}

impl<'a> Pusher<'a> {
    /// Sets up `program` in its own environment of the session to push `fixture` to
    /// `registry`, with the image in its local storage (but skopeo's, which reads the fixture's
    /// `dir:`).
    fn new(program: Program, session: &'a Session, fixture: &'a Image, registry: &str) -> Self {
        let name = format!("{program:?}").to_lowercase();
        let clients = Clients::new(
            &session.path(&format!("pusher-{name}")),
            &[registry, &session.server.address],
        );
        let mut docker = None;
        match program {
            Program::Skopeo => {}
            Program::Podman | Program::Buildah => {
                let to = format!("containers-storage:{LOCAL_IMAGE}");
                session.copy_with(&clients, &[], &dir(&fixture.dir), &to);
            }
            Program::Docker => {
                let daemon = Dockerd::start(&session.path("dockerd"));
                daemon.load(session, &clients, fixture, LOCAL_IMAGE);
                docker = Some(daemon);
            }
        }
        Pusher {
            program,
            session,
            fixture,
            registry: registry.to_owned(),
            clients,
            docker,
        }
    }

    /// Pushes the image to `wharf/<reference>` (`repository:tag`) of the registry; returns what
    /// happened and, when it succeeded, the digest of the manifest pushed.
    fn push(&self, reference: &str) -> (Outcome, Option<String>) {
        let target = format!("{}/wharf/{reference}", self.registry);
        let docker_target = format!("docker://{target}");
        let digest_file = self
            .session
            .path(&format!("{}.digest", reference.replace(['/', ':'], "-")));
        let digest_option = ["--digestfile", s(&digest_file)];
        let outcome = match self.program {
            Program::Skopeo => {
                let source = dir(&self.fixture.dir);
                let mut args = vec!["copy", "--quiet"];
                args.extend(digest_option);
                args.extend([source.as_str(), docker_target.as_str()]);
                self.clients.run("skopeo", &args)
            }
            Program::Podman | Program::Buildah => {
                let program = if self.program == Program::Podman {
                    "podman"
                } else {
                    "buildah"
                };
                let mut args = vec!["push", "--quiet"];
                args.extend(digest_option);
                args.extend([LOCAL_IMAGE, docker_target.as_str()]);
                self.clients.run(program, &args)
            }
            Program::Docker => {
                let docker = self.docker.as_ref().unwrap();
                let tagged = docker.run(&self.clients, &["tag", LOCAL_IMAGE, &target]);
                assert!(tagged.success(), "docker tag:\n{tagged}");
                let pushed = docker.run(&self.clients, &["push", &target]);
                // "v1: digest: sha256:<hex> size: <n>"
                let text = pushed.text();
                if let Some(at) = text.find("digest: sha256:") {
                    let digest = &text[at + "digest: ".len()..][..71];
                    std::fs::write(&digest_file, digest).unwrap();
                }
                pushed
            }
        };
        let digest = outcome
            .success()
            .then(|| digest_file_of(&digest_file, &outcome));
        (outcome, digest)
    }

    /// Checks that `wharf/<reference>` serves what was pushed as `digest`: the same manifest
    /// bytes, and, copied to `dir:` by fresh clients straight from the server, blobs that match
    /// their digests, the fixture's layers byte for byte once decompressed, and its
    /// configuration byte for byte.
    fn assert_pushed(&self, reference: &str, digest: &str) {
        let session = self.session;
        let raw = session.raw_manifest(reference);
        assert_eq!(
            sha256(&raw),
            digest,
            "the manifest served is not the one {:?} pushed",
            self.program
        );
        let name = reference.replace(['/', ':'], "-");
        let copy = session.path(&format!("pulled-{name}"));
        let fresh = session.more_clients(&format!("puller-{name}"));
        session.copy_with(&fresh, EXACT, &session.docker(reference), &dir(&copy));
        let manifest = assert_dir_copy(&copy, &raw, self.fixture);
        // docker pushes what `docker load` made of the image: Docker schema2, same config.
        let media_type = match self.program {
            Program::Docker => DOCKER_MANIFEST,
            _ => OCI_MANIFEST,
        };
        assert_eq!(manifest["mediaType"], media_type, "{manifest}");
    }
}

/// The digest in a `--digestfile`, failing with the command's outcome when there is none.
fn digest_file_of(path: &Path, outcome: &Outcome) -> String {
    assert!(path.exists(), "no digest written by:\n{outcome}");
    digest_file(path)
}

/// Every client pushes through the proxy (nothing held) and the image pulls back identical:
/// the proxy is a faithful go-between for each of them, keep-alive connections, chunked
/// uploads, their TLS probes and all.
#[test]
fn every_client_pushes_through_the_proxy_and_the_image_pulls_back_identical() {
    let fixture = oci_image();
    let session = Session::start();
    let proxy = HoldingProxy::start(&session.server.address);
    for program in [
        Program::Skopeo,
        Program::Podman,
        Program::Buildah,
        Program::Docker,
    ] {
        let pusher = Pusher::new(program, &session, fixture, &proxy.address);
        let reference = format!("{}:v1", format!("{program:?}").to_lowercase());
        let (outcome, digest) = pusher.push(&reference);
        assert!(
            outcome.success(),
            "a push through the proxy failed:\n{outcome}\n--- last requests Wharf answered ---\n{}",
            session.request_tail(30)
        );
        pusher.assert_pushed(&reference, &digest.unwrap());
    }
    eprintln!(
        "connections through the proxy that were not HTTP: {}",
        proxy.opaque_connections()
    );
    let forwarded = proxy.requests();
    assert!(
        forwarded
            .iter()
            .any(|r| r.method == "PATCH" && r.target.contains("/blobs/uploads/")),
        "no upload went through the proxy: {forwarded:?}"
    );
    session.assert_fsck_clean();
}

/// The proxy holds a chunked `PATCH` and a `PUT` with `Content-Length` after the bytes it was
/// told, says so, and lets each go on when released; requests that follow on the same
/// keep-alive connection go through whole.
#[test]
fn the_proxy_holds_an_upload_body_and_lets_it_go_on() {
    let session = Session::start();
    let proxy = HoldingProxy::start(&session.server.address);
    let mut http = HttpClient::connect(&proxy.address);
    let content: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&content);
    let location = |answer: &HttpAnswer| {
        answer
            .header("location")
            .unwrap_or_else(|| panic!("no Location: {answer:?}"))
            .to_owned()
    };
    let with_digest = |location: &str| {
        let separator = if location.contains('?') { '&' } else { '?' };
        format!("{location}{separator}digest={digest}")
    };

    // A chunked PATCH held after 100 000 of its 150 000 bytes, then the PUT that closes it.
    let opened = http.send("POST", "/v2/wharf/proxied/blobs/uploads/", HttpBody::None);
    assert_eq!(opened.status, 202, "{opened:?}");
    let session_url = location(&opened);
    proxy.hold_next_upload_body(100_000);
    let (patched, put) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let chunks: Vec<&[u8]> = content.chunks(60_000).collect();
            let patched = http.send("PATCH", &session_url, HttpBody::Chunked(&chunks));
            let put = http.send("PUT", &with_digest(&session_url), HttpBody::None);
            (patched, put)
        });
        let held = proxy
            .wait_for_hold(Duration::from_secs(60), || sender.is_finished())
            .expect("the PATCH was not held");
        assert_eq!(held.method, "PATCH");
        assert_eq!(held.forwarded, 100_000);
        assert!(!sender.is_finished(), "the PATCH was answered while held");
        proxy.release();
        sender.join().unwrap()
    });
    assert_eq!(patched.status, 202, "{patched:?}");
    assert_eq!(patched.header("range"), Some("0-149999"), "{patched:?}");
    assert_eq!(put.status, 201, "{put:?}");

    // A monolithic PUT with Content-Length, held after 10 000 bytes.
    let opened = http.send("POST", "/v2/wharf/proxied/blobs/uploads/", HttpBody::None);
    assert_eq!(opened.status, 202, "{opened:?}");
    let again = location(&opened);
    proxy.hold_next_upload_body(10_000);
    let put = std::thread::scope(|scope| {
        let sender =
            scope.spawn(|| http.send("PUT", &with_digest(&again), HttpBody::Bytes(&content)));
        let held = proxy
            .wait_for_hold(Duration::from_secs(60), || sender.is_finished())
            .expect("the PUT was not held");
        assert_eq!((held.method.as_str(), held.forwarded), ("PUT", 10_000));
        proxy.release();
        sender.join().unwrap()
    });
    assert_eq!(put.status, 201, "{put:?}");

    let blob = http.send(
        "GET",
        &format!("/v2/wharf/proxied/blobs/{digest}"),
        HttpBody::None,
    );
    assert_eq!(blob.status, 200, "{blob:?}");
    assert!(blob.body == content, "the blob is not what was uploaded");
    let methods: Vec<(String, bool)> = proxy
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.held))
        .collect();
    let expected = [
        ("POST", false),
        ("PATCH", true),
        ("PUT", false),
        ("POST", false),
        ("PUT", true),
        ("GET", false),
    ]
    .map(|(m, held)| (m.to_owned(), held));
    assert_eq!(methods, expected);
}

/// What a push held mid-layer across `wharf read-only on --wait` gave.
struct HeldPush {
    /// The held push.
    push: Outcome,
    /// The state while the push was held.
    draining: Value,
    /// The state once `--wait` returned.
    read_only: Value,
}

/// Releases the proxy's hold when dropped: a failed assertion must not leave a client held
/// (and the test waiting for it) forever.
struct ReleaseOnExit<'a>(&'a HoldingProxy);

impl Drop for ReleaseOnExit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Runs `push` with the proxy told to hold the next upload body after `hold_after` bytes; once
/// it is held, `wharf read-only on --wait` takes the hold (in the background); while the
/// registry drains, with the push held, `denied()` must fail with the read-only message (a push
/// begun after the hold) and `--wait` must not have returned; then the body is released, the
/// push must succeed, and `--wait` must return with read-only in effect.
fn push_across_a_hold(
    session: &Session,
    proxy: &HoldingProxy,
    hold_after: u64,
    push: impl FnOnce() -> Outcome + Send,
    denied: impl FnOnce() -> Outcome,
) -> HeldPush {
    proxy.hold_next_upload_body(hold_after);
    let (push, draining, waited, repository) = std::thread::scope(|scope| {
        let _release = ReleaseOnExit(proxy);
        let pushing = scope.spawn(push);
        let held = proxy.wait_for_hold(COMMAND_TIMEOUT, || pushing.is_finished());
        let Some(held) = held else {
            let outcome = pushing.join().unwrap();
            panic!("the push never sent a body the proxy could hold:\n{outcome}");
        };
        eprintln!(
            "holding {} {} after {} bytes",
            held.method, held.target, held.forwarded
        );
        // `/v2/<repository>/blobs/`: what the held push's requests have in common.
        let repository = held.target.split("/blobs/").next().unwrap().to_owned() + "/";
        let waiting = scope.spawn(|| {
            let args = [
                "read-only",
                "on",
                "--reason",
                HOLD_REASON,
                "--wait",
                "--timeout",
                "2m",
                "--url",
                &session.server.url,
            ];
            let answer = support::wharf(&session.server.config_file, &args);
            (answer, Instant::now())
        });
        // The drain cannot end while the body is held: this waits for the hold to be taken.
        wait_until("the registry to drain", Duration::from_secs(60), || {
            waiting.is_finished() || state(session)["effective"] == "draining"
        });
        let draining = state(session);
        assert!(
            !waiting.is_finished(),
            "`read-only on --wait` returned while a push was held:\n{draining:#}"
        );
        assert!(proxy.holding());

        let refused = denied();
        assert!(
            !refused.success() && refused.stderr.contains(DENIED),
            "a push begun after the hold should be refused with the read-only message:\n{refused}\n\
             --- last requests Wharf answered ---\n{}",
            session.request_tail(20)
        );
        assert!(
            !waiting.is_finished(),
            "`read-only on --wait` returned while a push was held"
        );

        let released = Instant::now();
        proxy.release();
        let push = pushing.join().unwrap();
        let pushed = Instant::now();
        let (waited, returned) = waiting.join().unwrap();
        eprintln!(
            "released the body; the push exited after {:.2?}, `--wait` returned after {:.2?}",
            pushed - released,
            returned.saturating_duration_since(released)
        );
        (push, draining, waited, repository)
    });
    eprintln!(
        "the held push's requests from the hold on:\n{}",
        proxy.requests_after_hold(&repository)
    );
    assert!(
        push.success(),
        "the push under way at the hold failed:\n{push}\n--- last requests Wharf answered ---\n{}",
        session.request_tail(40)
    );
    let (code, stdout, stderr) = waited;
    assert_eq!(code, 0, "wharf read-only on --wait:\n{stdout}{stderr}");
    assert!(stdout.contains("registry: read-only"), "{stdout}");

    assert_eq!(draining["effective"], "draining", "{draining:#}");
    assert_eq!(draining["desired"], "read-only", "{draining:#}");
    assert_eq!(draining["read_only_in_effect"], false, "{draining:#}");
    assert_eq!(draining["replicas"][0]["mode"], "draining", "{draining:#}");
    assert_eq!(draining["holds"][0]["name"], "admin", "{draining:#}");
    assert_eq!(draining["holds"][0]["reason"], HOLD_REASON, "{draining:#}");

    let read_only = state(session);
    assert_eq!(read_only["effective"], "read-only", "{read_only:#}");
    assert_eq!(read_only["read_only_in_effect"], true, "{read_only:#}");
    let last = &read_only["last_transition"];
    assert_eq!(last["from"], "draining", "{read_only:#}");
    assert_eq!(last["to"], "read-only", "{read_only:#}");
    assert!(last["drain_ms"].is_u64(), "{read_only:#}");
    assert!(
        last["pushes_completed"].as_u64() >= Some(1),
        "the push held at the hold should count as completed:\n{read_only:#}"
    );
    assert_eq!(last["pushes_cut_off"], 0, "{read_only:#}");
    assert_eq!(last["cancelled_writes"], 0, "{read_only:#}");
    HeldPush {
        push,
        draining,
        read_only,
    }
}

/// A multi-layer image push by `program`, held mid-layer by the proxy while `wharf read-only on
/// --wait` takes the hold, completes: `--wait` returns only after it, the tag pulls back
/// byte-identical, a push to another repository begun during the drain and one of another tag
/// once read-only are refused with the read-only message, and the transition counts one push
/// completed and none cut off.
fn a_push_held_mid_layer_completes(program: Program) {
    let fixture = oci_image();
    let session = Session::start_with(DRAIN_FOR_PUSHES);
    let proxy = HoldingProxy::start(&session.server.address);
    let pusher = Pusher::new(program, &session, fixture, &proxy.address);
    let mut digest = None;
    let held = push_across_a_hold(
        &session,
        &proxy,
        HOLD_AFTER,
        || {
            let (outcome, pushed) = pusher.push("held:v1");
            digest = pushed;
            outcome
        },
        || pusher.push("during:v1").0,
    );
    let digest = digest.unwrap_or_else(|| panic!("no digest:\n{}", held.push));
    eprintln!(
        "{program:?}: drained in {} ms ({} uploads open while held), {} pushes completed",
        held.read_only["last_transition"]["drain_ms"],
        held.draining["uploads_open"],
        held.read_only["last_transition"]["pushes_completed"]
    );
    pusher.assert_pushed("held:v1", &digest);

    // Read-only now: another tag of the same image is refused at its manifest.
    let (again, _) = pusher.push("held:v2");
    assert!(
        !again.success() && again.stderr.contains(DENIED),
        "a push once read-only should be refused with the read-only message:\n{again}"
    );
    assert_eq!(session.tags("held"), ["v1"]);
    let missing = session.fails_with(
        &session.clients,
        "skopeo",
        &["inspect", "--raw", &session.docker("during:v1")],
    );
    assert!(
        missing.stderr.contains("manifest unknown") || missing.stderr.contains("name unknown"),
        "{missing}"
    );
    session.assert_fsck_clean();
}

/// `skopeo copy` of a multi-layer image held mid-layer at the hold completes.
#[test]
fn skopeo_push_under_way_when_read_only_is_switched_on_finishes() {
    a_push_held_mid_layer_completes(Program::Skopeo);
}

/// `podman push` of a multi-layer image held mid-layer at the hold completes.
#[test]
fn podman_push_under_way_when_read_only_is_switched_on_finishes() {
    a_push_held_mid_layer_completes(Program::Podman);
}

/// `buildah push` of a multi-layer image held mid-layer at the hold completes.
#[test]
fn buildah_push_under_way_when_read_only_is_switched_on_finishes() {
    a_push_held_mid_layer_completes(Program::Buildah);
}

/// `docker push` of a multi-layer image held mid-layer at the hold completes.
#[test]
fn docker_push_under_way_when_read_only_is_switched_on_finishes() {
    a_push_held_mid_layer_completes(Program::Docker);
}

/// `podman manifest push --all` of two platforms, held inside the first platform's layer at
/// the hold, completes with its index: the rest of its images go by digest and the index by
/// tag during the drain, and the index pulls back (`skopeo copy --all`) byte for byte.
#[test]
fn multi_arch_push_under_way_when_read_only_is_switched_on_finishes_with_its_index() {
    let [amd64, arm64] = platform_images();
    let session = Session::start_with(DRAIN_FOR_PUSHES);
    let proxy = HoldingProxy::start(&session.server.address);
    let pusher = Clients::new(
        &session.path("pusher"),
        &[&proxy.address, &session.server.address],
    );
    let list = "localhost/wharf-test/list:v1";
    session.ok_with(&pusher, "podman", &["manifest", "create", list]);
    for (fixture, arch) in [(amd64, "amd64"), (arm64, "arm64")] {
        let local = format!("localhost/wharf-test/platform:{arch}");
        let to = format!("containers-storage:{local}");
        session.copy_with(&pusher, &[], &dir(&fixture.dir), &to);
        let child = format!("containers-storage:{local}");
        session.ok_with(&pusher, "podman", &["manifest", "add", list, &child]);
    }
    let pushed = session.path("list.digest");
    let target = format!("docker://{}/wharf/multi:v1", proxy.address);
    let later = format!("docker://{}/wharf/later:v1", proxy.address);
    // The platforms' layers are 50 kB: held well inside the first one.
    let held = push_across_a_hold(
        &session,
        &proxy,
        20_000,
        || {
            let args = [
                "manifest",
                "push",
                "--quiet",
                "--all",
                "--format",
                "oci",
                "--digestfile",
                s(&pushed),
                list,
                &target,
            ];
            pusher.run("podman", &args)
        },
        || pusher.run("skopeo", &["copy", "--quiet", &dir(&amd64.dir), &later]),
    );
    let requests = proxy.requests();
    let by_digest = requests
        .iter()
        .filter(|r| r.holds_before > 0 && r.method == "PUT")
        .filter(|r| r.target.contains("/manifests/sha256:"))
        .count();
    // Both images' manifests went by digest during the drain (podman copies the images one
    // after the other), and the push went on to its index.
    assert_eq!(
        by_digest,
        2,
        "the images' manifests should have been put by digest after the hold:\n{}",
        proxy.requests_after_hold("/wharf/multi/")
    );

    let raw = session.raw_manifest("multi:v1");
    assert_eq!(
        sha256(&raw),
        digest_file_of(&pushed, &held.push),
        "the index served is not the one pushed"
    );
    assert_eq!(
        json(&raw)["mediaType"],
        OCI_INDEX,
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let copy = session.path("index-copy");
    session.copy_with(
        &session.more_clients("puller"),
        &["--all", "--preserve-digests"],
        &session.docker("multi:v1"),
        &dir(&copy),
    );
    assert_dir_list_copy(&copy, &raw, &[amd64, arm64], OCI_MANIFEST, true);
    session.assert_fsck_clean();
}

/// A client that keeps opening uploads (a POST every 100 ms in the repository of an upload it
/// had going at the hold) keeps its push going only until `drain.timeout`: then it is cut off,
/// the registry is read-only, the transition counts it, and its writes are refused with `405`
/// and `DENIED`.
#[test]
fn a_client_that_keeps_opening_uploads_is_cut_off_at_the_drain_timeout() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    // The grace outlasts the timeout: only the timeout can end this drain.
    let session = Session::start_with("drain:\n  timeout: 2s\n  push_grace: 10s\n");
    let uploads = "/v2/wharf/straggler/blobs/uploads/";
    let mut http = HttpClient::connect(&session.server.address);
    let opened = http.send("POST", uploads, HttpBody::None);
    assert_eq!(opened.status, 202, "{opened:?}");
    let location = opened.header("location").unwrap().to_owned();
    let patched = http.send("PATCH", &location, HttpBody::Bytes(&[7; 1000]));
    assert_eq!(patched.status, 202, "{patched:?}");

    let out = read_only_command(&session, &["on", "--reason", HOLD_REASON]);
    let taken = Instant::now();
    assert!(out.contains("registry: draining"), "{out}");

    // (time since the hold, status, body) of every write of the loop.
    let answers: Arc<Mutex<Vec<(Duration, u16, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = |answers: &Mutex<Vec<(Duration, u16, String)>>| {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status, _)| *status == 405)
            .count()
    };
    let in_effect = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let answer = http.send("POST", uploads, HttpBody::None);
                answers
                    .lock()
                    .unwrap()
                    .push((taken.elapsed(), answer.status, answer.text()));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        struct StopOnExit<'a>(&'a AtomicBool);
        impl Drop for StopOnExit<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnExit(&stop);
        wait_until("read-only in effect", Duration::from_secs(2 + 10), || {
            state(&session)["read_only_in_effect"] == true
        });
        let in_effect = taken.elapsed();
        wait_until("three writes refused", Duration::from_secs(30), || {
            refused(&answers) >= 3
        });
        in_effect
    });
    let answers = Arc::into_inner(answers).unwrap().into_inner().unwrap();
    let listing: Vec<String> = answers
        .iter()
        .map(|(at, status, _)| format!("{:>5} ms: {status}", at.as_millis()))
        .collect();
    eprintln!(
        "read-only in effect {:.2?} after the hold; the loop's answers:\n{}",
        in_effect,
        listing.join("\n")
    );
    let first_refused = answers.iter().position(|(_, status, _)| *status == 405);
    let (admitted, after) = answers.split_at(first_refused.unwrap());
    assert!(
        admitted.len() >= 5 && admitted.iter().all(|(_, status, _)| *status == 202),
        "the loop's uploads should be admitted while the drain lasts:\n{}",
        listing.join("\n")
    );
    for (at, status, body) in after {
        assert_eq!(*status, 405, "at {at:?}: {body}");
        let error = &json(body.as_bytes())["errors"][0];
        assert_eq!(error["code"], "DENIED", "{body}");
        assert_eq!(
            error["message"].as_str(),
            Some(&DENIED["denied: ".len()..]),
            "{body}"
        );
    }
    // The upload it had open at the hold is refused too.
    let patched = http.send("PATCH", &location, HttpBody::Bytes(&[7; 1000]));
    assert_eq!(patched.status, 405, "{patched:?}");

    let read_only = state(&session);
    let last = &read_only["last_transition"];
    assert_eq!(last["from"], "draining", "{read_only:#}");
    assert_eq!(last["to"], "read-only", "{read_only:#}");
    assert!(
        last["drain_ms"].as_u64() >= Some(2000),
        "the drain should last until its timeout:\n{read_only:#}"
    );
    assert!(
        last["pushes_cut_off"].as_u64() >= Some(1),
        "the loop's push should count as cut off:\n{read_only:#}"
    );
    assert_eq!(last["pushes_completed"], 0, "{read_only:#}");
}

// ---------------------------------------------------------------------------------------------
// Replicas behind a load balancer
// ---------------------------------------------------------------------------------------------

/// podman pushes and skopeo pulls through nginx, round robin over three replicas on one
/// PostgreSQL database and one data folder: consecutive requests of one push land on different
/// replicas (each serves some of the push's writes), the image comes back byte-identical through
/// the balancer and from each replica directly, and `wharf fsck` is clean.
#[test]
fn podman_and_skopeo_push_and_pull_through_nginx_in_front_of_three_replicas() {
    through_nginx_in_front_of_three_replicas(oci_image(), |_| String::new());
}

/// The same with a 300 MiB layer and every blob in S3 (s3s-fs, signatures checked, 5 MiB
/// parts), each replica with a data folder of its own: an upload's `POST`, `PATCH` (podman
/// sends a layer in one) and `PUT` land on different replicas, which carry one multipart upload
/// between them, and the layer streams back through any of them.
#[test]
fn podman_and_skopeo_push_and_pull_a_300_mib_layer_through_nginx_with_blobs_in_s3() {
    through_nginx_in_front_of_three_replicas(large_image(), |folder| {
        support::s3_storage_yaml(folder, &format!("nginx-{}", std::process::id()))
    });
}

/// An image with a 300 MiB layer (random bytes: compression keeps it as large).
fn large_image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        build_image(
            "large-oci",
            "oci",
            &[("/large.bin", 300 << 20), ("/small.bin", 100_000)],
            &["--arch", "amd64", "--os", "linux"],
        )
    })
}

/// Pushes `fixture` with podman through nginx in front of three replicas on one PostgreSQL
/// database, whose storage is `storage(folder)` (more `storage` lines; none: one shared data
/// folder), and pulls it back with skopeo through nginx and from each replica.
fn through_nginx_in_front_of_three_replicas(
    fixture: &'static Image,
    storage: impl Fn(&Path) -> String,
) {
    use support::nginx::Nginx;
    use wharf_metadata_postgres::testing::TestDatabase;

    preflight();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime
        .block_on(TestDatabase::create())
        .expect("a PostgreSQL database");
    let folder = tempfile::Builder::new()
        .prefix("wharf-replicas-")
        .tempdir()
        .unwrap();
    let storage = storage(folder.path());
    let yaml = format!(
        "{storage}log:\n  level: tower_http=debug,info\nmetadata:\n  url: {:?}\n",
        database.url()
    );
    // One data folder for all, unless the blobs are elsewhere (S3: nothing shared on disk).
    let data = |i: usize| match storage.is_empty() {
        true => folder.path().join("data"),
        false => folder.path().join(format!("data-{i}")),
    };
    let replicas: Vec<WharfServer> = (0..3)
        .map(|i| {
            WharfServer::start_config(&folder.path().join(format!("replica-{i}")), &data(i), &yaml)
        })
        .collect();
    let upstreams: Vec<&str> = replicas.iter().map(|r| r.address.as_str()).collect();
    let nginx = Nginx::start(&folder.path().join("nginx"), &upstreams);
    let clients = Clients::new(&folder.path().join("clients"), &[&nginx.address]);

    let local = "localhost/wharf-test/behind-nginx:latest";
    let imported = clients.run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &dir(&fixture.dir),
            &format!("containers-storage:{local}"),
        ],
    );
    assert!(imported.success(), "{imported}");
    let target = format!("docker://{}/wharf/behind-nginx:v1", nginx.address);
    let pushed = clients.run("podman", &["push", "--quiet", local, &target]);
    assert!(pushed.success(), "{pushed}");

    // Every replica served part of the push.
    for replica in &replicas {
        replica.log_barrier();
        let writes = served_requests(&replica.log())
            .into_iter()
            .filter(|r| {
                r.method != "GET" && r.method != "HEAD" && r.path.contains("/wharf/behind-nginx/")
            })
            .count();
        assert!(
            writes > 0,
            "replica {} served none of the push",
            replica.address
        );
    }

    // Back through the balancer, and from each replica directly, byte for byte.
    let raw = {
        let out = clients.run("skopeo", &["inspect", "--raw", &target]);
        assert!(out.success(), "{out}");
        out.stdout
    };
    let copy = folder.path().join("copy");
    let pulled = clients.run(
        "skopeo",
        &["copy", "--quiet", EXACT[0], &target, &dir(&copy)],
    );
    assert!(pulled.success(), "{pulled}");
    assert_dir_copy(&copy, &raw, fixture);
    for replica in &replicas {
        let direct = Clients::new(
            &folder
                .path()
                .join(format!("direct-{}", replica.address.replace(':', "-"))),
            &[&replica.address],
        );
        let copy = folder
            .path()
            .join(format!("copy-{}", replica.address.replace(':', "-")));
        let source = format!("docker://{}/wharf/behind-nginx:v1", replica.address);
        let pulled = direct.run(
            "skopeo",
            &["copy", "--quiet", EXACT[0], &source, &dir(&copy)],
        );
        assert!(pulled.success(), "{pulled}");
        assert_dir_copy(&copy, &raw, fixture);
    }
    let (code, stdout, stderr) = support::wharf(&replicas[0].config_file, &["fsck"]);
    assert_eq!(code, 0, "wharf fsck found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("no problems found"), "{stdout}\n{stderr}");
    drop(nginx);
    drop(replicas);
    drop(database);
}
