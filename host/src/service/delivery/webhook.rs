//! Standard Webhooks: how each directory change is signed for a webhook target.
//!
//! A delivery carries `webhook-id` (the change's feed position: the same on every retry, so a
//! receiver deduplicates on it), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the key
//! of a `whsec_<base64>` secret, one signature per secret in use (during a rotation both the
//! new secret's and the old one's, space-separated).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Timestamp, WebhookSecret};

/// The prefix of a webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A malformed webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by base64 of at least 24 bytes")]
pub struct BadSecret;

/// A new random secret (32 bytes).
pub fn new_secret() -> Result<String, String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no system randomness: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(key)))
}

/// The signing key of a secret.
pub fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    let key = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| BadSecret)?;
    if key.len() < 24 { Err(BadSecret) } else { Ok(key) }
}

/// One `v1,…` signature.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: a signature with each secret still in use at `now`.
pub fn signature_header(secrets: &[WebhookSecret], now: &Timestamp, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let mut out = Vec::new();
    for s in secrets.iter().filter(|s| s.until.as_ref().is_none_or(|u| u > now)) {
        out.push(sign(&key(&s.secret)?, id, timestamp, body));
    }
    Ok(out.join(" "))
}

/// The `webhook-id` of the change at feed position `seq`.
pub fn message_id(seq: i64) -> String {
    format!("msg_{seq}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The example of the Standard Webhooks specification (and of its reference libraries).
    #[test]
    fn signs_as_the_specification_example() {
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_with_both_secrets_until_the_old_one_expires() {
        let now = Timestamp::parse("2026-12-06T10:00:00Z").unwrap();
        let (new, old) = (new_secret().unwrap(), new_secret().unwrap());
        let secrets = vec![WebhookSecret { secret: new.clone(), until: None }, WebhookSecret { secret: old.clone(), until: Some(now.plus_secs(60)) }];
        let header = signature_header(&secrets, &now, "msg_1", 1, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.starts_with(&sign(&key(&new).unwrap(), "msg_1", 1, b"{}")));
        let later = now.plus_secs(61);
        assert_eq!(signature_header(&secrets, &later, "msg_1", 1, b"{}").unwrap().split(' ').count(), 1);
        assert!(key("whsec_short").is_err() && key("nope").is_err());
    }
}
