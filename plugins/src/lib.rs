//! sersync's built-in sinks and its plugin loaders, all written against
//! [`sersync_plugin_sdk::Sink`].
//!
//! Each sink lives in a folder of its own. The engine never names a sink type: it asks
//! [`registry::configure_plugin`] for a [`SinkSpec`] from the sink's `<plugin>` element (or builds
//! the rsync spec from `<sersync><rsync>`) and starts one instance per lane with
//! [`SinkSpec::start`].
//!
//! Third-party plugins (`<plugin type="dylib|wasm" path="FILE">`) are loaded by [`dylib`]
//! (native shared libraries, through the SDK's C ABI) and [`wasm`] (WASM components, through
//! wasmtime; cargo feature `wasm`, on by default).

pub mod audit;
pub mod command;
mod common;
pub mod dylib;
pub mod http;
pub mod refresh_cdn;
pub mod registry;
pub mod rsync;
pub mod socket;
mod third_party;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use sersync_plugin_sdk as sdk;

pub use registry::{configure_plugin, SinkSpec};
