//! Which paths are never watched nor synced.
//!
//! One rule for the initial walk, for events and for the excludes rsync is given: a path is
//! excluded when an `<exclude expression>` regex matches the **whole relative path** (no
//! leading `/`; `info` is the directory `info` at the watch root, `info/x` a file in it), or
//! when a temporary-file pattern matches its **last component**. The contents of an excluded
//! directory are never visited, so they are excluded too.

//!
//! Most excludes in long, generated lists are plain names: a path (`static/cache`), a suffix
//! (`(.*)\.log`), a prefix (`tmp/(.*)`). Those are compared literally, through hash tables, so
//! a million of them cost a few lookups per path and no regex compilation at all; only
//! expressions that really are regexes are compiled and tried one by one.

use std::collections::{BTreeSet, HashMap};

use regex::bytes::{Regex, RegexBuilder};
use sersync_plugin_sdk::{PathFilter, RelPath};

use crate::config::{FilterConfig, Pattern};

/// What one pattern matches, always the whole name.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Anything ending with these bytes (`(.*)LITERAL`).
    Suffix(Vec<u8>),
    /// Anything starting with these bytes (`LITERAL(.*)`).
    Prefix(Vec<u8>),
    /// A regex, anchored (`^(?:…)$`).
    Regex(Regex),
}

impl Matcher {
    /// Reads a config expression, matched against the whole name (anchored at both ends), on
    /// raw bytes (`.` is any byte, newline included, so names that are not UTF-8 match too).
    /// A plain name, with at most a `(.*)` or `.*` at one end, becomes a literal comparison.
    pub fn new(source: &str) -> Result<Matcher, regex::Error> {
        if let Some(literal) = literal(source) {
            return Ok(literal);
        }
        let build = |pattern: &str| {
            RegexBuilder::new(pattern)
                .unicode(false)
                .dot_matches_new_line(true)
                .build()
        };
        // Checked alone first: an expression like `a)|(b` would otherwise close the anchoring
        // group and match unanchored, and the error's caret would point into our wrapper.
        build(source)?;
        Ok(Matcher::Regex(build(&format!("^(?:{source})$"))?))
    }

    /// True when it matches all of `name`.
    pub fn is_match(&self, name: &[u8]) -> bool {
        match self {
            Matcher::Exact(lit) => name == lit.as_slice(),
            Matcher::Suffix(lit) => name.ends_with(lit),
            Matcher::Prefix(lit) => name.starts_with(lit),
            Matcher::Regex(regex) => regex.is_match(name),
        }
    }
}

impl Pattern {
    /// True when the pattern matches all of `name`.
    pub fn is_match(&self, name: &[u8]) -> bool {
        self.matcher.is_match(name)
    }
}

/// One piece of an expression, as far as [`literal`] understands it.
enum Piece {
    /// A character that matches itself (its UTF-8 bytes: without Unicode mode, `é` matches
    /// exactly those).
    Char(char),
    /// `.*` or `(.*)`: any bytes.
    Any,
}

/// `source` as a literal [`Matcher`], when it is one: plain characters and escaped
/// punctuation (`\.`), with a `.*` or `(.*)` at most at one end; a leading `^` and a trailing
/// `$` are no-ops under the anchoring. Anything else (`*` after a character, classes, groups,
/// flags, `\d`, …) is `None`: a regex.
fn literal(source: &str) -> Option<Matcher> {
    let source = source.strip_prefix('^').unwrap_or(source);
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if rest == "$" {
            break;
        }
        if let Some(after) = rest
            .strip_prefix("(.*)")
            .or_else(|| rest.strip_prefix(".*"))
        {
            pieces.push(Piece::Any);
            rest = after;
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                // `\<` and `\>` are word boundaries, not the characters.
                let escaped = rest
                    .chars()
                    .next()
                    .filter(|c| c.is_ascii_punctuation() && !matches!(c, '<' | '>'))?;
                rest = &rest[1..];
                pieces.push(Piece::Char(escaped));
            }
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                return None
            }
            c => pieces.push(Piece::Char(c)),
        }
    }
    let any_first = matches!(pieces.first(), Some(Piece::Any));
    let any_last = pieces.len() > 1 && matches!(pieces.last(), Some(Piece::Any));
    let inner = &pieces[usize::from(any_first)..pieces.len() - usize::from(any_last)];
    let mut bytes = Vec::new();
    for piece in inner {
        let Piece::Char(c) = piece else {
            return None;
        };
        bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    match (any_first, any_last) {
        _ if bytes.is_empty() => None,
        (false, false) => Some(Matcher::Exact(bytes)),
        (true, false) => Some(Matcher::Suffix(bytes)),
        (false, true) => Some(Matcher::Prefix(bytes)),
        (true, true) => None,
    }
}

