//! Writing to stdout: JSON only when `--json`, and a closed pipe (`viber watch | head`) is a
//! normal way to stop, not an error.

use std::io::Write;

use serde::Serialize;

/// Prints one line; exits quietly with 0 when stdout's reader has gone away.
pub fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    let res = out
        .write_all(s.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("viber: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints `value` as one compact JSON line.
pub fn json<T: Serialize>(value: &T) {
    line(&serde_json::to_string(value).expect("JSON output serializes"));
}

/// Prints `value` as indented JSON (human mode of `viber call`).
pub fn json_pretty<T: Serialize>(value: &T) {
    line(&serde_json::to_string_pretty(value).expect("JSON output serializes"));
}
