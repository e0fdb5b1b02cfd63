//! Crash safety: `kill -9` while pushes are under way loses nothing that was committed and leaves
//! nothing half-visible; after a restart `wharf fsck` is clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::json;
use support::{WharfServer, wharf};
use tokio::sync::mpsc;
use wharf_core::digest::Digest;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image whose manifest PUT was answered 201: it must survive any crash after that.
#[derive(Clone)]
struct Committed {
    repository: String,
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<(Digest, Vec<u8>)>,
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn push_blob(
    http: &reqwest::Client,
    url: &str,
    repository: &str,
    blob: &[u8],
) -> Result<(), String> {
    let digest = Digest::sha256_of(blob);
    let response = http
        .post(format!("{url}/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let location = response
        .headers()
        .get("location")
        .ok_or("no location")?
        .to_str()
        .unwrap()
        .to_owned();
    let response = http
        .put(format!("{url}{location}?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    (response.status() == 201)
        .then_some(())
        .ok_or(format!("blob PUT: {}", response.status()))
}

/// Pushes images until the server goes away, recording those committed.
async fn pusher(url: String, id: u64, committed: Arc<Mutex<Vec<Committed>>>) {
    let http = reqwest::Client::new();
    for round in 0.. {
        let seed = id * 1_000_000 + round;
        let repository = format!("crash/pusher{id}");
        let tag = format!("t{round}");
        let config = format!(r#"{{"os":"linux","seed":{seed}}}"#).into_bytes();
        let layers: Vec<Vec<u8>> = (0..3)
            .map(|i| content(seed * 10 + i, 200_000 + i as usize * 7_000))
            .collect();
        let mut blobs = vec![(Digest::sha256_of(&config), config.clone())];
        blobs.extend(layers.iter().map(|l| (Digest::sha256_of(l), l.clone())));
        for (_, blob) in &blobs {
            if push_blob(&http, &url, &repository, blob).await.is_err() {
                return;
            }
        }
        let descriptor = |media_type: &str, blob: &[u8]| json!({ "mediaType": media_type, "digest": Digest::sha256_of(blob), "size": blob.len() });
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        }))
        .unwrap();
        let response = http
            .put(format!("{url}/v2/{repository}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status() == 201 => committed.lock().unwrap().push(Committed {
                repository,
                tag,
                manifest,
                blobs,
            }),
            _ => return,
        }
    }
}

/// Starts a request whose body the test holds open, and returns the sender that feeds it.
async fn held_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    first: Vec<u8>,
) -> mpsc::Sender<Result<Bytes, std::io::Error>> {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = http
        .request(method, url)
        .body(reqwest::Body::wrap_stream(stream));
    tokio::spawn(request.send());
    sender.send(Ok(Bytes::from(first))).await.unwrap();
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_pushes_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let committed = Arc::new(Mutex::new(Vec::<Committed>::new()));
    let held_content = content(424242, 3 * 1024 * 1024);
    let held_digest = Digest::sha256_of(&held_content);
    let http = reqwest::Client::new();

    for crash in 0..3u64 {
        let mut server = WharfServer::start(&data, "");
        let url = server.url.clone();

        let pushers: Vec<_> = (0..4)
            .map(|p| tokio::spawn(pusher(url.clone(), crash * 10 + p, committed.clone())))
            .collect();

        // Writes certainly in flight at the crash: a monolithic upload and a chunk, both stalled
        // mid-body, after their bytes reached the server's disk.
        let _whole = held_request(
            &http,
            reqwest::Method::POST,
            format!("{url}/v2/crash/held/blobs/uploads/?digest={held_digest}"),
            held_content[..2 * 1024 * 1024].to_vec(),
        )
        .await;
        let session = http
            .post(format!("{url}/v2/crash/held/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let location = session.headers()["location"].to_str().unwrap().to_owned();
        let _chunk = held_request(
            &http,
            reqwest::Method::PATCH,
            format!("{url}{location}"),
            held_content[..2 * 1024 * 1024].to_vec(),
        )
        .await;

        let staging = data.join("storage/uploads");
        let held_bytes_on_disk = || {
            std::fs::read_dir(&staging)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.metadata().is_ok_and(|m| m.len() >= 1024 * 1024))
                        .count()
                })
                .unwrap_or(0)
        };
        while held_bytes_on_disk() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        // Let some pushes complete, then crash with others under way.
        let target = (crash as usize + 1) * 6;
        while committed.lock().unwrap().len() < target {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        server.kill();
        for pusher in pushers {
            pusher.await.unwrap();
        }

        // After a restart, everything committed is there, intact; nothing in flight is visible.
        let server = WharfServer::start(&data, "");
        let url = server.url.clone();
        let images = committed.lock().unwrap().clone();
        assert!(images.len() >= target);
        for image in &images {
            let response = http
                .get(format!(
                    "{url}/v2/{}/manifests/{}",
                    image.repository, image.tag
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                200,
                "{}:{} lost after crash {crash}",
                image.repository,
                image.tag
            );
            assert_eq!(
                response.bytes().await.unwrap().as_ref(),
                image.manifest.as_slice()
            );
            for (digest, blob) in &image.blobs {
                let response = http
                    .get(format!("{url}/v2/{}/blobs/{digest}", image.repository))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(response.bytes().await.unwrap().as_ref(), blob.as_slice());
            }
        }
        let held = http
            .get(format!("{url}/v2/crash/held/blobs/{held_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            held.status(),
            404,
            "an upload cut off by the crash must not be visible"
        );
        let status = http.get(format!("{url}{location}")).send().await.unwrap();
        assert_eq!(
            status.headers()["range"],
            "0-0",
            "the cut-off chunk was not committed"
        );

        let mut server = server;
        assert!(server.terminate(), "{}", server.log());
        let (code, stdout, stderr) = wharf(&server.config_file, &["fsck"]);
        assert_eq!(code, 0, "fsck after crash {crash}:\n{stdout}{stderr}");
        assert!(stdout.contains("no problems found"), "{stdout}");
    }
}
