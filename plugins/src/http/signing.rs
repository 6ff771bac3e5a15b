//! What lets a receiver trust and deduplicate a POST, as GitHub's webhooks do:
//!
//! - `X-Sersync-Delivery`: the SHA-256 of the body, in hex. The same document always carries
//!   the same id, so a batch sent again unchanged after a failure (the lane retries it) is
//!   recognisable; a batch that changed meanwhile (new changes merged into it while it
//!   waited) is a different document with a different id — it must be applied anyway.
//! - `X-Sersync-Signature: sha256=HEX`: HMAC-SHA256 of the body's exact bytes with the
//!   `<signature>` secret, when one is configured.

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::config::Secret;

/// The delivery id header.
pub(crate) const DELIVERY: HeaderName = HeaderName::from_static("x-sersync-delivery");
/// The signature header.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-sersync-signature");

/// The headers of a POST of `body`.
pub(crate) fn headers(body: &str, secret: Option<&Secret>) -> HeaderMap {
    let mut map = HeaderMap::new();
    let id = hex(&Sha256::digest(body.as_bytes()));
    map.insert(
        DELIVERY,
        HeaderValue::from_str(&id).expect("hex is a header value"),
    );
    if let Some(secret) = secret {
        let signature = format!("sha256={}", sign(&secret.0, body.as_bytes()));
        let value = HeaderValue::from_str(&signature).expect("hex is a header value");
        map.insert(SIGNATURE, value);
    }
    map
}

/// HMAC-SHA256 of `body` with `key`, in lower-case hex.
pub(crate) fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_delivery_id_names_the_document() {
        let a = headers("{\"events\":[]}", None);
        let b = headers("{\"events\":[]}", Some(&Secret(b"k".to_vec())));
        assert_eq!(a[&DELIVERY], b[&DELIVERY]);
        assert_ne!(a[&DELIVERY], headers("{\"events\":[1]}", None)[&DELIVERY]);
        assert!(!a.contains_key(&SIGNATURE));
        assert_eq!(b[&SIGNATURE].to_str().unwrap().len(), "sha256=".len() + 64);
    }
}
