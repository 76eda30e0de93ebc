//! Module-wide state, keyspace/server event handlers, and the scans that build the key
//! set of a slot.
//!
//! Everything here runs on Redis's main thread. The state sits in a `RefCell`; a
//! borrow is never held across a call into Redis that can raise a keyspace event
//! (`RedisModule_Call`, opening keys for writing), because the event handler borrows
//! the state too.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;

use codis_core::{MAX_SLOT_NUM, slot_of};
use redis_module::raw;

use crate::index::{DbIndex, Tracked};
use crate::mgrt_async::AsyncState;
use crate::rm::{self, Ctx, RStr};

/// A slot set unused for this long is dropped (it is rebuilt by a scan when needed).
pub const SET_IDLE_MS: i64 = 60_000;
/// Work done per build tick before letting the server serve clients again.
const BUILD_BUDGET_US: u128 = 1_000;

/// A scan of one DB that fills the sets of `slots`.
pub struct Build {
    cursor: rm::DbCursor,
    slots: Box<[bool; MAX_SLOT_NUM]>,
}

#[derive(Default)]
pub struct DbState {
    pub index: DbIndex,
    /// The running scan, taken out of the state while it steps.
    pub build: Option<Build>,
    pub build_running: bool,
    /// Slots requested while a scan was running: they need a scan of their own.
    pub build_next: BTreeSet<u16>,
}

/// A command waiting for slot sets.
pub struct Waiter {
    pub db: i32,
    pub slots: Vec<u16>,
    pub bc: rm::BlockedClient,
    pub kind: WaitKind,
}

/// What to do with a waiter once its sets are complete.
pub enum WaitKind {
    /// Unblock the client; its reply callback runs the pending op.
    Reply(*mut Pending),
    /// Keep the client blocked and hand it to a continuation (async migration, which
    /// replies only when the whole batch is acknowledged).
    Start(Start),
}

pub type Start = Box<dyn FnOnce(Ctx, rm::BlockedClient)>;

/// What a blocked command does once its sets are ready.
pub type Op = Box<dyn FnOnce(Ctx)>;

pub struct Pending {
    pub db: i32,
    pub slots: Vec<u16>,
    pub op: Option<Op>,
}

#[allow(dead_code)] // used by SLOTSMGRT-EXEC-WRAPPER
#[derive(Clone, Copy)]
pub struct CmdInfo {
    pub arity: i64,
    pub readonly: bool,
}

pub struct State {
    pub dbs: Vec<DbState>,
    pub waiters: Vec<Waiter>,
    pub build_timer_armed: bool,
    pub asyncs: AsyncState,
    #[allow(dead_code)]
    pub cmd_info: HashMap<Vec<u8>, Option<CmdInfo>>,
}

struct Global(RefCell<Option<State>>);
// SAFETY: only ever touched from Redis's main thread.
unsafe impl Sync for Global {}

static STATE: Global = Global(RefCell::new(None));

pub fn init(ndbs: usize) {
    let mut dbs = Vec::with_capacity(ndbs);
    dbs.resize_with(ndbs, DbState::default);
    *STATE.0.borrow_mut() = Some(State {
        dbs,
        waiters: Vec::new(),
        build_timer_armed: false,
        asyncs: AsyncState::new(ndbs),
        cmd_info: HashMap::new(),
    });
}

/// Runs `f` on the state. Must not be nested, and `f` must not call into Redis in a
/// way that raises keyspace events.
pub fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.0.borrow_mut();
    f(g.as_mut().expect("codis-slots state not initialised"))
}

pub fn ndbs() -> usize {
    with(|s| s.dbs.len())
}

// ---------------------------------------------------------------------------------------
// Keyspace and server events

pub const KEYSPACE_EVENTS: c_int = raw::REDISMODULE_NOTIFY_GENERIC
    | raw::REDISMODULE_NOTIFY_EXPIRED
    | raw::REDISMODULE_NOTIFY_EVICTED
    | raw::REDISMODULE_NOTIFY_NEW
    | raw::REDISMODULE_NOTIFY_LOADED;

