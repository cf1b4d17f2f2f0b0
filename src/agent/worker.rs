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

use super::planner::{Action, Observation, Planner, ScriptPlanner};
use super::policy::{Decision, Policy, Verdict, remember_prefix};
use super::session::{self, SessionLog, step_log, tmux_session_name};
use crate::client::{Client, ConnectOptions, Incoming};
use crate::error::Error;
use crate::gateway::instance;
use crate::identity::DeviceKey;
use crate::protocol::runs::{Budget, Mode, RunStatus, SessionEvent, Task, Usage, kind};
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
    fsutil::is_locked(&lock_path(home, run_id))
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
    /// Control messages from operators (pause, resume, chat, rescope, approvals), applied
    /// by the worker between actions.
    controls: std::sync::Mutex<std::collections::VecDeque<Value>>,
    control_notify: tokio::sync::Notify,
    /// The approval this worker waits for: re-sent after a reconnect so a restarted
    /// gateway knows about it again.
    pending_approval: std::sync::Mutex<Option<Value>>,
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
        // Only this home's running gateway ever gets the gateway token: while it restarts
        // there is nothing to connect to, and the reconnect loop waits for the new one.
        let url = instance::running(&self.home)
            .map(|i| i.url)
            .ok_or_else(|| Error::Failed("no gateway is running for this VIBER_HOME".into()))?;
        if let Some(hint) = &self.url_hint
            && *hint != url
        {
            tracing::info!("the gateway now listens on {url} (was {hint})");
        }
        let mut client = Client::connect(&self.key, &self.options(url)).await?;
        let claim = client
            .request(
                "node.run.claim",
                json!({"runId": self.run_id, "pid": std::process::id()}),
            )
            .await?;
        if claim["cancelRequested"] == true {
            // Cancelled while this worker was starting or reconnecting.
            self.cancel.store(true, Ordering::SeqCst);
        }
        let mut incoming = client.take_incoming();
        let pending = self
            .pending_approval
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(p) = pending {
            let _ = client.request("node.approval.request", p).await;
        }
        let client = Arc::new(client);
        *self.client.lock().await = Some(client.clone());
        let link = self.clone();
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                match msg {
                    Incoming::Event(ev) if ev.event == crate::protocol::events::NODE_CONTROL => {
                        if ev.payload["runId"] != link.run_id.as_str() {
                            continue;
                        }
                        tracing::info!("control: {}", ev.payload["action"]);
                        if ev.payload["action"] == "cancel" {
                            link.cancel.store(true, Ordering::SeqCst);
                        }
                        link.controls
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push_back(ev.payload);
                        link.control_notify.notify_one();
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
    planner: Planner,
    policy: Policy,
    mode: Mode,
    budget: Budget,
    usage: Usage,
    started: std::time::Instant,
    approval_timeout: Duration,
    /// Approval answers that arrived, waiting to be matched.
    resolutions: Vec<Value>,
    /// What the verifier found, kept for the report written after cleanup.
    verified: Option<Vec<crate::evidence::report::ClaimEntry>>,
    /// Secret environment variables that panes and check commands must not inherit.
    scrub: Vec<String>,
    /// Process groups of every pane this run started, ended ones included.
    pane_groups: Vec<i32>,
}

/// How a shell step ended: with an observation, or by ending the run.
enum StepEnd {
    Ended(Observation),
    Stop((RunStatus, String)),
}

/// A path for write_file/read_file: relative paths are inside the workdir; `..` may not
/// climb out of it.
fn resolve_in(workdir: &Path, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("{path}: `..` is not allowed"));
    }
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    })
}

