//! One gateway per VIBER_HOME: an exclusive flock on `gateway/gateway.lock` held for the
//! gateway's whole life, and `gateway/gateway.json` telling clients where it listens.
//!
//! The lock, not the pid in gateway.json, is the truth about whether a gateway runs: the
//! kernel releases it when the process dies, even by kill -9, so a stale gateway.json (dead
//! pid, reused pid) is recognized and replaced.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use crate::store::{Home, StoreError, fsutil};

/// What `gateway/gateway.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    pub pid: u32,
    pub url: String,
    pub started_at: jiff::Timestamp,
    pub version: String,
}

/// Held while the gateway runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("a gateway already runs for {home}{}", describe(.running))]
    AlreadyRunning {
        home: String,
        running: Option<GatewayInfo>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(info: &Option<GatewayInfo>) -> String {
    match info {
        Some(i) => format!(" (pid {}, {})", i.pid, i.url),
        None => String::new(),
    }
}

fn open_lock(home: &Home) -> Result<File, StoreError> {
    fsutil::ensure_private_dir(&home.gateway_dir())?;
    let path = home.gateway_lock();
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::io("cannot open", path, e))
}

/// Takes the single-instance lock or says who holds it.
pub fn acquire(home: &Home) -> Result<InstanceLock, LockError> {
    let mut file = open_lock(home)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::AlreadyRunning {
                home: home.root().display().to_string(),
                running: read_info(home),
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(StoreError::io("cannot lock", home.gateway_lock(), e).into());
        }
    }
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(InstanceLock { _file: file })
}

/// Whether a gateway holds the lock for this home right now.
pub fn is_running(home: &Home) -> bool {
    fsutil::is_locked(&home.gateway_lock())
}

fn read_info(home: &Home) -> Option<GatewayInfo> {
    let text = std::fs::read_to_string(home.gateway_json()).ok()?;
    serde_json::from_str(&text).ok()
}

/// The running gateway's info; `None` when none runs (a leftover gateway.json is ignored).
pub fn running(home: &Home) -> Option<GatewayInfo> {
    if !is_running(home) {
        return None;
    }
    read_info(home)
}

pub fn write_info(home: &Home, info: &GatewayInfo) -> Result<(), StoreError> {
    let text = serde_json::to_string_pretty(info).expect("serializes");
    fsutil::write_atomic(&home.gateway_json(), text.as_bytes(), 0o600)
}

pub fn remove_info(home: &Home) {
    let _ = std::fs::remove_file(home.gateway_json());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        assert!(!is_running(&home));
        let lock = acquire(&home).unwrap();
        assert!(is_running(&home));
        assert!(matches!(
            acquire(&home),
            Err(LockError::AlreadyRunning { .. })
        ));
        drop(lock);
        assert!(!is_running(&home));
        acquire(&home).unwrap();
    }
}
