//! A small async RESP client: raw replies for byte-exact checks, decoded values for
//! convenient ones. Used by the dashboard (INFO, SLOTS*, replication commands), by
//! codis-admin and by tests; the proxy's data path has its own pipelined connections.

pub mod sentinel;

use std::io;

use bytes::{Bytes, BytesMut};
use codis_resp::{ReplyScanner, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
    /// RESP3 and other types, kept raw.
    Other(Vec<u8>),
}

impl Value {
    /// Decodes one complete frame.
    pub fn parse(frame: &[u8]) -> Value {
        let (v, _) = parse_at(frame, 0);
        v
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Simple(s) | Value::Error(s) => Some(s),
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    pub fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }
}

fn line(buf: &[u8], pos: usize) -> (&str, usize) {
    let end = pos + buf[pos..].windows(2).position(|w| w == b"\r\n").expect("CRLF");
    (std::str::from_utf8(&buf[pos..end]).unwrap_or(""), end + 2)
}

fn parse_at(buf: &[u8], pos: usize) -> (Value, usize) {
    let t = buf[pos];
    let (text, next) = line(buf, pos + 1);
    match t {
        b'+' => (Value::Simple(text.to_string()), next),
        b'-' => (Value::Error(text.to_string()), next),
        b':' => (Value::Int(text.parse().expect("integer")), next),
        b'$' => {
            let n: i64 = text.parse().expect("bulk length");
            if n < 0 {
                return (Value::Nil, next);
            }
            let end = next + n as usize;
            (Value::Bulk(buf[next..end].to_vec()), end + 2)
        }
        b'*' => {
            let n: i64 = text.parse().expect("array length");
            if n < 0 {
                return (Value::Nil, next);
            }
            let mut items = Vec::new();
            let mut p = next;
            for _ in 0..n {
                let (v, np) = parse_at(buf, p);
                items.push(v);
                p = np;
            }
            (Value::Array(items), p)
        }
        _ => {
            let len = ReplyScanner::default().scan(&buf[pos..]).ok().flatten().unwrap_or(buf.len() - pos);
            (Value::Other(buf[pos..pos + len].to_vec()), pos + len)
        }
    }
}

/// One connection to a RESP server.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    scanner: ReplyScanner,
}

impl Client {
    pub async fn connect(addr: &str) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buf: BytesMut::with_capacity(64 << 10), scanner: ReplyScanner::default() })
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data).await
    }

    /// Sends one command without waiting for its reply.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        self.stream.write_all(&encode_request(args.iter())).await
    }

    /// Reads one reply frame; `UnexpectedEof` if the server closed the connection.
    pub async fn read_frame(&mut self) -> io::Result<Bytes> {
        loop {
            if let Some(len) =
                self.scanner.scan(&self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                return Ok(self.buf.split_to(len).freeze());
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 << 10);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    pub async fn read(&mut self) -> io::Result<Value> {
        Ok(Value::parse(&self.read_frame().await?))
    }

    /// Sends a command and decodes its reply.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Value> {
        self.send(args).await?;
        self.read().await
    }

    /// Sends all commands in one write, then reads all replies.
    pub async fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Value>> {
        let mut out = BytesMut::new();
        for c in cmds {
            out.extend_from_slice(&encode_request(c.iter()));
        }
        self.stream.write_all(&out).await?;
        let mut replies = Vec::with_capacity(cmds.len());
        for _ in cmds {
            replies.push(self.read().await?);
        }
        Ok(replies)
    }

    /// Whether the server has closed the connection (reads until EOF or a short timeout).
    pub async fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Shorthand for building a command from string arguments.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(AsRef::<[u8]>::as_ref(&$a).to_vec()),*] };
}

/// A command that failed for a reason other than the server's own error reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("{addr}: no reply within {timeout:?}")]
    Timeout { addr: String, timeout: std::time::Duration },
    #[error("{addr}: {message}")]
    Reply { addr: String, message: String },
}

/// A connection with a deadline on every command, for talking to servers that may be
/// slow or gone (the control plane must never hang on one).
pub struct Conn {
    addr: String,
    client: Client,
    timeout: std::time::Duration,
}

impl Conn {
    /// Connects and authenticates (`auth` empty: no AUTH).
    pub async fn open(addr: &str, auth: &str, timeout: std::time::Duration) -> Result<Conn, ClientError> {
        let client = match tokio::time::timeout(timeout, Client::connect(addr)).await {
            Err(_) => return Err(ClientError::Timeout { addr: addr.to_string(), timeout }),
            Ok(Err(source)) => return Err(ClientError::Io { addr: addr.to_string(), source }),
            Ok(Ok(c)) => c,
        };
        let mut conn = Conn { addr: addr.to_string(), client, timeout };
        if !auth.is_empty() {
            match conn.cmd(&["AUTH", auth]).await? {
                // A server without a password accepts everyone; that is not a failure.
                Value::Error(e)
                    if e.contains("without any password configured") || e.contains("no password is set") => {}
                Value::Error(message) => return Err(ClientError::Reply { addr: addr.to_string(), message }),
                _ => {}
            }
        }
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs a command; the server's error replies come back as `Value::Error`.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, ClientError> {
        match tokio::time::timeout(self.timeout, self.client.cmd(args)).await {
            Err(_) => Err(ClientError::Timeout { addr: self.addr.clone(), timeout: self.timeout }),
            Ok(Err(source)) => Err(ClientError::Io { addr: self.addr.clone(), source }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Runs a command and turns an error reply into an error.
    pub async fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, ClientError> {
        match self.cmd(args).await? {
            Value::Error(message) => Err(ClientError::Reply { addr: self.addr.clone(), message }),
            v => Ok(v),
        }
    }

    /// `INFO [section]` as key/value pairs.
    pub async fn info(&mut self, section: Option<&str>) -> Result<Vec<(String, String)>, ClientError> {
        let v = match section {
            Some(s) => self.ok(&["INFO", s]).await?,
            None => self.ok(&["INFO"]).await?,
        };
        let text = v.as_str().unwrap_or_default().to_string();
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
            .collect())
    }

    /// Sets the deadline for the following commands (long migrations need more).
    pub fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.timeout = timeout;
    }
}
