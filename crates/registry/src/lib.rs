//! Wharf, a container image registry: the OCI Distribution API over a metadata database and blob
//! storage, with one write gate that every write passes through.
//!
//! # Layout
//!
//! - [`server`]: [`serve`] — run the registry on a listener until a shutdown future resolves.
//! - [`api`]: the HTTP layer (the `/v2/` Distribution API, health), thin: parse, call, map.
//! - [`registry`]: the domain logic — blobs, uploads, manifests, tags, referrers, garbage
//!   collection, fsck — as methods of [`Registry`].
//! - [`auth`]: accounts, logins, tokens and permissions.
//! - [`gate`]: the write gate; every mutation holds a [`gate::WritePermit`].
//! - [`metadata`]: the metadata store trait and its SQLite implementation.
//! - [`storage`]: blob storage on `object_store`, and upload staging.
//! - [`backup`]: consistent online backups (snapshot, lease, copy), verification, restore.
//! - [`config`]: loading and validating the configuration.
//! - [`tls`]: HTTPS, with certificates re-read when their files change.
//! - [`digest`], [`reference`], [`manifest`], [`upload_id`]: parsing and validating what clients
//!   send.
//!
//! # Errors
//!
//! Request-path code returns [`RegistryError`], the one error type that becomes an HTTP response
//! (an OCI error body). The stores have their own small error types, converted into it. Binaries
//! use `anyhow` on top.

pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod digest;
pub mod failpoint;
pub mod gate;
pub mod manifest;
pub mod metadata;
pub mod metrics;
pub mod reference;
pub mod registry;
pub mod server;
pub mod storage;
pub mod tls;
pub mod upload_id;

pub use config::Config;
pub use registry::{Registry, RegistryError};
pub use server::{ServeError, ServeOptions, serve, serve_with};
