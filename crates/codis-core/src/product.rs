//! Product names: the namespace of one cluster in the coordinator and in xauth.

/// A product name that Codis would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid product name {0:?}: use letters, digits and '_', then also '.' or '-' (like \"codis-demo\")")]
pub struct ProductError(pub String);

/// Accepts names matching Codis's `^\w[\w\.\-]*$` (ASCII word characters).
pub fn validate_product(name: &str) -> Result<(), ProductError> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = name.as_bytes();
    let ok = !b.is_empty() && word(b[0]) && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok { Ok(()) } else { Err(ProductError(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["codis-demo", "a", "_x.y-z", "9"] {
            assert!(validate_product(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", "a{b}"] {
            assert!(validate_product(bad).is_err(), "{bad}");
        }
    }
}
