//! `gateway/trusted_keys`: device keys the gateway pairs without a request, in OpenSSH
//! authorized_keys format so a person can paste a `.pub` line. The only option is
//! `scopes="operator.read,operator.write"` (default `operator.read`); any other option is
//! refused rather than ignored, because an option we do not enforce (`from=`, say) would
//! look like a restriction while granting everything.
//!
//! A bad line never takes the others down: it is reported with its line number and
//! skipped. Writing goes through [`append`], which validates the key, refuses duplicates
//! and appends one fsynced line, so a running gateway never reads half an entry.

use std::path::Path;

use crate::identity;
use crate::protocol::{Role, Scope};
use crate::store::{StoreError, fsutil};

/// One usable line.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedKey {
    /// Raw Ed25519 public key.
    pub raw: [u8; 32],
    pub device_id: String,
    pub scopes: Vec<Scope>,
    pub comment: String,
    pub line: usize,
}

impl TrustedKey {
    /// The role these scopes belong to (a line never mixes roles).
    pub fn role(&self) -> Role {
        self.scopes
            .first()
            .map(|s| s.role())
            .unwrap_or(Role::Operator)
    }
}

/// A line that did not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Parses the whole file's text: usable keys, and the lines that were skipped.
pub fn parse(text: &str) -> (Vec<TrustedKey>, Vec<LineError>) {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok((raw, scopes, comment)) => keys.push(TrustedKey {
                device_id: identity::device_id_of(&raw),
                raw,
                scopes,
                comment,
                line: i + 1,
            }),
            Err(message) => errors.push(LineError {
                line: i + 1,
                message,
            }),
        }
    }
    (keys, errors)
}

/// Loads `path`; a missing file is an empty list. Bad lines come back as errors, the
/// rest still load.
pub fn load(path: &Path) -> Result<(Vec<TrustedKey>, Vec<LineError>), StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), Vec::new())),
        Err(e) => Err(StoreError::io("cannot read", path, e)),
    }
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

/// Splits `options keytype base64 comment` into (options, rest), honouring quotes.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let first = line.split_whitespace().next().unwrap_or("");
    if is_key_type(first) {
        return Ok(("", line));
    }
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    Err("no key after the options".into())
}

/// Parses `scopes="a,b"`; any other option is an error.
fn parse_options(opts: &str) -> Result<Option<Vec<Scope>>, String> {
    if opts.is_empty() {
        return Ok(None);
    }
    let mut scopes = None;
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in opts.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&opts[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("unbalanced quote in the options".into());
    }
    parts.push(&opts[start..]);
    for part in parts {
        let Some(value) = part.strip_prefix("scopes=") else {
            return Err(format!(
                "unsupported option {part:?}: only scopes=\"...\" is understood"
            ));
        };
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| "scopes must be quoted: scopes=\"operator.read\"".to_string())?;
        scopes = Some(parse_scopes(value)?);
    }
    Ok(scopes)
}

