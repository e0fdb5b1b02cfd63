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

/// A data folder on a tmpfs of its own, of a given size, unmounted when dropped: a disk that
/// fills up. Mounting needs root (`CAP_SYS_ADMIN`), as the test suite runs in CI.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &std::path::Path, mib: u32) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mounting a tmpfs for the full-disk test needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }

    /// Grows the file system, as an administrator would to free space.
    fn grow(&self, mib: u32) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Fills what is left with a file, `filler`, until the file system refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join("filler");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).and_then(|()| file.flush()).is_ok() {}
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Pushes a one-layer image; returns it, or the status and body of the request that failed.
async fn push_image(
    http: &reqwest::Client,
    url: &str,
    repository: &str,
    tag: &str,
    seed: u64,
    annotation_len: usize,
) -> Result<Committed, (u16, String)> {
    let config = format!(r#"{{"os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = content(seed, 256 * 1024);
    let blobs = vec![
        (Digest::sha256_of(&config), config),
        (Digest::sha256_of(&layer), layer),
    ];
    for (digest, blob) in &blobs {
        let response = http
            .post(format!(
                "{url}/v2/{repository}/blobs/uploads/?digest={digest}"
            ))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        if response.status() != 201 {
            return Err((
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ));
        }
    }
    let descriptor = |(digest, blob): &(Digest, Vec<u8>), media_type: &str| json!({ "mediaType": media_type, "digest": digest, "size": blob.len() });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&blobs[0], "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(&blobs[1], "application/vnd.oci.image.layer.v1.tar")],
        // Makes the manifest as large as asked: more than the database can find room for.
        "annotations": { "padding": "p".repeat(annotation_len) },
    }))
    .unwrap();
    let response = http
        .put(format!("{url}/v2/{repository}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    if response.status() != 201 {
        return Err((
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ));
    }
    Ok(Committed {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        manifest,
        blobs,
    })
}

/// Pushes images with large manifests until one fails, which on a full disk it must within the
/// bound (the database's log cannot grow by more than the disk holds); returns the failure.
async fn push_until_refused(http: &reqwest::Client, url: &str, seed: u64) -> (u16, String) {
    for attempt in 0..64 {
        let tag = format!("fill-{seed}-{attempt}");
        if let Err(failure) = push_image(http, url, "full/fill", &tag, seed, 512 * 1024).await {
            return failure;
        }
    }
    panic!("64 pushes of 512 KiB manifests succeeded on a full disk");
}

async fn text(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A full disk: writes fail with 507 and a message that says so, `/readyz` and the metrics say
/// writes are failing, pulls keep working; once the disk has room, writes work again without a
/// restart (the database's writer is not left inside the failed transaction). A `kill -9` while
/// the disk is full loses nothing committed, and fsck is clean after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_until_there_is_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = SmallDisk::mount(&data, 40);
    let http = reqwest::Client::new();
    let mut server = WharfServer::start(&data, "");
    let url = server.url.clone();
    let before = push_image(&http, &url, "full/app", "before", 1, 0)
        .await
        .unwrap();

    let filler = disk.fill();
    let (status, body) = push_until_refused(&http, &url, 2).await;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("storage is full"), "{body}");
    // The metadata database's own writes fail too (the case that left its writer stuck): a
    // manifest of blobs already stored needs nothing but database room.
    let mut attempts = 0..64;
    let (status, body) = loop {
        let attempt = attempts
            .next()
            .expect("a full database refuses a 1 MiB manifest within 64");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": before.blobs[0].0, "size": before.blobs[0].1.len() },
            "layers": [],
            "annotations": { "padding": "q".repeat(1 << 20), "attempt": attempt.to_string() },
        }))
        .unwrap();
        let response = http
            .put(format!("{url}/v2/full/app/manifests/metadata-only"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if status != 201 {
            break (status, body);
        }
        // It found room in the database's log: take it, and fill again.
        disk.fill();
    };
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("metadata database cannot write"), "{body}");

    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "pulls are still served");
    let ready = ready.text().await.unwrap();
    assert!(ready.contains("writes failing since"), "{ready}");
    assert!(ready.contains("because storage is full"), "{ready}");
    let metrics = text(&http, format!("{url}/metrics")).await;
    assert!(metrics.contains("wharf_writes_failing 1"), "{metrics}");
    assert!(
        !metrics.contains(r#"wharf_write_failures_total{reason="storage_full"} 0"#),
        "{metrics}"
    );
    let state: serde_json::Value = http
        .get(format!("{url}/api/v1/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["writes_failing"]["kind"], "storage_full", "{state}");
    assert!(server.log().contains("storage full"), "{}", server.log());
    let pulled = http
        .get(format!("{url}/v2/full/app/manifests/before"))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), before.manifest);

    // Room again, without a restart: every kind of write works.
    disk.grow(200);
    let after = push_image(&http, &url, "full/app", "after", 3, 0)
        .await
        .unwrap();
    assert_eq!(text(&http, format!("{url}/readyz")).await, "ok\n");
    assert!(
        text(&http, format!("{url}/metrics"))
            .await
            .contains("wharf_writes_failing 0")
    );
    let hold = http
        .put(format!("{url}/api/v1/state/holds/disk-test"))
        .json(&json!({ "reason": "checking writes after a full disk" }))
        .send()
        .await
        .unwrap();
    assert!(hold.status().is_success(), "{}", hold.text().await.unwrap());
    let released = http
        .delete(format!("{url}/api/v1/state/holds/disk-test"))
        .send()
        .await
        .unwrap();
    assert!(released.status().is_success());
    let deleted = http
        .delete(format!("{url}/v2/full/fill/manifests/fill-2-0"))
        .send()
        .await
        .unwrap();
    assert!(
        [202, 404].contains(&deleted.status().as_u16()),
        "{}",
        deleted.status()
    );

    // Full again, and killed there: what was committed survives, nothing half-written shows.
    std::fs::remove_file(&filler).unwrap();
    disk.grow(40);
    disk.fill();
    let (status, _) = push_until_refused(&http, &url, 4).await;
    assert_eq!(status, 507);
    server.kill();
    std::fs::remove_file(&filler).unwrap();
    disk.grow(200);
    let server = WharfServer::start(&data, "");
    let url = server.url.clone();
    for image in [&before, &after] {
        let response = http
            .get(format!(
                "{url}/v2/{}/manifests/{}",
                image.repository, image.tag
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{} lost", image.tag);
        assert_eq!(response.bytes().await.unwrap().as_ref(), image.manifest);
        for (digest, blob) in &image.blobs {
            let response = http
                .get(format!("{url}/v2/{}/blobs/{digest}", image.repository))
                .send()
                .await
                .unwrap();
            assert_eq!(response.bytes().await.unwrap().as_ref(), blob.as_slice());
        }
    }
    let mut server = server;
    assert!(server.terminate(), "{}", server.log());
    let (code, stdout, stderr) = wharf(&server.config_file, &["fsck"]);
    assert_eq!(code, 0, "fsck after the full disk:\n{stdout}{stderr}");
    assert!(stdout.contains("no problems found"), "{stdout}");
}
