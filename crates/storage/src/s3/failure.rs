//! Telling S3 that cannot be reached, or that keeps throttling, apart from other failures, and
//! saying in a few words what failed.
//!
//! `object_store` retries what is safe to retry before it gives up (see `RetryConfig` in
//! [`super::S3Blobs`]): connections that fail, `5xx` and `429` answers (S3's `SlowDown` is a
//! `503`) for every request, and time-outs for the idempotent ones (reads, `HEAD`s, `PUT`s and
//! part uploads). An error that still reaches Wharf after that is S3 being unavailable: the
//! registry answers it `503` with `Retry-After`, since the same request succeeds once S3 is
//! back, instead of an internal error.
//!
//! `object_store` 0.14 does not name its retry error's type outside the crate, so an answer's
//! status is read from the error's text (`... status code: 503 Service Unavailable: ...`), the
//! one place that depends on how it is worded; a connection that failed is its public
//! [`HttpError`].

use std::error::Error;

use object_store::client::{HttpError, HttpErrorKind};

/// Whether `error`, or an error it was caused by, is S3 that cannot be reached (refused, reset,
/// timed out) or that answered `5xx`/`429` (throttling) until `object_store` stopped retrying.
pub fn is_storage_unavailable(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(store) = error.downcast_ref::<object_store::Error>()
            && store_unavailable(store)
        {
            return true;
        }
        // `io::Error::source` skips the error it wraps (a blob stream's errors are wrapped so).
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_storage_unavailable(inner)
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn store_unavailable(error: &object_store::Error) -> bool {
    let object_store::Error::Generic { source, .. } = error else {
        return false;
    };
    if let Some(kind) = connection_failure(source.as_ref()) {
        return matches!(
            kind,
            HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted
        );
    }
    let text = source.to_string();
    match status(&text) {
        // 501 is a request the server does not implement: asking again will not help.
        Some(status) => status == 429 || (status >= 500 && status != 501),
        // A `200` whose body is an error (S3 does that for some requests), given up on.
        None => text.contains("SlowDown") || text.contains("InternalError"),
    }
}

/// The kind of the failed connection in `error`'s sources, if a connection failed.
fn connection_failure(error: &(dyn Error + 'static)) -> Option<HttpErrorKind> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        current = error.source();
    }
    None
}

/// The status S3 answered, from the text of `object_store`'s error.
fn status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// What failed, in a few words for the one line of a startup error: the endpoint that cannot
/// be reached and why, or S3's status and error code and message; never the request's URL or
/// headers (which name no secret, but make the line long and vary from run to run).
pub(crate) fn describe(error: &object_store::Error) -> String {
    let source: &(dyn Error + 'static) = match error {
        object_store::Error::Generic { source, .. }
        | object_store::Error::NotFound { source, .. }
        | object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Unauthenticated { source, .. }
        | object_store::Error::Precondition { source, .. }
        | object_store::Error::AlreadyExists { source, .. }
        | object_store::Error::NotModified { source, .. } => source.as_ref(),
        other => return super::one_line(other),
    };
    if connection_failure(source).is_some() {
        // The innermost cause says why ("Connection refused (os error 111)").
        let mut innermost = source;
        while let Some(cause) = innermost.source() {
            innermost = cause;
        }
        return format!(
            "S3 cannot be reached ({innermost}); check storage.s3.endpoint and the network"
        );
    }
    let text = source.to_string();
    let Some(status) = status(&text) else {
        return super::one_line(error);
    };
    let code = super::leftovers::element(&text, "Code");
    let message = super::leftovers::element(&text, "Message");
    let (what, check) = match status {
        401 | 403 => (
            "access denied",
            "; check the access key, its secret and the bucket's policy",
        ),
        404 => ("not found", "; check storage.s3.bucket and the endpoint"),
        429 | 500.. => ("S3 is unavailable or throttling requests", ""),
        _ => ("refused", ""),
    };
    let said = match (code, message) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(code), None) => format!(": {code}"),
        (None, _) => String::new(),
    };
    format!("{what} (S3 answered {status}{said}){check}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_the_error_text() {
        assert_eq!(
            status(
                "Error performing GET http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: <Error/>"
            ),
            Some(503)
        );
        assert_eq!(status("HTTP error: error sending request"), None);
    }

    #[test]
    fn other_errors_are_not_unavailability() {
        let not_found = object_store::Error::NotFound {
            path: "a".into(),
            source: "gone".into(),
        };
        assert!(!is_storage_unavailable(&not_found));
        assert!(!is_storage_unavailable(&std::io::Error::other("disk")));
        let throttled = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: SlowDown".into(),
        };
        assert!(is_storage_unavailable(&throttled));
        assert!(is_storage_unavailable(&std::io::Error::other(throttled)));
        let unsupported = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 501 Not Implemented: ".into(),
        };
        assert!(!is_storage_unavailable(&unsupported));
    }
}
