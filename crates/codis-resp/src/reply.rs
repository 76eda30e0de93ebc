//! Server replies: measured, not decoded.
//!
//! The proxy forwards a reply as the bytes the server sent, so all it needs is where a
//! reply ends. [`ReplyScanner`] finds that for every RESP2 and RESP3 type (attributes,
//! pushes and streamed strings and aggregates included) and resumes across reads, so a
//! reply of a million elements arriving in many reads is walked once. The few places
//! that must look inside a reply (merging split multi-key commands) use [`ReplyView`].

use std::ops::Range;

use crate::ProtocolError;

/// The type of a reply, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Simple,
    Error,
    Integer,
    Bulk,
    Array,
    /// RESP3 push (`>`): out-of-band data, not an answer to a request.
    Push,
    /// Any other RESP3 type, passed through as is.
    Other,
}

impl ReplyKind {
    pub fn of(frame: &[u8]) -> ReplyKind {
        match frame.first() {
            Some(b'+') => ReplyKind::Simple,
            Some(b'-') | Some(b'!') => ReplyKind::Error,
            Some(b':') => ReplyKind::Integer,
            Some(b'$') => ReplyKind::Bulk,
            Some(b'*') => ReplyKind::Array,
            Some(b'>') => ReplyKind::Push,
            _ => ReplyKind::Other,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Level {
    /// A counted aggregate with this many elements still to come.
    Counted(u64),
    /// An attribute map: its elements do not count as a value of the parent.
    Attribute(u64),
    /// A streamed aggregate (`*?`), ended by `.`.
    Streamed,
    /// A streamed string (`$?`), made of `;<len>` chunks and ended by `;0`.
    StreamedString,
}

/// Resumable scanner that reports the length of the first complete reply in a buffer.
#[derive(Debug)]
pub struct ReplyScanner {
    pos: usize,
    stack: Vec<Level>,
    max_bulk_len: usize,
    max_depth: usize,
    /// The error reported, reported again on every later call: the scanner's position
    /// may already be past the bad header, so scanning on would misread the stream.
    failed: Option<ProtocolError>,
}

/// Nesting a server may legitimately send: a Lua script returning a self-referencing
/// table gets arrays nested until Lua's stack runs out (a few thousand deep). The
/// scanner keeps its levels on the heap, so depth costs a few bytes each.
pub const MAX_REPLY_DEPTH: usize = 1 << 16;

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new(1 << 30, MAX_REPLY_DEPTH)
    }
}

enum Line {
    Incomplete,
    /// Integer value and the offset after its CRLF.
    Int(i64, usize),
    /// `?`: a streamed length.
    Streamed(usize),
}

impl ReplyScanner {
    pub fn new(max_bulk_len: usize, max_depth: usize) -> Self {
        Self { pos: 0, stack: Vec::new(), max_bulk_len, max_depth, failed: None }
    }

