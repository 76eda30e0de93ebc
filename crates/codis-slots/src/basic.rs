//! SLOTSHASHKEY, SLOTSINFO, SLOTSSCAN, SLOTSDEL, SLOTSCHECK.

use std::ffi::c_int;

use codis_core::{MAX_SLOT_NUM, slot_of};

use crate::index::glob_match;
use crate::rm::{self, Ctx};
use crate::state;

/// Codis's `parse_int`: a `long` that must fit an `int`.
pub fn parse_int(b: &[u8]) -> Result<i64, String> {
    let s = std::str::from_utf8(b).map_err(|_| "value is not an integer or out of range")?;
    let v: i64 = s.parse().map_err(|_| "value is not an integer or out of range".to_string())?;
    if v < i32::MIN as i64 || v > i32::MAX as i64 {
        return Err("value is out of range".into());
    }
    Ok(v)
}

pub fn parse_slot(b: &[u8]) -> Result<u16, String> {
    let v = parse_int(b)?;
    if v < 0 || v >= MAX_SLOT_NUM as i64 {
        return Err(format!("invalid slot number = {v}"));
    }
    Ok(v as u16)
}

/// SLOTSHASHKEY key...
pub fn slotshashkey(ctx: Ctx, args: &[&[u8]]) -> c_int {
    rm::reply_array(ctx, args.len() - 1);
    for k in &args[1..] {
        rm::reply_int(ctx, slot_of(k) as i64);
    }
    rm::OK
}

/// SLOTSINFO [start] [count]
pub fn slotsinfo(ctx: Ctx, args: &[&[u8]]) -> c_int {
    let (mut beg, mut end) = (0usize, MAX_SLOT_NUM);
    if args.len() >= 2 {
        match parse_slot(args[1]) {
            Ok(v) => beg = v as usize,
            Err(e) => return err(ctx, &e),
        }
    }
    if args.len() >= 3 {
        match parse_int(args[2]) {
            Ok(v) if v < 0 => return err(ctx, &format!("invalid slot count = {v}")),
            Ok(v) => end = end.min(beg + v as usize),
            Err(e) => return err(ctx, &e),
        }
    }
    if args.len() >= 4 {
        return err(ctx, "wrong number of arguments for 'slotsinfo' command");
    }
    let db = rm::selected_db(ctx);
    let rows: Vec<(usize, u32)> = state::with(|s| {
        let idx = &s.dbs[db as usize].index;
        (beg..end)
            .filter_map(|i| {
                let c = idx.counts[i];
                (c != 0).then_some((i, c))
            })
            .collect()
    });
    rm::reply_array(ctx, rows.len());
    for (slot, n) in rows {
        rm::reply_array(ctx, 2);
        rm::reply_int(ctx, slot as i64);
        rm::reply_int(ctx, n as i64);
    }
    rm::OK
}

pub fn err(ctx: Ctx, msg: &str) -> c_int {
    rm::reply_error(ctx, msg);
    rm::OK
}

/// SLOTSSCAN slot cursor [COUNT n] [MATCH pattern]
pub fn slotsscan(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() < 3 || args.len().is_multiple_of(2) || args.len() > 7 {
        return err(ctx, "wrong number of arguments for 'slotsscan' command");
    }
    let slot = match parse_slot(args[1]) {
        Ok(v) => v,
        Err(e) => return err(ctx, &e),
    };
    let cursor: u64 = match std::str::from_utf8(args[2]).ok().and_then(|s| s.parse().ok()) {
        Some(c) => c,
        None => return err(ctx, "invalid cursor"),
    };
    let mut count = 10usize;
    let mut pattern: Option<Vec<u8>> = None;
    let mut i = 3;
    while i + 1 < args.len() {
        if args[i].eq_ignore_ascii_case(b"count") {
            match parse_int(args[i + 1]) {
                Ok(v) if v >= 1 => count = v as usize,
                Ok(_) => return err(ctx, "syntax error"),
                Err(e) => return err(ctx, &e),
            }
        } else if args[i].eq_ignore_ascii_case(b"match") {
            pattern = Some(args[i + 1].to_vec());
        } else {
            return err(ctx, "syntax error");
        }
        i += 2;
    }
    let db = rm::selected_db(ctx);
    if cursor == 0 {
        state::prefetch_window(db, slot);
    }
    state::run_with_sets(
        ctx,
        db,
        vec![slot],
        Box::new(move |ctx| {
            let (next, keys) = state::with(|s| {
                let t = &s.dbs[db as usize].index.tracked[&slot];
                t.set.scan(cursor, count, |k| pattern.as_deref().is_none_or(|p| p == b"*" || glob_match(p, k)))
            });
            rm::reply_array(ctx, 2);
            rm::reply_bulk(ctx, next.to_string().as_bytes());
            rm::reply_array(ctx, keys.len());
            for k in keys {
                rm::reply_bulk(ctx, &k);
            }
        }),
    )
}

