//! `<plugin>` elements: the top-level sections (kept raw for their sinks) and the
//! `<sersync><plugin start="true" name>` switches that enable them.

use sersync_plugin_sdk::{ConfigError, ConfigNode};
use sersync_plugins::registry::BUILT_IN_PLUGINS;

use crate::config::PluginConfig;
use sersync_plugin_sdk::config::attrs::required;

const SECTION_EXAMPLE: &str = "<plugin name=\"refreshCDN\">…</plugin>";

/// Every top-level `<plugin name>`, kept as written. Two sections may not share a name
/// (compared case-insensitively): `-m NAME` must find exactly one.
pub fn sections(head: &ConfigNode) -> Result<Vec<PluginConfig>, ConfigError> {
    let mut sections: Vec<PluginConfig> = Vec::new();
    for node in head.children_named("plugin") {
        let name = required(node, "name", SECTION_EXAMPLE)?;
        if let Some(first) = sections.iter().find(|s| s.name.eq_ignore_ascii_case(name)) {
            return Err(node
                .error(format!(
                    "a second <plugin name=\"{name}\"> section (the first is at {})",
                    first.node.position
                ))
                .with_hint("merge the two sections, or give one another name"));
        }
        sections.push(PluginConfig {
            name: name.to_string(),
            node: node.clone(),
        });
    }
    Ok(sections)
}

/// The names of `<sersync><plugin start="true" name>`, each a built-in plugin or a section
/// with a `type`, in file order, once each. Built-in names come back in their own spelling.
pub fn enabled(
    sersync: Option<&ConfigNode>,
    sections: &[PluginConfig],
) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    let switches = sersync.into_iter().flat_map(|s| s.children_named("plugin"));
    for node in switches.filter(|n| n.flag("start")) {
        let name = resolve(node, sections)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The plugin an enabled `<plugin name>` switch refers to.
fn resolve(node: &ConfigNode, sections: &[PluginConfig]) -> Result<String, ConfigError> {
    let name = required(node, "name", "<plugin start=\"true\" name=\"command\"/>")?;
    if let Some(built_in) = BUILT_IN_PLUGINS
        .iter()
        .find(|b| b.eq_ignore_ascii_case(name))
    {
        return Ok((*built_in).to_string());
    }
    let section = sections.iter().find(|s| s.name.eq_ignore_ascii_case(name));
    if let Some(section) = section.filter(|s| s.node.attr("type").is_some()) {
        return Ok(section.name.clone());
    }
    let position = node.attribute("name").map_or(node.position, |a| a.position);
    let hint = match section {
        Some(s) => format!(
            "the <plugin name=\"{}\"> section at {} names no built-in plugin, so it needs \
             type=\"dylib\" or type=\"wasm\" and path=\"FILE\"",
            s.name, s.node.position
        ),
        None => format!(
            "valid names: {}; a third-party plugin needs a top-level \
             <plugin name=\"{name}\" type=\"dylib|wasm\" path=\"FILE\"> section",
            valid_names(sections).join(", ")
        ),
    };
    Err(ConfigError::at(position, format!("unknown plugin \"{name}\"")).with_hint(hint))
}

/// Every name a `<sersync><plugin>` switch may use.
fn valid_names(sections: &[PluginConfig]) -> Vec<&str> {
    let third_party = sections
        .iter()
        .filter(|s| s.node.attr("type").is_some())
        .map(|s| s.name.as_str());
    BUILT_IN_PLUGINS
        .iter()
        .copied()
        .chain(third_party)
        .collect()
}
