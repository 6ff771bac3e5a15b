//! One element of `confxml.xml`, as the engine hands it to the sink that owns it.
//!
//! The engine parses the file once (element and attribute names folded to lower case, as
//! sersync 2.5.4 matched them case-insensitively) and gives each built-in sink its own
//! `<plugin>` element as a [`ConfigNode`]. The node remembers where it stood in the file, so a
//! sink's complaint about its options names the line and column.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod attrs;
#[cfg(feature = "xml")]
pub mod xml;

/// A line and column in the configuration file, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// An attribute: lower-cased name, value as written (entities decoded), position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Lower-cased name.
    pub name: String,
    /// Value, with XML entities decoded.
    pub value: String,
    /// Where the attribute stands.
    pub position: Position,
}

/// An element: lower-cased name, attributes, child elements (text and comments are dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigNode {
    /// Lower-cased element name.
    pub name: String,
    /// Attributes in document order.
    pub attributes: Vec<Attribute>,
    /// Child elements in document order.
    pub children: Vec<ConfigNode>,
    /// Where the element's start tag stands.
    pub position: Position,
}

impl ConfigNode {
    /// The attribute `name` (give it in lower case), if present.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attribute(name).map(|a| a.value.as_str())
    }

    /// The value of attribute `name`, or an error naming the element when it is missing
    /// ([`attrs::required`] also refuses an empty one and shows an example).
    pub fn required_attr(&self, name: &str) -> Result<&str, ConfigError> {
        self.attr(name).ok_or_else(|| attrs::missing(self, name))
    }

    /// True only when attribute `name` is exactly `true` (sersync 2.5.4's rule for switches).
    pub fn flag(&self, name: &str) -> bool {
        self.attr(name) == Some("true")
    }

    /// Attribute `name` parsed as `T`; `Ok(None)` when absent, an error naming the attribute's
    /// position and `expected` when it does not parse.
    pub fn parse_attr<T: FromStr>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.attribute(name) {
            None => Ok(None),
            Some(a) => a.value.trim().parse::<T>().map(Some).map_err(|_| {
                ConfigError::at(
                    a.position,
                    format!(
                        "<{} {}=\"{}\">: expected {expected}",
                        self.name, a.name, a.value
                    ),
                )
            }),
        }
    }

    /// The first child element called `name` (give it in lower case).
    pub fn child(&self, name: &str) -> Option<&ConfigNode> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child element called `name`, in document order.
    pub fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ConfigNode> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// An error located at this element.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.position, message)
    }

    /// `<param name="…" value="…">` children as key/value pairs, in document order (the form
    /// in which third-party plugins receive their options).
    pub fn params(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.children_named("param")
            .map(|p| {
                Ok((
                    p.required_attr("name")?.to_string(),
                    p.attr("value").unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }
}

/// A configuration problem: where it is, what is wrong, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file, once known.
    pub file: Option<PathBuf>,
    /// Where in the file, when the problem has a place.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

impl ConfigError {
    /// A problem with no particular place in the file.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            position: None,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem at `position`.
    pub fn at(position: Position, message: impl Into<String>) -> Self {
        ConfigError {
            position: Some(position),
            ..ConfigError::new(message)
        }
    }

    /// Adds what the user should do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Records the file the problem is in (kept if already set).
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file.get_or_insert_with(|| file.to_path_buf());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.position) {
            (Some(file), Some(pos)) => write!(f, "{}:{pos}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(pos)) => write!(f, "line {}, column {}: ", pos.line, pos.column)?,
            (None, None) => {}
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> ConfigNode {
        ConfigNode {
            name: "deshost".into(),
            attributes: vec![Attribute {
                name: "port".into(),
                value: "80x".into(),
                position: Position { line: 3, column: 9 },
            }],
            children: vec![],
            position: Position { line: 3, column: 2 },
        }
    }

    #[test]
    fn parse_attr_error_names_attribute_and_position() {
        let err = node()
            .parse_attr::<u16>("port", "a port number (1-65535)")
            .unwrap_err();
        let err = err.in_file(Path::new("conf.xml"));
        assert_eq!(
            err.to_string(),
            "conf.xml:3:9: <deshost port=\"80x\">: expected a port number (1-65535)"
        );
    }

    #[test]
    fn missing_required_attr_names_element() {
        let err = node().required_attr("ip").unwrap_err();
        assert_eq!(err.position, Some(Position { line: 3, column: 2 }));
        assert!(err.message.contains("<deshost> needs the attribute ip="));
    }
}
