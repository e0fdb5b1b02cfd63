//! Recognising OCI Distribution routes under `/v2/`.
//!
//! Repository names contain `/` and may even contain `blobs`, `manifests` or `tags` as path
//! components (`a/blobs/b`, `x/manifests`), so routes are recognised from the right: the last one
//! to three segments say which endpoint it is, and everything before them is the name.

use wharf_core::reference::{NameError, RepositoryName};

/// An endpoint of the Distribution API, with the parts of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, String),
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NotFound,
    /// The shape is an endpoint's, but the repository name is invalid.
    Name(NameError),
}

/// Recognises the part of a path after `/v2/` (already percent-decoded segment by segment).
pub fn recognize(segments: &[&str]) -> Result<Route, RouteError> {
    let n = segments.len();
    let name = |end: usize| -> Result<RepositoryName, RouteError> {
        segments[..end].join("/").parse().map_err(RouteError::Name)
    };
    let tail = |k: usize| segments[n - k];
    match segments {
        [] | [""] => return Ok(Route::Base),
        ["_catalog"] => return Ok(Route::Catalog),
        _ => {}
    }
    if n >= 3 && tail(2) == "tags" && tail(1) == "list" {
        return Ok(Route::Tags(name(n - 2)?));
    }
    if n >= 4 && tail(3) == "blobs" && tail(2) == "uploads" {
        let id = tail(1);
        return Ok(if id.is_empty() {
            Route::UploadStart(name(n - 3)?)
        } else {
            Route::Upload(name(n - 3)?, id.to_owned())
        });
    }
    if n >= 3 && tail(2) == "blobs" && tail(1) == "uploads" {
        return Ok(Route::UploadStart(name(n - 2)?));
    }
    if n >= 3 && !tail(1).is_empty() {
        let last = tail(1).to_owned();
        match tail(2) {
            "manifests" => return Ok(Route::Manifest(name(n - 2)?, last)),
            "blobs" => return Ok(Route::Blob(name(n - 2)?, last)),
            "referrers" => return Ok(Route::Referrers(name(n - 2)?, last)),
            _ => {}
        }
    }
    Err(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(path: &str) -> Result<Route, RouteError> {
        let segments: Vec<&str> = path.split('/').collect();
        recognize(&segments)
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[test]
    fn recognizes_every_endpoint() {
        assert_eq!(route(""), Ok(Route::Base));
        assert_eq!(route("_catalog"), Ok(Route::Catalog));
        assert_eq!(route("a/b/tags/list"), Ok(Route::Tags(name("a/b"))));
        assert_eq!(
            route("a/manifests/latest"),
            Ok(Route::Manifest(name("a"), "latest".into()))
        );
        assert_eq!(
            route("a/blobs/sha256:x"),
            Ok(Route::Blob(name("a"), "sha256:x".into()))
        );
        assert_eq!(route("a/blobs/uploads/"), Ok(Route::UploadStart(name("a"))));
        assert_eq!(route("a/blobs/uploads"), Ok(Route::UploadStart(name("a"))));
        assert_eq!(
            route("a/blobs/uploads/id1"),
            Ok(Route::Upload(name("a"), "id1".into()))
        );
        assert_eq!(
            route("a/referrers/sha256:x"),
            Ok(Route::Referrers(name("a"), "sha256:x".into()))
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            route("a/blobs/b/blobs/d"),
            Ok(Route::Blob(name("a/blobs/b"), "d".into()))
        );
        assert_eq!(
            route("x/manifests/manifests/v1"),
            Ok(Route::Manifest(name("x/manifests"), "v1".into()))
        );
        assert_eq!(
            route("x/manifests/tags/list"),
            Ok(Route::Tags(name("x/manifests")))
        );
        assert_eq!(route("tags/tags/list"), Ok(Route::Tags(name("tags"))));
        assert_eq!(
            route("a/blobs/uploads/blobs/uploads/"),
            Ok(Route::UploadStart(name("a/blobs/uploads")))
        );
        assert_eq!(
            route("a/blobs/uploads/blobs/uploads/u"),
            Ok(Route::Upload(name("a/blobs/uploads"), "u".into()))
        );
        assert_eq!(
            route("x/referrers/tags/list"),
            Ok(Route::Tags(name("x/referrers")))
        );
    }

    #[test]
    fn rejects_shapes_and_names() {
        for path in [
            "tags/list",
            "manifests/x",
            "a",
            "a/b",
            "a/blobs/",
            "a/manifests/",
            "a/unknown/x",
            "_catalog/x",
        ] {
            assert_eq!(route(path), Err(RouteError::NotFound), "{path:?}");
        }
        assert!(matches!(route("A/tags/list"), Err(RouteError::Name(_))));
        assert!(matches!(
            route("a//b/manifests/x"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(route("../manifests/x"), Err(RouteError::Name(_))));
    }

    proptest! {
        #[test]
        fn built_paths_come_back_apart(
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}|/blobs|/manifests|/tags|/uploads){0,4}",
            reference in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
        ) {
            let repository = name(&repo);
            prop_assert_eq!(
                route(&format!("{repo}/manifests/{reference}")),
                Ok(Route::Manifest(repository.clone(), reference.clone()))
            );
            prop_assert_eq!(route(&format!("{repo}/tags/list")), Ok(Route::Tags(repository.clone())));
            prop_assert_eq!(route(&format!("{repo}/blobs/uploads/")), Ok(Route::UploadStart(repository.clone())));
            prop_assert_eq!(
                route(&format!("{repo}/blobs/uploads/{reference}")),
                Ok(Route::Upload(repository, reference))
            );
        }

        #[test]
        fn arbitrary_paths_never_panic(path in "[a-z/._:-]{0,40}") {
            let _ = route(&path);
        }
    }
}
