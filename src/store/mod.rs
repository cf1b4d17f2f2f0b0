//! Everything durable lives in files under VIBER_HOME; this module owns their paths, their
//! formats and how they are written (temp + fsync + rename, 0600 secrets, 0700 dirs).
//!
//! A file a user wrote is never silently reset: a file that does not parse is an error that
//! names the file and line, and the file is left exactly as it was.

pub mod config;
pub mod devices;
pub mod fsutil;
pub mod init;
pub mod paths;
pub mod tokens;
pub mod trusted_keys;

pub use config::Config;
pub use paths::Home;

use std::path::PathBuf;

/// Errors reading or writing VIBER_HOME.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file exists but does not parse. Nothing was changed.
    #[error("{path}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl StoreError {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub fn yaml(path: impl Into<PathBuf>, err: serde_norway::Error) -> Self {
        let location = err.location().map(|l| (l.line(), l.column()));
        // serde_norway puts "at line X column Y" into the message too; keep one copy.
        let mut message = err.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        StoreError::Parse {
            path: path.into(),
            location,
            message,
        }
    }
}

/// Environment variables that hold secrets and must not reach panes or check commands:
/// the gateway token, and the LLM API key's variable when one is configured.
pub fn secret_env_vars(config: Option<&Config>) -> Vec<String> {
    let mut vars = vec!["VIBER_GATEWAY_TOKEN".to_string()];
    if let Some(name) = config
        .and_then(|c| c.llm.as_ref())
        .and_then(|l| l.api_key_env.clone())
    {
        vars.push(name);
    }
    vars
}

/// Writes `value` as YAML, atomically and 0600 (these files hold keys and token hashes).
pub fn write_yaml<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), StoreError> {
    let text = serde_norway::to_string(value).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(path, text.as_bytes(), 0o600)
}

/// Reads a YAML file into `T`; `Ok(None)` when it does not exist.
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<Option<T>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("cannot read", path, e)),
    };
    if text.trim().is_empty() {
        // An empty file is a valid "nothing yet", the same as `{}`.
        return serde_norway::from_str("{}")
            .map(Some)
            .map_err(|e| StoreError::yaml(path, e));
    }
    serde_norway::from_str(&text)
        .map(Some)
        .map_err(|e| StoreError::yaml(path, e))
}
