//! SQLite's query planner stability guarantee, switched on for every connection.
//!
//! Without it, SQLite reads the value bound to a `LIMIT $n` while planning (to size the
//! result) and marks the statement as depending on that value: binding the parameter again
//! expires the prepared statement, so every execution of a listing (`… LIMIT $3`) parsed and
//! planned its SQL anew, even from sqlx's statement cache. A tags list spent more time being
//! re-prepared than being run. With the guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) a statement's
//! plan never depends on bound values, so a cached statement stays prepared. Wharf's queries
//! have one good plan whatever the values (covering indexes, no `ANALYZE` statistics), so
//! nothing is lost.

use sqlx::SqliteConnection;

/// Switches the guarantee on for `connection`.
#[allow(unsafe_code)]
pub(crate) async fn enable(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut now_enabled: std::ffi::c_int = 0;
    // SAFETY: `db` is this connection's open handle, held locked away from its worker thread
    // while `handle` lives; the option takes an int and a pointer to an int, as passed.
    let status = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut now_enabled as *mut std::ffi::c_int,
        )
    };
    if status != libsqlite3_sys::SQLITE_OK || now_enabled != 1 {
        return Err(sqlx::Error::Configuration(
            format!("SQLite refused its query planner stability guarantee (status {status})")
                .into(),
        ));
    }
    Ok(())
}

/// Whether `connection` has the guarantee on (asked with -1, which changes nothing).
#[cfg(test)]
#[allow(unsafe_code)]
async fn is_enabled(connection: &mut SqliteConnection) -> bool {
    let mut handle = connection.lock_handle().await.unwrap();
    let db = handle.as_raw_handle().as_ptr();
    let mut enabled: std::ffi::c_int = -1;
    // SAFETY: as in `enable`.
    let status = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            -1 as std::ffi::c_int,
            &mut enabled as *mut std::ffi::c_int,
        )
    };
    assert_eq!(status, libsqlite3_sys::SQLITE_OK);
    enabled == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn every_store_connection_has_the_planner_stability_guarantee() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        assert!(is_enabled(&mut store.reader.acquire().await.unwrap()).await);
        assert!(is_enabled(&mut store.writer.acquire().await.unwrap()).await);

        // A connection of its own, without the option: SQLite's default is off, so the check
        // above can fail.
        let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
        let mut plain = SqliteConnection::connect(&url).await.unwrap();
        assert!(!is_enabled(&mut plain).await);
        enable(&mut plain).await.unwrap();
        assert!(is_enabled(&mut plain).await);
    }
}
