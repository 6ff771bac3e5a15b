//! `<plugin name="socket">` options: `<localpath watch>` with one or more `<deshost>`.

use std::time::Duration;

use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::common::options::{HostPort, PerWatch};
use sersync_plugin_sdk::config::attrs::{attr_error, duration, TIMEOUT};

/// Bound of a connect or a write by default.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What goes over the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// 2.5.4's: one connection per changed path, carrying the absolute path's bytes, then
    /// closed. The mode when `format` is absent, so that a 2.5.4 file keeps its peer working.
    Path,
    /// One persistent connection, one JSON object per event and line.
    Json,
}

/// One `<deshost ip port format timeout>`.
#[derive(Clone, Debug)]
pub(crate) struct DesHost {
    /// The peer.
    pub peer: HostPort,
    /// Wire format.
    pub format: Format,
    /// Bound of a connect or a write.
    pub timeout: Duration,
}

/// Reads every `<localpath>` of the plugin and its `<deshost>` children.
pub(crate) fn parse(plugin: &ConfigNode) -> Result<PerWatch<Vec<DesHost>>, ConfigError> {
    PerWatch::parse(plugin, |lp| {
        let hosts = lp
            .children_named("deshost")
            .map(|d| {
                let format = match d.attr("format").map(str::to_ascii_lowercase).as_deref() {
                    None | Some("path") => Format::Path,
                    Some("json") => Format::Json,
                    Some(other) => {
                        return Err(attr_error(d, "format", format!("<deshost format=\"{other}\">: unknown format"))
                            .with_hint("format=\"json\" (one JSON object per line) or format=\"path\" (2.5.4: the bare path, one connection each)"))
                    }
                };
                Ok(DesHost {
                    peer: HostPort::parse(d, "ip", "port", None)?,
                    format,
                    timeout: duration(d, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hosts.is_empty() {
            return Err(lp
                .error("socket: <localpath> has no <deshost ip=\"…\" port=\"…\">")
                .with_hint("add <deshost ip=\"127.0.0.1\" port=\"8009\" format=\"json\"/>"));
        }
        Ok(hosts)
    })
}
