//! What lets a receiver trust and deduplicate a POST, as GitHub's webhooks do:
//!
//! - `X-Sersync-Delivery`: the SHA-256 of the body, in hex. The same document always carries
//!   the same id, so a batch sent again unchanged after a failure (the lane retries it) is
//!   recognisable; a batch that changed meanwhile (new changes merged into it while it
//!   waited) is a different document with a different id — it must be applied anyway.
//! - `X-Sersync-Timestamp`: when the POST was made, in seconds since the Unix epoch (a retry
//!   carries its own).
//! - `X-Sersync-Signature: sha256=HEX`: HMAC-SHA256 of the body's exact bytes with the
//!   `<signature>` secret, when one is configured.
//! - `X-Sersync-Signature-Timestamped: sha256=HEX`: HMAC-SHA256 of `TIMESTAMP.BODY` with the
//!   same secret, so that a receiver that refuses old timestamps also refuses a recorded POST
//!   played again later (the body-only signature cannot tell).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::config::Secret;

/// The delivery id header.
pub(crate) const DELIVERY: HeaderName = HeaderName::from_static("x-sersync-delivery");
/// The timestamp header.
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("x-sersync-timestamp");
/// The signature header.
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-sersync-signature");
/// The signature header that covers the timestamp too.
pub(crate) const SIGNATURE_TIMESTAMPED: HeaderName =
    HeaderName::from_static("x-sersync-signature-timestamped");

/// The headers of a POST of `body` made at `now`.
pub(crate) fn headers(body: &str, secret: Option<&Secret>, now: SystemTime) -> HeaderMap {
    let mut map = HeaderMap::new();
    let header = |text: String| HeaderValue::from_str(&text).expect("digits and hex");
    map.insert(DELIVERY, header(hex(&Sha256::digest(body.as_bytes()))));
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        .to_string();
    if let Some(secret) = secret {
        let body = body.as_bytes();
        map.insert(
            SIGNATURE,
            header(format!("sha256={}", sign(&secret.0, &[body]))),
        );
        let stamped = sign(&secret.0, &[timestamp.as_bytes(), b".", body]);
        map.insert(SIGNATURE_TIMESTAMPED, header(format!("sha256={stamped}")));
    }
    map.insert(TIMESTAMP, header(timestamp));
    map
}

/// HMAC-SHA256 of the concatenated `parts` with `key`, in lower-case hex.
pub(crate) fn sign(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
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
            sign(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_delivery_id_names_the_document() {
        let now = SystemTime::now();
        let later = now + std::time::Duration::from_secs(60);
        let a = headers("{\"events\":[]}", None, now);
        let b = headers("{\"events\":[]}", Some(&Secret(b"k".to_vec())), later);
        assert_eq!(a[&DELIVERY], b[&DELIVERY]);
        assert_ne!(
            a[&DELIVERY],
            headers("{\"events\":[1]}", None, now)[&DELIVERY]
        );
        assert!(!a.contains_key(&SIGNATURE) && !a.contains_key(&SIGNATURE_TIMESTAMPED));
        assert_eq!(b[&SIGNATURE].to_str().unwrap().len(), "sha256=".len() + 64);
        assert_ne!(a[&TIMESTAMP], b[&TIMESTAMP]);
    }

    #[test]
    fn the_timestamped_signature_covers_the_timestamp() {
        let key = Secret(b"k".to_vec());
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_764_590_000);
        let h = headers("{}", Some(&key), at);
        assert_eq!(h[&TIMESTAMP], "1764590000");
        assert_eq!(
            h[&SIGNATURE_TIMESTAMPED].to_str().unwrap(),
            format!("sha256={}", sign(b"k", &[b"1764590000.{}"]))
        );
        let a_second_later = headers("{}", Some(&key), at + std::time::Duration::from_secs(1));
        assert_eq!(h[&SIGNATURE], a_second_later[&SIGNATURE]);
        assert_ne!(
            h[&SIGNATURE_TIMESTAMPED],
            a_second_later[&SIGNATURE_TIMESTAMPED]
        );
    }
}
