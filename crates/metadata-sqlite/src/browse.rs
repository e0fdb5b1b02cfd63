//! The web UI's reads ([`wharf_metadata::browse`], whose SQL and code both backends share).

wharf_metadata::browse_reads!(sqlx::SqlitePool, sqlx::Sqlite);
