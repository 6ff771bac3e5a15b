//! `<plugin>` elements: the top-level sections (kept raw for their sinks) and the
//! `<sersync><plugin start="true" name>` switches that enable them.

use sersync_plugin_sdk::{ConfigError, ConfigNode};
use sersync_plugins::registry::BUILT_IN_PLUGINS;

use std::time::Duration;

use crate::config::{PluginConfig, PluginOrder};
use crate::dispatch::{OnTimeout, OrderRule, Quorum};
use sersync_plugin_sdk::config::attrs::{attr_error, duration, required, Span, Unit};

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

/// `maxWait`: how long a change waits for the sinks a plugin runs after.
const MAX_WAIT: Span = Span {
    meaning: "how long a change waits for the sinks the plugin runs after",
    unit: Unit::Seconds,
    min: Duration::from_millis(1),
    max: Duration::from_secs(86_400),
};

/// The default `maxWait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// What runs after what: `after`, `quorum`, `maxWait`, `onTimeout` on each enabled
/// `<sersync><plugin>` switch. refreshCDN without `after` runs after rsync (2.5.4 purged
/// once its rsync call had returned); `after=""` (or `none`) turns ordering off. `after`
/// names `rsync` (every remote of `<sersync>`) or other enabled plugins, comma-separated.
pub fn ordering(
    sersync: Option<&ConfigNode>,
    sections: &[PluginConfig],
) -> Result<Vec<PluginOrder>, ConfigError> {
    let enabled_names = enabled(sersync, sections)?;
    let mut orders: Vec<PluginOrder> = Vec::new();
    let switches = sersync.into_iter().flat_map(|s| s.children_named("plugin"));
    for node in switches.filter(|n| n.flag("start")) {
        let plugin = resolve(node, sections)?;
        if orders.iter().any(|o| o.plugin == plugin) {
            continue;
        }
        let after: Vec<String> = match node.attr("after") {
            None if plugin == "refreshCDN" => vec!["rsync".to_string()],
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("none"))
                .map(|word| upstream_name(node, &plugin, word, &enabled_names))
                .collect::<Result<_, _>>()?,
        };
        if after.is_empty() {
            continue;
        }
        let quorum = match node.attr("quorum").map(str::trim) {
            None => Quorum::All,
            Some(q) if q.eq_ignore_ascii_case("all") => Quorum::All,
            Some(q) if q.eq_ignore_ascii_case("any") => Quorum::Any,
            Some(q) => match q.parse::<usize>() {
                Ok(n) if n >= 1 => Quorum::AtLeast(n),
                _ => {
                    return Err(attr_error(
                        node,
                        "quorum",
                        format!("<plugin quorum=\"{q}\">: not all, any or a count"),
                    )
                    .with_hint("quorum is all (the default), any, or how many remotes must have the change (1, 2, …)"))
                }
            },
        };
        let on_timeout = match node.attr("ontimeout").map(str::trim) {
            None => OnTimeout::Send,
            Some(v) if v.eq_ignore_ascii_case("send") => OnTimeout::Send,
            Some(v) if v.eq_ignore_ascii_case("wait") => OnTimeout::Wait,
            Some(v) => {
                return Err(attr_error(
                    node,
                    "ontimeout",
                    format!("<plugin onTimeout=\"{v}\">: not send or wait"),
                )
                .with_hint("onTimeout=\"send\" (the default) sends a change held past maxWait, with a warning; \"wait\" keeps it waiting"))
            }
        };
        let max_wait = duration(node, "maxwait", &MAX_WAIT)?.unwrap_or(DEFAULT_MAX_WAIT);
        orders.push(PluginOrder {
            plugin,
            after,
            rule: OrderRule {
                quorum,
                max_wait,
                on_timeout,
            },
        });
    }
    check_acyclic(sersync, &orders)?;
    Ok(orders)
}

/// One word of `after`: `rsync`, or another enabled plugin (in its own spelling).
fn upstream_name(
    node: &ConfigNode,
    plugin: &str,
    word: &str,
    enabled: &[String],
) -> Result<String, ConfigError> {
    if word.eq_ignore_ascii_case("rsync") {
        return Ok("rsync".to_string());
    }
    match enabled.iter().find(|e| e.eq_ignore_ascii_case(word)) {
        Some(name) if name == plugin => Err(attr_error(
            node,
            "after",
            format!("<plugin name=\"{plugin}\" after=\"{word}\">: a plugin cannot run after itself"),
        )
        .with_hint("after names rsync or another enabled plugin")),
        Some(name) => Ok(name.clone()),
        None => Err(attr_error(
            node,
            "after",
            format!("<plugin name=\"{plugin}\" after=\"{word}\">: {word} is neither rsync nor an enabled plugin"),
        )
        .with_hint(format!(
            "after names rsync or plugins enabled here: {}",
            enabled.join(", ")
        ))),
    }
}

/// Refuses `a after b` with `b after a` (or any longer loop): nothing could ever go.
fn check_acyclic(sersync: Option<&ConfigNode>, orders: &[PluginOrder]) -> Result<(), ConfigError> {
    for start in orders {
        let mut seen = vec![start.plugin.as_str()];
        let mut frontier: Vec<&str> = start.after.iter().map(String::as_str).collect();
        while let Some(name) = frontier.pop() {
            if name == start.plugin {
                let position =
                    sersync.map_or(sersync_plugin_sdk::Position::default(), |s| s.position);
                return Err(ConfigError::at(
                    position,
                    format!(
                        "plugins ordered in a loop: {} runs after itself through after=",
                        start.plugin
                    ),
                )
                .with_hint("remove one after= of the loop"));
            }
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            if let Some(o) = orders.iter().find(|o| o.plugin == name) {
                frontier.extend(o.after.iter().map(String::as_str));
            }
        }
    }
    Ok(())
}