pub unsafe extern "C" fn on_keyspace_event(ctx: Ctx, type_: c_int, event: *const c_char, key: RStr) -> c_int {
    let add = if type_ & (raw::REDISMODULE_NOTIFY_NEW | raw::REDISMODULE_NOTIFY_LOADED) != 0 {
        true
    } else if type_ & (raw::REDISMODULE_NOTIFY_EXPIRED | raw::REDISMODULE_NOTIFY_EVICTED) != 0 {
        false
    } else {
        let ev = unsafe { CStr::from_ptr(event) }.to_bytes();
        match ev {
            b"del" | b"rename_from" | b"move_from" => false,
            _ => return rm::OK,
        }
    };
    let db = rm::selected_db(ctx);
    let k = rm::bytes(key);
    let dbsize = rm::db_size(ctx);
    with(|s| {
        if let Some(d) = s.dbs.get_mut(db as usize) {
            if add {
                d.index.on_add(k, dbsize);
            } else {
                d.index.on_remove(k, dbsize);
            }
        }
    });
    rm::OK
}

pub unsafe extern "C" fn on_flushdb(ctx: Ctx, _eid: raw::RedisModuleEvent, subevent: u64, data: *mut c_void) {
    if subevent != raw::REDISMODULE_SUBEVENT_FLUSHDB_END {
        return;
    }
    let info = unsafe { &*(data as *const raw::RedisModuleFlushInfoV1) };
    let dbnum = info.dbnum;
    with(|s| {
        for (i, d) in s.dbs.iter_mut().enumerate() {
            if dbnum == -1 || dbnum as usize == i {
                d.index.flush();
                d.build = None;
                d.build_running = false;
                d.build_next.clear();
            }
        }
    });
    wake_waiters(ctx);
}

pub unsafe extern "C" fn on_swapdb(_ctx: Ctx, _eid: raw::RedisModuleEvent, _subevent: u64, data: *mut c_void) {
    let info = unsafe { &*(data as *const raw::RedisModuleSwapDbInfoV1) };
    let (a, b) = (info.dbnum_first as usize, info.dbnum_second as usize);
    with(|s| {
        if a < s.dbs.len() && b < s.dbs.len() && a != b {
            s.dbs.swap(a, b);
        }
    });
}

pub unsafe extern "C" fn on_loading(ctx: Ctx, _eid: raw::RedisModuleEvent, subevent: u64, _data: *mut c_void) {
    match subevent {
        raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
        | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
        | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START => {
            // Loading always starts from empty DBs; keys come back through `loaded`
            // (RDB) and `new` (AOF commands) events.
            with(|s| {
                for d in s.dbs.iter_mut() {
                    d.index.flush();
                    d.build = None;
                    d.build_running = false;
                    d.build_next.clear();
                }
            });
            wake_waiters(ctx);
        }
        raw::REDISMODULE_SUBEVENT_LOADING_ENDED | raw::REDISMODULE_SUBEVENT_LOADING_FAILED => {
            verify_totals(ctx);
        }
        _ => {}
    }
}

/// Compares each DB's counted total with its size, recounting any DB that disagrees.
pub fn verify_totals(ctx: Ctx) {
    let n = ndbs();
    let orig = rm::selected_db(ctx);
    for db in 0..n {
        if !rm::select_db(ctx, db as i32) {
            continue;
        }
        let size = rm::db_size(ctx);
        let total = with(|s| s.dbs[db].index.total);
        if size != total {
            rm::log_warning(
                ctx,
                &format!("codis-slots: DB {db} has {size} keys but the index counts {total}; recounting"),
            );
            recount(ctx, db as i32);
        }
    }
    rm::select_db(ctx, orig);
}

/// Counts every key of `db` by a full scan and replaces the counters (synchronous).
pub fn recount(ctx: Ctx, db: i32) {
    let orig = rm::selected_db(ctx);
    if !rm::select_db(ctx, db) {
        return;
    }
    let mut counts = Box::new([0u32; MAX_SLOT_NUM]);
    let mut cur = rm::DbCursor::new();
    while cur.step(ctx, &mut |k| counts[slot_of(k) as usize] += 1) {}
    with(|s| s.dbs[db as usize].index.set_counts(&counts));
    rm::select_db(ctx, orig);
}

// ---------------------------------------------------------------------------------------
// Slot sets

/// At least this many slots get their sets from one keyspace scan when a scan or a
/// migration starts on a slot that has none.
pub const SET_WINDOW: u16 = 64;
/// Beyond [`SET_WINDOW`], the window grows while its slots hold fewer keys than this
/// (about 61 bytes of set per key, so ~30 MB), so that a large move needs few scans.
pub const SET_WINDOW_KEYS: u64 = 500_000;

