//! `--dashboard=ADDR ...`: every dashboard command.
//!
//! Reads (overview, lists, status) use the dashboard's open routes and need no
//! password. Changes first read the product name from `/api/topom/model`, derive the
//! dashboard's xauth from it and `--auth` (codis-rs dashboards require the product's
//! password when `product_auth` is set), check it with `xping`, then call the route.

use std::collections::BTreeMap;
use std::io::Write;

use codis_core::MAX_SLOT_NUM;
use codis_core::auth::dashboard_xauth;
use codis_core::models::SlotMapping;
use serde_json::Value;

use crate::cli::{Cli, View};
use crate::error::{Error, Result, need};
use crate::http::{Api, seg};
use crate::render;
use crate::view::{DashboardOverview, Stats};

/// A dashboard's admin API.
pub struct Dashboard {
    api: Api,
    auth: String,
    xauth: Option<String>,
}

impl Dashboard {
    pub fn new(addr: &str, auth: &str, verbose: bool) -> Result<Dashboard> {
        Ok(Dashboard { api: Api::new("dashboard", addr, verbose)?, auth: auth.to_string(), xauth: None })
    }

    pub fn addr(&self) -> &str {
        self.api.addr()
    }

    pub async fn model(&self) -> Result<codis_core::models::Topom> {
        self.api.get("/api/topom/model", "describe itself").await
    }

    /// Derives the xauth from the dashboard's product and `--auth`, and checks it.
    ///
    /// A Codis 3.2 dashboard derives its xauth from the product name alone; when the
    /// password-bound xauth is refused, that one is tried before giving up (a codis-rs
    /// dashboard with a password refuses it, so nothing is weakened).
    pub async fn login(&mut self) -> Result<&str> {
        if self.xauth.is_none() {
            let model = self.model().await?;
            let what = format!("accept credentials for product {:?}", model.product_name);
            let xauth = dashboard_xauth(&model.product_name, &self.auth);
            let xauth = match self.xping(&xauth, &what).await {
                Ok(()) => xauth,
                Err(e) if !self.auth.is_empty() => {
                    let codis = codis_core::auth::new_xauth(&[&model.product_name]);
                    self.xping(&codis, &what).await.map_err(|_| e)?;
                    codis
                }
                Err(e) => return Err(e),
            };
            self.xauth = Some(xauth);
        }
        Ok(self.xauth.as_deref().expect("set above"))
    }

    async fn xping(&self, xauth: &str, what: &str) -> Result<()> {
        self.api.get::<Value>(&format!("/api/topom/xping/{xauth}"), what).await.map(drop)
    }

    pub async fn overview(&self) -> Result<Value> {
        self.api.get("/topom", "give its overview").await
    }

    pub async fn stats_json(&self) -> Result<Value> {
        self.api.get("/topom/stats", "give its stats").await
    }

    pub async fn stats(&self) -> Result<(Value, Stats)> {
        let raw = self.stats_json().await?;
        let typed = self.parse(&raw, "give its stats")?;
        Ok((raw, typed))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, v: &Value, what: &str) -> Result<T> {
        serde_json::from_value(v.clone()).map_err(|e| Error::Protocol {
            role: "dashboard",
            addr: self.addr().to_string(),
            what: what.to_string(),
            cause: format!("unexpected JSON ({e})"),
        })
    }

    /// PUT `/api/topom/<route with {xauth}>`.
    pub async fn put(&mut self, route: &str, body: Option<Vec<u8>>, what: &str) -> Result<Value> {
        let xauth = self.login().await?.to_string();
        let path = format!("/api/topom/{}", route.replace("{xauth}", &xauth));
        self.api.put(&path, body, what).await
    }
}

/// Output of a change: a confirmation line, or the dashboard's raw answer with --json.
fn done(out: &mut dyn Write, cli: &Cli, answer: &Value, message: &str) -> Result<()> {
    if cli.json {
        print_json(out, answer)
    } else {
        writeln!(out, "{message}")?;
        Ok(())
    }
}

