//! From the bytes of `confxml.xml` to a tree of [`ConfigNode`]s: the SDK's reader (feature
//! `xml`), the one the built-in sinks' tests read their sections with too.
//!
//! [`ConfigNode`]: sersync_plugin_sdk::ConfigNode

pub use sersync_plugin_sdk::config::xml::{decode, parse_tree};
