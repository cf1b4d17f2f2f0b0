//! The agent side of a run: task files, the durable session log and the state folded from
//! it, and the worker loop that a `viber node` process executes.

pub mod llm;
pub mod planner;
pub mod policy;
pub mod session;
pub mod task;
pub mod worker;
