//! The contract every sersync sink is written against, built-in or third-party.
//!
//! - [`event`]: what the engine delivers — [`Event`]s grouped into a [`Batch`], with paths
//!   relative to their watch root and kept as raw bytes so that any file name survives.
//! - [`sink`]: the [`Sink`] trait a destination implements, and [`SinkError`], which tells the
//!   dispatcher whether a failed batch is worth retrying.
//! - [`json`]: the JSON form of an event that sersync's sinks and the example plugins write,
//!   without a JSON library ([`json::event_json`], [`json::batch_lines`]).
//! - [`config`]: [`ConfigNode`], one element of `confxml.xml` with its source position, which
//!   built-in sinks read their own options from, and [`ConfigError`]; [`config::attrs`], the
//!   one way every value in the file is read (switches, numbers, durations) and its mistakes
//!   worded; `config::xml` (feature `xml`, host side), the reader that makes the nodes.
//! - [`text`]: untrusted bytes and text made safe for one line of a log or a message.
//!
//! - [`abi`]: the C ABI of native plugins and the [`Plugin`] trait a third-party sink
//!   implements; [`export_sink!`] turns one into a shared library.
//! - `guest` (feature `guest`, for `wasm32-wasip2` only): the same for WASM components, with
//!   `export_wasm_sink!`. The WIT package is in `wit/plugin.wit`.
//!
//! Without features the crate has no dependencies: a plugin author pays nothing for it. (The
//! `xml` feature, for the host, adds quick-xml.)

#![deny(missing_docs)]

pub mod abi;
pub mod config;
pub mod event;
#[cfg(all(feature = "guest", target_family = "wasm"))]
pub mod guest;
pub mod json;
mod os_bytes;
pub mod sink;
pub mod text;

pub use abi::{log, Level, Plugin};

pub use config::{ConfigError, ConfigNode, Position};
pub use event::{Batch, Event, EventKind, RelPath, WatchId};
pub use sink::{ErrorClass, PathFilter, Sink, SinkContext, SinkError};