    /// Returns the byte length of the complete reply at the start of `buf`, or `None`
    /// if more bytes are needed. `buf` must start at the same reply on every call until
    /// one returns `Some` (the scanner remembers how far it got). An error is terminal:
    /// every later call reports it again.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.advance(buf);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let Some(&t) = buf.get(self.pos) else {
                return Ok(None);
            };
            // A streamed string is made of `;` chunks only.
            if t != b';' && matches!(self.stack.last(), Some(Level::StreamedString)) {
                return Err(ProtocolError::InvalidReplyType(t));
            }
            // Each arm either consumes one whole value (`value_done`), opens a level, or
            // closes a streamed level.
            let value_done = match t {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => match find_crlf(buf, self.pos + 1)? {
                    Some(next) => {
                        self.pos = next;
                        true
                    }
                    None => return Ok(None),
                },
                b'$' | b'!' | b'=' => match read_line(buf, self.pos + 1)? {
                    Line::Incomplete => return Ok(None),
                    Line::Streamed(next) if t == b'$' => {
                        self.push(Level::StreamedString)?;
                        self.pos = next;
                        false
                    }
                    Line::Streamed(_) => return Err(ProtocolError::InvalidBulkLength),
                    Line::Int(-1, next) if t == b'$' => {
                        self.pos = next;
                        true
                    }
                    Line::Int(len, next) => {
                        if len < 0 || len as usize > self.max_bulk_len {
                            return Err(ProtocolError::InvalidBulkLength);
                        }
                        let end = next + len as usize;
                        if end + 2 > buf.len() {
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(ProtocolError::ExpectedCrlf);
                        }
                        self.pos = end + 2;
                        true
                    }
                },
                b';' => {
                    if !matches!(self.stack.last(), Some(Level::StreamedString)) {
                        return Err(ProtocolError::InvalidReplyType(t));
                    }
                    match read_line(buf, self.pos + 1)? {
                        Line::Incomplete => return Ok(None),
                        Line::Streamed(_) => return Err(ProtocolError::InvalidBulkLength),
                        Line::Int(0, next) => {
                            self.pos = next;
                            self.stack.pop();
                            true
                        }
                        Line::Int(len, next) => {
                            if len < 0 || len as usize > self.max_bulk_len {
                                return Err(ProtocolError::InvalidBulkLength);
                            }
                            let end = next + len as usize;
                            if end + 2 > buf.len() {
                                return Ok(None);
                            }
                            if &buf[end..end + 2] != b"\r\n" {
                                return Err(ProtocolError::ExpectedCrlf);
                            }
                            self.pos = end + 2;
                            false
                        }
                    }
                }
                b'*' | b'%' | b'~' | b'>' | b'|' => match read_line(buf, self.pos + 1)? {
                    Line::Incomplete => return Ok(None),
                    Line::Streamed(next) => {
                        if t == b'|' {
                            return Err(ProtocolError::InvalidMultibulkLength);
                        }
                        self.push(Level::Streamed)?;
                        self.pos = next;
                        false
                    }
                    Line::Int(n, next) => {
                        self.pos = next;
                        if n < -1 || (n == -1 && t != b'*') {
                            return Err(ProtocolError::InvalidMultibulkLength);
                        }
                        let count = if t == b'%' || t == b'|' { (n.max(0) as u64) * 2 } else { n.max(0) as u64 };
                        match (count, t) {
                            (0, b'|') => false,
                            (0, _) => true,
                            (c, b'|') => {
                                self.push(Level::Attribute(c))?;
                                false
                            }
                            (c, _) => {
                                self.push(Level::Counted(c))?;
                                false
                            }
                        }
                    }
                },
                b'.' => {
                    if !matches!(self.stack.last(), Some(Level::Streamed)) {
                        return Err(ProtocolError::InvalidReplyType(t));
                    }
                    match find_crlf(buf, self.pos + 1)? {
                        Some(next) => {
                            self.pos = next;
                            self.stack.pop();
                            true
                        }
                        None => return Ok(None),
                    }
                }
                other => return Err(ProtocolError::InvalidReplyType(other)),
            };
            if value_done && self.complete_value() {
                let len = self.pos;
                self.pos = 0;
                return Ok(Some(len));
            }
        }
    }

    /// Accounts one finished value against the open levels; true when the reply is done.
    fn complete_value(&mut self) -> bool {
        loop {
            match self.stack.last_mut() {
                None => return true,
                Some(Level::Counted(n)) => {
                    *n -= 1;
                    if *n > 0 {
                        return false;
                    }
                    self.stack.pop();
                }
                Some(Level::Attribute(n)) => {
                    *n -= 1;
                    if *n == 0 {
                        // The attribute is complete; the value it annotates follows.
                        self.stack.pop();
                    }
                    return false;
                }
                Some(Level::Streamed) | Some(Level::StreamedString) => return false,
            }
        }
    }

    fn push(&mut self, level: Level) -> Result<(), ProtocolError> {
        if self.stack.len() >= self.max_depth {
            return Err(ProtocolError::NestingTooDeep);
        }
        self.stack.push(level);
        Ok(())
    }
}

