//! `--proxy=ADDR ...`: a proxy's overview and its admin actions.
//!
//! Views use the open `/proxy` routes. Actions authenticate as Codis does: the
//! proxy's model gives its product and token, and the xauth is
//! `xauth(product, --auth, token)`, checked with `xping` first.

use std::io::Write;

use codis_core::MAX_SLOT_NUM;
use codis_core::auth::new_xauth;
use codis_core::models::Slot;
use serde_json::Value;

use crate::cli::{Cli, View};
use crate::dashboard::print_json;
use crate::error::{Error, Result};
use crate::http::Api;
use crate::render;
use crate::view::{ProxyCounters, ProxyOverview};

struct Proxy {
    api: Api,
    auth: String,
}

impl Proxy {
    async fn login(&self) -> Result<String> {
        let model: codis_core::models::Proxy = self.api.get("/api/proxy/model", "describe itself").await?;
        let xauth = new_xauth(&[&model.product_name, &self.auth, &model.token]);
        self.api
            .get::<Value>(
                &format!("/api/proxy/xping/{xauth}"),
                &format!("accept credentials for product {:?}", model.product_name),
            )
            .await?;
        Ok(xauth)
    }

    async fn put(&self, route: &str, body: Option<Vec<u8>>, what: &str) -> Result<Value> {
        let xauth = self.login().await?;
        self.api.put(&format!("/api/proxy/{}", route.replace("{xauth}", &xauth)), body, what).await
    }
}

fn read_slots(path: &std::path::Path, locked: bool) -> Result<Vec<Slot>> {
    let file = |cause: String| Error::File { path: path.display().to_string(), cause };
    let text = std::fs::read(path).map_err(|e| file(format!("cannot read it: {e}")))?;
    let mut slots: Vec<Slot> = serde_json::from_slice(&text).map_err(|e| {
        file(format!("not a JSON array of slots ({e}); expected [{{\"id\":0,\"backend_addr\":\"host:port\"}}, ...]"))
    })?;
    for s in &mut slots {
        if !(0..MAX_SLOT_NUM as i64).contains(&s.id) {
            return Err(file(format!("slot id {} is out of range 0..{}", s.id, MAX_SLOT_NUM - 1)));
        }
        if locked {
            s.locked = true;
        }
    }
    Ok(slots)
}

pub async fn run(cli: &Cli, addr: &str, out: &mut dyn Write) -> Result<()> {
    let p = Proxy { api: Api::new("proxy", addr, cli.verbose)?, auth: cli.auth.clone().unwrap_or_default() };
    let addr = p.api.addr().to_string();
    let done = |out: &mut dyn Write, r: &Value, message: &str| -> Result<()> {
        if cli.json {
            print_json(out, r)
        } else {
            writeln!(out, "{message}")?;
            Ok(())
        }
    };
    if cli.reload || cli.view == Some(View::Group) || cli.view == Some(View::Proxy) {
        return Err(Error::usage("this works with --dashboard, not --proxy"));
    }
    if cli.start {
        let r = p.put("start/{xauth}", None, "start").await?;
        return done(out, &r, &format!("the proxy at {addr} is online"));
    }
    if cli.shutdown {
        let r = p.put("shutdown/{xauth}", None, "shut down").await?;
        return done(out, &r, &format!("the proxy at {addr} is shutting down"));
    }
    if let Some(level) = &cli.log_level {
        let level = match level.to_ascii_lowercase().as_str() {
            "none" => "NONE",
            "error" => "ERROR",
            "warn" | "warning" => "WARN",
            "info" => "INFO",
            "debug" => "DEBUG",
            _ => return Err(Error::usage(format!("--log-level={level}: use none, error, warn, info or debug"))),
        };
        let r = p.put(&format!("loglevel/{{xauth}}/{level}"), None, "set the log level").await?;
        return done(out, &r, &format!("log level of the proxy at {addr} set to {level}"));
    }
    if let Some(path) = &cli.fillslots {
        let slots = read_slots(path, cli.locked)?;
        let body = serde_json::to_vec(&slots).expect("slots are JSON");
        let r = p.put("fillslots/{xauth}", Some(body), "fill slots").await?;
        let locked = if cli.locked { " (locked: requests for them wait until they are filled again)" } else { "" };
        return done(out, &r, &format!("filled {} slots of the proxy at {addr}{locked}", slots.len()));
    }
    if cli.reset_stats {
        let r = p.put("stats/reset/{xauth}", None, "reset its stats").await?;
        return done(out, &r, &format!("reset the counters of the proxy at {addr}"));
    }
    if cli.forcegc {
        let r = p.put("forcegc/{xauth}", None, "run forcegc").await?;
        return done(out, &r, &format!("sent forcegc to the proxy at {addr}"));
    }

    let raw: Value = p.api.get("/proxy", "give its overview").await?;
    if cli.json {
        let part = match cli.view {
            Some(View::Config) => &raw["config"],
            Some(View::Model) => &raw["model"],
            Some(View::Stats) => &raw["stats"],
            Some(View::Slots) => &raw["slots"],
            _ => &raw,
        };
        // A proxy with no slots filled leaves "slots" out of its overview.
        let empty = Value::Array(vec![]);
        return print_json(out, if part.is_null() && cli.view == Some(View::Slots) { &empty } else { part });
    }
    let o: ProxyOverview = serde_json::from_value(raw.clone()).map_err(|e| Error::Protocol {
        role: "proxy",
        addr: addr.clone(),
        what: "give its overview".into(),
        cause: format!("unexpected JSON ({e})"),
    })?;
    let text = match cli.view {
        Some(View::Config) => render::key_values(&raw["config"]),
        Some(View::Model) => render::key_values(&raw["model"]),
        Some(View::Stats) => {
            let c: ProxyCounters = serde_json::from_value(raw["stats"].clone()).unwrap_or_default();
            let state = if c.closed {
                "closed"
            } else if c.online {
                "online"
            } else {
                "offline (not started)"
            };
            format!("state      {state}\n{}", render::proxy_counters(&c))
        }
        Some(View::Slots) if o.slots.is_empty() => "no slots filled yet\n".to_string(),
        Some(View::Slots) => render::proxy_slots(&o.slots),
        _ => render::proxy_overview(&addr, &o),
    };
    write!(out, "{text}")?;
    Ok(())
}