pub fn print_json(out: &mut dyn Write, v: &Value) -> Result<()> {
    let text = codis_core::json::to_string_pretty(v).map_err(|e| Error::usage(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn check_slot(sid: i64, flag: &str) -> Result<()> {
    if (0..MAX_SLOT_NUM as i64).contains(&sid) {
        Ok(())
    } else {
        Err(Error::usage(format!("{flag}={sid} is not a slot: use 0..{}", MAX_SLOT_NUM - 1)))
    }
}

fn slot_range(cli: &Cli, action: &str) -> Result<(i64, i64)> {
    let beg = need(&cli.beg, "--beg=ID", action)?;
    let end = need(&cli.end, "--end=ID", action)?;
    check_slot(beg, "--beg")?;
    check_slot(end, "--end")?;
    if beg > end {
        return Err(Error::usage(format!("--beg={beg} is after --end={end}: the range is empty")));
    }
    Ok((beg, end))
}

fn log_level(level: &str) -> Result<&'static str> {
    match level.to_ascii_lowercase().as_str() {
        "none" => Ok("NONE"),
        "error" => Ok("ERROR"),
        "warn" | "warning" => Ok("WARN"),
        "info" => Ok("INFO"),
        "debug" => Ok("DEBUG"),
        _ => Err(Error::usage(format!("--log-level={level}: use none, error, warn, info or debug"))),
    }
}

fn flag_value(v: &str, flag: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::usage(format!("{flag}={v}: use 1 (yes) or 0 (no)"))),
    }
}