/// Position after the first CRLF at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(rel) = buf.get(from..).and_then(|s| s.iter().position(|&b| b == b'\r')) else {
        return Ok(None);
    };
    let cr = from + rel;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr + 2)),
        Some(_) => Err(ProtocolError::ExpectedCrlf),
    }
}

fn read_line(buf: &[u8], from: usize) -> Result<Line, ProtocolError> {
    let Some(next) = find_crlf(buf, from)? else {
        return Ok(Line::Incomplete);
    };
    let digits = &buf[from..next - 2];
    if digits == b"?" {
        return Ok(Line::Streamed(next));
    }
    parse_integer_text(digits).map(|v| Line::Int(v, next)).ok_or(ProtocolError::InvalidBulkLength)
}

fn parse_integer_text(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as i64)?;
    }
    Some(if neg { -v } else { v })
}

/// The value of an integer reply (`:<n>\r\n`).
pub fn parse_integer(frame: &[u8]) -> Option<i64> {
    if frame.first() != Some(&b':') || frame.len() < 4 || !frame.ends_with(b"\r\n") {
        return None;
    }
    parse_integer_text(&frame[1..frame.len() - 2])
}

/// Read access to the elements of a complete, well-formed reply.
pub struct ReplyView;

impl ReplyView {
    /// Byte ranges of the elements of an array reply; `None` if `frame` is not an array
    /// (a null array included).
    pub fn array_elements(frame: &[u8]) -> Option<Vec<Range<usize>>> {
        if frame.first() != Some(&b'*') {
            return None;
        }
        let Ok(Line::Int(n, mut pos)) = read_line(frame, 1) else {
            return None;
        };
        if n < 0 {
            return None;
        }
        // The count is only trusted as far as the frame could hold it.
        let mut out = Vec::with_capacity((n as usize).min(frame.len()));
        let mut scanner = ReplyScanner::default();
        for _ in 0..n {
            let len = scanner.scan(&frame[pos..]).ok()??;
            out.push(pos..pos + len);
            pos += len;
        }
        Some(out)
    }

    /// The data of a bulk string reply (`None` for anything else, nil included).
    pub fn bulk_data(frame: &[u8]) -> Option<&[u8]> {
        if frame.first() != Some(&b'$') {
            return None;
        }
        let Ok(Line::Int(n, pos)) = read_line(frame, 1) else {
            return None;
        };
        let end = pos.checked_add(usize::try_from(n).ok()?)?;
        (frame.len() == end + 2 && frame.ends_with(b"\r\n")).then(|| &frame[pos..end])
    }

