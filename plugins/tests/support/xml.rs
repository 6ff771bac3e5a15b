//! Reads confxml text into [`ConfigNode`]s the way the engine does: element and attribute names
//! folded to lower case, the positions of elements and attributes kept.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use sersync_plugin_sdk::config::Attribute;
use sersync_plugin_sdk::{ConfigNode, Position};

/// The document element of `xml`.
pub fn parse(xml: &str) -> ConfigNode {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<ConfigNode> = vec![ConfigNode::default()];
    loop {
        let start = reader.buffer_position() as usize;
        let event = reader.read_event().expect("well-formed XML");
        let tag = (start, reader.buffer_position() as usize);
        match event {
            Event::Start(e) => stack.push(node(&e, xml, tag)),
            Event::Empty(e) => {
                let n = node(&e, xml, tag);
                stack.last_mut().unwrap().children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(n);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    stack.pop().unwrap().children.remove(0)
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

/// The element `e`, whose tag spans `tag` (byte offsets) in `xml`; each attribute gets the
/// position of its name.
fn node(e: &BytesStart<'_>, xml: &str, tag: (usize, usize)) -> ConfigNode {
    let text = &xml[tag.0..tag.1];
    let element = position(xml, tag.0);
    ConfigNode {
        name: e.name().into_inner().to_ascii_lowercase(),
        attributes: e
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                let key = a.key.into_inner();
                let at = text
                    .match_indices(key)
                    .map(|(i, _)| i)
                    .find(|&i| {
                        text[..i].ends_with(char::is_whitespace)
                            && text[i + key.len()..].trim_start().starts_with('=')
                    })
                    .map_or(element, |i| position(xml, tag.0 + i));
                Attribute {
                    name: key.to_ascii_lowercase(),
                    value: a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("valid entities")
                        .into_owned(),
                    position: at,
                }
            })
            .collect(),
        children: Vec::new(),
        position: element,
    }
}

fn position(xml: &str, offset: usize) -> Position {
    let before = &xml[..offset.min(xml.len())];
    let skipped = xml[before.len()..].len() - xml[before.len()..].trim_start().len();
    let before = &xml[..before.len() + skipped];
    Position {
        line: before.matches('\n').count() as u32 + 1,
        column: (before.len() - before.rfind('\n').map_or(0, |i| i + 1)) as u32 + 1,
    }
}

/// `text` escaped for an attribute value in double quotes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}
