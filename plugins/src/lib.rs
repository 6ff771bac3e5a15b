//! sersync's built-in sinks and its plugin loaders, all written against
//! [`sersync_plugin_sdk::Sink`].
//!
//! Each sink lives in a folder of its own. The engine never names a sink type: it asks
//! [`registry::configure_plugin`] for a [`SinkSpec`] from the sink's `<plugin>` element, and
//! [`registry::configure_sersync`] for the sinks `<sersync>` itself configures (rsync, one per
//! `<remote>`), and starts one instance per lane with [`SinkSpec::start`]. What core needs to
//! know about a sink is a capability of its spec (full syncs, a failLog command, parallel
//! deliveries, progress), never its type: the built-in sink modules (rsync, command,
//! refreshCDN, socket, http, nats) are private to this crate, and only the registry, the SDK types,
//! [`audit`], [`progress`], the change stream's format ([`stream`]) and the third-party loaders are public. Naming a sink from outside fails to
//! compile, and this doctest fails if one becomes public again:
//!
//! ```compile_fail
//! use sersync_plugins::rsync::RsyncSpec;
//! ```
//!
//! Third-party plugins (`<plugin type="dylib|wasm" path="FILE">`) are loaded by [`dylib`]
//! (native shared libraries, through the SDK's C ABI) and [`wasm`] (WASM components, through
//! wasmtime; cargo feature `wasm`, on by default).

#![deny(missing_docs)]

pub mod audit;
mod command;
mod common;
pub mod dylib;
mod http;
mod nats;
pub mod progress;
mod refresh_cdn;
pub mod registry;
mod rsync;
mod socket;
pub mod stream;
mod third_party;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use sersync_plugin_sdk as sdk;

pub use registry::{
    configure_plugin, configure_sersync, sink_counters, SersyncNodes, SersyncSinks, SinkCounter,
    SinkSetup, SinkSpec,
};
