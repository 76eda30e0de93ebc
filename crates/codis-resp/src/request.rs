//! Client requests: RESP2 multibulk and inline commands, parsed without copying.
//!
//! A [`Request`] keeps the bytes exactly as the client sent them (so the proxy can
//! forward them unchanged) plus the offsets of each argument. The parser resumes where
//! it stopped: an argument list of a million entries arriving in a thousand reads is
//! scanned once, not a thousand times.

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtocolError;
use crate::encode::encode_request;

/// Bounds on what a client may send; exceeding one is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument (Redis `proto-max-bulk-len`, default 512 MB).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request.
    pub max_array_len: usize,
    /// Longest inline command line.
    pub max_inline_len: usize,
    /// Largest request as a whole (Redis `client-query-buffer-limit`, default 1 GB).
    pub max_request_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bulk_len: 512 << 20, max_array_len: 1 << 20, max_inline_len: 64 << 10, max_request_len: 1 << 30 }
    }
}

/// Offsets of one argument inside [`Request::raw`]. `u32` is enough because a request
/// is bounded by [`Limits::max_request_len`], itself capped below 4 GB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

const INLINE_SPANS: usize = 6;

/// Argument offsets; most commands have at most six arguments, so no allocation.
#[derive(Debug, Clone)]
enum Spans {
    Inline { len: u8, items: [Span; INLINE_SPANS] },
    Heap(Vec<Span>),
}

impl Spans {
    fn with_capacity(n: usize) -> Self {
        if n <= INLINE_SPANS {
            Spans::Inline { len: 0, items: [Span::default(); INLINE_SPANS] }
        } else {
            // The count comes from the client: never trust it for a large up-front allocation.
            Spans::Heap(Vec::with_capacity(n.min(1024)))
        }
    }

    fn push(&mut self, span: Span) {
        match self {
            Spans::Inline { len, items } if (*len as usize) < INLINE_SPANS => {
                items[*len as usize] = span;
                *len += 1;
            }
            Spans::Inline { len, items } => {
                let mut v = items[..*len as usize].to_vec();
                v.push(span);
                *self = Spans::Heap(v);
            }
            Spans::Heap(v) => v.push(span),
        }
    }

    fn as_slice(&self) -> &[Span] {
        match self {
            Spans::Inline { len, items } => &items[..*len as usize],
            Spans::Heap(v) => v,
        }
    }
}

/// One command: its RESP encoding and where each argument lies in it.
#[derive(Debug, Clone)]
pub struct Request {
    raw: Bytes,
    spans: Spans,
}

/// A request borrowed from wherever it lies (the read buffer, or an owned [`Request`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestRef<'a> {
    raw: &'a [u8],
    spans: &'a Spans,
    shared: Option<&'a Bytes>,
}

impl<'a> RequestRef<'a> {
    /// Number of arguments, the command name included.
    pub fn argc(&self) -> usize {
        self.spans.as_slice().len()
    }

    /// Argument `i` (0 is the command name). Panics when out of range.
    pub fn arg(&self, i: usize) -> &'a [u8] {
        let s = self.spans.as_slice()[i];
        &self.raw[s.start as usize..s.end as usize]
    }

    /// Argument `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.argc()).then(|| self.arg(i))
    }

    /// All arguments in order.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + use<'a> {
        let raw = self.raw;
        self.spans.as_slice().iter().map(move |s| &raw[s.start as usize..s.end as usize])
    }

    /// The multibulk encoding of the whole request, ready to forward.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The encoding as shared bytes, when the request owns them (large requests are
    /// forwarded by reference instead of copied).
    pub fn shared(&self) -> Option<&'a Bytes> {
        self.shared
    }

    /// An owned copy (for requests that must wait).
    pub fn to_owned(&self) -> Request {
        match self.shared {
            Some(b) => Request { raw: b.clone(), spans: self.spans.clone() },
            None => Request { raw: Bytes::copy_from_slice(self.raw), spans: self.spans.clone() },
        }
    }
}

impl Request {
    /// Builds a request from arguments (used for commands the proxy issues itself and
    /// for sub-requests of split multi-key commands).
    pub fn from_args<I, A>(args: I) -> Request
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: ExactSizeIterator,
        A: AsRef<[u8]>,
    {
        let raw = encode_request(args);
        Self::index(raw).expect("encode_request produces a well-formed request")
    }

