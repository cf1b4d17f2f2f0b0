//! The session log `agents/{agent}/sessions/{run}.jsonl`: one JSON line per event,
//! appended and flushed as it happens, fsynced at phase boundaries. It is the run's only
//! durable record, so everything anyone shows about a run is folded from it by [`fold`],
//! in the gateway, after a restart, and in tests alike.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::protocol::runs::{
    Mode, RunStatus, RunSummary, SessionEvent, StepState, StepSummary, Task, TmuxInfo, kind,
};
use crate::store::{Home, StoreError};

pub const DEFAULT_AGENT: &str = "default";

/// Appends events to one run's log.
pub struct SessionLog {
    path: PathBuf,
    file: File,
    run_id: String,
    seq: u64,
}

impl SessionLog {
    /// Opens (creating) the log and continues its sequence.
    pub fn open(path: &Path, run_id: &str) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            crate::store::fsutil::ensure_private_dir(dir)?;
        }
        let seq = read_events(path)?.last().map(|e| e.seq).unwrap_or(0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::io("cannot open session log", path, e))?;
        // A torn last line (a crash mid-write) is an incomplete record that was never
        // acknowledged: cut it off, as a write-ahead log does, so the next event starts a
        // line of its own and the file stays readable.
        if let Ok(bytes) = std::fs::read(path)
            && bytes.last().is_some_and(|&c| c != b'\n')
        {
            let keep = bytes.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
            tracing::warn!(
                "{}: dropping a torn last line ({} bytes)",
                path.display(),
                bytes.len() - keep
            );
            file.set_len(keep as u64)
                .map_err(|e| StoreError::io("cannot repair session log", path, e))?;
        }
        Ok(SessionLog {
            path: path.to_path_buf(),
            file,
            run_id: run_id.to_string(),
            seq,
        })
    }

    /// Appends one event (one write of one whole line, so concurrent appenders never
    /// interleave inside a line). `durable` also fsyncs: phase boundaries and the end.
    pub fn append(
        &mut self,
        kind: &str,
        payload: Value,
        durable: bool,
    ) -> Result<SessionEvent, StoreError> {
        self.seq += 1;
        let ev = SessionEvent {
            ts: jiff::Timestamp::now(),
            run_id: self.run_id.clone(),
            seq: self.seq,
            kind: kind.to_string(),
            payload,
        };
        let mut line = serde_json::to_vec(&ev).expect("serializes");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .and_then(|_| {
                if durable {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StoreError::io("cannot append to session log", &self.path, e))?;
        Ok(ev)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every event; a torn last line (a crash mid-write) is ignored.
pub fn read_events(path: &Path) -> Result<Vec<SessionEvent>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("cannot read session log", path, e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SessionEvent>(line) {
            Ok(ev) => out.push(ev),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(StoreError::Parse {
                    path: path.to_path_buf(),
                    location: Some((i + 1, e.column())),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

pub fn session_path(home: &Home, agent: &str, run_id: &str) -> PathBuf {
    home.agents()
        .join(agent)
        .join("sessions")
        .join(format!("{run_id}.jsonl"))
}

pub fn workspace_path(home: &Home, run_id: &str) -> PathBuf {
    home.workspace().join(run_id)
}

pub fn tmux_session_name(run_id: &str) -> String {
    format!("viber-{run_id}")
}

pub fn tmux_info(home: &Home, run_id: &str) -> TmuxInfo {
    let socket = home.tmux_socket().display().to_string();
    let session = tmux_session_name(run_id);
    TmuxInfo {
        attach: format!("tmux -S {socket} attach -r -t {session}"),
        socket,
        session,
    }
}

/// Relative path of a step's pane log inside the workspace.
pub fn step_log(index: u32) -> String {
    format!("evidence/terminal/{index}.log")
}

/// The `run.created` payload.
pub fn created_payload(task: &Task, mode: Mode, agent: &str, workspace: &Path) -> Value {
    json!({
        "task": task,
        "mode": mode,
        "agent": agent,
        "workspace": workspace,
    })
}

/// Folds a session log into a summary. `None` when the log has no `run.created`.
pub fn fold(home: &Home, events: &[SessionEvent]) -> Option<RunSummary> {
    let mut iter = events.iter();
    let first = iter.find(|e| e.kind == kind::CREATED)?;
    let task: Task = serde_json::from_value(first.payload["task"].clone()).ok()?;
    let mode: Mode =
        serde_json::from_value(first.payload["mode"].clone()).unwrap_or(Mode::AgentDecides);
    let agent = first.payload["agent"]
        .as_str()
        .unwrap_or(DEFAULT_AGENT)
        .to_string();
    let workspace = first.payload["workspace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut s = RunSummary {
        run_id: first.run_id.clone(),
        status: RunStatus::Queued,
        phase: None,
        goal: task.goal.clone(),
        mode,
        session_log: session_path(home, &agent, &first.run_id)
            .display()
            .to_string(),
        agent,
        workspace,
        created_at: first.ts,
        updated_at: first.ts,
        ended_at: None,
        reason: None,
        exit_code: RunStatus::Queued.exit_code(),
        steps: Vec::new(),
        tmux: tmux_info(home, &first.run_id),
        worker_pid: None,
        queue_position: None,
        seq: first.seq,
        budget: task.budget.clone(),
        usage: Default::default(),
        goal_history: Vec::new(),
        pending_approval: None,
        planner: None,
    };
    for ev in events.iter().filter(|e| e.seq > first.seq) {
        apply(&mut s, ev);
    }
    Some(s)
}

/// Applies one event to a summary. Events after the run ended change nothing but `seq`.
pub fn apply(s: &mut RunSummary, ev: &SessionEvent) {
    s.seq = s.seq.max(ev.seq);
    if s.status.is_terminal() {
        return;
    }
    s.updated_at = ev.ts;
    let p = &ev.payload;
    match ev.kind.as_str() {
        kind::STATUS => {
            if let Ok(status) = serde_json::from_value::<RunStatus>(p["status"].clone()) {
                s.status = status;
                s.exit_code = status.exit_code();
                if status.is_terminal() {
                    s.ended_at = Some(ev.ts);
                    s.phase = None;
                }
            }
            if let Some(phase) = p["phase"].as_str() {
                s.phase = Some(phase.to_string());
            }
            if let Some(reason) = p["reason"].as_str() {
                s.reason = Some(reason.to_string());
            }
        }
        kind::PROGRESS => {
            if let Some(phase) = p["phase"].as_str() {
                s.phase = Some(phase.to_string());
            }
            let Some(index) = p["step"]["index"].as_u64().map(|i| i as u32) else {
                return;
            };
            let pos = match s.steps.iter().position(|st| st.index == index) {
                Some(pos) => pos,
                None => {
                    s.steps.push(StepSummary {
                        index,
                        name: p["step"]["name"].as_str().unwrap_or("").to_string(),
                        command: p["step"]["command"].as_str().unwrap_or("").to_string(),
                        background: p["step"]["background"].as_bool().unwrap_or(false),
                        state: StepState::Pending,
                        exit_status: None,
                        log: step_log(index),
                    });
                    s.steps.len() - 1
                }
            };
            let step = &mut s.steps[pos];
            match p["event"].as_str() {
                Some("started") => step.state = StepState::Running,
                Some("exited") => {
                    step.state = StepState::Exited;
                    step.exit_status = p["exitStatus"].as_i64().map(|x| x as i32);
                }
                Some("killed") => step.state = StepState::Killed,
                _ => {}
            }
        }
        kind::WORKER => {
            s.worker_pid = p["pid"].as_u64().map(|x| x as u32);
        }
        kind::BUDGET => {
            if let Ok(b) = serde_json::from_value(p["limits"].clone()) {
                s.budget = b;
            }
        }
        kind::USAGE => {
            if let Ok(u) = serde_json::from_value(p.clone()) {
                s.usage = u;
            }
        }
        kind::RESCOPED => {
            if let Some(goal) = p["goal"].as_str() {
                let old = std::mem::replace(&mut s.goal, goal.to_string());
                s.goal_history.push(old);
            }
        }
        kind::PLANNER => {
            s.planner = p["planner"].as_str().map(str::to_string);
        }
        kind::APPROVAL_REQUESTED => s.pending_approval = Some(p.clone()),
        kind::APPROVAL_RESOLVED => s.pending_approval = None,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_after_a_torn_line_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut log = SessionLog::open(&path, "r").unwrap();
        log.append(kind::STATUS, json!({"status": "running"}), true)
            .unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"ts":"2026-01-01T00:00:00Z","runId":"r","se"#)
            .unwrap();
        let mut log = SessionLog::open(&path, "r").unwrap();
        log.append(kind::STATUS, json!({"status": "interrupted"}), true)
            .unwrap();
        // The incomplete record is gone; every line reads.
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].seq, 2);
        assert_eq!(events[1].payload["status"], "interrupted");
    }

    #[test]
    fn a_log_folds_into_the_same_summary_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let path = session_path(&home, DEFAULT_AGENT, "r1");
        let task = Task {
            goal: "g".into(),
            mode: None,
            workdir: None,
            budget: Default::default(),
            steps: vec![],
            accept: vec![],
            policy: Default::default(),
            approval_timeout_secs: None,
        };
        let mut log = SessionLog::open(&path, "r1").unwrap();
        log.append(
            kind::CREATED,
            created_payload(&task, Mode::AgentDecides, DEFAULT_AGENT, dir.path()),
            true,
        )
        .unwrap();
        log.append(
            kind::STATUS,
            json!({"status": "running", "phase": "execute"}),
            false,
        )
        .unwrap();
        drop(log);
        let mut log = SessionLog::open(&path, "r1").unwrap();
        log.append(
            kind::PROGRESS,
            json!({"phase": "execute", "step": {"index": 1, "command": "true", "name": "1"}, "event": "exited", "exitStatus": 3}),
            false,
        )
        .unwrap();
        log.append(
            kind::STATUS,
            json!({"status": "failed", "reason": "step 1 exited 3"}),
            true,
        )
        .unwrap();
        log.append(kind::STATUS, json!({"status": "succeeded"}), true)
            .unwrap();
        let events = read_events(&path).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let s = fold(&home, &events).unwrap();
        assert_eq!(
            s.status,
            RunStatus::Failed,
            "nothing changes a finished run"
        );
        assert_eq!(s.exit_code, 1);
        assert_eq!(s.steps[0].exit_status, Some(3));
        assert_eq!(s.reason.as_deref(), Some("step 1 exited 3"));
        assert_eq!(s.seq, 5);
    }
}
