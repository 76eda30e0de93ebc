//! Non-blocking socket plumbing shared by client sessions and backend connections.
//!
//! Both sides run one task per connection that multiplexes reading, writing and
//! timers with `readable()`/`try_read` and `writable()`/`try_write_vectored`, which are
//! cancel-safe inside `select!`. [`OutQueue`] batches everything ready to send into as
//! few system calls as possible, copying small frames and passing large ones through.
//! A queue that backs up (its reader is slow) costs about what it holds: copied bytes
//! go into buffers of bounded size, not into one buffer that doubles as it grows.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// Frames at least this large are queued by reference instead of copied.
const COPY_LIMIT: usize = 16 << 10;
/// Copied bytes gather in a tail buffer of at most about this size; a full tail joins
/// the queue as one more chunk. One growing buffer would be reallocated and copied at
/// every doubling, and the allocator keeps the abandoned copies around: for a client
/// that stopped reading, a 10 MB backlog cost about 30 MB.
const TAIL_MAX: usize = 64 << 10;
const MAX_IOVECS: usize = 64;

/// Bytes waiting to be written, in order.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutQueue {
    pub fn with_capacity(bytes: usize) -> OutQueue {
        OutQueue { chunks: VecDeque::new(), tail: BytesMut::with_capacity(bytes), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a frame, copying it if small.
    pub fn push(&mut self, b: &Bytes) {
        if b.len() < COPY_LIMIT {
            self.copy(b);
        } else {
            self.seal_tail();
            self.chunks.push_back(b.clone());
            self.len += b.len();
        }
    }

    /// Queues bytes by copy.
    pub fn push_slice(&mut self, b: &[u8]) {
        self.copy(b);
    }

    fn copy(&mut self, b: &[u8]) {
        if self.tail.len() + b.len() > TAIL_MAX {
            self.seal_tail();
        }
        self.tail.extend_from_slice(b);
        self.len += b.len();
    }

    /// Moves everything queued in `other` behind what is queued here.
    pub fn append(&mut self, mut other: OutQueue) {
        if other.len == 0 {
            return;
        }
        if self.len == 0 {
            *self = other;
            return;
        }
        self.seal_tail();
        self.len += other.len;
        self.chunks.append(&mut other.chunks);
        if !other.tail.is_empty() {
            self.chunks.push_back(other.tail.freeze());
        }
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Writes as much as the socket takes now; `Ok(0)` with data left means "would block".
    pub fn write_to<C: Conn>(&mut self, conn: &C) -> io::Result<usize> {
        let mut written = 0;
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for c in self.chunks.iter().take(MAX_IOVECS - 1) {
                slices[n] = IoSlice::new(c);
                n += 1;
            }
            // The tail comes after every chunk: only with all of them in this write.
            if n == self.chunks.len() && n < MAX_IOVECS && !self.tail.is_empty() {
                slices[n] = IoSlice::new(&self.tail);
                n += 1;
            }
            let w = match conn.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            self.consume(w);
            written += w;
        }
        if self.len == 0 && self.tail.capacity() > 2 * COPY_LIMIT {
            // Do not keep a large buffer alive for an idle connection.
            self.tail = BytesMut::new();
        }
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            if let Some(front) = self.chunks.front_mut() {
                if n >= front.len() {
                    n -= front.len();
                    self.chunks.pop_front();
                } else {
                    front.advance(n);
                    return;
                }
            } else {
                self.tail.advance(n);
                return;
            }
        }
    }
}

/// The socket operations the connection loops need; implemented for TCP and Unix sockets.
pub trait Conn: AsRawFd + Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Runs `f` as a read; a `WouldBlock` from `f` clears the read readiness.
    fn try_read_io(&self, f: impl FnOnce() -> io::Result<usize>) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The client's address as the slow log shows it.
    fn peer(&self) -> String;

    /// Resolves when the socket may be readable.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }

    /// Resolves when the socket may be writable.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::poll_fn(|cx| self.poll_write_ready(cx))
    }
}

macro_rules! impl_conn {
    ($t:ty, $peer:expr) => {
        impl Conn for $t {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_write_ready(self, cx)
            }
            fn try_read_io(&self, f: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
                <$t>::try_io(self, Interest::READABLE, f)
            }
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$t>::try_write_vectored(self, bufs)
            }
            fn peer(&self) -> String {
                $peer(self)
            }
        }
    };
}

impl_conn!(TcpStream, |s: &TcpStream| s.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string()));
impl_conn!(UnixStream, |_: &UnixStream| "unix".to_string());

/// Reads what is available into `buf`, growing it by `chunk` when nearly full.
/// Returns `Ok(0)` at end of stream and `WouldBlock` when nothing was ready.
///
/// A read that does not fill the free space has drained the socket, so the readiness
/// is cleared right away: the loop then waits for the next edge instead of spending a
/// system call on a read that would only say "would block". Data arriving meanwhile
/// raises a new edge, so nothing is missed.
pub fn read_available<C: Conn>(conn: &C, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
    let fd = conn.as_raw_fd();
    let mut got = 0;
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    let ptr = spare.as_mut_ptr() as *mut libc::c_void;
    let r = conn.try_read_io(|| {
        // SAFETY: `ptr` points to `room` writable bytes of `buf`'s spare capacity, which
        // stays allocated and unaliased for the duration of this call.
        let n = unsafe { libc::read(fd, ptr, room) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        got = n as usize;
        if got > 0 && got < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(got) }
    });
    let n = match r {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
        Err(e) => return Err(e),
    };
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::RawFd;
    use std::sync::Mutex;

    /// A connection that takes everything written to it at once: the largest writes
    /// `write_to` can make, which a real socket takes only with megabytes of buffer.
    #[derive(Default)]
    struct Sink(Mutex<Vec<u8>>);

    impl AsRawFd for Sink {
        fn as_raw_fd(&self) -> RawFd {
            -1
        }
    }

    impl Conn for Sink {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_write_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn try_read_io(&self, _: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut out = self.0.lock().unwrap();
            bufs.iter().for_each(|b| out.extend_from_slice(b));
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn peer(&self) -> String {
            "sink".into()
        }
    }

    #[test]
    fn a_backlog_is_held_in_bounded_chunks_and_written_in_order() {
        let mut q = OutQueue::default();
        let mut want = Vec::new();
        // Some 6 MB, more chunks than one write takes (MAX_IOVECS), numbered so that
        // any reordering shows.
        for i in 0..6_000u32 {
            let frame = format!("${}\r\n{:0>1000}\r\n", 1000, i);
            q.push_slice(frame.as_bytes());
            want.extend_from_slice(frame.as_bytes());
            if i % 1500 == 0 {
                let big = Bytes::from(vec![b'x'; COPY_LIMIT]);
                q.push(&big);
                want.extend_from_slice(&big);
            }
        }
        assert_eq!(q.len(), want.len());
        assert!(q.chunks.len() > MAX_IOVECS, "the backlog is held in chunks: {}", q.chunks.len());
        assert!(q.chunks.iter().all(|c| c.len() <= TAIL_MAX) && q.tail.capacity() <= TAIL_MAX);
        let sink = Sink::default();
        assert_eq!(q.write_to(&sink).unwrap(), want.len());
        assert!(q.is_empty());
        assert!(*sink.0.lock().unwrap() == want, "bytes written out of order");
    }
}
