//! What native and WASM plugins have in common: the `<plugin type="dylib|wasm" path="FILE">`
//! element, its `<param>` pairs, and the dispatch on `type`.

use std::path::PathBuf;

use sersync_plugin_sdk::{ConfigError, ConfigNode, Level};

use crate::registry::SinkSpec;

/// Configures a third-party plugin when `node` has a `type` attribute; `None` when it has none
/// (a built-in plugin).
pub fn configure(node: &ConfigNode) -> Option<Result<Box<dyn SinkSpec>, ConfigError>> {
    let kind = node.attribute("type")?;
    Some(match kind.value.as_str() {
        "dylib" => crate::dylib::configure(node),
        #[cfg(feature = "wasm")]
        "wasm" => crate::wasm::configure(node),
        #[cfg(not(feature = "wasm"))]
        "wasm" => Err(ConfigError::at(
            kind.position,
            "this sersync was built without WASM plugin support",
        )
        .with_hint("rebuild with the cargo feature `wasm` of sersync-plugins (on by default)")),
        other => Err(ConfigError::at(
            kind.position,
            format!("<plugin type=\"{other}\">: unknown plugin type"),
        )
        .with_hint("type is \"dylib\" (a native shared library) or \"wasm\" (a WASM component)")),
    })
}

/// The parts of a third-party `<plugin>` element both loaders read.
#[derive(Clone, Debug)]
pub(crate) struct PluginFile {
    /// The `name` attribute: how logs and status call the plugin's lanes.
    pub name: String,
    /// The `path` attribute: the plugin file.
    pub path: PathBuf,
    /// The `<param name="…" value="…"/>` children, in document order.
    pub params: Vec<(String, String)>,
    /// The `<localpath watch="…"/>` children: watches the plugin serves (empty: all).
    pub watches: Vec<PathBuf>,
}

impl PluginFile {
    /// Reads the element; the plugin file must exist.
    pub fn from_node(node: &ConfigNode) -> Result<Self, ConfigError> {
        let name = node.required_attr("name")?.to_string();
        let path = PathBuf::from(node.required_attr("path")?);
        if !path.is_file() {
            let position = node.attribute("path").map_or(node.position, |a| a.position);
            return Err(ConfigError::at(
                position,
                format!("plugin \"{name}\": no such file {}", path.display()),
            )
            .with_hint(
                "path is the plugin file, absolute or relative to sersync's working directory",
            ));
        }
        let watches = node
            .children_named("localpath")
            .map(|w| w.required_attr("watch").map(PathBuf::from))
            .collect::<Result<_, _>>()?;
        Ok(PluginFile {
            name,
            path,
            params: node.params()?,
            watches,
        })
    }

    /// A configuration error about this plugin, at `node`, naming the file.
    pub fn error(&self, node: &ConfigNode, message: impl std::fmt::Display) -> ConfigError {
        node.error(format!(
            "plugin \"{}\" ({}): {message}",
            self.name,
            self.path.display()
        ))
    }
}

/// Longest log line kept from a plugin, in bytes.
const MAX_LOG: usize = 8 * 1024;

/// Writes a plugin's log line to sersync's log (target `sersync::plugin`, field `plugin`),
/// cut to 8 KiB; returns the line as written.
pub(crate) fn plugin_log(plugin: &str, level: Level, message: &str) -> String {
    let mut end = message.len().min(MAX_LOG);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    match level {
        Level::Trace => tracing::trace!(target: "sersync::plugin", plugin, "{message}"),
        Level::Debug => tracing::debug!(target: "sersync::plugin", plugin, "{message}"),
        Level::Info => tracing::info!(target: "sersync::plugin", plugin, "{message}"),
        Level::Warn => tracing::warn!(target: "sersync::plugin", plugin, "{message}"),
        Level::Error => tracing::error!(target: "sersync::plugin", plugin, "{message}"),
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::config::Attribute;
    use sersync_plugin_sdk::Position;

    fn plugin(attrs: &[(&str, &str)]) -> ConfigNode {
        ConfigNode {
            name: "plugin".into(),
            attributes: attrs
                .iter()
                .map(|(n, v)| Attribute {
                    name: n.to_string(),
                    value: v.to_string(),
                    position: Position { line: 7, column: 3 },
                })
                .collect(),
            children: vec![],
            position: Position { line: 7, column: 1 },
        }
    }

    #[test]
    fn without_type_it_is_a_built_in() {
        assert!(configure(&plugin(&[("name", "command")])).is_none());
    }

    #[test]
    fn unknown_type_names_the_choices() {
        let err = configure(&plugin(&[("name", "x"), ("type", "jar")]))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.position, Some(Position { line: 7, column: 3 }));
        assert!(err
            .to_string()
            .contains("<plugin type=\"jar\">: unknown plugin type"));
        assert!(err.hint.unwrap().contains("\"dylib\""));
    }

    #[cfg(not(feature = "wasm"))]
    #[test]
    fn wasm_without_the_feature_says_how_to_get_it() {
        let err = configure(&plugin(&[("name", "x"), ("type", "wasm"), ("path", "/x")]))
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("built without WASM plugin support"));
    }

    #[test]
    fn long_log_lines_are_cut_on_a_character_boundary() {
        // "a" then two-byte characters: byte MAX_LOG falls inside one of them.
        let line = plugin_log("p", Level::Info, &format!("a{}", "é".repeat(MAX_LOG)));
        assert_eq!(line.len(), MAX_LOG - 1);
        assert!(line.ends_with('é'));
    }
}
