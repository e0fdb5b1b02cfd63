//! The behavioural suite every metadata store backend runs: what [`MetadataStore`] (with
//! [`AccountStore`](crate::AccountStore) and [`GateStore`]) promises, asserted on a fresh, empty
//! store.
//!
//! A backend runs all of it with one line in a test file, given an async fn that opens a fresh
//! store (see [`store_suite!`](crate::store_suite)):
//!
//! ```ignore
//! async fn open() -> (tempfile::TempDir, std::sync::Arc<MyStore>) { /* ... */ }
//!
//! wharf_metadata::store_suite!(open);
//! ```
//!
//! Each behaviour is a `pub async fn` here taking the store; the macro expands to one
//! `#[tokio::test]` per behaviour. Writes go through a [`WriteGate`] opened over the same store,
//! as the registry's do. Times a behaviour controls (a session's creation, a hold's expiry) are
//! passed in; times the store stamps itself (a completion, a blob's creation) are bracketed with
//! [`now_millis`].

// Test code, compiled only with the `suite` feature for backends' tests: a failed step should
// stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::slice;
use std::sync::Arc;

use crate::accounts::{
    AccountChange, GrantRecord, RobotRecord, TeamRecord, UserRecord, VisibilityRule,
};
use crate::{
    BackupLease, BlobCursor, BlobRecord, BlobUnlink, Descriptor, ManifestDeletion, ManifestRecord,
    ManifestRejection, MetadataError, MetadataStore, NewManifest, Page, Referrer, UploadCompletion,
    UploadSession,
};
use wharf_core::digest::{Algorithm, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_core::role::Role;
use wharf_core::time::{Millis, now_millis};
use wharf_core::upload_id::UploadId;
use wharf_gate::metrics::Metrics;
use wharf_gate::store::{GateStore, PushActivity};
use wharf_gate::{
    DrainSettings, EventKind, Hold, HoldSource, Mode, ModeEvent, WriteGate, WriteIntent,
    WritePermit, WriteRefused,
};

/// Runs the whole suite against a backend: one `#[tokio::test]` per behaviour of
/// [`wharf_metadata::suite`](crate::suite), each on a fresh store.
///
/// `$open` is an async fn without arguments returning `(guard, Arc<Store>)`: a fresh, empty
/// store, and whatever must live as long as the test (a temporary folder, a scratch database).
/// The store is closed at the end of each test, before the guard is dropped. The calling crate
/// needs `tokio` (with `macros` and a runtime) among its test dependencies, for `#[tokio::test]`.
///
/// ```ignore
/// wharf_metadata::store_suite!(open);
/// ```
///
/// The arms starting with `@` are the macro's own: `@names` lists the behaviours, so the suite's
/// own test can check that every behaviour of the module is run.
#[macro_export]
macro_rules! store_suite {
    (@with_behaviours $then:ident $($arg:tt)*) => {
        $crate::store_suite! { @$then [$($arg)*]
            upload_sessions_advance_only_from_the_expected_length_and_can_be_deleted,
            an_upload_keeps_blob_storage_state_with_its_progress,
            completing_an_upload_links_the_blob_to_its_repository_only,
            a_stored_blob_is_reused_and_new_content_is_asked_for,
            a_session_completes_once_and_only_at_its_expected_length,
            idle_and_completed_uploads_are_found_and_forgotten,
            a_mount_links_a_blob_from_a_repository_that_has_it,
            unlinking_and_pruning_spare_blobs_a_manifest_uses,
            a_manifest_is_found_by_tag_and_by_digest,
            a_manifest_missing_what_it_refers_to_leaves_nothing_visible,
            tags_and_repositories_are_listed_in_pages,
            referrers_are_listed_by_subject_and_artifact_type,
            deleting_a_tag_keeps_its_manifest_and_deleting_a_manifest_takes_its_tags,
            consistency_checks_walk_everything_and_keep_a_manifest_an_index_uses,
            a_descriptor_of_the_wrong_size_is_refused,
            a_sparse_manifest_may_name_absent_content,
            a_hold_set_again_keeps_its_creation_time,
            expired_holds_are_deleted_with_an_event_each,
            mode_events_are_newest_first_and_limited,
            a_push_begun_before_the_hold_is_told_from_its_writes,
            a_drain_lists_every_push_begun_before_the_hold,
            backup_leases_are_taken_renewed_and_released,
            a_job_run_replaces_the_one_before,
            garbage_collection_claims_only_unreferenced_blobs,
            a_blob_revived_by_a_new_placement_is_not_forgotten,
            a_cancelled_write_fails_and_commits_nothing,
            users_are_created_updated_and_deleted,
            organizations_teams_and_robots,
            grants_and_visibility_rules,
            repositories_are_browsed_by_name_push_and_size_in_pages,
        }
    };
    (@tests [$open:path] $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (guard, store) = $open().await;
                $crate::suite::$name(::std::sync::Arc::clone(&store)).await;
                $crate::MetadataStore::close(&*store).await;
                drop(guard);
            }
        )*
    };
    (@names [] $($name:ident),* $(,)?) => {
        [$(stringify!($name)),*]
    };
    ($open:path) => {
        $crate::store_suite!(@with_behaviours tests $open);
    };
}

// ---- Fixture ----

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// More pages than any walk of the suite needs, so a walk that does not advance fails rather
/// than runs forever.
const MAX_PAGES: usize = 10;

/// A store with a gate over it, as the registry holds them.
struct Fixture<S> {
    store: Arc<S>,
    gate: WriteGate,
}

/// Opens a write gate over `store`, which holds the gate's state too.
async fn open_gate<S: MetadataStore>(store: &Arc<S>) -> WriteGate {
    WriteGate::open(
        Arc::clone(store) as Arc<dyn GateStore>,
        DrainSettings::default(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap()
}

impl<S: MetadataStore> Fixture<S> {
    async fn new(store: Arc<S>) -> Self {
        let gate = open_gate(&store).await;
        Fixture { store, gate }
    }

    /// A permit for one write; the suite's store is read-write, so the intent does not matter.
    async fn permit(&self) -> WritePermit {
        self.gate
            .admit(WriteIntent::Housekeeping { job: "suite" })
            .await
            .unwrap()
    }

    /// Opens a session with the times given, so a behaviour controls what the drain queries see.
    async fn open_session(
        &self,
        repository: &str,
        client: &str,
        created_at: Millis,
        updated_at: Millis,
    ) -> UploadSession {
        let session = UploadSession {
            id: UploadId::generate(),
            repository: repo(repository),
            client: client.to_owned(),
            received: 0,
            hash_algorithm: Algorithm::Sha256,
            hash_state: vec![1, 2, 3],
            hashed: 0,
            created_at,
            updated_at,
            storage_state: String::new(),
        };
        self.store
            .open_upload(&self.permit().await, &session)
            .await
            .unwrap();
        session
    }

    /// Completes `session`, which holds `expected` bytes, as blob `content` under a fresh
    /// placement.
    async fn complete(&self, session: &UploadSession, expected: u64, content: &[u8]) -> BlobRecord {
        let digest = Digest::sha256_of(content);
        let key = StorageKey::for_new_placement(&digest);
        let completion = self
            .store
            .complete_upload(
                &self.permit().await,
                &session.id,
                expected,
                &digest,
                content.len() as u64,
                Some(&key),
            )
            .await
            .unwrap();
        match completion {
            UploadCompletion::Committed { blob, .. } => blob,
            other => panic!("completing the upload of {digest}: {other:?}"),
        }
    }

    /// Uploads `content` to `repository` as a chunked push does: open, one chunk, complete.
    async fn push_blob(&self, repository: &str, content: &[u8]) -> BlobRecord {
        let now = now_millis();
        let session = self.open_session(repository, "pusher", now, now).await;
        let size = content.len() as u64;
        let advanced = self
            .store
            .record_upload_progress(&self.permit().await, &session.id, 0, size, size, b"hash")
            .await
            .unwrap();
        assert!(advanced, "a fresh session advances from 0 bytes");
        self.complete(&session, size, content).await
    }

    async fn put(&self, repository: &str, manifest: &NewManifest) -> Result<(), ManifestRejection> {
        self.store
            .put_manifest(&self.permit().await, &repo(repository), manifest)
            .await
            .unwrap()
    }

    async fn by_tag(&self, repository: &str, name: &str) -> Option<ManifestRecord> {
        self.store
            .manifest(&repo(repository), &Reference::Tag(tag(name)))
            .await
            .unwrap()
    }

    async fn by_digest(&self, repository: &str, digest: &Digest) -> Option<ManifestRecord> {
        self.store
            .manifest(&repo(repository), &Reference::Digest(digest.clone()))
            .await
            .unwrap()
    }

    async fn all_tags(&self, repository: &str) -> Vec<String> {
        let page = Page {
            last: None,
            limit: 1000,
        };
        self.store
            .tags(&repo(repository), page)
            .await
            .unwrap()
            .map(|names| names.to_vec())
            .unwrap_or_default()
    }

    async fn in_repository(&self, repository: &str, blob: &BlobRecord) -> Option<BlobRecord> {
        self.store
            .blob_in_repository(&repo(repository), &blob.digest)
            .await
            .unwrap()
    }

    async fn unlink(&self, repository: &str, blob: &BlobRecord) -> BlobUnlink {
        self.store
            .unlink_blob(&self.permit().await, &repo(repository), &blob.digest)
            .await
            .unwrap()
    }

    async fn claim(&self, before: Millis, now: Millis, limit: u32) -> Vec<BlobRecord> {
        self.store
            .claim_unreferenced_blobs(&self.permit().await, before, now, limit)
            .await
            .unwrap()
    }
}

fn repo(name: &str) -> RepositoryName {
    name.parse().unwrap()
}

fn tag(name: &str) -> Tag {
    name.parse().unwrap()
}

/// An image manifest whose bytes are `content`, referring to `blobs`.
fn manifest(content: &str, blobs: &[&BlobRecord], tagged: Option<&str>) -> NewManifest {
    NewManifest {
        digest: Digest::sha256_of(content.as_bytes()),
        media_type: IMAGE_MANIFEST.to_owned(),
        content: content.as_bytes().to_vec(),
        blobs: blobs
            .iter()
            .map(|b| Descriptor {
                digest: b.digest.clone(),
                size: b.size,
            })
            .collect(),
        manifests: Vec::new(),
        artifact_type: None,
        subject: None,
        annotations: None,
        tags: tagged.map(tag).into_iter().collect(),
        client: "pusher".to_owned(),
        sparse: false,
    }
}

/// A descriptor of `blob` as a manifest names it.
fn described(blob: &BlobRecord) -> Descriptor {
    Descriptor {
        digest: blob.digest.clone(),
        size: blob.size,
    }
}

/// An index whose bytes are `content`, referring to `children`.
fn index(content: &str, children: &[&NewManifest], tagged: Option<&str>) -> NewManifest {
    NewManifest {
        media_type: IMAGE_INDEX.to_owned(),
        manifests: children
            .iter()
            .map(|m| Descriptor {
                digest: m.digest.clone(),
                size: m.content.len() as u64,
            })
            .collect(),
        ..manifest(content, &[], tagged)
    }
}

/// The record a stored `manifest` reads back as.
fn record(manifest: &NewManifest) -> ManifestRecord {
    ManifestRecord {
        digest: manifest.digest.clone(),
        media_type: manifest.media_type.clone(),
        content: manifest.content.clone(),
    }
}

fn hold(name: &str, reason: &str, created_at: Millis, expires_at: Option<Millis>) -> Hold {
    Hold {
        name: name.parse().unwrap(),
        reason: reason.to_owned(),
        set_by: "suite".to_owned(),
        source: HoldSource::Api,
        created_at,
        updated_at: created_at,
        expires_at,
    }
}

/// An audit event about a hold as the gate makes it: for a release or an expiry, without the
/// hold's name and reason, which the store fills in.
fn hold_event(kind: EventKind, about: Option<&Hold>, at: Millis) -> ModeEvent {
    ModeEvent {
        at,
        kind,
        hold: about.map(|h| h.name.to_string()),
        actor: "suite".to_owned(),
        source: HoldSource::Api.as_str().to_owned(),
        reason: about.map(|h| h.reason.clone()).unwrap_or_default(),
        replica: "suite-host:1".to_owned(),
        from: None,
        to: None,
        drain_ms: None,
        pushes_completed: None,
        pushes_cut_off: None,
        cancelled_writes: None,
        abandoned_uploads: None,
    }
}

fn user(name: &str, superuser: bool) -> UserRecord {
    UserRecord {
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        superuser,
        created_at: 1_000,
    }
}

fn robot(organization: &str, name: &str) -> RobotRecord {
    RobotRecord {
        name: format!("{organization}+{name}"),
        organization: organization.to_owned(),
        token_hash: "0".repeat(64),
        admin: false,
        description: format!("{name} of {organization}"),
        created_at: 1_000,
    }
}

fn grant(repository: &str, principal: &str, role: Role) -> GrantRecord {
    GrantRecord {
        repository: repository.to_owned(),
        principal: principal.to_owned(),
        role,
    }
}

/// Asserts that a write failed because its permit was cancelled.
fn refused<T: std::fmt::Debug>(result: crate::Result<T>) {
    assert!(
        matches!(result, Err(MetadataError::Refused(WriteRefused::Cancelled))),
        "{result:?}"
    );
}

fn ids(sessions: &[UploadSession]) -> BTreeSet<UploadId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

fn by_digest_text(mut blobs: Vec<BlobRecord>) -> Vec<BlobRecord> {
    blobs.sort_by_key(|b| b.digest.to_string());
    blobs
}

// ---- Upload sessions ----

/// Blob storage's state of an upload (on S3: the multipart upload, its parts, the staged
/// object) is stored with the session, read back with it, and advanced together with the
/// session's length and hash state, only from the expected length; progress recorded without
/// it keeps it.
pub async fn an_upload_keeps_blob_storage_state_with_its_progress<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let session = UploadSession {
        id: UploadId::generate(),
        repository: repo("suite/app"),
        client: "client-a".to_owned(),
        received: 0,
        hash_algorithm: Algorithm::Sha256,
        hash_state: vec![1, 2, 3],
        hashed: 0,
        created_at: 1_000,
        updated_at: 1_000,
        storage_state: "opened".to_owned(),
    };
    let permit = fx.permit().await;
    fx.store.open_upload(&permit, &session).await.unwrap();
    assert_eq!(
        fx.store.upload(&session.id).await.unwrap(),
        Some(session.clone())
    );

    assert!(
        fx.store
            .record_upload_progress_with_storage(&permit, &session.id, 0, 10, 10, &[7], "ten")
            .await
            .unwrap()
    );
    let stored = fx.store.upload(&session.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.received,
            stored.hashed,
            stored.hash_state.clone(),
            stored.storage_state.as_str()
        ),
        (10, 10, vec![7], "ten")
    );
    // A writer that read the session before that progress changes nothing.
    assert!(
        !fx.store
            .record_upload_progress_with_storage(&permit, &session.id, 0, 20, 20, &[8], "stale")
            .await
            .unwrap()
    );
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), Some(stored));
    assert!(
        !fx.store
            .record_upload_progress_with_storage(&permit, &UploadId::generate(), 0, 5, 5, &[], "x")
            .await
            .unwrap(),
        "an unknown session is not advanced"
    );
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 10, 12, 12, &[9])
            .await
            .unwrap()
    );
    let idle = fx.store.idle_uploads(Millis::MAX, 10).await.unwrap();
    let listed = idle.iter().find(|s| s.id == session.id).unwrap();
    assert_eq!(
        (listed.received, listed.storage_state.as_str()),
        (12, "ten"),
        "progress without storage state keeps the one recorded"
    );
}

