//! The sersync engine: configuration, watch, filter, coalesce, dispatch, and what the
//! binary and the tests build on (the CLI definition, the control endpoint, the progress
//! board). The daemon's own glue — detaching, signals, the supervisor loop, logging set-up,
//! sd_notify — lives with the binary (`main.rs`), not here.

#![deny(missing_docs)]

pub mod audit;
pub mod catchup;
pub mod cli;
pub mod coalesce;
pub mod config;
pub mod control;
pub mod dispatch;
pub mod engine;
pub mod faillog;
pub mod filter;
pub mod naming;
pub mod progress;
pub mod state_dir;
pub mod topology;
pub mod watch;
