//! The sersync engine: configuration, watch, filter, coalesce, dispatch.

pub mod audit;
pub mod catchup;
pub mod cli;
pub mod coalesce;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatch;
pub mod engine;
pub mod faillog;
pub mod filter;
pub mod logging;
pub mod naming;
pub mod progress;
pub mod state_dir;
pub mod supervisor;
pub mod systemd;
pub mod topology;
pub mod watch;