/// A session reads back as opened; its progress advances only from the length it holds (so two
/// writers cannot both advance it) and marks it active; a deleted session is gone for good.
pub async fn upload_sessions_advance_only_from_the_expected_length_and_can_be_deleted<
    S: MetadataStore,
>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let session = fx.open_session("suite/app", "client-a", 1_000, 1_000).await;
    let other = fx.open_session("suite/app", "client-b", 1_000, 1_000).await;
    assert_eq!(
        fx.store.upload(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(fx.store.upload(&UploadId::generate()).await.unwrap(), None);
    assert_eq!(fx.store.open_upload_count().await.unwrap(), 2);

    let permit = fx.permit().await;
    let before = now_millis();
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 0, 10, 8, &[4, 5])
            .await
            .unwrap()
    );
    let stored = fx.store.upload(&session.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.received, stored.hashed, stored.hash_state.clone()),
        (10, 8, vec![4, 5])
    );
    assert!(
        stored.updated_at >= before,
        "progress marks the session active"
    );
    assert_eq!(
        (
            stored.created_at,
            stored.client.as_str(),
            stored.repository.as_str()
        ),
        (1_000, "client-a", "suite/app")
    );

    // A writer that read the session before that progress does not advance it.
    assert!(
        !fx.store
            .record_upload_progress(&permit, &session.id, 0, 20, 20, &[6])
            .await
            .unwrap()
    );
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), Some(stored));
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 10, 20, 20, &[6])
            .await
            .unwrap()
    );
    assert!(
        !fx.store
            .record_upload_progress(&permit, &UploadId::generate(), 0, 5, 5, &[])
            .await
            .unwrap(),
        "an unknown session is not advanced"
    );

    assert!(fx.store.delete_upload(&permit, &session.id).await.unwrap());
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), None);
    assert_eq!(fx.store.open_upload_count().await.unwrap(), 1);
    assert!(!fx.store.delete_upload(&permit, &session.id).await.unwrap());
    assert!(
        !fx.store
            .record_upload_progress(&permit, &session.id, 20, 30, 30, &[])
            .await
            .unwrap()
    );
    let digest = Digest::sha256_of(b"never");
    let completion = fx
        .store
        .complete_upload(
            &permit,
            &session.id,
            20,
            &digest,
            20,
            Some(&StorageKey::for_new_placement(&digest)),
        )
        .await
        .unwrap();
    assert_eq!(completion, UploadCompletion::SessionGone);
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), None);
    assert!(fx.store.upload(&other.id).await.unwrap().is_some());
}

/// Completing commits the blob (its size includes a final chunk sent with the completing
/// request) and links it to the session's repository, not to others, and closes the session.
pub async fn completing_an_upload_links_the_blob_to_its_repository_only<S: MetadataStore>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let now = now_millis();
    let session = fx.open_session("suite/app", "client", now, now).await;
    let permit = fx.permit().await;
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 0, 5, 5, b"state")
            .await
            .unwrap()
    );
    let content = b"hello, world";
    let digest = Digest::sha256_of(content);
    let key = StorageKey::for_new_placement(&digest);
    let completion = fx
        .store
        .complete_upload(&permit, &session.id, 5, &digest, 12, Some(&key))
        .await
        .unwrap();
    let blob = BlobRecord {
        digest: digest.clone(),
        size: 12,
        storage_key: key.clone(),
    };
    assert_eq!(
        completion,
        UploadCompletion::Committed {
            blob: blob.clone(),
            reused_existing: false
        }
    );
    assert_eq!(
        fx.in_repository("suite/app", &blob).await,
        Some(blob.clone())
    );
    assert_eq!(fx.in_repository("suite/other", &blob).await, None);
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), Some(blob));
    assert!(fx.store.storage_key_in_use(&key).await.unwrap());
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), None);
    assert_eq!(fx.store.open_upload_count().await.unwrap(), 0);
    assert!(
        fx.store
            .repository_exists(&repo("suite/app"))
            .await
            .unwrap()
    );
    assert!(
        !fx.store
            .repository_exists(&repo("suite/other"))
            .await
            .unwrap()
    );
}

/// Without a placement, a blob that is not stored yet is asked for (and the session stays
/// open); a blob already stored is reused, from any repository, even when a new copy was placed.
pub async fn a_stored_blob_is_reused_and_new_content_is_asked_for<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let content = b"shared layer";
    let size = content.len() as u64;
    let digest = Digest::sha256_of(content);
    let now = now_millis();
    let permit = fx.permit().await;

    let first = fx.open_session("suite/one", "client", now, now).await;
    let completion = fx
        .store
        .complete_upload(&permit, &first.id, 0, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(completion, UploadCompletion::ContentNeeded);
    assert!(fx.store.upload(&first.id).await.unwrap().is_some());
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), None);
    let stored = fx.complete(&first, 0, content).await;

    let second = fx.open_session("suite/two", "client", now, now).await;
    let completion = fx
        .store
        .complete_upload(&permit, &second.id, 0, &digest, size, None)
        .await
        .unwrap();
    assert_eq!(
        completion,
        UploadCompletion::Committed {
            blob: stored.clone(),
            reused_existing: true
        }
    );
    assert_eq!(
        fx.in_repository("suite/two", &stored).await,
        Some(stored.clone())
    );

    // The uploaded copy is redundant: the stored one is kept, and the caller deletes its own.
    let third = fx.open_session("suite/three", "client", now, now).await;
    let redundant = StorageKey::for_new_placement(&digest);
    let completion = fx
        .store
        .complete_upload(&permit, &third.id, 0, &digest, size, Some(&redundant))
        .await
        .unwrap();
    assert_eq!(
        completion,
        UploadCompletion::Committed {
            blob: stored.clone(),
            reused_existing: true
        }
    );
    assert!(!fx.store.storage_key_in_use(&redundant).await.unwrap());
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), Some(stored));
}

/// A session completes only while it holds the expected length (not after another request
/// changed it) and only once; a session that moved on commits nothing.
pub async fn a_session_completes_once_and_only_at_its_expected_length<S: MetadataStore>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let now = now_millis();
    let session = fx.open_session("suite/app", "client", now, now).await;
    let permit = fx.permit().await;
    let content = b"sixsix";
    let digest = Digest::sha256_of(content);
    let key = StorageKey::for_new_placement(&digest);
    let complete = |expected: u64| {
        let (permit, id, digest, key) = (&permit, &session.id, &digest, &key);
        let store = &fx.store;
        async move {
            store
                .complete_upload(permit, id, expected, digest, 6, Some(key))
                .await
                .unwrap()
        }
    };
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 0, 4, 4, b"four")
            .await
            .unwrap()
    );
    assert_eq!(complete(3).await, UploadCompletion::SessionGone);
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), None);
    assert_eq!(
        fx.store
            .upload(&session.id)
            .await
            .unwrap()
            .unwrap()
            .received,
        4
    );

    // Another request advanced the session between this one's read and its completion.
    assert!(
        fx.store
            .record_upload_progress(&permit, &session.id, 4, 6, 6, b"six")
            .await
            .unwrap()
    );
    assert_eq!(complete(4).await, UploadCompletion::SessionGone);
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), None);

    assert!(matches!(
        complete(6).await,
        UploadCompletion::Committed { .. }
    ));
    assert_eq!(complete(6).await, UploadCompletion::SessionGone);
    assert!(
        !fx.store
            .record_upload_progress(&permit, &session.id, 6, 7, 7, b"seven")
            .await
            .unwrap(),
        "a completed session takes no more bytes"
    );
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), None);
}

