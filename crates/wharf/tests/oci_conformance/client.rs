//! The suite's HTTP client: reggie v0.6 on resty v2.7 on Go `net/http`, reproduced on the wire.
//!
//! A small HTTP/1.1 client over `tokio::net::TcpStream` is used rather than reqwest because the
//! details that matter here cannot be controlled through reqwest (it always adds `Accept: */*`):
//!
//! * URLs: reggie substitutes `<name>`, `<reference>`, `<digest>` (only when the value is
//!   non-empty), strips the leading `/`, and prefixes `OCI_ROOT_URL/`; a URL still holding a
//!   placeholder, or three slashes in a row, is refused before sending ("request is invalid").
//! * `Location` is followed as path + `?` + raw query only (`GetRelativeLocation`), the path
//!   percent-decoded once as Go's `url.Parse` does.
//! * Query parameters set by a test are encoded like `url.Values.Encode` (sorted, `QueryEscape`)
//!   and appended to any query the URL already has, after `&`.
//! * Headers: `User-Agent: distribution-spec-conformance-tests`; resty copies a JSON-ish
//!   `Content-Type` into `Accept` when no `Accept` was set; no `Accept-Encoding` (reggie's
//!   transport disables compression); no cookies; a `Content-Length` set by the test is never sent
//!   (Go drops it from the header map).
//! * Bodies: reggie passes bodies as an opaque `io.Reader`, which resty v2.7 hands to `net/http`
//!   unbuffered (for GET too: the `AllowGetMethodPayload` check did not cover readers until
//!   resty#541), so a non-empty body goes out with `Transfer-Encoding: chunked`; POST, PUT and
//!   PATCH without a body carry `Content-Length: 0`; other methods without a body carry neither.
//! * Redirects are followed (up to 20, resty's `FlexibleRedirectPolicy(20)`) the way Go does.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Stop;

pub const USER_AGENT: &str = "distribution-spec-conformance-tests";
const MAX_REDIRECTS: usize = 20;
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// One HTTP exchange as it went over the wire (kept for the failure report).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request_head: String,
    pub request_body: Vec<u8>,
    pub response: Result<Response, String>,
}

/// A response (`*reggie.Response`).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header fields in received order, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `resp.Header().Get(name)`: the first value, or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// `GetRelativeLocation()`: path (decoded) + "?" + raw query of the `Location` header, or ""
    /// when it does not parse as a URL.
    pub fn relative_location(&self) -> String {
        go_relative_location(&self.header("Location"))
    }

    /// `GetAbsoluteLocation()`: the raw header.
    pub fn absolute_location(&self) -> String {
        self.header("Location")
    }

    /// `resp.String()`: the body, trimmed.
    pub fn string(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// reggie's per-request options (`WithName`, `WithReference`, `WithDigest`).
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub name: String,
    pub reference: String,
    pub digest: String,
}

pub fn with_name(name: &str) -> Opts {
    Opts {
        name: name.to_owned(),
        ..Opts::default()
    }
}

pub fn with_reference(reference: &str) -> Opts {
    Opts {
        reference: reference.to_owned(),
        ..Opts::default()
    }
}

pub fn with_digest(digest: &str) -> Opts {
    Opts {
        digest: digest.to_owned(),
        ..Opts::default()
    }
}

/// A request being built (`*reggie.Request`).
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// `SetHeader`: replaces any value of the same (case-insensitive) name.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers
            .push((canonical_header_key(name), value.to_owned()));
        self
    }

    /// `SetQueryParam`: replaces any value of the same name.
    pub fn query(mut self, name: &str, value: &str) -> Request {
        self.query.retain(|(k, _)| k != name);
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `SetBody`.
    pub fn body(mut self, body: &[u8]) -> Request {
        self.body = Some(body.to_vec());
        self
    }
}

/// The client (`*reggie.Client`), with the log of the current spec's exchanges.
pub struct Client {
    root: String,
    default_name: String,
    pub log: Vec<Exchange>,
}

impl Client {
    pub fn new(root_url: &str, default_name: &str) -> Client {
        Client {
            root: root_url.trim_end_matches('/').to_owned(),
            default_name: default_name.to_owned(),
            log: Vec::new(),
        }
    }

