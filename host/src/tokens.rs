//! Bearer tokens for IdP connections: `mw_<id>_<secret>`.
//!
//! The public `id` selects the stored record; only SHA-256 of the `secret` is stored, and it
//! is compared in constant time. A token is shown once, when it is generated.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated token; `token` is what the IdP is configured with.
pub struct NewToken {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub token: String,
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(hex::encode(buf))
}

pub fn generate() -> anyhow::Result<NewToken> {
    let id = random_hex(9)?;
    let secret = random_hex(32)?;
    Ok(NewToken { secret_hash: hash(&secret), token: format!("mw_{id}_{secret}"), id })
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits a presented token into (id, secret).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("mw_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 18 && !secret.is_empty()).then_some((id, secret))
}

/// Constant-time check of a presented secret against the stored hash.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    hash(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn round_trip() {
        let t = generate().unwrap();
        let (id, secret) = parse(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert!(verify(secret, &t.secret_hash));
        assert!(!verify("wrong", &t.secret_hash));
        assert!(parse("Bearer x").is_none());
        assert!(!t.token.contains(&hex::encode(&t.secret_hash)));
    }
}