/// The last `max` bytes of a log, as text for a planner.
fn tail_text(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    let mut buf = Vec::new();
    let _ = f
        .seek(SeekFrom::Start(start))
        .and_then(|_| f.read_to_end(&mut buf));
    String::from_utf8_lossy(&buf).replace("\r\n", "\n")
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

    /// The one loop every mode shares: apply operators' controls, check the budget, ask
    /// the planner, judge the action by policy (asking a person where it says so),
    /// execute, observe. `Some(outcome)` ends the run early (failure, cancel, blocked,
    /// budget); `None` hands over to the verifier.
    async fn execute(&mut self, workdir: &Path) -> Result<Option<(RunStatus, String)>, Error> {
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
        fsutil::ensure_private_dir(&self.workspace.join("steps"))?;
        fsutil::ensure_private_dir(&self.workspace.join("evidence/terminal"))?;
        loop {
            if let Some(end) = self.apply_controls().await? {
                return Ok(Some(end));
            }
            if let Some(end) = self.check_budget().await? {
                return Ok(Some(end));
            }
            // A model may think for a while: a cancel must not wait for its answer.
            let link = self.link.clone();
            let cancelled = async move {
                while !link.cancel.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let next = tokio::select! {
                n = self.planner.next() => n,
                _ = cancelled => {
                    return Ok(Some((RunStatus::Cancelled, "cancelled by an operator".into())));
                }
            };
            let action = match next {
                Ok(Some(a)) => a,
                Ok(None) if self.usage.steps == 0 && !self.planner.adapts() => {
                    return Ok(Some((
                        RunStatus::Failed,
                        "no planner: the task has no steps and no LLM is configured".into(),
                    )));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.record_planner().await?;
                    return Ok(Some((
                        RunStatus::Failed,
                        format!("the planner failed: {e}"),
                    )));
                }
            };
            self.record_planner().await?;
            if let Some(end) = self.check_budget().await? {
                return Ok(Some(end));
            }
            if let Action::Finish { summary, claims } = &action {
                self.emit(
                    kind::PROGRESS,
                    json!({"phase": "execute", "event": "finish", "summary": summary, "claims": claims}),
                    true,
                )
                .await?;
                self.note_progress(format!("- the planner finished: {summary}"));
                return Ok(None);
            }
            let command = action.policy_command();
            let decision = self.policy.decide(self.mode, &command);
            match decision.decision {
                Verdict::Allow => {}
                Verdict::Deny => {
                    return Ok(Some((
                        RunStatus::Blocked,
                        format!("`{command}` was not run: {}", decision.reason),
                    )));
                }
                Verdict::Ask => {
                    if let Some(end) = self.ask(&command, &decision).await? {
                        return Ok(Some(end));
                    }
                }
            }
            let obs = match &action {
                Action::Shell {
                    command,
                    background,
                    name,
                } => match self
                    .shell(command, *background, name.clone(), workdir)
                    .await?
                {
                    StepEnd::Ended(obs) => obs,
                    StepEnd::Stop(end) => return Ok(Some(end)),
                },
                Action::WriteFile { path, content } => {
                    self.usage.steps += 1;
                    let output = match resolve_in(workdir, path) {
                        Ok(p) => match p
                            .parent()
                            .map(std::fs::create_dir_all)
                            .unwrap_or(Ok(()))
                            .and_then(|_| std::fs::write(&p, content))
                        {
                            Ok(()) => format!("wrote {} bytes to {}", content.len(), p.display()),
                            Err(e) => format!("error: cannot write {}: {e}", p.display()),
                        },
                        Err(e) => format!("error: {e}"),
                    };
                    self.emit(kind::PROGRESS, json!({"phase": "execute", "event": "write_file", "path": path, "bytes": content.len(), "result": output}), false).await?;
                    Observation {
                        action: action.clone(),
                        exit: None,
                        output,
                    }
                }
                Action::ReadFile { path } => {
                    self.usage.steps += 1;
                    let output = match resolve_in(workdir, path).and_then(|p| {
                        std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
                    }) {
                        Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(16 * 1024)])
                            .into_owned(),
                        Err(e) => format!("error: {e}"),
                    };
                    self.emit(
                        kind::PROGRESS,
                        json!({"phase": "execute", "event": "read_file", "path": path}),
                        false,
                    )
                    .await?;
                    Observation {
                        action: action.clone(),
                        exit: None,
                        output,
                    }
                }
                Action::Finish { .. } => unreachable!("handled above"),
            };
            self.emit_usage().await?;
            let failed = obs.exit.is_some_and(|c| c != 0);
            if failed && !self.planner.adapts() {
                let code = obs.exit.unwrap_or(-1);
                return Ok(Some((
                    RunStatus::Failed,
                    format!(
                        "step {} (`{command}`) exited with status {code}",
                        self.usage.steps
                    ),
                )));
            }
            self.planner.observe(obs);
        }
    }

    /// Runs one shell action as a step in its own tmux pane.
    async fn shell(
        &mut self,
        command: &str,
        background: bool,
        name: Option<String>,
        workdir: &Path,
    ) -> Result<StepEnd, Error> {
        self.usage.steps += 1;
        let index = self.usage.steps;
        let session_name = tmux_session_name(&self.run_id);
        let name = name.unwrap_or_else(|| format!("step-{index}"));
        let script = self.workspace.join("steps").join(format!("{index}.sh"));
        fsutil::write_atomic(&script, format!("{command}\n").as_bytes(), 0o600)?;
        let log = self.workspace.join(step_log(index));
        let step_json =
            json!({"index": index, "name": name, "command": command, "background": background});
        self.emit(
            kind::PROGRESS,
            json!({"phase": "execute", "step": step_json, "event": "started"}),
            false,
        )
        .await?;
        self.note_progress(format!("- step {index} `{command}` started"));
        let (sn, wd, sc, lg, nm) = (
            session_name,
            workdir.to_path_buf(),
            script,
            log.clone(),
            name,
        );
        let pane = match self.tmux(move |t| t.spawn(&sn, &nm, &wd, &sc, &lg)).await {
            Ok(p) => p,
            Err(e) => {
                return Ok(StepEnd::Stop((
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
        self.pane_groups.push(pane.pid as i32);
        if background {
            return Ok(StepEnd::Ended(Observation {
                action: Action::Shell {
                    command: command.into(),
                    background,
                    name: None,
                },
                exit: None,
                output: "started in the background".into(),
            }));
        }
        let exit = loop {
            let p = pane.clone();
            match self.tmux(move |t| t.exit_status(&p)).await {
                Ok(Some(exit)) => break exit,
                Ok(None) => {}
                Err(e) => {
                    return Ok(StepEnd::Stop((
                        RunStatus::Failed,
                        format!("lost step {index}'s pane: {e}"),
                    )));
                }
            }
            if self.cancelled() {
                return Ok(StepEnd::Stop((
                    RunStatus::Cancelled,
                    "cancelled by an operator".into(),
                )));
            }
            // A step that never exits must not outlive the run's wall-clock budget.
            if let Some(max) = self.budget.max_wall_secs
                && self.started.elapsed().as_secs() >= max
            {
                self.refresh_usage();
                let usage = serde_json::to_value(&self.usage).expect("serializes");
                self.emit(
                    kind::BUDGET,
                    json!({"limits": self.budget, "exhausted": "max_wall_secs", "usage": usage}),
                    true,
                )
                .await?;
                return Ok(StepEnd::Stop((
                    RunStatus::BudgetExhausted,
                    format!(
                        "budget exhausted: max_wall_secs reached ({} s of {max} s used, during step {index})",
                        self.usage.wall_secs
                    ),
                )));
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        };
        let pgid = pane.pid;
        self.finish_pane(index, pane, log.clone()).await;
        let code = exit.code();
        self.emit(
            kind::PROGRESS,
            json!({"phase": "execute", "step": step_json, "event": "exited", "exitStatus": code, "pgid": pgid}),
            false,
        )
        .await?;
        self.note_progress(format!(
            "- step {index} `{command}` exited with status {code}"
        ));
        Ok(StepEnd::Ended(Observation {
            action: Action::Shell {
                command: command.into(),
                background,
                name: None,
            },
            exit: Some(code),
            output: tail_text(&log, 4096),
        }))
    }

    /// Applies queued operator controls. Pause holds here (the current action has
    /// finished, no new one starts) until resume or cancel.
    async fn apply_controls(&mut self) -> Result<Option<(RunStatus, String)>, Error> {
        let mut paused = false;
        loop {
            if self.cancelled() {
                return Ok(Some((
                    RunStatus::Cancelled,
                    "cancelled by an operator".into(),
                )));
            }
            let next = self
                .link
                .controls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(c) = next else {
                if !paused {
                    return Ok(None);
                }
                let _ = tokio::time::timeout(
                    Duration::from_millis(200),
                    self.link.control_notify.notified(),
                )
                .await;
                continue;
            };
            match c["action"].as_str().unwrap_or("") {
                "pause" if !paused => {
                    paused = true;
                    self.status(
                        RunStatus::Paused,
                        Some("paused"),
                        Some("paused by an operator"),
                    )
                    .await?;
                    self.note_progress("- paused by an operator".into());
                }
                "resume" if paused => {
                    paused = false;
                    self.status(RunStatus::Running, Some("execute"), None)
                        .await?;
                    self.note_progress("- resumed".into());
                }
                "chat" => {
                    let text = c["text"].as_str().unwrap_or("").to_string();
                    self.emit(kind::CHAT, json!({"text": text}), false).await?;
                    self.note_progress(format!("- feedback: {text}"));
                    self.planner.feedback(&text);
                }
                "rescope" => {
                    let goal = c["goal"].as_str().unwrap_or("").to_string();
                    if !goal.trim().is_empty() {
                        self.emit(kind::RESCOPED, json!({"goal": goal}), true)
                            .await?;
                        self.note_progress(format!("- re-scoped to: {goal}"));
                        self.planner.rescope(&goal);
                    }
                }
                "approval" => {
                    self.resolutions.push(c);
                }
                _ => {}
            }
        }
    }

    /// Checks every limit before a step; `Some` when one is used up.
    async fn check_budget(&mut self) -> Result<Option<(RunStatus, String)>, Error> {
        self.refresh_usage();
        let b = &self.budget;
        let hit = if b.max_steps.is_some_and(|m| self.usage.steps >= m) {
            Some((
                "max_steps",
                format!(
                    "{} of {} steps used",
                    self.usage.steps,
                    b.max_steps.unwrap_or(0)
                ),
            ))
        } else if b.max_wall_secs.is_some_and(|m| self.usage.wall_secs >= m) {
            Some((
                "max_wall_secs",
                format!(
                    "{} s of {} s used",
                    self.usage.wall_secs,
                    b.max_wall_secs.unwrap_or(0)
                ),
            ))
        } else if b.max_tokens.is_some_and(|m| self.usage.tokens >= m) {
            Some((
                "max_tokens",
                format!(
                    "{} of {} tokens used",
                    self.usage.tokens,
                    b.max_tokens.unwrap_or(0)
                ),
            ))
        } else if b.max_cost_usd.is_some_and(|m| self.usage.cost_usd >= m) {
            Some((
                "max_cost_usd",
                format!(
                    "${:.4} of ${:.4} used",
                    self.usage.cost_usd,
                    b.max_cost_usd.unwrap_or(0.0)
                ),
            ))
        } else {
            None
        };
        let Some((limit, figures)) = hit else {
            return Ok(None);
        };
        self.emit_usage().await?;
        self.emit(
            kind::BUDGET,
            json!({"limits": self.budget, "exhausted": limit, "usage": self.usage}),
            true,
        )
        .await?;
        Ok(Some((
            RunStatus::BudgetExhausted,
            format!("budget exhausted: {limit} reached ({figures})"),
        )))
    }

    /// Token and cost figures come from the planner, wall time from the clock.
    fn refresh_usage(&mut self) {
        let u = self.planner.usage();
        self.usage.tokens = u.tokens;
        self.usage.cost_usd = u.cost_usd;
        self.usage.wall_secs = self.started.elapsed().as_secs();
    }

    async fn emit_usage(&mut self) -> Result<(), Error> {
        self.refresh_usage();
        let usage = serde_json::to_value(&self.usage).expect("serializes");
        self.emit(kind::USAGE, usage, false).await
    }

    /// Writes the planner's request/response summaries into the session log.
    async fn record_planner(&mut self) -> Result<(), Error> {
        for entry in self.planner.drain_log() {
            self.emit(
                kind::PLANNER,
                json!({"planner": self.planner.name(), "llm": entry}),
                false,
            )
            .await?;
        }
        Ok(())
    }

    /// Asks an operator; `None` means allowed, `Some` ends the run (denied, unanswered,
    /// cancelled). Never hangs: the timeout ends the run `blocked`.
    async fn ask(
        &mut self,
        command: &str,
        decision: &Decision,
    ) -> Result<Option<(RunStatus, String)>, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        let request = json!({
            "runId": self.run_id,
            "approvalId": id,
            "command": command,
            "reason": decision.reason,
            "rule": decision.rule,
            "mode": self.mode,
            "timeoutSecs": self.approval_timeout.as_secs(),
        });
        self.emit(kind::APPROVAL_REQUESTED, request.clone(), true)
            .await?;
        self.status(
            RunStatus::AwaitingApproval,
            Some("approval"),
            Some(&format!("waiting for approval of `{command}`")),
        )
        .await?;
        *self
            .link
            .pending_approval
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(request.clone());
        self.link.send("node.approval.request", request).await;
        let deadline = tokio::time::Instant::now() + self.approval_timeout;
        let outcome = loop {
            if let Some(pos) = self
                .resolutions
                .iter()
                .position(|r| r["approvalId"] == id.as_str())
            {
                break Some(self.resolutions.remove(pos));
            }
            if self.cancelled() {
                *self
                    .link
                    .pending_approval
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                return Ok(Some((
                    RunStatus::Cancelled,
                    "cancelled by an operator".into(),
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            // Controls other than approvals (chat, rescope) are applied while waiting.
            let next = self
                .link
                .controls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match next {
                Some(c) if c["action"] == "approval" => self.resolutions.push(c),
                Some(c) => {
                    self.link
                        .controls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_front(c);
                    if let Some(end) = self.apply_controls().await? {
                        return Ok(Some(end));
                    }
                }
                None => {
                    let _ = tokio::time::timeout_at(
                        deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                        self.link.control_notify.notified(),
                    )
                    .await;
                }
            }
        };
        *self
            .link
            .pending_approval
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let Some(r) = outcome else {
            self.emit(
                kind::APPROVAL_RESOLVED,
                json!({"approvalId": id, "decision": "timeout"}),
                true,
            )
            .await?;
            return Ok(Some((
                RunStatus::Blocked,
                format!(
                    "nobody approved `{command}` within {} s",
                    self.approval_timeout.as_secs()
                ),
            )));
        };
        let allowed = r["decision"] == "allow";
        let remember = r["remember"] == true;
        let message = r["message"].as_str().unwrap_or("").to_string();
        self.emit(
            kind::APPROVAL_RESOLVED,
            json!({"approvalId": id, "decision": r["decision"], "remember": remember, "message": message, "by": r["by"]}),
            true,
        )
        .await?;
        self.status(RunStatus::Running, Some("execute"), None)
            .await?;
        if !allowed {
            let why = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            return Ok(Some((
                RunStatus::Blocked,
                format!("an operator denied `{command}`{why}"),
            )));
        }
        if remember {
            let prefix = remember_prefix(command);
            self.note_progress(format!("- allowed always: `{prefix}`"));
            self.policy.remember_allow(&prefix);
        }
        Ok(None)
    }

    /// The verify phase: whether the work is done is the verifier's call, never the
    /// steps' exit codes and never the planner's word. Background steps are still alive
    /// here, so checks can talk to the servers they started.
    async fn verify(&mut self, task: &Task, workdir: &Path) -> Result<(RunStatus, String), Error> {
        use crate::evidence::{checks, report};
        self.status(RunStatus::Running, Some("verify"), None)
            .await?;
        let events = session::read_events(self.log.path())?;
        let steps = report::steps_of(&self.home, &events, task);
        let workspace = self.workspace.clone();
        let mut claims = Vec::new();
        for (i, check) in task.accept.iter().enumerate() {
            if self.cancelled() {
                return Ok((RunStatus::Cancelled, "cancelled by an operator".into()));
            }
            let index = i as u32 + 1;
            let env = checks::Env {
                root: &workspace,
                workdir,
                logs: &workspace,
                steps: &steps,
                scrub: &self.scrub,
            };
            let c = checks::run(check, index, &env).await;
            // No "event" key: followers print step events, claims come with the outcome.
            self.emit(
                kind::PROGRESS,
                json!({"phase": "verify", "claim": {"index": index, "claim": c.claim, "kind": c.kind}, "verdict": c.verdict, "reason": c.reason}),
                false,
            )
            .await?;
            self.note_progress(format!(
                "- claim {index} ({:?}) {}: {}",
                c.claim, c.verdict, c.reason
            ));
            claims.push(c);
        }
        let outcome = checks::outcome(&claims);
        self.verified = Some(claims);
        Ok(outcome)
    }

    /// Writes report.json (what the verifier found, or that it never ran) and has the
    /// gateway sign it, before the run's end is announced, so whoever sees the end can
    /// verify the report at once. Runs after cleanup: the pane logs are complete by then.
    /// Returns the reason, with a note when there is no signed report.
    async fn report(
        &mut self,
        task: &Task,
        workdir: &Path,
        status: RunStatus,
        reason: String,
    ) -> String {
        use crate::evidence::report;
        let events = session::read_events(self.log.path()).unwrap_or_default();
        let r = report::build(report::Input {
            run_id: &self.run_id,
            task,
            workspace: &self.workspace,
            workdir,
            status,
            reason: &reason,
            claims: self.verified.take(),
            events: &events,
            home: &self.home,
        });
        if let Err(e) = report::write(&self.workspace, &r) {
            tracing::warn!("cannot write the report: {e}");
            return format!("{reason} (no report: {e})");
        }
        match self.sign_report().await {
            Ok(()) => reason,
            Err(e) => {
                tracing::warn!("the report is not signed: {e}");
                format!("{reason} (the report is not signed: {e})")
            }
        }
    }

    /// Asks the gateway to sign report.json (`node.run.sign`); the worker never holds the
    /// signing key. Waits out a gateway restart for a while, as the rest of the run does.
    async fn sign_report(&self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let client = self.link.client.lock().await.clone();
            let last = match client {
                Some(c) => match c
                    .request("node.run.sign", json!({"runId": self.run_id}))
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(crate::client::ClientError::Rejected(e)) => return Err(e.message),
                    Err(e) => e.to_string(),
                },
                None => "no connection to the gateway".to_string(),
            };
            if std::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let groups = self.pane_groups.clone();
        self.tmux(move |t| t.kill_session(&session_name, &groups, Duration::from_secs(2)))
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

/// The task's budget may only tighten the configured default, never loosen it.
pub fn effective_budget(default: Option<&Budget>, task: &Budget) -> Budget {
    fn min<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y < x { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
    let d = default.cloned().unwrap_or_default();
    Budget {
        max_steps: min(d.max_steps, task.max_steps),
        max_wall_secs: min(d.max_wall_secs, task.max_wall_secs),
        max_tokens: min(d.max_tokens, task.max_tokens),
        max_cost_usd: min(d.max_cost_usd, task.max_cost_usd),
    }
}

/// Runs one run to its end. The process exits when this returns.
pub async fn run(home: Home, run_id: String, url_hint: Option<String>) -> Result<(), Error> {
    let _lock = take_lock(&home, &run_id)?;
    // The worker is the gateway owner's own process: it signs with the home's device key,
    // which the gateway pre-trusts (with the gateway token) even when local devices need
    // approval, so runs work on hosts with `auto_approve_local: false`.
    let key = DeviceKey::load(&home.device_key())?;
    let link = Arc::new(Link {
        home: home.clone(),
        key,
        run_id: run_id.clone(),
        url_hint,
        client: Mutex::new(None),
        cancel: Arc::new(AtomicBool::new(false)),
        controls: Default::default(),
        control_notify: tokio::sync::Notify::new(),
        pending_approval: Default::default(),
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
    let config = crate::store::Config::load(&home.config())?;
    let mode = task.mode.unwrap_or(config.autonomy.default_mode);
    let policy = Policy::new(config.autonomy.risky.clone())
        .with("config", config.autonomy.rules())
        .with("task", task.policy.clone());
    let budget = effective_budget(config.budget_policies.get("default"), &task.budget);
    let approval_timeout = Duration::from_secs(
        task.approval_timeout_secs
            .unwrap_or(config.autonomy.approval_timeout_secs),
    );
    let planner = match (&config.llm, task.steps.is_empty()) {
        (Some(llm), true) => Planner::Llm(Box::new(crate::agent::llm::LlmPlanner::new(
            llm, &task, &config, &home,
        ))),
        _ => Planner::Script(ScriptPlanner::new(&task)),
    };
    let scrub = crate::store::secret_env_vars(Some(&config));
    let mut w = Worker {
        home: home.clone(),
        run_id: run_id.clone(),
        tmux: Arc::new(Tmux::new(home.tmux_socket()).scrubbing(scrub.clone())),
        link: link.clone(),
        log,
        tailer: tailer.clone(),
        workspace: workspace.clone(),
        progress: Vec::new(),
        planner,
        policy,
        mode,
        budget,
        usage: Usage::default(),
        started: std::time::Instant::now(),
        approval_timeout,
        resolutions: Vec::new(),
        verified: None,
        scrub,
        pane_groups: Vec::new(),
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
    let planner_name = w.planner.name();
    w.emit(
        kind::PLANNER,
        json!({"planner": planner_name, "mode": mode}),
        false,
    )
    .await?;
    let limits = w.budget.clone();
    w.emit(kind::BUDGET, json!({"limits": limits}), false)
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
            "# Plan for {run_id}\n\nGoal: {}\n\nMode: {}\n\nPlanner: {}\n\n{}",
            task.goal,
            mode.as_str(),
            planner_name,
            if plan.is_empty() {
                "The model plans one action at a time; see progress.md.\n".to_string()
            } else {
                plan
            }
        )
        .as_bytes(),
        0o600,
    )?;
    w.status(RunStatus::Running, Some("execute"), None).await?;
    let workdir = PathBuf::from(task.workdir.clone().unwrap_or_else(|| ".".into()));
    let outcome = match w.execute(&workdir).await {
        Ok(Some(early)) => Ok(early),
        Ok(None) => w.verify(&task, &workdir).await,
        Err(e) => Err(e),
    };
    w.cleanup().await;
    tail_task.abort();
    // The planner's last request (the one that called finish, say) counts too.
    let _ = w.emit_usage().await;
    let (status, reason) = match outcome {
        Ok(x) => x,
        Err(e) => (RunStatus::Failed, format!("the worker failed: {e}")),
    };
    let reason = w.report(&task, &workdir, status, reason).await;
    w.note_progress(format!("- run ended {status}: {reason}"));
    w.status(status, None, Some(&reason)).await?;
    let _ = &w.home;
    if let Some(c) = link.client.lock().await.take() {
        c.close();
    }
    Ok(())
}
