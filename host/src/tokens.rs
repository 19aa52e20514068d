//! Bearer tokens: `mw_<id>_<secret>` for IdP connections, `mwa_<id>_<secret>` for admins,
//! `mwd_<id>_<secret>` for applications reading the directory.
//!
//! The public `id` selects the stored record; only SHA-256 of the `secret` is stored, and it
//! is compared in constant time. A token is shown once, when it is generated.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated token; `token` is what the IdP is configured with.
pub struct NewToken {
    /// The public part, which selects the stored record.
    pub id: String,
    /// SHA-256 of the secret part: all that is stored.
    pub secret_hash: Vec<u8>,
    /// The whole token, shown once.
    pub token: String,
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(hex::encode(buf))
}

/// A new IdP connection token.
pub fn generate() -> anyhow::Result<NewToken> {
    generate_with("mw")
}

/// A new admin token (a prefix of its own: an IdP token is never mistaken for one).
pub fn generate_admin() -> anyhow::Result<NewToken> {
    generate_with("mwa")
}

/// A new directory-reader token (for the application).
pub fn generate_directory() -> anyhow::Result<NewToken> {
    generate_with("mwd")
}

fn generate_with(prefix: &str) -> anyhow::Result<NewToken> {
    let id = random_hex(9)?;
    let secret = random_hex(32)?;
    Ok(NewToken { secret_hash: hash(&secret), token: format!("{prefix}_{id}_{secret}"), id })
}

/// SHA-256 of a secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits a presented IdP token into (id, secret).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    parse_with(token, "mw_")
}

/// Splits a presented admin token into (id, secret).
pub fn parse_admin(token: &str) -> Option<(&str, &str)> {
    parse_with(token, "mwa_")
}

/// Splits a presented admin or directory token into (id, secret); the stored record says
/// what it may do.
pub fn parse_reader(token: &str) -> Option<(&str, &str)> {
    parse_with(token, "mwa_").or_else(|| parse_with(token, "mwd_"))
}

fn parse_with<'a>(token: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = token.strip_prefix(prefix)?;
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
        let a = generate_admin().unwrap();
        assert!(parse(&a.token).is_none(), "an admin token is not an IdP token");
        assert_eq!(parse_admin(&a.token).map(|p| p.0), Some(a.id.as_str()));
        assert!(parse_admin(&t.token).is_none());
        let d = generate_directory().unwrap();
        assert!(parse_admin(&d.token).is_none() && parse(&d.token).is_none(), "a directory token is neither");
        assert_eq!(parse_reader(&d.token).map(|p| p.0), Some(d.id.as_str()));
        assert_eq!(parse_reader(&a.token).map(|p| p.0), Some(a.id.as_str()));
        assert!(parse_reader(&t.token).is_none());
    }
}
