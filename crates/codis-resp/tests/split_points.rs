//! Property tests: requests and replies parse the same whatever the read boundaries,
//! and agree with an independent RESP implementation (redis-protocol) as oracle.

use bytes::BytesMut;
use codis_resp::{Limits, ReplyScanner, RequestParser, encode_request};
use proptest::prelude::*;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => proptest::collection::vec(any::<u8>(), 0..4000),
    ]
}

fn requests() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    proptest::collection::vec(proptest::collection::vec(arg(), 1..12), 1..20)
}

/// Feeds `input` to the parser in chunks of the given sizes (cycled).
fn parse_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = cuts[i % cuts.len()].clamp(1, input.len() - pos);
        i += 1;
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        while let Some(req) = parser.parse(&mut buf).expect("well-formed input") {
            out.push(req.args().map(|a| a.to_vec()).collect());
        }
    }
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn requests_survive_any_split(reqs in requests(), cuts in proptest::collection::vec(1usize..700, 1..16)) {
        let mut input = Vec::new();
        for r in &reqs {
            input.extend_from_slice(&encode_request(r.iter()));
        }
        // the oracle reads the same requests from the same bytes
        let mut oracle = Vec::new();
        let mut rest = &input[..];
        while let Some((frame, used)) = decode(rest).expect("oracle decodes") {
            let OwnedFrame::Array(items) = frame else { panic!("not an array") };
            oracle.push(items.into_iter().map(|f| match f { OwnedFrame::BulkString(b) => b, other => panic!("{other:?}") }).collect::<Vec<_>>());
            rest = &rest[used..];
        }
        prop_assert_eq!(&oracle, &reqs);
        prop_assert_eq!(parse_in_chunks(&input, &cuts), reqs.clone());
        prop_assert_eq!(parse_in_chunks(&input, &[1]), reqs);
    }

    #[test]
    fn replies_are_measured_like_the_oracle(reqs in requests(), cuts in proptest::collection::vec(1usize..500, 1..8)) {
        // Replies built from the generated arguments: nested arrays, bulks, nils, ints, errors.
        let mut input = Vec::new();
        let mut lens = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let start = input.len();
            match i % 4 {
                0 => input.extend_from_slice(&encode_request(r.iter())),
                1 => input.extend_from_slice(format!(":{}\r\n", r.len() as i64 - 5).as_bytes()),
                2 => input.extend_from_slice(b"*3\r\n$-1\r\n*1\r\n+OK\r\n-ERR x\r\n"),
                _ => {
                    input.extend_from_slice(format!("*{}\r\n", r.len()).as_bytes());
                    for a in r {
                        input.extend_from_slice(&encode_request([a]));
                    }
                }
            }
            lens.push(input.len() - start);
        }
        let mut rest = &input[..];
        for &len in &lens {
            let (_, used) = decode(rest).expect("oracle decodes").expect("complete");
            prop_assert_eq!(used, len);
            rest = &rest[used..];
        }
        // the scanner, resumed across arbitrary read boundaries, finds the same frames
        let mut scanner = ReplyScanner::default();
        let mut buf = BytesMut::new();
        let (mut pos, mut i, mut found) = (0, 0, Vec::new());
        while pos < input.len() {
            let n = cuts[i % cuts.len()].clamp(1, input.len() - pos);
            i += 1;
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            while let Some(len) = scanner.scan(&buf).expect("valid replies") {
                found.push(len);
                let _ = buf.split_to(len);
            }
        }
        prop_assert_eq!(found, lens);
    }
}
