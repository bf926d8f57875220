#![doc = include_str!("../README.md")]

pub mod client;
pub mod infra;
pub mod inject;
pub mod invariants;
pub mod record;
pub mod snapshot;
pub mod suite;
pub mod trial;
pub mod workload;
