//! The sersync engine: configuration, watch, filter, coalesce, dispatch.

pub mod coalesce;
pub mod config;
pub mod dispatch;
pub mod filter;
pub mod watch;
