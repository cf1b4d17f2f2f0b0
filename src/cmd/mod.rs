//! The command line: one file per verb, each owning its clap `Args` and one `run`.
//! This file holds the top-level parser, the options every verb shares, and the context
//! that turns those options into a home directory and a connected client.

pub mod approve;
pub mod call;
pub mod chat;
pub mod completions;
pub mod docs;
pub mod gateway;
pub mod init;
pub mod node;
pub mod pair;
pub mod policy;
pub mod report;
pub mod run;
pub mod runs;
pub mod status;
pub mod terminal;
pub mod verify;
pub mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::client::{Client, ConnectOptions};
use crate::error::Error;
use crate::gateway::instance;
use crate::identity::DeviceKey;
use crate::protocol::{Role, Scope};
use crate::store::tokens::{TokenEntry, TokenStore};
use crate::store::{self, Config, Home};

#[derive(Debug, Parser)]
#[command(
    name = "viber",
    version,
    about = "Run AI vibers on real machines under a person's control",
    long_about = "viber runs vibers: an agent loop + the machine it works on + the account it acts for.\n\
                  One `viber gateway` per host owns the control plane; every other verb is a small \
                  scriptable client of it. Use --json for machine-readable output.",
    after_help = "Exit codes: 0 success, 1 failed or unproven, 2 usage or bad input, 3 report invalid, \
                  4 blocked, 5 budget exhausted, 6 cancelled, 7 gateway unreachable/unauthorized."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Directory holding config, keys, sessions and workspace
    #[arg(long, global = true, env = "VIBER_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Gateway URL [default: the running local gateway, else ws://127.0.0.1:7878]
    #[arg(long, global = true, env = "VIBER_GATEWAY_URL", value_name = "URL")]
    pub gateway: Option<String>,
    /// Gateway token (prefer the env var: arguments are visible to other users)
    #[arg(
        long,
        global = true,
        env = "VIBER_GATEWAY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print JSON on stdout (one object, or NDJSON for streams); logs stay on stderr
    #[arg(long, global = true)]
    pub json: bool,
    /// Sign with this OpenSSH Ed25519 private key instead of VIBER_HOME/identity/device_ed25519
    #[arg(long, global = true, env = "VIBER_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create VIBER_HOME: config, device key, gateway token (never overwrites)
    Init(init::Args),
    /// Run the gateway daemon (foreground), or start/stop it in the background
    Gateway(gateway::Args),
    /// Show the gateway, this device and health
    Status(status::Args),
    /// Call any protocol method by name
    Call(call::Args),
    /// Stream events as they happen
    Watch(watch::Args),
    /// Pair this device with a gateway, or approve, list, revoke and trust devices
    Pair(pair::Args),
    /// Start a run from a task file (or --goal) and follow it to its outcome
    Run(run::Args),
    /// List runs, queued ones included
    Runs(runs::Args),
    /// Check a signed report offline: signature, evidence hashes, verdicts (--rerun repeats the checks)
    Verify(verify::Args),
    /// Render a run's report as Markdown, JSON or JUnit XML; print the gateway's allowed_signers line
    Report(report::Args),
    /// Execute one run as a worker (started by the gateway)
    Node(node::Args),
    /// Steer a live run: feedback, pause, resume, cancel, rescope, reprioritize
    Chat(chat::Args),
    /// List actions waiting for approval, or answer one
    Approve(approve::Args),
    /// Check what the autonomy policy does with a command
    Policy(policy::Args),
    /// Print a shell completion script
    Completions(completions::Args),
    /// Regenerate man pages and completion scripts (for maintainers)
    #[command(hide = true)]
    GenerateDocs(docs::Args),
}

impl Command {
    /// Whether the verb is the long-lived daemon (multi-threaded runtime, info logs).
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Gateway(a) if a.is_foreground()) || matches!(self, Command::Node(_))
    }
}

/// What every verb gets: the parsed global options and the resolved home.
pub struct Ctx {
    pub global: GlobalArgs,
    pub home: Home,
}

