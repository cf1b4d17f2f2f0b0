//! Idempotency keys for side-effecting methods (DESIGN.md section 5), persisted in
//! `gateway/idempotency.jsonl` so a retry after a gateway crash still gets the first
//! answer and causes no second effect.
//!
//! Same key + same method and params: the recorded result again. Same key + anything else:
//! `IDEMPOTENCY_CONFLICT`. A duplicate arriving while the first is still in flight waits for
//! it. Only successes are recorded: a failed attempt had no effect, so retrying it is fine.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::protocol::{ErrorCode, ErrorShape};
use crate::store::{StoreError, fsutil};

pub const RETENTION_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    key: String,
    method: String,
    hash: String,
    result: Value,
    ts: jiff::Timestamp,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Record>,
    inflight: HashMap<String, Arc<Notify>>,
}

pub struct IdempotencyStore {
    path: PathBuf,
    state: Mutex<State>,
}

/// Hash of what a request asks for: method and params without the key itself.
/// serde_json maps are sorted, so equal params hash equal whatever their key order.
pub fn request_hash(method: &str, params: &Value) -> String {
    let mut p = params.clone();
    if let Some(obj) = p.as_object_mut() {
        obj.remove("idempotencyKey");
    }
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(p.to_string().as_bytes());
    hex::encode(h.finalize())
}

impl IdempotencyStore {
    /// Loads the records younger than 24 h; a torn last line (crash mid-append) is skipped,
    /// any other bad line is an error naming it.
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let mut state = State::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(StoreError::io("cannot read", path, e)),
        };
        let now = jiff::Timestamp::now();
        let lines: Vec<&str> = text.lines().collect();
        let mut expired = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) if now.as_second() - r.ts.as_second() < RETENTION_SECS => {
                    state.records.insert(r.key.clone(), r);
                }
                Ok(_) => expired += 1,
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                    tracing::warn!("{}: ignoring a torn last line", path.display());
                }
                Err(e) => {
                    return Err(StoreError::Parse {
                        path: path.to_path_buf(),
                        location: Some((i + 1, e.column())),
                        message: e.to_string(),
                    });
                }
            }
        }
        let store = IdempotencyStore {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        };
        if expired > 0 || (!text.is_empty() && !text.ends_with('\n')) {
            store.compact()?;
        }
        Ok(store)
    }

    fn compact(&self) -> Result<(), StoreError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for r in state.records.values() {
            out.push_str(&serde_json::to_string(r).expect("serializes"));
            out.push('\n');
        }
        fsutil::write_atomic(&self.path, out.as_bytes(), 0o600)
    }

    /// Runs `effect` at most once per key. The record is fsynced before the answer leaves.
    /// Keys are per device (`scope`): one operator's key never replays another's result.
    pub async fn run<F, Fut>(
        &self,
        scope: &str,
        key: &str,
        method: &str,
        params: &Value,
        effect: F,
    ) -> Result<Value, ErrorShape>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ErrorShape>>,
    {
        let hash = request_hash(method, params);
        let scoped = format!("{scope}:{key}");
        let notify = loop {
            let waiter = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = s.records.get(&scoped) {
                    if r.method == method && r.hash == hash {
                        return Ok(r.result.clone());
                    }
                    return Err(conflict(key, &r.method));
                }
                match s.inflight.get(&scoped) {
                    Some(n) => n.clone(),
                    None => {
                        let n = Arc::new(Notify::new());
                        s.inflight.insert(scoped.clone(), n.clone());
                        break n;
                    }
                }
            };
            let notified = waiter.notified();
            // Re-check under the lock: the first may have finished between the two steps.
            {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if !s.inflight.contains_key(&scoped) {
                    continue;
                }
            }
            notified.await;
        };
        // Whatever happens to the effect (an error, a panic, a dropped connection), the
        // waiters are released: they then run it themselves or find its record.
        let _inflight = Inflight {
            store: self,
            key: scoped.clone(),
            notify,
        };

        let result = effect().await;
        if let Ok(value) = &result {
            let record = Record {
                key: scoped.clone(),
                method: method.to_string(),
                hash,
                result: value.clone(),
                ts: jiff::Timestamp::now(),
            };
            if let Err(e) = fsutil::append_line(
                &self.path,
                &serde_json::to_string(&record).expect("serializes"),
            ) {
                return Err(ErrorShape::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the effect happened but its idempotency record could not be saved: {e}"
                    ),
                ));
            }
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.records.insert(scoped, record);
            // Forget records past their 24 h now and then, so a long-lived gateway does
            // not grow without bound (the file is compacted at the next start).
            if s.records.len().is_multiple_of(256) {
                let now = jiff::Timestamp::now().as_second();
                s.records
                    .retain(|_, r| now - r.ts.as_second() < RETENTION_SECS);
            }
        }
        result
    }
}

