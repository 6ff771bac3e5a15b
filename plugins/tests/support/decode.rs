//! Decoders the probes use to turn what a peer received back into path bytes.

/// Reverses percent-encoding (`%XX`); other bytes are kept.
pub fn percent(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' && i + 2 < text.len() {
            let hex = std::str::from_utf8(&text[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("valid %XX"));
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Standard base64 with padding.
pub fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = acc << 6 | ALPHABET.iter().position(|&a| a == c).expect("base64 digit") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The exact bytes of field `key` of a sersync event JSON object: `key_b64` when present, else
/// the string; `None` when the field is null or absent.
pub fn json_bytes(object: &serde_json::Value, key: &str) -> Option<Vec<u8>> {
    if let Some(b64) = object.get(format!("{key}_b64")).and_then(|v| v.as_str()) {
        return Some(base64(b64));
    }
    object.get(key)?.as_str().map(|s| s.as_bytes().to_vec())
}

/// Every path an event JSON object names: `path`, and `from` for a move.
pub fn json_event_paths(event: &serde_json::Value) -> Vec<Vec<u8>> {
    ["path", "from"]
        .iter()
        .filter_map(|k| json_bytes(event, k))
        .collect()
}