impl Ctx {
    pub fn new(global: GlobalArgs) -> Result<Self, Error> {
        let home = Home::resolve(global.home.clone()).map_err(Error::Usage)?;
        Ok(Ctx { global, home })
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    pub fn config(&self) -> Result<Config, Error> {
        Ok(Config::load(&self.home.config())?)
    }

    /// The device key: `--key`/`VIBER_KEY` when given, else VIBER_HOME's own key, creating
    /// VIBER_HOME first if this is the first use.
    pub fn device_key(&self) -> Result<DeviceKey, Error> {
        if let Some(path) = &self.global.key {
            return DeviceKey::load(path).map_err(|e| {
                Error::Usage(format!(
                    "--key: {e} (an unencrypted OpenSSH Ed25519 private key is needed; ssh-agent is not supported)"
                ))
            });
        }
        let path = self.home.device_key();
        if !path.exists() {
            store::init::ensure(&self.home)?;
        }
        Ok(DeviceKey::load(&path)?)
    }

    /// `--gateway`, else the running local gateway, else the configured bind address.
    pub fn gateway_url(&self) -> Result<String, Error> {
        if let Some(url) = &self.global.gateway {
            return Ok(url.clone());
        }
        if let Some(info) = instance::running(&self.home) {
            return Ok(info.url);
        }
        let bind: std::net::SocketAddr =
            self.config()?.gateway.bind.parse().map_err(|_| {
                Error::Usage("gateway.bind in config.yaml is not ADDRESS:PORT".into())
            })?;
        Ok(url_for(bind))
    }

    /// Connects as an operator asking for `scopes`.
    pub async fn connect(&self, scopes: Vec<Scope>) -> Result<Client, Error> {
        let key = self.device_key()?;
        let url = self.gateway_url()?;
        let opts = self.connect_options(&key, &url, Role::Operator, scopes)?;
        self.connect_with(&key, &opts).await
    }

    /// Who we are and which secret we present to `url`, in this order: `--token`; the
    /// gateway token of this home's own running gateway; the device token this device was
    /// issued for `url` (identity/tokens.yaml); else none (a trusted key needs none).
    pub fn connect_options(
        &self,
        key: &DeviceKey,
        url: &str,
        role: Role,
        scopes: Vec<Scope>,
    ) -> Result<ConnectOptions, Error> {
        let mut opts = ConnectOptions::operator(url.to_string());
        opts.role = role;
        opts.scopes = scopes;
        opts.display_name = Some(self.device_name());
        opts.token = self.global.token.clone().or_else(|| self.local_token(url));
        if opts.token.is_none() {
            let tokens = TokenStore::load(&self.home.tokens())?;
            opts.device_token = tokens.get(url, &key.device_id()).map(|e| e.token.clone());
        }
        Ok(opts)
    }

    /// Connects with `opts` and keeps a device token the gateway issued in the handshake,
    /// so the next verb against this gateway needs no gateway token.
    pub async fn connect_with(
        &self,
        key: &DeviceKey,
        opts: &ConnectOptions,
    ) -> Result<Client, Error> {
        let client = Client::connect(key, opts).await?;
        if let Some(token) = &client.hello.auth.device_token {
            let mut tokens = TokenStore::load(&self.home.tokens())?;
            tokens.set(TokenEntry {
                gateway: opts.url.clone(),
                device_id: key.device_id(),
                token: token.clone(),
                role: client.hello.auth.role,
                scopes: client.hello.auth.scopes.clone(),
                issued: jiff::Timestamp::now(),
            })?;
        }
        Ok(client)
    }

    /// The name this device shows an approving operator: `identity.name`, else the host.
    pub fn device_name(&self) -> String {
        self.config()
            .ok()
            .and_then(|c| c.identity.name)
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(crate::identity::hostname)
    }

    /// The gateway token from VIBER_HOME, offered only to this home's own running gateway:
    /// it must never be sent to another host just because a URL pointed there, nor to
    /// another home's gateway on this host (an SSH tunnel, a second user). Loopback names
    /// are interchangeable; a gateway bound to a non-loopback address (a VPN) is ours only
    /// under the exact URL it recorded in gateway.json, which names an address of this host.
    pub fn local_token(&self, url: &str) -> Option<String> {
        let own = instance::running(&self.home)?;
        let ours = same_loopback_gateway(url, &own.url)
            || store::tokens::normalize_url(url) == store::tokens::normalize_url(&own.url);
        if !ours {
            return None;
        }
        std::fs::read_to_string(self.home.gateway_token())
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }
}

/// Whether two loopback URLs reach the same listener: loopback names are interchangeable,
/// so only the port decides.
fn same_loopback_gateway(a: &str, b: &str) -> bool {
    let port = |u: &str| -> Option<u16> {
        let rest = u.split_once("://")?.1;
        let authority = rest.split(['/', '?']).next()?;
        authority.rsplit_once(':')?.1.parse().ok()
    };
    is_loopback_url(a) && is_loopback_url(b) && port(a).is_some() && port(a) == port(b)
}

/// `ws://` URL for a bound address; a wildcard bind is reached over loopback.
pub fn url_for(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("ws://{}", std::net::SocketAddr::new(ip, addr.port()))
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .unwrap_or("");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority)
    };
    crate::client::is_loopback_host(host)
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let ctx = Ctx::new(cli.global)?;
    match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Gateway(args) => gateway::run(&ctx, args).await,
        Command::Status(args) => status::run(&ctx, args).await,
        Command::Call(args) => call::run(&ctx, args).await,
        Command::Watch(args) => watch::run(&ctx, args).await,
        Command::Pair(args) => pair::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Runs(args) => runs::run(&ctx, args).await,
        Command::Verify(args) => verify::run(&ctx, args).await,
        Command::Report(args) => report::run(&ctx, args).await,
        Command::Node(args) => node::run(&ctx, args).await,
        Command::Chat(args) => chat::run(&ctx, args).await,
        Command::Approve(args) => approve::run(&ctx, args).await,
        Command::Policy(args) => policy::run(&ctx, args),
        Command::Completions(args) => completions::run(args),
        Command::GenerateDocs(args) => docs::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("ws://127.0.0.1:7878"));
        assert!(is_loopback_url("ws://localhost:1/x"));
        assert!(is_loopback_url("ws://[::1]:7878"));
        assert!(!is_loopback_url("ws://10.0.0.5:7878"));
        assert!(!is_loopback_url("ws://127.0.0.1.evil.example:7878"));
        assert!(!is_loopback_url("http://127.0.0.1:7878"));
    }

    #[test]
    fn loopback_gateways_are_told_apart_by_port() {
        assert!(same_loopback_gateway(
            "ws://localhost:7878",
            "ws://127.0.0.1:7878/"
        ));
        assert!(same_loopback_gateway(
            "ws://[::1]:7878",
            "ws://127.0.0.1:7878"
        ));
        assert!(!same_loopback_gateway(
            "ws://127.0.0.1:7879",
            "ws://127.0.0.1:7878"
        ));
        assert!(!same_loopback_gateway(
            "ws://10.0.0.1:7878",
            "ws://10.0.0.1:7878"
        ));
    }

    #[test]
    fn wildcard_bind_is_reached_over_loopback() {
        assert_eq!(
            url_for("0.0.0.0:7878".parse().unwrap()),
            "ws://127.0.0.1:7878"
        );
        assert_eq!(url_for("[::]:1".parse().unwrap()), "ws://[::1]:1");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
