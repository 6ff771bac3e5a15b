//! `<filter>`: exclude regexes and temporary-file names.

use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::config::{FilterConfig, Pattern, DEFAULT_TEMP_PATTERNS};
use crate::filter::Matcher;
use sersync_plugin_sdk::config::attrs::{enabled, quoted, required, switch};

/// `<filter start>` with its `<exclude>`s, and `<filter><tempfiles>`.
pub fn filter(head: &ConfigNode) -> Result<FilterConfig, ConfigError> {
    let excludes = match enabled(Some(head), "filter") {
        Some(filter) => patterns(filter, "exclude")?,
        None => Vec::new(),
    };
    let tempfiles = head.child("filter").and_then(|f| f.child("tempfiles"));
    Ok(FilterConfig {
        excludes,
        temp_names: temp_names(tempfiles)?,
    })
}

/// `<tempfiles>`: off with `start="false"`, its `<pattern>`s when it has any, else the defaults.
fn temp_names(tempfiles: Option<&ConfigNode>) -> Result<Vec<Pattern>, ConfigError> {
    match tempfiles {
        Some(t) if !switch(Some(t), "start", true) => Ok(Vec::new()),
        Some(t) if t.child("pattern").is_some() => patterns(t, "pattern"),
        _ => Ok(default_temp_names()),
    }
}

/// [`DEFAULT_TEMP_PATTERNS`], compiled.
pub fn default_temp_names() -> Vec<Pattern> {
    DEFAULT_TEMP_PATTERNS
        .iter()
        .map(|source| Pattern {
            source: (*source).to_string(),
            matcher: Matcher::new(source).expect("the built-in temp-name patterns are valid"),
            position: None,
        })
        .collect()
}

/// Every `<child expression="…">` of `parent`, compiled.
fn patterns(parent: &ConfigNode, child: &str) -> Result<Vec<Pattern>, ConfigError> {
    parent.children_named(child).map(pattern).collect()
}

/// One `<… expression="REGEX">`, compiled; a bad regex is reported with the regex's own error.
fn pattern(node: &ConfigNode) -> Result<Pattern, ConfigError> {
    let example = format!("<{} expression=\"(.*)\\.svn\"/>", node.name);
    let source = required(node, "expression", &example)?;
    let attr = node.attribute("expression").expect("required() found it");
    let matcher = Matcher::new(source).map_err(|e| {
        ConfigError::at(
            attr.position,
            format!(
                "{}: not a valid regular expression:\n{e}",
                quoted(node, attr)
            ),
        )
        .with_hint(
            "expressions are Perl-style regexes matched against the whole path; \
             write a literal . as \\. and a literal ( as \\(",
        )
    })?;
    Ok(Pattern {
        source: source.to_string(),
        matcher,
        position: Some(node.position),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_as_bytes() {
        let svn = Matcher::new(r"(.*)\.svn").unwrap();
        assert!(svn.is_match(b"a/b.svn"));
        assert!(!svn.is_match(b"a/b.svn/c"));
        assert!(svn.is_match(b"\xff\n.svn"));
        assert!(Matcher::new("caf\u{e9}.*")
            .unwrap()
            .is_match("café~".as_bytes()));
    }

    #[test]
    fn an_expression_cannot_escape_its_anchors() {
        assert!(Matcher::new("a)|(b").is_err());
    }

    #[test]
    fn default_temp_names_compile_and_match() {
        let names = default_temp_names();
        let temp = |name: &[u8]| names.iter().any(|p| p.is_match(name));
        for name in [&b".a.txt.swp"[..], b"4913", b"x~", b"#x#", b".#x"] {
            assert!(temp(name), "{}", String::from_utf8_lossy(name));
        }
        for name in [&b"a.txt"[..], b".bashrc", b"49134", b".htaccess.backup"] {
            assert!(!temp(name), "{}", String::from_utf8_lossy(name));
        }
    }
}