/// Parses a comma-separated scope list that stays within one role.
pub fn parse_scopes(value: &str) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(s.parse::<Scope>()?);
    }
    if out.is_empty() {
        return Err("the scope list is empty".into());
    }
    if out.iter().any(|s| s.role() != out[0].role()) {
        return Err("scopes of two roles (operator.* and node.exec) on one key".into());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn parse_line(line: &str) -> Result<([u8; 32], Vec<Scope>, String), String> {
    let (opts, key) = split_options(line)?;
    let scopes = parse_options(opts)?.unwrap_or_else(|| vec![Scope::OperatorRead]);
    let (raw, comment) = parse_public_key(key)?;
    Ok((raw, scopes, comment))
}

/// Parses `ssh-ed25519 AAAA... comment` into the raw key and the comment.
pub fn parse_public_key(text: &str) -> Result<([u8; 32], String), String> {
    let key = ssh_key::PublicKey::from_openssh(text.trim())
        .map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    let ed = key.key_data().ed25519().ok_or_else(|| {
        format!(
            "{} keys are not supported: use ssh-ed25519",
            key.algorithm()
        )
    })?;
    Ok((ed.0, key.comment().to_string()))
}

/// What [`append`] did.
#[derive(Debug, PartialEq)]
pub enum Appended {
    Added { line: usize },
    AlreadyTrusted { line: usize },
}

/// Appends a line trusting `public_key_text` with `scopes`. The key is validated first,
/// and a key that is already listed is left alone (its line is reported instead), so
/// running it twice changes nothing.
pub fn append(
    path: &Path,
    public_key_text: &str,
    scopes: &[Scope],
) -> Result<(TrustedKey, Appended), String> {
    let (raw, comment) = parse_public_key(public_key_text)?;
    let scope_text: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let scopes = parse_scopes(&scope_text.join(","))?;
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (keys, _) = parse(&existing);
    let key = TrustedKey {
        device_id: identity::device_id_of(&raw),
        raw,
        scopes: scopes.clone(),
        comment: comment.clone(),
        line: 0,
    };
    if let Some(k) = keys.iter().find(|k| k.raw == raw) {
        let mut found = key;
        found.line = k.line;
        found.scopes = k.scopes.clone();
        return Ok((found, Appended::AlreadyTrusted { line: k.line }));
    }
    let openssh = ssh_key::PublicKey::from(ssh_key::public::Ed25519PublicKey(raw));
    let mut entry = format!(
        "scopes=\"{}\" {}",
        scope_text.join(","),
        openssh.to_openssh().map_err(|e| e.to_string())?
    );
    let comment = comment.replace(['\n', '\r'], " ");
    if !comment.is_empty() {
        entry.push(' ');
        entry.push_str(&comment);
    }
    // A file a person edited may lack its final newline: never glue two keys together.
    if !existing.is_empty() && !existing.ends_with('\n') {
        entry.insert(0, '\n');
    }
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir).map_err(|e| e.to_string())?;
    }
    fsutil::append_line(path, &entry).map_err(|e| e.to_string())?;
    // A person may have created the file with their umask: who may write this file decides
    // who gets in, so keep it private like every other file under gateway/.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    let line = existing.lines().count() + 1;
    let mut added = key;
    added.line = line;
    Ok((added, Appended::Added { line }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    #[test]
    fn good_lines_load_bad_lines_are_reported_by_number() {
        let a = DeviceKey::generate("ci@build");
        let b = DeviceKey::generate("b");
        let text = format!(
            "# comment\n\
             scopes=\"operator.read,operator.write\" {}\
             garbage line\n\
             from=\"10.0.0.1\" {}\
             {}\
             scopes=\"operator.root\" {}",
            a.public_openssh(),
            b.public_openssh(),
            b.public_openssh(),
            b.public_openssh(),
        );
        let (keys, errors) = parse(&text);
        assert_eq!(keys.len(), 2, "{keys:?} {errors:?}");
        assert_eq!(keys[0].device_id, a.device_id());
        assert_eq!(
            keys[0].scopes,
            vec![Scope::OperatorRead, Scope::OperatorWrite]
        );
        assert_eq!(keys[0].comment, "ci@build");
        assert_eq!(keys[1].scopes, vec![Scope::OperatorRead], "default scope");
        assert_eq!(keys[1].line, 5);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 6], "{errors:?}");
        assert!(errors[1].message.contains("from="), "{errors:?}");
    }

    #[test]
    fn mixed_roles_and_other_key_types_are_refused() {
        let k = DeviceKey::generate("x");
        let line = format!("scopes=\"operator.read,node.exec\" {}", k.public_openssh());
        assert_eq!(parse(&line).1.len(), 1);
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDmalformed x";
        assert_eq!(parse(rsa).1.len(), 1);
    }

    #[test]
    fn append_validates_dedups_and_adds_a_newline_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway/trusted_keys");
        let a = DeviceKey::generate("a");
        let b = DeviceKey::generate("b");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, a.public_openssh().trim_end()).unwrap();
        let (k, how) = append(&p, &b.public_openssh(), &[Scope::OperatorWrite]).unwrap();
        assert_eq!(how, Appended::Added { line: 2 });
        assert_eq!(k.device_id, b.device_id());
        let (_, how) = append(&p, &b.public_openssh(), &[Scope::OperatorAdmin]).unwrap();
        assert_eq!(how, Appended::AlreadyTrusted { line: 2 });
        let (keys, errors) = parse(&std::fs::read_to_string(&p).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].scopes, vec![Scope::OperatorWrite]);
        assert!(append(&p, "ssh-ed25519 AAAA", &[Scope::OperatorRead]).is_err());
    }
}
