//! The sersync engine: configuration, watch, filter, coalesce, dispatch.

pub mod config;
