//! Option parsing the sinks share beyond the SDK's attribute toolkit
//! (`sersync_plugin_sdk::config::attrs`: switches, numbers, durations): hosts and ports, path
//! regexes, and the `<localpath watch>` sections of `refreshCDN` and `socket`.

use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexBuilder};
use sersync_plugin_sdk::config::attrs::{attr_error, missing, number, Bounds, PORT};
use sersync_plugin_sdk::{ConfigError, ConfigNode, SinkError};

/// A TCP peer: host name or IP address (IPv6 without brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// Host name, IPv4 or IPv6 address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Reads `host_attr` (brackets around an IPv6 address are accepted and dropped) and
    /// `port_attr` (default `default_port` when given) of `node`.
    pub fn parse(
        node: &ConfigNode,
        host_attr: &str,
        port_attr: &str,
        default_port: Option<u16>,
    ) -> Result<HostPort, ConfigError> {
        let raw = node.required_attr(host_attr)?.trim();
        let host = raw
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw);
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(attr_error(
                node,
                host_attr,
                format!(
                    "<{} {host_attr}=\"{raw}\">: not a host name or IP address",
                    node.name
                ),
            )
            .with_hint(
                "write a name like cdn.example.com, an IPv4 address or an IPv6 address such as ::1",
            ));
        }
        // With a default, 0 stands for it (as an absent attribute does).
        let bounds = match default_port {
            Some(_) => Bounds {
                meaning: "a TCP port (0: the default)",
                min: 0,
                ..PORT
            },
            None => PORT,
        };
        let port = match number(node, port_attr, &bounds)? {
            Some(0) | None => default_port,
            Some(p) => Some(p as u16),
        };
        let port = port.ok_or_else(|| {
            missing(node, port_attr).with_hint("the TCP port the peer listens on, 1 to 65535")
        })?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Compiles attribute `attr` of `node` as a regex over path bytes. `.` matches any byte, so that
/// names in any encoding can match; with `whole`, the regex must match the entire path, as
/// sersync 2.5.4's filters did.
pub(crate) fn path_regex(node: &ConfigNode, attr: &str, whole: bool) -> Result<Regex, ConfigError> {
    let source = node.required_attr(attr)?;
    let pattern = if whole {
        format!("^(?:{source})$")
    } else {
        source.to_string()
    };
    RegexBuilder::new(&pattern)
        .unicode(false)
        .build()
        .map_err(|e| {
            attr_error(
                node,
                attr,
                format!(
                    "<{} {attr}=\"{source}\">: not a valid regular expression",
                    node.name
                ),
            )
            .with_hint(e.to_string())
        })
}

/// A plugin's options per `<localpath watch>` (refreshCDN and socket have their own watches).
#[derive(Debug)]
pub(crate) struct PerWatch<T>(Vec<(PathBuf, T)>);

impl<T> PerWatch<T> {
    /// Reads the `<localpath watch>` children of `plugin`, each by `read` into the options for
    /// that watch. At least one is required; watches are absolute, trailing `/` dropped, unique.
    pub fn parse(
        plugin: &ConfigNode,
        mut read: impl FnMut(&ConfigNode) -> Result<T, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut out: Vec<(PathBuf, T)> = Vec::new();
        for node in plugin.children_named("localpath") {
            let watch = node.required_attr("watch")?;
            let trimmed = watch.trim_end_matches('/');
            if !watch.starts_with('/') {
                return Err(attr_error(
                    node,
                    "watch",
                    format!("<localpath watch=\"{watch}\">: the watch path must be absolute"),
                )
                .with_hint("write the same absolute path as in <sersync><localpath watch>"));
            }
            let path = PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed });
            if out.iter().any(|(p, _)| *p == path) {
                return Err(attr_error(
                    node,
                    "watch",
                    format!("<localpath watch=\"{watch}\"> is given twice"),
                ));
            }
            out.push((path, read(node)?));
        }
        if out.is_empty() {
            return Err(plugin
                .error(format!(
                    "<plugin name=\"{}\"> has no <localpath watch=\"…\">",
                    plugin.attr("name").unwrap_or_default()
                ))
                .with_hint(
                    "add <localpath watch=\"/path/watched\"> with the plugin's options inside",
                ));
        }
        Ok(PerWatch(out))
    }

    /// The options of the watch rooted at `root`; a fatal error naming `plugin` if there is none.
    pub fn for_root(&self, root: &Path, plugin: &str) -> Result<&T, SinkError> {
        self.0
            .iter()
            .find(|(watch, _)| watch == root)
            .map(|(_, options)| options)
            .ok_or_else(|| {
                SinkError::fatal(format!(
                    "{plugin}: no <localpath watch> for {} in its configuration",
                    root.display()
                ))
            })
    }

    /// The watch roots, for [`crate::SinkSpec::own_watches`].
    pub fn watches(&self) -> Vec<PathBuf> {
        self.0.iter().map(|(p, _)| p.clone()).collect()
    }

    /// `plugin: /watch: LINE; /other: LINE`, for [`crate::SinkSpec::summary`].
    pub fn summary(&self, plugin: &str, line: impl Fn(&T) -> String) -> String {
        let lanes: Vec<String> = self
            .0
            .iter()
            .map(|(watch, options)| format!("{}: {}", watch.display(), line(options)))
            .collect();
        format!("{plugin}: {}", lanes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_node;

    fn node(attrs: &[(&str, &str)]) -> ConfigNode {
        test_node("x", attrs, vec![])
    }

    #[test]
    fn hosts_accept_names_and_ipv6() {
        let hp = HostPort::parse(
            &node(&[("ip", "[::1]"), ("port", "80")]),
            "ip",
            "port",
            None,
        )
        .unwrap();
        assert_eq!(hp.to_string(), "[::1]:80");
        let hp =
            HostPort::parse(&node(&[("ip", "cdn.example.com")]), "ip", "port", Some(80)).unwrap();
        assert_eq!(hp.to_string(), "cdn.example.com:80");
        assert!(
            HostPort::parse(&node(&[("ip", "a"), ("port", "99999")]), "ip", "port", None).is_err()
        );
        assert!(HostPort::parse(&node(&[("ip", "a")]), "ip", "port", None).is_err());
    }

    #[test]
    fn whole_match_regex_matches_any_byte() {
        let re = path_regex(&node(&[("e", r"(.*)\.php")]), "e", true).unwrap();
        assert!(re.is_match(b"/a/\xff.php"));
        assert!(!re.is_match(b"/a/x.php.bak"));
        assert!(path_regex(&node(&[("e", "(")]), "e", true).is_err());
        let re = path_regex(&node(&[("e", "/图片/.*")]), "e", false).unwrap();
        assert!(re.is_match("/site/图片/a.jpg".as_bytes()));
    }
}
