//! A loopback HTTP/1.1 proxy in front of a Wharf server that can hold a blob upload's body part
//! way, so a test can take a hold while a push is certainly under way and then let it go on —
//! no sleeps, no racing the client. And a small raw HTTP/1.1 client for requests no real client
//! makes.
//!
//! The proxy parses only what clients send (request heads, and bodies by `Content-Length` or
//! chunked framing, so that it knows where each request of a keep-alive connection begins) and
//! copies the server's answers back unparsed. It can also answer requests itself, as S3
//! answers when it throttles (`503 SlowDown`), for a test of a registry in front of S3.
//! A connection that does not start like an HTTP
//! request (clients try TLS first on a registry they are told is insecure) is copied both ways
//! unparsed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A request the proxy forwarded, in the order their heads arrived.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    /// GET, PATCH…
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// How many holds had begun when its head arrived (0: before the first hold).
    pub holds_before: usize,
    /// Whether its body was the one held.
    pub held: bool,
}

/// The request whose body the proxy is holding.
#[derive(Debug, Clone)]
pub struct HeldRequest {
    /// PATCH or PUT.
    pub method: String,
    /// The request target.
    pub target: String,
    /// Body bytes forwarded before the hold.
    pub forwarded: u64,
}

/// What the connection threads and the test share.
#[derive(Default)]
struct State {
    /// Hold the next matching body once this many of its bytes are forwarded.
    armed: Option<u64>,
    /// The request being held, until released.
    holding: Option<HeldRequest>,
    /// Holds begun so far.
    holds: usize,
    /// Every request forwarded.
    requests: Vec<ProxiedRequest>,
    /// Connections that did not start like HTTP, copied as they were.
    opaque: usize,
    /// Set when the proxy is dropped: nothing is held any more.
    stopped: bool,
    /// Answer this many of the next requests `503 SlowDown` instead of forwarding them.
    throttle: usize,
    /// Requests answered so.
    throttled: usize,
}