/// If `slot` of `db` has no set yet, asks for the sets of a window of slots from it:
/// scans and migrations go slot after slot (a full SLOTSSCAN, the dashboard moving a
/// range), so the next slots' sets come with the same keyspace scan. The sets are
/// dropped again after a minute unused.
pub fn prefetch_window(db: i32, slot: u16) {
    let window: Option<Vec<u16>> = with(|s| {
        let index = &s.dbs[db as usize].index;
        if index.tracked.contains_key(&slot) {
            return None;
        }
        let mut keys = 0u64;
        let mut end = slot;
        while (end as usize) < MAX_SLOT_NUM {
            let next = keys + index.count(end) as u64;
            if end - slot >= SET_WINDOW && next > SET_WINDOW_KEYS {
                break;
            }
            keys = next;
            end += 1;
        }
        Some((slot..end).collect())
    });
    if let Some(window) = window {
        request_sets(db, &window);
    }
}

/// Marks `slots` of `db` as wanted; returns true when all of their sets are complete.
pub fn request_sets(db: i32, slots: &[u16]) -> bool {
    let now = rm::now_ms();
    with(|s| {
        let d = &mut s.dbs[db as usize];
        let mut ready = true;
        for &slot in slots {
            let t = d.index.tracked.entry(slot).or_insert_with(|| Tracked { ready: false, ..Default::default() });
            t.last_used_ms = now;
            if !t.ready {
                ready = false;
                let in_build = d.build.as_ref().is_some_and(|b| b.slots[slot as usize]);
                if !in_build {
                    d.build_next.insert(slot);
                }
            }
        }
        ready
    })
}

/// Steps the building scan of `db` for up to `budget_us` (forever when `None`).
/// Returns true when no build work is left for this DB.
fn build_step(ctx: Ctx, db: i32, budget_us: Option<u128>) -> bool {
    let started = std::time::Instant::now();
    loop {
        // Take the running build out (or start one from the queued slots).
        let build = with(|s| {
            let d = &mut s.dbs[db as usize];
            if d.build.is_none() {
                if d.build_next.is_empty() {
                    return None;
                }
                let mut slots = Box::new([false; MAX_SLOT_NUM]);
                for &sl in d.build_next.iter() {
                    slots[sl as usize] = true;
                }
                d.build_next.clear();
                d.build = Some(Build { cursor: rm::DbCursor::new(), slots });
            }
            d.build_running = true;
            d.build.take()
        });
        let Some(mut build) = build else {
            return true;
        };
        let orig = rm::selected_db(ctx);
        rm::select_db(ctx, db);
        let mut more = true;
        let mut steps = 0u32;
        while more {
            // Keys go into their sets as the scan finds them, so the time budget covers
            // the inserts too (a wide window finds a key at nearly every step). Nothing
            // else runs during a step, so no flush can interleave.
            more = build.cursor.step(ctx, &mut |k| {
                let sl = slot_of(k);
                if build.slots[sl as usize] {
                    with(|s| {
                        if let Some(t) = s.dbs[db as usize].index.tracked.get_mut(&sl) {
                            t.set.insert(k);
                        }
                    });
                }
            });
            steps += 1;
            if steps.is_multiple_of(16)
                && let Some(b) = budget_us
                && started.elapsed().as_micros() >= b
            {
                break;
            }
        }
        rm::select_db(ctx, orig);
        let finished = with(|s| {
            let d = &mut s.dbs[db as usize];
            if !d.build_running {
                // A flush or load happened meanwhile: the sets are already exact.
                return true;
            }
            if !more {
                for (sl, on) in build.slots.iter().enumerate() {
                    if *on && let Some(t) = d.index.tracked.get_mut(&(sl as u16)) {
                        t.ready = true;
                    }
                }
                d.build_running = false;
                d.build_next.is_empty()
            } else {
                d.build = Some(build);
                false
            }
        });
        if finished {
            return true;
        }
        if let Some(b) = budget_us
            && started.elapsed().as_micros() >= b
        {
            return false;
        }
    }
}

/// Builds synchronously until `slots` of `db` are complete.
pub fn build_now(ctx: Ctx, db: i32, slots: &[u16]) {
    while !request_sets(db, slots) {
        build_step(ctx, db, None);
    }
}

unsafe extern "C" fn build_tick(ctx: Ctx, _data: *mut c_void) {
    with(|s| s.build_timer_armed = false);
    let n = ndbs();
    let mut more = false;
    for db in 0..n {
        let has_work = with(|s| {
            let d = &s.dbs[db];
            d.build.is_some() || !d.build_next.is_empty()
        });
        if has_work && !build_step(ctx, db as i32, Some(BUILD_BUDGET_US)) {
            more = true;
        }
    }
    wake_waiters(ctx);
    if more {
        arm_build_timer();
    }
}