/// Removes an in-flight marker and wakes its waiters when dropped.
struct Inflight<'a> {
    store: &'a IdempotencyStore,
    key: String,
    notify: Arc<Notify>,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.store
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inflight
            .remove(&self.key);
        self.notify.notify_waiters();
    }
}

fn conflict(key: &str, first_method: &str) -> ErrorShape {
    ErrorShape::new(
        ErrorCode::IdempotencyConflict,
        format!("idempotency key {key:?} was already used for a different {first_method} request"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn same_key_same_params_runs_once_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idem.jsonl");
        let calls = AtomicU32::new(0);
        let store = IdempotencyStore::load(&p).unwrap();
        let params = json!({"goal": "x", "idempotencyKey": "k"});
        for _ in 0..2 {
            let v = store
                .run("dev", "k", "run.start", &params, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(json!({"runId": "r1"}))
                })
                .await
                .unwrap();
            assert_eq!(v["runId"], "r1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let store = IdempotencyStore::load(&p).unwrap();
        let v = store
            .run(
                "dev",
                "k",
                "run.start",
                &json!({"idempotencyKey": "k", "goal": "x"}),
                || async { panic!("must not run again") },
            )
            .await
            .unwrap();
        assert_eq!(v["runId"], "r1");
        let e = store
            .run("dev", "k", "run.start", &json!({"goal": "y"}), || async {
                Ok(json!({}))
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::IdempotencyConflict);
        // Another device's identical key is another request.
        let v = store
            .run("other", "k", "run.start", &json!({"goal": "y"}), || async {
                Ok(json!({"runId": "r2"}))
            })
            .await
            .unwrap();
        assert_eq!(v["runId"], "r2");
    }

    #[tokio::test]
    async fn a_failed_effect_releases_its_waiters_and_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyStore::load(&dir.path().join("i.jsonl")).unwrap();
        let e = store
            .run("d", "k", "m", &json!({}), || async {
                Err(ErrorShape::new(ErrorCode::Unavailable, "try later"))
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        let v = store
            .run("d", "k", "m", &json!({}), || async { Ok(json!(2)) })
            .await
            .unwrap();
        assert_eq!(v, json!(2));
    }

    #[tokio::test]
    async fn a_duplicate_in_flight_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(IdempotencyStore::load(&dir.path().join("i.jsonl")).unwrap());
        let calls = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (store, calls, gate) = (store.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .run("dev", "k", "m", &json!({}), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(json!(1))
                    })
                    .await
            }));
        }
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_waiters();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), json!(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_other_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.jsonl");
        let good = serde_json::to_string(&Record {
            key: "a".into(),
            method: "m".into(),
            hash: "h".into(),
            result: json!(1),
            ts: jiff::Timestamp::now(),
        })
        .unwrap();
        std::fs::write(&p, format!("{good}\n{{\"key\":\"b\",")).unwrap();
        IdempotencyStore::load(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{good}\n"));
        std::fs::write(&p, format!("garbage\n{good}\n")).unwrap();
        let err = IdempotencyStore::load(&p)
            .err()
            .expect("garbage is an error");
        assert!(err.to_string().contains(":1:"), "{err}");
    }
}
