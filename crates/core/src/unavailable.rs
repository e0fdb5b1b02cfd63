//! Telling a database that cannot be reached (down, restarting, refusing connections, not
//! answering within its timeouts) apart from other failures, wherever in an error's chain of
//! sources a store put it: the registry answers it with `503` and a message saying the metadata
//! database is unreachable — the client may retry — instead of an internal error.

use std::error::Error;

/// A store's report that its database cannot be reached, as an error of its own type, so that
/// [`is_unavailable`] recognises it through any wrapping.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Whether `error`, or any error it was caused by, is a database that cannot be reached.
pub fn is_unavailable(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.downcast_ref::<Unavailable>().is_some() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the holds failed")]
    struct Wrapper(#[source] Unavailable);

    #[test]
    fn finds_an_unreachable_database_anywhere_in_the_chain() {
        assert!(is_unavailable(&Unavailable("connection refused".into())));
        assert!(is_unavailable(&Wrapper(Unavailable("timed out".into()))));
        assert!(!is_unavailable(&std::io::Error::other("no")));
    }
}
