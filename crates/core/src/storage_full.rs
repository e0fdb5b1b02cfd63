//! Telling a full disk (or an exhausted quota) apart from other failures, wherever in an error's
//! chain of sources the operating system's answer sits: the registry answers it with `507` and
//! a message that says what to do, instead of an internal error.

use std::error::Error;
use std::io;

/// `ENOSPC` and `EDQUOT` on Linux, for errors built from a raw OS code whose kind the standard
/// library does not map.
const NO_SPACE: i32 = 28;
const QUOTA_EXCEEDED: i32 = 122;

/// A store's own report that its storage is full (a database's error code, say), as an error
/// of its own type, so that [`is_storage_full`] recognises it through any wrapping.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageFull(pub String);

/// Whether `error`, or any error it was caused by, is the storage being full.
pub fn is_storage_full(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.downcast_ref::<io::Error>().is_some_and(is_full)
            || error.downcast_ref::<StorageFull>().is_some()
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(NO_SPACE | QUOTA_EXCEEDED))
        // An io::Error wrapping another error (io::Error::other) hides it from `source()`.
        || error
            .get_ref()
            .is_some_and(|inner| is_storage_full(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing the object failed")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn finds_a_full_disk_anywhere_in_the_chain() {
        let full = io::Error::from_raw_os_error(NO_SPACE);
        assert!(is_storage_full(&full));
        assert!(is_storage_full(&Wrapper(io::Error::from_raw_os_error(
            QUOTA_EXCEEDED
        ))));
        assert!(is_storage_full(&io::Error::other(Wrapper(full))));
        assert!(!is_storage_full(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
        assert!(!is_storage_full(&Wrapper(io::Error::other("no"))));
        assert!(is_storage_full(&io::Error::other(StorageFull(
            "database or disk is full".to_owned()
        ))));
    }
}
