//! HTTPS: a test CA's certificate verified by clients; the certificate rotated the way a
//! Kubernetes Secret is (its `..data` symlink swapped) while a connection stays open; a file that
//! does not load keeps the running certificate; a handshake that never ends is given up on; the
//! token realm says https.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::app::{TestApp, header};
use crate::certificates::TestCa;

/// A folder laid out like a mounted Secret: `cert.pem` and `key.pem` are symlinks through
/// `..data`, which points at the current generation.
struct SecretMount {
    dir: PathBuf,
    generation: u32,
}

impl SecretMount {
    fn new(dir: &Path, cert: &Path, key: &Path) -> SecretMount {
        std::fs::create_dir_all(dir).unwrap();
        let mut mount = SecretMount {
            dir: dir.to_owned(),
            generation: 0,
        };
        mount.publish(cert, key);
        for file in ["cert.pem", "key.pem"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
        mount
    }

    /// Publishes a new generation at once, as the kubelet does: a new folder, then `..data`
    /// renamed over to point at it.
    fn publish(&mut self, cert: &Path, key: &Path) {
        self.generation += 1;
        let folder = format!("..gen{}", self.generation);
        std::fs::create_dir(self.dir.join(&folder)).unwrap();
        std::fs::copy(cert, self.dir.join(&folder).join("cert.pem")).unwrap();
        std::fs::copy(key, self.dir.join(&folder).join("key.pem")).unwrap();
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&folder, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

fn der(pem_file: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem_file).unwrap()
}

fn connector(ca: &Path) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(der(ca)).unwrap();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed session shows the certificate of the session
    // it resumes, not the one the server holds now.
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, port: u16) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Sends `GET /v2/` on a kept-alive connection and returns the status line.
async fn get_base(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The answer is small and ends with its two-byte body `{}`.
    let mut answer = Vec::new();
    let mut buffer = [0; 1024];
    while !answer.ends_with(b"{}") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn certificates_are_verified_and_rotated_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let (first_cert, first_key) = ca.issue("first");
    let mut mount = SecretMount::new(&dir.path().join("secret"), &first_cert, &first_key);
    let (cert, key) = (mount.cert(), mount.key());
    let app = TestApp::start_with(|c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
    })
    .await;
    let port: u16 = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let https = format!("https://localhost:{port}");

    // Verified against the test CA; refused by a client that does not trust it.
    let trusting = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let response = trusting.get(format!("{https}/v2/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        reqwest::Client::new()
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_err()
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v2/"))
        .send()
        .await;
    assert!(plain.is_err(), "no plain HTTP on a TLS port: {plain:?}");

    let connector = connector(&ca.cert);
    let mut kept = connect(&connector, port).await;
    assert_eq!(peer_certificate(&kept), der(&first_cert));
    assert_eq!(get_base(&mut kept).await, "HTTP/1.1 200 OK");

    // A new certificate is published: new connections get it once the server has read it.
    let (second_cert, second_key) = ca.issue("second");
    mount.publish(&second_cert, &second_key);
    let served_after = |wanted: CertificateDer<'static>| {
        let connector = connector.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut stream = connect(&connector, port).await;
                assert_eq!(
                    get_base(&mut stream).await,
                    "HTTP/1.1 200 OK",
                    "every new connection works"
                );
                if peer_certificate(&stream) == wanted {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the new certificate was never served"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    served_after(der(&second_cert)).await;
    // The connection made before is still open, still on its certificate.
    assert_eq!(get_base(&mut kept).await, "HTTP/1.1 200 OK");
    assert_eq!(peer_certificate(&kept), der(&first_cert));

    // A published pair that does not load (a key of another certificate) is not taken; the
    // next good one is.
    let (third_cert, _) = ca.issue("third");
    mount.publish(&third_cert, &second_key);
    let (fourth_cert, fourth_key) = ca.issue("fourth");
    mount.publish(&fourth_cert, &fourth_key);
    served_after(der(&fourth_cert)).await;
    assert_eq!(get_base(&mut kept).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_handshake_that_never_ends_holds_its_slot_for_header_read_timeout_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let (cert, key) = ca.issue("server");
    let app = TestApp::start_with(|c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.server.max_connections = 1;
        c.server.header_read_timeout = wharf_config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let port: u16 = app.url.rsplit(':').next().unwrap().parse().unwrap();

    // A client that connects and never starts its handshake takes the only slot...
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // ...so the next is served only once the server has given up on it.
    let mut served =
        tokio::time::timeout(Duration::from_secs(60), connect(&connector(&ca.cert), port))
            .await
            .expect("no handshake after the silent connection timed out");
    assert_eq!(get_base(&mut served).await, "HTTP/1.1 200 OK");
    // The silent connection was closed before: reading it (without waiting) finds its end.
    silent.set_nonblocking(true).unwrap();
    let ended = std::io::Read::read(&mut &silent, &mut [0; 16]);
    assert!(
        matches!(ended, Ok(0))
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the silent connection is still open: {ended:?}"
    );
}

#[tokio::test]
async fn the_token_realm_is_https_behind_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let (cert, key) = ca.issue("server");
    let app = TestApp::start_with_auth(|c| {
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
    })
    .await;
    let port = app.url.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        format!("Bearer realm=\"https://localhost:{port}/auth/token\",service=\"wharf\"")
    );
    let token: serde_json::Value = client
        .get(format!("https://localhost:{port}/auth/token"))
        .basic_auth("admin", Some(crate::app::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["token"].as_str().is_some());
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let (cert, _) = ca.issue("server");
    let (_, other_key) = ca.issue("other");
    let mut config = wharf_config::Config::default();
    config.storage.data_dir = dir.path().join("data");
    config.tls.cert = Some(cert.clone());
    config.tls.key = Some(other_key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = wharf_server::serve(config.clone(), listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("do not make a certificate with its key"),
        "{error}"
    );
    config.tls.key = Some(dir.path().join("missing.pem"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = wharf_server::serve(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("missing.pem"), "{error}");
}
