//! `viber watch`: the event stream, one line per event (NDJSON with `--json`).
//!
//! Events are push-only with no replay, so the client is responsible for noticing loss: a
//! jump in `seq` prints a `viber.gap/v1` line and re-reads state with `status` before going
//! on, and two missed ticks mean the link is dead (exit 7), not merely quiet.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::Ctx;
use crate::client::Incoming;
use crate::error::Error;
use crate::output;
use crate::protocol::{Scope, events};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow one run: its events, or with --terminal the raw bytes of its panes
    #[arg(value_name = "RUN")]
    run: Option<String>,
    /// Stream the run's terminal output, byte for byte as in its pane logs
    #[arg(long, requires = "run")]
    terminal: bool,
    /// Exit after printing this many events
    #[arg(long, value_name = "N", conflicts_with = "run")]
    count: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    if let Some(run_id) = &args.run {
        let mut client = ctx.connect(vec![Scope::OperatorRead]).await?;
        if args.terminal {
            let code = super::terminal::stream(ctx, &mut client, run_id).await?;
            client.close();
            return match code {
                0 => Ok(()),
                c => Err(Error::Exit(c)),
            };
        }
        let summary = super::run::follow(ctx, &mut client, run_id).await?;
        client.close();
        return super::run::finish(ctx, &summary);
    }
    let mut client = ctx.connect(vec![Scope::OperatorAdmin]).await?;
    let key = ctx.device_key()?;
    let tick_ms = client.hello.policy.tick_interval_ms.max(1);
    // Two whole intervals without a tick, plus half of one for scheduling jitter.
    let dead_after = Duration::from_millis(tick_ms * 2 + tick_ms / 2);
    let mut last_tick = Instant::now();
    let mut expected: u64 = 1;
    let mut printed: u64 = 0;
    if args.count == Some(0) {
        return Ok(());
    }
    loop {
        let incoming = tokio::select! {
            inc = client.next_incoming() => inc,
            _ = tokio::time::sleep_until(last_tick + dead_after) => {
                return Err(Error::LinkLost(format!(
                    "no tick from the gateway at {} for {} ms (two missed ticks): the link is dead",
                    client.url,
                    dead_after.as_millis()
                )));
            }
            _ = tokio::signal::ctrl_c() => {
                client.close();
                return Ok(());
            }
        };
        let ev = match incoming {
            Some(Incoming::Event(ev)) => ev,
            Some(Incoming::Closed { code, reason }) => {
                return Err(crate::client::ClientError::Closed { code, reason }.into());
            }
            None => {
                return Err(crate::client::ClientError::Closed {
                    code: None,
                    reason: String::new(),
                }
                .into());
            }
        };
        if let Some(seq) = ev.seq {
            if seq > expected {
                let gap = json!({
                    "schema": "viber.gap/v1",
                    "expected": expected,
                    "got": seq,
                    "missed": seq - expected,
                });
                if ctx.json() {
                    output::json(&gap);
                } else {
                    output::line(&format!(
                        "-- gap: {} event(s) lost before seq {seq}; re-reading status",
                        seq - expected
                    ));
                }
                let status = super::status::fetch(&client, &key).await?;
                if ctx.json() {
                    output::json(&status);
                } else {
                    output::line(&format!("-- status: {}", status["health"]));
                }
            }
            expected = expected.max(seq + 1);
        }
        if ev.event == events::TICK {
            last_tick = Instant::now();
        }
        if ctx.json() {
            output::json(&json!({
                "schema": "viber.event/v1",
                "event": ev.event,
                "seq": ev.seq,
                "payload": ev.payload,
            }));
        } else {
            output::line(&format!(
                "{:>6}  {:<22} {}",
                ev.seq.map(|s| s.to_string()).unwrap_or_default(),
                ev.event,
                ev.payload
            ));
        }
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            client.close();
            return Ok(());
        }
    }
}
