//! This device's identity: an Ed25519 key in OpenSSH format (so stock ssh tools can read
//! it), the device id derived from it, and the signing and verifying used by the handshake.
//! Also the small crypto helpers the gateway needs for tokens.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

use crate::store::{StoreError, fsutil};

/// A device key loaded from (or created in) VIBER_HOME.
pub struct DeviceKey {
    key: PrivateKey,
    signing: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    pub fn generate(comment: &str) -> Self {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .expect("Ed25519 key generation cannot fail with the OS RNG");
        key.set_comment(comment);
        Self::from_private(key).expect("a fresh Ed25519 key is usable")
    }

    fn from_private(key: PrivateKey) -> Result<Self, String> {
        if key.is_encrypted() {
            return Err("the key is passphrase-protected; viber needs an unencrypted key".into());
        }
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| format!("not an Ed25519 key ({})", key.algorithm()))?;
        let signing = SigningKey::from_bytes(&pair.private.to_bytes());
        Ok(DeviceKey { key, signing })
    }

    /// Reads an OpenSSH Ed25519 private key.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::io("cannot read key", path, e))?;
        let key = PrivateKey::from_openssh(&text).map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!("not an OpenSSH private key: {e}"),
        })?;
        Self::from_private(key).map_err(|message| StoreError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Loads the key at `path`, or creates it (0600, plus `.pub`) when it does not exist.
    /// Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), StoreError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let Some(private) = create_key_file(path, &format!("viber@{}", hostname()))? else {
            // Lost a race with another process creating it: use theirs.
            return Ok((Self::load(path)?, false));
        };
        let key = Self::from_private(private).expect("a fresh Ed25519 key is usable");
        let pub_path = path.with_extension("pub");
        let _ = std::fs::remove_file(&pub_path);
        fsutil::create_secret(&pub_path, key.public_openssh().as_bytes())?;
        Ok((key, true))
    }

    pub fn public_raw(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Raw public key, base64url without padding, as sent in `connect`.
    pub fn public_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_raw())
    }

    pub fn device_id(&self) -> String {
        device_id_of(&self.public_raw())
    }

    /// `SHA256:...` exactly as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// `ssh-ed25519 AAAA... comment`
    pub fn public_openssh(&self) -> String {
        let mut s = self.key.public_key().to_openssh().unwrap_or_default();
        s.push('\n');
        s
    }

    /// Signs `msg`, returning the signature as base64url without padding.
    pub fn sign(&self, msg: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.sign(msg).to_bytes())
    }
}

/// Generates an Ed25519 key and writes it to `path` (OpenSSH format, 0600) only if the
/// file does not exist yet; `None` when another process created it first.
pub fn create_key_file(path: &Path, comment: &str) -> Result<Option<PrivateKey>, StoreError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .expect("Ed25519 key generation cannot fail with the OS RNG");
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(fsutil::create_secret(path, text.as_bytes())?.then_some(key))
}

/// Hex sha256 of a raw public key: the device id.
pub fn device_id_of(raw: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// `SHA256:` fingerprint of a raw Ed25519 public key, as ssh-keygen prints it.
pub fn fingerprint_of(raw: &[u8; 32]) -> String {
    let key = ssh_key::public::Ed25519PublicKey(*raw);
    ssh_key::PublicKey::from(key)
        .fingerprint(HashAlg::Sha256)
        .to_string()
}

/// Decodes a base64url raw Ed25519 public key.
pub fn decode_public_key(b64: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| "public key is not base64url".to_string())?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("public key is {} bytes, expected 32", b.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "public key is not a valid Ed25519 point")?;
    Ok(raw)
}

/// Verifies a base64url Ed25519 signature over `msg` by `raw`.
pub fn verify(raw: &[u8; 32], msg: &[u8], sig_b64: &str) -> Result<(), String> {
    let key = VerifyingKey::from_bytes(raw).map_err(|_| "invalid public key")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(sig_b64.trim_end_matches('='))
        .map_err(|_| "signature is not base64url")?;
    let sig = ed25519_dalek::Signature::from_slice(&bytes)
        .map_err(|_| "signature has the wrong length")?;
    // Strict: also refuses small-order keys and non-canonical signatures.
    key.verify_strict(msg, &sig)
        .map_err(|_| "signature does not match".to_string())
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes from the OS, base64url without padding.
pub fn random_b64(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    OsRng.fill_bytes(&mut buf);
    buf
}

/// Hex sha256 of a token: what the gateway stores instead of the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality of two secrets (the length is not secret).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_ids() {
        let k = DeviceKey::generate("t");
        let sig = k.sign(b"hello");
        let raw = decode_public_key(&k.public_b64()).unwrap();
        verify(&raw, b"hello", &sig).unwrap();
        assert!(verify(&raw, b"hellO", &sig).is_err());
        assert_eq!(k.device_id().len(), 64);
        assert_eq!(fingerprint_of(&raw), k.fingerprint());
        assert!(k.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn key_file_is_openssh_0600_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity/device_ed25519");
        let (a, created) = DeviceKey::load_or_create(&p).unwrap();
        assert!(created);
        let (b, created) = DeviceKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a.device_id(), b.device_id());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        assert!(decode_public_key("!!!").is_err());
        assert!(decode_public_key(&URL_SAFE_NO_PAD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
