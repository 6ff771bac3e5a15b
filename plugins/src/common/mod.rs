//! Pieces the built-in sinks share, so that each sink's folder holds only what is its own:
//! reading one attribute (`attrs`, which core's reading of `confxml.xml` uses too), reading a batch as a list of changed paths, option parsing (durations, hosts, regexes,
//! `<localpath>` selection, headers), TCP and HTTP plumbing with one error classification, and
//! the JSON form of an event.

pub mod attrs;
pub(crate) mod changes;
pub(crate) mod http;
pub(crate) mod json;
pub(crate) mod net;
pub(crate) mod options;
pub(crate) mod percent;

/// Renders raw bytes for a log line or an error message: printable ASCII as is, `\` as `\\`,
/// every other byte as `\xNN`, so that a file name with a newline or invalid UTF-8 stays on one
/// line and cannot forge log entries.
pub(crate) fn show(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

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