    /// `client.NewRequest(method, path, opts...)`.
    pub fn request(&self, method: &'static str, path: &str, opts: Opts) -> Request {
        let namespace = if opts.name.is_empty() {
            &self.default_name
        } else {
            &opts.name
        };
        let mut path = path.to_owned();
        for (placeholder, value) in [
            ("<name>", namespace.as_str()),
            ("<reference>", &opts.reference),
            ("<digest>", &opts.digest),
        ] {
            if !value.is_empty() {
                path = path.replace(placeholder, value);
            }
        }
        let path = path.strip_prefix('/').unwrap_or(&path);
        Request {
            method,
            url: format!("{}/{}", self.root, path),
            headers: vec![("User-Agent".to_owned(), USER_AGENT.to_owned())],
            query: Vec::new(),
            body: None,
        }
    }

    /// `client.Do(req)`; an error here is the suite's failing `Expect(err).To(BeNil())`.
    pub async fn send(&mut self, req: Request) -> Result<Response, Stop> {
        // reggie's validateRequest.
        if ["<name>", "<reference>", "<digest>", "<session_id>", "///"]
            .iter()
            .any(|p| req.url.contains(p))
        {
            let message = format!("request is invalid: {} {}", req.method, req.url);
            self.log.push(Exchange {
                request_head: format!("{} {} (not sent)", req.method, req.url),
                request_body: Vec::new(),
                response: Err(message.clone()),
            });
            return Err(Stop::Fail(format!(
                "Expected err to be nil, got: {message}"
            )));
        }

        // resty: query parameters appended to the URL's own query (a fragment is never sent).
        let mut url = req.url.split('#').next().unwrap_or_default().to_owned();
        if !req.query.is_empty() {
            let encoded = encode_query(&req.query);
            match url.split_once('?') {
                Some((_, existing)) if !existing.is_empty() => {
                    url.push('&');
                    url.push_str(&encoded);
                }
                Some(_) => url.push_str(&encoded),
                None => {
                    url.push('?');
                    url.push_str(&encoded);
                }
            }
        }

        // resty: Accept defaults to a JSON (or XML) Content-Type.
        let mut headers = req.headers.clone();
        let has = |headers: &Vec<(String, String)>, name: &str| {
            headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
        };
        if !has(&headers, "Accept") {
            let content_type = header_value(&headers, "Content-Type");
            if !content_type.is_empty()
                && (is_json_type(&content_type) || is_xml_type(&content_type))
            {
                headers.push(("Accept".to_owned(), content_type));
            }
        }
        // net/http never sends a Content-Length set in the header map.
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("Content-Length"));

        let mut method = req.method;
        let mut body = req.body.clone();
        let mut redirects = 0;
        loop {
            let result = tokio::time::timeout(
                EXCHANGE_TIMEOUT,
                self.exchange(method, &url, &headers, body.as_deref()),
            )
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {EXCHANGE_TIMEOUT:?}")));
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    return Err(Stop::Fail(format!(
                        "Expected err to be nil, got: {method} {url}: {e}"
                    )));
                }
            };
            // Go's redirect behaviour (301/302/303 turn into a GET without body; 307/308 repeat
            // the request, body included, since resty gives the request a GetBody).
            let location = response.header("Location");
            let follow = match response.status {
                301..=303 => {
                    if method != "GET" && method != "HEAD" {
                        method = "GET";
                    }
                    body = None;
                    true
                }
                307 | 308 => true,
                _ => false,
            };
            if !follow || location.is_empty() {
                return Ok(response);
            }
            if redirects >= MAX_REDIRECTS {
                return Err(Stop::Fail(format!(
                    "Expected err to be nil, got: stopped after {MAX_REDIRECTS} redirects"
                )));
            }
            redirects += 1;
            let next = resolve_reference(&url, &location);
            let previous = std::mem::replace(&mut url, next);
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("Referer"));
            headers.push(("Referer".to_owned(), previous));
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let (authority, request_target) = split_url(url)?;
        let mut head = format!("{method} {request_target} HTTP/1.1\r\nHost: {authority}\r\n");
        let user_agent = header_value(headers, "User-Agent");
        if !user_agent.is_empty() {
            let _ = write!(head, "User-Agent: {user_agent}\r\n");
        }
        let chunked = match body {
            Some(b) => !b.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"),
            None => false,
        };
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        } else if matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str("Content-Length: 0\r\n");
        }
        let mut rest: Vec<&(String, String)> = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("User-Agent"))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in rest {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str("\r\n");

        let mut wire = head.clone().into_bytes();
        let sent_body = if chunked {
            body.unwrap_or_default().to_vec()
        } else {
            Vec::new()
        };
        if chunked {
            if !sent_body.is_empty() {
                wire.extend_from_slice(format!("{:x}\r\n", sent_body.len()).as_bytes());
                wire.extend_from_slice(&sent_body);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }

        let response = async {
            let mut stream = TcpStream::connect(&authority)
                .await
                .map_err(|e| format!("dial {authority}: {e}"))?;
            // If the server answers early and closes, a write error is not final: Go returns
            // the response it got.
            let write_error = stream.write_all(&wire).await.err();
            match read_response(&mut stream, method == "HEAD").await {
                Ok(response) => Ok(response),
                Err(e) => match write_error {
                    Some(w) => Err(format!("write: {w}; read: {e}")),
                    None => Err(e),
                },
            }
        }
        .await;

        self.log.push(Exchange {
            request_head: head.trim_end().to_owned(),
            request_body: sent_body,
            response: response.clone(),
        });
        response
    }
}

