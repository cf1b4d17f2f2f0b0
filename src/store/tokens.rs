//! `identity/tokens.yaml`: the device tokens this device was issued, one per (gateway URL,
//! device key). It lives on the client side, is a secret (0600, written atomically), and
//! lets every later verb against that gateway authenticate without the gateway token.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StoreError, read_yaml, write_yaml};
use crate::protocol::{Role, Scope};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The gateway URL as the client used it (normalized by [`normalize_url`]).
    pub gateway: String,
    /// Hex sha256 of the public key the token belongs to.
    pub device_id: String,
    pub token: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub issued: jiff::Timestamp,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    entries: Vec<TokenEntry>,
}

/// One spelling per gateway: no trailing slash, lower-case scheme and host.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase(),
                path
            )
        }
        None => url.to_string(),
    }
}

impl TokenStore {
    /// Loads the file; a missing file is an empty store, a broken one an error naming it.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let file: TokensFile = read_yaml(path)?.unwrap_or_default();
        Ok(TokenStore {
            path: path.to_path_buf(),
            entries: file.tokens,
        })
    }

    pub fn get(&self, url: &str, device_id: &str) -> Option<&TokenEntry> {
        let url = normalize_url(url);
        self.entries
            .iter()
            .find(|e| e.gateway == url && e.device_id == device_id)
    }

    pub fn all(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// Stores (or replaces) the token for (gateway, device) and writes the file (0600)
    /// before returning.
    pub fn set(&mut self, mut entry: TokenEntry) -> Result<(), StoreError> {
        entry.gateway = normalize_url(&entry.gateway);
        self.entries
            .retain(|e| !(e.gateway == entry.gateway && e.device_id == entry.device_id));
        self.entries.push(entry);
        self.save()
    }

    fn save(&self) -> Result<(), StoreError> {
        write_yaml(
            &self.path,
            &TokensFile {
                tokens: self.entries.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, dev: &str, token: &str) -> TokenEntry {
        TokenEntry {
            gateway: url.into(),
            device_id: dev.into(),
            token: token.into(),
            role: Role::Operator,
            scopes: vec![Scope::OperatorRead],
            issued: jiff::Timestamp::now(),
        }
    }

    #[test]
    fn per_url_and_device_replaced_not_duplicated_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity/tokens.yaml");
        let mut s = TokenStore::load(&p).unwrap();
        s.set(entry("ws://Host:7878/", "a", "t1")).unwrap();
        s.set(entry("ws://host:7878", "a", "t2")).unwrap();
        s.set(entry("ws://host:7878", "b", "t3")).unwrap();
        let s = TokenStore::load(&p).unwrap();
        assert_eq!(s.all().len(), 2);
        assert_eq!(s.get("ws://HOST:7878", "a").unwrap().token, "t2");
        assert!(s.get("ws://other:7878", "a").is_none());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
