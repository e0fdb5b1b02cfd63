//! Byte ranges: the `Range` header of a blob download (RFC 9110) and the `Content-Range` header
//! of an upload chunk (the OCI form `<start>-<end>`).

use std::ops::Range;

use wharf_registry::ChunkRange;

/// What a download's `Range` header asks for, given the blob's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole blob (no header, or one the server may ignore: malformed or multi-range).
    Full,
    /// One satisfiable range, as a half-open byte range.
    Partial(Range<u64>),
    /// A well-formed range that lies outside the blob.
    Unsatisfiable,
}

/// Interprets a `Range` header for a blob of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    // Several ranges would need a multipart response; serving the whole blob is allowed.
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => RangeRequest::Partial(size.saturating_sub(n)..size),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        // `bytes=A-`: from A to the end.
        (false, true) => match parse(first) {
            Some(start) if start < size => RangeRequest::Partial(start..size),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        // `bytes=A-B`, inclusive; B may exceed the size. An inverted range (`bytes=500-0`)
        // selects nothing: 416, as the OCI specification asks, rather than the whole blob a
        // client that asked for a part would not expect.
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end && start < size => {
                RangeRequest::Partial(start..end.saturating_add(1).min(size))
            }
            (Some(_), Some(_)) => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Full,
        },
        (true, true) => RangeRequest::Full,
    }
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>`, also accepting the RFC forms
/// `bytes <start>-<end>/<total>` and `bytes=<start>-<end>`.
pub fn parse_content_range(header: &str) -> Option<ChunkRange> {
    let text = header.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split_once('/').map_or(text, |(range, _total)| range);
    let (start, end) = text.trim().split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = (number(start)?, number(end)?);
    (start <= end).then_some(ChunkRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn download_ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0..5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5..10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7..10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0..10));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Partial(8..10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-4"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=500-0"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 10), Full);
    }

    #[test]
    fn content_ranges() {
        let range = |start, end| Some(ChunkRange { start, end });
        assert_eq!(parse_content_range("0-21"), range(0, 21));
        assert_eq!(parse_content_range("bytes 22-41/42"), range(22, 41));
        assert_eq!(parse_content_range("bytes=22-41"), range(22, 41));
        assert_eq!(parse_content_range("bytes 0-9/*"), range(0, 9));
        for bad in [
            "",
            "-",
            "5-4",
            "a-b",
            "1",
            "-1-2",
            "1--2",
            "0-18446744073709551616",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn partial_ranges_lie_within_the_blob(header in "bytes=[0-9]{0,4}-[0-9]{0,4}", size in 0u64..5000) {
            if let RangeRequest::Partial(range) = parse_range(Some(&header), size) {
                prop_assert!(range.start < range.end);
                prop_assert!(range.end <= size);
            }
        }

        #[test]
        fn arbitrary_headers_never_panic(header in "\\PC{0,40}", size in any::<u64>()) {
            let _ = parse_range(Some(&header), size);
            let _ = parse_content_range(&header);
        }
    }
}
