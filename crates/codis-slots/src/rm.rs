//! A thin layer over the raw Redis module API (`redis_module::raw`).
//!
//! Only what this module needs, with the unsafety kept here: every function takes a
//! context pointer that Redis handed us on the main thread and is still alive.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use redis_module::raw;

pub type Ctx = *mut raw::RedisModuleCtx;
pub type RStr = *mut raw::RedisModuleString;

/// Calls an API function pointer filled in by `RedisModule_Init`; a missing one means
/// the server is older than this module supports, which `OnLoad` checks up front.
macro_rules! api {
    ($name:ident) => {
        redis_module::raw::$name.expect(concat!("Redis module API missing: ", stringify!($name)))
    };
}
pub(crate) use api;

pub const OK: c_int = raw::REDISMODULE_OK as c_int;
pub const ERR: c_int = raw::REDISMODULE_ERR as c_int;

/// `RedisModule_GetServerVersion`: `0x00MMmmpp`.
pub fn server_version() -> u32 {
    match unsafe { raw::RedisModule_GetServerVersion } {
        Some(f) => unsafe { f() as u32 },
        None => 0,
    }
}

/// Bytes of a module string; valid while the string lives.
pub fn bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    if s.is_null() {
        return &[];
    }
    let mut len = 0usize;
    let p = unsafe { api!(RedisModule_StringPtrLen)(s, &mut len) };
    if p.is_null() || len == 0 {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(p as *const u8, len) }
}

/// The arguments of a command as byte slices.
pub fn args<'a>(argv: *mut RStr, argc: c_int) -> Vec<&'a [u8]> {
    (0..argc as usize).map(|i| bytes(unsafe { *argv.add(i) })).collect()
}

pub fn create_string(ctx: Ctx, b: &[u8]) -> RStr {
    unsafe { api!(RedisModule_CreateString)(ctx, b.as_ptr() as *const c_char, b.len()) }
}

pub fn free_string(ctx: Ctx, s: RStr) {
    unsafe { api!(RedisModule_FreeString)(ctx, s) }
}

/// Owned module strings, freed on drop.
pub struct Strings {
    ctx: Ctx,
    v: Vec<RStr>,
}

impl Strings {
    pub fn new(ctx: Ctx, items: &[&[u8]]) -> Self {
        let mut v = Vec::with_capacity(items.len());
        for it in items {
            v.push(create_string(ctx, it));
        }
        Strings { ctx, v }
    }
    pub fn get(&self, i: usize) -> RStr {
        self.v[i]
    }
    pub fn len(&self) -> usize {
        self.v.len()
    }
    pub fn as_ptr(&mut self) -> *mut RStr {
        self.v.as_mut_ptr()
    }
}

