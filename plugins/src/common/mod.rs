//! Pieces the built-in sinks share, so that each sink's folder holds only what is its own:
//! reading a batch as a list of changed paths, option parsing (hosts, regexes, `<localpath>`
//! selection, headers; values themselves are read with the SDK's `config::attrs`), TCP and HTTP plumbing with one error classification, and
//! the JSON form of an event.

pub(crate) mod changes;
pub(crate) mod http;
pub(crate) mod json;
pub(crate) mod net;
pub(crate) mod options;
pub(crate) mod percent;

/// Raw bytes for a log line or an error message (the SDK's one escaping of bytes, the form
/// paths are shown in everywhere): a file name with a newline or invalid UTF-8 stays on one
/// line and cannot forge log entries.
pub(crate) use sersync_plugin_sdk::text::escape_bytes as show;

/// An element for unit tests: `name` with `attrs` and `children`, positions left at zero.
#[cfg(test)]
pub(crate) fn test_node(
    name: &str,
    attrs: &[(&str, &str)],
    children: Vec<sersync_plugin_sdk::ConfigNode>,
) -> sersync_plugin_sdk::ConfigNode {
    sersync_plugin_sdk::ConfigNode {
        name: name.into(),
        attributes: attrs
            .iter()
            .map(|(n, v)| sersync_plugin_sdk::config::Attribute {
                name: n.to_string(),
                value: v.to_string(),
                position: Default::default(),
            })
            .collect(),
        children,
        position: Default::default(),
    }
}
