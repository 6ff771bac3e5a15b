//! What native and WASM plugins have in common: the `<plugin type="dylib|wasm" path="FILE">`
//! element, its `<param>` pairs, and the dispatch on `type`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use sersync_plugin_sdk::text::breaks_line;
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

/// Longest error message kept from a plugin, in bytes, after escaping: what reaches the log
/// (on every retry) and `/status`.
pub(crate) const MAX_ERROR: usize = 4 * 1024;

/// Longest log line kept from a plugin, in bytes, after escaping.
const MAX_LOG: usize = 8 * 1024;

/// A plugin's text (an error message or a log line, any bytes) as one printable line of at
/// most `max` bytes: invalid UTF-8 becomes U+FFFD; control characters (newline, ESC, …) and
/// the characters that reorder or break a terminal's line ([`breaks_line`]) are escaped as Rust does (`\n`,
/// `\u{1b}`), so that no plugin can forge a log line; what does not fit is cut, and the line
/// ends with `… (N bytes cut)`. Reads at most `max + 4` bytes of `raw`, however long it is.
pub(crate) fn plugin_text(raw: &[u8], max: usize) -> String {
    // Escaping never shortens a character: past `max` bytes (and a split character) nothing
    // more can be shown.
    let head = &raw[..raw.len().min(max + 4)];
    let mut text = String::with_capacity(head.len().min(max));
    let mut shown = 0;
    for chunk in head.utf8_chunks() {
        let invalid = (!chunk.invalid().is_empty()).then_some(('\u{fffd}', chunk.invalid().len()));
        for (c, len) in chunk
            .valid()
            .chars()
            .map(|c| (c, c.len_utf8()))
            .chain(invalid)
        {
            let fits = if breaks_line(c) {
                let escape = c.escape_default();
                text.len() + escape.len() <= max && {
                    text.extend(escape);
                    true
                }
            } else {
                text.len() + c.len_utf8() <= max && {
                    text.push(c);
                    true
                }
            };
            if !fits {
                return format!("{text}… ({} bytes cut)", raw.len() - shown);
            }
            shown += len;
        }
    }
    if shown < raw.len() {
        text = format!("{text}… ({} bytes cut)", raw.len() - shown);
    }
    text
}

/// Bytes of log a plugin may write in a burst.
const LOG_BURST: f64 = 64.0 * 1024.0;
/// Bytes of log a plugin may write per second, on average.
const LOG_RATE: f64 = 16.0 * 1024.0;
/// What a line costs beyond its text: the time, level, target and plugin name sersync writes.
const LINE_COST: usize = 64;

/// Where one plugin's log lines go: sersync's log (target `sersync::plugin`, field
/// `plugin`), each line made printable and cut by [`plugin_text`], within a budget (a token
/// bucket of [`LOG_BURST`] bytes filled at [`LOG_RATE`] per second, shared by the plugin's
/// lanes). Lines over the budget are dropped and counted; the next line within it is preceded
/// by one saying how many were.
#[derive(Debug)]
pub(crate) struct PluginLog {
    name: String,
    budget: Mutex<Budget>,
}

/// The token bucket of a [`PluginLog`].
#[derive(Debug)]
struct Budget {
    /// Bytes the plugin may log now.
    tokens: f64,
    /// When `tokens` was last filled.
    filled: Instant,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

impl PluginLog {
    /// The log of the plugin called `name`, with a full budget.
    pub(crate) fn new(name: &str) -> Self {
        PluginLog {
            name: name.to_string(),
            budget: Mutex::new(Budget {
                tokens: LOG_BURST,
                filled: Instant::now(),
                dropped: 0,
            }),
        }
    }

    /// Writes the plugin's line `raw` at `level` if the budget allows (and sersync's log
    /// takes that level at all: lines nobody sees cost nothing).
    pub(crate) fn log(&self, level: Level, raw: &[u8]) {
        if !enabled(level) {
            return;
        }
        let line = plugin_text(raw, MAX_LOG);
        let dropped = {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(budget.filled).as_secs_f64() * LOG_RATE;
            budget.tokens = (budget.tokens + refill).min(LOG_BURST);
            budget.filled = now;
            let cost = (line.len() + LINE_COST) as f64;
            if budget.tokens < cost {
                budget.dropped += 1;
                return;
            }
            budget.tokens -= cost;
            std::mem::take(&mut budget.dropped)
        };
        let plugin = self.name.as_str();
        if dropped > 0 {
            tracing::warn!(target: "sersync::plugin", plugin, "plugin {plugin}: {dropped} log lines dropped (over its budget of {} KiB a second)", LOG_RATE as u64 / 1024);
        }
        match level {
            Level::Trace => tracing::trace!(target: "sersync::plugin", plugin, "{line}"),
            Level::Debug => tracing::debug!(target: "sersync::plugin", plugin, "{line}"),
            Level::Info => tracing::info!(target: "sersync::plugin", plugin, "{line}"),
            Level::Warn => tracing::warn!(target: "sersync::plugin", plugin, "{line}"),
            Level::Error => tracing::error!(target: "sersync::plugin", plugin, "{line}"),
        }
    }
}

/// True when sersync's log takes plugin lines of `level`.
fn enabled(level: Level) -> bool {
    match level {
        Level::Trace => tracing::enabled!(target: "sersync::plugin", tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: "sersync::plugin", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "sersync::plugin", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "sersync::plugin", tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: "sersync::plugin", tracing::Level::ERROR),
    }
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
    fn short_clean_text_is_kept_as_it_is() {
        assert_eq!(plugin_text("peer down: é".as_bytes(), 64), "peer down: é");
    }

    #[test]
    fn controls_and_line_breaking_marks_are_escaped() {
        let text = plugin_text(b"a\nb\r\x1b[31m\tc\xe2\x80\xa8d\xe2\x80\xaee", 64);
        assert_eq!(text, "a\\nb\\r\\u{1b}[31m\\tc\\u{2028}d\\u{202e}e");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(plugin_text(b"bad\xffname", 64), "bad\u{fffd}name");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_how_much() {
        // "a" then two-byte characters: byte 16 falls inside one of them.
        let raw = format!("a{}", "é".repeat(100));
        let text = plugin_text(raw.as_bytes(), 16);
        assert_eq!(text, format!("a{}… (186 bytes cut)", "é".repeat(7)));
        // Escapes count as what they are written as, and are never split.
        let text = plugin_text(&[b'\n'; 10], 5);
        assert_eq!(text, "\\n\\n… (8 bytes cut)");
    }

    #[test]
    fn a_cut_split_character_is_not_shown_as_invalid() {
        // 15 ASCII bytes, then a 4-byte character cut by the read-ahead of max + 4 bytes.
        let raw = format!("{}🦀🦀", "a".repeat(15));
        assert_eq!(
            plugin_text(raw.as_bytes(), 16),
            format!("{}… (8 bytes cut)", "a".repeat(15))
        );
    }
}