/// Sessions that received nothing since a time are found (completed ones are not idle), and
/// completed sessions are forgotten once completed before the cut-off, open ones never.
pub async fn idle_and_completed_uploads_are_found_and_forgotten<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let now = now_millis();
    let idle = fx.open_session("suite/app", "client", 1_000, 1_000).await;
    let older = fx.open_session("suite/app", "client", 500, 500).await;
    let active = fx.open_session("suite/app", "client", now, now).await;

    let found = fx.store.idle_uploads(now - 60_000, 10).await.unwrap();
    assert_eq!(ids(&found), ids(&[idle.clone(), older.clone()]));
    assert_eq!(
        fx.store.idle_uploads(now - 60_000, 1).await.unwrap().len(),
        1
    );

    fx.push_blob("suite/app", b"pushed").await;
    let found = fx
        .store
        .idle_uploads(now_millis() + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&found), ids(&[idle, older, active]));

    let repository = repo("suite/app");
    let pushing = |grace_start: Millis| {
        let (store, repository) = (&fx.store, &repository);
        async move {
            store
                .push_activity(repository, "pusher", Millis::MAX, grace_start)
                .await
                .unwrap()
                .is_some()
        }
    };
    let permit = fx.permit().await;
    assert_eq!(
        fx.store
            .forget_completed_uploads(&permit, now - 60_000)
            .await
            .unwrap(),
        0
    );
    assert!(
        pushing(now - 60_000).await,
        "the completed push is still known"
    );
    assert_eq!(
        fx.store
            .forget_completed_uploads(&permit, now_millis() + 60_000)
            .await
            .unwrap(),
        1
    );
    assert!(
        !pushing(now - 60_000).await,
        "the completed push is forgotten"
    );
    assert_eq!(fx.store.open_upload_count().await.unwrap(), 3);
}

// ---- Blobs in repositories ----

/// A mount links a blob that the source repository has (and counts as a completed upload of the
/// client's push); from a repository without it, nothing is linked or created.
pub async fn a_mount_links_a_blob_from_a_repository_that_has_it<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let blob = fx.push_blob("suite/source", b"base layer").await;
    let permit = fx.permit().await;
    let before = now_millis();
    let mounted = fx
        .store
        .mount_blob(
            &permit,
            &repo("suite/target"),
            &blob.digest,
            &repo("suite/source"),
            "mounter",
        )
        .await
        .unwrap();
    assert_eq!(mounted, Some(blob.clone()));
    assert_eq!(
        fx.in_repository("suite/target", &blob).await,
        Some(blob.clone())
    );
    assert!(
        fx.store
            .repository_exists(&repo("suite/target"))
            .await
            .unwrap()
    );
    assert_eq!(fx.store.open_upload_count().await.unwrap(), 0);
    let target = repo("suite/target");
    let after = now_millis();
    let hold_at = after + 60_000;
    let push = fx
        .store
        .push_activity(&target, "mounter", hold_at, before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(push.open_uploads, 0);
    assert!((before..=after).contains(&push.last_write), "{push:?}");
    let other = fx
        .store
        .push_activity(&target, "someone-else", hold_at, before)
        .await
        .unwrap();
    assert_eq!(other, None);

    let refused = fx
        .store
        .mount_blob(
            &permit,
            &repo("suite/third"),
            &blob.digest,
            &repo("suite/elsewhere"),
            "mounter",
        )
        .await
        .unwrap();
    assert_eq!(refused, None);
    assert_eq!(fx.in_repository("suite/third", &blob).await, None);
    assert!(
        !fx.store
            .repository_exists(&repo("suite/third"))
            .await
            .unwrap()
    );
    let unknown = Digest::sha256_of(b"never uploaded");
    let refused = fx
        .store
        .mount_blob(&permit, &target, &unknown, &repo("suite/source"), "mounter")
        .await
        .unwrap();
    assert_eq!(refused, None);
}

/// A blob a manifest of the repository refers to is not unlinked (in that repository; another
/// repository's link goes), nor pruned; an unreferenced link is, and the blob stays stored.
pub async fn unlinking_and_pruning_spare_blobs_a_manifest_uses<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let start = now_millis();
    let config = fx.push_blob("suite/app", b"config").await;
    let layer = fx.push_blob("suite/app", b"layer").await;
    let loose = fx.push_blob("suite/app", b"loose").await;
    let image = manifest(r#"{"image":1}"#, &[&config, &layer], None);
    assert_eq!(fx.put("suite/app", &image).await, Ok(()));
    let permit = fx.permit().await;
    fx.store
        .mount_blob(
            &permit,
            &repo("suite/copy"),
            &layer.digest,
            &repo("suite/app"),
            "c",
        )
        .await
        .unwrap()
        .unwrap();

    assert_eq!(fx.unlink("suite/app", &layer).await, BlobUnlink::InUse);
    assert_eq!(
        fx.in_repository("suite/app", &layer).await,
        Some(layer.clone())
    );
    assert_eq!(fx.unlink("suite/copy", &layer).await, BlobUnlink::Unlinked);
    assert_eq!(fx.in_repository("suite/copy", &layer).await, None);
    assert_eq!(fx.unlink("suite/app", &loose).await, BlobUnlink::Unlinked);
    assert_eq!(fx.in_repository("suite/app", &loose).await, None);
    assert_eq!(
        fx.store.live_blob(&loose.digest).await.unwrap(),
        Some(loose.clone())
    );
    assert_eq!(fx.unlink("suite/app", &loose).await, BlobUnlink::NotLinked);
    assert_eq!(
        fx.unlink("suite/nowhere", &config).await,
        BlobUnlink::NotLinked
    );

    // Pruning removes the links made before its cut-off that no manifest uses.
    let kept = fx.push_blob("suite/app", b"kept").await;
    assert_eq!(fx.store.prune_blob_links(&permit, start).await.unwrap(), 0);
    let pruned = fx
        .store
        .prune_blob_links(&permit, now_millis() + 60_000)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(fx.in_repository("suite/app", &kept).await, None);
    assert_eq!(
        fx.in_repository("suite/app", &config).await,
        Some(config.clone())
    );
    assert_eq!(
        fx.in_repository("suite/app", &layer).await,
        Some(layer.clone())
    );

    assert_eq!(
        fx.store
            .delete_manifest(&permit, &repo("suite/app"), &image.digest)
            .await
            .unwrap(),
        ManifestDeletion::Deleted
    );
    assert_eq!(fx.unlink("suite/app", &layer).await, BlobUnlink::Unlinked);
}

// ---- Manifests and tags ----