/// The compiled `<filter>` rules and temporary-name patterns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    excludes: Vec<Pattern>,
    index: Index,
    temp_names: Vec<Pattern>,
}

/// The excludes sorted by kind, each literal mapped to the first exclude (in file order)
/// that is that literal.
#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<Vec<u8>, usize>,
    suffixes: Affixes,
    prefixes: Affixes,
    /// Positions of the regex excludes, in file order.
    regexes: Vec<usize>,
}

/// Literal suffixes or prefixes, and the lengths they come in (a path is looked up once per
/// distinct length, not once per literal).
#[derive(Debug, Clone, Default)]
struct Affixes {
    first: HashMap<Vec<u8>, usize>,
    lengths: BTreeSet<usize>,
}

impl Affixes {
    fn insert(&mut self, literal: &[u8], position: usize) {
        self.lengths.insert(literal.len());
        self.first.entry(literal.to_vec()).or_insert(position);
    }

    /// The first exclude whose literal `cut(length)` of the path is.
    fn first_match<'p>(&self, path: &'p [u8], cut: impl Fn(usize) -> &'p [u8]) -> Option<usize> {
        self.lengths
            .iter()
            .take_while(|&&len| len <= path.len())
            .filter_map(|&len| self.first.get(cut(len)).copied())
            .min()
    }
}

impl Index {
    fn new(excludes: &[Pattern]) -> Index {
        let mut index = Index::default();
        for (position, pattern) in excludes.iter().enumerate() {
            match &pattern.matcher {
                Matcher::Exact(lit) => {
                    index.exact.entry(lit.clone()).or_insert(position);
                }
                Matcher::Suffix(lit) => index.suffixes.insert(lit, position),
                Matcher::Prefix(lit) => index.prefixes.insert(lit, position),
                Matcher::Regex(_) => index.regexes.push(position),
            }
        }
        index
    }

    /// The position of the first exclude (in file order) that matches `path`.
    fn first_match(&self, excludes: &[Pattern], path: &[u8]) -> Option<usize> {
        let literal = [
            self.exact.get(path).copied(),
            self.suffixes
                .first_match(path, |len| &path[path.len() - len..]),
            self.prefixes.first_match(path, |len| &path[..len]),
        ]
        .into_iter()
        .flatten()
        .min();
        // Only regexes written before the first literal match can come first.
        let regex = self
            .regexes
            .iter()
            .copied()
            .take_while(|&position| literal.is_none_or(|l| position < l))
            .find(|&position| excludes[position].is_match(path));
        regex.or(literal)
    }
}

impl Filter {
    /// The rules of `config`.
    pub fn new(config: &FilterConfig) -> Self {
        Filter {
            excludes: config.excludes.clone(),
            index: Index::new(&config.excludes),
            temp_names: config.temp_names.clone(),
        }
    }

    /// The first rule that excludes `path`, for logs.
    pub fn excluding_rule(&self, path: &RelPath) -> Option<&Pattern> {
        if path.is_root() {
            return None;
        }
        self.index
            .first_match(&self.excludes, path.as_bytes())
            .map(|position| &self.excludes[position])
            .or_else(|| {
                self.temp_names
                    .iter()
                    .find(|p| p.is_match(path.file_name()))
            })
    }
}

