//! Commands that run on every group: the broadcast family (DBSIZE, RANDOMKEY, KEYS,
//! FLUSHDB, FLUSHALL, SCRIPT, FUNCTION) and SCAN.
//!
//! SCAN visits the groups one after another. The cursor the client sees packs the
//! index of the group being scanned (low [`GROUP_BITS`] bits) with that group's own
//! cursor, so a full iteration returns every key that lives somewhere throughout it.
//! Groups are ordered by group id ([`crate::router::RouteTable::groups`]), so adding a
//! group does not disturb an iteration. A key whose slot migrates during the iteration
//! may be returned twice (seen on the source, then on the target), or not at all if
//! it moves from a group not yet visited to one already visited.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use codis_resp::{Encoder, ReplyView};

use super::Session;
use super::pending::{Split, State};
use crate::command::{self, BroadcastRefusal, Command, Merge};
use crate::reply::{Tickets, error_reply};
use crate::router::RouteTable;

/// Bits of the proxy's cursor that name the group (so up to 16384 groups, and group
/// cursors up to 2^50, far beyond any Redis table size).
const GROUP_BITS: u32 = 14;
const GROUP_MASK: u64 = (1 << GROUP_BITS) - 1;

const NO_BACKEND: &str = "ERR no slot has a backend yet; assign slots to groups first";

impl Session {
    pub(super) fn broadcast(
        &mut self,
        cmd: &'static Command,
        req: codis_resp::RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        let allow = self.shared.config.session_allow_keyspace_commands;
        let merge = match command::broadcast_merge(cmd.name, req.get(1), allow) {
            Ok(m) => m,
            Err(BroadcastRefusal::Disabled) => {
                let msg = format!(
                    "ERR {} is disabled on this proxy because it runs on every group; \
                     set session_allow_keyspace_commands = true in proxy.toml to allow it",
                    cmd.name
                );
                return self.fail(cmd, start, &msg);
            }
            Err(BroadcastRefusal::Unsupported) => {
                let sub = String::from_utf8_lossy(req.get(1).unwrap_or_default()).to_ascii_uppercase();
                return self.fail(cmd, start, &format!("ERR '{} {sub}' is not supported by codis-proxy", cmd.name));
            }
        };
        let n = table.groups.len();
        if n == 0 {
            return self.fail(cmd, start, NO_BACKEND);
        }
        let state = if n == 1 { State::Waiting } else { State::Split(Box::new(Split::new(merge, n, Vec::new()))) };
        let seq = self.pending.push(cmd.id, start, state);
        self.seed = self.seed.wrapping_add(1);
        // RANDOMKEY asks the groups in a different order each time.
        let offset = if merge == Merge::NonNil { self.seed % n } else { 0 };
        if merge == Merge::AnyOk {
            // SCRIPT KILL / FUNCTION KILL: the busy script holds up the shared
            // connection it came on, so the kill goes on the session's own connections.
            for (i, pool) in table.groups.iter().enumerate() {
                self.send_private(pool, req.raw(), seq, i as u32, Tickets::None);
            }
            return;
        }
        for i in 0..n {
            let conn = table.groups[(offset + i) % n].conn(self.key(), self.seed);
            self.queue(conn, req, seq, i as u32, Tickets::None);
        }
    }

    pub(super) fn scan(
        &mut self,
        cmd: &'static Command,
        req: codis_resp::RequestRef<'_>,
        start: Instant,
        table: &RouteTable,
    ) {
        let Some(cursor) = std::str::from_utf8(req.arg(1)).ok().and_then(|s| s.parse::<u64>().ok()) else {
            return self.fail(cmd, start, "ERR invalid cursor");
        };
        let groups = table.groups.len();
        if groups == 0 {
            return self.fail(cmd, start, NO_BACKEND);
        }
        let (index, group_cursor) = ((cursor & GROUP_MASK) as usize, cursor >> GROUP_BITS);
        if index >= groups {
            // A cursor from before groups were removed: nothing is left to visit.
            return self.reply_now(cmd.id, start, Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n"), false);
        }
        let group_cursor = group_cursor.to_string();
        let args =
            std::iter::once(req.arg(0)).chain(std::iter::once(group_cursor.as_bytes())).chain(req.args().skip(2));
        let payload = super::dispatch::encode_args(args, req.argc());
        let seq = self.pending.push(cmd.id, start, State::Scan { index, groups });
        self.seed = self.seed.wrapping_add(1);
        let conn = table.groups[index].conn(self.key(), self.seed);
        self.queue_bytes(conn, &payload, seq, 0, Tickets::None);
    }
}

/// Turns group `index`'s SCAN reply into the proxy's: its cursor, or the start of the
/// next group once this one is done.
pub(super) fn proxy_reply(reply: &Bytes, index: usize, groups: usize) -> Bytes {
    if ReplyView::error_text(reply).is_some() {
        return reply.clone();
    }
    let parts = ReplyView::array_elements(reply).filter(|p| p.len() == 2);
    let cursor = parts.as_ref().and_then(|p| ReplyView::bulk_data(&reply[p[0].clone()]));
    let Some(cursor) = cursor.and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<u64>().ok()) else {
        return error_reply("ERR unexpected reply from backend to SCAN");
    };
    let next = match cursor {
        0 if index + 1 < groups => (index + 1) as u64,
        0 => 0,
        c if c >> (64 - GROUP_BITS) == 0 => (c << GROUP_BITS) | index as u64,
        _ => return error_reply("ERR backend SCAN cursor too large for codis-proxy"),
    };
    let keys = &reply[parts.expect("checked above")[1].clone()];
    let mut out = BytesMut::with_capacity(keys.len() + 32);
    out.put_array_len(2);
    out.put_bulk(next.to_string().as_bytes());
    out.put_slice(keys);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(cursor: &str, keys: &[&str]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_array_len(2);
        out.put_bulk(cursor.as_bytes());
        out.put_array_len(keys.len());
        for k in keys {
            out.put_bulk(k.as_bytes());
        }
        out.freeze()
    }

    #[test]
    fn cursors_walk_the_groups() {
        // mid-group: the group's cursor is kept, with the group index below it
        assert_eq!(proxy_reply(&reply("17", &["a"]), 1, 3), reply(&((17u64 << 14) | 1).to_string(), &["a"]));
        // a group done: the next group from its start
        assert_eq!(proxy_reply(&reply("0", &["b"]), 1, 3), reply("2", &["b"]));
        // the last group done: the iteration is over
        assert_eq!(proxy_reply(&reply("0", &[]), 2, 3), reply("0", &[]));
        assert_eq!(&proxy_reply(&Bytes::from_static(b"-ERR x\r\n"), 0, 1)[..], b"-ERR x\r\n");
        assert!(proxy_reply(&Bytes::from_static(b":1\r\n"), 0, 1).starts_with(b"-ERR unexpected"));
        assert!(proxy_reply(&reply(&u64::MAX.to_string(), &[]), 0, 1).starts_with(b"-ERR backend SCAN cursor"));
    }
}