pub async fn run(cli: &Cli, addr: &str, out: &mut dyn Write) -> Result<()> {
    let mut d = Dashboard::new(addr, cli.auth.as_deref().unwrap_or(""), cli.verbose)?;
    let addr = d.addr().to_string();

    if cli.shutdown {
        let r = d.put("shutdown/{xauth}", None, "shut down").await?;
        return done(out, cli, &r, &format!("the dashboard at {addr} is shutting down (its product lock is released)"));
    }
    if cli.reload {
        let r = d.put("reload/{xauth}", None, "reload its state").await?;
        return done(out, cli, &r, &format!("the dashboard at {addr} reloaded its state from the coordinator"));
    }
    if let Some(level) = &cli.log_level {
        let level = log_level(level)?;
        let r = d.put(&format!("loglevel/{{xauth}}/{level}"), None, "set the log level").await?;
        return done(out, cli, &r, &format!("log level of the dashboard at {addr} set to {level}"));
    }
    if cli.slots_assign {
        return slots_assign(cli, &mut d, out).await;
    }
    if cli.slots_status {
        if cli.json {
            let v: Value = d.api.get("/topom/slots", "list its slots").await?;
            return print_json(out, &v);
        }
        let (_, s) = d.stats().await?;
        write!(out, "{}", render::slots_status(&s))?;
        return Ok(());
    }
    if cli.list_proxy || cli.proxy_status || cli.list_group || cli.group_status {
        let (raw, s) = d.stats().await?;
        if cli.json {
            let part = match () {
                _ if cli.list_proxy => &raw["proxy"]["models"],
                _ if cli.proxy_status => &raw["proxy"],
                _ if cli.list_group => &raw["group"]["models"],
                _ => &raw["group"],
            };
            return print_json(out, part);
        }
        let text = match () {
            _ if cli.list_proxy => render::proxy_list(&s),
            _ if cli.proxy_status => render::proxy_status(&s),
            _ if cli.list_group => render::group_list(&s),
            _ => render::group_status(&s),
        };
        write!(out, "{text}")?;
        return Ok(());
    }
    if cli.create_proxy || cli.online_proxy {
        let (flag, route, what) = if cli.create_proxy {
            ("--create-proxy", "proxy/create", "create the proxy")
        } else {
            ("--online-proxy", "proxy/online", "bring the proxy online")
        };
        let proxy = need(&cli.addr, "--addr=ADMIN_ADDR (the proxy's admin address)", flag)?;
        let r = d.put(&format!("{route}/{{xauth}}/{}", seg(&proxy)), None, &format!("{what} at {proxy}")).await?;
        let message = if cli.create_proxy {
            format!("registered the proxy at {proxy}; it has the routing and is online")
        } else {
            format!("the proxy at {proxy} is registered and online")
        };
        return done(out, cli, &r, &message);
    }
    if cli.remove_proxy || cli.reinit_proxy {
        return proxies(cli, &mut d, out).await;
    }
    if cli.create_group || cli.remove_group {
        let flag = if cli.create_group { "--create-group" } else { "--remove-group" };
        let gid = need(&cli.gid, "--gid=ID", flag)?;
        let (route, verb) = if cli.create_group { ("create", "create") } else { ("remove", "remove") };
        let r = d.put(&format!("group/{route}/{{xauth}}/{gid}"), None, &format!("{verb} group-{gid}")).await?;
        return done(out, cli, &r, &format!("{verb}d group-{gid}"));
    }
    if cli.resync_group {
        if cli.all {
            let r = d.put("group/resync-all/{xauth}", None, "resync all groups").await?;
            return done(out, cli, &r, "pushed the routing of every group to every proxy");
        }
        let gid = need(&cli.gid, "--gid=ID or --all", "--resync-group")?;
        let r = d.put(&format!("group/resync/{{xauth}}/{gid}"), None, &format!("resync group-{gid}")).await?;
        return done(out, cli, &r, &format!("pushed the routing of group-{gid} to every proxy"));
    }
    if cli.group_add || cli.group_del {
        let flag = if cli.group_add { "--group-add" } else { "--group-del" };
        let gid = need(&cli.gid, "--gid=ID", flag)?;
        let server = need(&cli.addr, "--addr=ADDR (the redis server)", flag)?;
        if cli.group_add {
            let mut route = format!("group/add/{{xauth}}/{gid}/{}", seg(&server));
            if let Some(dc) = cli.datacenter.as_deref().filter(|dc| !dc.is_empty()) {
                route.push('/');
                route.push_str(&seg(dc));
            }
            let r = d.put(&route, None, &format!("add {server} to group-{gid}")).await?;
            return done(out, cli, &r, &format!("added {server} to group-{gid}"));
        }
        let route = format!("group/del/{{xauth}}/{gid}/{}", seg(&server));
        let r = d.put(&route, None, &format!("remove {server} from group-{gid}")).await?;
        return done(out, cli, &r, &format!("removed {server} from group-{gid}"));
    }
    if cli.replica_groups {
        let gid = need(&cli.gid, "--gid=ID", "--replica-groups")?;
        let server = need(&cli.addr, "--addr=ADDR", "--replica-groups")?;
        if cli.enable == cli.disable {
            return Err(Error::usage("--replica-groups needs --enable or --disable"));
        }
        let v = u8::from(cli.enable);
        let route = format!("group/replica-groups/{{xauth}}/{gid}/{}/{v}", seg(&server));
        let verb = if cli.enable { "enable" } else { "disable" };
        let r = d.put(&route, None, &format!("{verb} reads from {server} in group-{gid}")).await?;
        return done(
            out,
            cli,
            &r,
            &format!("{verb}d reads from {server} in group-{gid}; run --resync-group --gid={gid} to tell the proxies"),
        );
    }
    if cli.promote_server {
        let gid = need(&cli.gid, "--gid=ID", "--promote-server")?;
        let server = need(&cli.addr, "--addr=ADDR", "--promote-server")?;
        let route = format!("group/promote/{{xauth}}/{gid}/{}", seg(&server));
        let r = d.put(&route, None, &format!("promote {server} in group-{gid}")).await?;
        return done(out, cli, &r, &format!("promoted {server} to master of group-{gid}"));
    }
    if cli.sync_action {
        let server = need(&cli.addr, "--addr=ADDR", "--sync-action")?;
        let (route, what, message) = match (cli.create, cli.remove) {
            (true, false) => ("create", "queue a replica sync", format!("queued a replica sync of {server}")),
            (false, true) => ("remove", "remove the sync action", format!("removed the sync action of {server}")),
            _ => return Err(Error::usage("--sync-action needs --create or --remove")),
        };
        let r = d
            .put(&format!("group/action/{route}/{{xauth}}/{}", seg(&server)), None, &format!("{what} of {server}"))
            .await?;
        return done(out, cli, &r, &message);
    }
    if cli.slot_action {
        return slot_action(cli, &mut d, out).await;
    }
    if cli.rebalance {
        return rebalance(cli, &mut d, out).await;
    }
    if cli.sentinel_add || cli.sentinel_del {
        let flag = if cli.sentinel_add { "--sentinel-add" } else { "--sentinel-del" };
        let sentinel = need(&cli.addr, "--addr=ADDR (the sentinel)", flag)?;
        if cli.sentinel_add {
            let r = d
                .put(&format!("sentinels/add/{{xauth}}/{}", seg(&sentinel)), None, &format!("add sentinel {sentinel}"))
                .await?;
            return done(
                out,
                cli,
                &r,
                &format!("added sentinel {sentinel}; run --sentinel-resync to make it monitor the groups"),
            );
        }
        let route = format!("sentinels/del/{{xauth}}/{}/{}", seg(&sentinel), u8::from(cli.force));
        let r = d.put(&route, None, &format!("remove sentinel {sentinel}")).await?;
        return done(out, cli, &r, &format!("removed sentinel {sentinel}"));
    }
    if cli.sentinel_resync {
        let r = d.put("sentinels/resync-all/{xauth}", None, "resync the sentinels").await?;
        return done(out, cli, &r, "every sentinel monitors the groups again");
    }
    overview(cli, &d, out).await
}

