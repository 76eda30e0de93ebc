//! The per-DB slot index: exact key counts per slot, plus key sets for the few slots
//! that are being scanned or migrated.
//!
//! Pure data structures; the Redis glue (events, scans) lives in `state.rs`.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use codis_core::{MAX_SLOT_NUM, has_tag, slot_of, tag_crc};

/// 32-bit FNV-1a, used to order keys that share a tag crc.
fn fnv1a32(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= x as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Where a key sits in a slot set, which is also the SLOTSSCAN cursor that reaches it:
/// the tag crc in the high half (so a tag group is one contiguous run) and a hash of
/// the whole key in the low half. A key's position never changes, so a cursor stays
/// meaningful however the set changes, and survives the set being dropped and rebuilt.
pub fn key_pos(key: &[u8]) -> u64 {
    ((tag_crc(key) as u64) << 32) | fnv1a32(key) as u64
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    pos: u64,
    key: Box<[u8]>,
}

/// The keys of one slot, ordered by [`key_pos`].
#[derive(Debug, Default)]
pub struct SlotSet {
    set: BTreeSet<Entry>,
}

impl SlotSet {
    pub fn len(&self) -> usize {
        self.set.len()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
    pub fn clear(&mut self) {
        self.set.clear();
    }
    pub fn insert(&mut self, key: &[u8]) -> bool {
        self.set.insert(Entry { pos: key_pos(key), key: key.into() })
    }
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.set.remove(&Entry { pos: key_pos(key), key: key.into() })
    }
    pub fn contains(&self, key: &[u8]) -> bool {
        self.set.contains(&Entry { pos: key_pos(key), key: key.into() })
    }

    fn range_from(&self, pos: u64) -> impl Iterator<Item = &Entry> {
        self.set.range((Bound::Included(Entry { pos, key: Box::default() }), Bound::Unbounded))
    }

    /// Keys at positions `>= cursor`, in order.
    pub fn iter_from(&self, cursor: u64) -> impl Iterator<Item = &[u8]> {
        self.range_from(cursor).map(|e| &*e.key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.set.iter().map(|e| &*e.key)
    }

    /// One SLOTSSCAN step: looks at up to `count` keys from `cursor` (always finishing
    /// a run of keys at the same position), returns those that `keep` accepts and the
    /// next cursor, 0 when the end was reached.
    pub fn scan(&self, cursor: u64, count: usize, mut keep: impl FnMut(&[u8]) -> bool) -> (u64, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut last: Option<u64> = None;
        for (seen, e) in self.range_from(cursor).enumerate() {
            if seen >= count.max(1) && last != Some(e.pos) {
                return (last.map_or(0, |p| p.wrapping_add(1)), out);
            }
            last = Some(e.pos);
            if keep(&e.key) {
                out.push(e.key.to_vec());
            }
        }
        (0, out)
    }

    /// Every tagged key whose tag crc is `crc` (codis-server's tag group).
    pub fn tag_group(&self, crc: u32) -> Vec<Vec<u8>> {
        let lo = (crc as u64) << 32;
        self.range_from(lo)
            .take_while(|e| (e.pos >> 32) as u32 == crc)
            .filter(|e| has_tag(&e.key))
            .map(|e| e.key.to_vec())
            .collect()
    }

    pub fn first(&self) -> Option<&[u8]> {
        self.set.first().map(|e| &*e.key)
    }
}

/// A slot whose keys are kept in a set.
#[derive(Debug, Default)]
pub struct Tracked {
    pub set: SlotSet,
    /// The set holds every key of the slot (its building scan has finished).
    pub ready: bool,
    pub last_used_ms: i64,
}

/// Index of one DB.
#[derive(Debug)]
pub struct DbIndex {
    pub counts: Box<[u32; MAX_SLOT_NUM]>,
    /// Sum of `counts`; equal to the DB's size whenever no command is half-way.
    pub total: u64,
    pub tracked: HashMap<u16, Tracked>,
}

impl Default for DbIndex {
    fn default() -> Self {
        DbIndex { counts: Box::new([0; MAX_SLOT_NUM]), total: 0, tracked: HashMap::new() }
    }
}

impl DbIndex {
    /// A key was added to the DB's dict (events `new`, `loaded`). `dbsize` is the
    /// dict's size after the change. When it did not grow, the key replaced a copy of
    /// itself that Redis removed without an event (RENAME, COPY REPLACE or RESTORE
    /// REPLACE onto an existing key), which is already counted.
    pub fn on_add(&mut self, key: &[u8], dbsize: u64) {
        let slot = slot_of(key);
        if dbsize > self.total {
            self.counts[slot as usize] += 1;
            self.total += 1;
        }
        if !self.tracked.is_empty()
            && let Some(t) = self.tracked.get_mut(&slot)
        {
            t.set.insert(key);
        }
    }

    /// A key was removed (events `del`, `expired`, `evicted`, `rename_from`, `move_from`).
    pub fn on_remove(&mut self, key: &[u8], dbsize: u64) {
        let slot = slot_of(key);
        if dbsize < self.total && self.counts[slot as usize] > 0 {
            self.counts[slot as usize] -= 1;
            self.total -= 1;
        }
        if !self.tracked.is_empty()
            && let Some(t) = self.tracked.get_mut(&slot)
        {
            t.set.remove(key);
        }
    }

    /// The DB was emptied: counts are zero, and every set is exact (empty) and complete.
    pub fn flush(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        for t in self.tracked.values_mut() {
            t.set.clear();
            t.ready = true;
        }
    }

    pub fn count(&self, slot: u16) -> u32 {
        self.counts[slot as usize]
    }

    /// Replaces the counts with a recount.
    pub fn set_counts(&mut self, counts: &[u32; MAX_SLOT_NUM]) {
        self.counts.copy_from_slice(counts);
        self.total = counts.iter().map(|&c| c as u64).sum();
    }

    /// Bytes of heap this index uses, roughly.
    pub fn memory(&self) -> usize {
        let mut m = std::mem::size_of::<[u32; MAX_SLOT_NUM]>();
        for t in self.tracked.values() {
            m += t.set.set.iter().map(|e| e.key.len() + 40).sum::<usize>();
        }
        m
    }
}

/// Redis-compatible glob matching (`*`, `?`, `[...]` with `^` and ranges, `\` escapes).
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    // Matches one pattern element at `p` against byte `c`; returns the element's length.
    fn one(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
        match pattern[p] {
            b'?' => (true, 1),
            b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c, 2),
            b'[' => {
                let mut i = p + 1;
                let not = i < pattern.len() && pattern[i] == b'^';
                if not {
                    i += 1;
                }
                let mut matched = false;
                loop {
                    if i >= pattern.len() {
                        // Unterminated class: Redis treats the end as closing it.
                        break;
                    }
                    if pattern[i] == b']' {
                        i += 1;
                        break;
                    }
                    if pattern[i] == b'\\' && i + 1 < pattern.len() {
                        if pattern[i + 1] == c {
                            matched = true;
                        }
                        i += 2;
                    } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
                        let (mut a, mut b) = (pattern[i], pattern[i + 2]);
                        if a > b {
                            std::mem::swap(&mut a, &mut b);
                        }
                        if c >= a && c <= b {
                            matched = true;
                        }
                        i += 3;
                    } else {
                        if pattern[i] == c {
                            matched = true;
                        }
                        i += 1;
                    }
                }
                (matched != not, i - p)
            }
            x => (x == c, 1),
        }
    }
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, i));
            continue;
        }
        if p < pattern.len() {
            let (ok, len) = one(pattern, p, s[i]);
            if ok {
                p += len;
                i += 1;
                continue;
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(!glob_match(b"a*c", b"abbbd"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"user:\\*", b"user:*"));
        assert!(!glob_match(b"user:\\*", b"user:x"));
        assert!(glob_match(b"*{tag}*", b"x{tag}y"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        assert!(glob_match(b"a**", b"a"));
    }

    #[test]
    fn scan_is_stable_under_changes() {
        let mut s = SlotSet::default();
        let keys: Vec<Vec<u8>> = (0..2000).map(|i| format!("k{i}").into_bytes()).collect();
        for k in &keys {
            s.insert(k);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0u64;
        let mut round = 0;
        loop {
            let (next, got) = s.scan(cursor, 37, |_| true);
            for g in got {
                assert!(seen.insert(g), "a key came back twice");
            }
            // Churn: add and remove keys that were never part of the stable set.
            for j in 0..20 {
                s.insert(format!("tmp{round}-{j}").as_bytes());
            }
            for j in 0..20 {
                s.remove(format!("tmp{round}-{j}").as_bytes());
            }
            s.insert(format!("new{round}").as_bytes());
            round += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for k in &keys {
            assert!(seen.contains(k), "stable key missed");
        }
    }

    #[test]
    fn tag_groups_are_contiguous() {
        let mut s = SlotSet::default();
        for i in 0..50 {
            s.insert(format!("{{t}}:{i}").as_bytes());
        }
        s.insert(b"t");
        let g = s.tag_group(tag_crc(b"{t}"));
        assert_eq!(g.len(), 50, "the untagged key 't' with the same crc is not in the group");
        // a scan of count 1 still returns... one key at a time (positions differ)
        let (next, got) = s.scan(0, 1, |_| true);
        assert_eq!(got.len(), 1);
        assert_ne!(next, 0);
    }

    #[test]
    fn counters_follow_events() {
        let mut d = DbIndex::default();
        d.on_add(b"a", 1);
        d.on_add(b"b", 2);
        // RENAME b -> a onto an existing a: "new" for a with the size unchanged...
        d.on_add(b"a", 2);
        // ... then rename_from b
        d.on_remove(b"b", 1);
        assert_eq!(d.total, 1);
        assert_eq!(d.count(slot_of(b"a")), 1);
        assert_eq!(d.count(slot_of(b"b")), if slot_of(b"a") == slot_of(b"b") { 1 } else { 0 });
    }
}
