//! From the bytes of `confxml.xml` to a tree of [`ConfigNode`]s (feature `xml`, host side
//! only: it is how the engine reads its file, and how a sink's tests read theirs).
//!
//! Only the element structure matters to sersync: element and attribute names are folded to
//! lower case (2.5.4 matched them case-insensitively), attribute values have their entities
//! decoded, and text, comments, processing instructions and the XML declaration are dropped.
//! Every element and attribute keeps the line and column it was written at.

use std::borrow::Cow;

use super::{Attribute, ConfigError, ConfigNode, Position};
use quick_xml::events::attributes::{AttrError, Attribute as XmlAttribute};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// The root element every configuration file has.
pub const ROOT: &str = "head";

/// How deeply elements may nest. sersync's own elements go four levels deep; the limit keeps
/// a pathological file from exhausting the stack when the tree is walked, cloned or dropped.
const MAX_DEPTH: usize = 64;

/// The file's text. Bytes that are valid UTF-8 are read as UTF-8; anything else is read as
/// Latin-1 (ISO-8859-1, which the shipped file declares), where every byte is one character,
/// so no file is ever refused for its encoding. A UTF-8 byte-order mark is dropped.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().copied().map(char::from).collect()),
    }
}

/// Parses `text` into the tree under its root element, which must be `<head>` ([`ROOT`]).
pub fn parse_tree(text: &str) -> Result<ConfigNode, ConfigError> {
    parse_tree_of(text, ROOT)
}