/// A manifest reads back by tag and by digest, only in its repository; the same manifest takes
/// a second tag; a tag moves to the manifest last put under it; an index refers to manifests.
pub async fn a_manifest_is_found_by_tag_and_by_digest<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let config = fx.push_blob("suite/app", b"config").await;
    let first = manifest(r#"{"n":1}"#, &[&config], Some("v1"));
    assert_eq!(fx.put("suite/app", &first).await, Ok(()));
    assert_eq!(fx.by_tag("suite/app", "v1").await, Some(record(&first)));
    assert_eq!(
        fx.by_digest("suite/app", &first.digest).await,
        Some(record(&first))
    );
    assert_eq!(fx.by_tag("suite/app", "v2").await, None);
    assert_eq!(fx.by_tag("suite/other", "v1").await, None);
    assert_eq!(fx.by_digest("suite/other", &first.digest).await, None);

    let again = NewManifest {
        tags: vec![tag("latest")],
        ..first.clone()
    };
    assert_eq!(fx.put("suite/app", &again).await, Ok(()));
    assert_eq!(fx.by_tag("suite/app", "latest").await, Some(record(&first)));
    assert_eq!(fx.all_tags("suite/app").await, ["latest", "v1"]);

    let second = manifest(r#"{"n":2}"#, &[&config], Some("latest"));
    assert_eq!(fx.put("suite/app", &second).await, Ok(()));
    assert_eq!(
        fx.by_tag("suite/app", "latest").await,
        Some(record(&second))
    );
    assert_eq!(fx.by_tag("suite/app", "v1").await, Some(record(&first)));

    let by_digest_only = manifest(r#"{"n":3}"#, &[], None);
    assert_eq!(fx.put("suite/app", &by_digest_only).await, Ok(()));
    assert_eq!(
        fx.by_digest("suite/app", &by_digest_only.digest).await,
        Some(record(&by_digest_only))
    );
    assert_eq!(fx.all_tags("suite/app").await, ["latest", "v1"]);

    let list = index(r#"{"index":1}"#, &[&first, &second], Some("multi"));
    assert_eq!(fx.put("suite/app", &list).await, Ok(()));
    assert_eq!(fx.by_tag("suite/app", "multi").await, Some(record(&list)));
}

/// A manifest referring to a blob or manifest not in its repository (missing, or only in
/// another repository) is rejected with what is missing, and nothing of it is visible: no
/// manifest, no tag (an existing one is not moved), no reference, not even a new repository.
pub async fn a_manifest_missing_what_it_refers_to_leaves_nothing_visible<S: MetadataStore>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let elsewhere = fx.push_blob("suite/elsewhere", b"layer").await;
    let foreign = manifest(r#"{"foreign":1}"#, &[&elsewhere], Some("v1"));
    assert_eq!(
        fx.put("suite/empty", &foreign).await,
        Err(ManifestRejection::MissingBlob(elsewhere.digest.clone()))
    );
    assert_eq!(fx.by_digest("suite/empty", &foreign.digest).await, None);
    assert_eq!(fx.by_tag("suite/empty", "v1").await, None);
    assert!(fx.all_tags("suite/empty").await.is_empty());
    assert!(
        !fx.store
            .repository_exists(&repo("suite/empty"))
            .await
            .unwrap()
    );
    let all = Page {
        last: None,
        limit: 100,
    };
    // Not listed either is suite/elsewhere: it holds a blob, but no manifest yet.
    assert!(fx.store.repositories(all).await.unwrap().is_empty());
    assert_eq!(
        fx.store
            .repositories_with_blob(&elsewhere.digest, all)
            .await
            .unwrap(),
        [repo("suite/elsewhere")]
    );

    let config = fx.push_blob("suite/app", b"config").await;
    let good = manifest(r#"{"good":1}"#, &[&config], Some("v1"));
    assert_eq!(fx.put("suite/app", &good).await, Ok(()));
    let missing = Digest::sha256_of(b"never uploaded");
    let bad = NewManifest {
        blobs: vec![
            described(&config),
            Descriptor {
                digest: missing.clone(),
                size: 14,
            },
        ],
        ..manifest(r#"{"bad":1}"#, &[], Some("v1"))
    };
    assert_eq!(
        fx.put("suite/app", &bad).await,
        Err(ManifestRejection::MissingBlob(missing))
    );
    assert_eq!(fx.by_digest("suite/app", &bad.digest).await, None);
    assert_eq!(fx.by_tag("suite/app", "v1").await, Some(record(&good)));
    assert_eq!(fx.all_tags("suite/app").await, ["v1"]);

    let absent = manifest(r#"{"absent":1}"#, &[], None);
    let incomplete = index(r#"{"incomplete":1}"#, &[&good, &absent], Some("multi"));
    assert_eq!(
        fx.put("suite/app", &incomplete).await,
        Err(ManifestRejection::MissingManifest(absent.digest.clone()))
    );
    let cross = index(r#"{"cross":1}"#, &[&good], None);
    assert_eq!(
        fx.put("suite/elsewhere", &cross).await,
        Err(ManifestRejection::MissingManifest(good.digest.clone()))
    );
    assert_eq!(fx.by_digest("suite/app", &incomplete.digest).await, None);
    assert_eq!(fx.by_tag("suite/app", "multi").await, None);
    assert_eq!(fx.by_digest("suite/elsewhere", &cross.digest).await, None);
    let stored = fx.store.stored_manifests(None, 100).await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "only the good manifest is stored: {stored:?}"
    );
    assert!(fx.store.dangling_references(100).await.unwrap().is_empty());
}

/// Tags and repositories are listed in byte order (the order `Page::last` continues from), a
/// page at a time.
pub async fn tags_and_repositories_are_listed_in_pages<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let image = manifest("{}", &[], None);
    for name in ["v9", "v10", "latest", "a", "b_1", "Z1"] {
        let tagged = NewManifest {
            tags: vec![tag(name)],
            ..image.clone()
        };
        assert_eq!(fx.put("suite/app", &tagged).await, Ok(()));
    }
    let app = repo("suite/app");
    let mut pages = Vec::new();
    let mut last: Option<String> = None;
    for pass in 0.. {
        assert!(pass < MAX_PAGES, "the tags' pages do not end: {pages:?}");
        let page = Page {
            last: last.as_deref(),
            limit: 2,
        };
        let tags = fx.store.tags(&app, page).await.unwrap().unwrap().to_vec();
        if tags.is_empty() {
            break;
        }
        last = tags.last().cloned();
        pages.push(tags);
    }
    assert_eq!(
        pages,
        [["Z1", "a"], ["b_1", "latest"], ["v10", "v9"]],
        "tags in byte order, two a page"
    );
    assert!(fx.all_tags("suite/other").await.is_empty());
    let first = Page {
        last: None,
        limit: 10,
    };
    assert_eq!(
        fx.store.tags(&repo("suite/never"), first).await.unwrap(),
        None,
        "a repository that does not exist has no page at all"
    );

    for name in ["zeta", "suite/b", "alpha/one", "suite/a-z"] {
        assert_eq!(fx.put(name, &image).await, Ok(()));
    }
    let page = |last, limit| Page { last, limit };
    let store = &fx.store;
    assert_eq!(
        store.repositories(page(None, 100)).await.unwrap().to_vec(),
        ["alpha/one", "suite/a-z", "suite/app", "suite/b", "zeta"]
    );
    assert_eq!(
        store.repositories(page(None, 2)).await.unwrap().to_vec(),
        ["alpha/one", "suite/a-z"]
    );
    assert_eq!(
        store
            .repositories(page(Some("suite/a-z"), 2))
            .await
            .unwrap()
            .to_vec(),
        ["suite/app", "suite/b"]
    );
    assert_eq!(
        store
            .repositories(page(Some("suite/b"), 2))
            .await
            .unwrap()
            .to_vec(),
        ["zeta"]
    );
    assert!(
        store
            .repositories(page(Some("zeta"), 2))
            .await
            .unwrap()
            .is_empty()
    );

    // A repository whose last manifest is deleted leaves the list.
    let permit = fx.permit().await;
    assert_eq!(
        store
            .delete_manifest(&permit, &repo("zeta"), &image.digest)
            .await
            .unwrap(),
        ManifestDeletion::Deleted
    );
    assert_eq!(
        store
            .repositories(page(Some("suite/b"), 2))
            .await
            .unwrap()
            .to_vec(),
        Vec::<String>::new()
    );
    // Its blobs stay until garbage collection: a mount without a source finds them there.
    let blob = fx.push_blob("zeta", b"zeta's layer").await;
    fx.push_blob("alpha/one", b"zeta's layer").await;
    let everywhere = store
        .repositories_with_blob(&blob.digest, page(None, 100))
        .await
        .unwrap();
    assert_eq!(everywhere, [repo("alpha/one"), repo("zeta")]);
    let after = store
        .repositories_with_blob(&blob.digest, page(Some("suite/b"), 100))
        .await
        .unwrap();
    assert_eq!(after, [repo("zeta")]);
}

/// The referrers of a subject are the manifests of its repository naming it, by digest, with
/// their media type, size, artifact type and annotations, optionally of one artifact type.
pub async fn referrers_are_listed_by_subject_and_artifact_type<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let subject = manifest(r#"{"subject":1}"#, &[], Some("v1"));
    let referring = |content: &str, artifact_type: &str, annotations: Option<&str>| NewManifest {
        artifact_type: Some(artifact_type.to_owned()),
        subject: Some(subject.digest.clone()),
        annotations: annotations.map(str::to_owned),
        ..manifest(content, &[], None)
    };
    let signature = referring(
        r#"{"signature":1}"#,
        "application/vnd.example.signature",
        Some(r#"{"org.example.signed":"yes"}"#),
    );
    let sbom = referring(r#"{"sbom":1}"#, "application/spdx+json", None);
    let unrelated = manifest(r#"{"unrelated":1}"#, &[], None);
    for m in [&subject, &signature, &sbom, &unrelated] {
        assert_eq!(fx.put("suite/app", m).await, Ok(()));
    }
    let listed = |m: &NewManifest| Referrer {
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        size: m.content.len() as u64,
        artifact_type: m.artifact_type.clone(),
        annotations: m.annotations.clone(),
    };
    let mut expected = vec![listed(&signature), listed(&sbom)];
    expected.sort_by_key(|r| r.digest.to_string());

    let app = repo("suite/app");
    let referrers = |repository: &RepositoryName, subject: &Digest, artifact_type| {
        let store = &fx.store;
        let (repository, subject) = (repository.clone(), subject.clone());
        async move {
            store
                .referrers(&repository, &subject, artifact_type)
                .await
                .unwrap()
        }
    };
    assert_eq!(referrers(&app, &subject.digest, None).await, expected);
    assert_eq!(
        referrers(&app, &subject.digest, Some("application/spdx+json")).await,
        [listed(&sbom)]
    );
    assert!(
        referrers(&app, &subject.digest, Some("application/other"))
            .await
            .is_empty()
    );
    assert!(referrers(&app, &unrelated.digest, None).await.is_empty());
    assert!(
        referrers(&repo("suite/other"), &subject.digest, None)
            .await
            .is_empty()
    );

    let permit = fx.permit().await;
    assert_eq!(
        fx.store
            .delete_manifest(&permit, &app, &signature.digest)
            .await
            .unwrap(),
        ManifestDeletion::Deleted
    );
    assert_eq!(
        referrers(&app, &subject.digest, None).await,
        [listed(&sbom)]
    );
}

/// Deleting a tag leaves its manifest; deleting a manifest takes the tags pointing at it and
/// nothing else; each tells whether there was something to delete.
pub async fn deleting_a_tag_keeps_its_manifest_and_deleting_a_manifest_takes_its_tags<
    S: MetadataStore,
>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let image = manifest(r#"{"image":1}"#, &[], Some("v1"));
    let other = manifest(r#"{"other":1}"#, &[], Some("keep"));
    assert_eq!(fx.put("suite/app", &image).await, Ok(()));
    let second_tag = NewManifest {
        tags: vec![tag("v2")],
        ..image.clone()
    };
    assert_eq!(fx.put("suite/app", &second_tag).await, Ok(()));
    assert_eq!(fx.put("suite/app", &other).await, Ok(()));
    let app = repo("suite/app");
    let permit = fx.permit().await;

    assert!(
        fx.store
            .delete_tag(&permit, &app, &tag("v1"))
            .await
            .unwrap()
    );
    assert!(
        !fx.store
            .delete_tag(&permit, &app, &tag("v1"))
            .await
            .unwrap()
    );
    assert!(
        !fx.store
            .delete_tag(&permit, &repo("suite/other"), &tag("v2"))
            .await
            .unwrap()
    );
    assert_eq!(fx.by_tag("suite/app", "v1").await, None);
    assert_eq!(
        fx.by_digest("suite/app", &image.digest).await,
        Some(record(&image))
    );
    assert_eq!(fx.all_tags("suite/app").await, ["keep", "v2"]);

    assert_eq!(
        fx.store
            .delete_manifest(&permit, &repo("suite/other"), &image.digest)
            .await
            .unwrap(),
        ManifestDeletion::NotFound
    );
    assert_eq!(
        fx.store
            .delete_manifest(&permit, &app, &image.digest)
            .await
            .unwrap(),
        ManifestDeletion::Deleted
    );
    assert_eq!(
        fx.store
            .delete_manifest(&permit, &app, &image.digest)
            .await
            .unwrap(),
        ManifestDeletion::NotFound
    );
    assert_eq!(fx.by_digest("suite/app", &image.digest).await, None);
    assert_eq!(fx.by_tag("suite/app", "v2").await, None);
    assert_eq!(fx.all_tags("suite/app").await, ["keep"]);
    assert_eq!(fx.by_tag("suite/app", "keep").await, Some(record(&other)));
    assert!(fx.store.dangling_tags(100).await.unwrap().is_empty());
}

/// fsck's walks see every live blob (by digest) and every manifest (by repository and digest),
/// a page at a time; a consistent store has no dangling reference or tag, and deleting a
/// manifest an index refers to is refused, so that none appears.
pub async fn consistency_checks_walk_everything_and_keep_a_manifest_an_index_uses<
    S: MetadataStore,
>(
    store: Arc<S>,
) {
    let fx = Fixture::new(store).await;
    let mut blobs = Vec::new();
    for n in 0..5 {
        blobs.push(
            fx.push_blob("suite/app", format!("blob {n}").as_bytes())
                .await,
        );
    }
    let mut cursor = BlobCursor::new(2);
    let mut walked = Vec::new();
    for pass in 0.. {
        assert!(
            pass < MAX_PAGES,
            "the walk of blobs does not end: {walked:?}"
        );
        let page = fx.store.live_blobs(cursor.page()).await.unwrap();
        assert!(page.len() <= 2);
        if !cursor.advance(&page) {
            break;
        }
        walked.extend(page);
    }
    assert_eq!(walked, by_digest_text(blobs));

    let mut expected = Vec::new();
    for (repository, n) in [
        ("suite/b", 0),
        ("suite/b", 1),
        ("suite/a", 2),
        ("suite/b", 3),
    ] {
        let m = manifest(&format!(r#"{{"n":{n}}}"#), &[], None);
        assert_eq!(fx.put(repository, &m).await, Ok(()));
        expected.push((repository.to_owned(), m.digest.to_string()));
    }
    expected.sort();
    let mut walked = Vec::new();
    let mut last: Option<(RepositoryName, Digest)> = None;
    for pass in 0.. {
        assert!(
            pass < MAX_PAGES,
            "the walk of manifests does not end: {walked:?}"
        );
        let page = fx
            .store
            .stored_manifests(last.as_ref().map(|(r, d)| (r, d)), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(final_entry) = page.last() else {
            break;
        };
        last = Some((
            final_entry.repository.clone(),
            final_entry.manifest.digest.clone(),
        ));
        walked.extend(
            page.iter()
                .map(|m| (m.repository.to_string(), m.manifest.digest.to_string())),
        );
    }
    assert_eq!(walked, expected);
    assert!(fx.store.dangling_references(100).await.unwrap().is_empty());
    assert!(fx.store.dangling_tags(100).await.unwrap().is_empty());

    let child = manifest(r#"{"child":1}"#, &[], None);
    let parent = index(r#"{"parent":1}"#, &[&child], Some("multi"));
    assert_eq!(fx.put("suite/app", &child).await, Ok(()));
    assert_eq!(fx.put("suite/app", &parent).await, Ok(()));
    let permit = fx.permit().await;
    let app = repo("suite/app");
    // The index's child stays while the index does: nothing dangles.
    assert_eq!(
        fx.store
            .delete_manifest(&permit, &app, &child.digest)
            .await
            .unwrap(),
        ManifestDeletion::InUse(parent.digest.clone())
    );
    assert_eq!(
        fx.by_digest("suite/app", &child.digest).await,
        Some(record(&child))
    );
    assert!(fx.store.dangling_references(100).await.unwrap().is_empty());
    for gone in [&parent, &child] {
        assert_eq!(
            fx.store
                .delete_manifest(&permit, &app, &gone.digest)
                .await
                .unwrap(),
            ManifestDeletion::Deleted
        );
    }
    assert!(fx.store.dangling_references(100).await.unwrap().is_empty());
}

/// A sparse manifest (`limits.sparse_manifests`) may name blobs and manifests the repository does
/// not have, and its references are recorded all the same (for fsck, and so that content
/// pushed later is not collected from under it); content that is there must still have the size
/// it declares.
pub async fn a_sparse_manifest_may_name_absent_content<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let config = fx.push_blob("suite/mirror", b"config").await;
    let absent_blob = Descriptor {
        digest: Digest::sha256_of(b"a layer never mirrored"),
        size: 22,
    };
    let image = NewManifest {
        blobs: vec![described(&config), absent_blob.clone()],
        sparse: true,
        ..manifest(r#"{"sparse image":1}"#, &[], None)
    };
    assert_eq!(fx.put("suite/mirror", &image).await, Ok(()));
    let absent_child = manifest(r#"{"another platform":1}"#, &[], None);
    let list = NewManifest {
        sparse: true,
        ..index(
            r#"{"sparse index":1}"#,
            &[&image, &absent_child],
            Some("v1"),
        )
    };
    assert_eq!(fx.put("suite/mirror", &list).await, Ok(()));
    assert_eq!(fx.by_tag("suite/mirror", "v1").await, Some(record(&list)));
    let dangling = fx.store.dangling_references(100).await.unwrap();
    let children: BTreeSet<_> = dangling.iter().map(|d| d.child.clone()).collect();
    assert_eq!(
        children,
        BTreeSet::from([absent_blob.digest.clone(), absent_child.digest.clone()])
    );

    let lying = NewManifest {
        blobs: vec![Descriptor {
            digest: config.digest.clone(),
            size: config.size + 1,
        }],
        sparse: true,
        ..manifest(r#"{"lying sparse":1}"#, &[], None)
    };
    assert_eq!(
        fx.put("suite/mirror", &lying).await,
        Err(ManifestRejection::SizeMismatch {
            digest: config.digest.clone(),
            declared: config.size + 1,
            actual: config.size,
        })
    );
}

/// A manifest's descriptors must declare the sizes of the blobs and manifests they name; one that
/// does not is refused, with nothing stored.
pub async fn a_descriptor_of_the_wrong_size_is_refused<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let config = fx.push_blob("suite/app", b"config").await;
    let lying = NewManifest {
        blobs: vec![Descriptor {
            digest: config.digest.clone(),
            size: config.size + 1,
        }],
        ..manifest(r#"{"lying":1}"#, &[], Some("v1"))
    };
    assert_eq!(
        fx.put("suite/app", &lying).await,
        Err(ManifestRejection::SizeMismatch {
            digest: config.digest.clone(),
            declared: config.size + 1,
            actual: config.size,
        })
    );
    assert_eq!(fx.by_tag("suite/app", "v1").await, None);

    let child = manifest(r#"{"child":1}"#, &[&config], None);
    assert_eq!(fx.put("suite/app", &child).await, Ok(()));
    let wrong_child = NewManifest {
        manifests: vec![Descriptor {
            digest: child.digest.clone(),
            size: 1,
        }],
        ..index(r#"{"wrong":1}"#, &[], Some("multi"))
    };
    assert_eq!(
        fx.put("suite/app", &wrong_child).await,
        Err(ManifestRejection::SizeMismatch {
            digest: child.digest.clone(),
            declared: 1,
            actual: child.content.len() as u64,
        })
    );
    assert_eq!(fx.by_tag("suite/app", "multi").await, None);
}

// ---- Holds and the audit trail ----

/// A hold set again keeps its first creation time and takes everything else from the new one;
/// each change records its event in the audit trail, and a release records the hold's name and
/// reason (nothing when there was no such hold).
pub async fn a_hold_set_again_keeps_its_creation_time<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let control = fx.gate.control_write();
    let first = hold("admin", "maintenance", 1_000, None);
    let first_event = hold_event(EventKind::HoldSet, Some(&first), 1_000);
    let (stored, created) = fx
        .store
        .put_hold(&control, &first, &first_event)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(stored, first);
    assert_eq!(fx.store.holds().await.unwrap(), slice::from_ref(&first));

    let renewed = Hold {
        reason: "longer maintenance".to_owned(),
        set_by: "bob".to_owned(),
        created_at: 2_000,
        updated_at: 2_000,
        expires_at: Some(9_000),
        ..first.clone()
    };
    let renewed_event = hold_event(EventKind::HoldSet, Some(&renewed), 2_000);
    let (stored, created) = fx
        .store
        .put_hold(&control, &renewed, &renewed_event)
        .await
        .unwrap();
    assert!(!created);
    let expected = Hold {
        created_at: 1_000,
        ..renewed
    };
    assert_eq!(stored, expected);
    assert_eq!(fx.store.holds().await.unwrap(), slice::from_ref(&expected));
    assert_eq!(
        fx.store.mode_events(10).await.unwrap(),
        [renewed_event, first_event]
    );

    let release = hold_event(EventKind::HoldReleased, None, 3_000);
    let released = fx
        .store
        .delete_hold(&control, &first.name, &release)
        .await
        .unwrap();
    assert_eq!(released, Some(expected));
    assert!(fx.store.holds().await.unwrap().is_empty());
    let events = fx.store.mode_events(10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0],
        ModeEvent {
            hold: Some("admin".to_owned()),
            reason: "longer maintenance".to_owned(),
            ..release.clone()
        }
    );
    assert_eq!(
        fx.store
            .delete_hold(&control, &first.name, &release)
            .await
            .unwrap(),
        None
    );
    assert_eq!(fx.store.mode_events(10).await.unwrap().len(), 3);
}

/// The holds expired at `now` (a hold expiring at `now` included, as [`Hold::is_active`] has
/// it) are deleted and returned, each with its own event; unexpired and endless holds stay.
pub async fn expired_holds_are_deleted_with_an_event_each<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let control = fx.gate.control_write();
    let soon = hold("backup-1", "first backup", 1_000, Some(2_000));
    let later = hold("backup-2", "second backup", 1_000, Some(10_000));
    let also = hold("backup-3", "third backup", 1_000, Some(10_000));
    let forever = hold("admin", "maintenance", 1_000, None);
    for h in [&soon, &later, &also, &forever] {
        fx.store
            .put_hold(&control, h, &hold_event(EventKind::HoldSet, Some(h), 1_000))
            .await
            .unwrap();
    }
    let sorted = |mut holds: Vec<Hold>| {
        holds.sort_by(|a, b| a.name.cmp(&b.name));
        holds
    };

    let expiry = hold_event(EventKind::HoldExpired, None, 5_000);
    let expired = fx
        .store
        .delete_expired_holds(&control, 5_000, &expiry)
        .await
        .unwrap();
    assert_eq!(expired, [soon]);
    assert_eq!(
        sorted(fx.store.holds().await.unwrap()),
        [forever.clone(), later.clone(), also.clone()]
    );
    assert_eq!(
        fx.store.mode_events(1).await.unwrap(),
        [ModeEvent {
            hold: Some("backup-1".to_owned()),
            reason: "first backup".to_owned(),
            ..expiry.clone()
        }]
    );
    assert!(
        fx.store
            .delete_expired_holds(&control, 5_000, &expiry)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fx.store.mode_events(100).await.unwrap().len(), 5);

    let expiry = hold_event(EventKind::HoldExpired, None, 10_000);
    let expired = fx
        .store
        .delete_expired_holds(&control, 10_000, &expiry)
        .await
        .unwrap();
    assert_eq!(sorted(expired), [later, also]);
    assert_eq!(fx.store.holds().await.unwrap(), [forever]);
    let latest = fx.store.mode_events(2).await.unwrap();
    assert!(
        latest
            .iter()
            .all(|e| e.kind == EventKind::HoldExpired && e.at == 10_000)
    );
    let mut recorded: Vec<_> = latest.into_iter().map(|e| (e.hold, e.reason)).collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            (Some("backup-2".to_owned()), "second backup".to_owned()),
            (Some("backup-3".to_owned()), "third backup".to_owned()),
        ]
    );
}

/// The audit trail gives back the latest events, newest first, as many as asked, every field
/// as recorded.
pub async fn mode_events_are_newest_first_and_limited<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let control = fx.gate.control_write();
    let mut events = Vec::new();
    for n in 0..5 {
        let event = ModeEvent {
            at: 1_000 + n,
            kind: EventKind::ModeChanged,
            hold: None,
            actor: "wharf".to_owned(),
            source: HoldSource::System.as_str().to_owned(),
            reason: format!("change {n}"),
            replica: "suite-host:1".to_owned(),
            from: Some(Mode::Draining),
            to: Some(Mode::ReadOnly),
            drain_ms: (n == 4).then_some(1_234),
            pushes_completed: (n == 4).then_some(3),
            pushes_cut_off: (n == 4).then_some(1),
            cancelled_writes: (n == 4).then_some(2),
            abandoned_uploads: (n == 4).then_some(1),
        };
        fx.store.record_mode_event(&control, &event).await.unwrap();
        events.push(event);
    }
    events.reverse();
    assert_eq!(fx.store.mode_events(3).await.unwrap(), events[..3]);
    assert_eq!(fx.store.mode_events(10).await.unwrap(), events);
}

// ---- What a drain asks ----

/// A push (one client's writes in one repository) had begun before the hold when one of its
/// sessions was opened before it and was active (receiving, or finished) at the grace start or
/// later; its activity counts its open sessions, its latest write (a chunk, a completion, a
/// manifest) and its latest manifest put by tag, which completes it once nothing is open.
pub async fn a_push_begun_before_the_hold_is_told_from_its_writes<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let app = repo("suite/app");
    fx.open_session("suite/app", "client-a", 1_000, 2_000).await;
    let activity = |repository: &RepositoryName, client: &str, hold_at, grace_start| {
        let (store, repository, client) = (&fx.store, repository.clone(), client.to_owned());
        async move {
            store
                .push_activity(&repository, &client, hold_at, grace_start)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        activity(&app, "client-a", 1_500, 1_900).await,
        Some(PushActivity {
            repository: "suite/app".to_owned(),
            client: "client-a".to_owned(),
            open_uploads: 1,
            last_write: 2_000,
            tagged_at: None,
        })
    );
    assert!(activity(&app, "client-a", 1_500, 2_000).await.is_some());
    assert_eq!(activity(&app, "client-b", 1_500, 1_900).await, None);
    assert_eq!(
        activity(&repo("suite/other"), "client-a", 1_500, 1_900).await,
        None
    );
    assert_eq!(
        activity(&app, "client-a", 1_000, 900).await,
        None,
        "a session opened at the hold is not from before it"
    );
    assert_eq!(
        activity(&app, "client-a", 1_500, 2_001).await,
        None,
        "a session idle since before the grace start is abandoned"
    );

    let session = fx.open_session("suite/app", "client-c", 1_000, 1_000).await;
    let before = now_millis();
    fx.complete(&session, 0, b"done").await;
    let done = now_millis();
    let push = activity(&app, "client-c", 1_500, before).await.unwrap();
    assert_eq!((push.open_uploads, push.tagged_at), (0, None));
    assert!((before..=done).contains(&push.last_write), "{push:?}");
    assert!(!push.is_complete(), "no manifest was put yet");
    assert_eq!(
        activity(&app, "client-c", 1_500, done + 1).await,
        None,
        "an upload that finished before the grace start is not waited for"
    );

    // A manifest put by digest (an image of a multi-arch push) keeps the push going; the one
    // put by tag completes it. Another client's manifest is another push's.
    let pushed_by = |client: &str, content: &str, tagged: Option<&str>| NewManifest {
        client: client.to_owned(),
        ..manifest(content, &[], tagged)
    };
    assert_eq!(
        fx.put("suite/app", &pushed_by("client-c", "{}", None))
            .await,
        Ok(())
    );
    let push = activity(&app, "client-c", 1_500, before).await.unwrap();
    assert_eq!(push.tagged_at, None);
    assert!(push.last_write >= done, "{push:?}");
    assert!(!push.is_complete());
    let tagging = now_millis();
    let tagged = pushed_by("client-c", r#"{"index":1}"#, Some("v1"));
    assert_eq!(fx.put("suite/app", &tagged).await, Ok(()));
    let put = now_millis();
    let push = activity(&app, "client-c", 1_500, before).await.unwrap();
    let tagged_at = push.tagged_at.unwrap();
    assert!((tagging..=put).contains(&tagged_at), "{push:?}");
    assert_eq!(push.last_write, tagged_at);
    assert!(push.is_complete());
    let other_client = pushed_by("client-d", r#"{"other":1}"#, Some("v2"));
    assert_eq!(fx.put("suite/app", &other_client).await, Ok(()));
    assert_eq!(activity(&app, "client-c", 1_500, before).await, Some(push));
    assert_eq!(activity(&app, "client-d", 1_500, before).await, None);

    // A later manifest by digest does not forget the last one put by tag.
    let image = pushed_by("client-c", r#"{"image":2}"#, None);
    assert_eq!(fx.put("suite/app", &image).await, Ok(()));
    let push = activity(&app, "client-c", 1_500, before).await.unwrap();
    assert_eq!(push.tagged_at, Some(tagged_at));
    assert!(push.last_write >= tagged_at, "{push:?}");

    // An upload opened after the tag means the push goes on.
    let now = now_millis();
    fx.open_session("suite/app", "client-c", now, now).await;
    let push = activity(&app, "client-c", 1_500, before).await.unwrap();
    assert_eq!(push.open_uploads, 1);
    assert!(!push.is_complete());
}

/// A drain sees every push begun before the hold, in any repository, complete or not, each
/// with the sessions it opened since; abandoned sessions and sessions opened at or after the
/// hold do not make a push of their own.
pub async fn a_drain_lists_every_push_begun_before_the_hold<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let (hold_at, grace_start) = (10_000, 5_000);
    let first = fx.open_session("suite/app", "a", 1_000, 6_000).await;
    let second = fx.open_session("suite/app", "a", 10_500, 11_000).await;
    fx.open_session("suite/app", "b", 1_000, 4_000).await;
    fx.open_session("suite/app", "c", 10_000, 12_000).await;
    fx.open_session("suite/other", "a", 1_000, 7_000).await;
    let pushes = || async {
        let mut pushes = fx.store.drain_pushes(hold_at, grace_start).await.unwrap();
        pushes.sort_by(|x, y| (&x.repository, &x.client).cmp(&(&y.repository, &y.client)));
        pushes
    };
    let other = PushActivity {
        repository: "suite/other".to_owned(),
        client: "a".to_owned(),
        open_uploads: 1,
        last_write: 7_000,
        tagged_at: None,
    };
    assert_eq!(
        pushes().await,
        [
            PushActivity {
                repository: "suite/app".to_owned(),
                client: "a".to_owned(),
                open_uploads: 2,
                last_write: 11_000,
                tagged_at: None,
            },
            other.clone(),
        ]
    );

    fx.complete(&first, 0, b"layer").await;
    fx.complete(&second, 0, b"config").await;
    let image = NewManifest {
        client: "a".to_owned(),
        ..manifest("{}", &[], Some("latest"))
    };
    assert_eq!(fx.put("suite/app", &image).await, Ok(()));
    let listed = pushes().await;
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].open_uploads, listed[0].is_complete()), (0, true));
    assert_eq!(listed[1], other);
}

// ---- Backups ----

/// A job's run is kept until the next one of the same job replaces it; other jobs' are apart.
pub async fn a_job_run_replaces_the_one_before<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let control = fx.gate.control_write();
    assert_eq!(fx.store.last_job_run("gc").await.unwrap(), None);
    let first = crate::JobRun {
        name: "gc".to_owned(),
        replica: "web-1".to_owned(),
        finished_at: 1_000,
        outcome: r#"{"report":{"deleted_blobs":2}}"#.to_owned(),
    };
    fx.store.record_job_run(&control, &first).await.unwrap();
    assert_eq!(fx.store.last_job_run("gc").await.unwrap(), Some(first));
    let second = crate::JobRun {
        name: "gc".to_owned(),
        replica: "web-2".to_owned(),
        finished_at: 2_000,
        outcome: r#"{"error":"the disk is full"}"#.to_owned(),
    };
    fx.store.record_job_run(&control, &second).await.unwrap();
    let other = crate::JobRun {
        name: "fsck".to_owned(),
        ..second.clone()
    };
    fx.store.record_job_run(&control, &other).await.unwrap();
    assert_eq!(fx.store.last_job_run("gc").await.unwrap(), Some(second));
    assert_eq!(fx.store.last_job_run("fsck").await.unwrap(), Some(other));
}

/// A lease is taken, updated by id, renewed only while active (until `expires_at` exclusive),
/// released once, and listed with expired ones.
pub async fn backup_leases_are_taken_renewed_and_released<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let control = fx.gate.control_write();
    let now = now_millis();
    let live = BackupLease {
        id: "backup-1".to_owned(),
        snapshot_at: 1_000,
        created_at: 1_000,
        expires_at: now + 60_000,
    };
    let lapsed = BackupLease {
        id: "backup-2".to_owned(),
        snapshot_at: 500,
        created_at: 500,
        expires_at: 1_000,
    };
    fx.store.put_backup_lease(&control, &live).await.unwrap();
    fx.store.put_backup_lease(&control, &lapsed).await.unwrap();
    let leases = || async {
        let mut leases = fx.store.backup_leases().await.unwrap();
        leases.sort_by(|a, b| a.id.cmp(&b.id));
        leases
    };
    assert_eq!(leases().await, [live.clone(), lapsed.clone()]);

    // Narrowed to the snapshot's time, as a backup does once its snapshot is taken.
    let narrowed = BackupLease {
        snapshot_at: 2_000,
        expires_at: now + 120_000,
        ..live.clone()
    };
    fx.store
        .put_backup_lease(&control, &narrowed)
        .await
        .unwrap();
    assert_eq!(leases().await, [narrowed.clone(), lapsed.clone()]);

    let renewed = fx
        .store
        .renew_backup_lease(&control, "backup-1", now, now + 180_000)
        .await
        .unwrap();
    assert!(renewed);
    let renewed = BackupLease {
        expires_at: now + 180_000,
        ..narrowed
    };
    assert_eq!(leases().await, [renewed.clone(), lapsed.clone()]);
    assert!(
        !fx.store
            .renew_backup_lease(&control, "backup-2", 1_000, now + 60_000)
            .await
            .unwrap(),
        "a lease is over at its expiry"
    );
    assert!(
        !fx.store
            .renew_backup_lease(&control, "backup-3", now, now + 60_000)
            .await
            .unwrap()
    );
    assert_eq!(leases().await, [renewed, lapsed.clone()]);

    assert!(
        fx.store
            .delete_backup_lease(&control, "backup-1")
            .await
            .unwrap()
    );
    assert!(
        !fx.store
            .delete_backup_lease(&control, "backup-1")
            .await
            .unwrap()
    );
    assert_eq!(leases().await, [lapsed]);
}

// ---- Garbage collection ----

/// Claimed are blobs created before the cut-off that no repository links, no manifest refers
/// to and no active lease's snapshot keeps, up to the limit; they are invisible from then on,
/// listed as being deleted, and forgotten only under the placement they were claimed with.
pub async fn garbage_collection_claims_only_unreferenced_blobs<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let start = now_millis();
    let referenced = fx.push_blob("suite/app", b"config").await;
    let linked = fx.push_blob("suite/app", b"linked only").await;
    let loose_1 = fx.push_blob("suite/app", b"loose 1").await;
    let loose_2 = fx.push_blob("suite/app", b"loose 2").await;
    assert_eq!(
        fx.put("suite/app", &manifest("{}", &[&referenced], None))
            .await,
        Ok(())
    );
    assert_eq!(fx.unlink("suite/app", &loose_1).await, BlobUnlink::Unlinked);
    assert_eq!(fx.unlink("suite/app", &loose_2).await, BlobUnlink::Unlinked);

    let later = now_millis() + 60_000;
    let now = now_millis();
    assert!(
        fx.claim(start, now, 10).await.is_empty(),
        "all are newer than the cut-off"
    );

    let control = fx.gate.control_write();
    let current = BackupLease {
        id: "current".to_owned(),
        snapshot_at: later,
        created_at: now,
        expires_at: now + 60_000,
    };
    let older = BackupLease {
        id: "older".to_owned(),
        snapshot_at: start - 1,
        created_at: start - 1,
        expires_at: now + 600_000,
    };
    fx.store.put_backup_lease(&control, &current).await.unwrap();
    fx.store.put_backup_lease(&control, &older).await.unwrap();
    assert!(
        fx.claim(later, now, 10).await.is_empty(),
        "the current backup's snapshot keeps them"
    );

    // At its expiry the current lease no longer keeps anything; the older one keeps nothing newer.
    let lapsed = current.expires_at;
    let first = fx.claim(later, lapsed, 1).await;
    assert_eq!(first.len(), 1);
    let rest = fx.claim(later, lapsed, 10).await;
    assert_eq!(rest.len(), 1);
    let claimed = by_digest_text([first, rest].concat());
    assert_eq!(
        claimed,
        by_digest_text(vec![loose_1.clone(), loose_2.clone()])
    );
    assert!(fx.claim(later, lapsed, 10).await.is_empty());

    assert_eq!(fx.store.live_blob(&loose_1.digest).await.unwrap(), None);
    let all = Page {
        last: None,
        limit: 100,
    };
    assert_eq!(
        fx.store.live_blobs(all).await.unwrap(),
        by_digest_text(vec![referenced.clone(), linked.clone()])
    );
    let being_deleted = fx.store.blobs_being_deleted(10).await.unwrap();
    assert_eq!(by_digest_text(being_deleted), claimed);
    assert_eq!(fx.store.blobs_being_deleted(1).await.unwrap().len(), 1);
    assert!(
        fx.store
            .storage_key_in_use(&loose_1.storage_key)
            .await
            .unwrap()
    );

    let permit = fx.permit().await;
    let other_placement = StorageKey::for_new_placement(&loose_2.digest);
    fx.store
        .forget_deleted_blob(&permit, &loose_2.digest, &other_placement)
        .await
        .unwrap();
    let being_deleted = fx.store.blobs_being_deleted(10).await.unwrap();
    assert_eq!(
        by_digest_text(being_deleted),
        claimed,
        "another placement is not forgotten"
    );
    fx.store
        .forget_deleted_blob(&permit, &loose_1.digest, &loose_1.storage_key)
        .await
        .unwrap();
    assert_eq!(fx.store.blobs_being_deleted(10).await.unwrap(), [loose_2]);
    assert!(
        !fx.store
            .storage_key_in_use(&loose_1.storage_key)
            .await
            .unwrap()
    );
    // Forgetting a live blob does nothing.
    fx.store
        .forget_deleted_blob(&permit, &linked.digest, &linked.storage_key)
        .await
        .unwrap();
    assert_eq!(
        fx.store.live_blob(&linked.digest).await.unwrap(),
        Some(linked)
    );
    assert_eq!(
        fx.store.live_blob(&referenced.digest).await.unwrap(),
        Some(referenced)
    );
}

/// A blob uploaded again while being deleted takes a new placement (the old copy is not
/// reused) and is live again; the collector finishing the old placement forgets nothing.
pub async fn a_blob_revived_by_a_new_placement_is_not_forgotten<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let content = b"layer";
    let old = fx.push_blob("suite/app", content).await;
    assert_eq!(fx.unlink("suite/app", &old).await, BlobUnlink::Unlinked);
    let later = now_millis() + 60_000;
    assert_eq!(
        fx.claim(later, now_millis(), 10).await,
        slice::from_ref(&old)
    );

    let now = now_millis();
    let session = fx.open_session("suite/app", "client", now, now).await;
    let permit = fx.permit().await;
    let size = content.len() as u64;
    let completion = fx
        .store
        .complete_upload(&permit, &session.id, 0, &old.digest, size, None)
        .await
        .unwrap();
    assert_eq!(
        completion,
        UploadCompletion::ContentNeeded,
        "a copy being deleted is not reused"
    );
    let revived = fx.complete(&session, 0, content).await;
    assert_ne!(revived.storage_key, old.storage_key);
    assert!(fx.store.blobs_being_deleted(10).await.unwrap().is_empty());
    assert_eq!(
        fx.in_repository("suite/app", &old).await,
        Some(revived.clone())
    );

    fx.store
        .forget_deleted_blob(&permit, &old.digest, &old.storage_key)
        .await
        .unwrap();
    assert_eq!(
        fx.store.live_blob(&old.digest).await.unwrap(),
        Some(revived.clone())
    );
    assert!(!fx.store.storage_key_in_use(&old.storage_key).await.unwrap());
    assert!(
        fx.store
            .storage_key_in_use(&revived.storage_key)
            .await
            .unwrap()
    );
}

// ---- The gate's commit point ----

/// A write whose permit was cancelled (before or after it was admitted) fails as refused and
/// commits nothing, whichever kind of write it is.
pub async fn a_cancelled_write_fails_and_commits_nothing<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let now = now_millis();
    let session = fx.open_session("suite/app", "client", now, now).await;
    let config = fx.push_blob("suite/app", b"config").await;
    let loose = fx.push_blob("suite/app", b"loose").await;
    assert_eq!(fx.unlink("suite/app", &loose).await, BlobUnlink::Unlinked);
    let tagged = manifest(r#"{"tagged":1}"#, &[&config], Some("v1"));
    assert_eq!(fx.put("suite/app", &tagged).await, Ok(()));

    // A second gate over the same store, cancelled as a shutdown past its grace period does.
    let gate = open_gate(&fx.store).await;
    let admitted_before = gate
        .admit(WriteIntent::Housekeeping { job: "suite" })
        .await
        .unwrap();
    gate.cancel_all();
    let admitted_after = gate
        .admit(WriteIntent::Housekeeping { job: "suite" })
        .await
        .unwrap();
    for permit in [&admitted_before, &admitted_after] {
        assert_eq!(permit.check(), Err(WriteRefused::Cancelled));
    }
    let app = repo("suite/app");
    let permit = &admitted_before;

    let new_session = UploadSession {
        id: UploadId::generate(),
        ..session.clone()
    };
    refused(fx.store.open_upload(&admitted_after, &new_session).await);
    assert_eq!(fx.store.upload(&new_session.id).await.unwrap(), None);
    refused(
        fx.store
            .record_upload_progress(permit, &session.id, 0, 5, 5, b"five")
            .await,
    );
    refused(
        fx.store
            .record_upload_progress_with_storage(permit, &session.id, 0, 5, 5, b"five", "parts")
            .await,
    );
    let digest = Digest::sha256_of(b"never committed");
    let key = StorageKey::for_new_placement(&digest);
    refused(
        fx.store
            .complete_upload(permit, &session.id, 0, &digest, 15, Some(&key))
            .await,
    );
    refused(fx.store.delete_upload(permit, &session.id).await);
    assert_eq!(fx.store.upload(&session.id).await.unwrap(), Some(session));
    assert_eq!(fx.store.live_blob(&digest).await.unwrap(), None);

    let untagged = manifest(r#"{"refused":1}"#, &[&config], Some("v2"));
    refused(fx.store.put_manifest(permit, &app, &untagged).await);
    assert_eq!(fx.by_digest("suite/app", &untagged.digest).await, None);
    assert_eq!(fx.by_tag("suite/app", "v2").await, None);
    refused(fx.store.delete_tag(permit, &app, &tag("v1")).await);
    refused(fx.store.delete_manifest(permit, &app, &tagged.digest).await);
    assert_eq!(fx.by_tag("suite/app", "v1").await, Some(record(&tagged)));
    refused(fx.store.unlink_blob(permit, &app, &config.digest).await);
    assert_eq!(fx.in_repository("suite/app", &config).await, Some(config));

    refused(
        fx.store
            .claim_unreferenced_blobs(permit, Millis::MAX, now_millis(), 10)
            .await,
    );
    assert_eq!(
        fx.store.live_blob(&loose.digest).await.unwrap(),
        Some(loose)
    );
    refused(fx.store.create_user(permit, &user("alice", false)).await);
    assert_eq!(fx.store.user("alice").await.unwrap(), None);

    // The registry's own gate was not cancelled: its writes go on.
    assert_eq!(
        fx.store
            .create_user(&fx.permit().await, &user("alice", false))
            .await
            .unwrap(),
        AccountChange::Done
    );
}

// ---- Accounts ----

/// A user reads back as created, its name is free of users and organizations, updates change
/// only what they name, and a deleted user is gone; the first superuser is bootstrapped only
/// while there is none.
pub async fn users_are_created_updated_and_deleted<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let permit = fx.permit().await;
    let control = fx.gate.control_write();
    let alice = user("alice", false);
    assert_eq!(
        fx.store
            .create_user(&permit, &user("carol", false))
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        fx.store.create_user(&permit, &alice).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(fx.store.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.store.user("nobody").await.unwrap(), None);
    let names: Vec<String> = fx
        .store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "carol"]);
    let impostor = UserRecord {
        password_hash: "other".to_owned(),
        ..alice.clone()
    };
    assert_eq!(
        fx.store.create_user(&permit, &impostor).await.unwrap(),
        AccountChange::Taken("user")
    );
    assert_eq!(fx.store.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(
        fx.store
            .create_organization(&permit, "alice")
            .await
            .unwrap(),
        AccountChange::Taken("user")
    );
    assert_eq!(
        fx.store.create_organization(&permit, "acme").await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        fx.store
            .create_user(&permit, &user("acme", false))
            .await
            .unwrap(),
        AccountChange::Taken("organization")
    );
    assert_eq!(fx.store.user("acme").await.unwrap(), None);

    assert!(!fx.store.has_superuser().await.unwrap());
    assert!(
        fx.store
            .update_user(&permit, "alice", Some("new-hash"), None)
            .await
            .unwrap()
    );
    let updated = fx.store.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (
            updated.password_hash.as_str(),
            updated.superuser,
            updated.created_at
        ),
        ("new-hash", false, alice.created_at)
    );
    assert!(
        fx.store
            .update_user(&permit, "alice", None, Some(true))
            .await
            .unwrap()
    );
    let updated = fx.store.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (updated.password_hash.as_str(), updated.superuser),
        ("new-hash", true)
    );
    assert!(fx.store.has_superuser().await.unwrap());
    assert!(
        !fx.store
            .update_user(&permit, "nobody", Some("x"), None)
            .await
            .unwrap()
    );
    assert_eq!(fx.store.user("nobody").await.unwrap(), None);

    // Another replica made a superuser first: bootstrapping makes none.
    let admin = user("admin", true);
    assert!(
        !fx.store
            .bootstrap_superuser(&control, &admin)
            .await
            .unwrap()
    );
    assert_eq!(fx.store.user("admin").await.unwrap(), None);

    assert!(fx.store.delete_user(&permit, "alice").await.unwrap());
    assert!(!fx.store.delete_user(&permit, "alice").await.unwrap());
    assert_eq!(fx.store.user("alice").await.unwrap(), None);
    assert!(!fx.store.has_superuser().await.unwrap());

    assert!(
        fx.store
            .bootstrap_superuser(&control, &admin)
            .await
            .unwrap()
    );
    assert_eq!(fx.store.user("admin").await.unwrap(), Some(admin));
    assert!(fx.store.has_superuser().await.unwrap());
    assert!(
        !fx.store
            .bootstrap_superuser(&control, &user("root", true))
            .await
            .unwrap()
    );
    assert_eq!(fx.store.user("root").await.unwrap(), None);
}

/// Organizations own teams and robots: a team or robot needs its organization, a team's role
/// can change, members are users or robots of the same organization, and deleting a team, a
/// robot or an organization takes what depends on it.
pub async fn organizations_teams_and_robots<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let permit = fx.permit().await;
    let s = &fx.store;
    assert_eq!(
        s.create_organization(&permit, "beta").await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_organization(&permit, "acme").await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_organization(&permit, "acme").await.unwrap(),
        AccountChange::Taken("organization")
    );
    assert_eq!(s.organizations().await.unwrap(), ["acme", "beta"]);
    assert_eq!(
        s.create_user(&permit, &user("alice", false)).await.unwrap(),
        AccountChange::Done
    );

    assert!(matches!(
        s.put_team(&permit, "nowhere", "devs", Role::Write)
            .await
            .unwrap(),
        AccountChange::Missing(_)
    ));
    assert!(s.teams("nowhere").await.unwrap().is_empty());
    assert_eq!(
        s.put_team(&permit, "acme", "devs", Role::Read)
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.put_team(&permit, "acme", "devs", Role::Write)
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.put_team(&permit, "acme", "admins", Role::Admin)
            .await
            .unwrap(),
        AccountChange::Done
    );

    let ci = robot("acme", "ci");
    let bot = robot("beta", "bot");
    assert_eq!(
        s.create_robot(&permit, &ci).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_robot(&permit, &bot).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_robot(&permit, &ci).await.unwrap(),
        AccountChange::Taken("robot")
    );
    assert!(matches!(
        s.create_robot(&permit, &robot("nowhere", "bot"))
            .await
            .unwrap(),
        AccountChange::Missing(_)
    ));
    assert_eq!(s.robot("nowhere+bot").await.unwrap(), None);
    assert_eq!(s.robot("acme+ci").await.unwrap(), Some(ci.clone()));
    assert_eq!(s.robots(Some("acme")).await.unwrap(), slice::from_ref(&ci));
    assert_eq!(s.robots(None).await.unwrap(), [ci.clone(), bot.clone()]);

    for member in ["alice", "acme+ci"] {
        assert_eq!(
            s.add_team_member(&permit, "acme", "devs", member)
                .await
                .unwrap(),
            AccountChange::Done
        );
    }
    for (team, member) in [
        ("devs", "beta+bot"),
        ("devs", "nobody"),
        ("nosuch", "alice"),
    ] {
        assert!(
            matches!(
                s.add_team_member(&permit, "acme", team, member)
                    .await
                    .unwrap(),
                AccountChange::Missing(_)
            ),
            "{member} joining {team}"
        );
    }
    assert_eq!(
        s.teams("acme").await.unwrap(),
        [
            TeamRecord {
                organization: "acme".to_owned(),
                name: "admins".to_owned(),
                role: Role::Admin,
                members: vec![],
            },
            TeamRecord {
                organization: "acme".to_owned(),
                name: "devs".to_owned(),
                role: Role::Write,
                members: vec!["acme+ci".to_owned(), "alice".to_owned()],
            },
        ]
    );
    assert_eq!(
        s.team_roles("alice").await.unwrap(),
        [("acme".to_owned(), Role::Write)]
    );
    assert!(
        s.remove_team_member(&permit, "acme", "devs", "alice")
            .await
            .unwrap()
    );
    assert!(
        !s.remove_team_member(&permit, "acme", "devs", "alice")
            .await
            .unwrap()
    );
    assert!(s.team_roles("alice").await.unwrap().is_empty());

    assert!(
        s.update_robot(&permit, "acme+ci", Some("f00d"), Some(true))
            .await
            .unwrap()
    );
    let updated = s.robot("acme+ci").await.unwrap().unwrap();
    assert_eq!(
        (
            updated.token_hash.as_str(),
            updated.admin,
            updated.description.as_str()
        ),
        ("f00d", true, ci.description.as_str())
    );
    assert!(
        !s.update_robot(&permit, "acme+nobody", None, Some(true))
            .await
            .unwrap()
    );

    assert_eq!(
        s.put_team(&permit, "beta", "ops", Role::Read)
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.add_team_member(&permit, "beta", "ops", "beta+bot")
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert!(s.delete_team(&permit, "beta", "ops").await.unwrap());
    assert!(!s.delete_team(&permit, "beta", "ops").await.unwrap());
    assert!(s.teams("beta").await.unwrap().is_empty());
    assert!(s.team_roles("beta+bot").await.unwrap().is_empty());
    assert!(s.delete_robot(&permit, "beta+bot").await.unwrap());
    assert!(!s.delete_robot(&permit, "beta+bot").await.unwrap());
    assert_eq!(s.robot("beta+bot").await.unwrap(), None);

    assert_eq!(
        s.put_grant(&permit, &grant("acme/app", "acme+ci", Role::Read))
            .await
            .unwrap(),
        AccountChange::Done
    );
    assert!(s.delete_organization(&permit, "acme").await.unwrap());
    assert!(!s.delete_organization(&permit, "acme").await.unwrap());
    assert_eq!(s.organizations().await.unwrap(), ["beta"]);
    assert!(s.teams("acme").await.unwrap().is_empty());
    assert_eq!(s.robot("acme+ci").await.unwrap(), None);
    assert!(s.robots(None).await.unwrap().is_empty());
    assert!(s.team_roles("acme+ci").await.unwrap().is_empty());
    assert!(s.grants_of("acme+ci").await.unwrap().is_empty());
    assert!(
        s.user("alice").await.unwrap().is_some(),
        "users outlive organizations"
    );
}

/// A grant needs an existing user or robot and replaces the role it had; grants are found by
/// principal and by repository and go with their principal; visibility rules are set, replaced
/// and removed by pattern.
pub async fn grants_and_visibility_rules<S: MetadataStore>(store: Arc<S>) {
    let fx = Fixture::new(store).await;
    let permit = fx.permit().await;
    let s = &fx.store;
    assert_eq!(
        s.create_user(&permit, &user("alice", false)).await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_organization(&permit, "acme").await.unwrap(),
        AccountChange::Done
    );
    assert_eq!(
        s.create_robot(&permit, &robot("acme", "ci")).await.unwrap(),
        AccountChange::Done
    );

    assert!(matches!(
        s.put_grant(&permit, &grant("acme/app", "nobody", Role::Read))
            .await
            .unwrap(),
        AccountChange::Missing(_)
    ));
    assert!(s.grants_on("acme/app").await.unwrap().is_empty());
    for g in [
        grant("acme/app", "alice", Role::Read),
        grant("acme/app", "acme+ci", Role::Write),
        grant("acme/lib", "alice", Role::Admin),
        grant("acme/app", "alice", Role::Write),
    ] {
        assert_eq!(s.put_grant(&permit, &g).await.unwrap(), AccountChange::Done);
    }
    let sorted = |mut grants: Vec<GrantRecord>| {
        grants.sort_by(|a, b| (&a.repository, &a.principal).cmp(&(&b.repository, &b.principal)));
        grants
    };
    assert_eq!(
        sorted(s.grants_on("acme/app").await.unwrap()),
        [
            grant("acme/app", "acme+ci", Role::Write),
            grant("acme/app", "alice", Role::Write)
        ]
    );
    assert_eq!(
        sorted(s.grants_of("alice").await.unwrap()),
        [
            grant("acme/app", "alice", Role::Write),
            grant("acme/lib", "alice", Role::Admin)
        ]
    );
    assert!(s.delete_grant(&permit, "acme/lib", "alice").await.unwrap());
    assert!(!s.delete_grant(&permit, "acme/lib", "alice").await.unwrap());
    assert_eq!(
        s.grants_of("alice").await.unwrap(),
        [grant("acme/app", "alice", Role::Write)]
    );

    assert!(s.delete_user(&permit, "alice").await.unwrap());
    assert!(s.grants_of("alice").await.unwrap().is_empty());
    assert_eq!(
        s.grants_on("acme/app").await.unwrap(),
        [grant("acme/app", "acme+ci", Role::Write)]
    );
    assert!(s.delete_robot(&permit, "acme+ci").await.unwrap());
    assert!(s.grants_on("acme/app").await.unwrap().is_empty());

    let rule = |pattern: &str, public| VisibilityRule {
        pattern: pattern.to_owned(),
        public,
    };
    s.put_visibility(&permit, &rule("acme/*", true))
        .await
        .unwrap();
    s.put_visibility(&permit, &rule("acme/app", false))
        .await
        .unwrap();
    s.put_visibility(&permit, &rule("acme/*", false))
        .await
        .unwrap();
    let rules = || async {
        let mut rules = s.visibility_rules().await.unwrap();
        rules.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        rules
    };
    assert_eq!(
        rules().await,
        [rule("acme/*", false), rule("acme/app", false)]
    );
    assert!(s.delete_visibility(&permit, "acme/app").await.unwrap());
    assert!(!s.delete_visibility(&permit, "acme/app").await.unwrap());
    assert_eq!(rules().await, [rule("acme/*", false)]);
}

/// The UI's listing: only repositories holding a manifest; sizes count each blob once per
/// repository and drop what a deleted manifest alone referenced; sorted by name, last push and
/// size, searched with `LIKE`'s wildcards taken literally, and paged after a cursor without
/// skipping or repeating; tags come with their manifest's size.
pub async fn repositories_are_browsed_by_name_push_and_size_in_pages<S: MetadataStore>(
    store: Arc<S>,
) {
    use crate::browse::{RepositoryQuery, RepositorySort};
    let fx = Fixture::new(store).await;
    let config = fx.push_blob("browse/big", b"config").await;
    let layer = fx.push_blob("browse/big", &[7u8; 1000]).await;
    let one = manifest(r#"{"big":1}"#, &[&config, &layer], Some("v1"));
    let two = manifest(r#"{"big":2}"#, &[&config, &layer], Some("v2"));
    assert_eq!(fx.put("browse/big", &one).await, Ok(()));
    assert_eq!(fx.put("browse/big", &two).await, Ok(()));
    let small = manifest(r#"{"s":1}"#, &[], Some("latest"));
    assert_eq!(fx.put("browse/sm_all", &small).await, Ok(()));
    let later = manifest(r#"{"later":1}"#, &[], Some("x"));
    assert_eq!(fx.put("browse/later", &later).await, Ok(()));
    // Uploaded into, never pushed to: not listed.
    fx.push_blob("browse/empty", b"alone").await;

    let store = Arc::clone(&fx.store);
    let browse =
        |sort, search: &'static str, after: Option<crate::browse::RepositoryCursor>, limit| {
            let store = Arc::clone(&store);
            async move {
                store
                    .browse_repositories(&RepositoryQuery {
                        sort,
                        search,
                        after: after.as_ref(),
                        limit,
                    })
                    .await
                    .unwrap()
            }
        };
    let names = |list: &[crate::browse::RepositorySummary]| {
        list.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    let all = browse(RepositorySort::Name, "browse/", None, 10).await;
    assert_eq!(names(&all), ["browse/big", "browse/later", "browse/sm_all"]);
    let big = &all[0];
    let manifests_size = (one.content.len() + two.content.len()) as u64;
    assert_eq!(
        big.size,
        manifests_size + 6 + 1000,
        "each blob counted once"
    );
    assert_eq!((big.manifests, big.tags), (2, 2));

    let by_size = browse(RepositorySort::Size, "browse/", None, 10).await;
    assert_eq!(by_size[0].name, "browse/big");
    // Pages of one, each after the last, give the same order as one page.
    for sort in [
        RepositorySort::Name,
        RepositorySort::LastPush,
        RepositorySort::Size,
    ] {
        let whole = browse(sort, "browse/", None, 10).await;
        let mut paged = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let page = browse(sort, "browse/", cursor.clone(), 1).await;
            let Some(last) = page.last() else { break };
            cursor = Some(last.cursor(sort));
            paged.extend(page);
        }
        assert_eq!(names(&paged), names(&whole), "{sort:?}");
    }
    let pushes: Vec<_> = browse(RepositorySort::LastPush, "browse/", None, 10)
        .await
        .iter()
        .map(|r| r.last_push_at)
        .collect();
    assert!(pushes.windows(2).all(|w| w[0] >= w[1]), "{pushes:?}");

    // `_` is a character, not a wildcard.
    assert_eq!(
        names(&browse(RepositorySort::Name, "sm_a", None, 10).await),
        ["browse/sm_all"]
    );
    assert!(
        browse(RepositorySort::Name, "m_a_", None, 10)
            .await
            .is_empty()
    );

    let tags = fx
        .store
        .browse_tags(
            &repo("browse/big"),
            Page {
                last: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0].name, "v1");
    assert_eq!(tags[0].digest, one.digest);
    assert_eq!(tags[0].size, one.content.len() as u64 + 1006);
    assert!(
        fx.store
            .browse_tags(
                &repo("browse/none"),
                Page {
                    last: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_none()
    );
    // Deleting one manifest keeps the shared blobs counted; deleting both leaves it unlisted.
    let permit = fx.permit().await;
    let big_repo = repo("browse/big");
    let deletion = fx.store.delete_manifest(&permit, &big_repo, &one.digest);
    assert_eq!(deletion.await.unwrap(), ManifestDeletion::Deleted);
    let big = browse(RepositorySort::Name, "browse/big", None, 10).await;
    assert_eq!(big[0].size, two.content.len() as u64 + 1006);
    let deletion = fx.store.delete_manifest(&permit, &big_repo, &two.digest);
    assert_eq!(deletion.await.unwrap(), ManifestDeletion::Deleted);
    assert!(
        browse(RepositorySort::Name, "browse/big", None, 10)
            .await
            .is_empty()
    );
}

/// Browsing at scale: not part of [`store_suite!`](crate::store_suite), since the caller fills
/// the store with its own SQL connection and then looks at its query plans.
pub mod scale {
    use crate::MetadataStore;

    /// How many repositories [`FILL_REPOSITORIES`] makes: the scale the web UI promises pages at.
    pub const SCALE_REPOSITORIES: i64 = 100_000;

    /// SQL both backends run to fill an empty store with [`SCALE_REPOSITORIES`] repositories
    /// (`team-100001/app` …) and their statistics, as the triggers would keep them, in
    /// milliseconds where pushing them through the store would take minutes. The last push and the
    /// size are scrambled by [`scale_key`], so that the three orders differ.
    pub const FILL_REPOSITORIES: [&str; 2] = [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO repositories (name, created_at) SELECT 'team-' || (100000 + i) || '/app', i FROM n",
        "INSERT INTO repository_stats (repository_id, last_push_at, size, manifests)
         SELECT id, (id * 7919) % 100003, (id * 104729) % 1000003, 1 FROM repositories",
    ];

    /// The last push (`multiplier` 7919, modulus 100003) or size (104729, 1000003) that
    /// [`FILL_REPOSITORIES`] gives repository `id`.
    pub fn scale_key(id: i64, multiplier: i64, modulus: i64) -> i64 {
        (id * multiplier) % modulus
    }

    /// Walks every page of the [`FILL_REPOSITORIES`] store in each order, 1,000 at a time, and
    /// checks that the pages continue exactly: every repository once, in the order asked for, each
    /// page starting right after the last one's cursor. Returns the cursor of the last full page
    /// of each order, for the caller to look at the plan of a deep page.
    pub async fn deep_repository_pages_continue_exactly<S: MetadataStore>(
        store: &S,
    ) -> Vec<(
        crate::browse::RepositorySort,
        crate::browse::RepositoryCursor,
    )> {
        use crate::browse::{RepositoryQuery, RepositorySort};
        let mut deep = Vec::new();
        for sort in [
            RepositorySort::Name,
            RepositorySort::LastPush,
            RepositorySort::Size,
        ] {
            let mut seen = Vec::new();
            let mut after = None;
            let mut last_full = None;
            loop {
                let page = store
                    .browse_repositories(&RepositoryQuery {
                        sort,
                        search: "",
                        after: after.as_ref(),
                        limit: 1000,
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                let cursor = last.cursor(sort);
                if page.len() == 1000 && seen.len() + 1000 < SCALE_REPOSITORIES as usize {
                    last_full = Some(cursor.clone());
                }
                seen.extend(
                    page.into_iter()
                        .map(|r| (r.id, r.name, r.last_push_at, r.size)),
                );
                after = Some(cursor);
            }
            assert_eq!(seen.len(), SCALE_REPOSITORIES as usize, "{sort:?}");
            let mut expected = seen.clone();
            match sort {
                RepositorySort::Name => expected.sort_by(|a, b| a.1.cmp(&b.1)),
                // The greatest first, ties by id, greatest first.
                _ => expected.sort_by_key(|r| {
                    let key = if sort == RepositorySort::LastPush {
                        r.2
                    } else {
                        r.3 as i64
                    };
                    std::cmp::Reverse((key, r.0))
                }),
            }
            assert!(seen == expected, "{sort:?}: the pages are out of order");
            for (id, _, last_push, size) in &seen {
                assert_eq!(*last_push, scale_key(*id, 7919, 100_003));
                assert_eq!(*size as i64, scale_key(*id, 104_729, 1_000_003));
            }
            deep.push((sort, last_full.unwrap()));
        }
        deep
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// A behaviour the macro does not list would silently run for no backend.
    #[test]
    fn the_macro_runs_every_behaviour() {
        let defined: BTreeSet<&str> = include_str!("suite.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split(['<', '(']).next())
            .collect();
        let listed: BTreeSet<&str> = crate::store_suite!(@with_behaviours names)
            .into_iter()
            .collect();
        assert_eq!(listed, defined);
    }
}
