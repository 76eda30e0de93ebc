//! The server reply scanner, whole and cut anywhere: RESP2 and RESP3 types, nesting,
//! streamed aggregates (see `codis_resp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codis_resp::fuzzing::reply_input(data));
