//! `viber watch RUN --terminal`: the raw bytes of a run's panes, exactly as in the pane
//! logs. Live chunks carry their byte offset, so anything missed (a chunk dropped for a
//! slow reader, bytes written before we subscribed) is fetched with `run.terminal.read`
//! and nothing is printed twice or out of order within a step.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::Ctx;
use crate::client::{Client, Incoming};
use crate::error::Error;
use crate::output;
use crate::protocol::events;

struct Sink {
    json: bool,
    /// Next byte offset to print, per step.
    next: BTreeMap<u32, u64>,
}

impl Sink {
    fn write(&mut self, step: u32, offset: u64, data: &[u8]) {
        let next = self.next.entry(step).or_insert(0);
        let end = offset + data.len() as u64;
        if end <= *next || offset > *next {
            return;
        }
        let fresh = &data[(*next - offset) as usize..];
        if self.json {
            output::json(&json!({
                "schema": "viber.terminal/v1",
                "step": step,
                "offset": *next,
                "data": STANDARD.encode(fresh),
            }));
        } else {
            let mut out = std::io::stdout().lock();
            match out.write_all(fresh).and_then(|_| out.flush()) {
                Ok(()) => {}
                // `viber watch RUN --terminal | head` is a normal way to stop.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
                Err(e) => {
                    eprintln!("viber: cannot write to stdout: {e}");
                    std::process::exit(1);
                }
            }
        }
        *next = end;
    }

    /// Reads from the gateway until step `step` has been printed up to its current size.
    async fn catch_up(&mut self, client: &Client, run_id: &str, step: u32) -> Result<(), Error> {
        loop {
            let offset = *self.next.get(&step).unwrap_or(&0);
            let r = client
                .request(
                    "run.terminal.read",
                    json!({"runId": run_id, "step": step, "offset": offset}),
                )
                .await?;
            let data = STANDARD
                .decode(r["data"].as_str().unwrap_or(""))
                .map_err(|e| Error::Failed(format!("bad terminal data from the gateway: {e}")))?;
            if data.is_empty() {
                return Ok(());
            }
            self.write(step, offset, &data);
        }
    }
}

/// Streams until the run ends and every byte of every pane log has been printed; returns
/// the run's exit code.
pub async fn stream(ctx: &Ctx, client: &mut Client, run_id: &str) -> Result<u8, Error> {
    client
        .request(
            "events.subscribe",
            json!({"runId": run_id, "terminal": true}),
        )
        .await?;
    let mut sink = Sink {
        json: ctx.json(),
        next: BTreeMap::new(),
    };
    // What was written before we subscribed.
    let s = super::run::get(client, run_id).await?;
    for st in &s.steps {
        sink.catch_up(client, run_id, st.index).await?;
    }
    let mut ended = s.status.is_terminal();
    while !ended {
        let ev = match client.next_incoming().await {
            Some(Incoming::Event(ev)) => ev,
            Some(Incoming::Closed { code, reason }) => {
                return Err(crate::client::ClientError::Closed { code, reason }.into());
            }
            None => break,
        };
        if ev.payload["runId"] != run_id {
            continue;
        }
        if ev.event == events::TERMINAL_OUTPUT {
            let step = ev.payload["step"].as_u64().unwrap_or(0) as u32;
            let offset = ev.payload["offset"].as_u64().unwrap_or(0);
            let data = STANDARD
                .decode(ev.payload["data"].as_str().unwrap_or(""))
                .unwrap_or_default();
            if offset > *sink.next.get(&step).unwrap_or(&0) {
                sink.catch_up(client, run_id, step).await?;
            }
            sink.write(step, offset, &data);
        } else if ev.event == events::RUN_STATUS {
            ended = ev.payload["exitCode"].is_u64();
        }
    }
    // The run ended: print whatever is left in every step's log.
    let s = super::run::get(client, run_id).await?;
    for st in &s.steps {
        sink.catch_up(client, run_id, st.index).await?;
    }
    Ok(s.status.exit_code())
}