pub fn arm_build_timer() {
    let arm = with(|s| {
        if s.build_timer_armed {
            false
        } else {
            s.build_timer_armed = true;
            true
        }
    });
    if arm {
        rm::create_timer(rm::detached_ctx(), 0, build_tick, ptr::null_mut());
    }
}

/// Releases every waiter whose sets are complete.
pub fn wake_waiters(ctx: Ctx) {
    let ready: Vec<Waiter> = with(|s| {
        let mut ready = Vec::new();
        let mut i = 0;
        while i < s.waiters.len() {
            let w = &s.waiters[i];
            let d = &s.dbs[w.db as usize];
            let ok = w.slots.iter().all(|sl| d.index.tracked.get(sl).is_some_and(|t| t.ready));
            if ok {
                ready.push(s.waiters.swap_remove(i));
            } else {
                i += 1;
            }
        }
        ready
    });
    for w in ready {
        match w.kind {
            WaitKind::Reply(p) => rm::unblock_client(w.bc, p as *mut c_void),
            WaitKind::Start(f) => {
                let bc = w.bc;
                crate::guard_void(ctx, || f(ctx, bc));
            }
        }
    }
}

unsafe extern "C" fn pending_reply(ctx: Ctx, _argv: *mut RStr, _argc: c_int) -> c_int {
    let p = rm::blocked_privdata(ctx) as *mut Pending;
    if p.is_null() {
        return rm::OK;
    }
    let p = unsafe { &mut *p };
    if let Some(op) = p.op.take() {
        crate::guard(ctx, || {
            // Normally complete; a set dropped in between is rebuilt here.
            build_now(ctx, p.db, &p.slots);
            op(ctx);
            rm::OK
        });
    }
    rm::OK
}

unsafe extern "C" fn pending_free(_ctx: Ctx, data: *mut c_void) {
    if !data.is_null() {
        drop(unsafe { Box::from_raw(data as *mut Pending) });
    }
}

/// Runs `op` once the sets of `slots` in `db` are complete: at once if they are,
/// after blocking the client while a scan builds them, or (where the client cannot
/// be blocked) after building them synchronously.
pub fn run_with_sets(ctx: Ctx, db: i32, slots: Vec<u16>, op: Op) -> c_int {
    if request_sets(db, &slots) {
        op(ctx);
        return rm::OK;
    }
    if !rm::can_block(ctx) {
        build_now(ctx, db, &slots);
        op(ctx);
        return rm::OK;
    }
    let pending = Box::into_raw(Box::new(Pending { db, slots: slots.clone(), op: Some(op) }));
    let bc = rm::block_client(ctx, pending_reply, pending_free);
    with(|s| s.waiters.push(Waiter { db, slots, bc, kind: WaitKind::Reply(pending) }));
    arm_build_timer();
    rm::OK
}

/// Blocks the client until the sets of `slots` are complete, then calls `start` with
/// the still-blocked client (which `start` must eventually unblock). Returns false,
/// without blocking, when the sets are already complete or the client cannot block.
pub fn block_until_sets(
    ctx: Ctx,
    db: i32,
    slots: Vec<u16>,
    block: impl FnOnce(Ctx) -> rm::BlockedClient,
    start: Start,
) -> Result<(), Start> {
    if request_sets(db, &slots) || !rm::can_block(ctx) {
        return Err(start);
    }
    let bc = block(ctx);
    with(|s| s.waiters.push(Waiter { db, slots, bc, kind: WaitKind::Start(start) }));
    arm_build_timer();
    Ok(())
}

/// Drops slot sets nobody used for a while (called from the housekeeping timer).
pub fn expire_idle_sets(now: i64) {
    with(|s| {
        let busy_dbs: Vec<bool> = (0..s.dbs.len()).map(|i| s.asyncs.has_job(i as i32)).collect();
        for (i, d) in s.dbs.iter_mut().enumerate() {
            if busy_dbs[i] {
                continue;
            }
            let building = d.build.is_some();
            d.index.tracked.retain(|sl, t| {
                let waiting = !t.ready && (building || d.build_next.contains(sl));
                waiting || now - t.last_used_ms < SET_IDLE_MS
            });
        }
    });
}
