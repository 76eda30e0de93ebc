//! Key → slot hashing, exactly as Codis and codis-server compute it.

/// Number of slots; fixed by the Codis data model.
pub const MAX_SLOT_NUM: usize = 1024;

/// The part of `key` that decides its slot.
///
/// The tag is the bytes between the first `{` and the first `}` after it. Unlike Redis
/// Cluster, an empty tag (`a{}b`) *is* a tag: it hashes the empty string (slot 0).
/// Without a complete tag the whole key is hashed.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// `crc32_ieee(hash_tag(key)) % 1024`.
pub fn slot_of(key: &[u8]) -> u16 {
    (crc32fast::hash(hash_tag(key)) % MAX_SLOT_NUM as u32) as u16
}

/// `crc32_ieee(hash_tag(key))`, the value `slot_of` reduces. codis-server moves a tag
/// group as "every tagged key with this crc", so the module needs the full value.
pub fn tag_crc(key: &[u8]) -> u32 {
    crc32fast::hash(hash_tag(key))
}

/// Whether `key` contains a complete `{tag}` (possibly empty).
pub fn has_tag(key: &[u8]) -> bool {
    hash_tag(key).len() != key.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_codis_server_slotshashkey() {
        // SLOTSHASHKEY foo bar {user1000}.following user1000 a{}b {} x{ x{y on codis-server 3.2
        let keys: [&[u8]; 8] = [
            b"foo",
            b"bar",
            b"{user1000}.following",
            b"user1000",
            b"a{}b",
            b"{}",
            b"x{",
            b"x{y",
        ];
        let slots: Vec<u16> = keys.iter().map(|k| slot_of(k)).collect();
        assert_eq!(slots, vec![289, 170, 870, 870, 0, 0, 437, 351]);
    }

    #[test]
    fn tag_crc_reduces_to_slot() {
        for k in [&b"foo"[..], b"{user1000}.following", b"a{}b", b"x{"] {
            assert_eq!((tag_crc(k) % MAX_SLOT_NUM as u32) as u16, slot_of(k));
        }
        assert!(has_tag(b"a{}b") && has_tag(b"{x}") && !has_tag(b"x{") && !has_tag(b"plain"));
    }

    #[test]
    fn tags() {
        assert_eq!(hash_tag(b"a{b}c{d}"), b"b");
        assert_eq!(hash_tag(b"}{x}"), b"x");
        assert_eq!(hash_tag(b"{{x}}"), b"{x");
        assert_eq!(hash_tag(b"nokey"), b"nokey");
        assert_eq!(hash_tag(b""), b"");
    }
}
