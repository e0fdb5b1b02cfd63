//! Connections: a flood of connections that send part of a request and then nothing is served
//! a bounded number at a time and closed, while a normal request still gets its answer; idle
//! kept-alive connections close after `server.idle_timeout`, requests in progress do not; a
//! kept-alive connection's next headers are timed from their first byte.
//!
//! Waits that must end carry a generous limit as a failure; none races: what must come first is
//! made to come first by waiting for it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_config::HumanDuration;

use crate::app::{TestApp, eventually, staged_size};

/// The limit on a wait that must end.
const PATIENCE: Duration = Duration::from_secs(60);

/// The first line of a request, and nothing after it.
const HALF_A_REQUEST: &[u8] = b"GET /v2/ HTTP/1.1\r\n";

fn address(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

fn port(app: &TestApp) -> u16 {
    app.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends `request` (whole, with its body if any) and reads the response: its status and head.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    read_response(stream).await
}

async fn get_base(stream: &mut TcpStream) -> u16 {
    exchange(stream, b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .0
}

/// Reads one response (with a `Content-Length` body) and returns its status and head.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("no response")
            .unwrap();
        assert!(
            n > 0,
            "the connection closed before a response: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while received.len() < head_end + length {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed mid-body");
        received.extend_from_slice(&buffer[..n]);
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// Waits until the server closes the connection; returns what it sent before (nothing, or a
/// `408` response).
async fn closed_by_server(mut stream: TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0; 1024];
    let closing = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(error) => panic!("{what}: {error}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, closing)
        .await
        .unwrap_or_else(|_| panic!("the server never closed {what}"));
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
        "{what}: {}",
        String::from_utf8_lossy(&received)
    );
    received
}

/// How many connections the server on `port` holds open in this process: sockets of this
/// process, from /proc/self/fd, whose local port is the server's and which are not its listener.
/// Precise even with other tests running in the process, which a count of all descriptors is
/// not. Counted by inode: /proc/net/tcp, read in pieces while it changes, can repeat a line.
fn server_connections(port: u16) -> usize {
    let sockets: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let connections: HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            let (state, inode) = (fields[3], fields[9]);
            let held = u16::from_str_radix(local_port, 16).unwrap() == port
                && state != "0A" // LISTEN
                && sockets.contains(inode);
            held.then_some(inode)
        })
        .collect();
    connections.len()
}

#[tokio::test]
async fn a_flood_of_half_open_connections_is_bounded_and_service_goes_on() {
    const MAX: u32 = 16;
    let app = TestApp::start_with(|c| {
        c.server.max_connections = MAX;
        c.server.header_read_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let port = port(&app);

    // Four times as many connections as the server serves, each sending one request line.
    let mut flood = Vec::new();
    for _ in 0..4 * MAX {
        let mut stream = TcpStream::connect(address(&app)).await.unwrap();
        stream.write_all(HALF_A_REQUEST).await.unwrap();
        flood.push(stream);
    }
    let most = Arc::new(AtomicUsize::new(0));
    let sampling = tokio::spawn({
        let most = most.clone();
        async move {
            loop {
                most.fetch_max(server_connections(port), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    // A normal request, queued behind the flood, gets its answer once the flood's first
    // connections have timed out.
    let response = tokio::time::timeout(PATIENCE, app.get("/v2/"))
        .await
        .expect("GET /v2/ got no answer during the flood");
    assert_eq!(response.status(), StatusCode::OK);
    // Read to its end, the answer lets its connection go.
    response.text().await.unwrap();

    // Every half-open connection is closed by the server.
    for (n, stream) in flood.into_iter().enumerate() {
        closed_by_server(stream, &format!("half-open connection {n}")).await;
    }
    sampling.abort();
    let most = most.load(Ordering::Relaxed);
    assert_eq!(
        most, MAX as usize,
        "the server held at most (and, flooded, exactly) max_connections connections"
    );
    eventually("the server holds no connection", || {
        server_connections(port) == 0
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_idle_timeout() {
    let app = TestApp::start_with(|c| {
        c.server.idle_timeout = HumanDuration(Duration::from_secs(1));
        c.server.header_read_timeout = HumanDuration(Duration::from_secs(600));
    })
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    // Kept alive between requests.
    assert_eq!(get_base(&mut stream).await, 200);
    let last_request = Instant::now();
    assert_eq!(get_base(&mut stream).await, 200);

    closed_by_server(stream, "the idle connection").await;
    assert!(
        last_request.elapsed() >= Duration::from_secs(1),
        "closed before idle_timeout"
    );
}

#[tokio::test]
async fn a_request_in_progress_is_not_cut_by_idle_timeout() {
    const MIB: usize = 1024 * 1024;
    let app = TestApp::start_with(|c| {
        c.server.idle_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let location = app.open_upload("r").await;
    let path = location.trim_start_matches(&app.url);

    // An upload sends part of its body, then nothing for a while.
    let mut upload = TcpStream::connect(address(&app)).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        3 * MIB
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(&vec![1; 2 * MIB]).await.unwrap();
    eventually("the chunk is being written", || {
        staged_size(&app, &location) > 0
    })
    .await;

    // Meanwhile another connection goes idle, and idle_timeout closes it.
    let mut other = TcpStream::connect(address(&app)).await.unwrap();
    assert_eq!(get_base(&mut other).await, 200);
    closed_by_server(other, "the idle connection").await;

    // The upload, silent for longer than idle_timeout, was not cut: it finishes.
    upload.write_all(&vec![1; MIB]).await.unwrap();
    let (status, head) = read_response(&mut upload).await;
    assert_eq!(status, 202, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("range: 0-{}", 3 * MIB - 1)),
        "{head}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_waits_idle_timeout_and_times_its_next_headers() {
    let app = TestApp::start_with(|c| {
        c.server.header_read_timeout = HumanDuration(Duration::from_secs(1));
        c.server.idle_timeout = HumanDuration(Duration::from_secs(600));
    })
    .await;
    let mut kept = TcpStream::connect(address(&app)).await.unwrap();
    assert_eq!(get_base(&mut kept).await, 200);

    // A connection opened after `kept` went idle times out on its headers...
    let mut half_open = TcpStream::connect(address(&app)).await.unwrap();
    half_open.write_all(HALF_A_REQUEST).await.unwrap();
    closed_by_server(half_open, "the half-open connection").await;
    // ...while `kept`, idle for longer than header_read_timeout, still serves.
    assert_eq!(get_base(&mut kept).await, 200);

    // Its next request's headers are timed from their first byte (closed well within
    // idle_timeout).
    kept.write_all(HALF_A_REQUEST).await.unwrap();
    closed_by_server(kept, "the kept-alive connection with half a request").await;
}
