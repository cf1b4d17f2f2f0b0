//! Execution in tmux, so a person can always watch: one private tmux server per VIBER_HOME
//! (`tmux -S VIBER_HOME/tmux.sock`), one session per run, one window per action with
//! `remain-on-exit`, and `pipe-pane` writing the pane's bytes to a log file.
//!
//! Two details make this lossless and honest:
//! - the pane's command waits on a `tmux wait-for` channel until `pipe-pane` is attached,
//!   so even a command that prints and exits at once loses nothing;
//! - the exit status is read from tmux (`#{pane_dead_status}`), never parsed from output,
//!   and the log is complete only once the pipe's `cat` has drained and left its marker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tmux_interface::{
    DisplayMessage, HasSession, KillPane, KillSession, ListPanes, NewSession, NewWindow, PipePane,
    SetEnvironment, SetOption, Tmux as TmuxCli, TmuxCommand, WaitFor,
};

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error(
        "tmux is not installed or not on PATH: install it (Debian/Ubuntu: `apt-get install tmux`, macOS: `brew install tmux`)"
    )]
    NotInstalled,
    #[error("tmux {what} failed: {stderr}")]
    Command { what: String, stderr: String },
    #[error("{0}")]
    Io(String),
}

/// A live (or dead but kept) pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pane {
    pub id: String,
    pub pid: u32,
}

/// How a pane's process ended, as tmux saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaneExit {
    pub status: Option<i32>,
    pub signal: Option<i32>,
}

impl PaneExit {
    /// The shell convention: the status, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        self.status.or(self.signal.map(|s| 128 + s)).unwrap_or(-1)
    }
}

pub struct Tmux {
    socket: PathBuf,
    /// Variables removed from every pane's environment (secrets the worker holds).
    scrub: Vec<String>,
}

