//! `viber run TASK.yaml` / `viber run --goal "..."`: start a run and follow it to its end.
//!
//! The task file is read and checked here, before anything starts, so a typo costs a
//! clear message and exit 2 rather than a half-started run. If no gateway runs for this
//! home, one is started in the background first (like atuin's daemon), unless
//! `--no-autostart`. The exit code is the run's outcome (DESIGN.md section 8).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::Ctx;
use crate::agent::task;
use crate::client::{Client, Incoming};
use crate::error::Error;
use crate::gateway::instance;
use crate::output;
use crate::protocol::runs::{RunStatus, RunSummary};
use crate::protocol::{Scope, events};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Task file (YAML): goal, mode, workdir, budget, steps, accept
    #[arg(
        value_name = "TASK",
        required_unless_present = "goal",
        conflicts_with = "goal"
    )]
    task: Option<PathBuf>,
    /// Start from a goal string instead of a task file
    #[arg(long, value_name = "TEXT")]
    goal: Option<String>,
    /// Return once the run is started, printing its id
    #[arg(long)]
    detach: bool,
    /// Do not start a gateway when none is running
    #[arg(long)]
    no_autostart: bool,
    /// A stable key so a retried invocation (cron, CI) starts the run only once
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// always-ask, agent-decides or always-execute (overrides the task and config)
    #[arg(long, value_name = "MODE", value_parser = super::policy::parse_mode)]
    mode: Option<crate::protocol::runs::Mode>,
    /// Seconds an approval may wait before the run ends `blocked` (exit 4)
    #[arg(long, value_name = "SECS")]
    approval_timeout: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let (task, task_file) = match (&args.task, &args.goal) {
        (Some(path), _) => (
            task::load(path).map_err(|e| Error::BadInput(e.to_string()))?,
            Some(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
        ),
        (None, Some(goal)) => (task::from_goal(goal).map_err(Error::BadInput)?, None),
        (None, None) => return Err(Error::Usage("give a task file or --goal".into())),
    };
    let mut task = task;
    if let Some(m) = args.mode {
        task.mode = Some(m);
    }
    if let Some(t) = args.approval_timeout {
        task.approval_timeout_secs = Some(t);
    }
    if ctx.global.gateway.is_none() && !args.no_autostart && instance::running(&ctx.home).is_none()
    {
        let info = super::gateway::spawn_detached(ctx, None, Duration::from_secs(10))?;
        eprintln!(
            "viber: no gateway was running for {}; started one (pid {}) on {}",
            ctx.home.root().display(),
            info.pid,
            info.url
        );
    }
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if key.is_empty() || key.chars().count() > 128 {
        return Err(Error::Usage(
            "--idempotency-key must be 1 to 128 characters".into(),
        ));
    }
    let mut client = ctx.connect(vec![Scope::OperatorAdmin]).await?;
    let mut params = json!({"task": task, "idempotencyKey": key});
    if let Some(f) = task_file {
        params["taskFile"] = json!(f);
    }
    let started = client.request("run.start", params).await?;
    let run_id = started["runId"].as_str().unwrap_or_default().to_string();
    if args.detach {
        client.close();
        if ctx.json() {
            output::json(&json!({
                "schema": "viber.run/v1",
                "runId": run_id,
                "status": started["status"],
                "workspace": started["workspace"],
            }));
        } else {
            output::line(&run_id);
        }
        return Ok(());
    }
    if !ctx.json() {
        eprintln!(
            "viber: run {run_id} started; workspace {}",
            started["workspace"].as_str().unwrap_or("")
        );
    }
    let summary = follow(ctx, &mut client, &run_id).await?;
    client.close();
    finish(ctx, &summary)
}

