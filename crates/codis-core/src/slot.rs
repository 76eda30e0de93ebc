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
    (crc32(hash_tag(key)) % MAX_SLOT_NUM as u32) as u16
}

/// CRC-32/IEEE. Keys are short, and for short inputs a table walk beats the SIMD
/// path's set-up (feature detection and folding); long inputs use the SIMD path.
fn crc32(data: &[u8]) -> u32 {
    if data.len() >= 64 {
        return crc32fast::hash(data);
    }
    let mut crc = !0u32;
    for &b in data {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_codis_server_slotshashkey() {
        // SLOTSHASHKEY foo bar {user1000}.following user1000 a{}b {} x{ x{y on codis-server 3.2
        let keys: [&[u8]; 8] = [b"foo", b"bar", b"{user1000}.following", b"user1000", b"a{}b", b"{}", b"x{", b"x{y"];
        let slots: Vec<u16> = keys.iter().map(|k| slot_of(k)).collect();
        assert_eq!(slots, vec![289, 170, 870, 870, 0, 0, 437, 351]);
    }

    #[test]
    fn table_crc_matches_simd_crc() {
        let mut data = Vec::new();
        for i in 0..200u32 {
            data.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
            assert_eq!(crc32(&data), crc32fast::hash(&data), "length {}", data.len());
        }
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
