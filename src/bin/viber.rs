//! The `viber` binary: parse, dispatch, map the error to its exit code. Nothing else.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use viber::cmd::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let daemon = cli.command.is_daemon();
    viber::logging::init(cli.global.verbose, if daemon { "info" } else { "warn" });
    let runtime = if daemon {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        // Client verbs are short-lived: one thread starts faster and is plenty.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("viber: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(viber::cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(viber::Error::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("viber: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            if json {
                let mut obj = serde_json::json!({
                    "schema": "viber.error/v1",
                    "code": e.code(),
                    "message": e.to_string(),
                    "exitCode": e.exit_code(),
                });
                if let Some(d) = e.details() {
                    obj["details"] = d.clone();
                }
                viber::output::json(&obj);
            }
            ExitCode::from(e.exit_code())
        }
    }
}
