//! Percent-encoding of raw path bytes for URLs (RFC 3986).

/// Characters kept as they are in a URL path besides the unreserved ones: the separator, the
/// sub-delimiters, `:` and `@`, which browsers leave unencoded too, so that the URL purged is
/// the cache key a browser's request produced.
pub(crate) const PATH_KEEP: &[u8] = b"/!$&'()*+,;=:@";

/// Characters kept as they are in a query value besides the unreserved ones. `:` and `/` are
/// legal there and keep a URL passed as a value readable (and byte-identical to what sersync
/// 2.5.4 sent for plain names); `&`, `=`, `+`, `%`, `#`, space and every non-ASCII byte are
/// encoded so that a name can never add or cut a parameter.
pub(crate) const QUERY_KEEP: &[u8] = b"/:";

/// Encodes every byte that is neither unreserved (`A-Z a-z 0-9 - . _ ~`) nor in `keep` as `%XX`.
pub(crate) fn encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_cannot_break_out() {
        assert_eq!(
            encode(b"http://x/a b&c=d%e#f+\xff", QUERY_KEEP),
            "http://x/a%20b%26c%3Dd%25e%23f%2B%FF"
        );
        assert_eq!(
            encode(b"a/b c(1)&x=y#?.jpg", PATH_KEEP),
            "a/b%20c(1)&x=y%23%3F.jpg"
        );
    }
}