/// The state and its condition variable, notified at every change of a hold.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    /// Locks the state, also after a connection thread panicked with the lock held.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running proxy on `127.0.0.1:<port>`, forwarding to one upstream address.
pub struct HoldingProxy {
    /// `127.0.0.1:<port>`: clients treat it as the plain-HTTP registry it stands for.
    pub address: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl HoldingProxy {
    /// Starts a proxy to `upstream` (`host:port`), one thread per client connection.
    pub fn start(upstream: &str) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shared, stop, upstream) = (shared.clone(), stop.clone(), upstream.to_owned());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (shared, upstream) = (shared.clone(), upstream.clone());
                    std::thread::spawn(move || serve_connection(client, &upstream, &shared));
                }
            })
        };
        HoldingProxy {
            address,
            shared,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Holds the body of the next `PATCH` or `PUT` to `/v2/…/blobs/uploads/<session>` once
    /// `after` bytes of it are forwarded (a shorter body passes, and the next one is held).
    pub fn hold_next_upload_body(&self, after: u64) {
        let mut state = self.shared.lock();
        assert!(state.holding.is_none(), "a body is held already");
        state.armed = Some(after);
    }

    /// Waits until a body is held and says which; `None` after `limit`, or as soon as
    /// `give_up()` (say, the client has exited).
    pub fn wait_for_hold(
        &self,
        limit: Duration,
        give_up: impl Fn() -> bool,
    ) -> Option<HeldRequest> {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.lock();
        loop {
            if let Some(held) = &state.holding {
                return Some(held.clone());
            }
            if Instant::now() >= deadline || give_up() {
                return None;
            }
            // Woken at once when a hold begins; the timeout only lets `give_up` be asked.
            state = self
                .shared
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Whether a body is being held now.
    pub fn holding(&self) -> bool {
        self.shared.lock().holding.is_some()
    }

    /// Lets the held body go on (and disarms a hold not reached yet).
    pub fn release(&self) {
        let mut state = self.shared.lock();
        state.holding = None;
        state.armed = None;
        self.shared.changed.notify_all();
    }

    /// Answers the next `requests` requests `503 SlowDown`, as S3 does when it throttles,
    /// instead of forwarding them (`usize::MAX`: until [`HoldingProxy::stop_throttling`]).
    pub fn throttle_next(&self, requests: usize) {
        self.shared.lock().throttle = requests;
    }

    /// Forwards every request again.
    pub fn stop_throttling(&self) {
        self.shared.lock().throttle = 0;
    }

    /// How many requests were answered `503 SlowDown` so far.
    pub fn throttled(&self) -> usize {
        self.shared.lock().throttled
    }

    /// The requests forwarded so far, in the order their heads arrived.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many connections did not start like HTTP (and were copied as they were).
    pub fn opaque_connections(&self) -> usize {
        self.shared.lock().opaque
    }

    /// The requests whose target contains `part` forwarded once the first hold had begun, one
    /// per line, for messages.
    pub fn requests_after_hold(&self, part: &str) -> String {
        self.requests()
            .iter()
            .filter(|r| (r.holds_before > 0 || r.held) && r.target.contains(part))
            .map(|r| {
                let held = if r.held { "  (held)" } else { "" };
                format!("{} {}{held}", r.method, r.target)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopped = true;
            state.holding = None;
            state.armed = None;
            self.shared.changed.notify_all();
        }
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor so that it sees the stop flag.
        let _ = TcpStream::connect(&self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Forwards one client connection: requests parsed (to find the bodies to hold), answers
/// copied back as they come.
fn serve_connection(client: TcpStream, upstream: &str, shared: &Shared) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(mut server_out), Ok(mut client_back), Ok(mut client_answers)) =
        (server.try_clone(), client.try_clone(), client.try_clone())
    else {
        return;
    };
    let mut server_in = server;
    let answers = std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_in, &mut client_back);
        let _ = client_back.shutdown(Shutdown::Write);
    });
    let mut requests = BufReader::with_capacity(64 * 1024, client);
    let _ = forward_requests(&mut requests, &mut server_out, &mut client_answers, shared);
    let _ = server_out.shutdown(Shutdown::Write);
    let _ = answers.join();
}

/// Forwards requests until the client closes its side; with one that is not HTTP, forwards
/// the bytes as they are. A request throttled is read whole and answered on `back` (clients
/// send a request only once the previous one is answered, so no answer of the server's is
/// being copied back meanwhile).
fn forward_requests(
    from: &mut BufReader<TcpStream>,
    to: &mut TcpStream,
    back: &mut TcpStream,
    shared: &Shared,
) -> std::io::Result<()> {
    let starts_like_http = from.fill_buf()?.first().is_some_and(u8::is_ascii_uppercase);
    if !starts_like_http {
        shared.lock().opaque += 1;
        std::io::copy(from, to)?;
        return Ok(());
    }
    loop {
        let mut head = Vec::new();
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if from.read_until(b'\n', &mut line)? == 0 {
                // Closed between requests (or within a head: nothing more to forward).
                return Ok(());
            }
            head.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if text.is_empty() {
                break;
            }
            lines.push(text);
        }
        let mut request_line = lines.first().map(|l| l.split(' ')).into_iter().flatten();
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let header = |name: &str| {
            lines.iter().skip(1).find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let chunked =
            header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let index = {
            let mut state = shared.lock();
            let holds_before = state.holds;
            state.requests.push(ProxiedRequest {
                method: method.clone(),
                target: target.clone(),
                holds_before,
                held: false,
            });
            state.requests.len() - 1
        };
        let throttled = {
            let mut state = shared.lock();
            let throttled = state.throttle > 0;
            if throttled {
                state.throttle -= 1;
                state.throttled += 1;
            }
            throttled
        };
        if throttled {
            if chunked {
                return Err(std::io::Error::other("a chunked body is not throttled"));
            }
            std::io::copy(&mut from.by_ref().take(length), &mut std::io::sink())?;
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
            write!(
                back,
                "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        to.write_all(&head)?;
        let mut body = Body {
            request: index,
            holdable: is_upload_body(&method, &target),
            method,
            target,
            forwarded: 0,
        };
        if chunked {
            loop {
                let mut size_line = Vec::new();
                if from.read_until(b'\n', &mut size_line)? == 0 {
                    return Ok(());
                }
                to.write_all(&size_line)?;
                let size_text = String::from_utf8_lossy(&size_line);
                let size_text = size_text.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
                })?;
                if size == 0 {
                    // The trailer, up to its empty line.
                    loop {
                        let mut line = Vec::new();
                        if from.read_until(b'\n', &mut line)? == 0 {
                            return Ok(());
                        }
                        to.write_all(&line)?;
                        if line == b"\r\n" || line == b"\n" {
                            break;
                        }
                    }
                    break;
                }
                body.copy(from, to, size, shared)?;
                let mut end = Vec::new();
                from.read_until(b'\n', &mut end)?;
                to.write_all(&end)?;
            }
        } else {
            body.copy(from, to, length, shared)?;
        }
    }
}

/// Whether a request sends (part of) a blob to an upload session: its body may be held.
fn is_upload_body(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    (method == "PATCH" || method == "PUT")
        && path.starts_with("/v2/")
        && path
            .split_once("/blobs/uploads/")
            .is_some_and(|(_, session)| !session.is_empty())
}

/// The body of one request being forwarded.
struct Body {
    /// Its index in [`State::requests`].
    request: usize,
    /// Whether it may be held.
    holdable: bool,
    method: String,
    target: String,
    /// Payload bytes forwarded so far (without chunk framing).
    forwarded: u64,
}

impl Body {
    /// Copies `len` payload bytes, holding them where the armed hold says.
    fn copy(
        &mut self,
        from: &mut BufReader<TcpStream>,
        to: &mut TcpStream,
        mut len: u64,
        shared: &Shared,
    ) -> std::io::Result<()> {
        let mut buffer = vec![0; 64 * 1024];
        while len > 0 {
            let mut step = len.min(buffer.len() as u64);
            if self.holdable {
                let mut state = shared.lock();
                let armed = state.armed;
                if let Some(after) = armed {
                    if self.forwarded >= after {
                        // Held here: the bytes so far are with the server, the rest waits.
                        state.armed = None;
                        state.holds += 1;
                        state.requests[self.request].held = true;
                        state.holding = Some(HeldRequest {
                            method: self.method.clone(),
                            target: self.target.clone(),
                            forwarded: self.forwarded,
                        });
                        shared.changed.notify_all();
                        while state.holding.is_some() && !state.stopped {
                            state = shared
                                .changed
                                .wait(state)
                                .unwrap_or_else(|poisoned| poisoned.into_inner());
                        }
                    } else {
                        step = step.min(after - self.forwarded);
                    }
                }
            }
            let read = from.read(&mut buffer[..step as usize])?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            to.write_all(&buffer[..read])?;
            self.forwarded += read as u64;
            len -= read as u64;
        }
        Ok(())
    }
}

/// A body for [`HttpClient::send`].
pub enum HttpBody<'a> {
    /// No body.
    None,
    /// A body with `Content-Length`.
    Bytes(&'a [u8]),
    /// A chunked body, one chunk per slice.
    Chunked(&'a [&'a [u8]]),
}

