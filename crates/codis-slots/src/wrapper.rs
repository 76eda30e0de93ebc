//! SLOTSMGRT-EXEC-WRAPPER hashkey command [args...]
//!
//! The proxy sends commands for a slot being migrated (semi-async mode) through this
//! wrapper to the source. The reply is `[code, reply]`:
//! -1 bad command, 0 the key is not here (send to the target), 1 the key is in the
//! batch being migrated and the command writes (retry later), 2 executed here.

use std::ffi::{CString, c_int};

use crate::rm::{self, Ctx, RStr};
use crate::state::{self, CmdInfo};

/// Arity and read-only flag of a command, from `COMMAND INFO` (cached).
fn command_info(ctx: Ctx, name: &[u8]) -> Option<CmdInfo> {
    let lname = name.to_ascii_lowercase();
    if let Some(v) = state::with(|s| s.cmd_info.get(&lname).copied()) {
        return v;
    }
    let info = (|| {
        let r = rm::call(ctx, "COMMAND", "", &[b"INFO", &lname]).into_result().ok()?;
        if r.kind() != rm::REPLY_ARRAY || r.is_empty() {
            return None;
        }
        let e = r.elem(0);
        if e.kind() != rm::REPLY_ARRAY || e.len() < 3 {
            return None;
        }
        let arity = e.elem(1).integer();
        let flags = e.elem(2);
        let readonly = (0..flags.len()).any(|i| flags.elem(i).bytes() == b"readonly");
        Some(CmdInfo { arity, readonly })
    })();
    state::with(|s| s.cmd_info.insert(lname, info));
    info
}

pub fn exec_wrapper(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
    let args = rm::args(argv, argc);
    rm::reply_array(ctx, 2);
    if args.len() < 3 {
        rm::reply_int(ctx, -1);
        rm::reply_error(ctx, "wrong number of arguments for SLOTSMGRT-EXEC-WRAPPER");
        return rm::OK;
    }
    let name = String::from_utf8_lossy(args[2]).into_owned();
    let Some(info) = command_info(ctx, args[2]) else {
        rm::reply_int(ctx, -1);
        rm::reply_error(ctx, &format!("invalid command specified ({name})"));
        return rm::OK;
    };
    let n = (args.len() - 2) as i64;
    if (info.arity > 0 && info.arity != n) || n < -info.arity {
        rm::reply_int(ctx, -1);
        rm::reply_error(ctx, &format!("wrong number of arguments for command ({name})"));
        return rm::OK;
    }
    let exists = {
        let k = rm::Key::open_read(ctx, unsafe { *argv.add(1) });
        k.key_type() != rm::KEYTYPE_EMPTY
    };
    if !exists {
        rm::reply_int(ctx, 0);
        rm::reply_error(ctx, "the specified key doesn't exist");
        return rm::OK;
    }
    let db = rm::selected_db(ctx);
    if !info.readonly && state::with(|s| s.asyncs.job_contains(db, args[1])) {
        rm::reply_int(ctx, 1);
        rm::reply_error(ctx, "the specified key is being migrated");
        return rm::OK;
    }
    rm::reply_int(ctx, 2);
    let cname = CString::new(args[2].to_vec()).unwrap_or_default();
    // `!` propagates what the command does; `0` answers in the client's protocol; `C`
    // checks the client's ACL permissions and `M` refuses deny-oom commands over
    // maxmemory, as if the client had sent the command itself.
    match rm::call_argv(ctx, &cname, "!0CM", unsafe { argv.add(3) }, argc as usize - 3) {
        rm::Called::Reply(r) => rm::reply_call_reply(ctx, &r),
        rm::Called::Refused(e) => rm::reply_error(ctx, &e),
    }
    rm::OK
}
