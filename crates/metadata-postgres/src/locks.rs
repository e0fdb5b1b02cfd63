//! The advisory locks that stand in for SQLite's one writer where a transaction checks
//! something and then writes on the strength of it. PostgreSQL runs writes concurrently (in
//! `READ COMMITTED`), so a check made by one transaction can be undone by another before the
//! first commits; each lock below serialises exactly the writes whose checks another one could
//! undo, and nothing else. Every lock is a transaction lock (`pg_advisory_xact_lock`): it is
//! released by the commit or the rollback, so a failed transaction cannot leave one behind.
//!
//! Locks are always taken in the order of this list, so two transactions never wait for each
//! other: the blob life cycle, then a repository or a digest. Each statement after the lock runs
//! on a fresh snapshot (`READ COMMITTED`), so it sees everything committed by the transactions
//! the lock waited for.
//!
//! - The **blob life cycle** `(1, 0)`: writes that rely on a blob staying live and linked until
//!   they commit (a manifest referring to it, an upload reusing it, a mount) hold it shared; the
//!   garbage collector's steps that unlink and claim unreferenced blobs hold it exclusively, so
//!   they never claim a blob a manifest being put is about to refer to.
//! - A **repository** `(2, hash of its name)`: putting a manifest, deleting one, unlinking a
//!   blob — each checks what else in the repository refers to what it changes.
//! - A **digest** `(3, hash of the digest)`: completing an upload, which looks for a stored
//!   copy of the content before placing its own.
//! - The **accounts** `(4, 0)`: every account change checks names and memberships that another
//!   change could take or remove; they are rare, so they simply run one at a time.
//! - The **holds** `(5, 0)`: setting a hold reads whether it existed before.
//!
//! A hash collision only makes two unrelated writes wait for each other.

/// The blob life cycle, shared.
pub const BLOBS_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(1, 0)";

/// The blob life cycle, exclusive (the garbage collector).
pub const BLOBS_EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock(1, 0)";

/// The repository `$1`, after the blob life cycle shared: what a manifest put takes.
pub const BLOBS_SHARED_AND_REPOSITORY: &str =
    "SELECT pg_advisory_xact_lock_shared(1, 0), pg_advisory_xact_lock(2, hashtext($1))";

/// The repository `$1`.
pub const REPOSITORY: &str = "SELECT pg_advisory_xact_lock(2, hashtext($1))";

/// The digest `$1`, after the blob life cycle shared: what completing an upload takes.
pub const BLOBS_SHARED_AND_DIGEST: &str =
    "SELECT pg_advisory_xact_lock_shared(1, 0), pg_advisory_xact_lock(3, hashtext($1))";

/// The accounts.
pub const ACCOUNTS: &str = "SELECT pg_advisory_xact_lock(4, 0)";

/// The holds.
pub const HOLDS: &str = "SELECT pg_advisory_xact_lock(5, 0)";
