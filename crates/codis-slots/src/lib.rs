//! `codis-slots`: codis-server's SLOTS* commands as a module for stock redis-server.
//!
//! Load with `redis-server --loadmodule libcodis_slots.so`. The module keeps an exact
//! count of keys per slot (crc32 of the key's hash tag, mod 1024) in every DB, builds
//! the key set of a slot only while that slot is scanned or migrated, and implements
//! codis-server 3.2's sync and async migration protocols.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

mod basic;
mod compat;
pub mod index;
mod mgrt_async;
mod rm;
mod state;
mod sync;
mod target;
mod wrapper;

use rm::{Ctx, RStr, api};

#[cfg(not(test))]
#[global_allocator]
static ALLOC: redis_module::alloc::RedisAlloc = redis_module::alloc::RedisAlloc;

static MODULE_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// The context `OnLoad` received (only its module pointer is used, to create
/// detached contexts).
pub(crate) fn module_ctx() -> Ctx {
    MODULE_CTX.load(Ordering::Relaxed)
}

/// Runs a command body, turning a panic into an error reply instead of aborting the
/// server.
pub(crate) fn guard(ctx: Ctx, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            rm::log_warning(ctx, &format!("codis-slots: internal error: {msg}"));
            rm::reply_error(ctx, &format!("internal error: {msg}"));
            rm::OK
        }
    }
}

/// Like [`guard`] for callbacks that reply nothing themselves.
pub(crate) fn guard_void(ctx: Ctx, f: impl FnOnce()) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        rm::log_warning(ctx, &format!("codis-slots: internal error: {msg}"));
    }
}

type Handler = fn(Ctx, &[&[u8]]) -> c_int;

macro_rules! command {
    ($fname:ident, $handler:expr) => {
        unsafe extern "C" fn $fname(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
            let args = rm::args(argv, argc);
            let h: Handler = $handler;
            guard(ctx, || h(ctx, &args))
        }
    };
}

command!(cmd_slotshashkey, basic::slotshashkey);
command!(cmd_slotsinfo, basic::slotsinfo);
command!(cmd_slotsscan, basic::slotsscan);
command!(cmd_slotsdel, basic::slotsdel);
command!(cmd_slotscheck, basic::slotscheck);
command!(cmd_slotsmgrtslot, |c, a| sync::slotsmgrtslot(c, a, false));
command!(cmd_slotsmgrttagslot, |c, a| sync::slotsmgrtslot(c, a, true));
command!(cmd_slotsmgrtone, sync::slotsmgrtone);
command!(cmd_slotsmgrttagone, sync::slotsmgrttagone);
command!(cmd_slotsrestore, sync::slotsrestore);
command!(cmd_mgrtslot_async, |c, a| mgrt_async::migrate_async(c, a, false, false));
command!(cmd_mgrttagslot_async, |c, a| mgrt_async::migrate_async(c, a, true, false));
command!(cmd_mgrtone_async, |c, a| mgrt_async::migrate_async(c, a, false, true));
command!(cmd_mgrttagone_async, |c, a| mgrt_async::migrate_async(c, a, true, true));
command!(cmd_async_fence, mgrt_async::fence);
command!(cmd_mgrtone_async_dump, |c, a| mgrt_async::dump(c, a, false));
command!(cmd_mgrttagone_async_dump, |c, a| mgrt_async::dump(c, a, true));
command!(cmd_async_cancel, mgrt_async::cancel);
command!(cmd_async_status, mgrt_async::status);
command!(cmd_restore_async, target::restore_async);
command!(cmd_restore_async_auth, target::restore_async_auth);
command!(cmd_restore_async_select, target::restore_async_select);
command!(cmd_restore_async_ack, target::restore_async_ack);

unsafe extern "C" fn cmd_exec_wrapper(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
    guard(ctx, || wrapper::exec_wrapper(ctx, argv, argc))
}

type CmdFn = unsafe extern "C" fn(Ctx, *mut RStr, c_int) -> c_int;

fn create_command(ctx: Ctx, name: &CStr, f: CmdFn, flags: &CStr) -> bool {
    unsafe { api!(RedisModule_CreateCommand)(ctx, name.as_ptr(), Some(f), flags.as_ptr(), 0, 0, 0) == rm::OK }
}

fn subscribe_server_event(
    ctx: Ctx,
    id: u64,
    cb: unsafe extern "C" fn(Ctx, raw::RedisModuleEvent, u64, *mut c_void),
) -> bool {
    let ev = raw::RedisModuleEvent { id, dataver: 1 };
    unsafe { api!(RedisModule_SubscribeToServerEvent)(ctx, ev, Some(cb)) == rm::OK }
}

fn config_databases(ctx: Ctx) -> usize {
    rm::call(ctx, "CONFIG", "", &[b"GET", b"databases"])
        .into_result()
        .ok()
        .filter(|r| r.len() >= 2)
        .and_then(|r| r.elem(1).text().parse().ok())
        .unwrap_or(16)
}

unsafe extern "C" fn housekeeping(ctx: Ctx, _data: *mut c_void) {
    let now = rm::now_ms();
    state::expire_idle_sets(now);
    mgrt_async::cleanup(ctx, now);
    rm::create_timer(ctx, 100, housekeeping, std::ptr::null_mut());
}

