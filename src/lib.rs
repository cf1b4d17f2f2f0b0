//! viber: run AI vibers on real machines under a person's control.
//!
//! The crate is layered downward only: `cmd` (one file per verb) uses `client` and
//! `gateway`, which use `protocol`, `store` and `identity`. `protocol` depends on serde
//! alone, so every party speaks the same frames by construction.
#![forbid(unsafe_code)]

pub mod agent;
pub mod client;
pub mod cmd;
pub mod error;
pub mod evidence;
pub mod gateway;
pub mod identity;
pub mod logging;
pub mod output;
pub mod protocol;
pub mod store;
pub mod terminal;

pub use error::Error;
