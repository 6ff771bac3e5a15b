//! Support shared by the sink tests: the compliance harness every sink passes, peers on
//! loopback that record what they receive, and a small confxml reader.
//!
//! Each test binary uses a different part of it, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod compliance;
pub mod decode;
pub mod peers;
pub mod xml;

use std::path::Path;

use sersync_plugin_sdk::{ConfigNode, Sink, SinkContext, WatchId};

/// The lane context for the watch rooted at `root`.
pub fn context(root: &Path) -> SinkContext {
    SinkContext {
        watch: WatchId(0),
        root: root.to_path_buf(),
        filter: std::sync::Arc::new(sersync_plugin_sdk::sink::NoFilter),
    }
}

/// Configures the `<plugin>` `node` and starts its lane for `root`; panics on any error.
pub fn start(node: &ConfigNode, root: &Path) -> Box<dyn Sink> {
    sersync_plugins::configure_plugin(node)
        .expect("valid config")
        .start(&context(root))
        .expect("starts")
}