/// `INFO codis_slots`: slot sets and async migration state.
unsafe extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    let (sets, keys, building, conns, batches) = state::with(|s| {
        let mut sets = 0usize;
        let mut keys = 0usize;
        let mut building = 0usize;
        for d in &s.dbs {
            sets += d.index.tracked.len();
            keys += d.index.tracked.values().map(|t| t.set.len()).sum::<usize>();
            building += d.index.tracked.values().filter(|t| !t.ready).count();
        }
        let (c, b) = s.asyncs.counts();
        (sets, keys, building, c, b)
    });
    unsafe {
        api!(RedisModule_InfoAddSection)(ctx, c"".as_ptr() as *mut c_char);
        for (name, v) in [
            (c"slot_sets", sets),
            (c"slot_set_keys", keys),
            (c"slot_sets_building", building),
            (c"async_connections", conns),
            (c"async_batches", batches),
        ] {
            api!(RedisModule_InfoAddFieldULongLong)(ctx, name.as_ptr() as *mut c_char, v as u64);
        }
    }
}

/// Unloading is refused: timers and event-loop callbacks point into this library.
///
/// # Safety
/// Called by Redis.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn RedisModule_OnUnload(_ctx: Ctx) -> c_int {
    rm::ERR
}

/// Entry point called by `MODULE LOAD` / `loadmodule`.
///
/// # Safety
/// Called by Redis with a valid context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn RedisModule_OnLoad(ctx: Ctx, _argv: *mut RStr, _argc: c_int) -> c_int {
    let name = c"codis_slots";
    if unsafe {
        raw::Export_RedisModule_Init(ctx, name.as_ptr() as *const c_char, 1, raw::REDISMODULE_APIVER_1 as c_int)
    } == rm::ERR
    {
        return rm::ERR;
    }
    let version = rm::server_version();
    if version < 0x0007_0000 || unsafe { raw::RedisModule_EventLoopAdd }.is_none() {
        rm::log_warning(ctx, &format!("codis-slots needs Redis 7.0 or later (server is {version:#08x})"));
        return rm::ERR;
    }
    MODULE_CTX.store(ctx, Ordering::Relaxed);
    // Create the detached context now, while the load context is valid.
    rm::detached_ctx();

    let ndbs = config_databases(ctx);
    state::init(ndbs);

    let cmds: &[(&CStr, CmdFn, &CStr)] = &[
        (c"slotshashkey", cmd_slotshashkey, c"readonly fast"),
        (c"slotsinfo", cmd_slotsinfo, c"readonly"),
        (c"slotsscan", cmd_slotsscan, c"readonly"),
        (c"slotsdel", cmd_slotsdel, c"write"),
        (c"slotscheck", cmd_slotscheck, c"readonly admin"),
        (c"slotsmgrtslot", cmd_slotsmgrtslot, c"write"),
        (c"slotsmgrttagslot", cmd_slotsmgrttagslot, c"write"),
        (c"slotsmgrtone", cmd_slotsmgrtone, c"write"),
        (c"slotsmgrttagone", cmd_slotsmgrttagone, c"write"),
        (c"slotsrestore", cmd_slotsrestore, c"write deny-oom"),
        (c"slotsmgrtslot-async", cmd_mgrtslot_async, c"write"),
        (c"slotsmgrttagslot-async", cmd_mgrttagslot_async, c"write"),
        (c"slotsmgrtone-async", cmd_mgrtone_async, c"write"),
        (c"slotsmgrttagone-async", cmd_mgrttagone_async, c"write"),
        (c"slotsmgrt-async-fence", cmd_async_fence, c"readonly"),
        (c"slotsmgrtone-async-dump", cmd_mgrtone_async_dump, c"readonly"),
        (c"slotsmgrttagone-async-dump", cmd_mgrttagone_async_dump, c"readonly"),
        (c"slotsmgrt-async-cancel", cmd_async_cancel, c"readonly"),
        (c"slotsmgrt-async-status", cmd_async_status, c"readonly"),
        (c"slotsmgrt-exec-wrapper", cmd_exec_wrapper, c"write"),
        (c"slotsrestore-async", cmd_restore_async, c"write deny-oom"),
        (c"slotsrestore-async-auth", cmd_restore_async_auth, c"no-auth fast"),
        (c"slotsrestore-async-select", cmd_restore_async_select, c"fast"),
        (c"slotsrestore-async-ack", cmd_restore_async_ack, c"fast"),
    ];
    for (n, f, fl) in cmds {
        if !create_command(ctx, n, *f, fl) {
            rm::log_warning(ctx, &format!("codis-slots: cannot register {n:?}"));
            return rm::ERR;
        }
    }

    if unsafe {
        api!(RedisModule_SubscribeToKeyspaceEvents)(ctx, state::KEYSPACE_EVENTS, Some(state::on_keyspace_event))
    } != rm::OK
    {
        return rm::ERR;
    }
    if !subscribe_server_event(ctx, raw::REDISMODULE_EVENT_FLUSHDB, state::on_flushdb)
        || !subscribe_server_event(ctx, raw::REDISMODULE_EVENT_SWAPDB, state::on_swapdb)
        || !subscribe_server_event(ctx, raw::REDISMODULE_EVENT_LOADING, state::on_loading)
    {
        return rm::ERR;
    }

    // MODULE LOAD into a populated server: count what is already there.
    for db in 0..ndbs {
        state::recount(ctx, db as i32);
    }

    unsafe { api!(RedisModule_RegisterInfoFunc)(ctx, Some(info)) };
    rm::create_timer(ctx, 100, housekeeping, std::ptr::null_mut());
    rm::OK
}
