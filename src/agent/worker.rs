//! The worker: what a `viber node` process does for one run. It holds the run's lock,
//! claims the run from the gateway, executes the plan in tmux, appends every event to the
//! session log itself (so a gateway restart loses nothing) and reports live to the gateway
//! over the same WebSocket protocol, as role `node`. If the gateway goes away it keeps
//! working and reconnects to whichever gateway then serves this VIBER_HOME.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::session::{self, SessionLog, step_log, tmux_session_name};
use crate::client::{Client, ConnectOptions, Incoming};
use crate::error::Error;
use crate::gateway::instance;
use crate::identity::DeviceKey;
use crate::protocol::runs::{RunStatus, SessionEvent, Task, kind};
use crate::protocol::{ClientMode, Role, Scope};
use crate::store::{Home, fsutil};
use crate::terminal::{Pane, Tmux};

/// The run lock, held by the worker for its whole life. The gateway probes it to tell a
/// live worker from a dead one, with no pid guessing.
pub fn lock_path(home: &Home, run_id: &str) -> PathBuf {
    session::workspace_path(home, run_id).join(".worker.lock")
}

/// Whether a worker holds this run's lock right now.
pub fn worker_alive(home: &Home, run_id: &str) -> bool {
    let Ok(f) = File::open(lock_path(home, run_id)) else {
        return false;
    };
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(_) => false,
    }
}

fn take_lock(home: &Home, run_id: &str) -> Result<File, Error> {
    let path = lock_path(home, run_id);
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(Error::Failed(format!(
            "another worker already runs {run_id}"
        ))),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", path.display()), e)),
    }
}

/// The worker's connection to the gateway, re-established whenever it drops.
struct Link {
    home: Home,
    key: DeviceKey,
    run_id: String,
    url_hint: Option<String>,
    client: Mutex<Option<Arc<Client>>>,
    cancel: Arc<AtomicBool>,
}

impl Link {
    fn options(&self, url: String) -> ConnectOptions {
        let token = std::fs::read_to_string(self.home.gateway_token())
            .ok()
            .map(|t| t.trim().to_string());
        let mut opts = ConnectOptions::operator(url);
        opts.token = token;
        opts.role = Role::Node;
        opts.scopes = vec![Scope::NodeExec];
        opts.client_id = "viber-node".into();
        opts.mode = ClientMode::Node;
        opts
    }

