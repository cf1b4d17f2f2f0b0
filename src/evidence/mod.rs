//! Verification from evidence (DESIGN.md section 7): the task's `accept` checks, the
//! evidence they keep, the signed report, and checking such a report later, offline.
//!
//! The rule this module exists for: whether work is done is decided from things a person
//! could look at (command output, file hashes, HTTP responses, screenshots, pane logs),
//! never from the agent's own word. So every verdict is a pure function of evidence files
//! ([`checks::judge`]), the files are hashed into an in-toto Statement (`report.json`),
//! and the gateway signs that statement as an SSH signature (`report.json.sig`). Anyone
//! can then re-derive every verdict, re-hash every file and check the signature, with
//! viber ([`audit`]) or with stock `ssh-keygen -Y verify`.
//!
//! - [`checks`]: validating, running and judging checks; where their evidence goes
//! - [`screenshot`]: headless Chromium, when it is installed
//! - [`report`]: the report's shape, building it at the end of a run, reading it back
//! - [`sign`]: the gateway's signing key, SSHSIG signing, allowed_signers files
//! - [`audit`]: what `viber verify` checks, and `--rerun`
//! - [`render`]: Markdown, JUnit XML and HTML for people and CI

pub mod audit;
pub mod checks;
pub mod render;
pub mod report;
pub mod screenshot;
pub mod sign;

use std::path::Path;

use sha2::{Digest, Sha256};

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of a file, streamed (evidence can be large).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Quotes for `sh`, so a reproduce command can be pasted as is.
pub(crate) fn sh_quote(s: &str) -> String {
    crate::terminal::shell_quote(s)
}
