//! Non-blocking socket plumbing shared by client sessions and backend connections.
//!
//! Both sides run one task per connection that multiplexes reading, writing and
//! timers with `readable()`/`try_read` and `writable()`/`try_write_vectored`, which are
//! cancel-safe inside `select!`. [`OutQueue`] batches everything ready to send into as
//! few system calls as possible, copying small frames and passing large ones through.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::{TcpStream, UnixStream};

/// Frames at least this large are queued by reference instead of copied.
const COPY_LIMIT: usize = 16 << 10;
const MAX_IOVECS: usize = 64;

/// Bytes waiting to be written, in order.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a frame, copying it if small.
    pub fn push(&mut self, b: &Bytes) {
        if b.len() < COPY_LIMIT {
            self.tail.extend_from_slice(b);
        } else {
            self.seal_tail();
            self.chunks.push_back(b.clone());
        }
        self.len += b.len();
    }

    /// Queues bytes by copy.
    pub fn push_slice(&mut self, b: &[u8]) {
        self.tail.extend_from_slice(b);
        self.len += b.len();
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
            if n < MAX_IOVECS && !self.tail.is_empty() {
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
        if self.len == 0 && self.tail.capacity() > 4 * COPY_LIMIT {
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
pub trait Conn: Send + Sync + 'static {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

macro_rules! impl_conn {
    ($t:ty) => {
        impl Conn for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
                <$t>::writable(self)
            }
            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$t>::try_read_buf(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$t>::try_write_vectored(self, bufs)
            }
        }
    };
}

impl_conn!(TcpStream);
impl_conn!(UnixStream);

/// Reads what is available into `buf`, growing it by `chunk` when full.
/// Returns `Ok(0)` at end of stream and `WouldBlock` when nothing was ready.
pub fn read_available<C: Conn>(conn: &C, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
    conn.try_read_buf(buf)
}
