//! One request writes to an upload session at a time across replicas: with a metadata store
//! other processes share, a request claims the session in the database (a lease naming the
//! request) before it writes, renews the claim while it runs, and gives it back when the
//! session's lock in this process is let go (the claim is attached to that lock, so a write
//! that outlives its request keeps it too). A second request to a busy session, on any
//! replica, is refused as the specification says; a replica that dies lets go within
//! [`CLAIM_LEASE`].

use std::sync::Arc;
use std::time::Duration;

use super::RegistryError;
use wharf_core::time::now_millis;
use wharf_core::upload_id::UploadId;
use wharf_gate::WritePermit;
use wharf_metadata::MetadataStore;
use wharf_storage::UploadLock;

/// How long a claim holds without renewal: what a killed replica's session waits at most.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// How long a request waits for a busy session before it is refused.
const CLAIM_WAIT: Duration = Duration::from_secs(2);

/// How often it tries again meanwhile.
const CLAIM_RETRY: Duration = Duration::from_millis(10);

/// Claims session `id` for this request in `metadata`, if replicas share it, and attaches the
/// claim to `lock`; returns whether it claimed (a store no other process shares needs no
/// claim). Fails with [`RegistryError::UploadBusy`] if another request holds it.
pub(super) async fn claim(
    metadata: &Arc<dyn MetadataStore>,
    permit: &WritePermit,
    lock: &UploadLock,
    id: &UploadId,
) -> Result<bool, RegistryError> {
    if !metadata.shared_by_replicas() {
        return Ok(false);
    }
    let writer = UploadId::generate().to_string();
    let lease = millis(CLAIM_LEASE);
    // The previous request's claim is given back just after its answer (when its lock is let
    // go), and its client's next request may come first: a busy session is tried again for a
    // moment before the request is refused.
    let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
    loop {
        let now = now_millis();
        if metadata
            .claim_upload(permit, id, &writer, now + lease, now)
            .await?
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RegistryError::UploadBusy);
        }
        tokio::time::sleep(CLAIM_RETRY).await;
    }
    let renewal = tokio::spawn({
        let (metadata, id, writer) = (metadata.clone(), id.clone(), writer.clone());
        async move {
            loop {
                tokio::time::sleep(CLAIM_LEASE / 3).await;
                match metadata
                    .renew_upload_claim(&id, &writer, now_millis() + lease)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::warn!(%error, upload = %id, "cannot renew an upload's claim");
                    }
                }
            }
        }
    });
    lock.attach(Claim {
        metadata: metadata.clone(),
        id: id.clone(),
        writer,
        renewal,
    });
    Ok(true)
}

/// A request's claim of a session, given back when dropped.
struct Claim {
    metadata: Arc<dyn MetadataStore>,
    id: UploadId,
    writer: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renewal.abort();
        // Given back at once where a runtime runs (it always does while serving); otherwise
        // the lease ends it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (metadata, id, writer) = (
                self.metadata.clone(),
                self.id.clone(),
                std::mem::take(&mut self.writer),
            );
            runtime.spawn(async move {
                if let Err(error) = metadata.release_upload_claim(&id, &writer).await {
                    tracing::warn!(%error, upload = %id, "cannot give back an upload's claim; it lapses by itself");
                }
            });
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
