//! `<plugin name="command">` options.

use std::ffi::OsString;
use std::time::Duration;

use regex::bytes::Regex;
use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::common::options::path_regex;
use sersync_plugin_sdk::config::attrs::{attr_error, count, duration, TIMEOUT};

/// How long a run may take by default before it is killed.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Paths per run in batch mode by default.
pub(crate) const DEFAULT_MAX_ARGS: usize = 256;

/// The command sink's validated options.
#[derive(Clone, Debug)]
pub(crate) struct CommandOptions {
    /// `<param prefix>` split into words (shell quoting rules, no expansion); the first word is
    /// the program.
    pub prefix: Vec<OsString>,
    /// `<param suffix>` split into words, placed after the path(s).
    pub suffix: Vec<OsString>,
    /// `<param ignoreError="true">`: a non-zero exit is logged, not reported.
    pub ignore_error: bool,
    /// `<param timeout>`: a run still going after this is killed with its process group.
    pub timeout: Duration,
    /// `<param batch="true" maxArgs="N">`: one run for up to N paths; `None` = one run per path.
    pub batch: Option<usize>,
    /// `<param passEnv="NAME …">`: variables of sersync's environment passed to every run
    /// besides the minimal set (see `process::inherited_env`).
    pub pass_env: Vec<String>,
    /// `<filter start="true">` `<include expression>`: only absolute paths one of these matches
    /// whole are acted on; `None` = every path.
    pub includes: Option<Vec<Regex>>,
}

impl CommandOptions {
    /// Reads and checks the `<plugin name="command">` element.
    pub fn parse(plugin: &ConfigNode) -> Result<Self, ConfigError> {
        let param = plugin.child("param").ok_or_else(|| {
            plugin
                .error("<plugin name=\"command\"> has no <param prefix=\"…\">")
                .with_hint("add e.g. <param prefix=\"/usr/local/bin/on-change\" suffix=\"\" ignoreError=\"true\"/>")
        })?;
        let prefix = words(param, "prefix")?;
        if prefix.is_empty() {
            return Err(attr_error(param, "prefix", "<param prefix=\"\">: the command is empty")
                .with_hint(
                "prefix names the program to run, e.g. prefix=\"/bin/sh /opt/hooks/changed.sh\"",
            ));
        }
        let batch = if param.flag("batch") {
            Some(count(param, "maxargs")?.unwrap_or(DEFAULT_MAX_ARGS))
        } else {
            None
        };
        let includes = match plugin.child("filter") {
            Some(filter) if filter.flag("start") => Some(
                filter
                    .children_named("include")
                    .map(|inc| path_regex(inc, "expression", true))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        Ok(CommandOptions {
            prefix,
            suffix: words(param, "suffix")?,
            ignore_error: param.flag("ignoreerror"),
            timeout: duration(param, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
            batch,
            pass_env: pass_env(param)?,
            includes,
        })
    }

    /// True when the filter lets `absolute` through.
    pub fn accepts(&self, absolute: &[u8]) -> bool {
        self.includes
            .as_ref()
            .is_none_or(|res| res.iter().any(|re| re.is_match(absolute)))
    }
}

/// Attribute `name` split into words with POSIX shell quoting (`'…'`, `"…"`, `\`), nothing
/// expanded: no variables, globs or command substitution.
fn words(node: &ConfigNode, name: &str) -> Result<Vec<OsString>, ConfigError> {
    let Some(attr) = node.attribute(name) else {
        return Ok(Vec::new());
    };
    shell_words::split(&attr.value)
        .map(|ws| ws.into_iter().map(OsString::from).collect())
        .map_err(|e| {
            ConfigError::at(attr.position, format!("<param {name}=\"{}\">: {e}", attr.value))
                .with_hint("quotes must be balanced; the words are split like a shell would but nothing is expanded")
        })
}

/// `<param passEnv>`: variable names separated by whitespace, each `[A-Za-z_][A-Za-z0-9_]*`.
fn pass_env(param: &ConfigNode) -> Result<Vec<String>, ConfigError> {
    let Some(value) = param.attr("passenv") else {
        return Ok(Vec::new());
    };
    let valid = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    value
        .split_whitespace()
        .map(|name| {
            if valid(name) {
                Ok(name.to_string())
            } else {
                Err(attr_error(
                    param,
                    "passenv",
                    format!("<param passEnv=\"{value}\">: {name:?} is not a variable name"),
                )
                .with_hint("passEnv lists variable names separated by spaces, e.g. passEnv=\"SITE_ID DEPLOY_ENV\""))
            }
        })
        .collect()
}
