//! Codis 3.2's coordinator paths.

/// Root of all products.
pub const CODIS_DIR: &str = "/codis3";

pub fn product_dir(product: &str) -> String {
    format!("{CODIS_DIR}/{product}")
}

/// The dashboard's node; its existence is the dashboard lock.
pub fn topom_path(product: &str) -> String {
    format!("{CODIS_DIR}/{product}/topom")
}

pub fn slots_dir(product: &str) -> String {
    format!("{CODIS_DIR}/{product}/slots")
}

pub fn slot_path(product: &str, sid: i64) -> String {
    format!("{CODIS_DIR}/{product}/slots/slot-{sid:04}")
}

pub fn group_dir(product: &str) -> String {
    format!("{CODIS_DIR}/{product}/group")
}

pub fn group_path(product: &str, gid: i64) -> String {
    format!("{CODIS_DIR}/{product}/group/group-{gid:04}")
}

pub fn proxy_dir(product: &str) -> String {
    format!("{CODIS_DIR}/{product}/proxy")
}

pub fn proxy_path(product: &str, token: &str) -> String {
    format!("{CODIS_DIR}/{product}/proxy/proxy-{token}")
}

pub fn sentinel_path(product: &str) -> String {
    format!("{CODIS_DIR}/{product}/sentinel")
}

/// Where a proxy registers for Jodis clients.
pub fn jodis_path(product: &str, token: &str) -> String {
    format!("/jodis/{product}/proxy-{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codis_layout() {
        assert_eq!(topom_path("codis-demo"), "/codis3/codis-demo/topom");
        assert_eq!(slot_path("p", 7), "/codis3/p/slots/slot-0007");
        assert_eq!(slot_path("p", 1023), "/codis3/p/slots/slot-1023");
        assert_eq!(group_path("p", 12), "/codis3/p/group/group-0012");
        assert_eq!(proxy_path("p", "abc"), "/codis3/p/proxy/proxy-abc");
        assert_eq!(sentinel_path("p"), "/codis3/p/sentinel");
        assert_eq!(jodis_path("p", "t"), "/jodis/p/proxy-t");
    }
}
