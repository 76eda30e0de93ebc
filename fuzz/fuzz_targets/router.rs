//! The command router: arguments in, routing decision out (see
//! `codis_proxy::command::fuzzing`): no panic, keys at real argument positions with
//! their slots, split commands cut by every key, refusals that name the command.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codis_proxy::command::fuzzing::check_route(data));