async fn overview(cli: &Cli, d: &Dashboard, out: &mut dyn Write) -> Result<()> {
    let raw = d.overview().await?;
    let o: DashboardOverview = d.parse(&raw, "give its overview")?;
    if cli.json {
        let part = match cli.view {
            None => &raw,
            Some(View::Config) => &raw["config"],
            Some(View::Model) => &raw["model"],
            Some(View::Stats) => &raw["stats"],
            Some(View::Slots) => &raw["stats"]["slots"],
            Some(View::Group) => &raw["stats"]["group"],
            Some(View::Proxy) => &raw["stats"]["proxy"],
        };
        return print_json(out, part);
    }
    let text = match cli.view {
        None => render::dashboard_overview(d.addr(), &o),
        Some(View::Config) => render::key_values(&raw["config"]),
        Some(View::Model) => render::key_values(&raw["model"]),
        Some(View::Stats) => format!(
            "{}\n{}\n{}",
            render::slots_status(&o.stats),
            render::group_status(&o.stats),
            render::proxy_status(&o.stats)
        ),
        Some(View::Slots) => render::slots_status(&o.stats),
        Some(View::Group) => render::group_status(&o.stats),
        Some(View::Proxy) => render::proxy_status(&o.stats),
    };
    write!(out, "{text}")?;
    Ok(())
}

async fn slots_assign(cli: &Cli, d: &mut Dashboard, out: &mut dyn Write) -> Result<()> {
    let (beg, end) = slot_range(cli, "--slots-assign")?;
    let gid = match (cli.gid, cli.offline) {
        (Some(g), false) if g > 0 => g,
        (Some(g), false) => {
            return Err(Error::usage(format!("--gid={g} is not a group: use --offline to take slots offline")));
        }
        (None, true) => 0,
        _ => return Err(Error::usage("--slots-assign needs --gid=ID or --offline")),
    };
    let mappings: Vec<SlotMapping> =
        (beg..=end).map(|id| SlotMapping { id, group_id: gid, ..Default::default() }).collect();
    let target = if gid == 0 { "offline".to_string() } else { format!("group-{gid}") };
    if !cli.confirm {
        if cli.json {
            print_json(out, &serde_json::to_value(&mappings).expect("mappings are JSON"))?;
        } else {
            let (_, s) = d.stats().await?;
            let plan: BTreeMap<i64, i64> = (beg..=end)
                .filter(|&sid| s.slots.get(sid as usize).is_none_or(|m| m.group_id != gid))
                .map(|sid| (sid, gid))
                .collect();
            if plan.is_empty() {
                writeln!(out, "slots {} already belong to {target}", render::slot_span(beg, end))?;
                return Ok(());
            }
            writeln!(
                out,
                "would assign {} slots to {target} (keys stay where they are: to move data use --slot-action --create-range):",
                plan.len()
            )?;
            write!(out, "{}", render::move_plan(&s, &plan))?;
        }
        return Err(Error::NotConfirmed("add --confirm to assign these slots".into()));
    }
    let body = serde_json::to_vec(&mappings).expect("mappings are JSON");
    let (route, what) = if gid == 0 {
        ("slots/assign/{xauth}/offline", format!("take slots {} offline", render::slot_span(beg, end)))
    } else {
        ("slots/assign/{xauth}", format!("assign slots {} to group-{gid}", render::slot_span(beg, end)))
    };
    let r = d.put(route, Some(body), &what).await?;
    done(out, cli, &r, &format!("assigned slots {} to {target}", render::slot_span(beg, end)))
}