    /// Parses `raw` as exactly one multibulk request.
    fn index(raw: Bytes) -> Option<Request> {
        let mut buf = BytesMut::from(&raw[..]);
        let mut parser = RequestParser::new(Limits {
            max_request_len: usize::MAX,
            max_array_len: usize::MAX,
            max_bulk_len: usize::MAX,
            ..Limits::default()
        });
        let req = parser.parse(&mut buf).ok()??;
        buf.is_empty().then_some(Request { raw, spans: req.spans })
    }

    pub fn as_ref(&self) -> RequestRef<'_> {
        RequestRef { raw: &self.raw, spans: &self.spans, shared: Some(&self.raw) }
    }

    /// Number of arguments, the command name included.
    pub fn argc(&self) -> usize {
        self.spans.as_slice().len()
    }

    /// Argument `i` (0 is the command name). Panics when out of range.
    pub fn arg(&self, i: usize) -> &[u8] {
        self.as_ref().arg(i)
    }

    /// Argument `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.as_ref().get(i)
    }

    /// Argument `i` as a shared slice of the request buffer (no copy).
    pub fn arg_bytes(&self, i: usize) -> Bytes {
        let s = self.spans.as_slice()[i];
        self.raw.slice(s.start as usize..s.end as usize)
    }

    /// All arguments in order.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.as_ref().args()
    }

    /// The multibulk encoding of the whole request, ready to forward.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }
}

/// A complete request found at the front of the read buffer, not yet taken out of it.
#[derive(Debug)]
pub struct Frame {
    len: usize,
    spans: Spans,
}

impl Frame {
    /// Bytes the request occupies at the front of the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The request, borrowed from `buf` (the buffer the frame was parsed from).
    pub fn view<'a>(&'a self, buf: &'a [u8]) -> RequestRef<'a> {
        RequestRef { raw: &buf[..self.len], spans: &self.spans, shared: None }
    }

    /// Takes the request out of `buf` as an owned request, without copying.
    pub fn split_from(self, buf: &mut BytesMut) -> Request {
        Request { raw: buf.split_to(self.len).freeze(), spans: self.spans }
    }
}

/// What [`RequestParser::next`] found.
#[derive(Debug)]
pub enum Parsed {
    /// A multibulk request still in the buffer: dispatch it from there, then advance
    /// the buffer by [`Frame::len`].
    Frame(Frame),
    /// An inline request, already re-encoded as multibulk and consumed from the buffer.
    Owned(Request),
}

enum State {
    Idle,
    /// A protocol error was reported: the stream cannot be resynchronised, so every
    /// later call reports it again and consumes nothing.
    Failed(ProtocolError),
    /// Inside a multibulk request: `remaining` arguments still to read, the next at `pos`.
    Multibulk {
        remaining: usize,
        pos: usize,
        spans: Spans,
    },
}

/// Incremental request parser for one client connection.
pub struct RequestParser {
    limits: Limits,
    state: State,
}

