//! sersync's built-in sinks and its plugin loaders, all written against
//! [`sersync_plugin_sdk::Sink`].
//!
//! Each sink lives in a folder of its own. The engine never names a sink type: it asks
//! [`registry::configure_plugin`] for a [`SinkSpec`] from the sink's `<plugin>` element (or builds
//! the rsync spec from `<sersync><rsync>`) and starts one instance per lane with
//! [`SinkSpec::start`].

pub mod command;
mod common;
pub mod http;
pub mod refresh_cdn;
pub mod registry;
pub mod rsync;
pub mod socket;

pub use sersync_plugin_sdk as sdk;

pub use registry::{configure_plugin, SinkSpec};
