//! Commands on the coordinator itself: `--remove-lock`, `--config-dump`,
//! `--config-restore` and `--dashboard-list`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use codis_core::MAX_SLOT_NUM;
use codis_core::models::{Group, Proxy, Sentinel, SlotMapping, Topom};
use codis_store::{Coordinator, Store};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::error::{Error, Result};

/// What `--config-dump` prints and `--config-restore` reads: Codis's ConfigV3, plus the
/// sentinel list (Codis ignores the extra field).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<Group>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<Proxy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<Sentinel>,
}

async fn open(cli: &Cli) -> Result<Arc<dyn Coordinator>> {
    let (name, addr, auth) = cli
        .coordinator()
        .ok_or_else(|| Error::usage("name the coordinator: --filesystem=ROOT, --etcd=ADDR or --zookeeper=ADDR"))?;
    codis_store::connect(name, addr, auth, Duration::from_secs(60))
        .await
        .map(Arc::from)
        .map_err(|e| Error::store(format!("cannot open the {name} coordinator at {addr}"), e))
}

fn product(cli: &Cli) -> Result<String> {
    let p = cli.product.clone().ok_or_else(|| Error::usage("name the product with --product=NAME"))?;
    codis_core::validate_product(&p).map_err(|e| Error::usage(e.to_string()))?;
    Ok(p)
}

fn print_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<()> {
    let text = codis_core::json::to_string_pretty(v).map_err(|e| Error::usage(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

pub async fn run(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    if cli.config_convert.is_some() {
        return Err(Error::Unsupported(
            "--config-convert converts Codis 2.x configurations, which codis-rs does not support; migrate with \
             Codis 3.2's codis-admin first, then --config-dump/--config-restore"
                .into(),
        ));
    }
    if cli.v1 {
        return Err(Error::Unsupported(
            "--config-dump -1 reads Codis 2.x's layout, which codis-rs does not support; drop -1 to dump the 3.x layout"
                .into(),
        ));
    }
    let client = open(cli).await?;
    let r = if cli.remove_lock {
        remove_lock(cli, &client, out).await
    } else if cli.config_dump {
        config_dump(cli, &client, out).await
    } else if let Some(path) = &cli.config_restore {
        config_restore(cli, &client, path, out).await
    } else {
        dashboard_list(&client, out).await
    };
    client.close().await;
    r
}

/// Whether the dashboard that wrote `lock` still answers at its address (same token).
async fn holder_alive(lock: &Topom) -> bool {
    let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(3)).build() else { return false };
    let url = format!("http://{}/api/topom/model", lock.admin_addr);
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            r.json::<Topom>().await.is_ok_and(|t| t.token == lock.token && t.product_name == lock.product_name)
        }
        _ => false,
    }
}

async fn remove_lock(cli: &Cli, client: &Arc<dyn Coordinator>, out: &mut dyn Write) -> Result<()> {
    let product = product(cli)?;
    let store = Store::new(client.clone(), &product);
    let lock =
        store.topom().await.map_err(|e| Error::store(format!("cannot read the lock of product {product}"), e))?;
    let Some(lock) = lock else {
        writeln!(out, "product {product} has no dashboard lock; nothing to remove")?;
        return Ok(());
    };
    let holder = format!("the dashboard at {} (pid {}, started {})", lock.admin_addr, lock.pid, lock.start_time);
    if !cli.force && holder_alive(&lock).await {
        return Err(Error::usage(format!(
            "{holder} still holds product {product} and answers; stop it (codis-admin --dashboard={} --shutdown) \
             rather than removing its lock, or add --force",
            lock.admin_addr
        )));
    }
    store.release().await.map_err(|e| Error::store(format!("cannot remove the lock of product {product}"), e))?;
    writeln!(out, "removed the lock of product {product}, held by {holder}")?;
    Ok(())
}

