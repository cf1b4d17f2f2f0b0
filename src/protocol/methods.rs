//! Roles, scopes and the one method table: every method the gateway answers, with the
//! scope it requires. A method that is not in this table does not exist (`UNKNOWN_METHOD`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// People, the CLI, scripts, a board UI.
    Operator,
    /// A worker that executes runs.
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }

    /// Every scope a connection of this role could ever hold.
    pub fn all_scopes(self) -> &'static [Scope] {
        match self {
            Role::Operator => &[
                Scope::OperatorRead,
                Scope::OperatorWrite,
                Scope::OperatorApprovals,
                Scope::OperatorPairing,
                Scope::OperatorAdmin,
            ],
            Role::Node => &[Scope::NodeExec],
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "operator" => Ok(Role::Operator),
            "node" => Ok(Role::Node),
            _ => Err(format!("unknown role {s:?} (expected operator or node)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "operator.read")]
    OperatorRead,
    #[serde(rename = "operator.write")]
    OperatorWrite,
    #[serde(rename = "operator.approvals")]
    OperatorApprovals,
    #[serde(rename = "operator.pairing")]
    OperatorPairing,
    /// Implies every other operator scope.
    #[serde(rename = "operator.admin")]
    OperatorAdmin,
    #[serde(rename = "node.exec")]
    NodeExec,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::OperatorRead,
        Scope::OperatorWrite,
        Scope::OperatorApprovals,
        Scope::OperatorPairing,
        Scope::OperatorAdmin,
        Scope::NodeExec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OperatorRead => "operator.read",
            Scope::OperatorWrite => "operator.write",
            Scope::OperatorApprovals => "operator.approvals",
            Scope::OperatorPairing => "operator.pairing",
            Scope::OperatorAdmin => "operator.admin",
            Scope::NodeExec => "node.exec",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Scope::NodeExec => Role::Node,
            _ => Role::Operator,
        }
    }

    /// Whether holding `held` satisfies a requirement of `self`.
    pub fn is_satisfied_by(self, held: &[Scope]) -> bool {
        held.contains(&self)
            || (self.role() == Role::Operator && held.contains(&Scope::OperatorAdmin))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?} (known: {})", known.join(", "))
            })
    }
}

/// Expands `operator.admin` into every operator scope it implies, sorted and deduplicated.
pub fn expand(scopes: &[Scope]) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for &s in scopes {
        if s == Scope::OperatorAdmin {
            out.extend_from_slice(Role::Operator.all_scopes());
        } else {
            out.push(s);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The scopes a connection gets: what it asked for, within its role, and within what its
/// device was granted. Never more than either side.
pub fn effective_scopes(role: Role, requested: &[Scope], granted: &[Scope]) -> Vec<Scope> {
    let granted = expand(granted);
    expand(requested)
        .into_iter()
        .filter(|s| s.role() == role && granted.contains(s))
        .collect()
}

/// One entry of the method table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSpec {
    pub name: &'static str,
    pub scope: Scope,
    /// Side-effecting methods require `params.idempotencyKey`.
    pub side_effect: bool,
}

const fn m(name: &'static str, scope: Scope) -> MethodSpec {
    MethodSpec {
        name,
        scope,
        side_effect: false,
    }
}

/// A side-effecting method: it requires `params.idempotencyKey`.
const fn w(name: &'static str, scope: Scope) -> MethodSpec {
    MethodSpec {
        name,
        scope,
        side_effect: true,
    }
}

/// The method table. `connect` is not in it: it is only valid as the first frame.
pub const METHODS: &[MethodSpec] = &[
    m("health", Scope::OperatorRead),
    m("status", Scope::OperatorRead),
    m("system.presence", Scope::OperatorRead),
    m("config.get", Scope::OperatorAdmin),
    m("device.pair.list", Scope::OperatorPairing),
    w("device.pair.approve", Scope::OperatorPairing),
    w("device.pair.reject", Scope::OperatorPairing),
    w("device.pair.revoke", Scope::OperatorPairing),
    w("device.pair.rotate", Scope::OperatorPairing),
    m("device.list", Scope::OperatorPairing),
    w("run.start", Scope::OperatorWrite),
    m("run.get", Scope::OperatorRead),
    m("run.list", Scope::OperatorRead),
    w("run.control", Scope::OperatorWrite),
    m("run.terminal.read", Scope::OperatorRead),
    m("events.subscribe", Scope::OperatorRead),
    m("events.unsubscribe", Scope::OperatorRead),
    m("node.run.claim", Scope::NodeExec),
    m("node.run.event", Scope::NodeExec),
    m("node.terminal.output", Scope::NodeExec),
    m("node.run.sign", Scope::NodeExec),
    m("node.approval.request", Scope::NodeExec),
    w("chat.send", Scope::OperatorWrite),
    m("approval.list", Scope::OperatorApprovals),
    w("approval.resolve", Scope::OperatorApprovals),
];

pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|spec| spec.name == name)
}

pub fn method_names() -> Vec<String> {
    METHODS.iter().map(|spec| spec.name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_operator_scopes_but_not_node() {
        assert!(Scope::OperatorWrite.is_satisfied_by(&[Scope::OperatorAdmin]));
        assert!(!Scope::NodeExec.is_satisfied_by(&[Scope::OperatorAdmin]));
        assert!(!Scope::OperatorAdmin.is_satisfied_by(&[Scope::OperatorRead]));
    }

    #[test]
    fn asking_for_admin_never_yields_more_than_granted() {
        let got = effective_scopes(
            Role::Operator,
            &[Scope::OperatorAdmin],
            &[Scope::OperatorRead],
        );
        assert_eq!(got, vec![Scope::OperatorRead]);
        let got = effective_scopes(
            Role::Operator,
            &[Scope::OperatorRead],
            &[Scope::OperatorAdmin],
        );
        assert_eq!(got, vec![Scope::OperatorRead]);
        let got = effective_scopes(Role::Operator, &[Scope::NodeExec], &[Scope::NodeExec]);
        assert!(got.is_empty(), "a role never gets another role's scopes");
    }

    #[test]
    fn scope_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("operator.root".parse::<Scope>().is_err());
    }

    #[test]
    fn method_table_has_unique_names() {
        let mut names = method_names();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
