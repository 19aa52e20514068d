//! Secrets at rest: what Mapwright must be able to read back (a delivery target's bearer
//! token, an OAuth client secret, a webhook signing secret) is sealed with XChaCha20-Poly1305
//! before it is stored, never kept in the clear in the database.
//!
//! The key comes from `MAPWRIGHT_SECRET_KEY` (32 bytes, base64) or, without it, from the key
//! file `secret.key` in the data directory, made on first use with owner-only permissions.
//! A sealed blob is `1 || nonce (24 bytes) || ciphertext`: the version byte leaves room for a
//! key rotation, and a random 24-byte nonce per seal needs no counter.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The environment variable holding the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "MAPWRIGHT_SECRET_KEY";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret.key";

const VERSION: u8 = 1;
const NONCE: usize = 24;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key is missing or malformed.
    #[error("the secret key: {0}")]
    Key(String),
    /// A sealed blob that does not open with this key (another key, or damaged).
    #[error("a stored secret does not open with this server's key (was {KEY_ENV} or {KEY_FILE} changed?)")]
    Open,
    /// No randomness from the system.
    #[error("no system randomness: {0}")]
    Random(String),
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box with this key.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { cipher: XChaCha20Poly1305::new(key.into()) }
    }

    /// The server's box: the key from the environment, else from the data directory's key
    /// file (made now if there is none).
    pub fn load(data_dir: &Path) -> Result<SecretBox, SecretError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return SecretBox::from_base64(&text).map_err(|e| SecretError::Key(format!("{KEY_ENV}: {e}")));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => SecretBox::from_base64(&text).map_err(|e| SecretError::Key(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
                write_key_file(&path, &base64::engine::general_purpose::STANDARD.encode(key)).map_err(|e| SecretError::Key(format!("writing {}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "made a new secret key (keep it with the database: stored target secrets need it)");
                Ok(SecretBox::new(&key))
            }
            Err(e) => Err(SecretError::Key(format!("reading {}: {e}", path.display()))),
        }
    }

    fn from_base64(text: &str) -> Result<SecretBox, String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, need 32", b.len()))?;
        Ok(SecretBox::new(&key))
    }

    /// Seals a secret.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        // Encryption of a slice with a valid key and nonce cannot fail (no length limit is near).
        let sealed = self.cipher.encrypt(XNonce::from_slice(&nonce), plain).map_err(|_| SecretError::Open)?;
        let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed secret (refused if it was sealed with another key or altered).
    pub fn open(&self, blob: &[u8]) -> Result<Vec<u8>, SecretError> {
        if blob.len() < 1 + NONCE || blob[0] != VERSION {
            return Err(SecretError::Open);
        }
        let (nonce, sealed) = blob[1..].split_at(NONCE);
        self.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| SecretError::Open)
    }
}

/// Writes a new key file readable by its owner only.
fn write_key_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secrets_open_with_their_key_only_and_never_show_in_the_clear() {
        let a = SecretBox::new(&[7; 32]);
        let sealed = a.seal(b"whsec_abc").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
        assert_eq!(a.open(&sealed).unwrap(), b"whsec_abc");
        assert_ne!(a.seal(b"whsec_abc").unwrap(), sealed, "a fresh nonce every time");
        assert!(matches!(SecretBox::new(&[8; 32]).open(&sealed), Err(SecretError::Open)));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(a.open(&altered), Err(SecretError::Open)));
        assert!(matches!(a.open(b"\x01short"), Err(SecretError::Open)));
    }

    #[test]
    fn the_key_file_is_made_once_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::load(dir.path()).unwrap();
        let sealed = first.seal(b"token").unwrap();
        let again = SecretBox::load(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"token");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner only");
        }
        std::fs::write(dir.path().join(KEY_FILE), "short").unwrap();
        assert!(matches!(SecretBox::load(dir.path()), Err(SecretError::Key(_))));
    }
}
