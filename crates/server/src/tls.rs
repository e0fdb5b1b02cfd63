//! HTTPS: a certificate that is re-read when its files change (cert-manager renewing a
//! Kubernetes Secret) — new connections get the new certificate, connections already open keep
//! theirs and are not dropped. A file that does not load is refused with a log line and the
//! running certificate kept. Each connection's handshake runs in its own task, within
//! `server.header_read_timeout` (`connections.rs`), so a slow or silent client holds up nobody.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Notify;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use wharf_config::reload::watch_folder;

/// Changes to the files come in bursts (a Secret's symlink swap): they are read once settled.
const RELOAD_SETTLE: Duration = Duration::from_millis(100);

/// A certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

/// The certificate and key in use, re-read from their files on demand.
#[derive(Debug)]
pub struct CertificateReloader {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl CertificateReloader {
    /// Reads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertificateReloader>, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let current = read(cert, key, &provider)?;
        Ok(Arc::new(CertificateReloader {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// Reads the files again; on failure the running certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = read(&self.cert, &self.key, &self.provider)?;
        if loaded.cert != self.current.load().cert {
            self.current.store(Arc::new(loaded));
            tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded; new connections use it");
        }
        Ok(())
    }

    /// The server configuration that serves this certificate (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Re-reads the files whenever they (or their folders) change, or `requests` is notified
    /// (SIGHUP), until `stop`.
    pub async fn follow(self: Arc<Self>, requests: Arc<Notify>, stop: CancellationToken) {
        let changes = Arc::new(Notify::new());
        let mut watches = Vec::new();
        for file in [&self.cert, &self.key] {
            match watch_folder(file, changes.clone()) {
                Ok(watch) => watches.push(watch),
                Err(error) => tracing::error!(
                    file = %file.display(), %error,
                    "cannot watch the TLS file; it is re-read on SIGHUP only"
                ),
            }
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = changes.notified() => tokio::time::sleep(RELOAD_SETTLE).await,
                () = requests.notified() => {}
            }
            if let Err(error) = self.reload() {
                tracing::error!(%error, "keeping the running TLS certificate");
            }
        }
    }
}

impl ResolvesServerCert for CertificateReloader {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            TlsError(format!(
                "cannot read the certificate chain {}: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError(format!(
            "cannot read the private key {}: {e}",
            key.display()
        ))
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        TlsError(format!(
            "{} and {} do not make a certificate with its key: {e}",
            cert.display(),
            key.display()
        ))
    })
}
