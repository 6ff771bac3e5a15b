//! Reading one attribute of a positioned config element: switches, required text, bounded
//! numbers. Messages spell element and attribute names the way sersync's documentation writes
//! them, although the tree keeps them folded to lower case. Shared by core's reading of
//! `confxml.xml` and the built-in sinks that read their own part of it.

use sersync_plugin_sdk::config::Attribute;
use sersync_plugin_sdk::{ConfigError, ConfigNode};

/// The documented spelling of a folded element or attribute name.
pub fn spelled(name: &str) -> &str {
    const MIXED_CASE: &[&str] = &[
        "fileSystem",
        "createFolder",
        "createFile",
        "closeWrite",
        "moveFrom",
        "moveTo",
        "commonParams",
        "userDefinedPort",
        "failLog",
        "timeToExecute",
        "settleMs",
        "maxDelayMs",
        "maxPending",
        "retryInitialMs",
        "retryMaxMs",
        "stateDir",
        "transfersPerRemote",
        "auditSeconds",
    ];
    MIXED_CASE
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(name)
}

/// `<element attr="value">`, as the user wrote it (names in documented spelling).
pub fn quoted(node: &ConfigNode, attr: &Attribute) -> String {
    format!(
        "<{} {}=\"{}\">",
        spelled(&node.name),
        spelled(&attr.name),
        attr.value
    )
}

/// A switch: on only when the attribute is exactly `true`; `default` when the element or
/// the attribute is missing.
pub fn switch(node: Option<&ConfigNode>, attr: &str, default: bool) -> bool {
    node.and_then(|n| n.attr(attr))
        .map_or(default, |value| value == "true")
}

/// `<parent><child start="…">` as a switch (see [`switch`]).
pub fn child_switch(parent: Option<&ConfigNode>, child: &str, default: bool) -> bool {
    switch(parent.and_then(|p| p.child(child)), "start", default)
}

/// The element `<parent><child start="true">`, when it is there and switched on.
pub fn enabled<'n>(parent: Option<&'n ConfigNode>, child: &str) -> Option<&'n ConfigNode> {
    parent
        .and_then(|p| p.child(child))
        .filter(|c| c.flag("start"))
}

/// A non-empty attribute the element cannot do without. `example` shows a correct element.
pub fn required<'n>(
    node: &'n ConfigNode,
    attr: &str,
    example: &str,
) -> Result<&'n str, ConfigError> {
    match node.attribute(attr) {
        None => Err(node
            .error(format!(
                "<{}> needs the attribute {}=\"…\"",
                spelled(&node.name),
                spelled(attr)
            ))
            .with_hint(format!("for example {example}"))),
        Some(a) if a.value.trim().is_empty() => Err(ConfigError::at(
            a.position,
            format!("{}: {} is empty", quoted(node, a), spelled(attr)),
        )
        .with_hint(format!("for example {example}"))),
        Some(a) => Ok(&a.value),
    }
}

/// What a number attribute means and which values it may take.
pub struct Bounds {
    /// E.g. "a TCP port".
    pub meaning: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

/// A TCP port.
pub const PORT: Bounds = Bounds {
    meaning: "a TCP port",
    min: 1,
    max: 65_535,
};

/// An rsync `--timeout` in seconds (0: none).
pub const SECONDS: Bounds = Bounds {
    meaning: "a number of seconds",
    min: 0,
    max: u32::MAX as u64,
};

/// Attribute `attr` as a whole number within `bounds`; `Ok(None)` when absent.
pub fn number(node: &ConfigNode, attr: &str, bounds: &Bounds) -> Result<Option<u64>, ConfigError> {
    let Some(a) = node.attribute(attr) else {
        return Ok(None);
    };
    let hint = format!(
        "{} is {}: a whole number from {} to {}",
        spelled(attr),
        bounds.meaning,
        bounds.min,
        bounds.max
    );
    let problem = match a.value.trim().parse::<i128>() {
        Err(_) => format!("\"{}\" is not a whole number", a.value),
        Ok(n) if n < i128::from(bounds.min) || n > i128::from(bounds.max) => {
            format!("{n} is out of range")
        }
        Ok(n) => return Ok(Some(n as u64)),
    };
    Err(ConfigError::at(a.position, format!("{}: {problem}", quoted(node, a))).with_hint(hint))
}

/// A number the element cannot do without (see [`required`] and [`number`]).
pub fn required_number(
    node: &ConfigNode,
    attr: &str,
    bounds: &Bounds,
    example: &str,
) -> Result<u64, ConfigError> {
    required(node, attr, example)?;
    Ok(number(node, attr, bounds)?.expect("required() found it"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::Position;

    fn node(attr: &str, value: &str) -> ConfigNode {
        ConfigNode {
            name: "userdefinedport".into(),
            attributes: vec![Attribute {
                name: attr.into(),
                value: value.into(),
                position: Position { line: 4, column: 7 },
            }],
            ..ConfigNode::default()
        }
    }

    #[test]
    fn switches_are_on_only_for_exactly_true() {
        assert!(switch(Some(&node("start", "true")), "start", false));
        assert!(!switch(Some(&node("start", "True")), "start", true));
        assert!(!switch(Some(&node("start", "yes")), "start", true));
        assert!(switch(Some(&node("other", "false")), "start", true));
        assert!(!switch(None, "start", false));
    }

    #[test]
    fn numbers_are_checked_for_form_and_range() {
        assert_eq!(
            number(&node("port", " 874 "), "port", &PORT).unwrap(),
            Some(874)
        );
        assert_eq!(number(&node("x", "1"), "port", &PORT).unwrap(), None);
        let err = number(&node("port", "87x"), "port", &PORT).unwrap_err();
        assert_eq!(
            err.message,
            "<userDefinedPort port=\"87x\">: \"87x\" is not a whole number"
        );
        assert_eq!(err.position, Some(Position { line: 4, column: 7 }));
        let err = number(&node("port", "70000"), "port", &PORT).unwrap_err();
        assert!(err.message.ends_with("70000 is out of range"), "{err}");
        assert_eq!(
            err.hint.as_deref(),
            Some("port is a TCP port: a whole number from 1 to 65535")
        );
        assert!(number(&node("port", "-1"), "port", &PORT).is_err());
    }

    #[test]
    fn required_refuses_missing_and_empty() {
        let err = required(&node("x", ""), "port", "<e port=\"1\"/>").unwrap_err();
        assert_eq!(
            err.message,
            "<userDefinedPort> needs the attribute port=\"…\""
        );
        let err = required(&node("port", " "), "port", "<e port=\"1\"/>").unwrap_err();
        assert!(err.message.ends_with("port is empty"), "{err}");
    }
}
