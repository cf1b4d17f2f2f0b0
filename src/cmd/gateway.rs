//! `viber gateway`: the daemon in the foreground, or `start`/`stop` it in the background.
//!
//! `start` follows the atuin pattern: if the lock says one already runs, do nothing;
//! otherwise spawn ourselves detached and wait (with a deadline) until `gateway.json`
//! names the new process, so the next command can connect at once.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;

use super::{Ctx, url_for};
use crate::error::Error;
use crate::gateway::{self, Gateway, instance};
use crate::output;
use crate::store::init;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Address to listen on [default: config gateway.bind, 127.0.0.1:7878]; port 0 picks a free one
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    bind: Option<SocketAddr>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start the gateway in the background (no-op if one already runs)
    Start {
        /// How long to wait for it to accept connections
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        timeout: u64,
    },
    /// Stop the running gateway (SIGTERM, then wait for it to exit)
    Stop {
        /// How long to wait for it to exit
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        timeout: u64,
    },
}

impl Args {
    pub fn is_foreground(&self) -> bool {
        self.action.is_none()
    }
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    match args.action {
        None => foreground(ctx, args.bind).await,
        Some(Action::Start { timeout }) => start(ctx, args.bind, Duration::from_secs(timeout)),
        Some(Action::Stop { timeout }) => stop(ctx, Duration::from_secs(timeout)),
    }
}

async fn foreground(ctx: &Ctx, bind: Option<SocketAddr>) -> Result<(), Error> {
    check_exposed_bind(ctx, bind)?;
    let created = init::ensure(&ctx.home)?;
    for p in &created.created {
        tracing::info!("created {p}");
    }
    let config = ctx.config()?;
    let lock = instance::acquire(&ctx.home)?;
    let bind = match bind {
        Some(b) => b,
        None => config
            .gateway
            .bind
            .parse()
            .map_err(|_| Error::Usage("gateway.bind is not ADDRESS:PORT".into()))?,
    };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Failed(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the bound address", e))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "listening on non-loopback {addr}: every client needs the gateway token or a paired device"
        );
    }
    let url = url_for(addr);
    let gw = Arc::new(Gateway::load(ctx.home.clone(), config, url.clone())?);
    instance::write_info(
        &ctx.home,
        &instance::GatewayInfo {
            pid: std::process::id(),
            url: url.clone(),
            started_at: gw.started_at,
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )?;
    tracing::info!(
        "gateway listening on {url} (home {})",
        ctx.home.root().display()
    );
    let result = gateway::serve(listener, gw, shutdown_signal()).await;
    instance::remove_info(&ctx.home);
    drop(lock);
    tracing::info!("gateway stopped");
    result.map_err(|e| Error::io("gateway failed", e))
}

/// A gateway on a non-loopback address is reachable by other hosts, so it must already
/// have its token file, private to this user: creating a fresh one on the spot (as a
/// loopback start does) would expose a gateway whose secret nobody chose to hand out.
fn check_exposed_bind(ctx: &Ctx, bind: Option<SocketAddr>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let bind = match bind {
        Some(b) => b,
        None => match ctx.config()?.gateway.bind.parse::<SocketAddr>() {
            Ok(b) => b,
            Err(_) => return Ok(()), // reported by the caller
        },
    };
    if bind.ip().is_loopback() {
        return Ok(());
    }
    let path = ctx.home.gateway_token();
    let meta = std::fs::metadata(&path).map_err(|_| {
        Error::Usage(format!(
            "refusing to listen on non-loopback {bind} without a token file ({} does not exist): run `viber init` first, or bind 127.0.0.1 and use an SSH tunnel",
            path.display()
        ))
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Usage(format!(
            "refusing to listen on non-loopback {bind}: {} is readable by other users (chmod 600 it)",
            path.display()
        )));
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("terminated"),
    }
}

fn report(ctx: &Ctx, state: &str, info: &instance::GatewayInfo, message: &str) {
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.gateway/v1",
            "state": state,
            "pid": info.pid,
            "url": info.url,
            "home": ctx.home.root(),
        }));
    } else {
        output::line(message);
    }
}

fn start(ctx: &Ctx, bind: Option<SocketAddr>, timeout: Duration) -> Result<(), Error> {
    if let Some(info) = instance::running(&ctx.home) {
        let msg = format!("gateway already running (pid {}) on {}", info.pid, info.url);
        report(ctx, "already-running", &info, &msg);
        return Ok(());
    }
    let info = spawn_detached(ctx, bind, timeout)?;
    let msg = format!(
        "gateway started (pid {}) on {}\nlogs: {}",
        info.pid,
        info.url,
        ctx.home.gateway_log().display()
    );
    report(ctx, "started", &info, &msg);
    Ok(())
}

/// Starts a detached gateway for this home and waits until it accepts connections.
/// If another one won a race to start, that one is returned: it is as good as ours.
pub fn spawn_detached(
    ctx: &Ctx,
    bind: Option<SocketAddr>,
    timeout: Duration,
) -> Result<instance::GatewayInfo, Error> {
    // Fail here, in the user's terminal, rather than in a detached child's log.
    check_exposed_bind(ctx, bind)?;
    init::ensure(&ctx.home)?;
    ctx.config()?;

    let log_path = ctx.home.gateway_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .mode(0o600)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the viber executable", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home").arg(ctx.home.root()).arg("gateway");
    if let Some(b) = bind {
        cmd.arg("--bind").arg(b.to_string());
    }
    // A fresh process group: Ctrl-C in this terminal must not reach the daemon.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .env_remove("VIBER_GATEWAY_TOKEN")
        .env_remove("VIBER_GATEWAY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io("cannot start the gateway", e))?;
    let pid = child.id();

    let deadline = Instant::now() + timeout;
    loop {
        if let Some(info) = instance::running(&ctx.home)
            && (info.pid == pid || child.try_wait().ok().flatten().is_some())
        {
            return Ok(info);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Failed(format!(
                "the gateway exited during start-up ({status}); last log lines:\n{}",
                tail(&log_path, 5)
            )));
        }
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "the gateway (pid {pid}) did not become ready within {} s; see {}",
                timeout.as_secs(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop(ctx: &Ctx, timeout: Duration) -> Result<(), Error> {
    let Some(info) = instance::running(&ctx.home) else {
        if ctx.json() {
            output::json(
                &json!({"schema": "viber.gateway/v1", "state": "not-running", "home": ctx.home.root()}),
            );
        } else {
            output::line(&format!(
                "no gateway running for {}",
                ctx.home.root().display()
            ));
        }
        return Ok(());
    };
    let pid = nix::unistd::Pid::from_raw(info.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| Error::Failed(format!("cannot signal the gateway (pid {}): {e}", info.pid)))?;
    let deadline = Instant::now() + timeout;
    while instance::is_running(&ctx.home) {
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "the gateway (pid {}) did not stop within {} s; `kill -9 {}` ends it, losing nothing",
                info.pid,
                timeout.as_secs(),
                info.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report(
        ctx,
        "stopped",
        &info,
        &format!("gateway stopped (pid {})", info.pid),
    );
    Ok(())
}

fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