fn header_value(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// `textproto.CanonicalMIMEHeaderKey`.
fn canonical_header_key(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// resty's `IsJSONType`: `(?i:(application|text)/(json|.*\+json|json\-.*)(;|$))`, unanchored.
fn is_json_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    for prefix in ["application/", "text/"] {
        let mut from = 0;
        while let Some(pos) = ct[from..].find(prefix) {
            let rest = &ct[from + pos + prefix.len()..];
            // The subtype runs to the first ';' (or the end) in every alternative that can end
            // with "(;|$)"; try each possible end position.
            for end in rest
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(rest.len()))
            {
                let after = &rest[end..];
                if !(after.is_empty() || after.starts_with(';')) {
                    continue;
                }
                let subtype = &rest[..end];
                if subtype == "json" || subtype.ends_with("+json") || subtype.starts_with("json-") {
                    return true;
                }
            }
            from += pos + 1;
        }
    }
    false
}

/// resty's `IsXMLType`: `(?i:(application|text)/(xml|.*\+xml)(;|$))`.
fn is_xml_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ["application/", "text/"].iter().any(|prefix| {
        ct.match_indices(prefix).any(|(pos, _)| {
            let rest = &ct[pos + prefix.len()..];
            rest.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(rest.len()))
                .any(|end| {
                    let after = &rest[end..];
                    let subtype = &rest[..end];
                    (after.is_empty() || after.starts_with(';'))
                        && (subtype == "xml" || subtype.ends_with("+xml"))
                })
        })
    })
}

/// `url.Values.Encode()`: sorted by key, `QueryEscape`d, joined with `&`.
fn encode_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Whether Go leaves byte `b` alone in a path (`!shouldEscape(b, encodePath)`).
fn path_byte_ok(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~')
        || matches!(
            b,
            b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
        )
}

/// Go's `EscapedPath()` for a path parsed from a URL string: kept as written when it is a valid
/// encoding, otherwise escaped from its decoded form.
fn escaped_path(raw: &str) -> String {
    let valid = raw.bytes().all(|b| {
        path_byte_ok(b) || matches!(b, b'!' | b'\'' | b'(' | b')' | b'*' | b'[' | b']' | b'%')
    });
    if valid {
        return raw.to_owned();
    }
    let decoded = percent_decode(raw).unwrap_or_else(|_| raw.as_bytes().to_vec());
    let mut out = String::new();
    for b in decoded {
        if path_byte_ok(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("invalid URL escape in {s:?}"))?;
            let value =
                u8::from_str_radix(hex, 16).map_err(|_| format!("invalid URL escape in {s:?}"))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// reggie's `GetRelativeLocation`: `url.Parse(loc)`, then `u.Path` (+ `"?" + u.RawQuery`).
pub fn go_relative_location(location: &str) -> String {
    if location.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return String::new(); // net/url: invalid control character in URL
    }
    let without_fragment = location
        .split_once('#')
        .map_or(location, |(before, _)| before);
    let (rest, raw_query) = match without_fragment.split_once('?') {
        Some((rest, query)) => (rest, query),
        None => (without_fragment, ""),
    };
    // Scheme (if any), then authority (if "//"), then path.
    let mut rest = rest;
    if let Some(colon) = rest.find(':') {
        let scheme = &rest[..colon];
        let is_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme {
            rest = &rest[colon + 1..];
            if !rest.starts_with('/') {
                // Opaque URL ("scheme:opaque"): Path is empty.
                return if raw_query.is_empty() {
                    String::new()
                } else {
                    format!("?{raw_query}")
                };
            }
        } else if !rest[..colon].contains('/') {
            return String::new(); // "first path segment in URL cannot contain colon"
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        rest = after.find('/').map_or("", |slash| &after[slash..]);
    }
    let path = match percent_decode(rest) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => return String::new(),
    };
    if raw_query.is_empty() {
        path
    } else {
        format!("{path}?{raw_query}")
    }
}

/// Resolves a redirect `Location` against the request URL (absolute, absolute-path, or relative).
fn resolve_reference(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme_authority, path) = match base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
    {
        Some(slash) => (&base[..slash], &base[slash..]),
        None => (base, "/"),
    };
    if let Some(network_path) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("http");
        return format!("{scheme}://{network_path}");
    }
    if location.starts_with('/') {
        return format!("{scheme_authority}{location}");
    }
    let path = path.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme_authority}{dir}{location}")
}

