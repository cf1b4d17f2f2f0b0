//! The layout of VIBER_HOME (DESIGN.md section 2), in one place.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// `--home`/`VIBER_HOME` when given, else `~/.openviber`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, String> {
        if let Some(p) = explicit {
            if p.as_os_str().is_empty() {
                return Err("VIBER_HOME is set but empty".into());
            }
            return Ok(Home::new(absolute(p)));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or("neither --home, VIBER_HOME nor HOME is set")?;
        Ok(Home::new(PathBuf::from(home).join(".openviber")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn device_key(&self) -> PathBuf {
        self.identity_dir().join("device_ed25519")
    }
    pub fn tokens(&self) -> PathBuf {
        self.identity_dir().join("tokens.yaml")
    }
    pub fn gateway_dir(&self) -> PathBuf {
        self.root.join("gateway")
    }
    pub fn gateway_lock(&self) -> PathBuf {
        self.gateway_dir().join("gateway.lock")
    }
    pub fn gateway_json(&self) -> PathBuf {
        self.gateway_dir().join("gateway.json")
    }
    pub fn gateway_log(&self) -> PathBuf {
        self.gateway_dir().join("gateway.log")
    }
    pub fn gateway_token(&self) -> PathBuf {
        self.gateway_dir().join("token")
    }
    pub fn devices(&self) -> PathBuf {
        self.gateway_dir().join("devices.yaml")
    }
    pub fn pending(&self) -> PathBuf {
        self.gateway_dir().join("pending.yaml")
    }
    pub fn trusted_keys(&self) -> PathBuf {
        self.gateway_dir().join("trusted_keys")
    }
    pub fn idempotency(&self) -> PathBuf {
        self.gateway_dir().join("idempotency.jsonl")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.gateway_dir().join("signing_ed25519")
    }
    pub fn agents(&self) -> PathBuf {
        self.root.join("agents")
    }
    pub fn workspace(&self) -> PathBuf {
        self.root.join("workspace")
    }
    pub fn memory(&self) -> PathBuf {
        self.root.join("memory")
    }
    pub fn tmux_socket(&self) -> PathBuf {
        self.root.join("tmux.sock")
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}
