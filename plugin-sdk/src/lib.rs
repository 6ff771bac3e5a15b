//! The contract every sersync sink is written against, built-in or third-party.
//!
//! - [`event`]: what the engine delivers — [`Event`]s grouped into a [`Batch`], with paths
//!   relative to their watch root and kept as raw bytes so that any file name survives.
//! - [`sink`]: the [`Sink`] trait a destination implements, and [`SinkError`], which tells the
//!   dispatcher whether a failed batch is worth retrying.
//! - [`config`]: [`ConfigNode`], one element of `confxml.xml` with its source position, which
//!   built-in sinks read their own options from, and [`ConfigError`].
//!
//! The crate has no dependencies: a plugin author pays nothing for it.

pub mod config;
pub mod event;
pub mod sink;

pub use config::{ConfigError, ConfigNode, Position};
pub use event::{Batch, Event, EventKind, RelPath, WatchId};
pub use sink::{ErrorClass, PathFilter, Sink, SinkContext, SinkError};
