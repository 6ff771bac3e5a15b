//! Reading one attribute: switches, required text, bounded numbers, durations.
//!
//! The toolkit is the SDK's (`sersync_plugin_sdk::config::attrs`), shared with every sink, so
//! that a value is written one way in the whole file and a mistake is worded one way. These
//! names are kept for the parsers here (and for `rsync.rs` until it moves to the rsync sink);
//! new code imports from the SDK directly.

pub use sersync_plugin_sdk::config::attrs::{
    child_switch, enabled, number_or, optional, quoted, required, required_number, spelled, switch,
    Bounds, COUNT, PORT, SECONDS,
};