/// Outcome of reading a `<prefix><integer>\r\n` header.
enum Header {
    Incomplete,
    Value(i64, usize),
    Invalid,
    NoCrlf,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        Self { limits, state: State::Idle }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; nothing of a partial request is consumed.
    /// After an error the connection must be closed: the stream cannot be resynchronised.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        Ok(match self.next(buf)? {
            None => None,
            Some(Parsed::Owned(req)) => Some(req),
            Some(Parsed::Frame(frame)) => Some(frame.split_from(buf)),
        })
    }

    /// Finds the next complete request without copying it out of `buf`: multibulk
    /// requests stay in place (the caller advances `buf` past [`Frame::len`] when done),
    /// inline ones are consumed and returned re-encoded.
    ///
    /// An error is terminal: every later call reports it again. (Without that, the
    /// bytes after a malformed header could be read as a request of their own, and
    /// more input could turn an error into a request.)
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, ProtocolError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let result = self.advance(buf);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn advance(&mut self, buf: &mut BytesMut) -> Result<Option<Parsed>, ProtocolError> {
        // Fast path: a short, complete, well-formed multibulk request parsed in one go.
        // Anything else (incomplete, malformed, many arguments) takes the resumable path.
        if matches!(self.state, State::Idle)
            && buf.first() == Some(&b'*')
            && let Some(frame) = fast_frame(buf, &self.limits)
        {
            return Ok(Some(Parsed::Frame(frame)));
        }
        loop {
            match &mut self.state {
                State::Idle => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        match self.parse_inline(buf)? {
                            Some(Some(req)) => return Ok(Some(Parsed::Owned(req))),
                            Some(None) => continue, // blank line: ignored, as Redis does
                            None => return Ok(None),
                        }
                    }
                    match read_header(buf, 1) {
                        Header::Incomplete => {
                            if buf.len() > 32 {
                                return Err(ProtocolError::InvalidMultibulkLength);
                            }
                            return Ok(None);
                        }
                        Header::Invalid => return Err(ProtocolError::InvalidMultibulkLength),
                        Header::NoCrlf => return Err(ProtocolError::ExpectedCrlf),
                        Header::Value(n, next) => {
                            if n <= 0 {
                                // `*0` and `*-1` carry no command; Redis skips them silently.
                                buf.advance(next);
                                continue;
                            }
                            let n = n as usize;
                            if n > self.limits.max_array_len {
                                return Err(ProtocolError::InvalidMultibulkLength);
                            }
                            self.state = State::Multibulk { remaining: n, pos: next, spans: Spans::with_capacity(n) };
                        }
                    }
                }
                State::Failed(e) => return Err(e.clone()),
                State::Multibulk { remaining, pos, spans } => {
                    while *remaining > 0 {
                        let Some(&b) = buf.get(*pos) else {
                            return Ok(None);
                        };
                        if b != b'$' {
                            return Err(ProtocolError::ExpectedBulk(b));
                        }
                        let (len, start) = match read_header(buf, *pos + 1) {
                            Header::Incomplete if buf.len() - *pos > 32 => {
                                return Err(ProtocolError::InvalidBulkLength);
                            }
                            Header::Incomplete => return Ok(None),
                            Header::Invalid => return Err(ProtocolError::InvalidBulkLength),
                            Header::NoCrlf => return Err(ProtocolError::ExpectedCrlf),
                            Header::Value(len, start) => (len, start),
                        };
                        if len < 0 || len as usize > self.limits.max_bulk_len {
                            return Err(ProtocolError::InvalidBulkLength);
                        }
                        let end = start + len as usize;
                        if end + 2 > self.limits.max_request_len {
                            return Err(ProtocolError::RequestTooBig(self.limits.max_request_len));
                        }
                        if end + 2 > buf.len() {
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(ProtocolError::ExpectedCrlf);
                        }
                        spans.push(Span { start: start as u32, end: end as u32 });
                        *pos = end + 2;
                        *remaining -= 1;
                    }
                    let State::Multibulk { pos, spans, .. } = std::mem::replace(&mut self.state, State::Idle) else {
                        unreachable!()
                    };
                    return Ok(Some(Parsed::Frame(Frame { len: pos, spans })));
                }
            }
        }
    }

    /// Parses one inline line. `Some(None)` is a blank line, `None` an incomplete one.
    fn parse_inline(&self, buf: &mut BytesMut) -> Result<Option<Option<Request>>, ProtocolError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(None);
        };
        if nl > self.limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        let args = split_args(&buf[..line_end])?;
        buf.advance(nl + 1);
        if args.is_empty() {
            return Ok(Some(None));
        }
        Ok(Some(Some(Request::from_args(args.iter()))))
    }
}

/// Parses a complete multibulk request of at most [`INLINE_SPANS`] arguments starting
/// at `buf[0] == b'*'`, or gives up (`None`) so the general parser handles it.
#[inline]
fn fast_frame(buf: &[u8], limits: &Limits) -> Option<Frame> {
    let (n, mut pos) = fast_uint(buf, 1)?;
    if n == 0 || n > INLINE_SPANS || n > limits.max_array_len {
        return None;
    }
    let mut items = [Span::default(); INLINE_SPANS];
    for item in items.iter_mut().take(n) {
        if *buf.get(pos)? != b'$' {
            return None;
        }
        let (len, start) = fast_uint(buf, pos + 1)?;
        let end = start + len;
        if len > limits.max_bulk_len || end + 2 > limits.max_request_len {
            return None;
        }
        if buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        *item = Span { start: start as u32, end: end as u32 };
        pos = end + 2;
    }
    Some(Frame { len: pos, spans: Spans::Inline { len: n as u8, items } })
}