/// An answer read by [`HttpClient::send`].
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header of that name (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client on one keep-alive connection, for requests no real client makes.
pub struct HttpClient {
    address: String,
    stream: BufReader<TcpStream>,
}

impl HttpClient {
    /// Connects to `address` (`host:port`).
    pub fn connect(address: &str) -> HttpClient {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        HttpClient {
            address: address.to_owned(),
            stream: BufReader::new(stream),
        }
    }

    /// Sends one request and reads its answer (the body too, except for `HEAD`).
    pub fn send(&mut self, method: &str, target: &str, body: HttpBody<'_>) -> HttpAnswer {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.address);
        match &body {
            HttpBody::None if method == "GET" || method == "HEAD" => {}
            HttpBody::None => request.push_str("Content-Length: 0\r\n"),
            HttpBody::Bytes(bytes) => {
                request.push_str(&format!(
                    "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
                    bytes.len()
                ));
            }
            HttpBody::Chunked(_) => request.push_str(
                "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n",
            ),
        }
        request.push_str("\r\n");
        let stream = self.stream.get_mut();
        stream.write_all(request.as_bytes()).expect("send a head");
        match body {
            HttpBody::None => {}
            HttpBody::Bytes(bytes) => stream.write_all(bytes).expect("send a body"),
            HttpBody::Chunked(chunks) => {
                for chunk in chunks {
                    write!(stream, "{:x}\r\n", chunk.len()).unwrap();
                    stream.write_all(chunk).expect("send a chunk");
                    stream.write_all(b"\r\n").unwrap();
                }
                stream.write_all(b"0\r\n\r\n").expect("end a chunked body");
            }
        }
        self.read_answer(method == "HEAD")
    }

    /// Reads an answer's head and body.
    fn read_answer(&mut self, head_only: bool) -> HttpAnswer {
        let mut status_line = String::new();
        self.stream
            .read_line(&mut status_line)
            .expect("read a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("read a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((key, value)) = line.split_once(':') {
                headers.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut answer = HttpAnswer {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 {
            return answer;
        }
        if answer
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                self.stream.read_line(&mut size).expect("read a chunk size");
                let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).expect("read a chunk");
                if size == 0 {
                    break;
                }
                answer.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let length: usize = answer
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            answer.body = vec![0; length];
            self.stream
                .read_exact(&mut answer.body)
                .expect("read a body");
        }
        answer
    }
}
