//! `viber node`: the worker process for one run. The gateway starts it; people do not
//! normally type this, but it is an ordinary verb so it can be run and debugged by hand.

use super::Ctx;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to execute
    #[arg(long, value_name = "RUN")]
    run: String,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    crate::agent::worker::run(ctx.home.clone(), args.run, ctx.global.gateway.clone()).await
}
