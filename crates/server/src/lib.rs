//! Wharf's HTTP server: the OCI Distribution API, the admin API, the token endpoint and health
//! checks over the [registry](wharf_registry), with TLS, and [`serve`] — run it all on a listener
//! until a shutdown future resolves (tests run it in process on `127.0.0.1:0`).
//!
//! # Layout
//!
//! - [`server`]: [`serve`] — lock the data folder, open the registry, set up authentication,
//!   serve, run the gate's controller and background garbage collection, follow the
//!   configuration file and the TLS files, shut down.
//! - [`api`]: the HTTP layer (the `/v2/` Distribution API, `/api/v1` admin API, `/auth/token`,
//!   health), thin: parse, call, map.
//! - [`connections`]: the accept loop — at most `server.max_connections` at once, headers and
//!   TLS handshakes within `server.header_read_timeout`, idle connections closed after
//!   `server.idle_timeout` — and graceful shutdown of the connections.
//! - [`tls`]: HTTPS, with certificates re-read when their files change.
//! - `key_files`: the token signing key files, re-read when they change.
//!
//! # Errors
//!
//! Request-path code returns [`RegistryError`](wharf_registry::RegistryError), the one error
//! type that becomes an HTTP response (an OCI error body, `api::errors`). The stores have their
//! own small error types, converted into it. Binaries use `anyhow` on top.

pub mod api;
pub mod connections;
mod key_files;
pub mod server;
pub mod tls;

pub use server::{ServeError, ServeOptions, serve, serve_with};
