//! Reads confxml text into [`ConfigNode`]s with the engine's own reader
//! (`sersync_plugin_sdk::config::xml`): names folded to lower case, positions kept, exactly as
//! the daemon hands a sink its section.

use sersync_plugin_sdk::config::xml::parse_tree;
use sersync_plugin_sdk::ConfigNode;

/// The `<head>` element of `xml`.
pub fn parse(xml: &str) -> ConfigNode {
    parse_tree(xml).unwrap_or_else(|e| panic!("malformed test XML: {e}"))
}

/// The top-level `<plugin name="…">` called `name` (case-insensitive) in `xml`.
pub fn plugin(xml: &str, name: &str) -> ConfigNode {
    parse(xml)
        .children
        .into_iter()
        .find(|c| {
            c.name == "plugin" && c.attr("name").is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .unwrap_or_else(|| panic!("no <plugin name=\"{name}\">"))
}

/// A `<head>` document holding `plugin` (the text of one `<plugin>` element).
pub fn plugin_xml(plugin: &str) -> ConfigNode {
    let xml = format!("<head version=\"2.5\">\n{plugin}\n</head>");
    parse(&xml).children.remove(0)
}

/// `text` escaped for an attribute value in double quotes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}