async fn config_dump(cli: &Cli, client: &Arc<dyn Coordinator>, out: &mut dyn Write) -> Result<()> {
    let product = product(cli)?;
    let store = Store::new(client.clone(), &product);
    let read = |what: &str| format!("cannot read the {what} of product {product}");
    let groups = store.groups().await.map_err(|e| Error::store(read("groups"), e))?;
    let proxies = store.proxies().await.map_err(|e| Error::store(read("proxies"), e))?;
    if groups.is_empty() && proxies.is_empty() {
        return Err(Error::usage(format!(
            "product {product} has no groups or proxies in {} {}; check --product (see --dashboard-list)",
            client.name(),
            client.addr()
        )));
    }
    let slots = store.slot_mappings().await.map_err(|e| Error::store(read("slots"), e))?;
    let sentinel = store.sentinel().await.map_err(|e| Error::store(read("sentinels"), e))?;
    let mut proxy: Vec<Proxy> = proxies.into_values().collect();
    proxy.sort_by_key(|p| p.id);
    let config = Config {
        // Offline slots are what an empty product has; leaving them out keeps the dump
        // restorable by Codis too (its restore refuses slots of group 0).
        slots: slots.into_iter().filter(|m| m.group_id != 0 || !m.action.state.is_empty()).collect(),
        group: groups.into_values().collect(),
        proxy,
        sentinel: (!sentinel.servers.is_empty()).then_some(sentinel),
    };
    print_json(out, &config)
}

/// Checks a configuration as Codis does before restoring it.
fn validate(config: &Config) -> Result<()> {
    let bad = |msg: String| Err(Error::usage(format!("cannot restore: {msg}")));
    let mut tokens = BTreeSet::new();
    for p in &config.proxy {
        if !tokens.insert(p.token.as_str()) {
            return bad(format!("proxy-{} appears twice", p.token));
        }
    }
    let mut groups: BTreeMap<i64, &Group> = BTreeMap::new();
    let mut servers = BTreeSet::new();
    for g in &config.group {
        if !(1..=9999).contains(&g.id) {
            return bad(format!("group id {} is out of range 1..9999", g.id));
        }
        if groups.insert(g.id, g).is_some() {
            return bad(format!("group-{} appears twice", g.id));
        }
        if !g.promoting.state.is_empty() {
            return bad(format!(
                "group-{} is being promoted ({}); finish the promotion and dump again",
                g.id, g.promoting.state
            ));
        }
        for s in &g.servers {
            if !servers.insert(s.addr.as_str()) {
                return bad(format!("server {} appears twice", s.addr));
            }
        }
    }
    let mut slots = BTreeSet::new();
    for m in &config.slots {
        if !(0..MAX_SLOT_NUM as i64).contains(&m.id) {
            return bad(format!("slot id {} is out of range 0..{}", m.id, MAX_SLOT_NUM - 1));
        }
        if !slots.insert(m.id) {
            return bad(format!("slot-{:04} appears twice", m.id));
        }
        if !m.action.state.is_empty() {
            return bad(format!(
                "slot-{:04} has a migration action ({}); wait for migrations to finish and dump again",
                m.id, m.action.state
            ));
        }
        if m.group_id != 0 && groups.get(&m.group_id).is_none_or(|g| g.servers.is_empty()) {
            return bad(format!(
                "slot-{:04} belongs to group-{}, which is missing or has no servers",
                m.id, m.group_id
            ));
        }
    }
    Ok(())
}