/// As [`parse_tree`] for a file whose root element is `<root_name>` (lower case), such as a
/// follower's `<follow>`.
pub fn parse_tree_of(text: &str, root_name: &str) -> Result<ConfigNode, ConfigError> {
    let lines = Lines::new(text);
    let mut reader = Reader::from_str(text);
    // End tags are matched below, case-insensitively like every other name.
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    let mut open: Vec<ConfigNode> = Vec::new();
    let mut root: Option<ConfigNode> = None;
    loop {
        let offset = to_usize(reader.buffer_position());
        let event = reader
            .read_event()
            .map_err(|e| syntax_error(&e, lines.position(to_usize(reader.error_position()))))?;
        match event {
            Event::Start(tag) => push_open(element(&tag, offset, &lines)?, &mut open)?,
            Event::Empty(tag) => {
                let node = element(&tag, offset, &lines)?;
                attach(node, &mut open, &mut root, root_name)?;
            }
            Event::End(tag) => {
                let name = tag.name().0.to_lowercase();
                let node = close(&name, &mut open, lines.position(offset))?;
                attach(node, &mut open, &mut root, root_name)?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(unclosed
            .error(format!(
                "malformed XML: <{}> is never closed",
                unclosed.name
            ))
            .with_hint(format!("add </{}> where the element ends", unclosed.name)));
    }
    root.ok_or_else(|| {
        ConfigError::new("the file has no XML element at all")
            .with_hint("a sersync configuration is a <head> element; see docs/config.md")
    })
}

/// An error quick-xml reports at `position`, with what to do about it where there is
/// something useful to say.
fn syntax_error(error: &quick_xml::Error, position: Position) -> ConfigError {
    let located = ConfigError::at(position, format!("malformed XML: {error}"));
    match error {
        quick_xml::Error::IllFormed(_) => {
            located.with_hint("every element is closed, either as <x/> or by a matching </x>")
        }
        quick_xml::Error::Syntax(_) => located.with_hint(
            "a tag ends with > (or />), a comment with -->, and attribute values are quoted",
        ),
        _ => located,
    }
}

/// Opens an element whose children follow, within [`MAX_DEPTH`].
fn push_open(node: ConfigNode, open: &mut Vec<ConfigNode>) -> Result<(), ConfigError> {
    if open.len() == MAX_DEPTH {
        return Err(node
            .error(format!(
                "elements are nested more than {MAX_DEPTH} deep here"
            ))
            .with_hint("is an end tag missing, or an element written <x> instead of <x/>?"));
    }
    open.push(node);
    Ok(())
}

/// The open element that the end tag `</name>` at `position` closes.
fn close(
    name: &str,
    open: &mut Vec<ConfigNode>,
    position: Position,
) -> Result<ConfigNode, ConfigError> {
    match open.pop() {
        Some(node) if node.name == name => Ok(node),
        Some(node) => Err(ConfigError::at(
            position,
            format!(
                "malformed XML: </{name}> where </{}> was expected",
                node.name
            ),
        )
        .with_hint(format!(
            "<{}> at {} is still open here",
            node.name, node.position
        ))),
        None => Err(ConfigError::at(
            position,
            format!("malformed XML: </{name}> closes nothing"),
        )),
    }
}

/// Puts a finished element under its parent, or makes it the root.
fn attach(
    node: ConfigNode,
    open: &mut [ConfigNode],
    root: &mut Option<ConfigNode>,
    root_name: &str,
) -> Result<(), ConfigError> {
    if let Some(parent) = open.last_mut() {
        parent.children.push(node);
        return Ok(());
    }
    if root.is_some() {
        return Err(node
            .error(format!("a second root element <{}>", node.name))
            .with_hint(format!(
                "everything belongs inside the one <{root_name}> element"
            )));
    }
    if node.name != root_name {
        return Err(node
            .error(format!(
                "the root element is <{}>, expected <{root_name}>",
                node.name
            ))
            .with_hint(if root_name == ROOT {
                "is this a sersync confxml.xml? Its outermost element is <head>".to_string()
            } else {
                format!("this file's outermost element is <{root_name}>")
            }));
    }
    *root = Some(node);
    Ok(())
}

/// A childless element from its start tag, which begins at byte `offset` (the `<`).
fn element(
    tag: &BytesStart<'_>,
    offset: usize,
    lines: &Lines<'_>,
) -> Result<ConfigNode, ConfigError> {
    // The tag's content starts right after the `<`; attribute offsets are relative to it.
    let content = &**tag;
    let content_offset = offset + 1;
    let name = tag.name().0.to_lowercase();
    let mut attributes: Vec<Attribute> = Vec::new();
    // Duplicates are found below, after folding: quick-xml's own check is case-sensitive.
    for attr in tag.attributes().with_checks(false) {
        let attr = attr.map_err(|e| attribute_syntax_error(&e, &name, content_offset, lines))?;
        let attr = attribute(&attr, content, content_offset, &name, lines)?;
        // Names are compared folded, so `start` and `Start` are the same attribute.
        if let Some(first) = attributes.iter().find(|a| a.name == attr.name) {
            return Err(ConfigError::at(
                attr.position,
                format!(
                    "<{name}> has the attribute {} twice (first at {})",
                    attr.name, first.position
                ),
            )
            .with_hint("names are case-insensitive; keep one of them"));
        }
        attributes.push(attr);
    }
    Ok(ConfigNode {
        name,
        attributes,
        children: Vec::new(),
        position: lines.position(offset),
    })
}

/// One attribute, its name folded and its value's entities decoded.
fn attribute(
    attr: &XmlAttribute<'_>,
    content: &str,
    content_offset: usize,
    element: &str,
    lines: &Lines<'_>,
) -> Result<Attribute, ConfigError> {
    // The key is a slice of `content`, so the distance between them is its offset in the tag.
    let key = attr.key.0;
    let position =
        lines.position(content_offset + (key.as_ptr() as usize - content.as_ptr() as usize));
    let name = key.to_lowercase();
    let value = attr
        .normalized_value(XmlVersion::Implicit1_0)
        .map_err(|e| {
            ConfigError::at(
                position,
                format!("<{element} {name}=…>: bad character reference: {e}"),
            )
            .with_hint("write & as &amp;, < as &lt; and \" as &quot; inside a value")
        })?
        .into_owned();
    Ok(Attribute {
        name,
        value,
        position,
    })
}

/// A malformed attribute (unquoted, duplicated, missing `=`), located in the file.
fn attribute_syntax_error(
    error: &AttrError,
    element: &str,
    content_offset: usize,
    lines: &Lines<'_>,
) -> ConfigError {
    let at = match *error {
        AttrError::ExpectedEq(at)
        | AttrError::ExpectedValue(at)
        | AttrError::UnquotedValue(at)
        | AttrError::ExpectedQuote(at, _)
        | AttrError::Duplicated(at, _) => at,
    };
    // quick-xml's text starts with "position N: ", a tag-relative offset the user cannot use.
    let text = error.to_string();
    let what = text
        .split_once(": ")
        .map_or(text.as_str(), |(_, rest)| rest);
    ConfigError::at(
        lines.position(content_offset + at),
        format!("malformed XML in <{element}>: {what}"),
    )
    .with_hint("attributes are written name=\"value\", each name once per element")
}

/// Byte offset to line and column (in characters), both from 1.
struct Lines<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Position {
            line: to_u32(line),
            column: to_u32(column + 1),
        }
    }
}