/// Splits `http://host:port/path?query` into the authority and the request target.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL (only http:// is implemented): {url}"))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        escaped_path(path)
    };
    let target = match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        // Go drops a bare trailing "?" (RawQuery is empty).
        _ => path,
    };
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, target))
}

/// Reads one HTTP/1.1 response (skipping 1xx interim responses).
async fn read_response(stream: &mut TcpStream, head_request: bool) -> Result<Response, String> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos;
            }
            if read_more(stream, &mut buf).await? == 0 {
                return Err(if buf.is_empty() {
                    "EOF: server closed the connection without a response".to_owned()
                } else {
                    "unexpected EOF in response head".to_owned()
                });
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(format!("malformed HTTP response {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("malformed HTTP status line {status_line:?}"))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if get("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            read_chunked(stream, &mut buf).await?
        } else if let Some(length) = get("Content-Length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("bad Content-Length {length:?}"))?;
            while buf.len() < length {
                if read_more(stream, &mut buf).await? == 0 {
                    return Err("unexpected EOF in response body".to_owned());
                }
            }
            buf[..length].to_vec()
        } else {
            while read_more(stream, &mut buf).await? != 0 {}
            std::mem::take(&mut buf)
        };
        return Ok(Response {
            status,
            reason,
            headers,
            body,
        });
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(buf, b"\r\n") {
                break pos;
            }
            if read_more(stream, buf).await? == 0 {
                return Err("unexpected EOF in chunked body".to_owned());
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                if let Some(pos) = find(buf, b"\r\n") {
                    let empty = pos == 0;
                    buf.drain(..pos + 2);
                    if empty {
                        return Ok(body);
                    }
                } else if read_more(stream, buf).await? == 0 {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            if read_more(stream, buf).await? == 0 {
                return Err("unexpected EOF in chunked body".to_owned());
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A readable rendering of an exchange for failure reports.
pub fn render_exchange(exchange: &Exchange) -> String {
    let mut out = String::new();
    for line in exchange.request_head.lines() {
        let _ = writeln!(out, "    > {line}");
    }
    if !exchange.request_body.is_empty() {
        let _ = writeln!(
            out,
            "    > [body, sent chunked: {}]",
            preview(&exchange.request_body)
        );
    }
    match &exchange.response {
        Ok(response) => {
            let _ = writeln!(
                out,
                "    < HTTP/1.1 {} {}",
                response.status, response.reason
            );
            for (k, v) in &response.headers {
                let _ = writeln!(out, "    < {k}: {v}");
            }
            if !response.body.is_empty() {
                let _ = writeln!(out, "    < [body: {}]", preview(&response.body));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "    ! {e}");
        }
    }
    out
}

fn preview(bytes: &[u8]) -> String {
    const LIMIT: usize = 600;
    let printable = bytes
        .iter()
        .all(|&b| b == b'\n' || b == b'\t' || b == b'\r' || (0x20..0x7f).contains(&b));
    if printable {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LIMIT)])
            .replace('\n', "\\n")
            .replace('\t', "\\t");
        if bytes.len() > LIMIT {
            format!("{} bytes: {text}…", bytes.len())
        } else {
            format!("{} bytes: {text}", bytes.len())
        }
    } else {
        let hex: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
        format!(
            "{} bytes, binary: {hex}{}",
            bytes.len(),
            if bytes.len() > 32 { "…" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_location_like_go() {
        assert_eq!(
            go_relative_location("/v2/a/blobs/uploads/x?s=1"),
            "/v2/a/blobs/uploads/x?s=1"
        );
        assert_eq!(
            go_relative_location("http://h:1/v2/a/blobs/uploads/x"),
            "/v2/a/blobs/uploads/x"
        );
        assert_eq!(go_relative_location("uploads/x"), "uploads/x");
        assert_eq!(go_relative_location(""), "");
        assert_eq!(go_relative_location("/a%2Bb"), "/a+b");
        assert_eq!(go_relative_location("/a%zz"), "");
    }

    /// What the client puts on the wire for one request (answered with an empty 200).
    async fn on_the_wire(build: impl FnOnce(&Client) -> Request) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            loop {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                received.extend_from_slice(&chunk[..n]);
                if let Some(end) = find(&received, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                    if !head.contains("transfer-encoding: chunked")
                        || received.ends_with(b"0\r\n\r\n")
                    {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        let mut client = Client::new(&root, "conformance/test");
        let req = build(&client);
        client.send(req).await.map_err(|_| "send failed").unwrap();
        let wire = server.await.unwrap();
        wire.replace(&root["http://".len()..], "HOST")
    }

    #[tokio::test]
    async fn wire_format_like_go() {
        let wire = on_the_wire(|c| {
            c.request(
                "PUT",
                "/v2/conformance/test/blobs/uploads/u1?state=x",
                Opts::default(),
            )
            .query("digest", "sha256:ab")
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", "3")
            .body(b"abc")
        })
        .await;
        assert_eq!(
            wire,
            "PUT /v2/conformance/test/blobs/uploads/u1?state=x&digest=sha256%3Aab HTTP/1.1\r\nHost: HOST\r\n\
             User-Agent: distribution-spec-conformance-tests\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: application/octet-stream\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );

        let wire =
            on_the_wire(|c| c.request("POST", "/v2/<name>/blobs/uploads/", Opts::default())).await;
        assert_eq!(
            wire,
            "POST /v2/conformance/test/blobs/uploads/ HTTP/1.1\r\nHost: HOST\r\n\
             User-Agent: distribution-spec-conformance-tests\r\nContent-Length: 0\r\n\r\n"
        );

        let wire = on_the_wire(|c| {
            c.request(
                "GET",
                "/v2/<name>/manifests/<reference>",
                with_reference("sha256:totallywrong"),
            )
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(b"blablabla")
        })
        .await;
        assert_eq!(
            wire,
            "GET /v2/conformance/test/manifests/sha256:totallywrong HTTP/1.1\r\nHost: HOST\r\n\
             User-Agent: distribution-spec-conformance-tests\r\nTransfer-Encoding: chunked\r\n\
             Accept: application/vnd.oci.image.manifest.v1+json\r\n\
             Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n9\r\nblablabla\r\n0\r\n\r\n"
        );

        let wire = on_the_wire(|c| {
            c.request(
                "DELETE",
                "/v2/<name>/blobs/<digest>",
                with_digest("sha256:cd"),
            )
        })
        .await;
        assert_eq!(
            wire,
            "DELETE /v2/conformance/test/blobs/sha256:cd HTTP/1.1\r\nHost: HOST\r\n\
             User-Agent: distribution-spec-conformance-tests\r\n\r\n"
        );

        let wire = on_the_wire(|c| {
            c.request(
                "POST",
                "/v2/<name>/blobs/uploads/",
                with_name("conformance-x"),
            )
            .query("mount", "sha256:ab")
            .query("from", "conformance/test")
        })
        .await;
        assert!(
            wire.starts_with(
                "POST /v2/conformance-x/blobs/uploads/?from=conformance%2Ftest&mount=sha256%3Aab HTTP/1.1\r\n"
            ),
            "{wire}"
        );
    }

    #[tokio::test]
    async fn invalid_requests_are_not_sent() {
        let mut client = Client::new("http://127.0.0.1:9", "conformance/test");
        let req = client.request(
            "DELETE",
            "/v2/<name>/manifests/<reference>",
            with_reference(""),
        );
        assert!(
            matches!(client.send(req).await, Err(Stop::Fail(m)) if m.contains("request is invalid"))
        );
    }

    #[test]
    fn json_types_like_resty() {
        assert!(is_json_type("application/vnd.oci.image.manifest.v1+json"));
        assert!(is_json_type("application/json; charset=utf-8"));
        assert!(!is_json_type("application/octet-stream"));
        assert_eq!(
            encode_query(&[
                ("mount".into(), "sha256:ab".into()),
                ("from".into(), "a/b".into())
            ]),
            "from=a%2Fb&mount=sha256%3Aab"
        );
    }
}
