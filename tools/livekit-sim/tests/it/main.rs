//! Integration tests: the sim runs in-process on port 0 and sends its webhooks to a local
//! receiver that records them.

mod support;

mod control;
mod faults;
mod lifecycle;
mod rooms_trait;
mod sdk_client;
mod tokens;
mod twirp;
mod webhooks;
