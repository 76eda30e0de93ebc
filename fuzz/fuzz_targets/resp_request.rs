//! The client request parser, whole and cut anywhere (see `codis_resp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codis_resp::fuzzing::request_input(data));
