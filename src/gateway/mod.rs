//! The gateway: the one long-lived daemon per host. It owns the control plane (accepting
//! WebSocket connections, the challenge handshake, auth and pairing, scope checks, event
//! fan-out) and nothing else: all durable state is in VIBER_HOME files, so a kill -9 loses
//! nothing.
//!
//! [`serve`] takes the listener and the shutdown signal from its caller (as mini-redis
//! does), so tests run many gateways in parallel on port 0.

pub mod auth;
pub mod conn;
pub mod idempotency;
pub mod instance;
pub mod methods;
pub mod outbox;
pub mod pairing;
pub mod pending;
pub mod ratelimit;
pub mod runs;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::protocol::handshake::{Health, PresenceEntry};
use crate::protocol::{Policy, Role, Scope, close, events};
use crate::store::devices::DeviceStore;
use crate::store::{Config, Home, StoreError};
use outbox::{Outbox, Pushed};
use pending::PendingStore;
use ratelimit::RateLimiter;

/// A live, authenticated connection as the rest of the gateway sees it.
pub struct ConnHandle {
    pub id: u64,
    pub conn_id: String,
    pub outbox: Arc<Outbox>,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub device_id: String,
    pub presence: PresenceEntry,
    /// Runs whose terminal output this connection asked for.
    pub subscriptions: Mutex<HashSet<String>>,
}

/// Shared state of one gateway.
pub struct Gateway {
    pub home: Home,
    pub config: Config,
    token: String,
    pub url: String,
    pub devices: Mutex<DeviceStore>,
    devices_dirty: AtomicBool,
    pub pending: Mutex<PendingStore>,
    /// Keys paired without a request: `gateway/trusted_keys` and the owner's key.
    pub trust: pairing::Trust,
    pub idempotency: idempotency::IdempotencyStore,
    pub limiter: Mutex<RateLimiter>,
    pub runs: runs::Runs,
    /// By connection id, which rises with each connection: iteration is oldest first.
    conns: RwLock<BTreeMap<u64, Arc<ConnHandle>>>,
    next_conn: AtomicU64,
    state_version: AtomicU64,
    started: Instant,
    pub started_at: jiff::Timestamp,
    /// Set once shutdown begins: closing connections announce nothing to each other.
    shutting_down: AtomicBool,
}

/// How many presence entries `hello-ok` carries at most: every byte of it is paid once
/// per handshake, and `system.presence` has the whole list.
pub const PRESENCE_SNAPSHOT_MAX: usize = 20;

