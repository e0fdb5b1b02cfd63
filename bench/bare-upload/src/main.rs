//! The benchmark's reference point for pushes: an upload endpoint that does the least a registry
//! must do to take a blob — receive the bytes, write them to a file, hash them — and nothing
//! else: no HTTP framework, no async runtime, no database, no durability, no checks beyond the
//! digest. The benchmark pushes to it with the same client and the same requests as to the
//! registries, so its figures are this machine's limit for each kind of push, as nginx's are
//! for pulls.
//!
//! Bytes move in 256 KiB blocks through queues of eight, as in Wharf, in one of two layouts,
//! because which is faster depends on the machine and the workload (the benchmark runs both):
//!
//! - `--layout 2`: the connection's thread receives each block and writes it to the staged
//!   file; a second thread hashes the blocks behind it.
//! - `--layout 3`: the connection's thread only receives; one thread writes, another hashes
//!   (Wharf's layout, with its async worker as the receiver).
//!
//! A `PATCH` is answered once every byte of it is written, as Wharf answers one: the hashing of
//! its last blocks goes on while the answer goes out and the next `PATCH` comes in (whose
//! blocks queue behind them), and the `PUT` waits for it.
//!
//! ```text
//! bare-upload --layout 2|3 127.0.0.1:PORT DIR
//! ```
//!
//! Requests, on HTTP/1.1 keep-alive connections with `Content-Length` bodies:
//! `POST /v2/<name>/blobs/uploads/` (202, `Location: /uploads/<n>`), `PATCH /uploads/<n>` (202),
//! `PUT /uploads/<n>?digest=sha256:<hex>` with or without a body (201; 400 if the digest is not
//! the content's), `GET /healthz` (200). Anything else gets a 404 and the connection is closed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Bytes received and written at a time, and hashed at a time: Wharf's block size.
const BLOCK: usize = 256 * 1024;

/// Blocks waiting for each worker thread: Wharf's queue depth.
const QUEUED: usize = 8;

/// The longest request head taken; the benchmark's are a few hundred bytes.
const MAX_HEAD: u64 = 16 * 1024;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (write_thread, addr, dir) = match args.as_slice() {
        [flag, layout, addr, dir] if flag == "--layout" && (layout == "2" || layout == "3") => {
            (layout == "3", addr, dir)
        }
        _ => return Err("usage: bare-upload --layout 2|3 127.0.0.1:PORT DIR".into()),
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(dir.join("uploads"))?;
    std::fs::create_dir_all(dir.join("blobs"))?;
    let listener = TcpListener::bind(addr)?;
    let uploads = Arc::new(Uploads {
        dir,
        write_thread,
        next: AtomicU64::new(1),
        open: Mutex::default(),
    });
    for stream in listener.incoming() {
        let stream = stream?;
        let uploads = Arc::clone(&uploads);
        // A failed connection (the client went away, a bad request) ends only that connection.
        std::thread::spawn(move || serve(stream, &uploads));
    }
    Ok(())
}

/// The upload sessions, each taken out of the map by the request working on it.
struct Uploads {
    dir: PathBuf,
    /// Layout 3: write on a thread of its own rather than on the receiving one.
    write_thread: bool,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Upload>>,
}

impl Uploads {
    fn take(&self, id: u64) -> Option<Upload> {
        self.open.lock().ok()?.remove(&id)
    }

    fn put_back(&self, id: u64, upload: Upload) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, upload);
        }
    }
}

/// One upload: its staged file's path, how long it is, and the threads writing and hashing it.
struct Upload {
    path: PathBuf,
    len: u64,
    writer: Writer,
    hasher: Worker<Sha256>,
    spare: Receiver<Block>,
}

type Block = Arc<Vec<u8>>;

impl Upload {
    fn create(path: PathBuf, write_thread: bool) -> Result<Self, Error> {
        let file = File::create(&path)?;
        let writer = if write_thread {
            Writer::Thread(Worker::start(file, |file, block| {
                file.write_all(block).map_err(Error::from)
            }))
        } else {
            Writer::Inline(file)
        };
        let (give_back, spare) = sync_channel(QUEUED + 2);
        Ok(Upload {
            path,
            len: 0,
            writer,
            hasher: Worker::start(Sha256::new(), move |sha, block| {
                sha.update(block.as_slice());
                // Hand the buffer back for reuse (taken only once the writer is done with it too).
                let _ = give_back.try_send(Arc::clone(block));
                Ok(())
            }),
            spare,
        })
    }

    /// An empty block buffer: one both workers are done with, or a new one.
    fn buffer(&self) -> Vec<u8> {
        let mut block = self
            .spare
            .try_recv()
            .ok()
            .and_then(|b| Arc::try_unwrap(b).ok())
            .unwrap_or_default();
        block.resize(BLOCK, 0);
        block
    }

    fn submit(&mut self, block: Vec<u8>) -> Result<(), Error> {
        let block = Arc::new(block);
        match &mut self.writer {
            Writer::Inline(file) => file.write_all(&block)?,
            Writer::Thread(worker) => worker.submit(Arc::clone(&block))?,
        }
        self.hasher.submit(block)
    }

    /// Waits until every block submitted so far is written; the hasher may still be behind.
    fn wait_written(&self) -> Result<(), Error> {
        match &self.writer {
            Writer::Thread(worker) => worker.wait(),
            Writer::Inline(_) => Ok(()),
        }
    }