/// A non-negative decimal of at most 9 digits at `pos`, terminated by `\r\n`.
#[inline]
fn fast_uint(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &b) in buf.get(pos..)?.iter().enumerate().take(11) {
        match b {
            b'0'..=b'9' if i < 9 => v = v * 10 + (b - b'0') as usize,
            b'\r' if i > 0 => return (buf.get(pos + i + 1) == Some(&b'\n')).then_some((v, pos + i + 2)),
            _ => return None,
        }
    }
    None
}

/// Reads an optionally negative decimal integer at `pos`, terminated by `\r\n`.
fn read_header(buf: &[u8], mut pos: usize) -> Header {
    let neg = buf.get(pos) == Some(&b'-');
    if neg {
        pos += 1;
    }
    let mut value: i64 = 0;
    let mut digits = 0;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Header::Incomplete;
        };
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 18 {
                    return Header::Invalid;
                }
                value = value * 10 + (b - b'0') as i64;
                pos += 1;
            }
            b'\r' => {
                if digits == 0 {
                    return Header::Invalid;
                }
                return match buf.get(pos + 1) {
                    None => Header::Incomplete,
                    Some(b'\n') => Header::Value(if neg { -value } else { value }, pos + 2),
                    Some(_) => Header::NoCrlf,
                };
            }
            b'\n' if digits > 0 => return Header::NoCrlf,
            _ => return Header::Invalid,
        }
    }
}

