//! `viber pair`: device pairing from both ends.
//!
//! With no subcommand it does the right thing for this device: if it already holds
//! `operator.pairing` on the gateway it is the approver (interactive on a TTY, a list
//! otherwise); if the gateway does not know it yet it files a pairing request and waits
//! for an operator's decision, then keeps the issued device token in
//! `identity/tokens.yaml` so later verbs need no `--token`.
//!
//! The subcommands are the scriptable forms (`list`, `approve`, `reject`, `revoke`,
//! `rotate`, `devices`) plus `trust`, which edits the gateway's `trusted_keys` file
//! locally. Every side-effecting call carries an idempotency key: a fresh one per
//! invocation unless `--idempotency-key` pins it, so a retried script causes no second
//! effect.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Ctx;
use crate::client::{Client, ClientError};
use crate::error::Error;
use crate::identity::DeviceKey;
use crate::output;
use crate::protocol::methods::expand;
use crate::protocol::{ErrorCode, ErrorShape, Role, Scope};
use crate::store::trusted_keys;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    request: RequestArgs,
}

/// How a new device asks to be paired (no subcommand).
#[derive(Debug, clap::Args)]
struct RequestArgs {
    /// Scopes to ask for when this device is not paired yet (comma-separated)
    #[arg(
        long,
        value_name = "SCOPES",
        value_delimiter = ',',
        default_value = "operator.read,operator.write"
    )]
    scopes: Vec<Scope>,
    /// Role to pair as: operator (people, scripts) or node (a worker)
    #[arg(long, value_name = "ROLE", default_value = "operator")]
    role: Role,
    /// Stop waiting for an operator's decision after this many seconds (exit 7)
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List pending pairing requests
    List,
    /// Approve a pending request (scopes default to what it asked for, within yours)
    Approve {
        /// Request id, as `viber pair list` shows it
        id: String,
        /// Scopes to grant (comma-separated); never more than this device holds
        #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
        scopes: Option<Vec<Scope>>,
        #[command(flatten)]
        idem: Idem,
    },
    /// Reject a pending request
    Reject {
        /// Request id, as `viber pair list` shows it
        id: String,
        #[command(flatten)]
        idem: Idem,
    },
    /// Unpair a device: its token stops working and its live connections close at once
    Revoke {
        /// Device id (or a unique prefix of 8+ characters, or its SHA256: fingerprint)
        device: String,
        #[command(flatten)]
        idem: Idem,
    },
    /// Replace a device's token (the old one stops working), optionally changing its scopes
    Rotate {
        /// Device id (or a unique prefix of 8+ characters, or its SHA256: fingerprint)
        device: String,
        /// New scopes for the device (comma-separated); never more than this device holds
        #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
        scopes: Option<Vec<Scope>>,
        #[command(flatten)]
        idem: Idem,
    },
    /// List paired devices with their scopes and when they were last seen
    Devices,
    /// Pre-trust a public key: append it to this home's gateway/trusted_keys
    Trust {
        /// OpenSSH public key file (`ssh-ed25519 AAAA... comment`), or - for stdin
        pubkey_file: PathBuf,
        /// Scopes the key gets (comma-separated, one role)
        #[arg(
            long,
            value_name = "SCOPES",
            value_delimiter = ',',
            default_value = "operator.read"
        )]
        scopes: Vec<Scope>,
    },
}