    /// The content's sha256, in hex, once every block is written and hashed.
    fn finish(self) -> Result<String, Error> {
        if let Writer::Thread(worker) = self.writer {
            worker.finish()?;
        }
        let sha = self.hasher.finish()?;
        Ok(sha.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Where the blocks are written.
enum Writer {
    /// On the receiving thread, before the block is queued for hashing.
    Inline(File),
    /// On a thread of its own.
    Thread(Worker<File>),
}

/// A thread working through the blocks queued to it, in order, with the value it owns.
struct Worker<T> {
    queue: SyncSender<Job>,
    thread: JoinHandle<Result<T, Error>>,
}

enum Job {
    Block(Block),
    /// Answered once every block queued before it is done.
    Barrier(SyncSender<()>),
}

impl<T: Send + 'static> Worker<T> {
    fn start(
        mut value: T,
        mut work: impl FnMut(&mut T, &Block) -> Result<(), Error> + Send + 'static,
    ) -> Self {
        let (queue, jobs) = sync_channel::<Job>(QUEUED);
        let thread = std::thread::spawn(move || {
            for job in jobs {
                match job {
                    Job::Block(block) => work(&mut value, &block)?,
                    Job::Barrier(done) => {
                        let _ = done.send(());
                    }
                }
            }
            Ok(value)
        });
        Worker { queue, thread }
    }

    fn submit(&self, block: Block) -> Result<(), Error> {
        self.queue
            .send(Job::Block(block))
            .map_err(|_| "a worker stopped".into())
    }

    fn wait(&self) -> Result<(), Error> {
        let (done, finished) = sync_channel(1);
        self.queue
            .send(Job::Barrier(done))
            .map_err(|_| "a worker stopped")?;
        Ok(finished.recv()?)
    }

    fn finish(self) -> Result<T, Error> {
        drop(self.queue);
        self.thread.join().map_err(|_| "a worker panicked")?
    }
}

/// A request's head: its method, target and body length.
struct Head {
    method: String,
    target: String,
    content_length: u64,
}

fn serve(stream: TcpStream, uploads: &Uploads) -> Result<(), Error> {
    let mut out = stream.try_clone()?;
    let mut input = BufReader::with_capacity(MAX_HEAD as usize, stream);
    while let Some(head) = read_head(&mut input)? {
        let mut body = (&mut input).take(head.content_length);
        let path = head.target.split('?').next().unwrap_or_default();
        let upload_id = path
            .strip_prefix("/uploads/")
            .and_then(|id| id.parse::<u64>().ok());
        match (head.method.as_str(), upload_id) {
            ("GET", _) if path == "/healthz" => respond(&mut out, "200 OK", &[])?,
            ("POST", None) if path.starts_with("/v2/") && path.ends_with("/blobs/uploads/") => {
                std::io::copy(&mut body, &mut std::io::sink())?;
                let id = uploads.next.fetch_add(1, Ordering::Relaxed);
                let path = uploads.dir.join("uploads").join(id.to_string());
                uploads.put_back(id, Upload::create(path, uploads.write_thread)?);
                let location = format!("/uploads/{id}");
                respond(&mut out, "202 Accepted", &[("Location", &location)])?;
            }
            ("PATCH", Some(id)) => {
                let Some(mut upload) = uploads.take(id) else {
                    return respond(&mut out, "404 Not Found", &[]);
                };
                append(&mut upload, &mut body)?;
                upload.wait_written()?;
                let location = format!("/uploads/{id}");
                let range = format!("0-{}", upload.len.saturating_sub(1));
                uploads.put_back(id, upload);
                respond(
                    &mut out,
                    "202 Accepted",
                    &[("Location", &location), ("Range", &range)],
                )?;
            }
            ("PUT", Some(id)) => {
                let Some(mut upload) = uploads.take(id) else {
                    return respond(&mut out, "404 Not Found", &[]);
                };
                append(&mut upload, &mut body)?;
                let want = head
                    .target
                    .split_once("digest=sha256%3A")
                    .or_else(|| head.target.split_once("digest=sha256:"))
                    .map(|(_, hex)| hex.split('&').next().unwrap_or_default().to_owned());
                let path = upload.path.clone();
                let got = upload.finish()?;
                if want.as_deref() != Some(got.as_str()) {
                    std::fs::remove_file(&path)?;
                    return respond(&mut out, "400 Bad Request", &[]);
                }
                std::fs::rename(&path, blob_path(&uploads.dir, &got))?;
                let location = format!("/v2/blobs/sha256:{got}");
                respond(&mut out, "201 Created", &[("Location", &location)])?;
            }
            _ => return respond(&mut out, "404 Not Found", &[]),
        }
    }
    Ok(())
}

fn blob_path(dir: &Path, hex: &str) -> PathBuf {
    dir.join("blobs").join(hex)
}

/// Receives the body block by block, writing each to the staged file and queueing it for
/// hashing while the next is received.
fn append(upload: &mut Upload, body: &mut impl Read) -> Result<(), Error> {
    loop {
        let mut block = upload.buffer();
        let mut filled = 0;
        while filled < BLOCK {
            let n = body.read(&mut block[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        block.truncate(filled);
        upload.len += filled as u64;
        upload.submit(block)?;
        if filled < BLOCK {
            return Ok(());
        }
    }
}

/// Reads the next request's head; `None` when the client closed the connection between
/// requests.
fn read_head(input: &mut BufReader<TcpStream>) -> Result<Option<Head>, Error> {
    let mut lines = input.take(MAX_HEAD);
    let mut line = String::new();
    if lines.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(format!("bad request line {line:?}").into());
    };
    let mut head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        content_length: 0,
    };
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Err("the request head ended early".into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(head));
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            head.content_length = value.trim().parse()?;
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, headers: &[(&str, &str)]) -> Result<(), Error> {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    Ok(out.write_all(text.as_bytes())?)
}
