//! Key → slot hashing, exactly as Codis and codis-server compute it.

/// Number of slots; fixed by the Codis data model.
pub const MAX_SLOT_NUM: usize = 1024;

/// The part of `key` that decides its slot.
///
/// The tag is the bytes between the first `{` and the first `}` after it. Unlike Redis
/// Cluster, an empty tag (`a{}b`) *is* a tag: it hashes the empty string (slot 0).
/// Without a complete tag the whole key is hashed.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = find_byte(key, b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// Position of `needle`, eight bytes at a time (keys rarely contain `{`, so the whole
/// key is usually scanned).
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * needle as u64;
    let mut i = 0;
    while i + 8 <= hay.len() {
        let w = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes")) ^ pattern;
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == needle).map(|p| i + p)
}

/// `crc32_ieee(hash_tag(key)) % 1024`.
pub fn slot_of(key: &[u8]) -> u16 {
    (crc32(hash_tag(key)) % MAX_SLOT_NUM as u32) as u16
}

/// CRC-32/IEEE. Keys are short, and for short inputs table lookups (slicing by 8)
/// beat the SIMD path's set-up (feature detection and folding); long inputs use SIMD.
fn crc32(data: &[u8]) -> u32 {
    if data.len() >= 128 {
        return crc32fast::hash(data);
    }
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = CRC_TABLES[7][(lo & 0xff) as usize]
            ^ CRC_TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ CRC_TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ CRC_TABLES[4][(lo >> 24) as usize]
            ^ CRC_TABLES[3][c[4] as usize]
            ^ CRC_TABLES[2][c[5] as usize]
            ^ CRC_TABLES[1][c[6] as usize]
            ^ CRC_TABLES[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = CRC_TABLES[0][((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `CRC_TABLES[0]` is the classic byte table; table `k` advances a byte through `k` more
/// zero bytes, which lets eight bytes be folded in per step.
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = t[0][(prev & 0xff) as usize] ^ (prev >> 8);
            k += 1;
        }
        i += 1;
    }
    t
};

/// `crc32_ieee(hash_tag(key))`, the value `slot_of` reduces. codis-server moves a tag
/// group as "every tagged key with this crc", so the module needs the full value.
pub fn tag_crc(key: &[u8]) -> u32 {
    crc32(hash_tag(key))
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
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..40u8).map(|i| b'a' + i % 20).collect();
        for n in 0..hay.len() {
            for needle in [b'a', b'e', b't', b'{', 0x80] {
                assert_eq!(find_byte(&hay[..n], needle), hay[..n].iter().position(|&b| b == needle), "{n} {needle}");
            }
        }
        assert_eq!(find_byte(b"0123456789ab{cd}", b'{'), Some(12));
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