fn to_usize(offset: u64) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, column: u32) -> Position {
        Position { line, column }
    }

    #[test]
    fn names_are_folded_and_positions_kept() {
        let tree =
            parse_tree("<?xml version=\"1.0\"?>\n<HEAD>\n  <Debug Start=\"true\"/>\n</head>")
                .unwrap();
        assert_eq!(tree.name, "head");
        assert_eq!(tree.position, pos(2, 1));
        let debug = tree.child("debug").unwrap();
        assert_eq!(debug.position, pos(3, 3));
        let start = debug.attribute("start").unwrap();
        assert_eq!((start.value.as_str(), start.position), ("true", pos(3, 10)));
    }

    #[test]
    fn comments_and_text_are_dropped_and_entities_decoded() {
        let tree =
            parse_tree("<head>text<!-- <x/> --><a v=\"&lt;&amp;&#233;\">t</a></head>").unwrap();
        assert_eq!(tree.children.len(), 1);
        assert_eq!(tree.children[0].attr("v"), Some("<&é"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let tree = parse_tree("<head><é/><b x=\"1\"/></head>").unwrap();
        assert_eq!(tree.child("b").unwrap().position, pos(1, 11));
        assert_eq!(
            tree.child("b").unwrap().attribute("x").unwrap().position,
            pos(1, 14)
        );
    }

    #[test]
    fn latin1_bytes_are_read_as_latin1() {
        assert_eq!(decode(b"caf\xe9"), "café");
        assert_eq!(decode("café".as_bytes()), "café");
        assert_eq!(decode(b"\xEF\xBB\xBFx"), "x");
    }

    #[test]
    fn mismatched_end_tag_is_located() {
        let err = parse_tree("<head>\n  <a>\n  </b>\n</head>").unwrap_err();
        assert_eq!(err.message, "malformed XML: </b> where </a> was expected");
        assert_eq!(err.position, Some(pos(3, 3)), "{err}");
        assert_eq!(err.hint.as_deref(), Some("<a> at 2:3 is still open here"));
        let err = parse_tree("<head/>\n</head>").unwrap_err();
        assert_eq!(err.message, "malformed XML: </head> closes nothing");
    }

    #[test]
    fn unclosed_element_is_located() {
        let err = parse_tree("<head>\n  <a>\n").unwrap_err();
        assert!(
            err.message.contains("never closed") || err.message.starts_with("malformed XML"),
            "{err}"
        );
        assert!(err.position.is_some(), "{err}");
    }

    #[test]
    fn malformed_attribute_is_located() {
        let err = parse_tree("<head>\n <a x=1/>\n</head>").unwrap_err();
        assert_eq!(err.position, Some(pos(2, 7)), "{err}");
        assert!(err.message.contains("<a>"), "{err}");
        let err = parse_tree("<head>\n <a x=\"1\" X=\"2\"/>\n</head>").unwrap_err();
        assert_eq!(err.position, Some(pos(2, 11)), "{err}");
        assert!(
            err.message.contains("attribute x twice (first at 2:5)"),
            "{err}"
        );
    }

    #[test]
    fn nesting_is_limited() {
        let deep = "<head>".to_string() + &"<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        let err = parse_tree(&deep).unwrap_err();
        assert!(err.message.contains("nested more than 64 deep"), "{err}");
        let ok = "<head>".to_string()
            + &"<a>".repeat(MAX_DEPTH - 1)
            + &"</a>".repeat(MAX_DEPTH - 1)
            + "</head>";
        assert!(parse_tree(&ok).is_ok());
    }

    #[test]
    fn wrong_or_second_root_is_refused() {
        let err = parse_tree("<config/>").unwrap_err();
        assert_eq!(err.position, Some(pos(1, 1)));
        assert!(err.message.contains("expected <head>"), "{err}");
        let err = parse_tree("<head/>\n<head/>").unwrap_err();
        assert!(err.message.contains("second root"), "{err}");
        assert!(parse_tree("  ")
            .unwrap_err()
            .message
            .contains("no XML element"));
    }
}
