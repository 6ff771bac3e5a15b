//! From a `<plugin>` element to a configured sink.

use std::fmt;
use std::path::PathBuf;

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::audit::Auditor;

/// A sink that has read and validated its configuration and can start one instance per lane.
pub trait SinkSpec: Send + Sync + fmt::Debug {
    /// The name lanes of this sink are known by in logs and status, e.g. `refreshCDN`.
    fn name(&self) -> String;

    /// Watch roots this sink's own configuration names (a plugin's `<localpath watch>`).
    /// Empty means the sink serves every `<sersync><localpath>`.
    fn own_watches(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// One human-readable line for `sersync --check`: where it sends and how.
    fn summary(&self) -> String;

    /// Starts an instance serving one lane (one watch).
    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;

    /// True when a lane may run several instances of this sink side by side, each
    /// delivering batches whose paths do not overlap (`<engine transfersPerRemote>`). Only
    /// sinks whose deliveries are independent say so; the default is one at a time.
    fn allows_parallel_deliveries(&self) -> bool {
        false
    }

    /// A `/bin/sh` command, with every word single-quoted, that applies `batch` by hand: what
    /// the `<failLog>` script records for a batch that failed. `None` for sinks that have no
    /// command-line equivalent (only rsync has one).
    fn replay_command(&self, batch: &Batch) -> Option<Vec<u8>> {
        let _ = batch;
        None
    }

    /// An instance that can tell what differs on the destination, for `<engine
    /// auditSeconds>`; `None` for sinks whose destination holds no state to compare (only
    /// rsync's does).
    fn auditor(&self, ctx: &SinkContext) -> Option<Result<Box<dyn Auditor>, SinkError>> {
        let _ = ctx;
        None
    }
}

/// The plugin names sersync knows without a `type`/`path` (compared case-insensitively).
pub const BUILT_IN_PLUGINS: &[&str] = &["command", "refreshCDN", "socket", "http"];

/// Reads a top-level `<plugin name="…">` element into a [`SinkSpec`].
///
/// An unknown name, or options the sink rejects, give an error located in the file.
pub fn configure_plugin(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    if let Some(spec) = crate::third_party::configure(node) {
        return spec;
    }
    let name = node.required_attr("name")?;
    match name.to_ascii_lowercase().as_str() {
        "command" => return crate::command::configure(node),
        "refreshcdn" => return crate::refresh_cdn::configure(node),
        "socket" => return crate::socket::configure(node),
        "http" => return crate::http::configure(node),
        _ => {}
    }
    Err(node
        .error(format!("unknown plugin name \"{name}\""))
        .with_hint(format!(
            "built-in plugins are {}; a third-party plugin needs type=\"dylib\" or type=\"wasm\" and path=\"FILE\"",
            BUILT_IN_PLUGINS.join(", ")
        )))
}
