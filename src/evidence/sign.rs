//! SSH signatures over reports (SSHSIG, namespace `viber-report`): the gateway's signing
//! key, signing a run's report, the `allowed_signers` line that names the key, and
//! checking a signature against an allowed_signers file the way `ssh-keygen -Y verify`
//! does, so a report checks the same with viber or with stock OpenSSH.
//!
//! Only the gateway reads `gateway/signing_ed25519`; a worker asks it to sign
//! (`node.run.sign`), so code that runs tasks never holds the key that vouches for them.

use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use super::report;
use crate::store::{Home, StoreError, fsutil};

/// The SSHSIG namespace of every report signature.
pub const NAMESPACE: &str = "viber-report";

/// The principal this host's gateway key is known by in allowed_signers files.
pub fn principal() -> String {
    format!("viber-gateway@{}", crate::identity::hostname())
}

/// The gateway's report-signing key.
pub struct Signer {
    key: PrivateKey,
}

impl Signer {
    /// Loads the key, or creates it (0600, OpenSSH format, plus `.pub`). Returns whether
    /// it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), StoreError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let Some(key) = crate::identity::create_key_file(path, &principal())? else {
            // Another process created it first: use theirs.
            return Ok((Self::load(path)?, false));
        };
        let signer = Signer { key };
        let pub_path = pub_path(path);
        fsutil::write_atomic(&pub_path, signer.public_line().as_bytes(), 0o644)?;
        Ok((signer, true))
    }

    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::io("cannot read the signing key", path, e))?;
        let key = PrivateKey::from_openssh(&text).map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!("not an OpenSSH private key: {e}"),
        })?;
        if key.is_encrypted() {
            return Err(StoreError::Invalid {
                path: path.to_path_buf(),
                message:
                    "the signing key is passphrase-protected; the gateway needs it unencrypted"
                        .into(),
            });
        }
        Ok(Signer { key })
    }

    /// An SSHSIG armored signature of `msg`, exactly what `ssh-keygen -Y sign` writes.
    pub fn sign(&self, msg: &[u8]) -> Result<String, String> {
        self.key
            .sign(NAMESPACE, HashAlg::Sha512, msg)
            .and_then(|sig| sig.to_pem(LineEnding::LF))
            .map_err(|e| format!("cannot sign: {e}"))
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    /// `ssh-ed25519 AAAA... viber-gateway@host`
    pub fn public_line(&self) -> String {
        let mut s = self.key.public_key().to_openssh().unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }
}

fn pub_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// The allowed_signers line for a public key: principal, namespace restriction, key.
pub fn allowed_signers_line(principal: &str, key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    format!(
        "{principal} namespaces=\"{NAMESPACE}\" {}",
        k.to_openssh().unwrap_or_default().trim()
    )
}

/// What a home's gateway key is known by, read from its public half only (so clients and
/// `viber verify` never touch the private key).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerInfo {
    pub principal: String,
    pub fingerprint: String,
    pub public_key: String,
    pub allowed_signers: String,
    pub namespace: &'static str,
}

/// This home's gateway signer, from `gateway/signing_ed25519.pub`; `None` when the home
/// has no signing key yet.
pub fn home_signer(home: &Home) -> Option<SignerInfo> {
    let text = std::fs::read_to_string(pub_path(&home.signing_key())).ok()?;
    let key = PublicKey::from_openssh(text.trim()).ok()?;
    let principal = principal();
    Some(SignerInfo {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        public_key: key.to_openssh().unwrap_or_default(),
        allowed_signers: allowed_signers_line(&principal, &key),
        principal,
        namespace: NAMESPACE,
    })
}

