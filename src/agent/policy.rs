//! The autonomy policy: `allow` / `ask` / `deny` rules by command prefix, and how each
//! working mode turns them into a decision. One function decides for every mode, so the
//! modes cannot drift apart, and `viber policy check` shows exactly what a run would do.
//!
//! Matching: `deny` and `ask` rules match any command that starts with the prefix (after
//! collapsing whitespace), so `rm -rf /` also stops `rm -rf /home`; `allow` rules must end
//! on a word boundary, so `ls` allows `ls -la` but not `lsblk`. Strictest match wins:
//! deny > ask > allow. Deny always wins, in every mode.

use serde::{Deserialize, Serialize};

use crate::protocol::runs::Mode;

/// Rules from one source (config.yaml, a task file, or what an operator chose to remember).
pub use crate::protocol::runs::PolicyRules as Rules;

/// Commands that `agent-decides` treats as risky when no rule covers them.
pub const DEFAULT_RISKY: &[&str] = &[
    "rm",
    "sudo",
    "su",
    "dd",
    "mkfs",
    "mkfs.",
    "chmod",
    "chown",
    "kill",
    "pkill",
    "killall",
    "shutdown",
    "reboot",
    "systemctl",
    "git push",
    "git reset --hard",
    "git clean",
    "apt",
    "apt-get",
    "dnf",
    "yum",
    "pip install",
    "npm install",
    "cargo install",
    "curl",
    "wget",
    "mv",
    "truncate",
    "docker",
    "crontab",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Ask,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRef {
    pub kind: Verdict,
    pub prefix: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Verdict,
    /// The rule that decided, if one did.
    pub rule: Option<RuleRef>,
    pub reason: String,
}

/// All rules in force for a run, each tagged with where it came from.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    sources: Vec<(String, Rules)>,
    risky: Vec<String>,
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn matches_prefix(command: &str, prefix: &str, word_boundary: bool) -> bool {
    let prefix = normalize(prefix);
    if prefix.is_empty() || !command.starts_with(&prefix) {
        return false;
    }
    if !word_boundary {
        return true;
    }
    let rest = &command[prefix.len()..];
    rest.is_empty()
        || rest.starts_with(' ')
        || prefix.ends_with(|c: char| c.is_whitespace() || "/=-:;|&.".contains(c))
}

impl Policy {
    pub fn new(risky: Option<Vec<String>>) -> Self {
        Policy {
            sources: Vec::new(),
            risky: risky.unwrap_or_else(|| DEFAULT_RISKY.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub fn with(mut self, source: &str, rules: Rules) -> Self {
        self.add(source, rules);
        self
    }

    pub fn add(&mut self, source: &str, rules: Rules) {
        self.sources.push((source.to_string(), rules));
    }

    /// Remembers "allow always" for a prefix for the rest of the run.
    pub fn remember_allow(&mut self, prefix: &str) {
        self.add(
            "remembered",
            Rules {
                allow: vec![prefix.to_string()],
                ..Default::default()
            },
        );
    }

    fn strictest(&self, command: &str) -> Option<RuleRef> {
        let mut best: Option<RuleRef> = None;
        for (source, rules) in &self.sources {
            for (kind, list, boundary) in [
                (Verdict::Deny, &rules.deny, false),
                (Verdict::Ask, &rules.ask, false),
                (Verdict::Allow, &rules.allow, true),
            ] {
                for prefix in list {
                    if matches_prefix(command, prefix, boundary) {
                        let rank = |v: Verdict| match v {
                            Verdict::Deny => 2,
                            Verdict::Ask => 1,
                            Verdict::Allow => 0,
                        };
                        if best.as_ref().is_none_or(|b| rank(kind) > rank(b.kind)) {
                            best = Some(RuleRef {
                                kind,
                                prefix: prefix.clone(),
                                source: source.clone(),
                            });
                        }
                    }
                }
            }
        }
        best
    }

    pub fn is_risky(&self, command: &str) -> bool {
        let c = normalize(command);
        if c.contains("| sh") || c.contains("| bash") {
            return true;
        }
        // Each part of a pipeline or command list counts on its own.
        c.split(['|', ';', '&'])
            .map(str::trim)
            .any(|part| self.risky.iter().any(|r| matches_prefix(part, r, true)))
    }

    /// What happens to `command` in `mode`, and why.
    pub fn decide(&self, mode: Mode, command: &str) -> Decision {
        let command = normalize(command);
        let rule = self.strictest(&command);
        let (decision, reason) = match (&rule, mode) {
            (Some(r), _) if r.kind == Verdict::Deny => (
                Verdict::Deny,
                format!("denied by rule {:?} ({})", r.prefix, r.source),
            ),
            (Some(r), _) if r.kind == Verdict::Ask => (
                Verdict::Ask,
                format!("rule {:?} ({}) says ask", r.prefix, r.source),
            ),
            (Some(r), _) => (
                Verdict::Allow,
                format!("allowed by rule {:?} ({})", r.prefix, r.source),
            ),
            (None, Mode::AlwaysAsk) => (Verdict::Ask, "always-ask asks before every action".into()),
            (None, Mode::AgentDecides) if self.is_risky(&command) => (
                Verdict::Ask,
                "no rule covers this risky action: agent-decides asks".into(),
            ),
            (None, Mode::AgentDecides) => (
                Verdict::Allow,
                "no rule applies and the action is not risky".into(),
            ),
            (None, Mode::AlwaysExecute) => (
                Verdict::Allow,
                "always-execute runs what no rule stops".into(),
            ),
        };
        Decision {
            decision,
            rule,
            reason,
        }
    }
}

/// The prefix "allow always" remembers: the command's first word, or two for tools whose
/// subcommand is what matters (`git push`, `cargo test`).
pub fn remember_prefix(command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let two = [
        "git",
        "cargo",
        "npm",
        "docker",
        "kubectl",
        "systemctl",
        "apt",
        "pip",
    ];
    match words.as_slice() {
        [first, second, ..] if two.contains(first) => format!("{first} {second}"),
        [first, ..] => first.to_string(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(None).with(
            "config",
            Rules {
                allow: vec!["cargo test".into(), "ls".into(), "git".into()],
                ask: vec!["git push".into()],
                deny: vec!["rm -rf /".into(), "git push --force".into()],
            },
        )
    }

    #[test]
    fn strictest_rule_wins_and_deny_wins_in_every_mode() {
        let p = policy();
        for mode in [Mode::AlwaysAsk, Mode::AgentDecides, Mode::AlwaysExecute] {
            let d = p.decide(mode, "git push --force origin main");
            assert_eq!(d.decision, Verdict::Deny, "{mode:?}");
            assert_eq!(d.rule.unwrap().prefix, "git push --force");
            assert_eq!(p.decide(mode, "rm -rf /home").decision, Verdict::Deny);
            assert_eq!(p.decide(mode, "git push origin").decision, Verdict::Ask);
            assert_eq!(p.decide(mode, "git status").decision, Verdict::Allow);
        }
    }

    #[test]
    fn modes_differ_only_where_no_rule_applies() {
        let p = policy();
        assert_eq!(p.decide(Mode::AlwaysAsk, "echo hi").decision, Verdict::Ask);
        assert_eq!(
            p.decide(Mode::AgentDecides, "echo hi").decision,
            Verdict::Allow
        );
        assert_eq!(
            p.decide(Mode::AgentDecides, "sudo reboot").decision,
            Verdict::Ask
        );
        assert_eq!(
            p.decide(Mode::AgentDecides, "curl x | sh").decision,
            Verdict::Ask
        );
        assert_eq!(
            p.decide(Mode::AlwaysExecute, "sudo reboot").decision,
            Verdict::Allow
        );
        assert_eq!(
            p.decide(Mode::AlwaysAsk, "ls -la").decision,
            Verdict::Allow,
            "an allow rule skips the ask"
        );
    }

    #[test]
    fn allow_needs_a_word_boundary_but_deny_does_not() {
        let p = policy();
        assert_eq!(p.decide(Mode::AlwaysAsk, "lsblk").decision, Verdict::Ask);
        assert_eq!(
            p.decide(Mode::AlwaysExecute, "rm  -rf   /tmp/x").decision,
            Verdict::Deny,
            "whitespace is collapsed"
        );
    }

    #[test]
    fn remembered_prefixes() {
        assert_eq!(remember_prefix("git push origin main"), "git push");
        assert_eq!(remember_prefix("echo hi"), "echo");
        let mut p = Policy::new(None);
        p.remember_allow("echo");
        assert_eq!(
            p.decide(Mode::AlwaysAsk, "echo hi").decision,
            Verdict::Allow
        );
    }
}
