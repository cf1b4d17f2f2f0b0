//! Test harness: a temporary VIBER_HOME, the real `viber` binary, a real gateway on a free
//! loopback port, and a raw WebSocket client for frames the CLI would never send.
//! Nothing here sleeps a fixed time to wait for readiness: it polls a condition with a
//! deadline.
#![allow(dead_code)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub const BIN: &str = env!("CARGO_BIN_EXE_viber");

/// Polls `cond` every few ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayJson {
    pub pid: u32,
    pub url: String,
    pub started_at: String,
    pub version: String,
}

pub struct TestHome {
    dir: tempfile::TempDir,
}

impl Drop for TestHome {
    fn drop(&mut self) {
        // Whatever a failed test left running in this home's private tmux server.
        let _ = StdCommand::new("tmux")
            .arg("-S")
            .arg(self.file("tmux.sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

impl TestHome {
    /// A fresh home, initialized with `viber init`.
    pub fn new() -> Self {
        let home = Self::empty();
        home.viber().arg("init").assert().success();
        home
    }

    /// A home directory that does not exist yet.
    pub fn empty() -> Self {
        TestHome {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// `viber --home H` with no VIBER_* variables leaking in from the environment.
    pub fn viber(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(BIN);
        clean_env(cmd.env_remove("VIBER_HOME"));
        cmd.arg("--home").arg(self.path());
        cmd.timeout(Duration::from_secs(60));
        cmd
    }

    pub fn std_viber(&self) -> StdCommand {
        let mut cmd = StdCommand::new(BIN);
        cmd.env_remove("VIBER_HOME")
            .env_remove("VIBER_GATEWAY_URL")
            .env_remove("VIBER_GATEWAY_TOKEN")
            .env_remove("RUST_LOG");
        cmd.arg("--home").arg(self.path());
        cmd
    }

    /// Replaces config.yaml.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.file("config.yaml"), yaml).unwrap();
    }

    /// Writes a task file next to the home (in `../tasks`, which is also its workdir).
    pub fn task(&self, name: &str, yaml: &str) -> PathBuf {
        let dir = self.file("../tasks");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// `viber run TASK --json`: the process output and its last line, the run summary.
    pub fn run_json(&self, task: &Path) -> (std::process::Output, serde_json::Value) {
        let out = self
            .viber()
            .arg("run")
            .arg(task)
            .arg("--json")
            .output()
            .unwrap();
        let last = json_lines(&out).pop().unwrap_or(serde_json::Value::Null);
        (out, last)
    }

    /// Polls `viber status RUN --json` until `pred` holds; returns that status.
    pub fn wait_run(
        &self,
        run_id: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(what, Duration::from_secs(60), || {
            let out = self
                .viber()
                .args(["status", run_id, "--json"])
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            pred(&v).then_some(v)
        })
    }

    /// Whether this home's tmux server still has a session for the run.
    pub fn tmux_has_session(&self, run_id: &str) -> bool {
        StdCommand::new("tmux")
            .arg("-S")
            .arg(self.file("tmux.sock"))
            .args(["has-session", "-t", &format!("=viber-{run_id}")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// A config with a fast tick so liveness tests finish quickly.
    pub fn fast_ticks(&self, ms: u64) {
        self.write_config(&format!("gateway:\n  tick_interval_ms: {ms}\n"));
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.file("gateway/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn gateway_json(&self) -> Option<GatewayJson> {
        let text = std::fs::read_to_string(self.file("gateway/gateway.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Starts `viber gateway` in the foreground on a free port and waits until it listens.
    pub fn start_gateway(&self) -> GatewayProc {
        let child = self
            .std_viber()
            .args(["gateway", "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut proc = GatewayProc {
            child: Some(child),
            pid,
            url: String::new(),
        };
        let url = wait_for(
            "gateway.json of the new gateway",
            Duration::from_secs(20),
            || {
                if let Some(Ok(Some(status))) = proc.child.as_mut().map(|c| c.try_wait()) {
                    let out = proc.child.take().unwrap().wait_with_output().unwrap();
                    panic!(
                        "gateway exited early ({status}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                self.gateway_json().filter(|g| g.pid == pid).map(|g| g.url)
            },
        );
        proc.url = url;
        proc
    }
}

pub fn clean_env(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.env_remove("VIBER_GATEWAY_URL")
        .env_remove("VIBER_GATEWAY_TOKEN")
        .env_remove("RUST_LOG")
}

/// A gateway child process; SIGTERM and reaped on drop.
pub struct GatewayProc {
    pub child: Option<Child>,
    pub pid: u32,
    pub url: String,
}

impl GatewayProc {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig).unwrap();
    }

    /// SIGTERM, then wait (with a deadline) for the exit status and stderr.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("gateway already stopped");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = wait_for("the gateway to exit", Duration::from_secs(20), || {
            child.try_wait().unwrap()
        });
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses stdout as one JSON value.
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Parses stdout as NDJSON, one value per line.
pub fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}
