//! Invariants the fuzz targets (`fuzz/`) check, shared with the tests that replay
//! their corpus on stable Rust. Each function panics when an invariant breaks.
//!
//! The main invariant: the bytes a socket delivers can be cut anywhere, so parsing a
//! stream whole and parsing it in arbitrary pieces must give the same requests (or
//! replies) and fail at the same point. Also: nothing is consumed beyond the input,
//! every step makes progress, and an error ends the stream.

use bytes::BytesMut;

use crate::{Limits, ReplyScanner, RequestParser};

/// What parsing a byte stream gave: the requests' arguments, whether it ended in a
/// protocol error, and the bytes left over (an incomplete request).
#[derive(Debug, PartialEq, Eq)]
struct RequestRun {
    requests: Vec<Vec<Vec<u8>>>,
    failed: bool,
    rest: usize,
}

/// Piece sizes from fuzz bytes: 1..=256 each, cycled; empty means one piece.
fn pieces(cuts: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let sizes: &[u8] = if cuts.is_empty() { &[0] } else { cuts };
    sizes.iter().cycle().map(move |&c| if cuts.is_empty() { usize::MAX } else { c as usize + 1 })
}

fn run_requests(data: &[u8], cuts: &[u8], limits: Limits) -> RequestRun {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut pos = 0;
    let mut sizes = pieces(cuts);
    while pos < data.len() {
        let n = sizes.next().unwrap_or(1).min(data.len() - pos);
        buf.extend_from_slice(&data[pos..pos + n]);
        pos += n;
        loop {
            let before = buf.len();
            match parser.parse(&mut buf) {
                Ok(Some(req)) => {
                    assert!(buf.len() < before, "a request was parsed without consuming input");
                    assert!(req.argc() >= 1, "a request with no arguments");
                    requests.push(req.args().map(<[u8]>::to_vec).collect());
                }
                Ok(None) => break,
                Err(_) => return RequestRun { requests, failed: true, rest: 0 },
            }
        }
    }
    RequestRun { requests, failed: false, rest: buf.len() }
}

/// Parses `data` as a client's request stream whole and cut where `cuts` says (and
/// one byte at a time when it is short), with `limits`; panics if the runs differ.
pub fn check_requests(data: &[u8], cuts: &[u8], limits: Limits) {
    let whole = run_requests(data, &[], limits);
    let cut = run_requests(data, cuts, limits);
    assert_eq!(whole, cut, "requests depend on where the stream is cut");
    if data.len() <= 4096 {
        assert_eq!(whole, run_requests(data, &[0], limits), "byte-at-a-time parsing differs");
    }
}

/// Limits small enough for fuzz inputs to reach every one of them.
pub fn tiny_limits() -> Limits {
    Limits { max_bulk_len: 64, max_array_len: 8, max_inline_len: 32, max_request_len: 256 }
}

/// Lengths of the complete replies in `data` and whether the scan failed, reading it
/// in the pieces `cuts` gives.
fn run_replies(data: &[u8], cuts: &[u8], max_bulk_len: usize, max_depth: usize) -> (Vec<usize>, bool) {
    let mut scanner = ReplyScanner::new(max_bulk_len, max_depth);
    let (mut lens, mut start, mut have) = (Vec::new(), 0, 0);
    let mut sizes = pieces(cuts);
    while have < data.len() {
        have += sizes.next().unwrap_or(1).min(data.len() - have);
        loop {
            match scanner.scan(&data[start..have]) {
                Ok(Some(len)) => {
                    assert!(len > 0 && start + len <= have, "reply length {len} outside the input");
                    lens.push(len);
                    start += len;
                }
                Ok(None) => break,
                Err(_) => return (lens, true),
            }
        }
    }
    (lens, false)
}

/// Scans `data` as a server's reply stream whole and in pieces; panics if the reply
/// boundaries or the failure differ.
pub fn check_replies(data: &[u8], cuts: &[u8]) {
    for (bulk, depth) in [(512 << 20, crate::reply::MAX_REPLY_DEPTH), (64, 4)] {
        let whole = run_replies(data, &[], bulk, depth);
        assert_eq!(whole, run_replies(data, cuts, bulk, depth), "replies depend on where the stream is cut");
    }
}

/// The `resp_request` fuzz target's input: the first byte picks the limits (default or
/// tiny), the next 8 where the stream is cut; the rest is the stream.
pub fn request_input(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (cuts, stream) = rest.split_at(rest.len().min(8));
    let limits = if mode & 1 == 0 { Limits::default() } else { tiny_limits() };
    check_requests(stream, cuts, limits);
}

/// The `resp_reply` fuzz target's input: the first 8 bytes say where the stream is
/// cut; the rest is the stream.
pub fn reply_input(data: &[u8]) {
    let (cuts, stream) = data.split_at(data.len().min(8));
    check_replies(stream, cuts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_pass_on_good_and_bad_streams() {
        let good = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n*2\r\n$3\r\nGE";
        check_requests(good, &[2, 0, 7], Limits::default());
        check_requests(b"*1\r\n$x\r\n", &[1], Limits::default());
        check_requests(&[b'a'; 100], &[3], tiny_limits());
        check_replies(b"*2\r\n$-1\r\n:1\r\n+OK\r\n%1\r\n+a\r\n:2\r\n-ERR x\r\n$5\r\nab", &[0, 3]);
        check_replies(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", &[1]);
        let run = run_requests(good, &[], Limits::default());
        assert_eq!(run.requests.len(), 3);
        assert_eq!(run.rest, 10, "the incomplete request stays in the buffer");
    }
}
