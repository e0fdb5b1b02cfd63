//! `TestApp`: a registry served in-process, and helpers to push content to it.
//!
//! Its metadata is in SQLite in the app's data folder, or — when `WHARF_TEST_METADATA=postgres`
//! (`scripts/test` runs this suite a second time so) — in a PostgreSQL database of its own on
//! the server `WHARF_TEST_POSTGRES_URL` names.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wharf_config::Config;
use wharf_core::digest::Digest;
use wharf_metadata_postgres::testing::TestDatabase;
use wharf_registry::Registry;

/// The variable that selects the metadata backend of the suite: `sqlite` (or unset) or
/// `postgres`.
pub const BACKEND_VARIABLE: &str = "WHARF_TEST_METADATA";

/// Whether this run keeps the apps' metadata in PostgreSQL. Any other value than the two is a
/// mistake in the test run, not a reason to fall back to SQLite.
pub fn on_postgres() -> bool {
    match std::env::var(BACKEND_VARIABLE).as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_VARIABLE}={other}: expected sqlite or postgres"),
    }
}

/// Points `config` at a fresh PostgreSQL database when the run is on PostgreSQL; returns it,
/// to be kept as long as the app.
pub async fn metadata_backend(config: &mut Config) -> Option<TestDatabase> {
    if !on_postgres() {
        return None;
    }
    let database = TestDatabase::create()
        .await
        .expect("a PostgreSQL database for the test");
    config.metadata.url = wharf_config::DatabaseUrl(database.url().to_owned());
    Some(database)
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The first superuser's password in registries started with [`TestApp::start_with_auth`].
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A registry running in this process.
pub struct TestApp {
    pub url: String,
    pub http: reqwest::Client,
    pub config: Config,
    /// Basic credentials every request made through [`TestApp::request`] carries.
    pub basic: Option<(String, String)>,
    dir: Option<TempDir>,
    /// The app's PostgreSQL database, when the run is on PostgreSQL (dropped after the app).
    database: Option<TestDatabase>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), wharf_server::ServeError>>>,
}