impl Drop for Strings {
    fn drop(&mut self) {
        for s in self.v.drain(..) {
            free_string(self.ctx, s);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replies

pub fn reply_array(ctx: Ctx, n: usize) {
    unsafe { api!(RedisModule_ReplyWithArray)(ctx, n as _) };
}
pub fn reply_int(ctx: Ctx, v: i64) {
    unsafe { api!(RedisModule_ReplyWithLongLong)(ctx, v) };
}
pub fn reply_bulk(ctx: Ctx, b: &[u8]) {
    unsafe { api!(RedisModule_ReplyWithStringBuffer)(ctx, b.as_ptr() as *const c_char, b.len()) };
}
pub fn reply_null(ctx: Ctx) {
    unsafe { api!(RedisModule_ReplyWithNull)(ctx) };
}
pub fn reply_null_array(ctx: Ctx) {
    match unsafe { raw::RedisModule_ReplyWithNullArray } {
        Some(f) => unsafe {
            f(ctx);
        },
        None => reply_null(ctx),
    }
}
pub fn reply_ok(ctx: Ctx) {
    reply_simple(ctx, "OK");
}
pub fn reply_simple(ctx: Ctx, s: &str) {
    let c = CString::new(s).unwrap_or_default();
    unsafe { api!(RedisModule_ReplyWithSimpleString)(ctx, c.as_ptr()) };
}
/// An error reply. Like Redis, a message without an upper-case code gets `ERR `.
pub fn reply_error(ctx: Ctx, msg: &str) {
    let clean: String = msg.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    let first = clean.split(' ').next().unwrap_or("");
    let has_code = !first.is_empty() && first.bytes().all(|b| b.is_ascii_uppercase());
    let full = if has_code { clean } else { format!("ERR {clean}") };
    let c = CString::new(full).unwrap_or_default();
    unsafe { api!(RedisModule_ReplyWithError)(ctx, c.as_ptr()) };
}
pub fn reply_call_reply(ctx: Ctx, r: &CallReply) {
    unsafe { api!(RedisModule_ReplyWithCallReply)(ctx, r.0) };
}

pub fn wrong_arity(ctx: Ctx) -> c_int {
    unsafe { api!(RedisModule_WrongArity)(ctx) }
}

// ---------------------------------------------------------------------------------------
// Context helpers

pub fn selected_db(ctx: Ctx) -> i32 {
    unsafe { api!(RedisModule_GetSelectedDb)(ctx) }
}
pub fn select_db(ctx: Ctx, db: i32) -> bool {
    unsafe { api!(RedisModule_SelectDb)(ctx, db as c_int) == OK }
}
pub fn db_size(ctx: Ctx) -> u64 {
    unsafe { api!(RedisModule_DbSize)(ctx) }
}
pub fn context_flags(ctx: Ctx) -> u32 {
    unsafe { api!(RedisModule_GetContextFlags)(ctx) as u32 }
}
/// True when the calling client may be blocked (not in MULTI, a script, or a
/// replicated stream).
pub fn can_block(ctx: Ctx) -> bool {
    let f = context_flags(ctx);
    f & (raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
        | raw::REDISMODULE_CTX_FLAGS_REPLICATED
        | raw::REDISMODULE_CTX_FLAGS_LOADING)
        == 0
}
pub fn now_ms() -> i64 {
    unsafe { api!(RedisModule_Milliseconds)() }
}

pub fn log(ctx: Ctx, level: &str, msg: &str) {
    let lvl = CString::new(level).unwrap_or_default();
    let m = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    unsafe { api!(RedisModule_Log)(ctx, lvl.as_ptr(), c"%s".as_ptr(), m.as_ptr()) };
}
pub fn log_warning(ctx: Ctx, msg: &str) {
    log(ctx, "warning", msg)
}
pub fn log_verbose(ctx: Ctx, msg: &str) {
    log(ctx, "verbose", msg)
}

// ---------------------------------------------------------------------------------------
// Keys

pub const KEYTYPE_EMPTY: i32 = raw::REDISMODULE_KEYTYPE_EMPTY as i32;
pub const KEYTYPE_STRING: i32 = raw::REDISMODULE_KEYTYPE_STRING as i32;
pub const KEYTYPE_LIST: i32 = raw::REDISMODULE_KEYTYPE_LIST as i32;
pub const KEYTYPE_HASH: i32 = raw::REDISMODULE_KEYTYPE_HASH as i32;
pub const KEYTYPE_SET: i32 = raw::REDISMODULE_KEYTYPE_SET as i32;
pub const KEYTYPE_ZSET: i32 = raw::REDISMODULE_KEYTYPE_ZSET as i32;

/// An open key, closed on drop.
pub struct Key {
    pub ptr: *mut raw::RedisModuleKey,
}

impl Key {
    /// Opens `name` for reading. The key may be expired by the lookup (as any read does).
    pub fn open_read(ctx: Ctx, name: RStr) -> Key {
        let p = unsafe { api!(RedisModule_OpenKey)(ctx, name, raw::REDISMODULE_READ as c_int) };
        Key { ptr: p }
    }
    pub fn key_type(&self) -> i32 {
        if self.ptr.is_null() {
            return KEYTYPE_EMPTY;
        }
        unsafe { api!(RedisModule_KeyType)(self.ptr) }
    }
    pub fn len(&self) -> usize {
        if self.ptr.is_null() {
            return 0;
        }
        unsafe { api!(RedisModule_ValueLength)(self.ptr) }
    }
    /// Remaining time to live in ms, or `None`.
    pub fn ttl(&self) -> Option<i64> {
        if self.ptr.is_null() {
            return None;
        }
        let t = unsafe { api!(RedisModule_GetExpire)(self.ptr) };
        if t == raw::REDISMODULE_NO_EXPIRE as i64 { None } else { Some(t) }
    }
    /// The value of a string key (copied).
    pub fn string_value(&self) -> Option<Vec<u8>> {
        if self.key_type() != KEYTYPE_STRING {
            return None;
        }
        let mut len = 0usize;
        let p = unsafe { api!(RedisModule_StringDMA)(self.ptr, &mut len, raw::REDISMODULE_READ as c_int) };
        if p.is_null() {
            return Some(Vec::new());
        }
        Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}

/// Callback of a key scan: `(field, value)`; sets have no value.
pub type ElemFn<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// A cursor for `RedisModule_ScanKey` over one hash/set/zset.
pub struct KeyCursor(*mut raw::RedisModuleScanCursor);

impl KeyCursor {
    pub fn new() -> Self {
        KeyCursor(unsafe { api!(RedisModule_ScanCursorCreate)() })
    }
    /// One scan step over `key`, calling `f(field, value)` per element. Returns false
    /// when the scan is complete.
    pub fn step(&mut self, key: &Key, f: &mut ElemFn) -> bool {
        unsafe extern "C" fn cb(_key: *mut raw::RedisModuleKey, field: RStr, value: RStr, pd: *mut c_void) {
            let f = unsafe { &mut *(pd as *mut &mut ElemFn) };
            let v = if value.is_null() { None } else { Some(bytes(value)) };
            f(bytes(field), v);
        }
        let mut fref: &mut ElemFn = f;
        let r = unsafe { api!(RedisModule_ScanKey)(key.ptr, self.0, Some(cb), &mut fref as *mut _ as *mut c_void) };
        r != 0
    }
}

impl Default for KeyCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KeyCursor {
    fn drop(&mut self) {
        unsafe { api!(RedisModule_ScanCursorDestroy)(self.0) };
    }
}

/// A cursor for `RedisModule_Scan` over the selected DB's keyspace. The crate's own
/// `KeysCursor` leaks every key name, so this goes straight to the raw API.
pub struct DbCursor(*mut raw::RedisModuleScanCursor);

impl DbCursor {
    pub fn new() -> Self {
        DbCursor(unsafe { api!(RedisModule_ScanCursorCreate)() })
    }
    /// One scan step; `f(key)` per key. Returns false when the scan is complete.
    pub fn step(&mut self, ctx: Ctx, f: &mut dyn FnMut(&[u8])) -> bool {
        unsafe extern "C" fn cb(_ctx: Ctx, keyname: RStr, _key: *mut raw::RedisModuleKey, pd: *mut c_void) {
            let f = unsafe { &mut *(pd as *mut &mut dyn FnMut(&[u8])) };
            f(bytes(keyname));
        }
        let mut fref: &mut dyn FnMut(&[u8]) = f;
        let r = unsafe { api!(RedisModule_Scan)(ctx, self.0, Some(cb), &mut fref as *mut _ as *mut c_void) };
        r != 0
    }
}

impl Default for DbCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DbCursor {
    fn drop(&mut self) {
        unsafe { api!(RedisModule_ScanCursorDestroy)(self.0) };
    }
}

// ---------------------------------------------------------------------------------------
// RedisModule_Call

pub const REPLY_STRING: i32 = raw::REDISMODULE_REPLY_STRING as i32;
pub const REPLY_ERROR: i32 = raw::REDISMODULE_REPLY_ERROR as i32;
pub const REPLY_ARRAY: i32 = raw::REDISMODULE_REPLY_ARRAY as i32;

/// A reply of `RedisModule_Call`, freed on drop (only the top-level one is owned).
pub struct CallReply(*mut raw::RedisModuleCallReply, bool);

impl CallReply {
    pub fn kind(&self) -> i32 {
        unsafe { api!(RedisModule_CallReplyType)(self.0) }
    }
    pub fn is_error(&self) -> bool {
        self.kind() == REPLY_ERROR
    }
    pub fn integer(&self) -> i64 {
        unsafe { api!(RedisModule_CallReplyInteger)(self.0) }
    }
    pub fn len(&self) -> usize {
        unsafe { api!(RedisModule_CallReplyLength)(self.0) }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of a string, error, or status reply.
    pub fn bytes(&self) -> &[u8] {
        let mut len = 0usize;
        let p = unsafe { api!(RedisModule_CallReplyStringPtr)(self.0, &mut len) };
        if p.is_null() || len == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(p as *const u8, len) }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
    /// Element `i` of an array reply (borrowed from this one).
    pub fn elem(&self, i: usize) -> CallReply {
        CallReply(unsafe { api!(RedisModule_CallReplyArrayElement)(self.0, i) }, false)
    }
}

impl Drop for CallReply {
    fn drop(&mut self) {
        if self.1 && !self.0.is_null() {
            unsafe { api!(RedisModule_FreeCallReply)(self.0) };
        }
    }
}

/// The outcome of a call: a reply (possibly an error reply) or a call that Redis
/// refused before running it.
pub enum Called {
    Reply(CallReply),
    Refused(String),
}

impl Called {
    /// The reply, or the refusal as an error message.
    pub fn into_result(self) -> Result<CallReply, String> {
        match self {
            Called::Reply(r) if r.is_error() => Err(r.text()),
            Called::Reply(r) => Ok(r),
            Called::Refused(e) => Err(e),
        }
    }
}

/// Flags that make `RedisModule_Call` report errors as replies, where supported (7.0+;
/// on 6.2 an unknown flag makes the call silently not run).
fn error_flag() -> &'static str {
    if server_version() >= 0x00070000 { "E" } else { "" }
}

/// `RedisModule_Call(cmd, args...)`. `flags` are extra call flags such as `!` (propagate)
/// or `0` (reply in the caller's protocol); `v` and, on 7.0+, `E` are added here.
pub fn call(ctx: Ctx, cmd: &str, flags: &str, args: &[&[u8]]) -> Called {
    let mut strs = Strings::new(ctx, args);
    call_strings(ctx, cmd, flags, &mut strs)
}

pub fn call_strings(ctx: Ctx, cmd: &str, flags: &str, strs: &mut Strings) -> Called {
    let c = CString::new(cmd).unwrap_or_default();
    let f = CString::new(format!("v{}{}", flags, error_flag())).unwrap_or_default();
    let n = strs.len();
    let p = if n == 0 { ptr::null_mut() } else { strs.as_ptr() };
    call_raw(ctx, &c, &f, p, n)
}

/// Calls with module strings the caller owns (e.g. a command's own argv).
pub fn call_argv(ctx: Ctx, cmd: &CStr, flags: &str, argv: *mut RStr, n: usize) -> Called {
    let f = CString::new(format!("v{}{}", flags, error_flag())).unwrap_or_default();
    call_raw(ctx, cmd, &f, argv, n)
}

fn call_raw(ctx: Ctx, cmd: &CStr, flags: &CStr, argv: *mut RStr, n: usize) -> Called {
    let r = unsafe { api!(RedisModule_Call)(ctx, cmd.as_ptr(), flags.as_ptr(), argv, n) };
    if r.is_null() {
        let e = std::io::Error::last_os_error();
        let msg = match e.raw_os_error() {
            Some(libc::ENOENT) => "ERR unknown command".to_string(),
            Some(libc::EINVAL) => "ERR wrong number of arguments".to_string(),
            Some(libc::ENOSPC) => "OOM command not allowed when used memory > 'maxmemory'".into(),
            Some(libc::EACCES) => "NOPERM command not allowed".to_string(),
            Some(libc::EROFS) => "READONLY You can't write against a read only replica".into(),
            _ => format!("ERR call failed ({e})"),
        };
        return Called::Refused(msg);
    }
    Called::Reply(CallReply(r, true))
}

// ---------------------------------------------------------------------------------------
// Blocking clients, timers, event loop

pub type BlockedClient = *mut raw::RedisModuleBlockedClient;

pub type ReplyFn = unsafe extern "C" fn(Ctx, *mut RStr, c_int) -> c_int;
pub type FreeFn = unsafe extern "C" fn(Ctx, *mut c_void);

pub fn block_client(ctx: Ctx, reply: ReplyFn, free: FreeFn) -> BlockedClient {
    unsafe { api!(RedisModule_BlockClient)(ctx, Some(reply), None, Some(free), 0) }
}
pub fn unblock_client(bc: BlockedClient, privdata: *mut c_void) {
    unsafe { api!(RedisModule_UnblockClient)(bc, privdata) };
}
pub fn blocked_privdata(ctx: Ctx) -> *mut c_void {
    unsafe { api!(RedisModule_GetBlockedClientPrivateData)(ctx) }
}

pub type TimerFn = unsafe extern "C" fn(Ctx, *mut c_void);

pub fn create_timer(ctx: Ctx, ms: i64, f: TimerFn, data: *mut c_void) -> u64 {
    unsafe { api!(RedisModule_CreateTimer)(ctx, ms, Some(f), data) }
}

pub type EventLoopFn = unsafe extern "C" fn(c_int, *mut c_void, c_int);

pub const EL_READABLE: i32 = raw::REDISMODULE_EVENTLOOP_READABLE as i32;
pub const EL_WRITABLE: i32 = raw::REDISMODULE_EVENTLOOP_WRITABLE as i32;

pub fn event_loop_add(fd: i32, mask: i32, f: EventLoopFn, data: *mut c_void) -> bool {
    unsafe { api!(RedisModule_EventLoopAdd)(fd, mask, Some(f), data) == OK }
}
pub fn event_loop_del(fd: i32, mask: i32) {
    unsafe { api!(RedisModule_EventLoopDel)(fd, mask) };
}

/// A context for module-wide work outside any callback (timer creation, logging).
pub fn detached_ctx() -> Ctx {
    use std::sync::atomic::{AtomicPtr, Ordering};
    static CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());
    let c = CTX.load(Ordering::Relaxed);
    if !c.is_null() {
        return c;
    }
    let c = unsafe { api!(RedisModule_GetDetachedThreadSafeContext)(crate::module_ctx()) };
    CTX.store(c, Ordering::Relaxed);
    c
}
