//! The run registry: a cache of every run's summary, folded from the session logs at start
//! and kept current from the workers' events; the queue with its concurrency limit; the
//! worker processes it spawns and supervises; and the `run.*` / `node.*` methods.
//!
//! The gateway only routes: workers write their own session logs, so the registry can be
//! rebuilt from disk at any time, and a run outlives a gateway restart.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConnHandle, Gateway};
use crate::agent::session::{self, SessionLog, tmux_session_name};
use crate::agent::worker::worker_alive;
use crate::protocol::runs::{RunStatus, RunSummary, SessionEvent, Task, kind};
use crate::protocol::{ErrorCode, ErrorShape, events};
use crate::store::{StoreError, fsutil};

struct Entry {
    summary: RunSummary,
    task: Task,
    node_conn: Option<u64>,
    cancel_requested: Option<Instant>,
    /// A worker process exists (spawned by us, or found alive after a restart).
    active: bool,
    /// When it became active: a worker that never reports its pid is probed after a while.
    active_since: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Entry>,
    queue: VecDeque<String>,
}

#[derive(Default)]
pub struct Runs {
    inner: Mutex<Inner>,
    /// Pending approvals by id. Rebuilt by workers re-sending theirs after a reconnect,
    /// so a gateway restart loses none.
    approvals: Mutex<HashMap<String, Value>>,
    /// Runs whose dead worker is being dealt with right now.
    ending: Mutex<std::collections::HashSet<String>>,
}

fn not_found(run_id: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::NotFound, format!("no run {run_id:?}"))
}

fn store_err(e: StoreError) -> ErrorShape {
    ErrorShape::new(ErrorCode::Unavailable, e.to_string())
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the registry from every session log under VIBER_HOME. Runs whose worker
    /// died while no gateway watched are marked `interrupted`; queued runs are queued again.
    pub fn load(gw_home: &crate::store::Home) -> Result<Runs, StoreError> {
        let runs = Runs::default();
        let mut found: Vec<(RunSummary, Task)> = Vec::new();
        let Ok(agents) = std::fs::read_dir(gw_home.agents()) else {
            return Ok(runs);
        };
        for agent in agents.flatten() {
            let Ok(files) = std::fs::read_dir(agent.path().join("sessions")) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_none_or(|e| e != "jsonl") {
                    continue;
                }
                // One unreadable log must not keep the gateway (and every other run) down:
                // say which, leave the file as it is, go on.
                let events = match session::read_events(&path) {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::error!("{e}; this run is not loaded, the file is left unchanged");
                        continue;
                    }
                };
                let Some(summary) = session::fold(gw_home, &events) else {
                    tracing::warn!("{}: no run.created event; ignored", path.display());
                    continue;
                };
                let task = events
                    .iter()
                    .find(|e| e.kind == kind::CREATED)
                    .and_then(|e| serde_json::from_value(e.payload["task"].clone()).ok());
                if let Some(task) = task {
                    found.push((summary, task));
                }
            }
        }
        found.sort_by_key(|(s, _)| s.created_at);
        let mut inner = runs.lock();
        for (mut summary, task) in found {
            let id = summary.run_id.clone();
            let mut active = false;
            if !summary.status.is_terminal() {
                if worker_alive(gw_home, &id) {
                    active = true;
                } else if summary.status == RunStatus::Queued && summary.worker_pid.is_none() {
                    inner.queue.push_back(id.clone());
                } else {
                    let ev = append(
                        &summary.session_log,
                        &id,
                        kind::STATUS,
                        json!({"status": "interrupted", "reason": "the worker died while no gateway was watching", "exitCode": 6}),
                    )?;
                    session::apply(&mut summary, &ev);
                }
            }
            inner.runs.insert(
                id,
                Entry {
                    summary,
                    task,
                    node_conn: None,
                    cancel_requested: None,
                    active,
                    active_since: active.then(Instant::now),
                },
            );
        }
        drop(inner);
        Ok(runs)
    }

    fn summary(&self, inner: &Inner, id: &str) -> Option<RunSummary> {
        let e = inner.runs.get(id)?;
        let mut s = e.summary.clone();
        s.queue_position = inner.queue.iter().position(|q| q == id).map(|p| p + 1);
        Some(s)
    }

    pub fn get(&self, id: &str) -> Option<RunSummary> {
        let inner = self.lock();
        self.summary(&inner, id)
    }
}