async fn config_restore(
    cli: &Cli,
    client: &Arc<dyn Coordinator>,
    path: &std::path::Path,
    out: &mut dyn Write,
) -> Result<()> {
    let product = product(cli)?;
    let file = |cause: String| Error::File { path: path.display().to_string(), cause };
    let text = std::fs::read(path).map_err(|e| file(format!("cannot read it: {e}")))?;
    let config: Config = serde_json::from_slice(&text).map_err(|e| {
        file(format!("not a --config-dump file ({e}); expected {{\"slots\":[...],\"group\":[...],\"proxy\":[...]}}"))
    })?;
    validate(&config)?;

    let store = Store::new(client.clone(), &product);
    let read = |what: &str| format!("cannot read the {what} of product {product}");
    if let Some(lock) = store.topom().await.map_err(|e| Error::store(read("lock"), e))? {
        return Err(Error::usage(format!(
            "the dashboard at {} holds product {product}; stop it first (it would not see the restored state)",
            lock.admin_addr
        )));
    }
    let groups = store.groups().await.map_err(|e| Error::store(read("groups"), e))?;
    let proxies = store.proxies().await.map_err(|e| Error::store(read("proxies"), e))?;
    if !groups.is_empty() || !proxies.is_empty() {
        return Err(Error::usage(format!(
            "product {product} is not empty ({} groups, {} proxies); restore into a new product",
            groups.len(),
            proxies.len()
        )));
    }
    // Proxies belong to the product they were started for; another product's proxies
    // would fail every routing push. They register again with the new dashboard.
    let (keep, skip): (Vec<&Proxy>, Vec<&Proxy>) = config.proxy.iter().partition(|p| p.product_name == product);
    let assigned = config.slots.iter().filter(|m| m.group_id != 0).count();

    if !cli.confirm {
        if cli.json {
            print_json(out, &config)?;
        } else {
            writeln!(
                out,
                "would restore into product {product} ({} {}): {assigned} assigned slots, {} groups, {} proxies{}",
                client.name(),
                client.addr(),
                config.group.len(),
                keep.len(),
                if config.sentinel.is_some() { ", the sentinel list" } else { "" }
            )?;
            for p in &skip {
                writeln!(
                    out,
                    "would skip proxy-{} at {}: it serves product {:?} (start proxies for {product} and register them)",
                    p.id, p.admin_addr, p.product_name
                )?;
            }
        }
        return Err(Error::NotConfirmed("add --confirm to restore".into()));
    }

    let write = |what: String| {
        let product = product.clone();
        move |e| Error::store(format!("cannot write {what} of product {product}"), e)
    };
    let existing = store.slot_mappings().await.map_err(|e| Error::store(read("slots"), e))?;
    let mut wanted: Vec<SlotMapping> =
        (0..MAX_SLOT_NUM as i64).map(|id| SlotMapping { id, ..Default::default() }).collect();
    for m in &config.slots {
        wanted[m.id as usize] = m.clone();
    }
    for (m, old) in wanted.iter().zip(&existing) {
        if m != old {
            store.update_slot_mapping(m).await.map_err(write(format!("slot-{:04}", m.id)))?;
        }
    }
    for g in &config.group {
        store.update_group(g).await.map_err(write(format!("group-{}", g.id)))?;
    }
    for p in &keep {
        store.update_proxy(p).await.map_err(write(format!("proxy-{}", p.token)))?;
    }
    if let Some(s) = &config.sentinel {
        store.update_sentinel(s).await.map_err(write("the sentinels".into()))?;
    }
    writeln!(
        out,
        "restored {assigned} assigned slots, {} groups and {} proxies into product {product}",
        config.group.len(),
        keep.len()
    )?;
    for p in &skip {
        writeln!(out, "skipped proxy-{} at {}: it serves product {:?}", p.id, p.admin_addr, p.product_name)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ListEntry {
    name: String,
    dashboard: String,
}

async fn dashboard_list(client: &Arc<dyn Coordinator>, out: &mut dyn Write) -> Result<()> {
    let names = Store::products(client.as_ref())
        .await
        .map_err(|e| Error::store(format!("cannot list the products in {} {}", client.name(), client.addr()), e))?;
    let mut list = Vec::new();
    for name in names {
        let store = Store::new(client.clone(), &name);
        let lock =
            store.topom().await.map_err(|e| Error::store(format!("cannot read the lock of product {name}"), e))?;
        list.push(ListEntry { dashboard: lock.map(|t| t.admin_addr).unwrap_or_default(), name });
    }
    print_json(out, &list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use codis_core::models::GroupServer;

    fn group(id: i64, addr: &str) -> Group {
        Group { id, servers: vec![GroupServer { addr: addr.into(), ..Default::default() }], ..Default::default() }
    }

    #[test]
    fn restores_are_checked() {
        let ok = Config {
            slots: vec![SlotMapping { id: 1, group_id: 1, ..Default::default() }],
            group: vec![group(1, "a:1")],
            ..Default::default()
        };
        validate(&ok).unwrap();
        let mut c = Config { group: vec![group(1, "a:1"), group(2, "a:1")], ..Default::default() };
        assert!(validate(&c).unwrap_err().to_string().contains("server a:1 appears twice"));
        c.group = vec![group(1, "a:1")];
        c.slots = vec![SlotMapping { id: 1, group_id: 3, ..Default::default() }];
        assert!(validate(&c).unwrap_err().to_string().contains("group-3, which is missing"));
        c.slots[0].group_id = 1;
        c.slots[0].action.state = "pending".into();
        assert!(validate(&c).unwrap_err().to_string().contains("migration action"));
        // offline slots (group 0), as Codis dumps them, are accepted
        c.slots = vec![SlotMapping { id: 0, ..Default::default() }];
        validate(&c).unwrap();
    }

    #[test]
    fn dump_layout_is_codis() {
        let c = Config { group: vec![group(1, "a:1")], ..Default::default() };
        let text = codis_core::json::to_string_pretty(&c).unwrap();
        assert!(text.starts_with("{\n    \"group\": [\n"), "{text}");
        assert!(!text.contains("\"slots\"") && !text.contains("\"sentinel\""));
    }
}
