//! Support shared by the sink tests: the compliance harness every sink passes, peers on
//! loopback that record what they receive, and a small confxml reader.
//!
//! Each test binary uses a different part of it, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod compliance;
pub mod decode;
pub use sersync_tests::peers;
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

/// Checks that each `(xml, needle)` — the text of one `<plugin>` element — fails to configure
/// with an error that contains `needle` and points at line 2 (where [`xml::plugin_xml`] puts it).
pub fn assert_config_errors<X: AsRef<str>>(cases: &[(X, &str)]) {
    for (xml, needle) in cases {
        let xml = xml.as_ref();
        let err = match sersync_plugins::configure_plugin(&xml::plugin_xml(xml)) {
            Ok(spec) => panic!("{xml}: accepted as {spec:?}"),
            Err(e) => e,
        };
        assert!(err.to_string().contains(needle), "{xml}: {err}");
        assert!(err.position.is_some_and(|p| p.line == 2), "{xml}: {err:?}");
    }
}

/// Checks that `xml` (the text of one `<plugin>` element) fails to configure with an error
/// pointing exactly at the first occurrence of `at` in it (e.g. `port="`, an attribute).
pub fn assert_error_at(xml: &str, at: &str) {
    let err = sersync_plugins::configure_plugin(&xml::plugin_xml(xml)).unwrap_err();
    let column = xml.find(at).expect("`at` is in the xml") as u32 + 1;
    assert_eq!(
        err.position,
        Some(sersync_plugin_sdk::Position { line: 2, column }),
        "{xml}: {err}"
    );
}

/// Configures the `<plugin>` `node` and starts its lane for `root`; panics on any error.
pub fn start(node: &ConfigNode, root: &Path) -> Box<dyn Sink> {
    sersync_plugins::configure_plugin(node)
        .expect("valid config")
        .start(&context(root))
        .expect("starts")
}