fn append(
    log_path: &str,
    run_id: &str,
    kind: &str,
    payload: Value,
) -> Result<SessionEvent, StoreError> {
    let mut log = SessionLog::open(std::path::Path::new(log_path), run_id)?;
    log.append(kind, payload, true)
}

/// The event a session event becomes on the wire.
fn broadcast_event(gw: &Gateway, ev: &SessionEvent) {
    let name = match ev.kind.as_str() {
        kind::STATUS => events::RUN_STATUS,
        kind::PROGRESS => events::RUN_PROGRESS,
        _ => return,
    };
    let mut payload = ev.payload.clone();
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("runId".into(), json!(ev.run_id));
        obj.insert("seq".into(), json!(ev.seq));
    }
    gw.broadcast(name, &payload);
}

fn new_run_id() -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
    format!("{now}-{}", crate::identity::random_hex(3))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StartParams {
    task: Task,
    #[serde(default)]
    task_file: Option<String>,
    #[allow(dead_code)]
    idempotency_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunIdParams {
    run_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListParams {
    #[serde(default)]
    status: Option<RunStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ControlParams {
    run_id: String,
    action: String,
    /// rescope: the new goal.
    #[serde(default)]
    goal: Option<String>,
    /// reprioritize: the new 1-based queue position.
    #[serde(default)]
    position: Option<usize>,
    #[allow(dead_code)]
    idempotency_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeParams {
    run_id: String,
    #[serde(default)]
    terminal: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TerminalReadParams {
    run_id: String,
    step: u32,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimParams {
    run_id: String,
    pid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OutputParams {
    run_id: String,
    step: u32,
    offset: u64,
    data: String,
}

pub fn decode<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, ErrorShape> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params).map_err(|e| ErrorShape::invalid(format!("invalid params: {e}")))
}

/// `run.start`: record the run, queue it, start workers as the limit allows.
pub fn start(gw: &Arc<Gateway>, params: Value) -> Result<Value, ErrorShape> {
    let p: StartParams = decode(params)?;
    p.task
        .validate()
        .and_then(|()| crate::evidence::checks::validate(&p.task.accept))
        .map_err(ErrorShape::invalid)?;
    let workdir = p.task.workdir.clone().unwrap_or_default();
    if !std::path::Path::new(&workdir).is_absolute() {
        return Err(ErrorShape::invalid("task.workdir must be an absolute path"));
    }
    let mode = p.task.mode.unwrap_or(gw.config.autonomy.default_mode);
    let run_id = new_run_id();
    let agent = session::DEFAULT_AGENT;
    let workspace = session::workspace_path(&gw.home, &run_id);
    fsutil::ensure_private_dir(&workspace.join("evidence/terminal")).map_err(store_err)?;
    let log_path = session::session_path(&gw.home, agent, &run_id);
    let mut created = session::created_payload(&p.task, mode, agent, &workspace);
    if let Some(f) = &p.task_file {
        created["taskFile"] = json!(f);
    }
    let mut log = SessionLog::open(&log_path, &run_id).map_err(store_err)?;
    let ev = log
        .append(kind::CREATED, created, true)
        .map_err(store_err)?;
    let summary = session::fold(&gw.home, std::slice::from_ref(&ev))
        .ok_or_else(|| ErrorShape::internal("cannot fold a new run"))?;
    {
        let mut inner = gw.runs.lock();
        inner.runs.insert(
            run_id.clone(),
            Entry {
                summary,
                task: p.task,
                node_conn: None,
                cancel_requested: None,
                active: false,
                active_since: None,
            },
        );
        inner.queue.push_back(run_id.clone());
    }
    let status_ev = log
        .append(kind::STATUS, json!({"status": "queued"}), false)
        .map_err(store_err)?;
    gw.runs.apply(gw, &status_ev);
    schedule(gw);
    let s = gw.runs.get(&run_id).ok_or_else(|| not_found(&run_id))?;
    Ok(json!({
        "runId": run_id,
        "status": s.status,
        "workspace": s.workspace,
        "sessionLog": s.session_log,
        "queuePosition": s.queue_position,
    }))
}

impl Runs {
    /// Folds an event into the cache and tells the operators.
    fn apply(&self, gw: &Arc<Gateway>, ev: &SessionEvent) {
        let ended = {
            let mut inner = self.lock();
            let Some(e) = inner.runs.get_mut(&ev.run_id) else {
                return;
            };
            if ev.seq <= e.summary.seq && ev.kind != kind::CREATED {
                return; // already folded (a worker re-sending after a reconnect)
            }
            let was_terminal = e.summary.status.is_terminal();
            if ev.seq > e.summary.seq + 1 {
                // Events written while no gateway listened: the log has them all.
                let path = std::path::Path::new(&e.summary.session_log);
                match session::read_events(path).map(|evs| session::fold(&gw.home, &evs)) {
                    Ok(Some(mut s)) if s.seq >= ev.seq => {
                        s.worker_pid = s.worker_pid.or(e.summary.worker_pid);
                        e.summary = s;
                    }
                    _ => session::apply(&mut e.summary, ev),
                }
            } else {
                session::apply(&mut e.summary, ev);
            }
            let ended = !was_terminal && e.summary.status.is_terminal();
            if ended {
                e.active = false;
                e.node_conn = None;
            }
            ended
        };
        broadcast_event(gw, ev);
        if ended {
            self.approvals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, a| a["runId"] != ev.run_id.as_str());
            schedule(gw);
        }
    }
}

/// Starts queued runs while fewer than `runs.concurrency` workers are active.
pub fn schedule(gw: &Arc<Gateway>) {
    let limit = gw.config.runs.concurrency.max(1);
    loop {
        let next = {
            let mut inner = gw.runs.lock();
            let active = inner.runs.values().filter(|e| e.active).count();
            if active >= limit {
                return;
            }
            let Some(id) = inner.queue.pop_front() else {
                return;
            };
            if let Some(e) = inner.runs.get_mut(&id) {
                e.active = true;
                e.active_since = Some(Instant::now());
            }
            id
        };
        if let Err(e) = spawn_worker(gw, &next) {
            tracing::error!(run = %next, "cannot start a worker: {e}");
            let log = gw
                .runs
                .get(&next)
                .map(|s| s.session_log)
                .unwrap_or_default();
            if let Ok(ev) = append(
                &log,
                &next,
                kind::STATUS,
                json!({"status": "failed", "reason": format!("cannot start a worker: {e}"), "exitCode": 1}),
            ) {
                gw.runs.apply(gw, &ev);
            }
        }
    }
}

fn spawn_worker(gw: &Arc<Gateway>, run_id: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let workspace = session::workspace_path(&gw.home, run_id);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(workspace.join("worker.log"))
        .map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--home")
        .arg(gw.home.root())
        .args(["node", "--run", run_id, "--gateway", &gw.url])
        .env_remove("VIBER_GATEWAY_TOKEN")
        .env_remove("VIBER_GATEWAY_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // Its own process group: a Ctrl-C or SIGTERM aimed at the gateway must not kill
        // the run; the run outlives a gateway restart.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    tracing::info!(run = %run_id, pid = child.id().unwrap_or(0), "worker started");
    let gw = gw.clone();
    let id = run_id.to_string();
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::info!(run = %id, "worker exited: {status:?}");
        // It sleeps and reads files: not on a runtime thread.
        let _ = tokio::task::spawn_blocking(move || worker_gone(&gw, &id)).await;
    });
    Ok(())
}

/// The worker process is gone: re-read its log (it may have finished just before) and mark
/// the run `interrupted` if it did not end.
fn worker_gone(gw: &Arc<Gateway>, run_id: &str) {
    // The child's exit and the supervisor can both notice: one of them ends the run.
    if !gw
        .runs
        .ending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(run_id.to_string())
    {
        return;
    }
    end_dead_run(gw, run_id);
    gw.runs
        .ending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(run_id);
}

fn end_dead_run(gw: &Arc<Gateway>, run_id: &str) {
    // A worker that exited at once because another one already holds the run is no
    // reason to end the run: the holder is still at work.
    if worker_alive(&gw.home, run_id) {
        return;
    }
    let Some(s) = gw.runs.get(run_id) else { return };
    let events = session::read_events(std::path::Path::new(&s.session_log)).unwrap_or_default();
    for ev in events.iter().filter(|e| e.seq > s.seq) {
        gw.runs.apply(gw, ev);
    }
    let Some(s) = gw.runs.get(run_id) else { return };
    if s.status.is_terminal() {
        return;
    }
    let cancelled = gw
        .runs
        .lock()
        .runs
        .get(run_id)
        .is_some_and(|e| e.cancel_requested.is_some());
    let (status, reason) = if cancelled {
        ("cancelled", "cancelled by an operator")
    } else {
        (
            "interrupted",
            "the worker process died before the run ended",
        )
    };
    // Processes the dead worker left in tmux would otherwise run on unsupervised.
    let groups: Vec<i32> = events
        .iter()
        .filter_map(|e| e.payload["pgid"].as_i64().map(|p| p as i32))
        .collect();
    crate::terminal::Tmux::new(gw.home.tmux_socket()).kill_session(
        &tmux_session_name(run_id),
        &groups,
        Duration::from_secs(2),
    );
    match append(
        &s.session_log,
        run_id,
        kind::STATUS,
        json!({"status": status, "reason": reason, "exitCode": 6}),
    ) {
        Ok(ev) => gw.runs.apply(gw, &ev),
        Err(e) => tracing::error!(run = %run_id, "cannot record the interruption: {e}"),
    }
}

/// Periodic check for workers the gateway did not spawn itself (found alive after a
/// restart), and for cancellations a worker did not honour in time.
pub async fn supervise(gw: Arc<Gateway>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (adopted, overdue): (Vec<String>, Vec<(String, Option<u32>)>) = {
            let inner = gw.runs.lock();
            let adopted = inner
                .runs
                .iter()
                .filter(|(_, e)| {
                    e.active
                        && !e.summary.status.is_terminal()
                        && (e.summary.worker_pid.is_some()
                            || e.active_since
                                .is_some_and(|t| t.elapsed() > Duration::from_secs(10)))
                })
                .map(|(id, _)| id.clone())
                .collect();
            let overdue = inner
                .runs
                .iter()
                .filter(|(_, e)| {
                    e.cancel_requested
                        .is_some_and(|t| t.elapsed() > Duration::from_secs(5))
                        && !e.summary.status.is_terminal()
                })
                .map(|(id, e)| (id.clone(), e.summary.worker_pid))
                .collect();
            (adopted, overdue)
        };
        for id in adopted {
            if !worker_alive(&gw.home, &id) {
                let gw2 = gw.clone();
                tokio::task::spawn_blocking(move || worker_gone(&gw2, &id));
            }
        }
        for (id, pid) in overdue {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let gw2 = gw.clone();
            tokio::task::spawn_blocking(move || worker_gone(&gw2, &id));
        }
    }
}

pub fn get(gw: &Gateway, params: Value) -> Result<Value, ErrorShape> {
    let p: RunIdParams = decode(params)?;
    let s = gw.runs.get(&p.run_id).ok_or_else(|| not_found(&p.run_id))?;
    Ok(serde_json::to_value(s).expect("serializes"))
}

pub fn list(gw: &Gateway, params: Value) -> Result<Value, ErrorShape> {
    let p: ListParams = decode(params)?;
    let inner = gw.runs.lock();
    let mut runs: Vec<RunSummary> = inner
        .runs
        .keys()
        .filter_map(|id| gw.runs.summary(&inner, id))
        .filter(|s| p.status.is_none_or(|st| s.status == st))
        .collect();
    runs.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    Ok(json!({ "runs": runs }))
}

pub fn control(gw: &Arc<Gateway>, params: Value) -> Result<Value, ErrorShape> {
    let p: ControlParams = decode(params)?;
    match p.action.as_str() {
        "cancel" => cancel(gw, &p.run_id),
        "reprioritize" => {
            let position = p
                .position
                .filter(|n| *n >= 1)
                .ok_or_else(|| ErrorShape::invalid("reprioritize needs a position of 1 or more"))?;
            let mut inner = gw.runs.lock();
            if !inner.runs.contains_key(&p.run_id) {
                return Err(not_found(&p.run_id));
            }
            let Some(at) = inner.queue.iter().position(|q| *q == p.run_id) else {
                return Err(ErrorShape::new(
                    ErrorCode::Conflict,
                    format!(
                        "run {} is not queued: only queued runs can be reprioritized",
                        p.run_id
                    ),
                ));
            };
            let id = inner.queue.remove(at).expect("index from position");
            let to = (position - 1).min(inner.queue.len());
            inner.queue.insert(to, id);
            Ok(json!({"runId": p.run_id, "action": "reprioritize", "queuePosition": to + 1}))
        }
        "pause" | "resume" | "rescope" => {
            let mut payload = json!({"runId": p.run_id, "action": p.action});
            if p.action == "rescope" {
                let goal = p
                    .goal
                    .filter(|g| !g.trim().is_empty())
                    .ok_or_else(|| ErrorShape::invalid("rescope needs a non-empty goal"))?;
                payload["goal"] = json!(goal);
            }
            let delivered = to_worker(gw, &p.run_id, &payload)?;
            Ok(json!({"runId": p.run_id, "action": p.action, "delivered": delivered}))
        }
        other => Err(ErrorShape::invalid(format!(
            "unknown action {other:?} (cancel, pause, resume, rescope, reprioritize)"
        ))),
    }
}

/// Sends a control message to the run's worker. The run must be executing; a worker that
/// is reconnecting gets `UNAVAILABLE` (retryable) rather than a silent loss.
fn to_worker(gw: &Gateway, run_id: &str, payload: &Value) -> Result<bool, ErrorShape> {
    let node = {
        let inner = gw.runs.lock();
        let e = inner.runs.get(run_id).ok_or_else(|| not_found(run_id))?;
        if e.summary.status.is_terminal() || e.summary.status == RunStatus::Queued {
            return Err(ErrorShape::new(
                ErrorCode::Conflict,
                format!("run {run_id} is {}, not executing", e.summary.status),
            ));
        }
        e.node_conn
    };
    match node {
        Some(conn) if gw.send_to(conn, events::NODE_CONTROL, payload) => Ok(true),
        _ => Err(ErrorShape::new(
            ErrorCode::Unavailable,
            format!("the worker of run {run_id} is not connected right now; try again"),
        )
        .retry_after(1000)),
    }
}

fn cancel(gw: &Arc<Gateway>, run_id: &str) -> Result<Value, ErrorShape> {
    let (queued, node, log, status) = {
        let mut inner = gw.runs.lock();
        let pos = inner.queue.iter().position(|q| *q == run_id);
        let e = inner
            .runs
            .get_mut(run_id)
            .ok_or_else(|| not_found(run_id))?;
        if e.summary.status.is_terminal() {
            return Ok(json!({"runId": run_id, "action": "cancel", "status": e.summary.status}));
        }
        e.cancel_requested = Some(Instant::now());
        let node = e.node_conn;
        let log = e.summary.session_log.clone();
        let status = e.summary.status;
        if let Some(pos) = pos {
            inner.queue.remove(pos);
        }
        (pos.is_some(), node, log, status)
    };
    if queued {
        let ev = append(&log, run_id, kind::STATUS, json!({"status": "cancelled", "reason": "cancelled by an operator before it started", "exitCode": 6}))
            .map_err(store_err)?;
        gw.runs.apply(gw, &ev);
        return Ok(json!({"runId": run_id, "action": "cancel", "status": "cancelled"}));
    }
    let delivered = node.is_some_and(|conn| {
        gw.send_to(
            conn,
            events::NODE_CONTROL,
            &json!({"runId": run_id, "action": "cancel"}),
        )
    });
    if !delivered {
        tracing::warn!(run = %run_id, "no worker connected to take the cancel: it will be killed");
    }
    Ok(json!({"runId": run_id, "action": "cancel", "status": status, "delivered": delivered}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChatParams {
    run_id: String,
    text: String,
    #[allow(dead_code)]
    idempotency_key: String,
}

/// `chat.send`: feedback for the planner, delivered at its next step.
pub fn chat(gw: &Gateway, params: Value) -> Result<Value, ErrorShape> {
    let p: ChatParams = decode(params)?;
    if p.text.trim().is_empty() {
        return Err(ErrorShape::invalid("text must not be empty"));
    }
    let delivered = to_worker(
        gw,
        &p.run_id,
        &json!({"runId": p.run_id, "action": "chat", "text": p.text}),
    )?;
    Ok(json!({"runId": p.run_id, "delivered": delivered}))
}

/// `node.approval.request`: a worker asks; every `operator.approvals` connection hears.
pub fn approval_request(
    gw: &Gateway,
    conn: &ConnHandle,
    params: Value,
) -> Result<Value, ErrorShape> {
    let mut p = params;
    let id = p["approvalId"].as_str().unwrap_or("").to_string();
    let run_id = p["runId"].as_str().unwrap_or("").to_string();
    require_owner(gw, conn, &run_id)?;
    if id.is_empty() {
        return Err(ErrorShape::invalid(
            "approvalId and a known runId are required",
        ));
    }
    let secs = p["timeoutSecs"].as_u64().unwrap_or(0);
    if p.get("requestedAt").is_none() {
        let now = jiff::Timestamp::now();
        p["requestedAt"] = json!(now);
        p["expiresAt"] = json!(now + jiff::SignedDuration::from_secs(secs as i64));
    }
    let fresh = gw
        .runs
        .approvals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), p.clone())
        .is_none();
    if fresh {
        gw.broadcast(events::APPROVAL_REQUESTED, &p);
    }
    Ok(json!({"approvalId": id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListApprovals {
    #[serde(default)]
    run_id: Option<String>,
}

pub fn approval_list(gw: &Gateway, params: Value) -> Result<Value, ErrorShape> {
    let p: ListApprovals = decode(params)?;
    let mut list: Vec<Value> = gw
        .runs
        .approvals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|a| p.run_id.as_deref().is_none_or(|r| a["runId"] == r))
        .cloned()
        .collect();
    list.sort_by(|a, b| a["requestedAt"].as_str().cmp(&b["requestedAt"].as_str()));
    Ok(json!({"approvals": list}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResolveParams {
    approval_id: String,
    decision: String,
    #[serde(default)]
    remember: bool,
    #[serde(default)]
    message: Option<String>,
    #[allow(dead_code)]
    idempotency_key: String,
}

/// `approval.resolve`: an operator's answer, passed to the waiting worker.
pub fn approval_resolve(
    gw: &Gateway,
    conn: &ConnHandle,
    params: Value,
) -> Result<Value, ErrorShape> {
    let p: ResolveParams = decode(params)?;
    if p.decision != "allow" && p.decision != "deny" {
        return Err(ErrorShape::invalid("decision must be allow or deny"));
    }
    let approval = gw
        .runs
        .approvals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&p.approval_id)
        .cloned()
        .ok_or_else(|| {
            ErrorShape::new(
                ErrorCode::NotFound,
                format!(
                    "no pending approval {:?} (answered, expired, or its run ended)",
                    p.approval_id
                ),
            )
        })?;
    let run_id = approval["runId"].as_str().unwrap_or("").to_string();
    let answer = json!({
        "runId": run_id,
        "action": "approval",
        "approvalId": p.approval_id,
        "decision": p.decision,
        "remember": p.remember,
        "message": p.message,
        "by": conn.device_id,
    });
    to_worker(gw, &run_id, &answer)?;
    gw.runs
        .approvals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&p.approval_id);
    let resolved = json!({
        "approvalId": p.approval_id,
        "runId": run_id,
        "command": approval["command"],
        "decision": p.decision,
        "remember": p.remember,
        "by": conn.device_id,
    });
    gw.broadcast(events::APPROVAL_RESOLVED, &resolved);
    Ok(resolved)
}

pub fn subscribe(conn: &ConnHandle, params: Value, on: bool) -> Result<Value, ErrorShape> {
    let p: SubscribeParams = decode(params)?;
    let mut subs = conn.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    if on && p.terminal {
        subs.insert(p.run_id.clone());
    } else {
        subs.remove(&p.run_id);
    }
    Ok(json!({"runId": p.run_id, "terminal": on && p.terminal}))
}

pub fn terminal_read(gw: &Gateway, params: Value) -> Result<Value, ErrorShape> {
    use std::io::{Read, Seek, SeekFrom};
    let p: TerminalReadParams = decode(params)?;
    let s = gw.runs.get(&p.run_id).ok_or_else(|| not_found(&p.run_id))?;
    let path = std::path::Path::new(&s.workspace).join(session::step_log(p.step));
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(
                json!({"runId": p.run_id, "step": p.step, "offset": p.offset, "data": "", "size": 0}),
            );
        }
        Err(e) => {
            return Err(ErrorShape::new(
                ErrorCode::Unavailable,
                format!("cannot read the pane log: {e}"),
            ));
        }
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let limit = p.limit.unwrap_or(256 * 1024).min(512 * 1024);
    let n = size.saturating_sub(p.offset).min(limit) as usize;
    let mut buf = vec![0u8; n];
    if n > 0 {
        f.seek(SeekFrom::Start(p.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| {
                ErrorShape::new(
                    ErrorCode::Unavailable,
                    format!("cannot read the pane log: {e}"),
                )
            })?;
    }
    Ok(
        json!({"runId": p.run_id, "step": p.step, "offset": p.offset, "data": STANDARD.encode(&buf), "size": size}),
    )
}

/// Only the worker that claimed a run may speak for it: any other `node.exec` connection
/// could otherwise report a run `succeeded` that no verifier proved.
fn require_owner(gw: &Gateway, conn: &ConnHandle, run_id: &str) -> Result<(), ErrorShape> {
    let inner = gw.runs.lock();
    let e = inner.runs.get(run_id).ok_or_else(|| not_found(run_id))?;
    if e.node_conn != Some(conn.id) {
        return Err(ErrorShape::new(
            ErrorCode::Forbidden,
            format!("this connection is not the worker of run {run_id}"),
        ));
    }
    Ok(())
}

pub fn claim(gw: &Gateway, conn: &ConnHandle, params: Value) -> Result<Value, ErrorShape> {
    let p: ClaimParams = decode(params)?;
    let mut inner = gw.runs.lock();
    let e = inner
        .runs
        .get_mut(&p.run_id)
        .ok_or_else(|| not_found(&p.run_id))?;
    if e.summary.status.is_terminal() {
        return Err(ErrorShape::new(
            ErrorCode::Conflict,
            format!("run {} already ended ({})", p.run_id, e.summary.status),
        ));
    }
    // One worker per run: a live claim by another connection stands. (A worker that lost
    // its link retries until the gateway has dropped the old connection.)
    if let Some(holder) = e.node_conn
        && holder != conn.id
        && gw.read_conns().contains_key(&holder)
    {
        return Err(ErrorShape::new(
            ErrorCode::Conflict,
            format!(
                "run {} is already claimed by another worker connection",
                p.run_id
            ),
        )
        .retry_after(500));
    }
    e.node_conn = Some(conn.id);
    e.active = true;
    tracing::info!(run = %p.run_id, pid = p.pid, conn = %conn.conn_id, "worker attached");
    Ok(json!({
        "runId": p.run_id,
        "task": e.task,
        "agent": e.summary.agent,
        "workspace": e.summary.workspace,
        "sessionLog": e.summary.session_log,
        "cancelRequested": e.cancel_requested.is_some(),
    }))
}

pub fn node_event(
    gw: &Arc<Gateway>,
    conn: &ConnHandle,
    params: Value,
) -> Result<Value, ErrorShape> {
    let ev: SessionEvent = decode(params)?;
    require_owner(gw, conn, &ev.run_id)?;
    gw.runs.apply(gw, &ev);
    Ok(json!({"seq": ev.seq}))
}

pub fn node_output(gw: &Gateway, conn: &ConnHandle, params: Value) -> Result<Value, ErrorShape> {
    let p: OutputParams = decode(params)?;
    require_owner(gw, conn, &p.run_id)?;
    let payload =
        json!({"runId": p.run_id, "step": p.step, "offset": p.offset, "data": p.data}).to_string();
    for conn in gw.read_conns().values() {
        let subscribed = conn
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&p.run_id);
        if subscribed {
            conn.outbox.push_event(events::TERMINAL_OUTPUT, &payload);
        }
    }
    Ok(json!({}))
}

/// Runs still marked active on this connection lose their node when it closes; the worker
/// reconnects (or the supervisor sees it die).
pub fn node_disconnected(gw: &Gateway, conn_id: u64) {
    for e in gw.runs.lock().runs.values_mut() {
        if e.node_conn == Some(conn_id) {
            e.node_conn = None;
        }
    }
}

/// `node.run.sign`: the worker of a live run asks the gateway to sign the run's
/// `report.json` with `gateway/signing_ed25519` (SSHSIG, namespace `viber-report`). Only
/// the connection that claimed the run may ask, and only before the run ends, so no other
/// node (and nobody after the fact) can get a report signed.
pub fn sign_report(gw: &Gateway, conn: &ConnHandle, params: Value) -> Result<Value, ErrorShape> {
    let p: RunIdParams = decode(params)?;
    let workspace = {
        let inner = gw.runs.lock();
        let e = inner
            .runs
            .get(&p.run_id)
            .ok_or_else(|| not_found(&p.run_id))?;
        if e.summary.status.is_terminal() {
            return Err(ErrorShape::new(
                ErrorCode::Conflict,
                format!(
                    "run {} already ended ({}): its report can no longer be signed",
                    p.run_id, e.summary.status
                ),
            ));
        }
        if e.node_conn != Some(conn.id) {
            return Err(ErrorShape::new(
                ErrorCode::Forbidden,
                format!(
                    "only the worker that claimed run {} may have its report signed",
                    p.run_id
                ),
            ));
        }
        e.summary.workspace.clone()
    };
    let (sig, signer) = crate::evidence::sign::sign_workspace_report(
        &gw.home,
        &p.run_id,
        std::path::Path::new(&workspace),
    )
    .map_err(|e| ErrorShape::new(ErrorCode::Unavailable, e))?;
    tracing::info!(run = %p.run_id, "report signed by {}", signer.fingerprint);
    Ok(json!({"runId": p.run_id, "signature": sig, "signer": signer}))
}