    /// The text of an error reply without the leading `-` and the trailing CRLF.
    pub fn error_text(frame: &[u8]) -> Option<&[u8]> {
        (frame.first() == Some(&b'-') && frame.ends_with(b"\r\n")).then(|| &frame[1..frame.len() - 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(frame: &[u8]) {
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(frame).unwrap(), Some(frame.len()), "{:?}", String::from_utf8_lossy(frame));
        // every strict prefix is incomplete, whether scanned fresh or resumed byte by byte
        let mut resumed = ReplyScanner::default();
        for cut in 0..frame.len() {
            assert_eq!(ReplyScanner::default().scan(&frame[..cut]).unwrap(), None);
            assert_eq!(resumed.scan(&frame[..cut]).unwrap(), None);
        }
        assert_eq!(resumed.scan(frame).unwrap(), Some(frame.len()));
        // trailing bytes of the next reply are not included
        let mut more = frame.to_vec();
        more.extend_from_slice(b"+OK\r\n");
        assert_eq!(ReplyScanner::default().scan(&more).unwrap(), Some(frame.len()));
    }

    #[test]
    fn resp2_types() {
        for f in [
            &b"+OK\r\n"[..],
            b"-ERR wrong\r\n",
            b":-42\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
            b"$4\r\na\r\nb\r\n",
        ] {
            whole(f);
        }
    }

    #[test]
    fn resp3_types() {
        for f in [
            &b"_\r\n"[..],
            b",3.14\r\n",
            b"#t\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
            b"!21\r\nSYNTAX invalid syntax\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            b"~2\r\n+a\r\n+b\r\n",
            b">3\r\n+message\r\n+ch\r\n+hi\r\n",
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:7\r\n",
            b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
            b"$?\r\n;4\r\nHell\r\n;1\r\no\r\n;0\r\n",
            b"*?\r\n:1\r\n*?\r\n:2\r\n.\r\n.\r\n",
            b"%?\r\n+a\r\n:1\r\n.\r\n",
            b"%0\r\n",
        ] {
            whole(f);
        }
    }

    #[test]
    fn bad_replies() {
        assert!(ReplyScanner::default().scan(b"?\r\n").is_err());
        assert!(ReplyScanner::default().scan(b"$3\r\nabcXY").is_err());
        assert!(ReplyScanner::default().scan(b"*x\r\n").is_err());
        assert!(ReplyScanner::new(10, 512).scan(b"$11\r\n").is_err());
        let deep = "*1\r\n".repeat(10);
        assert_eq!(ReplyScanner::new(100, 5).scan(deep.as_bytes()), Err(ProtocolError::NestingTooDeep));
    }

    /// Found by the fuzz checks (seed `bad_array_len`): the scanner had moved past the
    /// bad header when it reported the error, so a second call read on from there.
    #[test]
    fn errors_are_terminal() {
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(b"*-2\r\n+OK\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(s.scan(b"*-2\r\n+OK\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(s.scan(b"+OK\r\n"), Err(ProtocolError::InvalidMultibulkLength));
    }

    /// Found by the `resp_reply` fuzz target (seed `huge_array`): the element list was
    /// allocated for the count in the header, so `*9223372036854775807` asked for
    /// more memory than exists.
    #[test]
    fn array_elements_of_a_malformed_frame() {
        assert_eq!(ReplyView::array_elements(b"*9223372036854775807\r\n:1\r\n"), None);
        assert_eq!(ReplyView::array_elements(b"*3\r\n:1\r\n"), None);
    }

    /// Found reading the scanner while writing the fuzz checks: a streamed string's
    /// chunks were not checked for their CRLF, and took values other than chunks.
    #[test]
    fn streamed_strings_are_checked() {
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(b"$?\r\n;4\r\nHellXX;0\r\n"), Err(ProtocolError::ExpectedCrlf));
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(b"$?\r\n+OK\r\n;0\r\n"), Err(ProtocolError::InvalidReplyType(b'+')));
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(b"$?\r\n;2\r\nab\r\n;0\r\n"), Ok(Some(16)));
    }

    #[test]
    fn views() {
        let f = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n";
        let els = ReplyView::array_elements(f).unwrap();
        let got: Vec<&[u8]> = els.into_iter().map(|r| &f[r]).collect();
        assert_eq!(got, vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:1\r\n"]);
        assert_eq!(parse_integer(b":12\r\n"), Some(12));
        assert_eq!(parse_integer(b"+12\r\n"), None);
        assert_eq!(ReplyView::error_text(b"-ERR x\r\n"), Some(&b"ERR x"[..]));
        assert_eq!(ReplyView::bulk_data(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(ReplyView::bulk_data(b"$0\r\n\r\n"), Some(&b""[..]));
        assert_eq!(ReplyView::bulk_data(b"$-1\r\n"), None);
        assert_eq!(ReplyView::bulk_data(b"$5\r\nabc\r\n"), None);
        assert_eq!(ReplyView::bulk_data(b"+OK\r\n"), None);
        assert_eq!(ReplyKind::of(b">1\r\n"), ReplyKind::Push);
    }
}
