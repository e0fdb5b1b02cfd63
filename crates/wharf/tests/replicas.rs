//! Several `wharf serve` processes on one PostgreSQL database and one data folder: one
//! registry whose read-only mode every replica agrees on. A hold taken through one replica
//! refuses new pushes on the others at once (LISTEN/NOTIFY), a push under way continues through
//! any replica until its tagged manifest, `?wait` returns only once every live replica is
//! read-only with the latest holds, a replica killed with SIGKILL is reported lost and not
//! waited for, and a restart of PostgreSQL is followed by every replica. With blobs in S3, an
//! upload continues across all three.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::WharfServer;
use wharf_metadata_postgres::testing::{PrivateServer, TestDatabase};

/// Short heartbeats, so that a killed replica is lost within a second; and holds re-read only
/// hourly, so that a hold reaching another replica proves that notifications arrive.
const CLUSTER_YAML: &str = "cluster:\n  heartbeat: 100ms\n  lost_after: 1s\n  reread_holds: 1h\n";

fn sha256(content: &[u8]) -> String {
    wharf_core::digest::Digest::sha256_of(content).to_string()
}

struct Registry {
    http: reqwest::Client,
}

impl Registry {
    fn new() -> Self {
        Registry {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    /// Opens an upload of `repository` through `server`; returns its location.
    async fn open_upload(&self, server: &WharfServer, repository: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v2/{repository}/blobs/uploads/", server.url))
            .send()
            .await
            .unwrap()
    }

    async fn patch(&self, server: &WharfServer, location: &str, from: u64, chunk: &[u8]) -> String {
        let response = self
            .http
            .patch(format!("{}{location}", server.url))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{from}-{}", from + chunk.len() as u64 - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "PATCH through {}",
            server.url
        );
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    async fn finish(&self, server: &WharfServer, location: &str, digest: &str) -> StatusCode {
        let separator = if location.contains('?') { '&' } else { '?' };
        self.http
            .put(format!(
                "{}{location}{separator}digest={digest}",
                server.url
            ))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn push_blob(
        &self,
        server: &WharfServer,
        repository: &str,
        content: &[u8],
    ) -> StatusCode {
        self.http
            .post(format!(
                "{}/v2/{repository}/blobs/uploads/?digest={}",
                server.url,
                sha256(content)
            ))
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn put_manifest(
        &self,
        server: &WharfServer,
        repository: &str,
        tag: &str,
        manifest: &[u8],
    ) -> StatusCode {
        self.http
            .put(format!("{}/v2/{repository}/manifests/{tag}", server.url))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_vec())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn hold(&self, server: &WharfServer, reason: &str, query: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .put(format!(
                "{}/api/v1/state/holds/maintenance{query}",
                server.url
            ))
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn release(&self, server: &WharfServer) {
        let response = self
            .http
            .delete(format!("{}/api/v1/state/holds/maintenance", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn state(&self, server: &WharfServer, query: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/api/v1/state{query}", server.url))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Waits until `server` reports `wanted` of its state.
    async fn state_until(
        &self,
        server: &WharfServer,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, state) = self.state(server, "").await;
            if wanted(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened: {state:#}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An image manifest naming `config` and `layer`.
fn manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer), "size": layer.len()}],
    }))
    .unwrap()
}

fn modes(state: &Value) -> Vec<(String, bool)> {
    state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["mode"].as_str().unwrap().to_owned(),
                r["live"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_hold_through_one_replica_drains_all_three_and_a_killed_one_is_not_waited_for() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!(
        "metadata:\n  url: {:?}\n{CLUSTER_YAML}drain:\n  timeout: 2m\n  push_grace: 30s\n",
        database.url()
    );
    // One data folder for the three, as replicas over a shared volume.
    let mut servers: Vec<WharfServer> = (0..3)
        .map(|i| {
            let config = dir.path().join(format!("replica-{i}"));
            WharfServer::start_config(&config, &data, &yaml)
        })
        .collect();
    let registry = Registry::new();
    let all_live = registry
        .state_until(&servers[0], "three live replicas", |s| {
            modes(s).iter().filter(|(_, live)| *live).count() == 3
        })
        .await;
    assert_eq!(all_live["replicas_read_only"], "0/3", "{all_live:#}");

    // A push under way through replica 2: its layer's upload is open, half sent.
    let layer = vec![7u8; 64 * 1024];
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let opened = registry.open_upload(&servers[1], "team/app").await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let location = registry
        .patch(&servers[1], &location, 0, &layer[..32 * 1024])
        .await;

    // The hold, through replica 1.
    let (status, held) = registry.hold(&servers[0], "replicas test", "").await;
    assert_eq!(status, StatusCode::OK, "{held:#}");

    // A new push through replica 3 is refused once the notification reaches it: with the
    // holds re-read only hourly, nothing else could tell it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = registry
            .push_blob(&servers[2], "team/other", b"a new push")
            .await;
        if status == StatusCode::METHOD_NOT_ALLOWED {
            break;
        }
        assert_eq!(status, StatusCode::CREATED);
        assert!(
            Instant::now() < deadline,
            "replica 3 never heard of the hold"
        );
    }
    let refused = registry
        .http
        .post(format!("{}/v2/team/other/blobs/uploads/", servers[2].url))
        .send()
        .await
        .unwrap();
    let body = refused.text().await.unwrap();
    assert!(body.contains("System is currently read-only"), "{body}");

    // The push under way continues through replica 3, then replica 1, and completes.
    let location = registry
        .patch(&servers[2], &location, 32 * 1024, &layer[32 * 1024..])
        .await;
    assert_eq!(
        registry
            .finish(&servers[2], &location, &sha256(&layer))
            .await,
        StatusCode::CREATED,
        "the layer's upload completes through another replica"
    );
    assert_eq!(
        registry.push_blob(&servers[0], "team/app", &config).await,
        StatusCode::CREATED,
        "the config blob, uploaded after the layers, is part of the push"
    );
    // Not read-only anywhere while the push has not put its manifest.
    let (status, waited) = registry.state(&servers[1], "?wait=300ms").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waited:#}");
    assert_eq!(waited["read_only_in_effect"], false);
    assert_eq!(waited["effective"], "draining");
    assert_eq!(
        registry
            .put_manifest(&servers[1], "team/app", "v1", &manifest(&config, &layer))
            .await,
        StatusCode::CREATED,
        "the manifest that completes the push"
    );
    for server in &servers {
        let (status, state) = registry.state(server, "?wait=60s").await;
        assert_eq!(status, StatusCode::OK, "{state:#}");
        assert_eq!(state["read_only_in_effect"], true, "{state:#}");
        assert_eq!(state["replicas_read_only"], "3/3", "{state:#}");
        assert!(
            modes(&state)
                .iter()
                .all(|(mode, live)| mode == "read-only" && *live),
            "{state:#}"
        );
    }
    let manifest_pulled = registry
        .http
        .get(format!("{}/v2/team/app/manifests/v1", servers[2].url))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        manifest_pulled.status(),
        StatusCode::OK,
        "pulls work while read-only"
    );

    // Replica 2 dies with SIGKILL while the registry is writable again; a new hold's wait
    // completes on the other two once replica 2 is reported lost.
    registry.release(&servers[0]).await;
    registry
        .state_until(&servers[0], "read-write everywhere", |s| {
            s["effective"] == "read-write" && modes(s).iter().all(|(m, _)| m == "read-write")
        })
        .await;
    servers[1].kill();
    let (status, held) = registry
        .hold(&servers[2], "replicas test", "?wait=60s")
        .await;
    assert_eq!(status, StatusCode::OK, "{held:#}");
    let state = &held["state"];
    assert_eq!(state["read_only_in_effect"], true, "{state:#}");
    assert_eq!(state["replicas_read_only"], "2/2", "{state:#}");
    let lost: Vec<&Value> = state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["live"] == false)
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "the killed replica is reported lost: {state:#}"
    );
    assert_eq!(lost[0]["mode"], "read-write", "as it last said: {state:#}");
}

#[tokio::test]
async fn every_replica_follows_a_restart_of_postgresql_and_sees_holds_taken_after_it() {
    let server = PrivateServer::start().expect("a PostgreSQL server of this test's own");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!(
        "metadata:\n  url: {:?}\n  acquire_timeout: 2s\n{CLUSTER_YAML}",
        server.url()
    );
    let servers: Vec<WharfServer> = (0..3)
        .map(|i| WharfServer::start_config(&dir.path().join(format!("replica-{i}")), &data, &yaml))
        .collect();
    let registry = Registry::new();
    registry
        .state_until(&servers[0], "three live replicas", |s| {
            modes(s).iter().filter(|(_, live)| *live).count() == 3
        })
        .await;
    let listening =
        |server: &WharfServer| server.log().matches("listening for hold changes").count();
    for server in &servers {
        assert_eq!(listening(server), 1, "{}", server.log());
    }

    server.pause().unwrap();
    server.resume().unwrap();
    // Each replica connects again and listens again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while servers.iter().any(|s| listening(s) < 2) {
        assert!(
            Instant::now() < deadline,
            "a replica did not listen again: {}",
            servers
                .iter()
                .map(WharfServer::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, held) = registry
        .hold(&servers[0], "after a restart", "?wait=60s")
        .await;
    assert_eq!(status, StatusCode::OK, "{held:#}");
    assert_eq!(held["state"]["replicas_read_only"], "3/3", "{held:#}");
}

#[tokio::test]
async fn one_request_writes_to_an_upload_at_a_time_across_replicas() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!("metadata:\n  url: {:?}\n{CLUSTER_YAML}", database.url());
    let servers: Vec<WharfServer> = (0..2)
        .map(|i| WharfServer::start_config(&dir.path().join(format!("replica-{i}")), &data, &yaml))
        .collect();
    let registry = Registry::new();
    let opened = registry.open_upload(&servers[0], "team/app").await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();

    // A PATCH through replica 1 whose body stays open until the test sends the rest.
    let (more, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(receiver, |mut r| async {
        r.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), r))
    }));
    let held = tokio::spawn({
        let url = format!("{}{location}", servers[0].url);
        let http = registry.http.clone();
        async move {
            http.patch(url)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    more.send(vec![1u8; 4096]).await.unwrap();
    // Until the database names a writer of the session, replica 1's request has not claimed it.
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(database.url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let writer: Option<String> =
            sqlx::query_scalar("SELECT writer FROM upload_sessions WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut connection)
                .await
                .unwrap();
        if writer.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the PATCH never claimed the session"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A second request to the session, through replica 2, is refused while the first writes.
    let busy = registry
        .http
        .patch(format!("{}{location}", servers[1].url))
        .header("content-type", "application/octet-stream")
        .body(vec![2u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    let body = busy.text().await.unwrap();
    assert!(body.contains("BLOB_UPLOAD_INVALID"), "{body}");

    more.send(vec![1u8; 4096]).await.unwrap();
    drop(more);
    assert_eq!(held.await.unwrap(), StatusCode::ACCEPTED);

    // Then replica 2 continues the session from where the first request left it, and the blob
    // is the first request's bytes and its own, nothing of the refused one.
    let mut content = vec![1u8; 8192];
    let location = registry
        .patch(&servers[1], &location, 8192, &[3u8; 4096])
        .await;
    content.extend_from_slice(&[3u8; 4096]);
    assert_eq!(
        registry
            .finish(&servers[1], &location, &sha256(&content))
            .await,
        StatusCode::CREATED
    );
    let pulled = registry
        .http
        .get(format!(
            "{}/v2/team/app/blobs/{}",
            servers[0].url,
            sha256(&content)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), content.as_slice());
}

#[tokio::test]
async fn garbage_collection_runs_on_one_replica_and_moves_when_it_dies() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!(
        "metadata:\n  url: {:?}\n{CLUSTER_YAML}gc:\n  enabled: true\n  interval: 1h\n",
        database.url()
    );
    let mut servers: Vec<WharfServer> = (0..3)
        .map(|i| WharfServer::start_config(&dir.path().join(format!("replica-{i}")), &data, &yaml))
        .collect();
    const RUNS: &str = "this replica runs garbage collection";
    let runners = |servers: &[WharfServer]| -> Vec<usize> {
        (0..servers.len())
            .filter(|&i| servers[i].pid().is_some() && servers[i].log().contains(RUNS))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while runners(&servers).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no replica took garbage collection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several heartbeats later, still only the one.
    let registry = Registry::new();
    for _ in 0..5 {
        registry.state(&servers[0], "").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = runners(&servers);
    assert_eq!(first.len(), 1, "one replica at a time: {first:?}");

    servers[first[0]].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = runners(&servers);
        if now.len() == 1 {
            break;
        }
        assert!(
            now.len() < 2,
            "two replicas took garbage collection: {now:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no replica took garbage collection over from the dead one"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_thousand_toggles_through_the_replicas_fail_no_pull_through_nginx() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!("metadata:\n  url: {:?}\n{CLUSTER_YAML}", database.url());
    let servers: Vec<WharfServer> = (0..3)
        .map(|i| WharfServer::start_config(&dir.path().join(format!("replica-{i}")), &data, &yaml))
        .collect();
    let upstreams: Vec<&str> = servers.iter().map(|s| s.address.as_str()).collect();
    let nginx = support::nginx::Nginx::start(&dir.path().join("nginx"), &upstreams);
    let registry = Registry::new();
    let layer = vec![9u8; 256 * 1024];
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    let front = format!("http://{}", nginx.address);
    for blob in [&layer, &config] {
        let pushed = registry
            .http
            .post(format!(
                "{front}/v2/team/app/blobs/uploads/?digest={}",
                sha256(blob)
            ))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), StatusCode::CREATED);
    }
    let manifest = manifest(&config, &layer);
    let put = registry
        .http
        .put(format!("{front}/v2/team/app/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);

    let stop = tokio_util::sync::CancellationToken::new();
    let pulls = tokio::spawn({
        let (http, stop, front) = (registry.http.clone(), stop.clone(), front.clone());
        let (manifest, layer) = (manifest.clone(), layer.clone());
        async move {
            let (mut done, mut failed) = (0u64, Vec::new());
            while !stop.is_cancelled() {
                let got = http
                    .get(format!("{front}/v2/team/app/manifests/v1"))
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await;
                match got {
                    Ok(r) if r.status() == StatusCode::OK => {
                        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
                    }
                    other => failed.push(format!("manifest: {other:?}")),
                }
                let got = http
                    .get(format!("{front}/v2/team/app/blobs/{}", sha256(&layer)))
                    .send()
                    .await;
                match got {
                    Ok(r) if r.status() == StatusCode::OK => {
                        assert_eq!(r.bytes().await.unwrap().len(), layer.len());
                    }
                    other => failed.push(format!("blob: {other:?}")),
                }
                done += 1;
            }
            (done, failed)
        }
    });
    for i in 0..1000 {
        let (status, held) = registry.hold(&servers[i % 3], "toggling", "").await;
        assert_eq!(status, StatusCode::OK, "{held:#}");
        registry.release(&servers[(i + 1) % 3]).await;
    }
    stop.cancel();
    let (done, failed) = pulls.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed pulls: {failed:?}",
        failed.len()
    );
    assert!(done > 0, "no pull ran during the toggles");
    let (code, stdout, stderr) = support::wharf(&servers[0].config_file, &["fsck"]);
    assert_eq!(code, 0, "wharf fsck found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("no problems found"), "{stdout}\n{stderr}");
}

/// With blobs in S3 (s3s-fs, signatures checked, parts of at least 5 MiB) an upload whose
/// `POST`, `PATCH`es and `PUT` each go to another of three replicas completes: a part recorded
/// by one replica, bytes short of a part staged by another, and the multipart upload completed
/// by a third; the blob pulls byte-identical through any of them, and so does its manifest.
#[tokio::test]
async fn an_upload_spread_over_three_replicas_completes_with_blobs_in_s3() {
    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("replicas-{}", std::process::id());
    let yaml = format!(
        "{}metadata:\n  url: {:?}\n{CLUSTER_YAML}",
        support::s3_storage_yaml(dir.path(), &prefix),
        database.url()
    );
    // Each replica has a data folder of its own: with blobs in S3 nothing is shared on disk.
    let servers: Vec<WharfServer> = (0..3)
        .map(|i| {
            let own = dir.path().join(format!("replica-{i}"));
            WharfServer::start_config(&own, &own.join("data"), &yaml)
        })
        .collect();
    let registry = Registry::new();
    let opened = registry.open_upload(&servers[0], "team/app").await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let mut location = opened.headers()["location"].to_str().unwrap().to_owned();
    let chunks: Vec<Vec<u8>> = [6 << 20, 3 << 20, 6 << 20, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, len)| (0..*len).map(|b| (b * 7 + i * 13) as u8).collect())
        .collect();
    let mut content = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        location = registry
            .patch(
                &servers[(i + 1) % 3],
                &location,
                content.len() as u64,
                chunk,
            )
            .await;
        content.extend_from_slice(chunk);
    }
    let digest = sha256(&content);
    assert_eq!(
        registry.finish(&servers[2], &location, &digest).await,
        StatusCode::CREATED
    );
    let config = b"{\"os\":\"linux\"}";
    assert_eq!(
        registry.push_blob(&servers[0], "team/app", config).await,
        StatusCode::CREATED
    );
    let manifest = manifest(config, &content);
    assert_eq!(
        registry
            .put_manifest(&servers[1], "team/app", "v1", &manifest)
            .await,
        StatusCode::CREATED
    );
    for server in &servers {
        let pulled = registry
            .http
            .get(format!("{}/v2/team/app/blobs/{digest}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK);
        assert!(
            pulled.bytes().await.unwrap().as_ref() == content.as_slice(),
            "the blob through {} is the bytes pushed",
            server.url
        );
        let pulled = registry
            .http
            .get(format!("{}/v2/team/app/manifests/v1", server.url))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    }
}