/// The proxies selected by --addr, --token or --pid: (token, description).
async fn select_proxies(cli: &Cli, d: &Dashboard, flag: &str) -> Result<Vec<(String, String)>> {
    let (_, s) = d.stats().await?;
    let describe = |p: &codis_core::models::Proxy| format!("proxy-{} {} (admin {})", p.id, p.token, p.admin_addr);
    let found: Vec<(String, String)> = if let Some(t) = &cli.token {
        match s.proxy.models.iter().find(|p| &p.token == t) {
            Some(p) => vec![(p.token.clone(), describe(p))],
            None => vec![(t.clone(), format!("proxy {t}"))], // let the dashboard say what it knows
        }
    } else if let Some(pid) = cli.pid {
        s.proxy.models.iter().filter(|p| p.id == pid).map(|p| (p.token.clone(), describe(p))).collect()
    } else if let Some(a) = &cli.addr {
        s.proxy
            .models
            .iter()
            .filter(|p| &p.admin_addr == a || &p.proxy_addr == a)
            .map(|p| (p.token.clone(), describe(p)))
            .collect()
    } else if cli.all && cli.reinit_proxy {
        s.proxy.models.iter().map(|p| (p.token.clone(), describe(p))).collect()
    } else {
        let all = if cli.reinit_proxy { ", --pid=ID or --all" } else { " or --pid=ID" };
        return Err(Error::usage(format!("{flag} needs --addr=ADDR, --token=TOKEN{all}")));
    };
    Ok(found)
}

async fn proxies(cli: &Cli, d: &mut Dashboard, out: &mut dyn Write) -> Result<()> {
    let flag = if cli.remove_proxy { "--remove-proxy" } else { "--reinit-proxy" };
    let targets = select_proxies(cli, d, flag).await?;
    if targets.is_empty() {
        let which = match (&cli.addr, cli.pid) {
            (Some(a), _) => format!("with address {a}"),
            (None, Some(p)) => format!("with id {p}"),
            _ => "at all".to_string(),
        };
        if cli.force || cli.all {
            writeln!(out, "no proxy {which}; nothing to do")?;
            return Ok(());
        }
        return Err(Error::usage(format!("the dashboard at {} has no proxy {which} (see --list-proxy)", d.addr())));
    }
    let mut answers = Vec::new();
    for (token, desc) in targets {
        let r = if cli.remove_proxy {
            let route = format!("proxy/remove/{{xauth}}/{}/{}", seg(&token), u8::from(cli.force));
            d.put(&route, None, &format!("remove {desc}")).await?
        } else {
            d.put(&format!("proxy/reinit/{{xauth}}/{}", seg(&token)), None, &format!("reinit {desc}")).await?
        };
        if !cli.json {
            let verb = if cli.remove_proxy { "removed" } else { "reinitialised" };
            writeln!(out, "{verb} {desc}")?;
        }
        answers.push(r);
    }
    if cli.json {
        print_json(out, &Value::Array(answers))?;
    }
    Ok(())
}