impl PathFilter for Filter {
    fn is_excluded(&self, path: &RelPath, _is_dir: bool) -> bool {
        self.excluding_rule(path).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(source: &str) -> Pattern {
        Pattern {
            source: source.to_string(),
            matcher: Matcher::new(source).unwrap(),
            position: None,
        }
    }

    fn filter() -> Filter {
        Filter::new(&FilterConfig {
            excludes: vec![pattern(r"(.*)\.svn"), pattern("^info/*")],
            temp_names: crate::config::DEFAULT_TEMP_PATTERNS
                .iter()
                .map(|p| pattern(p))
                .collect(),
        })
    }

    /// The regex the crate would build for `source`, bypassing the literal fast path.
    fn as_regex(source: &str) -> Regex {
        RegexBuilder::new(&format!("^(?:{source})$"))
            .unicode(false)
            .dot_matches_new_line(true)
            .build()
            .unwrap()
    }

    #[test]
    fn plain_names_become_literals_and_the_rest_regexes() {
        let kind = |source: &str| match Matcher::new(source).unwrap() {
            Matcher::Exact(l) => format!("exact {}", String::from_utf8_lossy(&l)),
            Matcher::Suffix(l) => format!("suffix {}", String::from_utf8_lossy(&l)),
            Matcher::Prefix(l) => format!("prefix {}", String::from_utf8_lossy(&l)),
            Matcher::Regex(_) => "regex".into(),
        };
        assert_eq!(kind("static/cache"), "exact static/cache");
        assert_eq!(kind(r"^a\.b$"), "exact a.b");
        assert_eq!(kind(r"(.*)\.svn"), "suffix .svn");
        assert_eq!(kind(r".*~"), "suffix ~");
        assert_eq!(kind("tmp/(.*)"), "prefix tmp/");
        for regex in [
            "^info/*", r"a\.*", ".*", "(.*)", "a.*b", r"\<a", r"\d", "(?i)a", "a|b", "[ab]",
            "a{2}", ".*a.*", "a$b",
        ] {
            assert_eq!(kind(regex), "regex", "{regex}");
        }
    }

    proptest::proptest! {
        /// Whatever the fast path makes of an expression matches exactly what the regex does.
        #[test]
        fn literals_match_what_the_regex_matches(
            source in "[\\^$.*()a-c/~<]{0,7}",
            names in proptest::collection::vec("[a-c/.~<]{0,5}", 1..8),
        ) {
            let Ok(matcher) = Matcher::new(&source) else { return Ok(()) };
            if matches!(matcher, Matcher::Regex(_)) { return Ok(()) }
            let regex = as_regex(&source);
            for name in names {
                proptest::prop_assert_eq!(
                    matcher.is_match(name.as_bytes()),
                    regex.is_match(name.as_bytes()),
                    "{} on {}", source, name
                );
            }
        }
    }

    #[test]
    fn the_first_rule_in_file_order_is_reported_whatever_its_kind() {
        let f = Filter::new(&FilterConfig {
            excludes: ["a/(.*)", "a/b", r"(.*)\.log", "a/b", "(a|z)/c.log"]
                .map(pattern)
                .to_vec(),
            temp_names: Vec::new(),
        });
        let rule = |path: &str| {
            f.excluding_rule(&RelPath::from(path))
                .map(|p| p.source.as_str())
        };
        assert_eq!(rule("a/b"), Some("a/(.*)"));
        assert_eq!(rule("x.log"), Some(r"(.*)\.log"));
        assert_eq!(rule("z/c.log"), Some(r"(.*)\.log"));
        assert_eq!(rule("z/c"), None);
        let f = Filter::new(&FilterConfig {
            excludes: ["(a|z)/c.log", "z/c.log"].map(pattern).to_vec(),
            temp_names: Vec::new(),
        });
        assert_eq!(
            f.excluding_rule(&RelPath::from("z/c.log"))
                .map(|p| p.source.as_str()),
            Some("(a|z)/c.log")
        );
    }

    #[test]
    fn excludes_match_the_whole_relative_path() {
        let f = filter();
        assert!(f.is_excluded(&RelPath::from("a/.svn"), true));
        assert!(f.is_excluded(&RelPath::from("info"), true));
        assert!(!f.is_excluded(&RelPath::from("information"), true));
        assert!(!f.is_excluded(&RelPath::from("a/.svnx"), false));
    }

    #[test]
    fn temporary_names_are_excluded_but_dot_files_are_not() {
        let f = filter();
        for temp in ["a/.f.swp", "4913", "a/b~", "#x#", ".#lock"] {
            assert!(
                f.is_excluded(&RelPath::new(temp.as_bytes()), false),
                "{temp}"
            );
        }
        for kept in [
            ".htaccess",
            "a/.gitignore",
            "notes.txt",
            ".env",
            ".htaccess.backup",
        ] {
            assert!(
                !f.is_excluded(&RelPath::new(kept.as_bytes()), false),
                "{kept}"
            );
        }
        assert!(!f.is_excluded(&RelPath::ROOT, true));
    }
}