/// Splits an inline command line into arguments with the quoting rules of redis-cli
/// and Redis's own inline protocol: `"..."` with C-like and `\xHH` escapes, `'...'`
/// with only `\'`, and a closing quote that must end the argument.
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    cur.push(hex(line[i + 2]) << 4 | hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_single {
                if i >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    c if is_space(c) => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        args.push(cur);
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(req) = p.parse(&mut buf)? {
            out.push(req.args().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_pipelines() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n").unwrap();
        assert_eq!(got, vec![args(&["GET", "k"]), args(&["SET", "k", ""])]);
    }

    #[test]
    fn raw_is_exact_input_and_args_are_slices() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&input[..]);
        let req = p.parse(&mut buf).unwrap().unwrap();
        assert_eq!(&req.raw()[..], &input[..]);
        assert_eq!(req.arg_bytes(1), Bytes::from_static(b"hello"));
        assert!(buf.is_empty());
    }

    #[test]
    fn many_args_spill_to_heap() {
        let req = Request::from_args((0..100).map(|i| i.to_string()));
        assert_eq!(req.argc(), 100);
        assert_eq!(req.arg(99), b"99");
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let got = parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![args(&["PING"])]);
    }

    #[test]
    fn inline_commands() {
        let got = parse_all(b"PING\r\nset a \"b c\"\n\r\n  get   'x y'  \r\n").unwrap();
        assert_eq!(got, vec![args(&["PING"]), args(&["set", "a", "b c"]), args(&["get", "x y"])]);
        let got = parse_all(b"set k \"\\x41\\n\\\"\" 'it\\'s'\r\n").unwrap();
        assert_eq!(got, vec![vec![b"set".to_vec(), b"k".to_vec(), b"A\n\"".to_vec(), b"it's".to_vec()]]);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_requests() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(req) = p.parse(&mut buf).unwrap() {
                got.push(req.args().map(|a| a.to_vec()).collect::<Vec<_>>());
            }
        }
        assert_eq!(got, vec![args(&["SET", "key", "0123456789"]), args(&["PING"]), args(&["PING"])]);
    }

    #[test]
    fn malformed_inputs() {
        use ProtocolError::*;
        let limits = Limits { max_bulk_len: 1000, max_array_len: 10, max_inline_len: 100, max_request_len: 5000 };
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", InvalidMultibulkLength),
            (b"*11\r\n", InvalidMultibulkLength),
            (b"*1\r\n+PING\r\n", ExpectedBulk(b'+')),
            (b"*1\r\n$x\r\n", InvalidBulkLength),
            (b"*1\r\n$-1\r\n", InvalidBulkLength),
            (b"*1\r\n$1001\r\n", InvalidBulkLength),
            (b"*1\r\n$4\r\nPINGxx", ExpectedCrlf),
            (b"*1\n", ExpectedCrlf),
            (b"*1\r\n$4\rx", ExpectedCrlf),
            (b"*1\r\n$99999999999999999999\r\n", InvalidBulkLength),
            (b"set a \"b\n", UnbalancedQuotes),
            (b"set a 'b'c\n", UnbalancedQuotes),
            (&[b'a'; 101], InlineTooBig),
            (b"*\r\n", InvalidMultibulkLength),
            (b"*1\r\n$\r\n", InvalidBulkLength),
        ];
        for (input, want) in cases {
            let mut p = RequestParser::new(limits);
            let mut buf = BytesMut::from(*input);
            let got = loop {
                match p.parse(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            assert_eq!(got.as_ref(), Some(want), "input {:?}", String::from_utf8_lossy(input));
        }
        // the whole request counts against max_request_len, not only each bulk
        let mut p = RequestParser::new(limits);
        let mut big = b"*6\r\n".to_vec();
        for _ in 0..6 {
            big.extend_from_slice(b"$999\r\n");
            big.extend_from_slice(&[b'x'; 999]);
            big.extend_from_slice(b"\r\n");
        }
        let mut buf = BytesMut::from(&big[..]);
        assert_eq!(p.parse(&mut buf).unwrap_err(), RequestTooBig(5000));
    }

    /// Found by the fuzz checks (seed `pipeline`, tiny limits): the fast path for
    /// complete short requests did not apply `max_array_len`, so a request refused
    /// while it trickled in was accepted when it arrived in one read.
    #[test]
    fn fast_path_applies_max_array_len() {
        let limits = Limits { max_array_len: 3, ..Limits::default() };
        let req = b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
        let mut whole = BytesMut::from(&req[..]);
        assert_eq!(RequestParser::new(limits).parse(&mut whole).unwrap_err(), ProtocolError::InvalidMultibulkLength);
        let mut part = BytesMut::from(&req[..6]);
        assert_eq!(RequestParser::new(limits).parse(&mut part).unwrap_err(), ProtocolError::InvalidMultibulkLength);
    }

    /// Found by the fuzz checks: after an error the parser started over, so more input
    /// (or the same buffer) could yield requests from a stream already out of step.
    #[test]
    fn errors_are_terminal() {
        let limits = Limits { max_array_len: 3, ..Limits::default() };
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*4\r\n$4\r\nMG"[..]);
        assert_eq!(p.parse(&mut buf).unwrap_err(), ProtocolError::InvalidMultibulkLength);
        buf.extend_from_slice(b"ET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*1\r\n$4\r\nPING\r\n");
        let len = buf.len();
        assert_eq!(p.parse(&mut buf).unwrap_err(), ProtocolError::InvalidMultibulkLength);
        assert!(matches!(p.next(&mut buf), Err(ProtocolError::InvalidMultibulkLength)));
        assert_eq!(buf.len(), len, "nothing consumed after an error");
        // mid-request errors too
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n+k\r\n*1\r\n$4\r\nPING\r\n"[..]);
        assert_eq!(p.parse(&mut buf).unwrap_err(), ProtocolError::ExpectedBulk(b'+'));
        assert_eq!(p.parse(&mut buf).unwrap_err(), ProtocolError::ExpectedBulk(b'+'));
    }

    #[test]
    fn a_declared_length_is_not_trusted() {
        // A 100 MB argument announced, a few bytes of it sent: the parser waits for
        // more without asking for room (the caller's buffer grows only with what
        // arrives), whether the request was seen whole or in pieces.
        let head = b"*2\r\n$3\r\nGET\r\n$104857600\r\nsome bytes";
        let mut p = RequestParser::new(Limits::default());
        let mut buf = BytesMut::with_capacity(64);
        for &b in head.iter() {
            buf.extend_from_slice(&[b]);
            assert!(p.parse(&mut buf).unwrap().is_none());
        }
        assert_eq!(buf.capacity(), 64);
        assert_eq!(&buf[..], &head[..]);
    }

    #[test]
    fn error_messages_match_redis() {
        assert_eq!(ProtocolError::InvalidBulkLength.to_string(), "Protocol error: invalid bulk length");
        assert_eq!(ProtocolError::ExpectedBulk(b'+').to_string(), "Protocol error: expected '$', got '+'");
        assert_eq!(ProtocolError::InlineTooBig.to_string(), "Protocol error: too big inline request");
    }
}
