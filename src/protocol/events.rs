//! Event names, which of them may be dropped under back-pressure, and who receives them.

use super::methods::Scope;

pub const CONNECT_CHALLENGE: &str = "connect.challenge";
pub const TICK: &str = "tick";
pub const PRESENCE: &str = "presence";
pub const HEALTH: &str = "health";
pub const RUN_STATUS: &str = "run.status";
pub const RUN_PROGRESS: &str = "run.progress";
pub const TERMINAL_OUTPUT: &str = "terminal.output";
pub const APPROVAL_REQUESTED: &str = "approval.requested";
pub const APPROVAL_RESOLVED: &str = "approval.resolved";
pub const DEVICE_PAIR_REQUESTED: &str = "device.pair.requested";
pub const DEVICE_PAIR_RESOLVED: &str = "device.pair.resolved";
/// Gateway to node: control for the run the node executes (cancel, and later pause...).
pub const NODE_CONTROL: &str = "node.control";

pub const ALL: &[&str] = &[
    CONNECT_CHALLENGE,
    TICK,
    PRESENCE,
    HEALTH,
    RUN_STATUS,
    RUN_PROGRESS,
    TERMINAL_OUTPUT,
    APPROVAL_REQUESTED,
    APPROVAL_RESOLVED,
    DEVICE_PAIR_REQUESTED,
    DEVICE_PAIR_RESOLVED,
    NODE_CONTROL,
];

/// Droppable events may be discarded when a connection's queue is full; they still consume
/// a `seq`, so the client sees the gap. Losing any other event closes the connection.
pub fn is_droppable(event: &str) -> bool {
    matches!(event, TICK | PRESENCE | TERMINAL_OUTPUT)
}

/// The scope a connection needs to receive an event; `None` means every authenticated
/// connection gets it (the keep-alive `tick`).
pub fn required_scope(event: &str) -> Option<Scope> {
    match event {
        TICK => None,
        NODE_CONTROL => Some(Scope::NodeExec),
        DEVICE_PAIR_REQUESTED | DEVICE_PAIR_RESOLVED => Some(Scope::OperatorPairing),
        APPROVAL_REQUESTED | APPROVAL_RESOLVED => Some(Scope::OperatorApprovals),
        _ => Some(Scope::OperatorRead),
    }
}
