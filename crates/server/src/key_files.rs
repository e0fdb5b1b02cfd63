//! Following the token signing key files (`auth.signing_keys`): replicas share them, and a
//! rotation — a new key put first, the old one kept after it while its tokens live — is taken
//! up without a restart, as the TLS files are. A change that cannot be read (a half-written
//! file, a bad key) is logged and the running keys are kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use wharf_auth::Authenticator;
use wharf_auth::keys::SigningKeys;
use wharf_config::reload::watch_folder;

/// Events come in bursts (an editor's save, a Secret's symlink swap): read once they settle.
const RELOAD_SETTLE: Duration = Duration::from_millis(100);

/// Re-reads `files` whenever one of them changes or `requests` is notified (SIGHUP), until
/// `stop` is cancelled, and gives the keys to `authenticator`.
pub async fn follow(
    authenticator: Arc<Authenticator>,
    files: Vec<PathBuf>,
    data_dir: PathBuf,
    requests: Arc<Notify>,
    stop: CancellationToken,
) {
    let changes = Arc::new(Notify::new());
    let mut watches = Vec::new();
    for file in &files {
        match watch_folder(file, changes.clone()) {
            Ok(watch) => watches.push(watch),
            Err(error) => tracing::error!(
                file = %file.display(), %error,
                "cannot watch the signing key file; it is re-read on SIGHUP only"
            ),
        }
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = changes.notified() => tokio::time::sleep(RELOAD_SETTLE).await,
            () = requests.notified() => {}
        }
        match SigningKeys::load(&files, &data_dir) {
            Ok(keys) => {
                authenticator.replace_signing_keys(keys);
                tracing::info!("token signing keys re-read");
            }
            Err(error) => tracing::error!(%error, "keeping the running token signing keys"),
        }
    }
}
