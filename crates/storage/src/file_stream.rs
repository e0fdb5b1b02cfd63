//! Streaming a range of a file to a client, straight into the buffers hyper sends.
//!
//! A chunk in the page cache (a blob pulled often is) is read on the async worker itself, with
//! `preadv2(RWF_NOWAIT)`, which copies what is cached and never waits for the disk. Whatever is
//! not cached is read on a blocking thread. Handing every read to a blocking thread instead
//! (as `tokio::fs` does) cost a pull half its speed here: perf showed the worker, the reader
//! thread and the client bouncing between two cores, and a single stream's rate swinging
//! between 0.5 and 1.8 GiB/s from run to run, where reading cached chunks in place held 1.8.

use std::fs::File;
use std::io::IoSliceMut;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use rustix::io::{Errno, ReadWriteFlags};
use tokio::task::JoinHandle;

/// Bytes read per chunk: large enough that per-read costs are small, small enough that a cached
/// read holds the worker briefly and many concurrent pulls hold little memory.
pub(super) const CHUNK: usize = 512 * 1024;

/// The bytes of `range` of a file, in chunks of at most [`CHUNK`] bytes.
pub(super) struct FileStream {
    file: Arc<File>,
    /// The next offset to read.
    next: u64,
    end: u64,
    /// Whether to try reading from the page cache in place (off once the file system says it
    /// cannot, and in tests of the other path).
    try_cached: bool,
    /// The blocking read of a chunk the page cache did not hold whole.
    reading: Option<JoinHandle<std::io::Result<Bytes>>>,
}

impl FileStream {
    pub(super) fn new(file: File, range: Range<u64>) -> Self {
        FileStream {
            file: Arc::new(file),
            next: range.start,
            end: range.end,
            try_cached: true,
            reading: None,
        }
    }

    /// The next chunk if the page cache holds it whole; otherwise starts reading the rest of
    /// it on a blocking thread.
    fn read_next(&mut self) -> Option<std::io::Result<Bytes>> {
        let len = usize::try_from(self.end - self.next).map_or(CHUNK, |left| left.min(CHUNK));
        let offset = self.next;
        self.next += len as u64;
        let mut buf = pool::take();
        let mut cached = 0;
        if self.try_cached {
            match read_cached(&self.file, &mut buf[..len], offset) {
                Ok(n) => cached = n,
                Err(Errno::OPNOTSUPP) => self.try_cached = false,
                Err(e) => return Some(Err(e.into())),
            }
        }
        if cached == len {
            return Some(Ok(pool::Recycled { buf, len }.into()));
        }
        let file = Arc::clone(&self.file);
        self.reading = Some(tokio::task::spawn_blocking(move || {
            file.read_exact_at(&mut buf[cached..len], offset + cached as u64)?;
            Ok(pool::Recycled { buf, len }.into())
        }));
        None
    }
}

/// Reads into `buf` at `offset` as much as the page cache holds, without waiting for the disk.
fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let mut slice = [IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(
            file,
            &mut slice,
            offset + done as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            // The end of the file: the blocking read reports it.
            Ok(0) | Err(Errno::AGAIN) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.reading.is_none() {
            if self.next >= self.end {
                return Poll::Ready(None);
            }
            if let Some(chunk) = self.read_next() {
                return Poll::Ready(Some(self.ended_if_failed(chunk)));
            }
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let chunk = ready!(Pin::new(reading).poll(cx)).unwrap_or_else(|e| Err(e.into()));
        self.reading = None;
        Poll::Ready(Some(self.ended_if_failed(chunk)))
    }
}

impl FileStream {
    /// A failed read ends the stream: nothing after it can follow on.
    fn ended_if_failed(&mut self, chunk: std::io::Result<Bytes>) -> std::io::Result<Bytes> {
        if chunk.is_err() {
            self.next = self.end;
        }
        chunk
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        // A client that goes away leaves at most one read to finish; nobody waits for it.
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

/// Chunk buffers, recycled: a fresh 512 KiB allocation is fresh pages from the kernel, faulted
/// in and zeroed one by one, which cost a tenth of the CPU time of 32 concurrent pulls.
mod pool {
    use std::sync::Mutex;

    use bytes::Bytes;

    /// Buffers kept for reuse at most: enough for 64 pulls in flight.
    const KEPT: usize = 64;

    static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// A buffer of [`super::CHUNK`] bytes (initialised: reused ones hold old content).
    pub(super) fn take() -> Vec<u8> {
        let reused = FREE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| vec![0; super::CHUNK])
    }

    /// The first `len` bytes of a chunk buffer, which goes back to the pool when the last
    /// `Bytes` of it is dropped (once hyper has written it to the socket).
    pub(super) struct Recycled {
        pub(super) buf: Vec<u8>,
        pub(super) len: usize,
    }

    impl AsRef<[u8]> for Recycled {
        fn as_ref(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    impl From<Recycled> for Bytes {
        fn from(chunk: Recycled) -> Bytes {
            Bytes::from_owner(chunk)
        }
    }

    impl Drop for Recycled {
        fn drop(&mut self) {
            let buf = std::mem::take(&mut self.buf);
            let mut free = FREE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if free.len() < KEPT {
                free.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::io::Write;

    async fn read(content: &[u8], range: Range<u64>, try_cached: bool) -> Vec<u8> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        let mut stream = FileStream::new(file, range);
        stream.try_cached = try_cached;
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        chunks.concat()
    }

    #[tokio::test]
    async fn yields_exactly_the_range_from_the_cache_or_a_blocking_read() {
        let content: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let len = content.len() as u64;
        for try_cached in [true, false] {
            for range in [
                0..len,
                1..len - 1,
                0..0,
                5..6,
                CHUNK as u64..2 * CHUNK as u64,
                CHUNK as u64 - 1..CHUNK as u64 + 1,
            ] {
                let want = &content[range.start as usize..range.end as usize];
                let got = read(&content, range.clone(), try_cached).await;
                assert_eq!(got, want, "{range:?}, cached first: {try_cached}");
            }
        }
    }

    #[test]
    fn a_cached_chunk_is_read_in_place() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7; 100]).unwrap();
        let mut buf = [0; 64];
        // Just written, so in the page cache: read whole, without a blocking thread.
        assert_eq!(read_cached(&file, &mut buf, 30), Ok(64));
        assert_eq!(buf, [7; 64]);
        // Past the end: nothing, and the blocking read reports the short file.
        assert_eq!(read_cached(&file, &mut buf, 100), Ok(0));
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_range_is_an_error() {
        for try_cached in [true, false] {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&[1; 10]).unwrap();
            let mut stream = FileStream::new(file, 0..20);
            stream.try_cached = try_cached;
            let result: std::io::Result<Vec<Bytes>> = stream.try_collect().await;
            assert_eq!(
                result.unwrap_err().kind(),
                std::io::ErrorKind::UnexpectedEof
            );
        }
    }
}
