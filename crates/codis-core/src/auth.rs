//! Tokens and xauth strings, derived as Codis derives them so that a Codis dashboard and
//! a codis-rs proxy (or the reverse) accept each other's admin calls.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// Identity of a proxy or dashboard: `md5("Codis-Token@[<sorted MACs>]-{seg}-{seg}...")`.
pub fn new_token(segs: &[&str]) -> String {
    token_with_macs(&hardware_addrs(), segs)
}

fn token_with_macs(macs: &[String], segs: &[&str]) -> String {
    let mut text = format!("Codis-Token@[{}]", macs.join(" "));
    for s in segs {
        text.push_str(&format!("-{{{s}}}"));
    }
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Admin-call credential: hex of the first 16 bytes of
/// `sha256("Codis-XAuth-[seg]-[seg]...")`. A proxy uses (product, product_auth, token).
pub fn new_xauth(segs: &[&str]) -> String {
    let mut text = String::from("Codis-XAuth");
    for s in segs {
        text.push_str(&format!("-[{s}]"));
    }
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// The xauth a dashboard's mutating API requires: Codis's (from the product name only)
/// when the product has no password, else one that needs the password as well (Codis's
/// dashboard xauth can be computed by anyone who knows the product name).
pub fn dashboard_xauth(product: &str, product_auth: &str) -> String {
    if product_auth.is_empty() { new_xauth(&[product]) } else { new_xauth(&[product, product_auth]) }
}

/// MAC addresses of this host's interfaces, sorted, skipping all-zero ones (loopback),
/// as Go's `net.Interfaces` reports them.
fn hardware_addrs() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            if let Ok(addr) = std::fs::read_to_string(entry.path().join("address")) {
                let addr = addr.trim();
                if !addr.is_empty() && addr.chars().any(|c| c != '0' && c != ':') {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xauth_matches_codis() {
        // Reference values from `printf '%s' 'Codis-XAuth-[...]' | sha256sum | cut -c1-32`.
        assert_eq!(new_xauth(&["codis-demo", "", "t"]), "2e05b13b6f92502d23713634034e4423");
        assert_eq!(new_xauth(&["codis-demo"]), "95b62887719520f17e312eaa76d28f2b");
    }

    #[test]
    fn token_format() {
        let t = token_with_macs(&["aa:bb".into(), "cc:dd".into()], &["p", "0.0.0.0:19000"]);
        // md5sum of "Codis-Token@[aa:bb cc:dd]-{p}-{0.0.0.0:19000}"
        assert_eq!(t, "75eb20677223095e124958adcb55eb62");
        assert_eq!(new_token(&["x"]).len(), 32);
    }
}
