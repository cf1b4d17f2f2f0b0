//! `viber init`: create VIBER_HOME. Idempotent and never destructive: an existing key,
//! token or config is reported and left alone.

use serde_json::json;

use super::Ctx;
use crate::error::Error;
use crate::identity::DeviceKey;
use crate::output;
use crate::store::init;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> Result<(), Error> {
    let report = init::ensure(&ctx.home)?;
    let key = DeviceKey::load(&ctx.home.device_key())?;
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.init/v1",
            "home": ctx.home.root(),
            "created": report.created,
            "existing": report.existing,
            "deviceId": key.device_id(),
            "fingerprint": key.fingerprint(),
        }));
        return Ok(());
    }
    for p in &report.created {
        output::line(&format!("created  {p}"));
    }
    for p in &report.existing {
        output::line(&format!("exists   {p} (left unchanged)"));
    }
    output::line(&format!("device   {}", key.fingerprint()));
    if report.created.is_empty() {
        output::line("nothing to do: VIBER_HOME was already initialized");
    }
    Ok(())
}