impl Gateway {
    /// Loads the gateway's files from `home`. A file that does not parse is an error that
    /// names it; nothing is reset.
    pub fn load(home: Home, config: Config, url: String) -> Result<Self, StoreError> {
        let token_path = home.gateway_token();
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| StoreError::io("cannot read gateway token", &token_path, e))?
            .trim()
            .to_string();
        if token.len() < 32 {
            return Err(StoreError::Invalid {
                path: token_path,
                message: "the gateway token is shorter than 32 characters".into(),
            });
        }
        let devices = DeviceStore::load(&home.devices())?;
        let pending = PendingStore::load(&home.pending())?;
        let trust = pairing::Trust::load(&home)?;
        let idempotency = idempotency::IdempotencyStore::load(&home.idempotency())?;
        let runs = runs::Runs::load(&home)?;
        Ok(Gateway {
            token,
            url,
            devices: Mutex::new(devices),
            devices_dirty: AtomicBool::new(false),
            pending: Mutex::new(pending),
            trust,
            idempotency,
            runs,
            limiter: Mutex::new(RateLimiter::default()),
            conns: RwLock::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            state_version: AtomicU64::new(1),
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            shutting_down: AtomicBool::new(false),
            home,
            config,
        })
    }

    pub fn policy(&self) -> Policy {
        Policy {
            max_payload: self.config.gateway.max_payload,
            max_buffered_bytes: self.config.gateway.max_buffered_bytes,
            tick_interval_ms: self.config.gateway.tick_interval_ms,
        }
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn health(&self) -> Health {
        Health {
            ok: true,
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_ms: self.uptime_ms(),
            connections: self.read_conns().len(),
        }
    }

    pub fn state_version(&self) -> u64 {
        self.state_version.load(Ordering::Relaxed)
    }

    pub(crate) fn read_conns(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<ConnHandle>>> {
        self.conns.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every connection, oldest first.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        self.read_conns()
            .values()
            .map(|c| c.presence.clone())
            .collect()
    }

    pub(crate) fn token_matches(&self, candidate: &str) -> bool {
        crate::identity::secrets_equal(&self.token, candidate)
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The first entries of presence, for `hello-ok`: a snapshot that grew with every
    /// connection would make each handshake cost O(connections). `system.presence`
    /// lists them all; `health.connections` counts them.
    pub fn presence_snapshot(&self) -> Vec<PresenceEntry> {
        self.read_conns()
            .values()
            .take(PRESENCE_SNAPSHOT_MAX)
            .map(|c| c.presence.clone())
            .collect()
    }

    pub fn register(&self, conn: Arc<ConnHandle>) {
        let entry = conn.presence.clone();
        let count = {
            let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
            conns.insert(conn.id, conn);
            conns.len()
        };
        self.presence_changed("connected", &entry, count);
    }

    pub fn unregister(&self, id: u64) {
        let (removed, count) = {
            let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
            let removed = conns.remove(&id);
            (removed, conns.len())
        };
        if let Some(conn) = removed
            && !self.shutting_down.load(Ordering::Relaxed)
        {
            self.presence_changed("disconnected", &conn.presence, count);
        }
    }

    /// Presence events carry the change, not the whole list: a full list on every connect
    /// and close costs O(connections) per event and O(connections²) overall.
    fn presence_changed(&self, change: &str, entry: &PresenceEntry, count: usize) {
        let v = self.state_version.fetch_add(1, Ordering::Relaxed) + 1;
        self.broadcast(
            events::PRESENCE,
            &json!({"change": change, "entry": entry, "count": count, "stateVersion": v}),
        );
    }

    /// Sends an event to every connection allowed to see it. The payload is serialized once.
    pub fn broadcast(&self, event: &str, payload: &serde_json::Value) {
        let payload = payload.to_string();
        let need = events::required_scope(event);
        for conn in self.read_conns().values() {
            if need.is_some_and(|s| !s.is_satisfied_by(&conn.scopes)) {
                continue;
            }
            if conn.outbox.push_event(event, &payload) == Pushed::Closed {
                tracing::debug!(conn = %conn.conn_id, event, "not delivered: connection closing");
            }
        }
    }

    /// Sends an event to one connection; false when it is gone or closing.
    pub fn send_to(&self, conn_id: u64, event: &str, payload: &serde_json::Value) -> bool {
        let conns = self.read_conns();
        let Some(conn) = conns.get(&conn_id) else {
            return false;
        };
        conn.outbox.push_event(event, &payload.to_string()) != Pushed::Closed
    }

    /// Closes every connection of `device_id` (revocation).
    pub fn close_device(&self, device_id: &str, code: u16, reason: &str) -> usize {
        let conns = self.read_conns();
        let mut n = 0;
        for c in conns.values().filter(|c| c.device_id == device_id) {
            c.outbox.close(code, reason);
            n += 1;
        }
        n
    }

    /// Closes every connection of `device_id` but `keep` (the caller of a rotation must
    /// still receive its answer).
    pub fn close_device_except(
        &self,
        device_id: &str,
        keep: u64,
        code: u16,
        reason: &str,
    ) -> usize {
        let conns = self.read_conns();
        let mut n = 0;
        for c in conns
            .values()
            .filter(|c| c.device_id == device_id && c.id != keep)
        {
            c.outbox.close(code, reason);
            n += 1;
        }
        n
    }

    fn close_all(&self, code: u16, reason: &str) {
        for c in self.read_conns().values() {
            c.outbox.close(code, reason);
        }
    }

    /// Records that a device was seen; persisted lazily by the tick task.
    pub fn touch_device(&self, device_id: &str) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = devices.get_mut(device_id) {
            d.last_seen = Some(jiff::Timestamp::now());
            self.devices_dirty.store(true, Ordering::Relaxed);
        }
    }

    fn flush_devices(&self) {
        if self.devices_dirty.swap(false, Ordering::Relaxed) {
            let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = devices.save() {
                tracing::warn!("cannot save last_seen: {e}");
                self.devices_dirty.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, then stops accepting,
/// closes every connection with 1001 and returns once they are gone (or after 3 s).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ticker = tokio::spawn(tick_loop(gateway.clone()));
    let supervisor = tokio::spawn(runs::supervise(gateway.clone()));
    runs::schedule(&gateway);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(conn::handle(gateway.clone(), stream, peer, stop_rx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!("shutting down: closing {} connection(s)", tasks.len());
    gateway.shutting_down.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    gateway.close_all(close::GOING_AWAY, "gateway shutting down");
    let drained = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("{} connection(s) did not close in time", tasks.len());
        tasks.abort_all();
    }
    ticker.abort();
    supervisor.abort();
    gateway.flush_devices();
    Ok(())
}

async fn tick_loop(gateway: Arc<Gateway>) {
    let period = Duration::from_millis(gateway.config.gateway.tick_interval_ms);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut last_flush = Instant::now();
    loop {
        interval.tick().await;
        n += 1;
        let ts = jiff::Timestamp::now().as_millisecond();
        gateway.broadcast(events::TICK, &json!({ "ts": ts }));
        if n.is_multiple_of(4) {
            let health = serde_json::to_value(gateway.health()).unwrap_or_default();
            gateway.broadcast(events::HEALTH, &health);
        }
        if last_flush.elapsed() >= Duration::from_secs(30) {
            gateway.flush_devices();
            last_flush = Instant::now();
        }
    }
}
