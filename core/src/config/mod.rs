//! sersync's `confxml.xml`: parsed once at start into the typed [`Config`] the rest of the
//! engine uses. The XML shape stays inside this module.
//!
//! - `xml`: bytes → a tree of positioned [`ConfigNode`](sersync_plugin_sdk::ConfigNode)s.
//! - `parse`: tree → [`Config`], every value checked, every element optional.
//! - `checks`: what the configuration names on the file system.
//! - [`load()`], [`read`], [`parse_str`], [`parse_bytes`]: the entry points.
//! - [`Config::describe`]: the effective configuration, for `sersync --check`.
//!
//! The reference for users is `docs/config.md`.

mod checks;
mod control;
mod load;
mod model;
mod parse;
mod summary;
mod xml;

pub use control::TOKEN_ENV;
pub use load::{load, parse_bytes, parse_str, read};
pub use model::*;
pub use parse::control as parse_control;
