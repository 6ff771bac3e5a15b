//! No configuration text, however broken, makes the reader panic: it gives a `Config` or an
//! error (invariant 3).

use std::path::Path;

use proptest::prelude::*;

const SHIPPED: &str = include_str!("fixtures/confxml-2.5.4.xml");

fn parse_bytes(bytes: &[u8]) {
    let _ = sersync::config::parse_bytes(bytes, Path::new("conf.xml")).map(|c| c.describe());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_bytes(&bytes);
    }

    #[test]
    fn the_shipped_file_with_damage_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SHIPPED.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        parse_bytes(&bytes);
        bytes.truncate(cut.index(bytes.len()));
        parse_bytes(&bytes);
    }

    #[test]
    fn values_from_a_hostile_alphabet_never_panic(value in "[-0-9a-z<>&;\"'()\\[\\]\\\\.* é]{0,12}") {
        let escaped = value.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
        for attr in ["port=", "time=", "schedule=", "expression=", "params=", "name=", "watch="] {
            // Every switch on (but ssh, which would refuse <auth> before the values are read).
            let text = SHIPPED
                .replace("start=\"false\"", "start=\"true\"")
                .replace("<ssh start=\"true\"/>", "<ssh start=\"false\"/>")
                .replace(&format!("{attr}\""), &format!("{attr}\"{escaped}"));
            let _ = sersync::config::parse_str(&text, Path::new("conf.xml")).map(|c| c.describe());
        }
    }
}
