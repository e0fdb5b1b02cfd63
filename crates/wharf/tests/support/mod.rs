//! Running the real `wharf` binary in tests: a server on a free loopback port with its own data
//! folder, stopped (SIGKILL) when dropped unless stopped otherwise.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod certificates;
pub mod nginx;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `wharf` binary built for these tests.
pub fn wharf_binary() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

/// A running `wharf serve`.
pub struct WharfServer {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` (`https://` with TLS)
    pub url: String,
    /// `127.0.0.1:<port>`
    pub address: String,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The configuration file the server was started with.
    pub config_file: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Reads the server's standard error until it closes (when the server exits).
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WharfServer {
    /// Starts `wharf serve` with `data_dir`, on a free port, with `extra_yaml` appended to the
    /// configuration file (sections other than `server` and `storage.data_dir`).
    pub fn start(data_dir: &Path, extra_yaml: &str) -> WharfServer {
        Self::start_on(data_dir, "127.0.0.1:0", extra_yaml)
    }

    /// Like [`WharfServer::start`], on a given address (to restart on the same port).
    pub fn start_on(data_dir: &Path, listen: &str, extra_yaml: &str) -> WharfServer {
        Self::start_with_flags(data_dir, listen, extra_yaml, &[])
    }

    /// Like [`WharfServer::start_on`], with extra `wharf serve` flags.
    pub fn start_with_flags(
        data_dir: &Path,
        listen: &str,
        extra_yaml: &str,
        flags: &[&str],
    ) -> WharfServer {
        Self::start_full(
            &data_dir.with_extension("yaml"),
            data_dir,
            listen,
            extra_yaml,
            flags,
        )
    }

    /// Like [`WharfServer::start`], with the configuration file at `config` (`.yaml` added):
    /// several servers on one data folder (replicas over PostgreSQL) need a file each.
    pub fn start_config(config: &Path, data_dir: &Path, extra_yaml: &str) -> WharfServer {
        Self::start_full(
            &config.with_extension("yaml"),
            data_dir,
            "127.0.0.1:0",
            extra_yaml,
            &[],
        )
    }

    fn start_full(
        config_file: &Path,
        data_dir: &Path,
        listen: &str,
        extra_yaml: &str,
        flags: &[&str],
    ) -> WharfServer {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let config_file = config_file.to_owned();
        std::fs::write(
            &config_file,
            format!(
                "server:\n  listen: {listen}\n  shutdown_grace: 10s\nstorage:\n  data_dir: {}\n{extra_yaml}",
                data_dir.display()
            ),
        )
        .expect("write config");
        let mut child = Command::new(wharf_binary())
            .args(["serve", "--config"])
            .arg(&config_file)
            .args(flags)
            .env_remove("RUST_LOG")
            .env("WHARF_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wharf serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log_writer = log.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let address = line
                    .split("serving on ")
                    .nth(1)
                    .map(|url| url.split_whitespace().next().unwrap_or_default().to_owned());
                // Logged before the start is reported, so the log has the line by then.
                log_writer.lock().unwrap().push(line);
                if let Some(address) = address
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(address);
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wharf serve did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let address = url.split("://").nth(1).unwrap_or_default().to_owned();
        WharfServer {
            child: Some(child),
            url,
            address,
            data_dir: data_dir.to_owned(),
            config_file,
            log,
            reader: Some(reader),
        }
    }

    /// The server's log lines so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Returns once every line the server logged before this call is in [`WharfServer::log`].
    /// Needs request logging (`tower_http=debug`): a marker request is sent, and since the log
    /// is one pipe, read in order, seeing the marker's line means every earlier line was read.
    pub fn log_barrier(&self) {
        use std::io::{Read, Write};
        static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let marker = format!(
            "log-barrier-{}",
            MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut stream =
            std::net::TcpStream::connect(&self.address).expect("connect for a log barrier");
        write!(
            stream,
            "GET /v2/?{marker} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .expect("send the log barrier");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(&marker))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the log barrier never appeared; is request logging (tower_http=debug) on?"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server with SIGKILL (as a crash would) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.finish_log();
    }

    /// Waits until every line the exited server wrote is in the log.
    fn finish_log(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Sends SIGTERM and waits for the server to exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let success = child.wait().map(|status| status.success()).unwrap_or(false);
        self.finish_log();
        success
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for WharfServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `wharf <args>` with the server's configuration file and returns (status, stdout, stderr).
pub fn wharf(config_file: &Path, args: &[&str]) -> (i32, String, String) {
    wharf_with(config_file, args, &[], None)
}

/// Runs `wharf <args>` with the configuration file, extra environment variables and, if given,
/// text on standard input; returns (status, stdout, stderr).
pub fn wharf_with(
    config_file: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    use std::io::Write;
    let mut command = Command::new(wharf_binary());
    command
        .arg("--config")
        .arg(config_file)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run wharf");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("run wharf");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The variable `name`, which `scripts/s3 start` sets for the S3 test servers; a test that needs
/// it fails, with a message saying how to start them, when it is unset.
pub fn s3_variable(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the S3 test servers. Run scripts/test, or \
             start them with: eval \"$(scripts/s3 start /tmp/wharf-s3)\""
        )
    })
}

/// The `storage` lines (after `data_dir`) that keep blobs in the s3s-fs test server under
/// `prefix`, with 5 MiB parts and its keys in files under `dir`.
pub fn s3_storage_yaml(dir: &Path, prefix: &str) -> String {
    s3_storage_yaml_at(
        dir,
        &s3_variable("S3_TEST_ENDPOINT"),
        prefix,
        &s3_variable("S3_TEST_ACCESS_KEY_ID"),
        &s3_variable("S3_TEST_SECRET_ACCESS_KEY"),
    )
}

/// The same on the S3 server at `endpoint` (s3s-fs or moto; its bucket `wharf`), with these
/// keys.
pub fn s3_storage_yaml_at(
    dir: &Path,
    endpoint: &str,
    prefix: &str,
    access: &str,
    secret: &str,
) -> String {
    let (id_file, secret_file) = (dir.join("s3-key-id"), dir.join("s3-secret"));
    std::fs::write(&id_file, access).expect("write the key id");
    std::fs::write(&secret_file, secret).expect("write the secret");
    format!(
        "  backend: s3\n  s3:\n    bucket: wharf\n    prefix: {prefix}\n    endpoint: {endpoint}\n    \
         path_style: true\n    allow_http: true\n    access_key_id_file: {}\n    \
         secret_access_key_file: {}\n    part_size: 5MiB\n",
        id_file.display(),
        secret_file.display(),
    )
}
