//! The CLI's error type. Each variant knows its exit code (DESIGN.md section 8), its short
//! machine code for `viber.error/v1`, and a hint for the person reading stderr.

use crate::client::ClientError;
use crate::gateway::instance::LockError;
use crate::protocol::ErrorCode;
use crate::store::StoreError;

/// Exit codes, the same for every verb.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const TAMPERED: u8 = 3;
    pub const BLOCKED: u8 = 4;
    pub const BUDGET: u8 = 5;
    pub const CANCELLED: u8 = 6;
    pub const GATEWAY: u8 = 7;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or input the user gave on the command line.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Input a user wrote (a task file, a goal) that cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// The verb already said everything; exit with this code and print nothing more.
    #[error("exit status {0}")]
    Exit(u8),
    /// The link to the gateway died (missed ticks).
    #[error("{0}")]
    LinkLost(String),
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::BadInput(_) => exit::USAGE,
            Error::Exit(code) => *code,
            Error::Store(StoreError::Io { .. }) => exit::FAILED,
            Error::Store(_) => exit::USAGE,
            Error::Client(ClientError::Rejected(e)) => match e.code {
                ErrorCode::InvalidRequest | ErrorCode::UnknownMethod => exit::USAGE,
                ErrorCode::Unauthorized
                | ErrorCode::PairingRequired
                | ErrorCode::NotPaired
                | ErrorCode::DeviceAuthInvalid
                | ErrorCode::ProtocolMismatch
                | ErrorCode::RateLimited
                | ErrorCode::Forbidden => exit::GATEWAY,
                _ => exit::FAILED,
            },
            Error::Client(_) | Error::LinkLost(_) => exit::GATEWAY,
            Error::Lock(LockError::AlreadyRunning { .. }) => exit::FAILED,
            Error::Lock(LockError::Store(_)) => exit::FAILED,
            Error::Failed(_) | Error::Io { .. } => exit::FAILED,
        }
    }

    /// Short machine-readable code for `viber.error/v1`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Usage(_) => "USAGE",
            Error::BadInput(_) => "BAD_INPUT",
            Error::Exit(_) => "EXIT",
            Error::Store(StoreError::Io { .. }) => "IO",
            Error::Store(_) => "BAD_FILE",
            Error::Client(ClientError::Rejected(e)) => e.code.as_str(),
            Error::Client(ClientError::Unreachable { .. }) => "UNREACHABLE",
            Error::Client(ClientError::Closed { .. }) => "CLOSED",
            Error::Client(ClientError::Timeout(_)) => "TIMEOUT",
            Error::Client(ClientError::Protocol(_)) => "PROTOCOL",
            Error::LinkLost(_) => "LINK_LOST",
            Error::Lock(LockError::AlreadyRunning { .. }) => "ALREADY_RUNNING",
            Error::Lock(LockError::Store(_)) => "IO",
            Error::Failed(_) => "FAILED",
            Error::Io { .. } => "IO",
        }
    }

    /// Protocol error details, when the gateway sent any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        match self {
            Error::Client(ClientError::Rejected(e)) => e.details.as_ref(),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Store(StoreError::Parse { .. } | StoreError::Invalid { .. }) => {
                "fix the file and try again; viber has not changed it".into()
            }
            Error::Client(ClientError::Unreachable { .. }) => {
                "start one with `viber gateway start`, or pass --gateway URL".into()
            }
            Error::Client(ClientError::Rejected(e)) => match e.code {
                ErrorCode::Unauthorized => {
                    "pass the gateway token with VIBER_GATEWAY_TOKEN (or --token), or pair this device with `viber pair`".into()
                }
                ErrorCode::PairingRequired => {
                    "an operator on the gateway host must approve this device (`viber pair`)".into()
                }
                ErrorCode::Forbidden => "this device lacks the scope; ask an operator to grant it".into(),
                ErrorCode::UnknownMethod => "`viber status --json` lists the gateway's methods under features".into(),
                ErrorCode::RateLimited => {
                    let secs = e.retry_after_ms.unwrap_or(0).div_ceil(1000);
                    format!("too many failures from this address; retry in {secs} s")
                }
                ErrorCode::ProtocolMismatch => "upgrade viber on the older side".into(),
                _ => return None,
            },
            Error::Lock(LockError::AlreadyRunning { .. }) => {
                "use the running gateway, or stop it first with `viber gateway stop`".into()
            }
            Error::LinkLost(_) => "check that the gateway still runs: `viber status`".into(),
            _ => return None,
        })
    }
}

/// The whole chain of an error, each cause once: a top-level message alone ("error
/// sending request") often hides the useful part ("Connection refused").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        src = inner.source();
    }
    s
}
