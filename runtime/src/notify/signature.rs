//! The signature of a delivery, in the form GitHub and Stripe use: the
//! header `Jobstack-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `<t>.<body>` with the subscription's secret. A receiver recomputes it and
//! compares in constant time, and refuses an old `t` (replays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Jobstack-Signature";
/// The header carrying the event's id (the same for every delivery of it).
pub const EVENT_ID_HEADER: &str = "Jobstack-Event-Id";
/// The header carrying the event's kind.
pub const EVENT_KIND_HEADER: &str = "Jobstack-Event";

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Check a signature header's value against `body`: its timestamp, if the
/// signature holds (compared in constant time).
pub fn verify(secret: &str, header: &str, body: &[u8]) -> Option<i64> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for field in header.split(',') {
        match field.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(hex::decode(v).ok()?),
            _ => {}
        }
    }
    let timestamp = timestamp?;
    signatures
        .iter()
        .any(|s| mac(secret, timestamp, body).verify_slice(s).is_ok())
        .then_some(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let header = sign("s3cret", 1_765_000_000, b"{\"id\":1}");
        assert!(header.starts_with("t=1765000000,v1="));
        assert_eq!(verify("s3cret", &header, b"{\"id\":1}"), Some(1_765_000_000));
        assert_eq!(verify("other", &header, b"{\"id\":1}"), None);
        assert_eq!(verify("s3cret", &header, b"{\"id\":2}"), None);
        let moved = header.replace("t=1765000000", "t=1765000001");
        assert_eq!(verify("s3cret", &moved, b"{\"id\":1}"), None, "the time is signed too");
    }

    #[test]
    fn the_signature_is_an_hmac_sha256_over_time_dot_body() {
        // Python: hmac.new(b"key", b"1.body", hashlib.sha256).hexdigest()
        assert_eq!(
            sign("key", 1, b"body"),
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }
}