/// What the gateway does for `node.run.sign`: read the run's report, check it is that
/// run's, sign it, write `report.json.sig` next to it.
pub fn sign_workspace_report(
    home: &Home,
    run_id: &str,
    workspace: &Path,
) -> Result<(PathBuf, SignerInfo), String> {
    let path = workspace.join(report::FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let r = report::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if r.predicate.run_id != run_id {
        return Err(format!(
            "{} is the report of run {:?}, not {run_id:?}",
            path.display(),
            r.predicate.run_id
        ));
    }
    let (signer, _) = Signer::load_or_create(&home.signing_key()).map_err(|e| e.to_string())?;
    let pem = signer.sign(&bytes)?;
    let sig = report::sig_path(&path);
    fsutil::write_atomic(&sig, pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
    let key = signer.public_key();
    let principal = principal();
    Ok((
        sig,
        SignerInfo {
            fingerprint: signer.fingerprint(),
            public_key: key.to_openssh().unwrap_or_default(),
            allowed_signers: allowed_signers_line(&principal, &key),
            principal,
            namespace: NAMESPACE,
        },
    ))
}

/// One usable line of an allowed_signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    pub principals: String,
    pub namespaces: Option<Vec<String>>,
    pub key: PublicKey,
}

/// Parses an allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS). Certificate
/// authorities are not supported and are skipped; a line that does not parse is an error
/// naming its line number.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks = tokenize(line);
        let Some(principals) = toks.first() else {
            continue;
        };
        let mut rest = &toks[1..];
        let mut namespaces = None;
        let mut cert_authority = false;
        if let Some(first) = rest.first()
            && !looks_like_key_type(first)
        {
            for opt in split_options(first) {
                let (name, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => {
                        namespaces = Some(
                            value
                                .trim_matches('"')
                                .split(',')
                                .map(|s| s.trim().to_string())
                                .collect(),
                        )
                    }
                    "cert-authority" => cert_authority = true,
                    _ => {}
                }
            }
            rest = &rest[1..];
        }
        if cert_authority {
            continue;
        }
        let key_text = rest.join(" ");
        let key = PublicKey::from_openssh(&key_text)
            .map_err(|e| format!("line {}: not a public key ({e})", i + 1))?;
        out.push(AllowedSigner {
            principals: principals.clone(),
            namespaces,
            key,
        });
    }
    Ok(out)
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Splits on whitespace outside double quotes.
fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits an options field on commas outside double quotes.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Who signed, when a signature checks out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub principal: String,
    pub fingerprint: String,
    pub namespace: String,
}

/// Checks an armored SSHSIG over `msg` against allowed signers; the error says exactly
/// what is wrong (unreadable, other namespace, unknown key, or not matching).
pub fn verify(msg: &[u8], pem: &[u8], allowed: &[AllowedSigner]) -> Result<Verified, String> {
    let sig = SshSig::from_pem(pem).map_err(|e| {
        format!("the signature is not a valid SSH signature (truncated or corrupt?): {e}")
    })?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "the signature is for namespace {:?}, not {NAMESPACE:?}: it was not made as a viber report signature",
            sig.namespace()
        ));
    }
    let signer = PublicKey::from(sig.public_key().clone());
    let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
    let entry = allowed
        .iter()
        .find(|a| a.key.key_data() == signer.key_data())
        .ok_or_else(|| {
            format!("the signature is by key {fingerprint}, which is not an allowed signer")
        })?;
    if let Some(ns) = &entry.namespaces
        && !ns.iter().any(|n| n == NAMESPACE || n == "*")
    {
        return Err(format!(
            "key {fingerprint} ({}) is not allowed to sign namespace {NAMESPACE:?}",
            entry.principals
        ));
    }
    signer.verify(NAMESPACE, msg, &sig).map_err(|_| {
        "the signature does not match report.json: the report was changed after it was signed"
            .to_string()
    })?;
    Ok(Verified {
        principal: entry.principals.clone(),
        fingerprint,
        namespace: NAMESPACE.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_refuse_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (s, created) = Signer::load_or_create(&dir.path().join("k")).unwrap();
        assert!(created);
        let pem = s.sign(b"report").unwrap();
        let line = allowed_signers_line("p@h", &s.public_key());
        let allowed = parse_allowed_signers(&format!("# c\n{line}\n")).unwrap();
        let v = verify(b"report", pem.as_bytes(), &allowed).unwrap();
        assert_eq!(v.principal, "p@h");
        assert!(verify(b"reporT", pem.as_bytes(), &allowed).is_err());
        let e = verify(b"report", &pem.as_bytes()[..pem.len() / 2], &allowed).unwrap_err();
        assert!(e.contains("not a valid"), "{e}");
        let (other, _) = Signer::load_or_create(&dir.path().join("k2")).unwrap();
        let e = verify(
            b"report",
            other.sign(b"report").unwrap().as_bytes(),
            &allowed,
        )
        .unwrap_err();
        assert!(e.contains("not an allowed signer"), "{e}");
    }

    #[test]
    fn allowed_signers_options_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Signer::load_or_create(&dir.path().join("k")).unwrap();
        let key = s.public_line();
        let text = format!("a@b,c@d namespaces=\"file,git\" {key}\nx@y cert-authority {key}");
        let allowed = parse_allowed_signers(&text).unwrap();
        assert_eq!(allowed.len(), 1, "the CA line is skipped");
        let pem = s.sign(b"m").unwrap();
        let e = verify(b"m", pem.as_bytes(), &allowed).unwrap_err();
        assert!(e.contains("not allowed to sign"), "{e}");
    }
}
