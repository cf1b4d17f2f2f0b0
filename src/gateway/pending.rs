//! `gateway/pending.yaml`: pairing requests from devices the gateway does not know yet.
//! They expire after five minutes, survive restarts, and are capped so a flood of new keys
//! cannot grow the file without bound.
//!
//! A rejected request stays (marked `rejected`) until it would have expired, so a device
//! that keeps reconnecting learns it was refused instead of filing a fresh request every
//! second for the operator to refuse again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{Role, Scope};
use crate::store::{StoreError, read_yaml, write_yaml};

pub const TTL_SECS: i64 = 300;
pub const MAX_PENDING: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRequest {
    pub request_id: String,
    pub device_id: String,
    pub public_key: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub peer: String,
    pub created: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rejected: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl PendingRequest {
    pub fn expires(&self) -> jiff::Timestamp {
        self.created + jiff::SignedDuration::from_secs(TTL_SECS)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PendingFile {
    requests: Vec<PendingRequest>,
}

#[derive(Debug)]
pub struct PendingStore {
    path: PathBuf,
    requests: Vec<PendingRequest>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// A new request was stored.
    New(String),
    /// The device already had a live request: same id.
    Existing(String),
    /// Too many pending requests.
    Full,
    /// The device's request was rejected and has not expired yet.
    Rejected(String),
}

impl PendingStore {
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let file: PendingFile = read_yaml(path)?.unwrap_or_default();
        Ok(PendingStore {
            path: path.to_path_buf(),
            requests: file.requests,
        })
    }

    fn expire(&mut self, now: jiff::Timestamp) -> bool {
        let before = self.requests.len();
        self.requests
            .retain(|r| now.as_second() - r.created.as_second() < TTL_SECS);
        before != self.requests.len()
    }

    pub fn live(&mut self, now: jiff::Timestamp) -> &[PendingRequest] {
        if self.expire(now) {
            let _ = self.save();
        }
        &self.requests
    }

    /// Requests still waiting for a decision (not rejected, not expired).
    pub fn waiting(&mut self, now: jiff::Timestamp) -> Vec<PendingRequest> {
        self.live(now)
            .iter()
            .filter(|r| !r.rejected)
            .cloned()
            .collect()
    }

    /// The waiting request `request_id`, if it is live and undecided.
    pub fn get_waiting(
        &mut self,
        request_id: &str,
        now: jiff::Timestamp,
    ) -> Option<PendingRequest> {
        self.live(now)
            .iter()
            .find(|r| r.request_id == request_id && !r.rejected)
            .cloned()
    }

    /// Removes a request (approved) and persists the file.
    pub fn remove(&mut self, request_id: &str) -> Result<(), StoreError> {
        self.requests.retain(|r| r.request_id != request_id);
        self.save()
    }

    /// Drops whatever a device had pending (it was paired another way).
    pub fn forget_device(&mut self, device_id: &str) -> Result<(), StoreError> {
        let before = self.requests.len();
        self.requests.retain(|r| r.device_id != device_id);
        if before != self.requests.len() {
            self.save()?;
        }
        Ok(())
    }

    /// Marks a waiting request rejected and persists the file.
    pub fn reject(
        &mut self,
        request_id: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<PendingRequest>, StoreError> {
        self.expire(now);
        let Some(r) = self
            .requests
            .iter_mut()
            .find(|r| r.request_id == request_id && !r.rejected)
        else {
            return Ok(None);
        };
        r.rejected = true;
        let r = r.clone();
        self.save()?;
        Ok(Some(r))
    }

    pub fn request(
        &mut self,
        mut req: PendingRequest,
        now: jiff::Timestamp,
    ) -> Result<Requested, StoreError> {
        self.expire(now);
        if let Some(existing) = self.requests.iter().find(|r| r.device_id == req.device_id) {
            if existing.rejected {
                return Ok(Requested::Rejected(existing.request_id.clone()));
            }
            return Ok(Requested::Existing(existing.request_id.clone()));
        }
        if self.requests.len() >= MAX_PENDING {
            return Ok(Requested::Full);
        }
        req.created = now;
        let id = req.request_id.clone();
        self.requests.push(req);
        self.save()?;
        Ok(Requested::New(id))
    }

    fn save(&self) -> Result<(), StoreError> {
        write_yaml(
            &self.path,
            &PendingFile {
                requests: self.requests.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dev: &str) -> PendingRequest {
        PendingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            device_id: dev.into(),
            public_key: "k".into(),
            name: "n".into(),
            role: Role::Operator,
            scopes: vec![Scope::OperatorRead],
            peer: "10.0.0.1:5".into(),
            created: jiff::Timestamp::UNIX_EPOCH,
            rejected: false,
        }
    }

    #[test]
    fn same_device_same_id_until_expiry_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pending.yaml");
        let now = jiff::Timestamp::now();
        let mut s = PendingStore::load(&p).unwrap();
        let Requested::New(id) = s.request(req("a"), now).unwrap() else {
            panic!()
        };
        let mut s = PendingStore::load(&p).unwrap();
        assert_eq!(
            s.request(req("a"), now).unwrap(),
            Requested::Existing(id.clone())
        );
        let later = now + jiff::SignedDuration::from_secs(TTL_SECS + 1);
        assert!(s.live(later).is_empty());
        assert!(matches!(s.request(req("a"), later).unwrap(), Requested::New(n) if n != id));
    }

    #[test]
    fn a_flood_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PendingStore::load(&dir.path().join("p.yaml")).unwrap();
        let now = jiff::Timestamp::now();
        for i in 0..MAX_PENDING {
            assert!(matches!(
                s.request(req(&i.to_string()), now).unwrap(),
                Requested::New(_)
            ));
        }
        assert_eq!(s.request(req("x"), now).unwrap(), Requested::Full);
    }

    #[test]
    fn a_rejected_request_sticks_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PendingStore::load(&dir.path().join("p.yaml")).unwrap();
        let now = jiff::Timestamp::now();
        let Requested::New(id) = s.request(req("a"), now).unwrap() else {
            panic!()
        };
        assert!(s.reject(&id, now).unwrap().is_some());
        assert!(s.reject(&id, now).unwrap().is_none(), "only once");
        assert!(s.waiting(now).is_empty());
        let mut s = PendingStore::load(&dir.path().join("p.yaml")).unwrap();
        assert_eq!(
            s.request(req("a"), now).unwrap(),
            Requested::Rejected(id.clone())
        );
        let later = now + jiff::SignedDuration::from_secs(TTL_SECS + 1);
        assert!(matches!(s.request(req("a"), later).unwrap(), Requested::New(n) if n != id));
    }
}
