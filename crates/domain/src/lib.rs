#![doc = include_str!("../README.md")]
// Everything here is read by other crates; an undocumented item is a rule left unexplained.
#![warn(missing_docs)]

// The enum macro must be defined before the modules that use it.
#[macro_use]
pub mod wire;

pub mod access;
pub mod call;
pub mod errors;
pub mod ids;
pub mod moderation;
pub mod roles;
pub mod rooms;
pub mod session;
pub mod stage;
pub mod transition;
pub mod validate;

pub use errors::ErrorCode;
pub use transition::InvalidTransition;
pub use wire::UnknownValue;
