//! `viber-bench`: the load generator behind DESIGN.md section 9. Each scenario prints
//! exactly one JSON object (`"schema":"viber.bench/v1"`) on stdout; progress goes to stderr.
//!
//! Why ratios against baselines measured in the same run: absolute figures (requests per
//! second, handshakes per second) say as much about the machine as about viber. The
//! project's machine has 2 cores shared by the gateway, the load generator and whatever
//! else happens to run, and its speed drifts from one minute to the next. So every
//! throughput target is stated against a baseline that needs the same hardware and is
//! measured in the same invocation, under the same load shape: the handshake rate against
//! raw Ed25519 verifications per second on one core, the gateway's request rate against a
//! bare tokio-tungstenite echo server driven by the same client code, and the `status`
//! round trip next to the bare cost of spawning the `viber` binary. A ratio taken this way
//! is stable where an absolute number is not, and it is what the targets are about.
//!
//! Two targets are absolute: terminal latency (`terminal`) and fan-out deliveries per second
//! (`fanout`). For those, each scenario also reports the CPU that the gateway and the load
//! generator used, which tells a figure bound by the gateway from one bound by the load
//! generator or by the run producing too few events.
//!
//! Every scenario that needs a gateway runs the real `viber` binary (the one next to this
//! executable unless `--viber` says otherwise) in a fresh temporary VIBER_HOME, listening
//! on 127.0.0.1 port 0, and always stops it (SIGTERM, then SIGKILL after a deadline) and
//! removes the home, even when the scenario fails. Every loop is bounded by a count and a
//! deadline; all traffic goes to 127.0.0.1.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use viber::client::{Client, ConnectOptions};
use viber::gateway::instance::GatewayInfo;
use viber::identity::DeviceKey;
use viber::protocol::runs::RunStatus;
use viber::protocol::{Frame, Scope};
use viber::store::Home;

const SCHEMA: &str = "viber.bench/v1";

#[derive(Debug, Parser)]
#[command(
    name = "viber-bench",
    about = "Load generator for the DESIGN.md section 9 performance targets",
    long_about = "Runs one scenario against a freshly spawned gateway (127.0.0.1, temporary \
                  VIBER_HOME) and prints one JSON object on stdout; `all` prints one per line. \
                  Throughput figures come with a baseline measured in the same run."
)]
struct Cli {
    /// The viber binary to benchmark [default: `viber` next to this executable]
    #[arg(long, global = true, value_name = "PATH")]
    viber: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// `viber status --json` as a whole process, N times; median/p95/min ms
    Roundtrip(RoundtripArgs),
    /// Gateway spawn to first completed handshake, N times; plus idle RSS
    Spawn(SpawnArgs),
    /// Handshakes per second against one gateway vs raw Ed25519 verify speed
    Connect(ConnectArgs),
    /// Hold N authenticated idle connections; gateway RSS and time to establish
    Idle(IdleArgs),
    /// Pipelined `health` requests per second vs a bare tokio-tungstenite echo server
    Rpc(RpcArgs),
    /// Only the echo-server side of `rpc`
    EchoBaseline(RpcArgs),
    /// A run's pane output to `viber watch RUN --terminal`: per-line latency, bytes lost
    Terminal(TerminalArgs),
    /// Events fanned out to N watcher connections: deliveries per second
    Fanout(FanoutArgs),
    /// Every scenario with modest defaults, one JSON object per line
    All,
}

