//! Logs go to stderr, always: stdout belongs to the verb's output (JSON with `--json`).
//! `RUST_LOG` wins; otherwise `-v` raises the level from the verb's default.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, default_level: &str) {
    let level = match verbose {
        0 => default_level,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,viber={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
