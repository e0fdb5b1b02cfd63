//! Streaming a range of a file to a client: positioned reads on blocking threads straight into
//! the buffers that are sent, one read ahead of the sending.
//!
//! `tokio::fs::File` reads into a buffer of its own and copies into the caller's, and reads at
//! most its own buffer's size per blocking task; here each chunk is read once, into the `Bytes`
//! hyper writes to the socket, and the next chunk is read while the current one is being sent.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::task::JoinHandle;

/// Bytes read per blocking task: large enough that the task hand-offs cost little, small enough
/// that many concurrent pulls hold little memory (at most two chunks each).
pub(super) const CHUNK: usize = 512 * 1024;

/// The bytes of `range` of a file, in chunks of at most [`CHUNK`] bytes.
pub(super) struct FileStream {
    state: State,
    /// Bytes not yet asked of the file (the read in progress excluded).
    left: u64,
}

enum State {
    /// Every byte was yielded, or a read failed.
    Done,
    /// Reading the chunk to yield next.
    Reading(JoinHandle<std::io::Result<(File, Bytes)>>),
}

impl FileStream {
    pub(super) fn new(file: File, range: Range<u64>) -> Self {
        // The first read seeks: the file is moved to its blocking task anyway.
        let first = Self::spawn_read(file, Some(range.start), range.end - range.start);
        FileStream {
            left: (range.end - range.start).saturating_sub(CHUNK as u64),
            state: first.map_or(State::Done, State::Reading),
        }
    }

    /// Starts reading the next chunk of at most `left` bytes at `seek` (or where the file is).
    fn spawn_read(
        mut file: File,
        seek: Option<u64>,
        left: u64,
    ) -> Option<JoinHandle<std::io::Result<(File, Bytes)>>> {
        if left == 0 {
            return None;
        }
        let len = left.min(CHUNK as u64);
        Some(tokio::task::spawn_blocking(move || {
            if let Some(offset) = seek {
                file.seek(SeekFrom::Start(offset))?;
            }
            // read_to_end fills the spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file).take(len).read_to_end(&mut buf)?;
            if (buf.len() as u64) < len {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok((file, Bytes::from(buf)))
        }))
    }
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let State::Reading(reading) = &mut self.state else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(reading).poll(cx)).map_err(std::io::Error::other);
        match read {
            Ok(Ok((file, chunk))) => {
                // Read the next chunk while this one is being sent.
                let left = self.left;
                self.left = left.saturating_sub(CHUNK as u64);
                self.state = Self::spawn_read(file, None, left).map_or(State::Done, State::Reading);
                Poll::Ready(Some(Ok(chunk)))
            }
            Ok(Err(e)) | Err(e) => {
                // A failed read ends the stream: nothing after it can follow on.
                self.state = State::Done;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        // A client that goes away leaves at most one read to finish; nobody waits for it.
        if let State::Reading(reading) = &self.state {
            reading.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::io::Write;

    async fn read(content: &[u8], range: Range<u64>) -> Vec<u8> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        let chunks: Vec<Bytes> = FileStream::new(file, range).try_collect().await.unwrap();
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        chunks.concat()
    }

    #[tokio::test]
    async fn yields_exactly_the_range() {
        let content: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let len = content.len() as u64;
        for range in [
            0..len,
            1..len - 1,
            0..0,
            5..6,
            CHUNK as u64..2 * CHUNK as u64,
            CHUNK as u64 - 1..CHUNK as u64 + 1,
        ] {
            let want = &content[range.start as usize..range.end as usize];
            assert_eq!(read(&content, range.clone()).await, want, "{range:?}");
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_the_range_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1; 10]).unwrap();
        let result: std::io::Result<Vec<Bytes>> = FileStream::new(file, 0..20).try_collect().await;
        assert_eq!(
            result.unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