/// Deletes `keys` in the selected DB, propagating DEL. Returns how many existed.
pub fn delete_keys(ctx: Ctx, keys: &[Vec<u8>], unlink: bool) -> Result<i64, String> {
    let mut n = 0;
    for chunk in keys.chunks(512) {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_slice()).collect();
        let r = rm::call(ctx, if unlink { "UNLINK" } else { "DEL" }, "!", &refs).into_result()?;
        n += r.integer();
    }
    Ok(n)
}

/// SLOTSDEL slot...
pub fn slotsdel(ctx: Ctx, args: &[&[u8]]) -> c_int {
    if args.len() <= 1 {
        return err(ctx, "wrong number of arguments for 'slotsdel' command");
    }
    let mut slots = Vec::new();
    for a in &args[1..] {
        match parse_slot(a) {
            Ok(s) => slots.push(s),
            Err(e) => return err(ctx, &e),
        }
    }
    let db = rm::selected_db(ctx);
    let mut uniq = slots.clone();
    uniq.sort_unstable();
    uniq.dedup();
    state::run_with_sets(
        ctx,
        db,
        uniq.clone(),
        Box::new(move |ctx| {
            for &slot in &uniq {
                let keys: Vec<Vec<u8>> =
                    state::with(|s| s.dbs[db as usize].index.tracked[&slot].set.iter().map(|k| k.to_vec()).collect());
                if let Err(e) = delete_keys(ctx, &keys, true) {
                    rm::reply_error(ctx, &e);
                    return;
                }
            }
            let counts: Vec<u32> = state::with(|s| {
                let idx = &s.dbs[db as usize].index;
                slots.iter().map(|&sl| idx.count(sl)).collect()
            });
            rm::reply_array(ctx, slots.len());
            for (sl, c) in slots.iter().zip(counts) {
                rm::reply_array(ctx, 2);
                rm::reply_int(ctx, *sl as i64);
                rm::reply_int(ctx, c as i64);
            }
        }),
    )
}

/// SLOTSCHECK: compares the index of the selected DB with a full scan of its keys.
pub fn slotscheck(ctx: Ctx, _args: &[&[u8]]) -> c_int {
    let db = rm::selected_db(ctx);
    let mut counts = vec![0u32; MAX_SLOT_NUM];
    let mut tracked_missing: Option<Vec<u8>> = None;
    let tracked: Vec<u16> = state::with(|s| {
        let idx = &s.dbs[db as usize].index;
        idx.tracked.iter().filter(|(_, t)| t.ready).map(|(sl, _)| *sl).collect()
    });
    let mut is_tracked = [false; MAX_SLOT_NUM];
    for sl in &tracked {
        is_tracked[*sl as usize] = true;
    }
    let mut scanned_in_tracked: Vec<Vec<u8>> = Vec::new();
    let mut cur = rm::DbCursor::new();
    let mut scanned = 0u64;
    loop {
        let more = cur.step(ctx, &mut |k| {
            let sl = slot_of(k) as usize;
            counts[sl] += 1;
            scanned += 1;
            if is_tracked[sl] {
                scanned_in_tracked.push(k.to_vec());
            }
        });
        if !scanned_in_tracked.is_empty() {
            state::with(|s| {
                let idx = &s.dbs[db as usize].index;
                for k in scanned_in_tracked.drain(..) {
                    let t = &idx.tracked[&slot_of(&k)];
                    if !t.set.contains(&k) && tracked_missing.is_none() {
                        tracked_missing = Some(k);
                    }
                }
            });
        }
        if !more {
            break;
        }
    }
    let (index_counts, total, set_sizes) = state::with(|s| {
        let idx = &s.dbs[db as usize].index;
        let sizes: Vec<(u16, usize)> =
            tracked.iter().filter_map(|sl| idx.tracked.get(sl).map(|t| (*sl, t.set.len()))).collect();
        (idx.counts.to_vec(), idx.total, sizes)
    });
    let dbsize = rm::db_size(ctx);
    if total != dbsize {
        return err(ctx, &format!("step 0, index total = {total}, dbsize = {dbsize}"));
    }
    for sl in 0..MAX_SLOT_NUM {
        if counts[sl] != index_counts[sl] {
            return err(ctx, &format!("step 1, slot = {sl}, index = {}, keyspace = {}", index_counts[sl], counts[sl]));
        }
    }
    if let Some(k) = tracked_missing {
        return err(ctx, &format!("step 2, miss = '{}'", String::from_utf8_lossy(&k)));
    }
    for (sl, n) in set_sizes {
        if n as u32 != counts[sl as usize] {
            return err(ctx, &format!("step 3, slot = {sl}, set = {n}, keyspace = {}", counts[sl as usize]));
        }
    }
    rm::reply_ok(ctx);
    rm::OK
}
