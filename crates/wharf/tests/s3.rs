//! `wharf serve` with its blobs in S3 when S3 fails: an S3 server of the test's own (s3s-fs)
//! stopped under the running registry and started again, S3 throttling (`503 SlowDown`, from a
//! loopback proxy in front of the real s3s-fs), and the startup check's one line on standard
//! error when the endpoint cannot be reached or the secret is wrong.
//!
//! These need the S3 servers `scripts/s3 start` starts (they fail, saying so, without them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::proxy::HoldingProxy;
use support::{WharfServer, wharf_binary};
use wharf_core::digest::Digest;

use support::s3_variable as var;

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An s3s-fs of the test's own, with a bucket `wharf`, which the test stops and starts again on
/// the same port and folder.
struct PrivateS3 {
    child: Option<Child>,
    port: u16,
    root: PathBuf,
    access: String,
    secret: String,
}

impl PrivateS3 {
    fn start(root: &Path) -> PrivateS3 {
        std::fs::create_dir_all(root.join("wharf")).unwrap();
        let mut s3 = PrivateS3 {
            child: None,
            port: free_port(),
            root: root.to_owned(),
            access: "private-access".to_owned(),
            secret: "private-secret-never-shown".to_owned(),
        };
        s3.resume();
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it listens.
    fn resume(&mut self) {
        let child = Command::new(var("S3_TEST_S3S_FS"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access, "--secret-key", &self.secret])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        // Polls for the listening socket (the server says nothing when it is ready).
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("s3s-fs did not listen on port {}", self.port);
    }

    /// Stops the server (SIGKILL, and waits for it to be gone): nothing listens on its port.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `storage` keys after `data_dir` for blobs in bucket `wharf` at `endpoint`, the keys in
/// files in `dir`.
/// Blob storage that is unavailable: `503`, `Retry-After`, `UNAVAILABLE` and a message that
/// says so.
async fn assert_storage_unavailable(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    assert_eq!(response.headers()["retry-after"], "5", "{what}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
    assert_eq!(
        body["errors"][0]["message"],
        "the registry's blob storage is unreachable or throttling requests, so the request could \
         not be served; retry in a moment",
        "{what}"
    );
}

/// `POST ?digest=` with the whole blob.
async fn push(http: &reqwest::Client, url: &str, blob: &[u8]) -> reqwest::Response {
    let digest = Digest::sha256_of(blob);
    http.post(format!("{url}/v2/s3/app/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        // A push refused before its body was read closes the connection: not one to reuse.
        .header("connection", "close")
        .body(blob.to_vec())
        .send()
        .await
        .unwrap()
}

async fn pull(http: &reqwest::Client, url: &str, blob: &[u8]) -> reqwest::Response {
    let digest = Digest::sha256_of(blob);
    http.get(format!("{url}/v2/s3/app/blobs/{digest}"))
        .send()
        .await
        .unwrap()
}

async fn assert_pulls(http: &reqwest::Client, url: &str, blob: &[u8]) {
    let response = pull(http, url, blob).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), blob);
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn while_s3_is_down_requests_get_503_and_the_registry_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = PrivateS3::start(&dir.path().join("s3"));
    let yaml =
        support::s3_storage_yaml_at(dir.path(), &s3.endpoint(), "down", &s3.access, &s3.secret);
    let server = WharfServer::start(&dir.path().join("data"), &yaml);
    let http = reqwest::Client::new();
    let (before, during) = (blob(1, 1000), blob(2, 6 * 1024 * 1024));
    assert_eq!(push(&http, &server.url, &before).await.status(), 201);

    s3.stop();
    assert_storage_unavailable(pull(&http, &server.url, &before).await, "a pull").await;
    // A push of more than a part: a multipart upload that cannot be created.
    assert_storage_unavailable(push(&http, &server.url, &during).await, "a push").await;
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "pulls of manifests are still served");
    let ready = ready.text().await.unwrap();
    assert!(
        ready.contains("because the blob storage is unreachable or throttling"),
        "{ready}"
    );
    assert!(!server.log().contains(&s3.secret), "{}", server.log());

    s3.resume();
    assert_pulls(&http, &server.url, &before).await;
    let digest = Digest::sha256_of(&during);
    let head = http
        .head(format!("{}/v2/s3/app/blobs/{digest}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404, "the push that failed left nothing");
    assert_eq!(push(&http, &server.url, &during).await.status(), 201);
    assert_pulls(&http, &server.url, &during).await;
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn throttling_is_retried_and_when_it_goes_on_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = var("S3_TEST_ENDPOINT");
    let proxy = HoldingProxy::start(endpoint.trim_start_matches("http://"));
    let yaml = support::s3_storage_yaml_at(
        dir.path(),
        &format!("http://{}", proxy.address),
        "slow",
        &var("S3_TEST_ACCESS_KEY_ID"),
        &var("S3_TEST_SECRET_ACCESS_KEY"),
    );
    let server = WharfServer::start(&dir.path().join("data"), &yaml);
    let http = reqwest::Client::new();

    // A few SlowDowns are retried inside the registry: the client sees nothing of them.
    let (small, large) = (blob(3, 1000), blob(4, 11 * 1024 * 1024));
    proxy.throttle_next(2);
    assert_eq!(push(&http, &server.url, &small).await.status(), 201);
    assert_eq!(proxy.throttled(), 2);
    proxy.throttle_next(2);
    assert_pulls(&http, &server.url, &small).await;
    // A multipart upload of three parts, its first request (the multipart upload's creation, a
    // POST: S3 did nothing when it throttles) answered SlowDown three times.
    proxy.throttle_next(3);
    assert_eq!(push(&http, &server.url, &large).await.status(), 201);
    assert_eq!(proxy.throttled(), 7);
    assert_pulls(&http, &server.url, &large).await;

    // S3 that keeps throttling: a 503 that says so, and no half-written blob.
    proxy.throttle_next(usize::MAX);
    let throttled_before = proxy.throttled();
    assert_storage_unavailable(pull(&http, &server.url, &small).await, "a pull").await;
    let other = blob(5, 2000);
    assert_storage_unavailable(push(&http, &server.url, &other).await, "a push").await;
    assert!(proxy.throttled() > throttled_before + 2, "retried first");

    proxy.stop_throttling();
    assert_pulls(&http, &server.url, &small).await;
    let head = http
        .head(format!(
            "{}/v2/s3/app/blobs/{}",
            server.url,
            Digest::sha256_of(&other)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
}

/// `wharf serve`'s standard error when the startup check fails, without the line every start
/// logs first (the open-file limit).
fn start_error(dir: &Path, storage_yaml: &str) -> String {
    let config = dir.join("wharf.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\nstorage:\n  data_dir: {}\n{storage_yaml}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let output = Command::new(wharf_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    stderr
        .lines()
        .filter(|line| !line.contains(" INFO wharf_server::connections: open-file limit: "))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn a_failed_startup_check_prints_one_line_naming_the_bucket_and_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let yaml = support::s3_storage_yaml_at(dir.path(), &nowhere, "p", "id", "secret-never-shown");
    assert_eq!(
        start_error(dir.path(), &yaml),
        "wharf: cannot open the registry: S3 bucket \"wharf\" (prefix \"p\"): cannot list \
         objects: S3 cannot be reached (Connection refused (os error 111)); check \
         storage.s3.endpoint and the network\n"
    );

    let secret = "a-wrong-secret-never-shown";
    let yaml = support::s3_storage_yaml_at(
        dir.path(),
        &var("S3_TEST_ENDPOINT"),
        "p",
        &var("S3_TEST_ACCESS_KEY_ID"),
        secret,
    );
    assert_eq!(
        start_error(dir.path(), &yaml),
        "wharf: cannot open the registry: S3 bucket \"wharf\" (prefix \"p\"): cannot list \
         objects: access denied (S3 answered 403: SignatureDoesNotMatch); check the access \
         key, its secret and the bucket's policy\n"
    );
}

/// A short prefix of its own for each run (the shared S3 servers keep what earlier runs wrote).
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}{:08x}", nanos ^ std::process::id())
}

/// Pushes an image of two layers and a config, tagged `v1`; returns its manifest and blobs.
async fn push_image(http: &reqwest::Client, url: &str, seed: u8) -> (Vec<u8>, Vec<Vec<u8>>) {
    let blobs = vec![
        blob(seed, 1000),
        blob(seed + 1, 6 * 1024 * 1024),
        blob(seed + 2, 300),
    ];
    for content in &blobs {
        assert_eq!(push(http, url, content).await.status(), 201);
    }
    let descriptor = |media_type: &str, content: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": Digest::sha256_of(content).to_string(),
            "size": content.len(),
        })
    };
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &blobs[2]),
        "layers": [descriptor(layer, &blobs[0]), descriptor(layer, &blobs[1])],
    }))
    .unwrap();
    let response = http
        .put(format!("{url}/v2/s3/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    (manifest, blobs)
}

fn wharf_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = support::wharf(config, args);
    assert_eq!(code, 0, "wharf {args:?}: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A backup into a bucket's prefix, twice (the second copies nothing), restored into another
/// prefix and served from there: on s3s-fs, and on moto.
async fn backup_into_a_bucket_and_restore(endpoint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (access, secret) = (
        var("S3_TEST_ACCESS_KEY_ID"),
        var("S3_TEST_SECRET_ACCESS_KEY"),
    );
    let registry =
        support::s3_storage_yaml_at(dir.path(), endpoint, &unique("r"), &access, &secret);
    let server = WharfServer::start(&dir.path().join("data"), &registry);
    let http = reqwest::Client::new();
    let (manifest, blobs) = push_image(&http, &server.url, 10).await;
    let to = format!("s3://wharf/{}", unique("b"));

    // A first backup killed before it wrote backup.json (every blob is there): nothing in the
    // prefix passes for a backup.
    let dying = Command::new(wharf_binary())
        .arg("--config")
        .arg(&server.config_file)
        .args(["backup", "create", "--url", &server.url, "--to", &to])
        .env("WHARF_FAILPOINT", "backup-finishing")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(dying.status.code(), None, "killed by the failpoint's abort");
    let elsewhere = dir.path().join("never");
    let (code, _, stderr) = support::wharf(
        &server.config_file,
        &[
            "restore",
            "--from",
            &to,
            "--data",
            elsewhere.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds an incomplete backup: it was interrupted"),
        "{stderr}"
    );
    assert!(!elsewhere.exists());
    let (code, stdout, _) = support::wharf(&server.config_file, &["backup", "verify", &to]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("holds an incomplete backup"), "{stdout}");

    // Run again, it completes the backup, copying nothing the killed one had placed.
    let first = wharf_json(
        &server.config_file,
        &[
            "backup",
            "create",
            "--url",
            &server.url,
            "--to",
            &to,
            "--json",
        ],
    );
    assert_eq!(first["copy"]["copied"], 0, "{first}");
    assert_eq!(first["copy"]["reused"], 3, "{first}");
    // One blob more, then a second backup into the same prefix: only it is copied.
    let mut blobs = blobs;
    blobs.push(blob(20, 2000));
    assert_eq!(push(&http, &server.url, &blobs[3]).await.status(), 201);
    let second = wharf_json(
        &server.config_file,
        &[
            "backup",
            "create",
            "--url",
            &server.url,
            "--to",
            &to,
            "--json",
        ],
    );
    assert_eq!(second["copy"]["copied"], 1, "{second}");
    assert_eq!(second["copy"]["reused"], 3, "{second}");
    let verified = wharf_json(&server.config_file, &["backup", "verify", &to, "--json"]);
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["blobs_checked"], 4, "{verified}");
    let total: usize = blobs.iter().map(Vec::len).sum();
    assert!(
        verified["bytes_checked"].as_u64().unwrap() >= total as u64,
        "every blob hashed: {verified}"
    );

    // Bad destinations: refused in one line, nothing written.
    let (code, _, stderr) = support::wharf(
        &server.config_file,
        &["backup", "create", "--to", "s3://No_Bucket/x"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a bucket's prefix"), "{stderr}");
    let own = registry
        .lines()
        .find_map(|l| l.trim().strip_prefix("prefix: "))
        .unwrap()
        .to_owned();
    let (code, _, stderr) = support::wharf(
        &server.config_file,
        &["backup", "create", "--to", &format!("s3://wharf/{own}")],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("overlaps the registry's own blobs"),
        "{stderr}"
    );
    drop(server);

    // Restored into a prefix of its own, with a data folder of its own.
    let restored_dir = dir.path().join("restored");
    std::fs::create_dir_all(&restored_dir).unwrap();
    let restored_yaml =
        support::s3_storage_yaml_at(&restored_dir, endpoint, &unique("t"), &access, &secret);
    let config = restored_dir.join("restore.yaml");
    let data = restored_dir.join("data");
    std::fs::write(
        &config,
        format!("storage:\n  data_dir: {}\n{restored_yaml}", data.display()),
    )
    .unwrap();
    let report = wharf_json(
        &config,
        &[
            "restore",
            "--from",
            &to,
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(report["blobs"], 4, "{report}");
    assert_eq!(
        report["fsck"]["problems"],
        serde_json::json!([]),
        "{report}"
    );
    let server = WharfServer::start(&data, &restored_yaml);
    let pulled = http
        .get(format!("{}/v2/s3/app/manifests/v1", server.url))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap(), manifest);
    for content in &blobs {
        assert_pulls(&http, &server.url, content).await;
    }

    // A blob of the backup replaced by other bytes of the same size: a quick check (sizes)
    // passes, the full one names the blob.
    let (bucket, prefix) = to["s3://".len()..].split_once('/').unwrap();
    let backup = wharf_storage::S3Folder::connect(&wharf_storage::S3Settings {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: Some(endpoint.to_owned()),
        path_style: true,
        allow_http: true,
        credentials: Some(wharf_storage::S3Credentials {
            access_key_id: access.clone(),
            secret_access_key: secret.clone(),
        }),
        part_size: 5 << 20,
        redirect: None,
    })
    .await
    .unwrap();
    let damaged = Digest::sha256_of(&blobs[3]);
    let key = format!("blobs/sha256/{}/{}", &damaged.hex()[..2], damaged.hex());
    assert!(backup.size(&key).await.unwrap().is_some(), "{key}");
    backup
        .put(&key, vec![b'x'; blobs[3].len()].into())
        .await
        .unwrap();
    let quick = wharf_json(&config, &["backup", "verify", &to, "--quick", "--json"]);
    assert_eq!(quick["problems"], serde_json::json!([]), "{quick}");
    let (code, stdout, stderr) = support::wharf(&config, &["backup", "verify", &to, "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let full: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        full["problems"],
        serde_json::json!([format!(
            "blob {damaged} holds content with digest {}",
            Digest::sha256_of(&vec![b'x'; blobs[3].len()])
        )]),
        "{full}"
    );
}

#[tokio::test]
async fn a_backup_into_a_bucket_is_incremental_and_restores_on_s3s_fs() {
    backup_into_a_bucket_and_restore(&var("S3_TEST_ENDPOINT")).await;
}

#[tokio::test]
async fn a_backup_into_a_bucket_is_incremental_and_restores_on_moto() {
    backup_into_a_bucket_and_restore(&var("S3_MOTO_TEST_ENDPOINT")).await;
}

/// Starts a request whose body the test holds open after `first`, and returns the sender that
/// would feed the rest (the request is in flight until the server dies).
async fn held_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    first: Vec<u8>,
) -> tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = http
        .request(method, url)
        .body(reqwest::Body::wrap_stream(stream));
    tokio::spawn(request.send());
    sender.send(Ok(bytes::Bytes::from(first))).await.unwrap();
    sender
}

/// An upload's location with `digest=` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// `PATCH`es `content` to an upload session at `location`; returns the next location.
async fn patch(http: &reqwest::Client, url: &str, location: &str, content: &[u8]) -> String {
    let response = http
        .patch(format!("{url}{location}"))
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn open_session(http: &reqwest::Client, url: &str) -> String {
    let response = http
        .post(format!("{url}/v2/s3/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The multipart uploads open under `prefix` in moto's bucket (moto checks no signatures, and
/// lists them; s3s-fs answers 501).
async fn open_multipart_uploads(moto: &str, prefix: &str) -> usize {
    let listing = reqwest::get(format!("{moto}/wharf?uploads&prefix={prefix}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    listing.matches("<UploadId>").count()
}

/// `kill -9` with uploads of every shape in flight on S3 (moto): a monolithic push past its
/// first part, a chunked one whose recorded part and staged bytes a held PATCH is crossing,
/// one completing (its PUT held mid-body), beside pushes that completed. After the restart
/// every completed tag pulls byte-identical, nothing cut off is visible, fsck is clean, and
/// once the uploads expire no multipart upload is left open in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_uploads_of_every_shape_on_s3() {
    const MIB: usize = 1024 * 1024;
    let moto = var("S3_MOTO_TEST_ENDPOINT");
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("k");
    let yaml =
        support::s3_storage_yaml_at(dir.path(), &moto, &prefix, "moto", "moto-checks-no-secret");
    let data = dir.path().join("data");
    let mut server = WharfServer::start(&data, &yaml);
    let http = reqwest::Client::new();
    let url = server.url.clone();

    // Completed before the crash: an image (monolithic blobs, one past a part) and a blob
    // pushed in chunks across parts.
    let (manifest, blobs) = push_image(&http, &url, 30).await;
    let chunked = blob(40, 12 * MIB);
    let mut location = open_session(&http, &url).await;
    for piece in chunked.chunks(4 * MIB) {
        location = patch(&http, &url, &location, piece).await;
    }
    let response = http
        .put(format!(
            "{url}{}",
            with_digest(&location, &Digest::sha256_of(&chunked))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    assert_eq!(open_multipart_uploads(&moto, &prefix).await, 0);

    // In flight at the crash. A monolithic push past its first part.
    let whole = blob(50, 11 * MIB);
    let whole_digest = Digest::sha256_of(&whole);
    let _whole = held_request(
        &http,
        reqwest::Method::POST,
        format!("{url}/v2/s3/app/blobs/uploads/?digest={whole_digest}"),
        whole[..6 * MIB].to_vec(),
    )
    .await;
    // A chunked one: one part recorded and 2 MiB staged, a PATCH crossing into the next part.
    let crossing = blob(60, 14 * MIB);
    let crossing_session = open_session(&http, &url).await;
    let crossing_next = patch(&http, &url, &crossing_session, &crossing[..7 * MIB]).await;
    let _crossing = held_request(
        &http,
        reqwest::Method::PATCH,
        format!("{url}{crossing_next}"),
        crossing[7 * MIB..12 * MIB].to_vec(),
    )
    .await;
    // One completing: its PUT carries the last bytes, held before their end.
    let completing = blob(70, 9 * MIB);
    let completing_digest = Digest::sha256_of(&completing);
    let completing_session = open_session(&http, &url).await;
    let completing_next = patch(&http, &url, &completing_session, &completing[..6 * MIB]).await;
    let _completing = held_request(
        &http,
        reqwest::Method::PUT,
        format!("{url}{}", with_digest(&completing_next, &completing_digest)),
        completing[6 * MIB..8 * MIB].to_vec(),
    )
    .await;
    // The monolithic push's multipart upload exists in the bucket (the two chunked sessions'
    // did once their first PATCH filled a part): the crash cuts them all off.
    for _ in 0..600 {
        if open_multipart_uploads(&moto, &prefix).await >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_multipart_uploads(&moto, &prefix).await, 3);
    server.kill();

    let server = WharfServer::start(&data, &yaml);
    let url = server.url.clone();
    let pulled = http
        .get(format!("{url}/v2/s3/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap(), manifest);
    for content in blobs.iter().chain([&chunked]) {
        assert_pulls(&http, &url, content).await;
    }
    for (digest, what) in [
        (&whole_digest, "monolithic"),
        (&completing_digest, "completing"),
    ] {
        let head = http
            .head(format!("{url}/v2/s3/app/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 404, "the cut-off {what} push is not visible");
    }
    // The chunked session holds what was recorded, not the PATCH cut off.
    let status = http
        .get(format!("{url}{crossing_session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(status.headers()["range"], format!("0-{}", 7 * MIB - 1));
    let mut server = server;
    assert!(server.terminate(), "{}", server.log());
    let (code, stdout, stderr) = support::wharf(&server.config_file, &["fsck"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("no problems found"), "{stdout}");

    // Garbage collection once the sessions expired and the orphan is past the grace (run at a
    // time two days on, rather than waiting): no multipart upload is left open.
    let config = wharf_config::Config::load(Some(&server.config_file), []).unwrap();
    let registry = config.open_registry().await.unwrap();
    let report = registry
        .collect_garbage(
            config.gc_settings(),
            wharf_core::time::now_millis() + 2 * 24 * 3_600_000,
        )
        .await
        .unwrap();
    registry.close().await;
    assert_eq!(report.expired_uploads, 3, "{report:?}");
    assert_eq!(
        open_multipart_uploads(&moto, &prefix).await,
        0,
        "{report:?}"
    );
}
