//! THE wire protocol: frames, handshake payloads, the method table with its scopes, event
//! names and error codes.
//!
//! Everything that crosses the WebSocket is defined here and nowhere else, so the gateway,
//! the node worker and every CLI verb agree by construction. This module depends on serde
//! only: it knows shapes and rules, not sockets, keys or files.

pub mod error;
pub mod events;
pub mod frame;
pub mod handshake;
pub mod methods;
pub mod runs;

pub use error::{ErrorCode, ErrorShape};
pub use frame::{EventFrame, Frame, Request, Response};
pub use handshake::{
    AuthParams, Challenge, ClientInfo, ClientMode, ConnectParams, DeviceProof, HelloOk, Policy,
};
pub use methods::{Role, Scope};

/// The viber protocol version; raised only on a breaking change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted before the handshake completes.
pub const PRE_AUTH_MAX_FRAME: usize = 64 * 1024;

/// How long a client may take to send `connect` after the challenge.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Largest allowed distance between `device.signedAt` and the server clock.
pub const MAX_SIGNATURE_SKEW_MS: u64 = 120_000;

/// WebSocket close codes the gateway uses.
pub mod close {
    /// The gateway is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol version mismatch or malformed framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: the protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Auth, pairing, pre-auth violations, revocation, slow consumer.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}
