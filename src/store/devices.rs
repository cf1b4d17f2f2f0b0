//! `gateway/devices.yaml`: the devices this gateway has paired, with their granted role and
//! scopes and the hash of their device token. Tokens themselves are never stored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StoreError, read_yaml, write_yaml};
use crate::protocol::{Role, Scope};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// Hex sha256 of the raw public key.
    pub id: String,
    /// Raw Ed25519 public key, base64url.
    pub public_key: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    /// Hex sha256 of the device token; empty while a token is owed (just approved, or
    /// rotated): the device's next connect with the gateway token is issued a fresh one.
    pub token_hash: String,
    pub created: jiff::Timestamp,
    #[serde(default)]
    pub last_seen: Option<jiff::Timestamp>,
    /// Paired because its key is in `gateway/trusted_keys` (or is the gateway's own key):
    /// its scopes follow that file, and removing the line unpairs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trusted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DevicesFile {
    devices: Vec<DeviceRecord>,
}

/// The paired devices, loaded once by the gateway and written back whole on every change.
#[derive(Debug)]
pub struct DeviceStore {
    path: PathBuf,
    devices: Vec<DeviceRecord>,
}

impl DeviceStore {
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let file: DevicesFile = read_yaml(path)?.unwrap_or_default();
        Ok(DeviceStore {
            path: path.to_path_buf(),
            devices: file.devices,
        })
    }

    pub fn get(&self, id: &str) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut DeviceRecord> {
        self.devices.iter_mut().find(|d| d.id == id)
    }

    pub fn all(&self) -> &[DeviceRecord] {
        &self.devices
    }

    /// Removes a device and persists the file; returns the removed record.
    pub fn remove(&mut self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let Some(i) = self.devices.iter().position(|d| d.id == id) else {
            return Ok(None);
        };
        let removed = self.devices.remove(i);
        if let Err(e) = self.save() {
            self.devices.insert(i, removed);
            return Err(e);
        }
        Ok(Some(removed))
    }

    /// Adds or replaces a device and persists the file before returning.
    pub fn upsert(&mut self, record: DeviceRecord) -> Result<(), StoreError> {
        match self.get_mut(&record.id) {
            Some(existing) => *existing = record,
            None => self.devices.push(record),
        }
        self.save()
    }

    pub fn save(&self) -> Result<(), StoreError> {
        write_yaml(
            &self.path,
            &DevicesFile {
                devices: self.devices.clone(),
            },
        )
    }
}
