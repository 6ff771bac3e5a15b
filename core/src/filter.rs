//! Which paths are never watched nor synced.
//!
//! One rule for the initial walk, for events and for the excludes rsync is given: a path is
//! excluded when an `<exclude expression>` regex matches the **whole relative path** (no
//! leading `/`; `info` is the directory `info` at the watch root, `info/x` a file in it), or
//! when a temporary-file pattern matches its **last component**. The contents of an excluded
//! directory are never visited, so they are excluded too.

use sersync_plugin_sdk::{PathFilter, RelPath};

use crate::config::{FilterConfig, Pattern};

/// The compiled `<filter>` rules and temporary-name patterns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    excludes: Vec<Pattern>,
    temp_names: Vec<Pattern>,
}

impl Filter {
    /// The rules of `config`.
    pub fn new(config: &FilterConfig) -> Self {
        Filter {
            excludes: config.excludes.clone(),
            temp_names: config.temp_names.clone(),
        }
    }

    /// The first rule that excludes `path`, for logs.
    pub fn excluding_rule(&self, path: &RelPath) -> Option<&Pattern> {
        if path.is_root() {
            return None;
        }
        self.excludes
            .iter()
            .find(|p| p.regex.is_match(path.as_bytes()))
            .or_else(|| {
                self.temp_names
                    .iter()
                    .find(|p| p.regex.is_match(path.file_name()))
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
    use regex::bytes::Regex;

    fn pattern(source: &str) -> Pattern {
        Pattern {
            source: source.to_string(),
            regex: Regex::new(&format!("^(?:{source})$")).unwrap(),
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