    /// Connects and claims the run; returns the claim's payload.
    async fn connect(self: &Arc<Self>) -> Result<Value, Error> {
        let url = instance::running(&self.home)
            .map(|i| i.url)
            .or_else(|| self.url_hint.clone())
            .ok_or_else(|| Error::Failed("no gateway is running for this VIBER_HOME".into()))?;
        let mut client = Client::connect(&self.key, &self.options(url)).await?;
        let claim = client
            .request(
                "node.run.claim",
                json!({"runId": self.run_id, "pid": std::process::id()}),
            )
            .await?;
        let mut incoming = client.take_incoming();
        let client = Arc::new(client);
        *self.client.lock().await = Some(client.clone());
        let link = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                match msg {
                    Incoming::Event(ev) if ev.event == crate::protocol::events::NODE_CONTROL => {
                        if ev.payload["runId"] == link.run_id.as_str()
                            && ev.payload["action"] == "cancel"
                        {
                            tracing::info!("cancel requested");
                            link.cancel.store(true, Ordering::SeqCst);
                        }
                    }
                    Incoming::Event(_) => {}
                    Incoming::Closed { .. } => break,
                }
            }
            // The link died: forget it and reconnect in the background.
            let mut slot = link.client.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &client)) {
                *slot = None;
            }
            drop(slot);
            link.reconnect_later();
        });
        Ok(claim)
    }

    fn reconnect_later(self: &Arc<Self>) {
        let link = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                if link.client.lock().await.is_some() {
                    return;
                }
                match link.connect().await {
                    Ok(_) => {
                        tracing::info!("reconnected to the gateway");
                        return;
                    }
                    Err(e) => tracing::debug!("reconnect failed: {e}"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
    }

    /// Best effort: the session log already has it; the gateway gets it if it is there.
    async fn send(&self, method: &str, params: Value) {
        let client = self.client.lock().await.clone();
        if let Some(c) = client
            && let Err(e) = c.request(method, params).await
        {
            tracing::debug!("{method} not delivered: {e}");
        }
    }
}

/// Tails the pane logs of live steps and forwards new bytes to the gateway.
struct Tailer {
    logs: BTreeMap<u32, (PathBuf, u64)>,
}

impl Tailer {
    async fn poll(&mut self, link: &Link) {
        for (&step, (path, offset)) in self.logs.iter_mut() {
            let Ok(mut f) = File::open(&*path) else {
                continue;
            };
            let Ok(len) = f.metadata().map(|m| m.len()) else {
                continue;
            };
            while *offset < len {
                let n = (len - *offset).min(256 * 1024) as usize;
                let mut buf = vec![0u8; n];
                if f.seek(SeekFrom::Start(*offset)).is_err() || f.read_exact(&mut buf).is_err() {
                    break;
                }
                link.send(
                    "node.terminal.output",
                    json!({"runId": link.run_id, "step": step, "offset": *offset, "data": STANDARD.encode(&buf)}),
                )
                .await;
                *offset += n as u64;
            }
        }
    }
}

struct Worker {
    home: Home,
    run_id: String,
    link: Arc<Link>,
    log: SessionLog,
    tailer: Arc<Mutex<Tailer>>,
    tmux: Arc<Tmux>,
    workspace: PathBuf,
    progress: Vec<String>,
}

impl Worker {
    async fn emit(&mut self, kind: &str, payload: Value, durable: bool) -> Result<(), Error> {
        let ev: SessionEvent = self.log.append(kind, payload, durable)?;
        self.link
            .send(
                "node.run.event",
                serde_json::to_value(&ev).expect("serializes"),
            )
            .await;
        Ok(())
    }

    async fn status(
        &mut self,
        status: RunStatus,
        phase: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let mut p = json!({"status": status});
        if let Some(ph) = phase {
            p["phase"] = json!(ph);
        }
        if let Some(r) = reason {
            p["reason"] = json!(r);
        }
        if status.is_terminal() {
            p["exitCode"] = json!(status.exit_code());
        }
        self.emit(kind::STATUS, p, true).await
    }

    fn note_progress(&mut self, line: String) {
        self.progress.push(line);
        let text = format!(
            "# Progress of {}\n\n{}\n",
            self.run_id,
            self.progress.join("\n")
        );
        if let Err(e) =
            fsutil::write_atomic(&self.workspace.join("progress.md"), text.as_bytes(), 0o600)
        {
            tracing::warn!("cannot update progress.md: {e}");
        }
    }

    async fn tmux<T: Send + 'static>(&self, f: impl FnOnce(&Tmux) -> T + Send + 'static) -> T {
        let tmux = self.tmux.clone();
        tokio::task::spawn_blocking(move || f(&tmux))
            .await
            .expect("tmux task panicked")
    }

    fn cancelled(&self) -> bool {
        self.link.cancel.load(Ordering::SeqCst)
    }

    /// Runs the plan. `Some(outcome)` ends the run early (a step failed, cancel, no tmux);
    /// `None` hands over to the verifier.
    async fn execute(
        &mut self,
        task: &Task,
        workdir: &Path,
    ) -> Result<Option<(RunStatus, String)>, Error> {
        if task.steps.is_empty() {
            return Ok(Some((
                RunStatus::Failed,
                "no planner: the task has no steps and no LLM is configured".into(),
            )));
        }
        if let Err(e) = Tmux::check_installed() {
            return Ok(Some((RunStatus::Failed, e.to_string())));
        }
        if !workdir.is_dir() {
            return Ok(Some((
                RunStatus::Failed,
                format!("workdir {} does not exist", workdir.display()),
            )));
        }
        let session_name = tmux_session_name(&self.run_id);
        let wd = workdir.to_path_buf();
        let sn = session_name.clone();
        if let Err(e) = self.tmux(move |t| t.ensure_session(&sn, &wd)).await {
            return Ok(Some((RunStatus::Failed, e.to_string())));
        }
        let steps_dir = self.workspace.join("steps");
        fsutil::ensure_private_dir(&steps_dir)?;
        fsutil::ensure_private_dir(&self.workspace.join("evidence/terminal"))?;
        for (i, step) in task.steps.iter().enumerate() {
            let index = i as u32 + 1;
            if self.cancelled() {
                return Ok(Some((
                    RunStatus::Cancelled,
                    "cancelled by an operator".into(),
                )));
            }
            let name = step.name.clone().unwrap_or_else(|| format!("step-{index}"));
            let script = steps_dir.join(format!("{index}.sh"));
            fsutil::write_atomic(&script, format!("{}\n", step.run).as_bytes(), 0o600)?;
            let log = self.workspace.join(step_log(index));
            let step_json = json!({"index": index, "name": name, "command": step.run, "background": step.background});
            self.emit(
                kind::PROGRESS,
                json!({"phase": "execute", "step": step_json, "event": "started"}),
                false,
            )
            .await?;
            self.note_progress(format!("- step {index} `{}` started", step.run));
            let (sn, wd, sc, lg, nm) = (
                session_name.clone(),
                workdir.to_path_buf(),
                script.clone(),
                log.clone(),
                name.clone(),
            );
            let pane = match self.tmux(move |t| t.spawn(&sn, &nm, &wd, &sc, &lg)).await {
                Ok(p) => p,
                Err(e) => {
                    return Ok(Some((
                        RunStatus::Failed,
                        format!("step {index} could not start: {e}"),
                    )));
                }
            };
            self.tailer
                .lock()
                .await
                .logs
                .insert(index, (log.clone(), 0));
            if step.background {
                continue;
            }
            let exit = loop {
                let p = pane.clone();
                match self.tmux(move |t| t.exit_status(&p)).await {
                    Ok(Some(exit)) => break exit,
                    Ok(None) => {}
                    Err(e) => {
                        return Ok(Some((
                            RunStatus::Failed,
                            format!("lost step {index}'s pane: {e}"),
                        )));
                    }
                }
                if self.cancelled() {
                    return Ok(Some((
                        RunStatus::Cancelled,
                        "cancelled by an operator".into(),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            };
            self.finish_pane(index, pane, log).await;
            let code = exit.code();
            self.emit(
                kind::PROGRESS,
                json!({"phase": "execute", "step": step_json, "event": "exited", "exitStatus": code}),
                false,
            )
            .await?;
            self.note_progress(format!(
                "- step {index} `{}` exited with status {code}",
                step.run
            ));
            if code != 0 {
                return Ok(Some((
                    RunStatus::Failed,
                    format!("step {index} (`{}`) exited with status {code}", step.run),
                )));
            }
        }
        Ok(None)
    }

    /// The verify phase: whether the work is done is the verifier's call, never the
    /// steps' exit codes and never the planner's word. Background steps are still alive
    /// here, so checks can talk to the servers they started.
    async fn verify(&mut self, task: &Task, _workdir: &Path) -> Result<(RunStatus, String), Error> {
        self.status(RunStatus::Running, Some("verify"), None)
            .await?;
        let reason = if task.accept.is_empty() {
            "every step exited 0, but the task has no accept checks: nothing proved the work"
        } else {
            "every step exited 0, but the accept checks were not run: nothing proved the work"
        };
        Ok((RunStatus::Unverified, reason.into()))
    }

    /// Removes a finished pane once its log has drained, and forwards the last bytes.
    async fn finish_pane(&mut self, index: u32, pane: Pane, log: PathBuf) {
        let complete = self
            .tmux(move |t| t.close_pane(&pane, &log, Duration::from_secs(5)))
            .await;
        if !complete {
            tracing::warn!("step {index}: the pane log did not report completion in time");
        }
        let mut tailer = self.tailer.lock().await;
        tailer.poll(&self.link).await;
        tailer.logs.remove(&index);
    }

    /// Ends every process the run started and drains the remaining logs.
    async fn cleanup(&mut self) {
        let session_name = tmux_session_name(&self.run_id);
        self.tmux(move |t| t.kill_session(&session_name, Duration::from_secs(2)))
            .await;
        // Background panes' pipes close with the session: wait for their logs to drain.
        let pending: Vec<PathBuf> = self
            .tailer
            .lock()
            .await
            .logs
            .values()
            .map(|(p, _)| p.clone())
            .collect();
        for log in pending {
            let marker = log.with_file_name(format!(
                "{}.done",
                log.file_name().unwrap_or_default().to_string_lossy()
            ));
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !marker.exists() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = std::fs::remove_file(&marker);
        }
        let mut tailer = self.tailer.lock().await;
        tailer.poll(&self.link).await;
        tailer.logs.clear();
    }
}

/// Runs one run to its end. The process exits when this returns.
pub async fn run(home: Home, run_id: String, url_hint: Option<String>) -> Result<(), Error> {
    let _lock = take_lock(&home, &run_id)?;
    let (key, _) = DeviceKey::load_or_create(&home.identity_dir().join("node_ed25519"))?;
    let link = Arc::new(Link {
        home: home.clone(),
        key,
        run_id: run_id.clone(),
        url_hint,
        client: Mutex::new(None),
        cancel: Arc::new(AtomicBool::new(false)),
    });
    let claim = link.connect().await?;
    let task: Task = serde_json::from_value(claim["task"].clone()).map_err(|e| {
        Error::Failed(format!(
            "the gateway sent a task this worker cannot read: {e}"
        ))
    })?;
    let session_log = PathBuf::from(claim["sessionLog"].as_str().unwrap_or_default());
    let workspace = PathBuf::from(claim["workspace"].as_str().unwrap_or_default());
    let log = SessionLog::open(&session_log, &run_id)?;
    let tailer = Arc::new(Mutex::new(Tailer {
        logs: BTreeMap::new(),
    }));
    let mut w = Worker {
        home: home.clone(),
        run_id: run_id.clone(),
        tmux: Arc::new(Tmux::new(home.tmux_socket())),
        link: link.clone(),
        log,
        tailer: tailer.clone(),
        workspace: workspace.clone(),
        progress: Vec::new(),
    };
    let tail_link = link.clone();
    let tail_task = tokio::spawn(async move {
        loop {
            tailer.lock().await.poll(&tail_link).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    w.emit(kind::WORKER, json!({"pid": std::process::id()}), false)
        .await?;
    w.status(RunStatus::Running, Some("plan"), None).await?;
    let plan: String = task
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}. `{}`{}\n",
                i + 1,
                s.run,
                if s.background { " (background)" } else { "" }
            )
        })
        .collect();
    fsutil::write_atomic(
        &workspace.join("plan.md"),
        format!(
            "# Plan for {run_id}\n\nGoal: {}\n\nPlanner: script (the task's steps)\n\n{plan}",
            task.goal
        )
        .as_bytes(),
        0o600,
    )?;
    w.status(RunStatus::Running, Some("execute"), None).await?;
    let workdir = PathBuf::from(task.workdir.clone().unwrap_or_else(|| ".".into()));
    let outcome = match w.execute(&task, &workdir).await {
        Ok(Some(early)) => Ok(early),
        Ok(None) => w.verify(&task, &workdir).await,
        Err(e) => Err(e),
    };
    w.cleanup().await;
    tail_task.abort();
    let (status, reason) = match outcome {
        Ok(x) => x,
        Err(e) => (RunStatus::Failed, format!("the worker failed: {e}")),
    };
    w.note_progress(format!("- run ended {status}: {reason}"));
    w.status(status, None, Some(&reason)).await?;
    let _ = &w.home;
    if let Some(c) = link.client.lock().await.take() {
        c.close();
    }
    Ok(())
}