#[derive(Debug, clap::Args)]
struct Idem {
    /// Idempotency key for a retried call [default: a fresh one per invocation]
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

impl Idem {
    fn key(&self) -> Result<String, Error> {
        match &self.idempotency_key {
            Some(k) if k.is_empty() || k.chars().count() > 128 => Err(Error::Usage(
                "--idempotency-key must be 1 to 128 characters".into(),
            )),
            Some(k) => Ok(k.clone()),
            None => Ok(uuid::Uuid::new_v4().to_string()),
        }
    }
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    match args.action {
        None => auto(ctx, args.request).await,
        Some(Action::Trust {
            pubkey_file,
            scopes,
        }) => trust(ctx, &pubkey_file, &scopes),
        Some(action) => {
            let client = ctx.connect(vec![Scope::OperatorAdmin]).await?;
            let result = remote(ctx, &client, action).await;
            client.close();
            result
        }
    }
}

async fn remote(ctx: &Ctx, client: &Client, action: Action) -> Result<(), Error> {
    match action {
        Action::List => {
            let list = client.request("device.pair.list", json!({})).await?;
            print_requests(ctx, &list["requests"]);
            Ok(())
        }
        Action::Devices => {
            let list = client.request("device.list", json!({})).await?;
            if ctx.json() {
                output::json(&json!({"schema": "viber.devices/v1", "devices": list["devices"]}));
            } else {
                print_devices(&list["devices"]);
            }
            Ok(())
        }
        Action::Approve { id, scopes, idem } => {
            let mut params = json!({"requestId": id, "idempotencyKey": idem.key()?});
            if let Some(s) = scopes {
                params["scopes"] = json!(s);
            }
            let res = client.request("device.pair.approve", params).await?;
            report_decision(ctx, &res);
            Ok(())
        }
        Action::Reject { id, idem } => {
            let params = json!({"requestId": id, "idempotencyKey": idem.key()?});
            let res = client.request("device.pair.reject", params).await?;
            report_decision(ctx, &res);
            Ok(())
        }
        Action::Revoke { device, idem } => {
            let params = json!({"deviceId": device, "idempotencyKey": idem.key()?});
            let res = client.request("device.pair.revoke", params).await?;
            if ctx.json() {
                let mut out = res.clone();
                out["schema"] = json!("viber.pair-revoke/v1");
                output::json(&out);
            } else {
                let d = &res["device"];
                output::line(&format!(
                    "revoked {} {} ({} live connection(s) closed)",
                    d["name"].as_str().unwrap_or("?"),
                    d["fingerprint"].as_str().unwrap_or("?"),
                    res["closedConnections"]
                ));
                if let Some(src) = res["stillTrusted"].as_str() {
                    output::line(&format!(
                        "warning: its key is still trusted ({src}): it will be paired again on its next connect; remove that line"
                    ));
                }
            }
            Ok(())
        }
        Action::Rotate {
            device,
            scopes,
            idem,
        } => rotate(ctx, client, device, scopes, idem).await,
        Action::Trust { .. } => unreachable!("trust is local"),
    }
}

async fn rotate(
    ctx: &Ctx,
    client: &Client,
    device: String,
    scopes: Option<Vec<Scope>>,
    idem: Idem,
) -> Result<(), Error> {
    let key = ctx.device_key()?;
    let url = client.url.clone();
    let is_self = refers_to(&device, &key);
    // Rotating our own token: the new one is issued to a connect carrying the gateway
    // token, so without one we would lock ourselves out. Refuse before doing anything.
    let gateway_token = ctx.global.token.clone().or_else(|| ctx.local_token(&url));
    if is_self && gateway_token.is_none() {
        return Err(Error::Usage(
            "rotating this device's own token needs the gateway token to fetch the new one: pass --token (or VIBER_GATEWAY_TOKEN)".into(),
        ));
    }
    let mut params = json!({"deviceId": device, "idempotencyKey": idem.key()?});
    if let Some(s) = scopes {
        params["scopes"] = json!(s);
    }
    let res = client.request("device.pair.rotate", params).await?;
    let mut stored = false;
    if res["device"]["deviceId"].as_str() == Some(key.device_id().as_str()) {
        let mut opts = ctx.connect_options(
            &key,
            &url,
            client.hello.auth.role,
            vec![Scope::OperatorAdmin],
        )?;
        opts.token = gateway_token;
        let fresh = ctx.connect_with(&key, &opts).await?;
        stored = fresh.hello.auth.device_token.is_some();
        fresh.close();
    }
    if ctx.json() {
        let mut out = res.clone();
        out["schema"] = json!("viber.pair-rotate/v1");
        out["tokenStored"] = json!(stored);
        output::json(&out);
    } else {
        let d = &res["device"];
        output::line(&format!(
            "rotated the token of {} {} (scopes {}); {} live connection(s) closed",
            d["name"].as_str().unwrap_or("?"),
            d["fingerprint"].as_str().unwrap_or("?"),
            join(&d["scopes"]),
            res["closedConnections"]
        ));
        if stored {
            output::line(&format!(
                "this device's new token is stored in {}",
                ctx.home.tokens().display()
            ));
        } else {
            output::line(
                "the device gets its new token on its next connect with the gateway token: run `viber pair --token T` there",
            );
        }
    }
    Ok(())
}

/// Whether `arg` names this device (its id, an 8+ character prefix, or its fingerprint).
fn refers_to(arg: &str, key: &DeviceKey) -> bool {
    let id = key.device_id();
    arg == id
        || arg == key.fingerprint()
        || (arg.len() >= 8 && id.starts_with(&arg.to_ascii_lowercase()))
}

/// No subcommand: approver if this device holds `operator.pairing`, requester if the
/// gateway does not know it.
async fn auto(ctx: &Ctx, mut args: RequestArgs) -> Result<(), Error> {
    if args.role == Role::Node && args.scopes.iter().all(|s| s.role() == Role::Operator) {
        // The operator default makes no sense for a worker: it asks for what nodes have.
        args.scopes = vec![Scope::NodeExec];
    }
    if let Some(s) = args.scopes.iter().find(|s| s.role() != args.role) {
        return Err(Error::Usage(format!(
            "--scopes: {s} is not a scope of role {}",
            args.role
        )));
    }
    let key = ctx.device_key()?;
    let url = ctx.gateway_url()?;
    let opts = ctx.connect_options(&key, &url, args.role, args.scopes.clone())?;
    match ctx.connect_with(&key, &opts).await {
        Ok(client) => {
            let issued = client.hello.auth.device_token.is_some();
            let scopes = client.hello.auth.scopes.clone();
            client.close();
            if args.role == Role::Operator {
                // Ask again for everything granted: the request scopes may not include
                // operator.pairing even when the device holds it.
                let all =
                    ctx.connect_options(&key, &url, Role::Operator, vec![Scope::OperatorAdmin])?;
                let client = ctx.connect_with(&key, &all).await?;
                if Scope::OperatorPairing.is_satisfied_by(&client.hello.auth.scopes) {
                    let r = approver(ctx, &client).await;
                    client.close();
                    return r;
                }
                client.close();
            }
            report_paired(ctx, &key, &url, "paired", None, args.role, &scopes, issued);
            Ok(())
        }
        Err(Error::Client(ClientError::Rejected(e))) if e.code == ErrorCode::PairingRequired => {
            request(ctx, &key, &opts, args, e).await
        }
        Err(e) => Err(e),
    }
}

fn request_id_of(e: &ErrorShape) -> String {
    e.details
        .as_ref()
        .and_then(|d| d["requestId"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// The requester's side: announce the request, then reconnect until the gateway lets us
/// in (approved), says no (rejected), or `--timeout` passes.
async fn request(
    ctx: &Ctx,
    key: &DeviceKey,
    opts: &crate::client::ConnectOptions,
    args: RequestArgs,
    first: ErrorShape,
) -> Result<(), Error> {
    let mut request_id = request_id_of(&first);
    let announce = |id: &str| {
        if ctx.json() {
            output::json(&json!({
                "schema": "viber.pair/v1",
                "status": "pending",
                "requestId": id,
                "deviceId": key.device_id(),
                "fingerprint": key.fingerprint(),
                "name": opts.display_name,
                "gateway": opts.url,
                "role": opts.role,
                "scopes": opts.scopes,
            }));
        } else {
            output::line(&format!("pairing request {id} sent to {}", opts.url));
            output::line(&format!("device fingerprint {}", key.fingerprint()));
            output::line(&format!(
                "asking for role {} with scopes {}",
                opts.role,
                opts.scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            output::line(
                "on the gateway host, an operator approves it with `viber pair` (check the fingerprint)",
            );
        }
    };
    announce(&request_id);
    let spinner = (!ctx.json() && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("waiting for approval of {request_id}"));
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let result = loop {
        if Instant::now() >= deadline {
            break Err(Error::Client(ClientError::Timeout(format!(
                "waiting {} s for an operator to approve pairing request {request_id}",
                args.timeout
            ))));
        }
        // Polling by reconnecting: an unpaired device cannot hold a connection open, and
        // the gateway answers a re-request with the same request id while it is pending.
        tokio::time::sleep(Duration::from_millis(300)).await;
        match ctx.connect_with(key, opts).await {
            Ok(client) => {
                let issued = client.hello.auth.device_token.is_some();
                let scopes = client.hello.auth.scopes.clone();
                client.close();
                break Ok((issued, scopes));
            }
            Err(Error::Client(ClientError::Rejected(e)))
                if e.code == ErrorCode::PairingRequired =>
            {
                let id = request_id_of(&e);
                if id != request_id {
                    // The old request expired and a new one was filed.
                    request_id = id;
                    if let Some(pb) = &spinner {
                        pb.set_message(format!("waiting for approval of {request_id}"));
                    }
                    announce(&request_id);
                }
            }
            // The gateway restarting is not a decision: keep waiting.
            Err(Error::Client(ClientError::Unreachable { .. } | ClientError::Closed { .. })) => {}
            Err(e) => break Err(e),
        }
    };
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let (issued, scopes) = result?;
    report_paired(
        ctx,
        key,
        &opts.url,
        "approved",
        Some(&request_id),
        opts.role,
        &scopes,
        issued,
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report_paired(
    ctx: &Ctx,
    key: &DeviceKey,
    url: &str,
    status: &str,
    request_id: Option<&str>,
    role: Role,
    scopes: &[Scope],
    token_stored: bool,
) {
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.pair/v1",
            "status": status,
            "requestId": request_id,
            "deviceId": key.device_id(),
            "fingerprint": key.fingerprint(),
            "gateway": url,
            "role": role,
            "scopes": scopes,
            "tokenStored": token_stored,
            "tokens": ctx.home.tokens(),
        }));
        return;
    }
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    match status {
        "approved" => output::line(&format!(
            "approved: paired with {url} as {role} [{}]",
            scopes.join(", ")
        )),
        _ if token_stored => output::line(&format!(
            "paired with {url} as {role} [{}]",
            scopes.join(", ")
        )),
        _ => output::line(&format!(
            "already paired with {url} as {role} [{}]",
            scopes.join(", ")
        )),
    }
    if token_stored {
        output::line(&format!(
            "device token stored in {}: later verbs against this gateway need no --token",
            ctx.home.tokens().display()
        ));
    }
}

/// The approver's side with no subcommand: interactive on a TTY, else the list.
async fn approver(ctx: &Ctx, client: &Client) -> Result<(), Error> {
    let list = client.request("device.pair.list", json!({})).await?;
    let interactive =
        !ctx.json() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        print_requests(ctx, &list["requests"]);
        if !ctx.json() {
            output::line("decide with `viber pair approve ID` or `viber pair reject ID`");
        }
        return Ok(());
    }
    let requests = list["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() {
        output::line("no pending pairing requests");
        return Ok(());
    }
    let held = expand(&client.hello.auth.scopes);
    let theme = dialoguer::theme::SimpleTheme;
    for r in &requests {
        let id = r["requestId"].as_str().unwrap_or_default();
        eprintln!();
        eprintln!("pairing request {id}");
        eprintln!("  device       {}", r["name"].as_str().unwrap_or("?"));
        eprintln!(
            "  fingerprint  {}",
            r["fingerprint"].as_str().unwrap_or("?")
        );
        eprintln!("  from         {}", r["peer"].as_str().unwrap_or("?"));
        eprintln!(
            "  asks for     {} [{}]",
            r["role"].as_str().unwrap_or("?"),
            join(&r["scopes"])
        );
        eprintln!("  age          {}", age(r["ageMs"].as_i64().unwrap_or(0)));
        let choice = dialoguer::Select::with_theme(&theme)
            .with_prompt("Decision")
            .items(["approve", "reject", "skip"])
            .default(0)
            .interact()
            .map_err(prompt_error)?;
        let idem = uuid::Uuid::new_v4().to_string();
        match choice {
            0 => {
                let role: Role =
                    serde_json::from_value(r["role"].clone()).unwrap_or(Role::Operator);
                let asked: Vec<Scope> =
                    serde_json::from_value(r["scopes"].clone()).unwrap_or_default();
                let asked = expand(&asked);
                // Offer what the approver can give for that role; tick what was asked.
                let options: Vec<Scope> = role
                    .all_scopes()
                    .iter()
                    .copied()
                    .filter(|s| crate::gateway::pairing::can_grant(*s, &held))
                    .collect();
                if options.is_empty() {
                    eprintln!("  you hold no {role} scope to grant: skipped");
                    continue;
                }
                let names: Vec<&str> = options.iter().map(|s| s.as_str()).collect();
                let defaults: Vec<bool> = options.iter().map(|s| asked.contains(s)).collect();
                let picked = dialoguer::MultiSelect::with_theme(&theme)
                    .with_prompt("Scopes to grant (space toggles, enter confirms)")
                    .items(&names)
                    .defaults(&defaults)
                    .interact()
                    .map_err(prompt_error)?;
                if picked.is_empty() {
                    eprintln!("  nothing granted: skipped");
                    continue;
                }
                let scopes: Vec<Scope> = picked.iter().map(|&i| options[i]).collect();
                let res = client
                    .request(
                        "device.pair.approve",
                        json!({"requestId": id, "scopes": scopes, "idempotencyKey": idem}),
                    )
                    .await?;
                report_decision(ctx, &res);
            }
            1 => {
                let res = client
                    .request(
                        "device.pair.reject",
                        json!({"requestId": id, "idempotencyKey": idem}),
                    )
                    .await?;
                report_decision(ctx, &res);
            }
            _ => eprintln!("  skipped"),
        }
    }
    Ok(())
}

fn prompt_error(e: dialoguer::Error) -> Error {
    match e {
        dialoguer::Error::IO(io) => Error::io("prompt failed", io),
    }
}

fn report_decision(ctx: &Ctx, res: &Value) {
    if ctx.json() {
        let mut out = res.clone();
        out["schema"] = json!("viber.pair-decision/v1");
        output::json(&out);
        return;
    }
    let r = &res["request"];
    match res["decision"].as_str() {
        Some("approved") => output::line(&format!(
            "approved {} {} as {} [{}]",
            r["name"].as_str().unwrap_or("?"),
            r["fingerprint"].as_str().unwrap_or("?"),
            res["device"]["role"].as_str().unwrap_or("?"),
            join(&res["device"]["scopes"])
        )),
        _ => output::line(&format!(
            "rejected {} {}",
            r["name"].as_str().unwrap_or("?"),
            r["fingerprint"].as_str().unwrap_or("?")
        )),
    }
}

fn print_requests(ctx: &Ctx, requests: &Value) {
    if ctx.json() {
        output::json(&json!({"schema": "viber.pair-requests/v1", "requests": requests}));
        return;
    }
    let list = requests.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        output::line("no pending pairing requests");
        return;
    }
    for r in list {
        output::line(&format!(
            "{}  {}  {}  from {}  {} [{}]  {}",
            r["requestId"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or("?"),
            r["fingerprint"].as_str().unwrap_or("?"),
            r["peer"].as_str().unwrap_or("?"),
            r["role"].as_str().unwrap_or("?"),
            join(&r["scopes"]),
            age(r["ageMs"].as_i64().unwrap_or(0)),
        ));
    }
}

fn print_devices(devices: &Value) {
    let list = devices.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        output::line("no paired devices");
        return;
    }
    for d in list {
        let seen = d["lastSeen"].as_str().unwrap_or("never");
        output::line(&format!(
            "{}  {}  {}  {} [{}]{}  last seen {}  {} connection(s)",
            &d["deviceId"].as_str().unwrap_or("?")
                [..12.min(d["deviceId"].as_str().unwrap_or("?").len())],
            d["name"].as_str().unwrap_or("?"),
            d["fingerprint"].as_str().unwrap_or("?"),
            d["role"].as_str().unwrap_or("?"),
            join(&d["scopes"]),
            if d["trusted"] == true { " trusted" } else { "" },
            seen,
            d["connections"],
        ));
    }
}

fn join(scopes: &Value) -> String {
    scopes
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn age(ms: i64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s ago")
    } else {
        format!("{}m{}s ago", s / 60, s % 60)
    }
}

/// `viber pair trust`: a local edit of this home's `gateway/trusted_keys`; the running
/// gateway notices the change on the key's next connect.
fn trust(ctx: &Ctx, file: &std::path::Path, scopes: &[Scope]) -> Result<(), Error> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Error::io("cannot read stdin", e))?
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?
    };
    let key_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| Error::Usage(format!("{}: no public key in it", file.display())))?;
    if key_line.contains("PRIVATE KEY") {
        return Err(Error::Usage(format!(
            "{} is a private key: pass the .pub file",
            file.display()
        )));
    }
    let path = ctx.home.trusted_keys();
    let (key, how) = trusted_keys::append(&path, key_line, scopes)
        .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    let fingerprint = crate::identity::fingerprint_of(&key.raw);
    let (added, line) = match how {
        trusted_keys::Appended::Added { line } => (true, line),
        trusted_keys::Appended::AlreadyTrusted { line } => {
            let mut want = scopes.to_vec();
            want.sort();
            want.dedup();
            if want != key.scopes {
                return Err(Error::Failed(format!(
                    "{fingerprint} is already trusted with scopes {} ({}:{line}); edit that line to change them",
                    key.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    path.display()
                )));
            }
            (false, line)
        }
    };
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.pair-trust/v1",
            "added": added,
            "deviceId": key.device_id,
            "fingerprint": fingerprint,
            "scopes": key.scopes,
            "file": path,
            "line": line,
        }));
    } else if added {
        output::line(&format!(
            "trusted {fingerprint} with scopes {} ({}:{line})",
            key.scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            path.display()
        ));
    } else {
        output::line(&format!(
            "{fingerprint} is already trusted ({}:{line}); nothing changed",
            path.display()
        ));
    }
    Ok(())
}