impl TestApp {
    /// A registry with the default configuration (background gc off, so tests decide).
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// A registry whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        config.storage.fsync = false;
        config.gc.enabled = false;
        let database = metadata_backend(&mut config).await;
        test_storage(&mut config, dir.path());
        adjust(&mut config);
        let mut app = Self::launch(config, Some(dir)).await;
        app.database = database;
        app
    }

    /// A registry with token authentication (`adjust` changes the configuration first), whose
    /// requests carry the first superuser's credentials (`admin`, [`ADMIN_PASSWORD`]).
    pub async fn start_with_auth(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        config.storage.fsync = false;
        config.gc.enabled = false;
        config.auth.mode = wharf_config::AuthMode::Token;
        let database = metadata_backend(&mut config).await;
        test_storage(&mut config, dir.path());
        adjust(&mut config);
        let options = wharf_server::ServeOptions {
            environment: vec![("WHARF_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned())],
            ..Default::default()
        };
        let mut app = Self::launch_with(config, Some(dir), options).await;
        app.basic = Some(("admin".to_owned(), ADMIN_PASSWORD.to_owned()));
        app.database = database;
        app
    }

    /// Makes the following requests carry these Basic credentials (`None`: none).
    pub fn act_as(&mut self, credentials: Option<(&str, &str)>) {
        self.basic = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
    }

    /// A registry configured by a file (which it follows), with `yaml` as the file's content.
    /// Returns the app and the file's path.
    pub async fn start_from_file(yaml: &str) -> (TestApp, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conf").join("wharf.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let data = dir.path().join("data");
        let mut config = Config::default();
        let database = metadata_backend(&mut config).await;
        test_storage(&mut config, dir.path());
        // The URL is quoted: YAML would take `options[search_path]=…` apart.
        let metadata = match &database {
            Some(database) => format!("metadata:\n  url: {:?}\n", database.url()),
            None => String::new(),
        };
        let backend = match config.storage.backend {
            wharf_config::StorageBackend::Filesystem => String::new(),
            wharf_config::StorageBackend::S3 => format!(
                "  backend: s3\n  s3: {}\n",
                serde_json::to_string(&config.storage.s3).unwrap()
            ),
        };
        let yaml = format!(
            "storage:\n  data_dir: {}\n  fsync: false\n{backend}gc:\n  enabled: false\n{metadata}{yaml}",
            data.display()
        );
        std::fs::write(&file, yaml).unwrap();
        let config = Config::load(Some(&file), []).unwrap();
        let options = wharf_server::ServeOptions {
            config_file: Some(file.clone()),
            ..Default::default()
        };
        let mut app = Self::launch_with(config, Some(dir), options).await;
        app.database = database;
        (app, file)
    }

    async fn launch(config: Config, dir: Option<TempDir>) -> TestApp {
        Self::launch_with(config, dir, wharf_server::ServeOptions::default()).await
    }

    async fn launch_with(
        config: Config,
        dir: Option<TempDir>,
        options: wharf_server::ServeOptions,
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(wharf_server::serve_with(
            config.clone(),
            listener,
            shutdown,
            options,
        ));
        TestApp {
            url,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            config,
            basic: None,
            dir,
            database: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the server to shut down (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the server down and waits for it to finish.
    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the server and starts a new one on the same data.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let config = self.config.clone();
        let mut app = Self::launch(config, self.dir.take()).await;
        app.basic = self.basic.take();
        app.database = self.database.take();
        app
    }

    /// A second handle on the registry's data, for maintenance the API does not offer (gc, fsck).
    pub async fn registry(&self) -> Registry {
        self.config.open_registry().await.unwrap()
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.config.storage.data_dir.clone()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.url)
        };
        let request = self.http.request(method, url);
        match &self.basic {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// `PUT /api/v1/state/holds/{name}` with a reason (and the query, such as `wait=5s`).
    pub async fn hold(&self, name: &str, body: Value, query: &str) -> Response {
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.request(Method::PUT, &format!("/api/v1/state/holds/{name}{query}"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Takes a hold and checks it was accepted.
    pub async fn hold_read_only(&self, name: &str, reason: &str) {
        let response = self.hold(name, json!({ "reason": reason }), "").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
    }

    /// `DELETE /api/v1/state/holds/{name}`.
    pub async fn release(&self, name: &str) -> Response {
        self.delete(&format!("/api/v1/state/holds/{name}")).await
    }

    /// `GET /api/v1/state`.
    pub async fn state(&self) -> Value {
        let response = self.get("/api/v1/state").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Waits until the gate reports `n` writes in flight (requests the test started; polling
    /// the state report).
    pub async fn wait_for_writes_in_flight(&self, n: u64) {
        for _ in 0..1000 {
            if self.state().await["writes_in_flight"] == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} writes never were in flight: {}", self.state().await);
    }

    /// Waits until the registry's effective mode is `mode` (polling the state report).
    pub async fn wait_for_mode(&self, mode: &str) -> Value {
        for _ in 0..1500 {
            let state = self.state().await;
            if state["effective"] == mode {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the registry did not become {mode}: {}", self.state().await);
    }

    /// The audit trail (newest first), once it holds an event `wanted` matches.
    pub async fn events_until(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        for _ in 0..500 {
            let events: Value = self.get("/api/v1/events").await.json().await.unwrap();
            let events = events["events"].as_array().cloned().unwrap_or_default();
            if events.iter().any(&wanted) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Opens an upload session and returns its Location.
    pub async fn open_upload(&self, repository: &str) -> String {
        let response = self
            .request(Method::POST, &format!("/v2/{repository}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        location(&response)
    }

    /// Pushes a blob (POST, then PUT with the content) and returns its digest.
    pub async fn push_blob(&self, repository: &str, content: &[u8]) -> Digest {
        let digest = Digest::sha256_of(content);
        let location = self.open_upload(repository).await;
        let response = self
            .request(
                Method::PUT,
                &with_query(&location, &format!("digest={digest}")),
            )
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        digest
    }

    /// Puts a manifest and returns the response.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(
            Method::PUT,
            &format!("/v2/{repository}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
    }

    /// Pushes a small image (config and `layers` layers) and tags it.
    pub async fn push_image(&self, repository: &str, tag: &str, layers: usize) -> TestImage {
        let image = TestImage::generate(layers);
        for blob in image.blobs() {
            self.push_blob(repository, blob).await;
        }
        let response = self
            .put_manifest(repository, tag, OCI_MANIFEST, &image.manifest)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        image
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A generated image: its blobs and its manifest.
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl TestImage {
    pub fn generate(layers: usize) -> TestImage {
        Self::generate_with(layers, json!({}))
    }

    /// An image whose manifest has `extra` fields merged in (subject, artifactType, annotations).
    pub fn generate_with(layers: usize, extra: Value) -> TestImage {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","nonce":"{}"}}"#,
            unique()
        )
        .into_bytes();
        let layers: Vec<Vec<u8>> = (0..layers).map(|i| random_bytes(1000 + i * 100)).collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
        });
        if let (Some(manifest), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
            manifest.extend(extra.clone());
        }
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let digest = Digest::sha256_of(&manifest);
        TestImage {
            config,
            layers,
            manifest,
            digest,
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Vec<u8>> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// A descriptor of this image's manifest, for an index or a subject.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": OCI_MANIFEST, "digest": self.digest, "size": self.manifest.len() })
    }
}

pub fn descriptor(media_type: &str, content: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": Digest::sha256_of(content), "size": content.len() })
}

/// Bytes that differ between calls.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = unique() | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn unique() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos
        .wrapping_mul(6364136223846793005)
        .wrapping_add(n.wrapping_mul(1442695040888963407))
}

pub fn location(response: &Response) -> String {
    header(response, "location")
}

pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

/// Asserts an OCI error response and returns its message.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status, "{response:?}");
    assert_eq!(header(&response, "content-type"), "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

/// A request body the test feeds piece by piece, to hold a request open mid-body.
pub struct HeldBody {
    sender: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
}

impl HeldBody {
    pub fn new() -> (HeldBody, reqwest::Body) {
        let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        (
            HeldBody {
                sender: Some(sender),
            },
            reqwest::Body::wrap_stream(stream.boxed()),
        )
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.sender
            .as_ref()
            .unwrap()
            .send(Ok(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap();
    }

    /// Ends the body normally.
    pub fn finish(mut self) {
        self.sender.take();
    }

    /// Breaks the body off with an error, as a client that disconnects mid-upload.
    pub async fn abort(mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender
                .send(Err(std::io::Error::other("client went away")))
                .await;
        }
    }
}

/// Polls `condition` until it holds: for waiting on an effect the test caused (a file growing),
/// never for ordering two of the test's own actions.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Size of the staged bytes of an upload (`Location` of the session).
pub fn staged_size(app: &TestApp, location: &str) -> u64 {
    let id = location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    std::fs::metadata(app.data_dir().join("storage/uploads").join(id))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The app's metadata database opened directly, whichever backend the run is on, for a test
/// that reads or changes it behind the server's back. Used through [`with_database!`].
pub enum DirectDatabase {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl TestApp {
    /// Opens the app's metadata database directly (see [`DirectDatabase`]).
    pub async fn direct_database(&self) -> DirectDatabase {
        match &self.database {
            Some(database) => {
                DirectDatabase::Postgres(sqlx::PgPool::connect(database.url()).await.unwrap())
            }
            None => DirectDatabase::Sqlite(
                sqlx::SqlitePool::connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(self.config.data_paths().metadata),
                )
                .await
                .unwrap(),
            ),
        }
    }
}

/// Runs `$body` with `$pool` the app's metadata database pool, whichever backend the run is
/// on: the body is written once and compiled for each (the SQL both read alike, `$n`
/// placeholders and all). The pool is closed afterwards.
macro_rules! with_database {
    ($app:expr, |$pool:ident| $body:expr) => {
        match $app.direct_database().await {
            $crate::app::DirectDatabase::Sqlite($pool) => {
                let result = $body;
                $pool.close().await;
                result
            }
            $crate::app::DirectDatabase::Postgres($pool) => {
                let result = $body;
                $pool.close().await;
                result
            }
        }
    };
}
pub(crate) use with_database;

/// `TEST_STORAGE=s3` runs the registries of these tests with their blobs in the S3 server that
/// `scripts/s3` started, each under a prefix of its own; by default blobs are in the data folder.
pub fn test_storage(config: &mut Config, dir: &std::path::Path) {
    match std::env::var("TEST_STORAGE").as_deref() {
        Err(_) | Ok("filesystem") => {}
        Ok("s3") => use_s3(config, dir),
        Ok(other) => panic!("TEST_STORAGE={other:?}: expected s3 or filesystem"),
    }
}

/// Puts the registry's blobs in the test S3 server (s3s-fs, which checks signatures), under a
/// prefix of its own, with its keys in files as an operator would give them. Fails with a
/// clear message where no server was started.
pub fn use_s3(config: &mut Config, dir: &std::path::Path) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: this test needs an S3-compatible server. Run scripts/test, \
                 or start one with: eval \"$(scripts/s3 start /tmp/wharf-s3)\""
            )
        })
    };
    let id_file = dir.join("s3-access-key-id");
    let secret_file = dir.join("s3-secret-access-key");
    std::fs::write(&id_file, var("S3_TEST_ACCESS_KEY_ID")).unwrap();
    std::fs::write(&secret_file, var("S3_TEST_SECRET_ACCESS_KEY")).unwrap();
    let s3 = &mut config.storage.s3;
    s3.bucket = var("S3_TEST_BUCKET");
    // Short: s3s-fs keeps a file named after each key's base64 (see crates/storage/tests/s3.rs).
    s3.prefix = format!("a{}", &uuid_like()[..8]);
    s3.endpoint = Some(var("S3_TEST_ENDPOINT"));
    s3.path_style = true;
    s3.allow_http = true;
    s3.access_key_id_file = Some(id_file);
    s3.secret_access_key_file = Some(secret_file);
    s3.part_size = wharf_config::ByteSize(5 * 1024 * 1024);
    config.storage.backend = wharf_config::StorageBackend::S3;
}

/// As [`use_s3`], on the moto server instead (which lists multipart uploads; it checks no
/// signatures).
pub fn use_moto(config: &mut Config, dir: &std::path::Path) {
    use_s3(config, dir);
    config.storage.s3.endpoint =
        Some(std::env::var("S3_MOTO_TEST_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "S3_MOTO_TEST_ENDPOINT is not set: this test needs moto's S3 server. Run \
             scripts/test, or start it with: eval \"$(scripts/s3 start /tmp/wharf-s3)\""
            )
        }));
}

fn uuid_like() -> String {
    wharf_core::upload_id::UploadId::generate()
        .as_str()
        .replace('-', "")
}