/// Prints the outcome and turns it into the exit code.
pub fn finish(ctx: &Ctx, s: &RunSummary) -> Result<(), Error> {
    if ctx.json() {
        output::json(&run_json(s));
    } else {
        output::line(&format!(
            "run {} {}{}",
            s.run_id,
            s.status,
            s.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        output::line(&format!("workspace {}", s.workspace));
    }
    match s.status.exit_code() {
        0 => Ok(()),
        code => Err(Error::Exit(code)),
    }
}

/// The `viber.run/v1` object: the run's summary with its schema.
pub fn run_json(s: &RunSummary) -> Value {
    let mut v = serde_json::to_value(s).expect("serializes");
    v["schema"] = json!("viber.run/v1");
    v
}

pub async fn get(client: &Client, run_id: &str) -> Result<RunSummary, Error> {
    let v = client.request("run.get", json!({"runId": run_id})).await?;
    serde_json::from_value(v)
        .map_err(|e| Error::Failed(format!("the gateway sent an unreadable run: {e}")))
}

/// Follows a run's events until it ends, printing progress; returns the final summary.
/// Events are push-only: on a seq gap, or when the gateway restarts, the state is re-read
/// with `run.get` and the run is followed on.
pub async fn follow(ctx: &Ctx, client: &mut Client, run_id: &str) -> Result<RunSummary, Error> {
    let progress = Progress::new(ctx.json());
    let mut s = get(client, run_id).await?;
    let mut expected = 1u64;
    loop {
        if s.status.is_terminal() {
            progress.done();
            return Ok(s);
        }
        progress.show(&s);
        let tick = Duration::from_millis(client.hello.policy.tick_interval_ms.max(1) * 5 / 2);
        let incoming = tokio::select! {
            inc = client.next_incoming() => inc,
            _ = tokio::time::sleep(tick) => None,
        };
        match incoming {
            Some(Incoming::Event(ev)) => {
                if let Some(seq) = ev.seq {
                    let wanted = expected;
                    expected = expected.max(seq + 1);
                    if seq > wanted {
                        if ctx.json() {
                            output::json(&json!({
                                "schema": "viber.gap/v1",
                                "expected": wanted,
                                "got": seq,
                                "missed": seq - wanted,
                            }));
                        }
                        s = get(client, run_id).await?;
                        continue;
                    }
                }
                if ev.payload["runId"] != run_id {
                    continue;
                }
                if ev.event == events::APPROVAL_REQUESTED {
                    if ctx.json() {
                        output::json(
                            &json!({"schema": "viber.event/v1", "event": ev.event, "seq": ev.seq, "payload": ev.payload}),
                        );
                    } else if interactive() {
                        prompt_approval(client, &ev.payload, &progress).await?;
                    } else {
                        progress.line(&format!(
                            "waiting for approval: {}\n  answer with: viber approve {} --allow|--deny",
                            super::approve::describe(&ev.payload),
                            ev.payload["approvalId"].as_str().unwrap_or("")
                        ));
                    }
                    continue;
                }
                if ev.event == events::RUN_STATUS || ev.event == events::RUN_PROGRESS {
                    if ctx.json() {
                        output::json(
                            &json!({"schema": "viber.event/v1", "event": ev.event, "seq": ev.seq, "payload": ev.payload}),
                        );
                    } else {
                        progress.event(&ev.event, &ev.payload);
                    }
                    if ev.event == events::RUN_STATUS
                        && serde_json::from_value::<RunStatus>(ev.payload["status"].clone())
                            .is_ok_and(|st| st.is_terminal())
                    {
                        s = get(client, run_id).await?;
                    }
                }
            }
            None => {
                // No tick for 2.5 intervals: the link is dead (or just quiet); re-check.
                s = reconnect(ctx, client, run_id).await?;
                expected = 1;
            }
            Some(Incoming::Closed { .. }) => {
                s = reconnect(ctx, client, run_id).await?;
                expected = 1;
            }
        }
    }
}

/// Reconnects (a restarted gateway may listen elsewhere) for up to 30 s and re-reads.
async fn reconnect(ctx: &Ctx, client: &mut Client, run_id: &str) -> Result<RunSummary, Error> {
    if let Ok(s) = get(client, run_id).await {
        return Ok(s);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match ctx.connect(vec![Scope::OperatorAdmin]).await {
            Ok(c) => {
                *client = c;
                eprintln!("viber: reconnected to the gateway");
                return get(client, run_id).await;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::LinkLost(format!(
        "lost the gateway while following run {run_id} and could not reconnect within 30 s{}",
        last.map(|e| format!(": {e}")).unwrap_or_default()
    )))
}

/// Whether a person sits at this terminal to answer prompts.
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks at the terminal: allow once, allow always for the prefix, deny, deny with a
/// message. Someone else (`viber approve`) may answer first; then this answer is moot.
async fn prompt_approval(client: &Client, a: &Value, progress: &Progress) -> Result<(), Error> {
    let command = a["command"].as_str().unwrap_or("").to_string();
    let prefix = crate::agent::policy::remember_prefix(&command);
    let reason = a["reason"].as_str().unwrap_or("").to_string();
    let bar = progress.bar.clone();
    let answer = tokio::task::spawn_blocking(move || -> Option<(bool, bool, Option<String>)> {
        let ask = || {
            let items = [
                "Allow once".to_string(),
                format!("Allow always for `{prefix}` (this run)"),
                "Deny".to_string(),
                "Deny with a message".to_string(),
            ];
            let choice = dialoguer::Select::new()
                .with_prompt(format!("Run `{command}`? ({reason})"))
                .items(&items)
                .default(0)
                .interact_opt()
                .ok()??;
            Some(match choice {
                0 => (true, false, None),
                1 => (true, true, None),
                2 => (false, false, None),
                _ => {
                    let msg: String = dialoguer::Input::new()
                        .with_prompt("Message")
                        .allow_empty(true)
                        .interact_text()
                        .ok()?;
                    (false, false, Some(msg))
                }
            })
        };
        match bar {
            Some(pb) => pb.suspend(ask),
            None => ask(),
        }
    })
    .await
    .map_err(|e| Error::Failed(format!("the prompt failed: {e}")))?;
    let Some((allow, remember, message)) = answer else {
        return Ok(()); // Esc: leave it to `viber approve` or the timeout
    };
    let id = a["approvalId"].as_str().unwrap_or("");
    match super::approve::resolve(client, id, allow, remember, message.as_deref(), None).await {
        Ok(_) => Ok(()),
        Err(Error::Client(crate::client::ClientError::Rejected(e)))
            if e.code == crate::protocol::ErrorCode::NotFound =>
        {
            progress.line("that approval was already answered elsewhere");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Progress for people: a spinner on a terminal, plain lines otherwise, nothing with --json.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    fn new(json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!json && tty).then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        });
        Progress {
            plain: !json && !tty,
            bar,
        }
    }

    fn show(&self, s: &RunSummary) {
        if let Some(pb) = &self.bar {
            let step = s
                .steps
                .iter()
                .rev()
                .find(|st| st.state == crate::protocol::runs::StepState::Running)
                .map(|st| format!(" step {} `{}`", st.index, st.command))
                .unwrap_or_default();
            pb.set_message(format!(
                "{} {}{}",
                s.status,
                s.phase.as_deref().unwrap_or(""),
                step
            ));
        }
    }

    fn event(&self, name: &str, p: &Value) {
        let line = if name == events::RUN_PROGRESS {
            let st = &p["step"];
            match p["event"].as_str() {
                Some("started") => format!(
                    "step {} `{}` started{}",
                    st["index"],
                    st["command"].as_str().unwrap_or(""),
                    if st["background"] == true {
                        " (background)"
                    } else {
                        ""
                    }
                ),
                Some("exited") => format!(
                    "step {} exited with status {}",
                    st["index"], p["exitStatus"]
                ),
                Some(other) => format!("step {} {other}", st["index"]),
                None => return,
            }
        } else {
            match p["phase"].as_str() {
                Some(phase) => format!("{} ({phase})", p["status"].as_str().unwrap_or("")),
                None => return,
            }
        };
        if let Some(pb) = &self.bar {
            pb.println(line);
        } else if self.plain {
            output::line(&line);
        }
    }

    fn line(&self, line: &str) {
        if let Some(pb) = &self.bar {
            pb.println(line);
        } else if self.plain {
            output::line(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