async fn slot_action(cli: &Cli, d: &mut Dashboard, out: &mut dyn Write) -> Result<()> {
    let chosen =
        [cli.create, cli.remove, cli.create_some, cli.create_range, cli.interval.is_some(), cli.disabled.is_some()]
            .iter()
            .filter(|&&b| b)
            .count();
    if chosen != 1 {
        return Err(Error::usage(
            "--slot-action needs exactly one of --create, --remove, --create-some, --create-range, --interval=US, --disabled=0|1",
        ));
    }
    if cli.create {
        let sid = need(&cli.sid, "--sid=ID", "--slot-action --create")?;
        let gid = need(&cli.gid, "--gid=ID", "--slot-action --create")?;
        check_slot(sid, "--sid")?;
        let r = d
            .put(
                &format!("slots/action/create/{{xauth}}/{sid}/{gid}"),
                None,
                &format!("migrate slot {sid} to group-{gid}"),
            )
            .await?;
        return done(
            out,
            cli,
            &r,
            &format!("queued the migration of slot {sid:04} to group-{gid} (see --slots-status)"),
        );
    }
    if cli.remove {
        let sid = need(&cli.sid, "--sid=ID", "--slot-action --remove")?;
        check_slot(sid, "--sid")?;
        let r = d
            .put(&format!("slots/action/remove/{{xauth}}/{sid}"), None, &format!("cancel the migration of slot {sid}"))
            .await?;
        return done(out, cli, &r, &format!("cancelled the pending migration of slot {sid:04}"));
    }
    if cli.create_some {
        let from = need(&cli.gid_from, "--gid-from=ID", "--slot-action --create-some")?;
        let to = need(&cli.gid_to, "--gid-to=ID", "--slot-action --create-some")?;
        let num = need(&cli.num_slots, "--num-slots=N", "--slot-action --create-some")?;
        if num <= 0 {
            return Err(Error::usage(format!("--num-slots={num}: use a positive number")));
        }
        let queued = |s: &Stats| s.slots.iter().filter(|m| m.group_id == from && m.action.target_id == to).count();
        let before = queued(&d.stats().await?.1);
        let route = format!("slots/action/create-some/{{xauth}}/{from}/{to}/{num}");
        let r = d.put(&route, None, &format!("migrate {num} slots from group-{from} to group-{to}")).await?;
        let after = queued(&d.stats().await?.1);
        let n = after.saturating_sub(before);
        return done(
            out,
            cli,
            &r,
            &format!("queued {n} slots of group-{from} to move to group-{to} (see --slots-status)"),
        );
    }
    if cli.create_range {
        let (beg, end) = slot_range(cli, "--slot-action --create-range")?;
        let gid = need(&cli.gid, "--gid=ID", "--slot-action --create-range")?;
        let route = format!("slots/action/create-range/{{xauth}}/{beg}/{end}/{gid}");
        let span = render::slot_span(beg, end);
        let r = d.put(&route, None, &format!("migrate slots {span} to group-{gid}")).await?;
        let (_, s) = d.stats().await?;
        let range = &s.slots[(beg as usize).min(s.slots.len())..((end + 1) as usize).min(s.slots.len())];
        let moving = range.iter().filter(|m| m.action.target_id == gid).count();
        let there = range.iter().filter(|m| m.group_id == gid && m.action.state.is_empty()).count();
        return done(
            out,
            cli,
            &r,
            &format!(
                "{moving} slots of {span} are queued to move to group-{gid}, {there} are there already (see --slots-status)"
            ),
        );
    }
    if let Some(us) = cli.interval {
        if !(0..=1_000_000).contains(&us) {
            return Err(Error::usage(format!("--interval={us}: use 0..1000000 microseconds")));
        }
        let r = d.put(&format!("slots/action/interval/{{xauth}}/{us}"), None, "set the migration interval").await?;
        return done(out, cli, &r, &format!("migrations pause {us}us between steps"));
    }
    let v = flag_value(cli.disabled.as_deref().unwrap_or_default(), "--disabled")?;
    let r =
        d.put(&format!("slots/action/disabled/{{xauth}}/{}", u8::from(v)), None, "pause or resume migrations").await?;
    let message = if v { "migrations paused (--slot-action --disabled=0 resumes them)" } else { "migrations resumed" };
    done(out, cli, &r, message)
}

async fn rebalance(cli: &Cli, d: &mut Dashboard, out: &mut dyn Write) -> Result<()> {
    let (_, before) = d.stats().await?;
    let r = d.put(&format!("slots/rebalance/{{xauth}}/{}", u8::from(cli.confirm)), None, "plan a rebalance").await?;
    let plan: BTreeMap<i64, i64> = serde_json::from_value::<BTreeMap<String, i64>>(r.clone())
        .ok()
        .and_then(|m| m.into_iter().map(|(k, v)| k.parse::<i64>().ok().map(|k| (k, v))).collect())
        .ok_or_else(|| Error::Protocol {
            role: "dashboard",
            addr: d.addr().to_string(),
            what: "plan a rebalance".into(),
            cause: format!("expected {{\"slot\": group}}, got {}", crate::error::one_line(&r.to_string())),
        })?;
    if cli.json {
        print_json(out, &r)?;
    } else if plan.is_empty() {
        writeln!(out, "the slots are balanced already; nothing to move")?;
    } else {
        let verb = if cli.confirm { "queued" } else { "would queue" };
        writeln!(out, "{verb} {} slot migrations:", plan.len())?;
        write!(out, "{}", render::move_plan(&before, &plan))?;
    }
    if !cli.confirm && !plan.is_empty() {
        return Err(Error::NotConfirmed("add --confirm to start these migrations".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(log_level("Warning").unwrap(), "WARN");
        assert!(log_level("loud").is_err());
        assert!(flag_value("1", "--disabled").unwrap());
        assert!(!flag_value("false", "--disabled").unwrap());
        assert!(flag_value("2", "--disabled").is_err());
        assert!(check_slot(1024, "--sid").is_err());
        assert!(check_slot(0, "--sid").is_ok());
    }
}
