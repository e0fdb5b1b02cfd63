//! Wharf's vocabulary: the values every other crate of the registry speaks in, with no I/O.
//!
//! # Layout
//!
//! - [`digest`]: content digests, and the resumable (serialisable) hasher.
//! - [`reference`]: repository names, tags, references.
//! - [`manifest`]: manifest media types, parsing and validation, `Accept` negotiation.
//! - [`upload_id`]: upload session ids.
//! - [`placement`]: the keys under which blob content is stored.
//! - [`role`]: roles on repositories and the actions they allow.
//! - [`time`]: milliseconds since the Unix epoch, the unit of every stored time.
//! - [`storage_full`]: telling a full disk from other failures.
//! - [`unavailable`]: telling an unreachable database from other failures.
//! - [`failpoint`]: `WHARF_FAILPOINT`, so tests can make the process die at a named step.

pub mod digest;
pub mod failpoint;
pub mod manifest;
pub mod network;
pub mod placement;
pub mod reference;
pub mod role;
pub mod storage_full;
pub mod time;
pub mod unavailable;
pub mod upload_id;