/// Quotes for `sh`: the string inside single quotes, each `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Tmux {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Tmux {
            socket: socket.into(),
            scrub: Vec::new(),
        }
    }

    /// Panes started by this server will not see these environment variables.
    pub fn scrubbing(mut self, vars: Vec<String>) -> Self {
        self.scrub = vars;
        self
    }

    /// The tmux version, or why tmux cannot be used.
    pub fn check_installed() -> Result<String, TerminalError> {
        match std::process::Command::new("tmux").arg("-V").output() {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
            _ => Err(TerminalError::NotInstalled),
        }
    }

    fn run<'a>(
        &self,
        what: &str,
        cmd: impl Into<TmuxCommand<'a>>,
    ) -> Result<String, TerminalError> {
        let out = TmuxCli::new()
            .socket_path(self.socket.to_string_lossy().into_owned())
            .command(cmd)
            .output()
            .map_err(|e| match e {
                tmux_interface::Error::IO(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    TerminalError::NotInstalled
                }
                other => TerminalError::Command {
                    what: what.into(),
                    stderr: other.to_string(),
                },
            })?;
        let ok = out.success();
        let stderr = String::from_utf8_lossy(&out.0.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.0.stdout).trim().to_string();
        if !ok {
            return Err(TerminalError::Command {
                what: what.into(),
                stderr,
            });
        }
        Ok(stdout)
    }

    pub fn has_session(&self, session: &str) -> bool {
        self.run(
            "has-session",
            HasSession::new().target_session(format!("={session}")),
        )
        .is_ok()
    }

    /// Creates the run's session (a placeholder window keeps it alive between actions).
    pub fn ensure_session(&self, session: &str, workdir: &Path) -> Result<(), TerminalError> {
        if self.has_session(session) {
            return Ok(());
        }
        self.run(
            "new-session",
            NewSession::new()
                .detached()
                .session_name(session)
                .window_name("viber")
                .start_directory(workdir.to_string_lossy().into_owned())
                .width(200)
                .height(50)
                .shell_command("exec sleep 2147483647"),
        )?;
        // The server copied the worker's environment, secrets included: `-r` removes a
        // variable from every process the server starts from now on.
        for var in &self.scrub {
            self.run(
                "set-environment",
                SetEnvironment::new().global().remove().name(var.as_str()),
            )?;
        }
        // remain-on-exit is what lets us read the exit status of a finished pane.
        self.run(
            "set-option",
            SetOption::new()
                .global()
                .window()
                .option("remain-on-exit")
                .value("on"),
        )?;
        Ok(())
    }

    /// Starts `sh SCRIPT` in a new window of `session`, with its output piped losslessly
    /// to `log`. The command runs only after the pipe is attached.
    pub fn spawn(
        &self,
        session: &str,
        window: &str,
        workdir: &Path,
        script: &Path,
        log: &Path,
    ) -> Result<Pane, TerminalError> {
        let channel = format!("viber-go-{}", crate::identity::random_hex(8));
        let pane_cmd = format!(
            "tmux wait-for {channel} && exec sh {}",
            shell_quote(&script.to_string_lossy())
        );
        let out = self.run(
            "new-window",
            NewWindow::new()
                .detached()
                .print()
                .format("#{pane_id} #{pane_pid}")
                .target_window(format!("={session}:"))
                .window_name(window)
                .start_directory(workdir.to_string_lossy().into_owned())
                .shell_command(format!("sh -c {}", shell_quote(&pane_cmd))),
        )?;
        let mut parts = out.split_whitespace();
        let id = parts.next().unwrap_or_default().to_string();
        let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let pane = Pane { id, pid };
        let log_s = shell_quote(&log.to_string_lossy());
        let done = shell_quote(&done_marker(log).to_string_lossy());
        let piped = self.run(
            "pipe-pane",
            // tmux_interface 0.4 swaps the flags: its `stdin()` emits `-O` (pane output
            // to the command), which is what we want; `stdout()` would emit `-I`.
            PipePane::new()
                .stdin()
                .target_pane(pane.id.clone())
                .shell_command(format!("cat >> {log_s}; : > {done}")),
        );
        if let Err(e) = piped {
            let _ = self.run("kill-pane", KillPane::new().target_pane(pane.id.clone()));
            return Err(e);
        }
        self.run("wait-for", WaitFor::new().woken().channel(channel))?;
        Ok(pane)
    }

    /// `Some` once the pane's process has exited and tmux has its status.
    pub fn exit_status(&self, pane: &Pane) -> Result<Option<PaneExit>, TerminalError> {
        let out = self.run(
            "display-message",
            DisplayMessage::new()
                .print()
                .target_pane(pane.id.clone())
                .message("#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pid}"),
        )?;
        let mut f = out.split('|');
        if f.next() != Some("1") {
            return Ok(None);
        }
        let status = f.next().and_then(|s| s.parse().ok());
        let signal = f.next().and_then(|s| s.parse().ok());
        // tmux marks the pane dead when the pty closes, a moment before it reaps the
        // process: only then is the status known.
        if status.is_none() && signal.is_none() {
            // A tmux built with libutempter can miss the SIGCHLD of a child that exits
            // while utempter's own handler is installed (tmux/tmux#311), leaving the pane
            // dead with no status for ever. Another SIGCHLD makes the server reap it; it
            // is harmless when the server was about to anyway.
            if let Some(server) = f.next().and_then(|s| s.trim().parse::<i32>().ok())
                && server > 0
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(server),
                    nix::sys::signal::Signal::SIGCHLD,
                );
            }
            return Ok(None);
        }
        Ok(Some(PaneExit { status, signal }))
    }

    /// Removes a finished pane and waits (up to `timeout`) until its pipe has drained
    /// into the log. Returns whether the log is known complete.
    pub fn close_pane(&self, pane: &Pane, log: &Path, timeout: Duration) -> bool {
        let _ = self.run("kill-pane", KillPane::new().target_pane(pane.id.clone()));
        let marker = done_marker(log);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if marker.exists() {
                let _ = std::fs::remove_file(&marker);
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Pids of every pane's process in `session`.
    pub fn pane_pids(&self, session: &str) -> Vec<i32> {
        self.run(
            "list-panes",
            ListPanes::new()
                .session()
                .target(format!("={session}"))
                .format("#{pane_pid} #{pane_dead}"),
        )
        .map(|out| {
            out.lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let pid = f.next()?.parse().ok()?;
                    (f.next() == Some("0")).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Ends the run's session and every process it started: SIGTERM to each pane's process
    /// group (a pane's shell leads its own group), SIGKILL to what is left after `grace`,
    /// then kill-session. Idempotent.
    pub fn kill_session(&self, session: &str, also: &[i32], grace: Duration) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        // Live panes, plus the groups of panes already gone: a finished step may have
        // left a `nohup server &` behind in its group.
        let mut pids = self.pane_pids(session);
        pids.extend(also.iter().copied().filter(|&p| p > 1));
        pids.sort_unstable();
        pids.dedup();
        for &pid in &pids {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && pids.iter().any(|&p| group_running(p)) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for &pid in &pids {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.run(
            "kill-session",
            KillSession::new().target_session(format!("={session}")),
        );
    }
}

/// Whether any process of group `pgid` still runs. An exited process that tmux has not
/// reaped yet (a zombie) does not count: waiting for it would only wait out the grace.
fn group_running(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No procfs (not Linux): the group exists, zombies included.
        return nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok();
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let pgrp = f.nth(1).and_then(|g| g.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

fn done_marker(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".done");
    log.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_group_is_not_running() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        assert!(group_running(pgid));
        child.kill().unwrap();
        // Not reaped yet: a zombie until wait(), and already not running.
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_running(pgid) {
            assert!(Instant::now() < deadline, "the killed group still runs");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("it's $HOME `x`")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $HOME `x`");
    }

    #[test]
    fn a_pane_runs_logs_losslessly_and_reports_its_status() {
        if Tmux::check_installed().is_err() {
            eprintln!("tmux not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux::new(dir.path().join("t.sock"));
        tmux.ensure_session("s", dir.path()).unwrap();
        let script = dir.path().join("1.sh");
        std::fs::write(&script, "printf 'fast\\n'; seq 1 20000; exit 7\n").unwrap();
        let log = dir.path().join("1.log");
        let pane = tmux
            .spawn("s", "step-1", dir.path(), &script, &log)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(e) = tmux.exit_status(&pane).unwrap() {
                break e;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(exit.status, Some(7));
        assert!(tmux.close_pane(&pane, &log, Duration::from_secs(10)));
        let text = std::fs::read_to_string(&log).unwrap().replace("\r\n", "\n");
        let mut expected = String::from("fast\n");
        for i in 1..=20000 {
            expected.push_str(&format!("{i}\n"));
        }
        assert_eq!(text.len(), expected.len(), "the log lost or gained bytes");
        assert!(
            text == expected,
            "the log differs from what the command printed"
        );
        tmux.kill_session("s", &[], Duration::from_secs(2));
        assert!(!tmux.has_session("s"));
    }
}
