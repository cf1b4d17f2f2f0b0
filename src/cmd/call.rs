//! `viber call METHOD --params JSON`: any protocol method, for scripts and for poking at
//! the gateway. The answer's payload is printed as it came.

use serde_json::{Value, json};

use super::Ctx;
use crate::error::Error;
use crate::output;
use crate::protocol::Scope;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Method name, e.g. health, status, system.presence
    method: String,
    /// Params as a JSON object
    #[arg(long, short, value_name = "JSON", default_value = "{}")]
    params: String,
    /// Ask for fewer scopes than this device holds (comma-separated)
    #[arg(
        long,
        value_name = "SCOPES",
        value_delimiter = ',',
        default_value = "operator.admin"
    )]
    scopes: Vec<Scope>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let params: Value = serde_json::from_str(&args.params)
        .map_err(|e| Error::Usage(format!("--params is not valid JSON: {e}")))?;
    let client = ctx.connect(args.scopes).await?;
    let payload = client.request(&args.method, params).await?;
    client.close();
    if ctx.json() {
        output::json(&json!({
            "schema": "viber.call/v1",
            "method": args.method,
            "payload": payload,
        }));
    } else {
        output::json_pretty(&payload);
    }
    Ok(())
}
