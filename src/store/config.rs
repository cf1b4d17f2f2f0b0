//! `config.yaml`: the user's settings. Strict on purpose: an unknown key is an error with
//! its line, because a typo that silently does nothing is worse than a refusal.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{StoreError, read_yaml};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub identity: IdentityConfig,
    pub gateway: GatewayConfig,
    pub pairing: PairingConfig,
    pub runs: RunsConfig,
    pub autonomy: AutonomyConfig,
    /// Budgets by name; `default` bounds every run, and a task's `budget` may only
    /// tighten it.
    pub budget_policies: std::collections::BTreeMap<String, crate::protocol::runs::Budget>,
    /// An OpenAI-compatible chat-completions endpoint; without it the scripted planner
    /// (the task's steps) is used.
    pub llm: Option<LlmConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutonomyConfig {
    /// always-ask | agent-decides | always-execute, when a task does not say.
    pub default_mode: crate::protocol::runs::Mode,
    /// How long an approval may wait before the run ends `blocked`.
    pub approval_timeout_secs: u64,
    pub allow: Vec<String>,
    pub ask: Vec<String>,
    pub deny: Vec<String>,
    /// Command prefixes agent-decides treats as risky; null = the built-in list.
    pub risky: Option<Vec<String>>,
}

impl Default for AutonomyConfig {
    fn default() -> Self {
        AutonomyConfig {
            default_mode: crate::protocol::runs::Mode::AgentDecides,
            approval_timeout_secs: 300,
            allow: Vec::new(),
            ask: Vec::new(),
            deny: Vec::new(),
            risky: None,
        }
    }
}

impl AutonomyConfig {
    pub fn rules(&self) -> crate::protocol::runs::PolicyRules {
        crate::protocol::runs::PolicyRules {
            allow: self.allow.clone(),
            ask: self.ask.clone(),
            deny: self.deny.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1 (Ollama)
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub price_per_mtok_in: f64,
    #[serde(default)]
    pub price_per_mtok_out: f64,
    /// Seconds to wait for one API answer.
    #[serde(default = "default_llm_timeout")]
    pub timeout_secs: u64,
}

fn default_llm_timeout() -> u64 {
    120
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// How many runs execute at once; the rest wait in the queue.
    pub concurrency: usize,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig { concurrency: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The name this device presents; defaults to the host name.
    pub name: Option<String>,
    /// Who the viber is, for the planner's context.
    pub persona: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the gateway listens on.
    pub bind: String,
    /// Interval of `tick` events; clients treat two missed ticks as a dead link.
    pub tick_interval_ms: u64,
    /// Largest frame accepted after the handshake.
    pub max_payload: usize,
    /// Bound of each connection's outgoing queue.
    pub max_buffered_bytes: usize,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:7878";

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bind: DEFAULT_BIND.into(),
            tick_interval_ms: 15_000,
            max_payload: 1024 * 1024,
            max_buffered_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairingConfig {
    /// Pair unknown devices that connect from this host without asking.
    pub auto_approve_local: bool,
}

impl Default for PairingConfig {
    fn default() -> Self {
        PairingConfig {
            auto_approve_local: true,
        }
    }
}

/// What `viber init` writes: every default spelled out, so a user sees what can be set.
pub const DEFAULT_CONFIG_YAML: &str = "\
# viber configuration. Unknown keys are an error, so a typo never goes unnoticed.
identity:
  name: null            # device name shown to the gateway; null = host name
  persona: null         # who this viber is, for the planner's context
gateway:
  bind: 127.0.0.1:7878  # a non-loopback address exposes the gateway: use a tunnel instead
  tick_interval_ms: 15000
  max_payload: 1048576
  max_buffered_bytes: 4194304
pairing:
  auto_approve_local: true   # false: local devices need approval too (shared hosts)
runs:
  concurrency: 2             # runs executing at once; the rest wait in the queue
autonomy:
  default_mode: agent-decides    # always-ask | agent-decides | always-execute
  approval_timeout_secs: 300     # unanswered approvals end the run `blocked` (exit 4)
  allow: []                      # command prefixes, e.g. [\"cargo test\", \"ls\"]
  ask: []
  deny: []                       # e.g. [\"rm -rf /\", \"git push --force\"]; deny always wins
  risky: null                    # prefixes agent-decides asks about; null = built-in list
budget_policies: {}              # e.g. {default: {max_steps: 50, max_wall_secs: 1800, max_tokens: 500000, max_cost_usd: 2.0}}
llm: null                        # e.g. {base_url: https://api.openai.com/v1, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY,
                                 #       price_per_mtok_in: 0.15, price_per_mtok_out: 0.6}
";

impl Config {
    /// Loads `path`; a missing file is the defaults, a bad one an error naming file:line.
    pub fn load(path: &Path) -> Result<Config, StoreError> {
        let config: Config = read_yaml(path)?.unwrap_or_default();
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), StoreError> {
        let invalid = |message: String| StoreError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        self.gateway.bind.parse::<SocketAddr>().map_err(|_| {
            invalid(format!(
                "gateway.bind {:?} is not an ADDRESS:PORT like 127.0.0.1:7878",
                self.gateway.bind
            ))
        })?;
        if !(10..=3_600_000).contains(&self.gateway.tick_interval_ms) {
            return Err(invalid(
                "gateway.tick_interval_ms must be between 10 and 3600000".into(),
            ));
        }
        if self.gateway.max_payload < crate::protocol::PRE_AUTH_MAX_FRAME {
            return Err(invalid(format!(
                "gateway.max_payload must be at least {} bytes",
                crate::protocol::PRE_AUTH_MAX_FRAME
            )));
        }
        if self.gateway.max_buffered_bytes < self.gateway.max_payload {
            return Err(invalid(
                "gateway.max_buffered_bytes must be at least gateway.max_payload".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_default_is_the_default() {
        let parsed: Config = serde_norway::from_str(DEFAULT_CONFIG_YAML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, "gateway:\n  bind: 127.0.0.1:1\n  tick_interval: 5\n").unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(err.contains("config.yaml:3:"), "{err}");
        assert!(err.contains("tick_interval"), "{err}");
    }

    #[test]
    fn bad_bind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(&p, "gateway:\n  bind: localhost\n").unwrap();
        assert!(
            Config::load(&p)
                .unwrap_err()
                .to_string()
                .contains("gateway.bind")
        );
    }
}
