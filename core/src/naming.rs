//! Stable names for per-configuration files (journals, heartbeat, pid file).

/// FNV-1a over `parts`, each followed by a NUL: stable across runs and builds, so a file
/// named with it is found again by the next start.
pub fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_separated() {
        assert_ne!(
            stable_hash([&b"ab"[..], b"c"]),
            stable_hash([&b"a"[..], b"bc"])
        );
        assert_eq!(stable_hash([&b"x"[..]]), stable_hash([&b"x"[..]]));
    }
}