#[derive(Debug, Clone, clap::Args)]
struct RoundtripArgs {
    /// Timed runs
    #[arg(long, default_value_t = 50)]
    n: usize,
    /// Untimed runs first (page cache, pairing)
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct SpawnArgs {
    /// Gateway starts to time
    #[arg(long, default_value_t = 10)]
    n: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct ConnectArgs {
    /// Handshakes to perform
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Signature verifications for the one-core baseline
    #[arg(long, default_value_t = 20_000)]
    verify_n: usize,
    /// Scope the connections ask for (operator.read and operator.admin receive the presence
    /// event every other connect and close causes; operator.write does not)
    #[arg(long, default_value = "operator.admin")]
    scope: String,
}

#[derive(Debug, Clone, clap::Args)]
struct IdleArgs {
    /// Idle connections to hold
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Handshakes in flight while establishing them
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Scope every idle connection asks for (operator.read and operator.admin receive
    /// presence events, operator.write does not)
    #[arg(long, default_value = "operator.admin")]
    scope: String,
    /// Give up establishing connections after this many seconds and report how many made it
    #[arg(long, default_value_t = 180)]
    deadline_secs: u64,
    /// Stop establishing connections once the gateway's RSS passes this many MB (the machine
    /// is shared: better a partial figure than the OOM killer)
    #[arg(long, default_value_t = 4096)]
    max_rss_mb: u64,
}

#[derive(Debug, Clone, clap::Args)]
struct RpcArgs {
    /// Requests per measurement, split evenly over the connections
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Connection counts to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    connections: Vec<usize>,
    /// Requests in flight per connection
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Measurements per figure; the median is reported
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct TerminalArgs {
    /// Bytes per second the step writes to its pane
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Seconds the step writes for
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Bytes per line; a line is `<CLOCK_MONOTONIC ns> <line number> <padding>`
    #[arg(long, default_value_t = 100)]
    line_bytes: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct FanoutArgs {
    /// Watcher connections (operator.read, raw handshake, frames timed as they arrive)
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Steps (each `true`) of the run whose run.progress and run.status events are fanned out
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Connect-then-close cycles of extra operator.write connections, each making two
    /// presence deltas (the direct fan-out measurement)
    #[arg(long, default_value_t = 1000)]
    connects: usize,
    /// Extra connections in flight at once during the presence phase
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bench = match Bench::new(cli.viber) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("viber-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runs = match cli.scenario {
        Scenario::All => all_scenarios(),
        one => vec![one],
    };
    let mut failed = false;
    for scenario in runs {
        let name = scenario.name();
        eprintln!("viber-bench: running {name}");
        let started = Instant::now();
        let mut obj = match scenario.run(&bench) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("viber-bench: {name} failed: {e:#}");
                failed = true;
                json!({"schema": SCHEMA, "scenario": name, "error": format!("{e:#}")})
            }
        };
        obj["machine"] = machine();
        obj["wallSeconds"] = json!(round(started.elapsed().as_secs_f64(), 1));
        println!("{}", schema_first(obj));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line of JSON with `schema` and `scenario` first (serde_json sorts the rest).
fn schema_first(mut obj: Value) -> String {
    let field = |v: Value| serde_json::to_string(&v).expect("JSON serializes");
    let head = format!(
        "{{\"schema\":{},\"scenario\":{}",
        field(obj["schema"].take()),
        field(obj["scenario"].take())
    );
    if let Some(map) = obj.as_object_mut() {
        map.remove("schema");
        map.remove("scenario");
    }
    let rest = field(obj);
    match rest.strip_prefix('{').filter(|r| *r != "}") {
        Some(r) => format!("{head},{r}"),
        None => format!("{head}}}"),
    }
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Roundtrip(_) => "roundtrip",
            Scenario::Spawn(_) => "spawn",
            Scenario::Connect(_) => "connect",
            Scenario::Idle(_) => "idle",
            Scenario::Rpc(_) => "rpc",
            Scenario::EchoBaseline(_) => "echo-baseline",
            Scenario::Terminal(_) => "terminal",
            Scenario::Fanout(_) => "fanout",
            Scenario::All => "all",
        }
    }

    fn run(&self, b: &Bench) -> Result<Value> {
        match self {
            Scenario::Roundtrip(a) => roundtrip(b, a),
            Scenario::Spawn(a) => spawn(b, a),
            Scenario::Connect(a) => connect(b, a),
            Scenario::Idle(a) => idle(b, a),
            Scenario::Rpc(a) => rpc(b, a, true),
            Scenario::EchoBaseline(a) => rpc(b, a, false),
            Scenario::Terminal(a) => terminal(b, a),
            Scenario::Fanout(a) => fanout(b, a),
            Scenario::All => bail!("`all` is a list of scenarios, not one"),
        }
    }
}

/// `all`: every scenario, sized to finish in a few minutes on 2 cores.
fn all_scenarios() -> Vec<Scenario> {
    vec![
        Scenario::Roundtrip(RoundtripArgs { n: 30, warmup: 2 }),
        Scenario::Spawn(SpawnArgs { n: 10 }),
        Scenario::Connect(ConnectArgs {
            n: 2000,
            concurrency: 32,
            verify_n: 20_000,
            scope: "operator.admin".into(),
        }),
        Scenario::Idle(IdleArgs {
            n: 500,
            concurrency: 64,
            scope: "operator.admin".into(),
            deadline_secs: 120,
            max_rss_mb: 4096,
        }),
        Scenario::Rpc(RpcArgs {
            n: 20_000,
            connections: vec![1, 16],
            window: 64,
            rounds: 5,
        }),
        Scenario::Terminal(TerminalArgs {
            rate: 1_000_000,
            seconds: 3.0,
            line_bytes: 100,
        }),
        Scenario::Fanout(FanoutArgs {
            watchers: 1000,
            steps: 50,
            connects: 1000,
            concurrency: 4,
        }),
    ]
}

/// What every scenario shares: the binary under test and the load generator's runtime.
struct Bench {
    viber: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn new(viber: Option<PathBuf>) -> Result<Self> {
        let viber = match viber {
            Some(p) => p,
            None => std::env::current_exe()
                .context("cannot find this executable")?
                .parent()
                .ok_or_else(|| anyhow!("this executable has no parent directory"))?
                .join("viber"),
        };
        if !viber.is_file() {
            bail!(
                "{} does not exist: build it (cargo build --release --bins) or pass --viber",
                viber.display()
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Bench { viber, rt })
    }

    /// A `viber` command that ignores the caller's VIBER_* environment.
    fn viber(&self) -> Command {
        let mut cmd = Command::new(&self.viber);
        cmd.env_remove("VIBER_HOME")
            .env_remove("VIBER_GATEWAY_URL")
            .env_remove("VIBER_GATEWAY_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures: a temporary VIBER_HOME and a gateway process that is always stopped.

/// A fresh, initialized VIBER_HOME under the system temp dir, removed on drop.
struct TempHome {
    root: PathBuf,
}

impl TempHome {
    fn new(bench: &Bench, label: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "viber-bench-{}-{label}-{nanos:09}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(name);
        std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
        let home = TempHome { root };
        let out = bench
            .viber()
            .arg("--home")
            .arg(&home.root)
            .arg("init")
            .output()
            .context("cannot run viber init")?;
        if !out.status.success() {
            bail!(
                "viber init failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(home)
    }

    fn home(&self) -> Home {
        Home::new(&self.root)
    }

    fn key(&self) -> Result<DeviceKey> {
        Ok(DeviceKey::load(&self.home().device_key())?)
    }

    fn token(&self) -> Result<String> {
        let path = self.home().gateway_token();
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_string())
    }

    fn options(&self, url: &str, scopes: Vec<Scope>) -> Result<ConnectOptions> {
        let mut opts = ConnectOptions::operator(url);
        opts.token = Some(self.token()?);
        opts.scopes = scopes;
        opts.client_id = "viber-bench".into();
        Ok(opts)
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("viber-bench: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// A `viber gateway --bind 127.0.0.1:0` child. Dropping it stops it.
struct GatewayProc {
    child: Child,
    pid: u32,
    log: PathBuf,
    url: String,
    stopped: bool,
}

impl GatewayProc {
    /// Spawns the gateway and returns at once; [`GatewayProc::wait_ready`] waits for it.
    fn launch(bench: &Bench, home: &TempHome) -> Result<Self> {
        let log = home.root.join("bench-gateway.log");
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = bench
            .viber()
            .arg("--home")
            .arg(&home.root)
            .args(["gateway", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("cannot spawn viber gateway")?;
        let pid = child.id();
        Ok(GatewayProc {
            child,
            pid,
            log,
            url: String::new(),
            stopped: false,
        })
    }

    /// Polls `gateway/gateway.json` every `poll` until it names this process.
    fn wait_ready(&mut self, home: &TempHome, poll: Duration, timeout: Duration) -> Result<()> {
        let path = home.home().gateway_json();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(info) = serde_json::from_str::<GatewayInfo>(&text)
                && info.pid == self.pid
            {
                self.url = info.url;
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                bail!(
                    "the gateway exited during start-up ({status}): {}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the gateway did not write {} within {timeout:?}",
                    path.display()
                );
            }
            std::thread::sleep(poll);
        }
    }

    fn start(bench: &Bench, home: &TempHome) -> Result<Self> {
        let mut gw = Self::launch(bench, home)?;
        gw.wait_ready(home, Duration::from_millis(2), Duration::from_secs(10))?;
        eprintln!("viber-bench: gateway pid {} on {}", gw.pid, gw.url);
        Ok(gw)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns how long the clean stop took.
    fn stop(&mut self) -> Result<Duration> {
        let started = Instant::now();
        if self.stopped {
            return Ok(Duration::ZERO);
        }
        self.stopped = true;
        if self.child.try_wait()?.is_some() {
            return Ok(Duration::ZERO);
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .with_context(|| format!("cannot signal the gateway (pid {})", self.pid))?;
        let deadline = started + Duration::from_secs(10);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the gateway (pid {}) ignored SIGTERM for 10 s; killed it",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn rss_mb(&self) -> Result<f64> {
        proc_status_mb(self.pid, "VmRSS")
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("viber-bench: {e:#}");
        }
    }
}

/// A `kB` line of /proc/PID/status, in MB.
fn proc_status_mb(pid: u32, field: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in {path}"))?;
    Ok(round(kb / 1024.0, 1))
}

/// CPU time (user + system, all threads) a process has used so far, in ms. /proc/PID/stat
/// counts in USER_HZ ticks, which Linux fixes at 100 per second for user space.
fn cpu_ms(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// The soft RLIMIT_NOFILE of a process, from /proc/PID/limits.
fn open_files_limit(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Small helpers.

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// min / median / p95 / max / mean of millisecond samples.
fn summary(samples: &[f64]) -> Value {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
    json!({
        "n": s.len(),
        "minMs": round(s.first().copied().unwrap_or(f64::NAN), 2),
        "medianMs": round(percentile(&s, 50.0), 2),
        "p95Ms": round(percentile(&s, 95.0), 2),
        "maxMs": round(s.last().copied().unwrap_or(f64::NAN), 2),
        "meanMs": round(mean, 2),
    })
}

fn median(values: &[f64]) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 50.0)
}

/// One DESIGN.md section 9 target, judged.
fn target(name: &str, value: f64, op: &str, limit: f64) -> Value {
    let met = match op {
        "<" => value < limit,
        "<=" => value <= limit,
        ">=" => value >= limit,
        _ => false,
    };
    json!({"target": name, "value": round(value, 3), "op": op, "limit": limit, "met": met})
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "date": jiff::Timestamp::now().to_string(),
    })
}

/// `Client::connect`, retried while the gateway refuses TCP (it may still be starting).
async fn connect_retry(
    key: &DeviceKey,
    opts: &ConnectOptions,
    timeout: Duration,
) -> Result<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        match Client::connect(key, opts).await {
            Ok(c) => return Ok(c),
            Err(viber::client::ClientError::Unreachable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// roundtrip: `viber status --json` as a whole process.

fn roundtrip(b: &Bench, a: &RoundtripArgs) -> Result<Value> {
    let home = TempHome::new(b, "roundtrip")?;
    let mut gw = GatewayProc::start(b, &home)?;
    let status = || -> Result<Duration> {
        let t = Instant::now();
        let out = b
            .viber()
            .arg("--home")
            .arg(&home.root)
            .args(["status", "--json"])
            .output()
            .context("cannot run viber status")?;
        let took = t.elapsed();
        if !out.status.success() {
            bail!(
                "viber status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: Value =
            serde_json::from_slice(&out.stdout).context("viber status printed no JSON")?;
        if v["schema"] != "viber.status/v1" {
            bail!("unexpected viber status output: {v}");
        }
        Ok(took)
    };
    for _ in 0..a.warmup {
        status()?;
    }
    let mut samples = Vec::with_capacity(a.n);
    for _ in 0..a.n {
        samples.push(ms(status()?));
    }
    // Baseline: the same binary spawned and exiting without touching the network.
    let mut baseline = Vec::with_capacity(a.n);
    for _ in 0..a.n {
        let t = Instant::now();
        let out = b
            .viber()
            .arg("--version")
            .output()
            .context("cannot run viber --version")?;
        if !out.status.success() {
            bail!("viber --version failed ({})", out.status);
        }
        baseline.push(ms(t.elapsed()));
    }
    gw.stop()?;
    let s = summary(&samples);
    let med = s["medianMs"].as_f64().unwrap_or(f64::NAN);
    let base_med = median(&baseline);
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "roundtrip",
        "params": {"n": a.n, "warmup": a.warmup, "command": "viber --home H status --json"},
        "status": s,
        "processBaseline": {"command": "viber --version", "timing": summary(&baseline)},
        "overMedianBaselineMs": round(med - base_med, 2),
        "targets": [target("status --json round trip median ms", med, "<", 15.0)],
    }))
}

// ---------------------------------------------------------------------------------------
// spawn: gateway process start to first completed handshake.

fn spawn(b: &Bench, a: &SpawnArgs) -> Result<Value> {
    let home = TempHome::new(b, "spawn")?;
    let key = home.key()?;
    let token = home.token()?;
    let mut to_json = Vec::new();
    let mut to_ready = Vec::new();
    let mut stops = Vec::new();
    let mut idle = Value::Null;
    for i in 0..a.n.max(1) {
        let _ = std::fs::remove_file(home.home().gateway_json());
        let t0 = Instant::now();
        let mut gw = GatewayProc::launch(b, &home)?;
        gw.wait_ready(&home, Duration::from_millis(1), Duration::from_secs(10))?;
        let json_at = t0.elapsed();
        let mut opts = ConnectOptions::operator(gw.url.clone());
        opts.token = Some(token.clone());
        opts.client_id = "viber-bench".into();
        let client =
            b.rt.block_on(connect_retry(&key, &opts, Duration::from_secs(10)))?;
        let ready_at = t0.elapsed();
        to_json.push(ms(json_at));
        to_ready.push(ms(ready_at));
        if i + 1 == a.n.max(1) {
            // Idle footprint: a fresh gateway holding this one connection, after it settled.
            std::thread::sleep(Duration::from_millis(500));
            let health = b.rt.block_on(client.request("health", json!({})))?;
            idle = json!({
                "connections": health["connections"],
                "rssMb": gw.rss_mb()?,
                "peakRssMb": proc_status_mb(gw.pid, "VmHWM")?,
            });
        }
        client.close();
        drop(client);
        stops.push(ms(gw.stop()?));
    }
    let ready = summary(&to_ready);
    let med = ready["medianMs"].as_f64().unwrap_or(f64::NAN);
    let rss = idle["rssMb"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "spawn",
        "params": {"n": a.n.max(1), "pollMs": 1, "command": "viber --home H gateway --bind 127.0.0.1:0"},
        "spawnToHandshake": ready,
        "spawnToGatewayJson": summary(&to_json),
        "sigtermToExit": summary(&stops),
        "idle": idle,
        "targets": [
            target("gateway spawn to accepting connections median ms", med, "<", 50.0),
            target("idle gateway RSS MB", rss, "<", 20.0),
        ],
    }))
}

// ---------------------------------------------------------------------------------------
// connect: handshakes per second vs raw Ed25519 verifications per second on one core.

fn connect(b: &Bench, a: &ConnectArgs) -> Result<Value> {
    let scope: Scope = a.scope.parse().map_err(|e: String| anyhow!(e))?;
    let home = TempHome::new(b, "connect")?;
    let mut gw = GatewayProc::start(b, &home)?;
    let key = Arc::new(home.key()?);
    let opts = Arc::new(home.options(&gw.url, vec![scope])?);
    let admin = home.options(&gw.url, vec![Scope::OperatorAdmin])?;
    let n = a.n;
    let concurrency = a.concurrency.clamp(1, n.max(1));
    let gw_pid = gw.pid;
    let (elapsed, latencies, errors, first_error, gw_cpu, own_cpu) = b.rt.block_on(async {
        // The first connection pairs the device (with every operator scope); keep it out
        // of the measurement.
        connect_retry(&key, &admin, Duration::from_secs(5))
            .await?
            .close();
        let next = Arc::new(AtomicUsize::new(0));
        let cpu0 = (cpu_ms(gw_pid), cpu_ms(std::process::id()));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (key, opts, next) = (key.clone(), opts.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut first_error = None;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    match Client::connect(&key, &opts).await {
                        Ok(c) => {
                            lat.push(ms(t.elapsed()));
                            c.close();
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (lat, errors, first_error)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for w in workers {
            let (lat, e, fe) = w.await?;
            latencies.extend(lat);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        }
        let elapsed = started.elapsed();
        let gw_cpu = cpu0.0.zip(cpu_ms(gw_pid)).map(|(a, b)| b - a);
        let own_cpu = cpu0.1.zip(cpu_ms(std::process::id())).map(|(a, b)| b - a);
        Ok::<_, anyhow::Error>((elapsed, latencies, errors, first_error, gw_cpu, own_cpu))
    })?;
    gw.stop()?;
    if latencies.is_empty() {
        bail!(
            "no handshake succeeded: {}",
            first_error.unwrap_or_default()
        );
    }
    let handshakes_per_s = latencies.len() as f64 / elapsed.as_secs_f64();
    // The baseline runs with the gateway stopped, so it has a core to itself.
    let verify = verify_baseline(a.verify_n.max(100))?;
    let raw = verify["rawVerifyPerSec"].as_f64().unwrap_or(f64::NAN);
    let ratio = raw / handshakes_per_s;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let gw_cpu_bound = gw_cpu
        .filter(|c| *c > 0.0)
        .map(|c| cores * 1000.0 * latencies.len() as f64 / c);
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "connect",
        "params": {"n": n, "concurrency": concurrency, "verifyN": a.verify_n.max(100), "scope": scope.as_str(),
                   "what": "Client::connect (TCP + WebSocket upgrade + challenge + signed connect + hello-ok), then close"},
        "handshakes": latencies.len(),
        "errors": errors,
        "firstError": first_error,
        "seconds": round(elapsed.as_secs_f64(), 3),
        "handshakesPerSec": round(handshakes_per_s, 1),
        "handshakeLatency": summary(&latencies),
        "gatewayCpuUsPerHandshake": gw_cpu.map(|c| round(c * 1000.0 / latencies.len() as f64, 1)),
        // What the gateway could do with every core to itself, the load generator free.
        "gatewayCpuBoundHandshakesPerSec": gw_cpu_bound.map(|r| round(r, 1)),
        "verifyOverGatewayCpuBoundRatio": gw_cpu_bound.map(|r| round(raw / r, 3)),
        "benchCpuUsPerHandshake": own_cpu.map(|c| round(c * 1000.0 / latencies.len() as f64, 1)),
        "verifyBaseline": verify,
        "verifyOverHandshakeRatio": round(ratio, 3),
        "targets": [target("raw verify/s over handshakes/s (handshake rate within 2x of verify)", ratio, "<=", 2.0)],
    }))
}

/// Ed25519 verifications per second on this thread, of exactly what the gateway verifies
/// (a real `connect` signature payload): raw ed25519-dalek with the key and signature
/// already decoded, and the gateway's own path (`viber::identity::verify`, which decodes
/// base64 and the curve point first).
fn verify_baseline(n: usize) -> Result<Value> {
    let key = DeviceKey::generate("viber-bench");
    let mut opts = ConnectOptions::operator("ws://127.0.0.1:1");
    opts.token = Some("t".repeat(64));
    let params = viber::client::connect_params(&key, &opts, &viber::identity::random_b64(32));
    let payload = params.signature_payload();
    let raw = key.public_raw();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw)?;
    let sig_bytes = URL_SAFE_NO_PAD.decode(&params.device.signature)?;
    let sig = ed25519_dalek::Signature::from_slice(&sig_bytes)?;

    let t = Instant::now();
    for _ in 0..n {
        vk.verify_strict(std::hint::black_box(payload.as_bytes()), &sig)
            .map_err(|e| anyhow!("baseline signature does not verify: {e}"))?;
    }
    let strict = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        ed25519_dalek::Verifier::verify(&vk, std::hint::black_box(payload.as_bytes()), &sig)
            .map_err(|e| anyhow!("baseline signature does not verify: {e}"))?;
    }
    let plain = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        viber::identity::verify(
            &raw,
            std::hint::black_box(payload.as_bytes()),
            &params.device.signature,
        )
        .map_err(|e| anyhow!("gateway-path verify failed: {e}"))?;
    }
    let gateway_path = n as f64 / t.elapsed().as_secs_f64();
    Ok(json!({
        "payloadBytes": payload.len(),
        "rawVerifyPerSec": round(plain, 1),
        "rawVerifyStrictPerSec": round(strict, 1),
        "gatewayVerifyPathPerSec": round(gateway_path, 1),
    }))
}

// ---------------------------------------------------------------------------------------
// idle: many authenticated idle connections.

fn idle(b: &Bench, a: &IdleArgs) -> Result<Value> {
    let scope: Scope = a.scope.parse().map_err(|e: String| anyhow!(e))?;
    let need = a.n as u64 + 256;
    let limit = open_files_limit("self").unwrap_or(0);
    if limit < need {
        bail!(
            "RLIMIT_NOFILE is {limit}, {need} needed for {} connections (the gateway inherits it): \
             run `ulimit -n {need}` (or `prlimit --nofile={need} viber-bench ...`) first",
            a.n
        );
    }
    let home = TempHome::new(b, "idle")?;
    let mut gw = GatewayProc::start(b, &home)?;
    let gw_limit = open_files_limit(&gw.pid.to_string());
    let key = Arc::new(home.key()?);
    let opts = Arc::new(home.options(&gw.url, vec![scope])?);
    // The first connection pairs the device with every operator scope, so the probe below
    // can ask for `health` whatever scope the idle connections use.
    let admin = home.options(&gw.url, vec![Scope::OperatorAdmin])?;
    let rss_before = gw.rss_mb()?;
    let n = a.n;
    let deadline = Duration::from_secs(a.deadline_secs);
    let (stop_tx, stop_rx) = watch::channel(false);
    let events = Arc::new(AtomicU64::new(0));
    // (connections, seconds) every tenth of n (every 250 at most): how establishing scales.
    let milestones = Arc::new(std::sync::Mutex::new(Vec::new()));
    let step = (n / 10).clamp(1, 250);
    let gw_pid = gw.pid;
    let cpu0 = (cpu_ms(gw_pid), cpu_ms(std::process::id()));
    let outcome = b.rt.block_on(async {
        connect_retry(&key, &admin, Duration::from_secs(5))
            .await?
            .close();
        let next = Arc::new(AtomicUsize::new(0));
        let established = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        // Watches the gateway's RSS; past the cap every worker stops at its next connection.
        let over_cap = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let monitor = {
            let (over_cap, cap) = (over_cap.clone(), a.max_rss_mb as f64);
            tokio::spawn(async move {
                while started.elapsed() < deadline {
                    if proc_status_mb(gw_pid, "VmRSS").is_ok_and(|mb| mb > cap) {
                        over_cap.store(true, Ordering::Relaxed);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut workers = Vec::new();
        for _ in 0..a.concurrency.clamp(1, n.max(1)) {
            let (key, opts, next, established) =
                (key.clone(), opts.clone(), next.clone(), established.clone());
            let over_cap = over_cap.clone();
            let (stop_rx, events, milestones) =
                (stop_rx.clone(), events.clone(), milestones.clone());
            workers.push(tokio::spawn(async move {
                let mut holders = Vec::new();
                let mut errors = 0usize;
                let mut first_error: Option<String> = None;
                while started.elapsed() < deadline
                    && !over_cap.load(Ordering::Relaxed)
                    && next.fetch_add(1, Ordering::Relaxed) < n
                {
                    match tokio::time::timeout(
                        Duration::from_secs(30),
                        raw_connect_listener(&opts.url, Some((&*key, &*opts))),
                    )
                    .await
                    {
                        Ok(Ok(ws)) => {
                            holders.push(tokio::spawn(hold(ws, stop_rx.clone(), events.clone())));
                            let done = established.fetch_add(1, Ordering::Relaxed) + 1;
                            if done % step == 0 {
                                let secs = started.elapsed().as_secs_f64();
                                eprintln!(
                                    "viber-bench: idle: {done} connections after {secs:.1} s"
                                );
                                milestones
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(json!({"connections": done, "seconds": round(secs, 2)}));
                            }
                        }
                        Ok(Err(e)) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                        Err(_) => {
                            errors += 1;
                            first_error
                                .get_or_insert_with(|| "handshake timed out after 30 s".into());
                        }
                    }
                }
                (holders, errors, first_error)
            }));
        }
        let mut holders = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for w in workers {
            let (h, e, fe) = w.await?;
            holders.extend(h);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        }
        let took = started.elapsed();
        monitor.abort();
        let stopped_because = if over_cap.load(Ordering::Relaxed) {
            Some(format!("gateway RSS passed --max-rss-mb {}", a.max_rss_mb))
        } else if holders.len() < n && took >= deadline {
            Some(format!("--deadline-secs {} passed", a.deadline_secs))
        } else {
            None
        };
        let cpu1 = (cpu_ms(gw_pid), cpu_ms(std::process::id()));
        // Let the gateway settle (presence fan-out of the last connections), then ask it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let probe = connect_retry(&key, &admin, Duration::from_secs(5)).await?;
        let health =
            tokio::time::timeout(Duration::from_secs(30), probe.request("health", json!({})))
                .await
                .map_err(|_| anyhow!("health request timed out"))??;
        probe.close();
        let hello_bytes = serde_json::to_string(&probe.hello)
            .map(|t| t.len())
            .unwrap_or(0);
        Ok::<_, anyhow::Error>((
            holders,
            took,
            errors,
            first_error,
            health,
            hello_bytes,
            cpu1,
            stopped_because,
        ))
    });
    let rss_after = gw.rss_mb();
    let peak = proc_status_mb(gw.pid, "VmHWM");
    let bench_rss = proc_status_mb(std::process::id(), "VmRSS");
    // Stop the gateway first (it closes every connection), then release the clients.
    let stop_took = gw.stop();
    let _ = stop_tx.send(true);
    let (holders, took, errors, first_error, health, hello_bytes, cpu1, stopped_because) = outcome?;
    let cpu_secs =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round((b - a) / 1000.0, 2));
    let milestones = std::mem::take(&mut *milestones.lock().unwrap_or_else(|p| p.into_inner()));
    let held = holders.len();
    b.rt.block_on(async {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::future::join_all(holders),
        )
        .await;
    });
    let rss_after = rss_after?;
    let per_conn_kb = if held > 0 {
        (rss_after - rss_before) * 1024.0 / held as f64
    } else {
        f64::NAN
    };
    let mut targets = vec![target(
        "gateway RSS MB with the idle connections",
        rss_after,
        "<",
        200.0,
    )];
    if n >= 10_000 {
        targets.push(target(
            "idle connections held (10,000 required)",
            held as f64,
            ">=",
            10_000.0,
        ));
    }
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "idle",
        "params": {"n": n, "concurrency": a.concurrency, "scope": scope.as_str(), "deadlineSecs": a.deadline_secs, "maxRssMb": a.max_rss_mb,
                   "openFilesLimit": {"bench": limit, "gateway": gw_limit}},
        "established": held,
        "complete": held == n,
        "stoppedBecause": stopped_because,
        "errors": errors,
        "firstError": first_error,
        "establishSeconds": round(took.as_secs_f64(), 3),
        "milestones": milestones,
        "gatewayCpuSecondsEstablishing": cpu_secs(cpu0.0, cpu1.0),
        "benchCpuSecondsEstablishing": cpu_secs(cpu0.1, cpu1.1),
        "helloOkBytesOfLastConnection": hello_bytes,
        "gatewayReportsConnections": health["connections"],
        "framesReceivedByIdleClients": events.load(Ordering::Relaxed),
        "gatewayRssMbBefore": rss_before,
        "gatewayRssMb": rss_after,
        "gatewayPeakRssMb": peak.ok(),
        "gatewayKbPerConnection": round(per_conn_kb, 2),
        "benchRssMb": bench_rss.ok(),
        "gatewayStopMs": stop_took.ok().map(|d| round(ms(d), 1)),
        "targets": targets,
    }))
}

/// Holds one idle connection, counting (not parsing) the frames the gateway pushes, until
/// told to stop or the gateway closes. Raw rather than a `Client`, whose reader parses
/// every event: with thousands of connections that parsing, not the gateway, would
/// saturate the load generator.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>, frames: Arc<AtomicU64>) {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(_))) => {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// rpc and echo-baseline: pipelined requests, the gateway vs a bare echo server.

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a reply to one of our requests looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    /// The gateway answers with a `res` frame (events in between are skipped).
    Response,
    /// The echo server sends our `req` frame back.
    Echo,
}

fn rpc(b: &Bench, a: &RpcArgs, with_gateway: bool) -> Result<Value> {
    if a.connections.is_empty() || a.connections.contains(&0) {
        bail!("--connections needs positive counts");
    }
    let window = a.window.max(1);
    let rounds = a.rounds.max(1);
    let echo = EchoServer::start()?;
    let echo_url = format!("ws://{}", echo.addr);
    // (gateway, home): a tuple drops in field order, so the gateway stops before its
    // home is removed.
    let mut fixture = if with_gateway {
        let home = TempHome::new(b, "rpc")?;
        let gw = GatewayProc::start(b, &home)?;
        Some((gw, home))
    } else {
        None
    };
    let gw_pid = fixture.as_ref().map(|(g, _)| g.pid);
    let gateway = match &fixture {
        Some((g, h)) => Some((h.key()?, h.options(&g.url, vec![Scope::OperatorAdmin])?)),
        None => None,
    };
    let mut results = Vec::new();
    let mut targets = Vec::new();
    for &conns in &a.connections {
        let per_conn = a.n.div_ceil(conns);
        let total = per_conn * conns;
        let r = b.rt.block_on(async {
            let mut echo_rps = Vec::new();
            let mut gw_rps = Vec::new();
            let mut lib_rps = Vec::new();
            let mut gw_cpu_ms = 0.0;
            // Warm-up of each path, then alternate so drift hits both sides alike.
            run_raw(&echo_url, None, conns, 500, window, Reply::Echo).await?;
            if let Some((key, opts)) = &gateway {
                connect_retry(key, opts, Duration::from_secs(5))
                    .await?
                    .close();
                run_raw(
                    &opts.url,
                    Some((key, opts)),
                    conns,
                    500,
                    window,
                    Reply::Response,
                )
                .await?;
            }
            for _ in 0..rounds {
                echo_rps
                    .push(run_raw(&echo_url, None, conns, per_conn, window, Reply::Echo).await?);
                if let Some((key, opts)) = &gateway {
                    let cpu0 = gw_pid.and_then(cpu_ms);
                    gw_rps.push(
                        run_raw(
                            &opts.url,
                            Some((key, opts)),
                            conns,
                            per_conn,
                            window,
                            Reply::Response,
                        )
                        .await?,
                    );
                    if let Some(c) = cpu0.zip(gw_pid.and_then(cpu_ms)).map(|(a, b)| b - a) {
                        gw_cpu_ms += c;
                    }
                    lib_rps.push(run_client_lib(key, opts, conns, per_conn, window).await?);
                }
            }
            Ok::<_, anyhow::Error>((echo_rps, gw_rps, lib_rps, gw_cpu_ms))
        })?;
        let (echo_rps, gw_rps, lib_rps, gw_cpu_ms) = r;
        let echo_med = median(&echo_rps);
        let mut row = json!({
            "connections": conns,
            "requests": total,
            "echoRps": round(echo_med, 0),
            "echoRpsRounds": echo_rps.iter().map(|x| round(*x, 0)).collect::<Vec<_>>(),
        });
        if gateway.is_some() {
            let gw_med = median(&gw_rps);
            let ratio = gw_med / echo_med;
            row["gatewayRps"] = json!(round(gw_med, 0));
            row["gatewayRpsRounds"] =
                json!(gw_rps.iter().map(|x| round(*x, 0)).collect::<Vec<_>>());
            row["gatewayOverEcho"] = json!(round(ratio, 3));
            row["clientLibRps"] = json!(round(median(&lib_rps), 0));
            row["gatewayCpuUsPerRequest"] =
                json!(round(gw_cpu_ms * 1000.0 / (total * rounds) as f64, 2));
            targets.push(target(
                &format!("gateway/echo request rate, {conns} connection(s)"),
                ratio,
                ">=",
                0.7,
            ));
        }
        eprintln!("viber-bench: {row}");
        results.push(row);
    }
    if let Some((g, _)) = fixture.as_mut() {
        g.stop()?;
    }
    drop(fixture);
    let mut out = json!({
        "schema": SCHEMA,
        "scenario": if with_gateway { "rpc" } else { "echo-baseline" },
        "params": {"n": a.n, "connections": a.connections, "window": window, "rounds": rounds,
                   "method": "health", "request": req_text(1),
                   "driver": "same client code for both sides: pipelined text frames, window per connection, one task per connection"},
        "results": results,
    });
    if with_gateway {
        out["targets"] = json!(targets);
    }
    Ok(out)
}

fn req_text(i: usize) -> String {
    format!(r#"{{"type":"req","id":"{i}","method":"health","params":{{}}}}"#)
}

/// A WebSocket to `url` (TCP_NODELAY, 64 MiB messages like `Client`), through the viber
/// handshake when `auth` is given.
async fn raw_connect(url: &str, auth: Option<(&DeviceKey, &ConnectOptions)>) -> Result<Ws> {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    raw_connect_with(url, auth, config).await
}

/// [`raw_connect`] for connections that only listen (`idle`, `fanout`): an 8 KiB read
/// buffer instead of tungstenite's default 128 KiB, which it zero-fills before every read
/// (`resize` in `FrameCodec::read_in`). With the default, each received frame costs the
/// load generator a 128 KiB memset, and each held connection 128 KiB of RSS.
async fn raw_connect_listener(
    url: &str,
    auth: Option<(&DeviceKey, &ConnectOptions)>,
) -> Result<Ws> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .read_buffer_size(8 << 10);
    raw_connect_with(url, auth, config).await
}

async fn raw_connect_with(
    url: &str,
    auth: Option<(&DeviceKey, &ConnectOptions)>,
    config: WebSocketConfig,
) -> Result<Ws> {
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| anyhow!("connecting to {url} timed out"))??;
    if let Some((key, opts)) = auth {
        tokio::time::timeout(
            Duration::from_secs(15),
            viber::client::handshake(&mut ws, key, opts),
        )
        .await
        .map_err(|_| anyhow!("the handshake with {url} timed out"))??;
    }
    Ok(ws)
}

/// Opens `conns` WebSockets (doing the viber handshake when `auth` is given), then sends
/// `per_conn` requests on each with `window` in flight; returns requests per second.
async fn run_raw(
    url: &str,
    auth: Option<(&DeviceKey, &ConnectOptions)>,
    conns: usize,
    per_conn: usize,
    window: usize,
    reply: Reply,
) -> Result<f64> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(raw_connect(url, auth).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(pipeline(ws, per_conn, window, reply)))
        .collect();
    let all = futures_util::future::try_join_all(tasks);
    let results = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .map_err(|_| anyhow!("requests to {url} did not finish within 120 s"))??;
    let elapsed = started.elapsed();
    for r in results {
        r?;
    }
    Ok((per_conn * conns) as f64 / elapsed.as_secs_f64())
}

/// One connection's load: keep `window` requests in flight, flushing once per burst.
async fn pipeline(ws: Ws, n: usize, window: usize, reply: Reply) -> Result<()> {
    let (mut sink, mut stream) = ws.split();
    let credits = Semaphore::new(window);
    let writer = async {
        let mut i = 0;
        while i < n {
            credits.acquire().await?.forget();
            sink.feed(Message::text(req_text(i))).await?;
            i += 1;
            while i < n {
                match credits.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                sink.feed(Message::text(req_text(i))).await?;
                i += 1;
            }
            sink.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let mut got = 0;
        while got < n {
            let msg = stream
                .next()
                .await
                .ok_or_else(|| anyhow!("connection closed early"))??;
            let text = match msg {
                Message::Text(text) => text,
                Message::Close(f) => bail!("closed by the server: {f:?}"),
                _ => continue,
            };
            match (serde_json::from_str::<Frame>(text.as_str())?, reply) {
                (Frame::Res(r), Reply::Response) => {
                    if !r.ok {
                        bail!("request failed: {:?}", r.error);
                    }
                }
                (Frame::Req(_), Reply::Echo) => {}
                (Frame::Event(_), _) => continue,
                (other, _) => bail!("unexpected frame {other:?}"),
            }
            got += 1;
            credits.add_permits(1);
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::try_join!(writer, reader)?;
    let mut ws = sink
        .reunite(stream)
        .map_err(|_| anyhow!("cannot reunite the socket halves"))?;
    let _ = ws.close(None).await;
    Ok(())
}

/// The same load through `viber::client::Client` (what every verb uses).
async fn run_client_lib(
    key: &DeviceKey,
    opts: &ConnectOptions,
    conns: usize,
    per_conn: usize,
    window: usize,
) -> Result<f64> {
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(Client::connect(key, opts).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                let mut in_flight = FuturesUnordered::new();
                let (mut sent, mut done) = (0, 0);
                while done < per_conn {
                    while sent < per_conn && in_flight.len() < window {
                        in_flight.push(client.request("health", json!({})));
                        sent += 1;
                    }
                    match in_flight.next().await {
                        Some(r) => {
                            r?;
                            done += 1;
                        }
                        None => break,
                    }
                }
                drop(in_flight);
                client.close();
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::try_join_all(tasks),
    )
    .await
    .map_err(|_| anyhow!("client-library requests did not finish within 120 s"))??;
    let elapsed = started.elapsed();
    for r in results {
        r?;
    }
    Ok((per_conn * conns) as f64 / elapsed.as_secs_f64())
}

/// A bare tokio-tungstenite echo server (the crate's own example) on its own 2-thread
/// runtime (the gateway's runtime is also 2 threads on this machine), stopped and joined
/// on drop.
struct EchoServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the echo server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("viber-bench: echo server: {e}");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    tokio::spawn(echo_conn(stream));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            },
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(EchoServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

async fn echo_conn(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    // tokio-tungstenite's own examples/echo-server.rs: `forward` feeds replies while more
    // requests are ready and flushes when the reader would wait, so it batches writes the
    // way the gateway's writer does.
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runs: task files in the temporary home, started through the gateway.

/// Writes `yaml` as `H/bench-task/task.yaml` (the task's workdir is that directory).
fn write_task(home: &TempHome, yaml: &str) -> Result<PathBuf> {
    let dir = home.root.join("bench-task");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("task.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `run.start` with the task file, as `viber run TASK --detach` sends it; returns the run id.
async fn start_run(client: &Client, task_path: &Path) -> Result<String> {
    let task = viber::agent::task::load(task_path)
        .with_context(|| format!("cannot load {}", task_path.display()))?;
    let started = client
        .request(
            "run.start",
            json!({"task": task, "taskFile": task_path, "idempotencyKey": uuid::Uuid::new_v4().to_string()}),
        )
        .await?;
    started["runId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("run.start answered without a runId: {started}"))
}

/// Polls `run.get` until `done` holds for the summary; returns it.
async fn wait_run(
    client: &Client,
    run_id: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = client.request("run.get", json!({"runId": run_id})).await?;
        if done(&s) {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            bail!(
                "run {run_id}: no {what} within {timeout:?} (status {}, reason {})",
                s["status"],
                s["reason"]
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_ended(s: &Value) -> bool {
    serde_json::from_value::<RunStatus>(s["status"].clone()).is_ok_and(|st| st.is_terminal())
}

/// A child process of ours, killed on drop unless it already exited.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------
// terminal: a run's pane output, line by line, to `viber watch RUN --terminal`.

/// The step's load: lines of `<time.monotonic_ns()> <line number> <padding>\n` at `rate`
/// bytes/s for `secs` seconds, written in one batch per ~1 ms tick (each line stamped as it
/// is built, just before the write), then `END <lines> <bytes>`.
const GEN_PY: &str = r#"import os, sys, time
rate, secs, size = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def write(b):
    m = memoryview(b)
    while m:
        m = m[os.write(1, m):]
t0 = time.monotonic_ns()
end = t0 + int(secs * 1e9)
sent = lines = 0
while True:
    now = time.monotonic_ns()
    if now >= end:
        break
    due = (now - t0) * rate // 1000000000
    batch = []
    while sent < due:
        head = b"%d %d " % (time.monotonic_ns(), lines)
        line = head + b"x" * max(0, size - len(head) - 1) + b"\n"
        batch.append(line)
        sent += len(line)
        lines += 1
    if batch:
        write(b"".join(batch))
    time.sleep(0.001)
write(b"END %d %d\n" % (lines, sent))
"#;

/// Answers every line on stdin with `time.monotonic_ns()`; says which python it is first.
const CLOCK_PY: &str = "import sys, time\nprint(sys.executable, flush=True)\nfor _ in sys.stdin:\n    print(time.monotonic_ns(), flush=True)\n";

/// CLOCK_MONOTONIC, in ns, read through `std::time::Instant` (which is CLOCK_MONOTONIC on
/// Linux, a clock shared by every process) and expressed on python's `time.monotonic_ns()`
/// scale. `offset_ns` comes from ping-pongs with a python helper (see [`PyClock`]).
#[derive(Debug, Clone, Copy)]
struct MonoClock {
    anchor: Instant,
    offset_ns: i128,
}

impl MonoClock {
    fn now_ns(&self) -> i128 {
        self.offset_ns + self.anchor.elapsed().as_nanos() as i128
    }
}

/// A `python3` helper that tells its `time.monotonic_ns()` on request.
struct PyClock {
    _child: ChildGuard,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    python: String,
}

impl PyClock {
    fn start() -> Result<Self> {
        let mut child = Command::new("python3")
            .args(["-u", "-c", CLOCK_PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run python3 (the terminal scenario's step and clock need it)")?;
        let stdin = child.stdin.take().context("python3 has no stdin")?;
        let stdout = child.stdout.take().context("python3 has no stdout")?;
        let mut helper = PyClock {
            _child: ChildGuard(child),
            stdin,
            stdout: BufReader::new(stdout),
            python: String::new(),
        };
        helper.stdout.read_line(&mut helper.python)?;
        helper.python = helper.python.trim().to_string();
        if helper.python.is_empty() {
            bail!("python3 did not say which executable it is");
        }
        Ok(helper)
    }

    /// `n` ping-pongs; the one with the shortest round trip gives the offset between
    /// `anchor.elapsed()` and python's clock (midpoint rule, error at most half that trip).
    /// Returns (offset ns, round trip ns).
    fn calibrate(&mut self, anchor: Instant, n: usize) -> Result<(i128, u128)> {
        let mut best: Option<(u128, i128)> = None;
        let mut line = String::new();
        for _ in 0..n.max(1) {
            let t0 = anchor.elapsed().as_nanos();
            self.stdin.write_all(b"\n")?;
            self.stdin.flush()?;
            line.clear();
            self.stdout.read_line(&mut line)?;
            let t1 = anchor.elapsed().as_nanos();
            let mono: i128 = line
                .trim()
                .parse()
                .with_context(|| format!("python3 clock said {line:?}"))?;
            let rtt = t1 - t0;
            let offset = mono - ((t0 + t1) / 2) as i128;
            if best.is_none_or(|(r, _)| rtt < r) {
                best = Some((rtt, offset));
            }
        }
        let (rtt, offset) = best.expect("at least one sample");
        Ok((offset, rtt))
    }
}

/// Cuts a byte stream into the generator's lines and times each one on arrival.
#[derive(Default)]
struct LineTimer {
    partial: Vec<u8>,
    latencies_ms: Vec<f64>,
    next_line: u64,
    /// Line numbers skipped (lines never seen) and seen out of order or twice.
    skipped: u64,
    out_of_order: u64,
    /// Lines that are not the generator's (should stay 0).
    foreign: u64,
    /// `END <lines> <bytes>` as the generator wrote it.
    end: Option<(u64, u64)>,
}

impl LineTimer {
    fn feed(&mut self, data: &[u8], now_ns: i128) {
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|&c| c == b'\n') {
            let line = &buf[start..start + i];
            self.line(line.strip_suffix(b"\r").unwrap_or(line), now_ns);
            start += i + 1;
        }
        buf.drain(..start);
        self.partial = buf;
    }

    fn line(&mut self, line: &[u8], now_ns: i128) {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.split(' ');
        let (a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if a == "END" {
            let c = parts.next().and_then(|c| c.parse().ok());
            self.end = b.parse().ok().zip(c);
            return;
        }
        let (Ok(ns), Ok(n)) = (a.parse::<i128>(), b.parse::<u64>()) else {
            self.foreign += 1;
            return;
        };
        self.latencies_ms.push((now_ns - ns) as f64 / 1e6);
        if n == self.next_line {
            self.next_line += 1;
        } else if n > self.next_line {
            self.skipped += n - self.next_line;
            self.next_line = n + 1;
        } else {
            self.out_of_order += 1;
        }
    }

    fn report(&self) -> Value {
        let mut s = self.latencies_ms.clone();
        s.sort_by(f64::total_cmp);
        json!({
            "lines": s.len(),
            "linesSkipped": self.skipped,
            "linesOutOfOrder": self.out_of_order,
            "foreignLines": self.foreign,
            "endMarkerSeen": self.end.is_some(),
            "latencyMs": latency_summary(&s),
        })
    }
}

/// p50 / p90 / p99 / max of sorted millisecond samples.
fn latency_summary(sorted: &[f64]) -> Value {
    json!({
        "n": sorted.len(),
        "min": round(sorted.first().copied().unwrap_or(f64::NAN), 2),
        "p50": round(percentile(sorted, 50.0), 2),
        "p90": round(percentile(sorted, 90.0), 2),
        "p99": round(percentile(sorted, 99.0), 2),
        "max": round(sorted.last().copied().unwrap_or(f64::NAN), 2),
    })
}

/// What an in-process subscriber saw of the live `terminal.output` stream alone (no
/// `run.terminal.read` catch-up), to tell gateway-side drops from what `viber watch` hides.
#[derive(Default)]
struct LiveStream {
    events: u64,
    bytes: u64,
    /// Bytes skipped between consecutive chunks (dropped live events).
    gap_bytes: u64,
    dup_bytes: u64,
    /// Missing `seq` numbers on the connection (any event dropped for it).
    seq_gaps: u64,
    ended: bool,
    lines: LineTimer,
}

/// A raw connection that has done the handshake and `events.subscribe {terminal: true}`.
/// Returns it with the last event `seq` seen while waiting for the answer.
async fn subscribe_terminal(
    key: &DeviceKey,
    opts: &ConnectOptions,
    run_id: &str,
) -> Result<(Ws, u64)> {
    let mut ws = raw_connect_listener(&opts.url, Some((key, opts))).await?;
    let req = json!({"type": "req", "id": "sub", "method": "events.subscribe",
                     "params": {"runId": run_id, "terminal": true}});
    ws.send(Message::text(req.to_string())).await?;
    let mut last_seq = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| anyhow!("no answer to events.subscribe"))?
            .ok_or_else(|| anyhow!("closed before answering events.subscribe"))??;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<Frame>(t.as_str())? {
            Frame::Res(r) if r.id == "sub" => {
                if !r.ok {
                    bail!("events.subscribe failed: {:?}", r.error);
                }
                return Ok((ws, last_seq));
            }
            Frame::Event(ev) => last_seq = ev.seq.unwrap_or(last_seq),
            _ => {}
        }
    }
}

/// Reads the live stream until the run's final `run.status` (plus a short grace period)
/// or `timeout`.
async fn read_live(
    (mut ws, mut last_seq): (Ws, u64),
    run_id: String,
    clock: MonoClock,
    timeout: Duration,
) -> LiveStream {
    let mut live = LiveStream::default();
    let mut next_offset: std::collections::BTreeMap<u64, u64> = Default::default();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut until = deadline;
    loop {
        let msg = match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let Message::Text(text) = msg else { continue };
        let now = clock.now_ns();
        let Ok(Frame::Event(ev)) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        if let Some(seq) = ev.seq {
            live.seq_gaps += seq.saturating_sub(last_seq + 1);
            last_seq = seq;
        }
        if ev.payload["runId"] != run_id.as_str() {
            continue;
        }
        if ev.event == viber::protocol::events::TERMINAL_OUTPUT {
            let step = ev.payload["step"].as_u64().unwrap_or(0);
            let offset = ev.payload["offset"].as_u64().unwrap_or(0);
            let data = base64::engine::general_purpose::STANDARD
                .decode(ev.payload["data"].as_str().unwrap_or(""))
                .unwrap_or_default();
            live.events += 1;
            live.bytes += data.len() as u64;
            let next = next_offset.entry(step).or_insert(0);
            let end = offset + data.len() as u64;
            if offset > *next {
                live.gap_bytes += offset - *next;
            } else if offset < *next {
                live.dup_bytes += (*next).min(end) - offset;
            }
            // Only step 1 carries the generator's lines; time them while contiguous.
            if step == 1 && offset >= *next {
                live.lines.feed(&data, now);
            }
            *next = (*next).max(end);
        } else if ev.event == viber::protocol::events::RUN_STATUS && ev.payload["exitCode"].is_u64()
        {
            live.ended = true;
            until = (tokio::time::Instant::now() + Duration::from_millis(300)).min(deadline);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    live
}

fn terminal(b: &Bench, a: &TerminalArgs) -> Result<Value> {
    if a.rate == 0 || !(a.seconds > 0.0 && a.seconds <= 600.0) || a.line_bytes < 48 {
        bail!("--rate must be positive, --seconds in (0, 600], --line-bytes at least 48");
    }
    let mut py = PyClock::start()?;
    let anchor = Instant::now();
    let (offset0, rtt0) = py.calibrate(anchor, 200)?;
    let clock = MonoClock {
        anchor,
        offset_ns: offset0,
    };
    let home = TempHome::new(b, "terminal")?;
    let mut gw = GatewayProc::start(b, &home)?;
    let step_cmd = format!(
        "while [ ! -f go ]; do sleep 0.01; done; exec {} gen.py {} {} {}",
        shell_quote(&py.python),
        a.rate,
        a.seconds,
        a.line_bytes
    );
    let yaml = format!(
        "goal: terminal output benchmark\nmode: always-execute\nbudget: {{max_steps: 5, max_wall_secs: 900}}\nsteps:\n  - run: {}\n",
        serde_json::to_string(&step_cmd)?
    );
    let task_path = write_task(&home, &yaml)?;
    let dir = task_path.parent().context("task file has no directory")?;
    std::fs::write(dir.join("gen.py"), GEN_PY)?;
    let key = home.key()?;
    let admin = home.options(&gw.url, vec![Scope::OperatorAdmin])?;
    let timeout = Duration::from_secs_f64(a.seconds) + Duration::from_secs(60);

    let (control, run_id) = b.rt.block_on(async {
        let control = connect_retry(&key, &admin, Duration::from_secs(5)).await?;
        let run_id = start_run(&control, &task_path).await?;
        Ok::<_, anyhow::Error>((control, run_id))
    })?;
    eprintln!("viber-bench: terminal: run {run_id}");
    // The watcher under test: the real `viber watch RUN --terminal`, its stdout timed here.
    let watch_err = home.root.join("bench-watch.err");
    let mut watch = ChildGuard(
        b.viber()
            .arg("--home")
            .arg(&home.root)
            .args(["watch", &run_id, "--terminal"])
            .stdout(Stdio::piped())
            .stderr(File::create(&watch_err)?)
            .spawn()
            .context("cannot spawn viber watch")?,
    );
    let mut stdout = watch.0.stdout.take().context("viber watch has no stdout")?;
    let reader = std::thread::spawn(move || -> std::io::Result<(Vec<u8>, LineTimer)> {
        let mut buf = vec![0u8; 1 << 18];
        let mut all = Vec::new();
        let mut lines = LineTimer::default();
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok((all, lines));
            }
            let now = clock.now_ns();
            all.extend_from_slice(&buf[..n]);
            lines.feed(&buf[..n], now);
        }
    });
    let live = b.rt.block_on(async {
        let sub = subscribe_terminal(&key, &admin, &run_id).await?;
        let live = tokio::spawn(read_live(sub, run_id.clone(), clock, timeout));
        wait_run(
            &control,
            &run_id,
            "running step 1",
            Duration::from_secs(30),
            |s| s["steps"][0]["state"] == "running",
        )
        .await?;
        Ok::<_, anyhow::Error>(live)
    })?;
    // `viber watch` subscribes within ~10 ms of starting; leave it ample time.
    std::thread::sleep(Duration::from_millis(500));
    let gw_cpu0 = cpu_ms(gw.pid);
    let go_at = Instant::now();
    File::create(dir.join("go"))?;
    let watch_status = loop {
        if let Some(st) = watch.0.try_wait()? {
            break st;
        }
        if go_at.elapsed() > timeout {
            bail!("viber watch did not end within {timeout:?} of the step starting");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let watch_secs = go_at.elapsed().as_secs_f64();
    let (received, watched) = reader
        .join()
        .map_err(|_| anyhow!("the stdout reader panicked"))??;
    let (live, summary) = b.rt.block_on(async {
        let live = live.await?;
        let s = wait_run(&control, &run_id, "end", Duration::from_secs(30), run_ended).await?;
        control.close();
        Ok::<_, anyhow::Error>((live, s))
    })?;
    let gw_cpu = gw_cpu0.zip(cpu_ms(gw.pid)).map(|(a, b)| b - a);
    let (offset1, rtt1) = py.calibrate(anchor, 200)?;
    let workspace = PathBuf::from(summary["workspace"].as_str().unwrap_or_default());
    let log_path = workspace.join("evidence/terminal/1.log");
    let log = std::fs::read(&log_path)
        .with_context(|| format!("cannot read the pane log {}", log_path.display()))?;
    gw.stop()?;
    let identical = received == log;
    let lost = log.len().saturating_sub(received.len());
    let extra = received.len().saturating_sub(log.len());
    let mismatch = if identical { 0 } else { lost.max(extra).max(1) };
    let p50 = percentile(
        &{
            let mut s = watched.latencies_ms.clone();
            s.sort_by(f64::total_cmp);
            s
        },
        50.0,
    );
    let (lines_written, bytes_written) = watched.end.or(live.lines.end).unwrap_or((0, 0));
    let watch_stderr = std::fs::read_to_string(&watch_err).unwrap_or_default();
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "terminal",
        "params": {"rateBytesPerSec": a.rate, "seconds": a.seconds, "lineBytes": a.line_bytes,
                   "step": step_cmd.replace(&py.python, "python3"),
                   "what": "a python3 step in the run's tmux pane writes `<CLOCK_MONOTONIC ns> <n> <padding>` lines; `viber watch RUN --terminal`'s stdout is read and each line timed on arrival against the same clock"},
        "run": {"status": summary["status"], "stepExit": summary["steps"][0]["exitStatus"]},
        "generator": {"lines": lines_written, "bytes": bytes_written},
        "paneLogBytes": log.len(),
        "watch": {
            "exitCode": watch_status.code(),
            "bytesReceived": received.len(),
            "bytesLost": lost,
            "bytesExtra": extra,
            "identicalToPaneLog": identical,
            "secondsGoToExit": round(watch_secs, 3),
            "stderrTail": watch_stderr.lines().last(),
            "lines": watched.report(),
        },
        "liveStream": {
            "what": "an in-process subscriber counting terminal.output events only, no run.terminal.read catch-up",
            "events": live.events,
            "bytes": live.bytes,
            "gapBytes": live.gap_bytes,
            "dupBytes": live.dup_bytes,
            "seqGaps": live.seq_gaps,
            "sawFinalStatus": live.ended,
            "lines": live.lines.report(),
        },
        "gatewayCpuMs": gw_cpu,
        "clock": {"calibrationRttUs": [round(rtt0 as f64 / 1e3, 1), round(rtt1 as f64 / 1e3, 1)],
                  "offsetDriftUs": round((offset1 - offset0) as f64 / 1e3, 1)},
        "targets": [
            target("terminal line latency to viber watch, p50 ms", p50, "<", 50.0),
            target("bytes lost or different (viber watch output vs pane log)", mismatch as f64, "<=", 0.0),
        ],
    }))
}

// ---------------------------------------------------------------------------------------
// fanout: events delivered to many watcher connections.

/// Arrival times (ns since the scenario's anchor) of the events one watcher received.
#[derive(Default)]
struct Arrivals {
    /// run.progress / run.status, keyed by the session `seq` in the payload.
    run: Vec<(u64, u64)>,
    /// presence deltas, keyed by `stateVersion`.
    presence: Vec<(u64, u64)>,
    seq_gaps: u64,
    last_seq: u64,
    closed_by_gateway: bool,
}

/// Just the fields that identify an event; everything else is skipped without allocating.
#[derive(serde::Deserialize)]
struct EventIds<'a> {
    #[serde(default, borrow)]
    event: Option<&'a str>,
    #[serde(default)]
    payload: Option<PayloadIds>,
    #[serde(default)]
    seq: Option<u64>,
}

#[derive(serde::Deserialize)]
struct PayloadIds {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, rename = "stateVersion")]
    state_version: Option<u64>,
}

impl Arrivals {
    fn note(&mut self, text: &str, at: u64) {
        let Ok(ev) = serde_json::from_str::<EventIds>(text) else {
            return;
        };
        if let Some(seq) = ev.seq {
            self.seq_gaps += seq.saturating_sub(self.last_seq + 1);
            self.last_seq = seq;
        }
        let p = ev.payload.as_ref();
        match ev.event {
            Some("run.progress" | "run.status") => {
                if let Some(id) = p.and_then(|p| p.seq) {
                    self.run.push((id, at));
                }
            }
            Some("presence") => {
                if let Some(id) = p.and_then(|p| p.state_version) {
                    self.presence.push((id, at));
                }
            }
            _ => {}
        }
    }
}

/// One watcher: times every frame as it arrives, until told to stop.
async fn fan_watcher(
    mut ws: Ws,
    anchor: Instant,
    mut stop: watch::Receiver<bool>,
    frames: Arc<AtomicU64>,
) -> Arrivals {
    let mut a = Arrivals::default();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return a;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let at = anchor.elapsed().as_nanos() as u64;
                    frames.fetch_add(1, Ordering::Relaxed);
                    a.note(t.as_str(), at);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    a.closed_by_gateway = true;
                    return a;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Waits until `frames` has not moved for `quiet` (at most `max`).
async fn settle(frames: &AtomicU64, quiet: Duration, max: Duration) {
    let started = Instant::now();
    let mut last = frames.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while started.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = frames.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Deliveries of one kind of event inside [from, to) ns: totals, first-to-last rate, and
/// each event's own spread (first to last of its deliveries).
fn fan_stats<'a>(
    lists: impl Iterator<Item = &'a [(u64, u64)]>,
    from: u64,
    to: u64,
    watchers: usize,
) -> (Value, f64) {
    let mut per_event: std::collections::HashMap<u64, (u64, u64, u64)> = Default::default();
    let mut deliveries = 0u64;
    for list in lists {
        for &(id, at) in list.iter().filter(|(_, at)| *at >= from && *at < to) {
            deliveries += 1;
            let e = per_event.entry(id).or_insert((0, u64::MAX, 0));
            e.0 += 1;
            e.1 = e.1.min(at);
            e.2 = e.2.max(at);
        }
    }
    let events = per_event.len() as u64;
    let first = per_event.values().map(|e| e.1).min().unwrap_or(0);
    let last = per_event.values().map(|e| e.2).max().unwrap_or(0);
    let span = (last.saturating_sub(first)) as f64 / 1e9;
    let rate = if span > 0.0 {
        deliveries as f64 / span
    } else {
        f64::NAN
    };
    let mut spreads: Vec<f64> = per_event
        .values()
        .map(|e| (e.2 - e.1) as f64 / 1e6)
        .collect();
    spreads.sort_by(f64::total_cmp);
    let mut per_event_rates: Vec<f64> = per_event
        .values()
        .filter(|e| e.2 > e.1)
        .map(|e| e.0 as f64 / ((e.2 - e.1) as f64 / 1e9))
        .collect();
    per_event_rates.sort_by(f64::total_cmp);
    let expected = events * watchers as u64;
    let v = json!({
        "events": events,
        "deliveries": deliveries,
        "expectedDeliveries": expected,
        "missingDeliveries": expected.saturating_sub(deliveries),
        "firstToLastDeliveryMs": round(span * 1e3, 1),
        "deliveriesPerSec": round(rate, 0),
        "eventsPerSec": round(if span > 0.0 { events as f64 / span } else { f64::NAN }, 1),
        "perEventSpreadMs": latency_summary(&spreads),
        "perEventDeliveriesPerSecMedian": round(percentile(&per_event_rates, 50.0), 0),
    });
    (v, rate)
}

fn fanout(b: &Bench, a: &FanoutArgs) -> Result<Value> {
    let n = a.watchers.max(1);
    let need = (n + a.concurrency + 256) as u64;
    let limit = open_files_limit("self").unwrap_or(0);
    if limit < need {
        bail!("RLIMIT_NOFILE is {limit}, {need} needed: run `ulimit -n {need}` first");
    }
    let home = TempHome::new(b, "fanout")?;
    let mut gw = GatewayProc::start(b, &home)?;
    let key = Arc::new(home.key()?);
    let admin = home.options(&gw.url, vec![Scope::OperatorAdmin])?;
    let read = Arc::new(home.options(&gw.url, vec![Scope::OperatorRead])?);
    let write = Arc::new(home.options(&gw.url, vec![Scope::OperatorWrite])?);
    let mut yaml = String::from(
        "goal: fan-out benchmark\nmode: always-execute\nbudget: {max_steps: 100000, max_wall_secs: 900}\nsteps:\n",
    );
    for _ in 0..a.steps.max(1) {
        yaml.push_str("  - run: \"true\"\n");
    }
    let task_path = write_task(&home, &yaml)?;
    let anchor = Instant::now();
    let frames = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gw_pid = gw.pid;
    let ns = || anchor.elapsed().as_nanos() as u64;
    let cpu = || (cpu_ms(gw_pid), cpu_ms(std::process::id()));
    let outcome = b.rt.block_on(async {
        // Pairs the device with every operator scope; it stays open for run.start/run.get.
        let control = connect_retry(&key, &admin, Duration::from_secs(5)).await?;
        let t = Instant::now();
        let mut watchers = Vec::with_capacity(n);
        {
            let mut connecting = futures_util::stream::iter(0..n)
                .map(|_| {
                    let (key, read) = (key.clone(), read.clone());
                    async move { raw_connect_listener(&read.url, Some((&*key, &*read))).await }
                })
                .buffer_unordered(32);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while let Some(ws) = tokio::time::timeout_at(deadline, connecting.next())
                .await
                .map_err(|_| anyhow!("establishing {n} watchers took over 120 s"))?
            {
                watchers.push(tokio::spawn(fan_watcher(
                    ws?,
                    anchor,
                    stop_rx.clone(),
                    frames.clone(),
                )));
            }
        }
        let establish_secs = t.elapsed().as_secs_f64();
        eprintln!("viber-bench: fanout: {n} watchers in {establish_secs:.1} s");
        settle(&frames, Duration::from_millis(500), Duration::from_secs(30)).await;
        let rss = proc_status_mb(gw_pid, "VmRSS").ok();

        // Phase 1: a real run's events.
        let (c0, p1_from) = (cpu(), ns());
        let run_id = start_run(&control, &task_path).await?;
        let summary = wait_run(
            &control,
            &run_id,
            "end",
            Duration::from_secs(300),
            run_ended,
        )
        .await?;
        settle(&frames, Duration::from_millis(500), Duration::from_secs(30)).await;
        let (c1, p1_to) = (cpu(), ns());
        eprintln!("viber-bench: fanout: run {run_id} {}", summary["status"]);

        // Phase 2: presence deltas from extra connections that connect and close.
        let p2_from = ns();
        let mut errors = 0usize;
        let mut first_error = None;
        {
            let mut cycles = futures_util::stream::iter(0..a.connects)
                .map(|_| {
                    let (key, write) = (key.clone(), write.clone());
                    async move {
                        let mut ws = raw_connect(&write.url, Some((&*key, &*write))).await?;
                        let _ = ws.close(None).await;
                        Ok::<_, anyhow::Error>(())
                    }
                })
                .buffer_unordered(a.concurrency.max(1));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while let Ok(Some(r)) = tokio::time::timeout_at(deadline, cycles.next()).await {
                if let Err(e) = r {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        let connect_secs = (ns() - p2_from) as f64 / 1e9;
        settle(&frames, Duration::from_millis(500), Duration::from_secs(30)).await;
        let (c2, p2_to) = (cpu(), ns());
        control.close();
        let _ = stop_tx.send(true);
        let mut arrivals = Vec::with_capacity(n);
        for w in watchers {
            arrivals.push(w.await?);
        }
        Ok::<_, anyhow::Error>(json!({
            "establishSeconds": round(establish_secs, 2),
            "gatewayRssMbWithWatchers": rss,
            "runId": run_id,
            "runStatus": summary["status"],
            "arrivals": arrivals_to_stats(&arrivals, n, (p1_from, p1_to), (p2_from, p2_to)),
            "cpu": [c0, c1, c2],
            "connectSeconds": connect_secs,
            "errors": errors,
            "firstError": first_error,
        }))
    });
    gw.stop()?;
    let o = outcome?;
    let arr = &o["arrivals"];
    let (run_stats, run_rate) = (
        arr["run"].clone(),
        arr["runRate"].as_f64().unwrap_or(f64::NAN),
    );
    let (pres_stats, pres_rate) = (
        arr["presence"].clone(),
        arr["presenceRate"].as_f64().unwrap_or(f64::NAN),
    );
    let cpu_delta = |i: usize, j: usize, which: usize| -> Option<f64> {
        Some(o["cpu"][j][which].as_f64()? - o["cpu"][i][which].as_f64()?)
    };
    let per_delivery = |c: Option<f64>, stats: &Value| -> Option<f64> {
        let d = stats["deliveries"].as_f64().filter(|d| *d > 0.0)?;
        Some(round(c? * 1000.0 / d, 2))
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let gw_bound = |us: Option<f64>| us.filter(|u| *u > 0.0).map(|u| round(cores * 1e6 / u, 0));
    let run_one = run_stats["perEventDeliveriesPerSecMedian"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let run_gw_us = per_delivery(cpu_delta(0, 1, 0), &run_stats);
    let pres_gw_us = per_delivery(cpu_delta(1, 2, 0), &pres_stats);
    Ok(json!({
        "schema": SCHEMA,
        "scenario": "fanout",
        "params": {"watchers": n, "watcherScope": "operator.read", "steps": a.steps.max(1),
                   "connects": a.connects, "concurrency": a.concurrency.max(1),
                   "what": "deliveries = frames received by all watchers; rate = deliveries / (first to last delivery) of that kind of event"},
        "establishSeconds": o["establishSeconds"],
        "gatewayRssMbWithWatchers": o["gatewayRssMbWithWatchers"],
        "watchersClosedByGateway": arr["closedByGateway"],
        "watcherSeqGaps": arr["seqGaps"],
        "runPhase": {
            "runStatus": o["runStatus"],
            "events": "run.progress + run.status of a run of `true` steps",
            "stats": run_stats,
            "gatewayCpuUsPerDelivery": run_gw_us,
            "benchCpuUsPerDelivery": per_delivery(cpu_delta(0, 1, 1), &run_stats),
        },
        "presencePhase": {
            "events": "presence deltas from operator.write connections that connect and close",
            "connectCycles": a.connects,
            "connectSeconds": round(o["connectSeconds"].as_f64().unwrap_or(f64::NAN), 2),
            "errors": o["errors"],
            "firstError": o["firstError"],
            "stats": pres_stats,
            "gatewayCpuUsPerDeliveryInclHandshakes": pres_gw_us,
            "gatewayCpuBoundDeliveriesPerSec": gw_bound(pres_gw_us),
            "benchCpuUsPerDelivery": per_delivery(cpu_delta(1, 2, 1), &pres_stats),
        },
        "targets": [
            target("one run event to the watchers: deliveries/s from its first to its last delivery (median over the run's events)", run_one, ">=", 500_000.0),
            target("all run events: deliveries/s from first to last delivery (bounded by the run's event rate)", run_rate, ">=", 500_000.0),
            target("presence deltas, sustained: deliveries/s from first to last delivery", pres_rate, ">=", 500_000.0),
        ],
    }))
}

fn arrivals_to_stats(arrivals: &[Arrivals], n: usize, p1: (u64, u64), p2: (u64, u64)) -> Value {
    let (run, run_rate) = fan_stats(arrivals.iter().map(|a| &a.run[..]), p1.0, p1.1, n);
    let (presence, presence_rate) =
        fan_stats(arrivals.iter().map(|a| &a.presence[..]), p2.0, p2.1, n);
    json!({
        "run": run,
        "runRate": run_rate,
        "presence": presence,
        "presenceRate": presence_rate,
        "closedByGateway": arrivals.iter().filter(|a| a.closed_by_gateway).count(),
        "seqGaps": arrivals.iter().map(|a| a.seq_gaps).sum::<u64>(),
    })
}
