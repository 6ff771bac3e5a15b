//! From the `<head>` tree to the typed [`Config`]: every element optional, every value checked.

mod engine;
mod filter;
mod lint;
mod plugins;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync_plugin_sdk::config::attrs::{duration_or, Span, Unit};
use sersync_plugin_sdk::{ConfigError, ConfigNode};
use sersync_plugins::{configure_sersync, SersyncNodes};

use crate::config::{
    Config, ControlAddress, CrontabConfig, EventSwitches, FailLogConfig, WatchConfig,
};
use sersync_plugin_sdk::config::attrs::{
    child_switch, number_or, optional, required, switch, PORT,
};

/// The typed configuration from the root `<head>` element of `file`. Touches no file.
pub fn config(head: &ConfigNode, file: &Path) -> Result<Config, ConfigError> {
    let sersync = head.child("sersync");
    let crontab_node = sersync.and_then(|s| s.child("crontab"));
    let events = events(head.child("inotify"));
    let fail_log = fail_log(sersync.and_then(|s| s.child("faillog")))?;
    let plugins = plugins::sections(head)?;
    let mut config = Config {
        file: file.to_path_buf(),
        control: control(head.child("host"), head)?,
        debug: child_switch(Some(head), "debug", false),
        filter: filter::filter(head)?,
        events,
        watches: watches(sersync)?,
        sersync_sinks: configure_sersync(SersyncNodes {
            sersync,
            inotify: head.child("inotify"),
        })?,
        crontab: crontab(crontab_node)?,
        enabled_plugins: plugins::enabled(sersync, &plugins)?,
        plugin_order: plugins::ordering(sersync, &plugins)?,
        engine: engine::engine(head.child("engine"))?,
        fail_log,
        plugins,
        warnings: Vec::new(),
    };
    config.warnings = lint::warnings(head, &config)
        .into_iter()
        .map(|w| w.in_file(file))
        .collect();
    Ok(config)
}

/// `<host hostip port tokenFile readsNeedToken>`. Default `localhost:8008`, no token. Also
/// read by `sersync follow` for its own file's `<host>` (`head` is that file's root).
pub fn control(
    host: Option<&ConfigNode>,
    head: &ConfigNode,
) -> Result<ControlAddress, ConfigError> {
    let example = "<host hostip=\"localhost\" port=\"8008\"/>";
    let token_example = "<host hostip=\"0.0.0.0\" port=\"8008\" tokenFile=\"/etc/sersync/token\"/>";
    Ok(ControlAddress {
        host: optional(host, "hostip", example)?
            .unwrap_or("localhost")
            .to_string(),
        port: number_or(host, "port", &PORT, 8008)? as u16,
        token_file: optional(host, "tokenfile", token_example)?.map(PathBuf::from),
        reads_need_token: switch(host, "readsneedtoken", false),
        position: host.map_or(head.position, |h| h.position),
    })
}

/// `<inotify>`: each `<EVENT start>` a switch, missing ones at their defaults.
fn events(inotify: Option<&ConfigNode>) -> EventSwitches {
    let on = |event: &str, default: bool| child_switch(inotify, event, default);
    EventSwitches {
        delete: on("delete", true),
        create_folder: on("createfolder", true),
        create_file: on("createfile", false),
        close_write: on("closewrite", true),
        move_from: on("movefrom", true),
        move_to: on("moveto", true),
        attrib: on("attrib", false),
        modify: on("modify", false),
    }
}

/// Every `<sersync><localpath>`, in file order; no root twice.
fn watches(sersync: Option<&ConfigNode>) -> Result<Vec<WatchConfig>, ConfigError> {
    let mut watches: Vec<WatchConfig> = Vec::new();
    for node in sersync
        .into_iter()
        .flat_map(|s| s.children_named("localpath"))
    {
        let watch = watch(node)?;
        if let Some(first) = watches.iter().find(|w| w.root == watch.root) {
            return Err(node
                .error(format!(
                    "{} is watched twice (first at {})",
                    watch.root.display(),
                    first.position
                ))
                .with_hint("put all its <remote>s under one <localpath>"));
        }
        watches.push(watch);
    }
    Ok(watches)
}

/// `<localpath watch>` (its `<remote>`s are the rsync sink's).
fn watch(node: &ConfigNode) -> Result<WatchConfig, ConfigError> {
    let root = required(node, "watch", "<localpath watch=\"/opt/tongbu\">")?;
    Ok(WatchConfig {
        root: without_trailing_slash(root),
        configured_as: None,
        position: node.position,
    })
}

/// `/a/b/` → `/a/b`; `/` stays `/`.
fn without_trailing_slash(path: &str) -> PathBuf {
    match path.trim_end_matches('/') {
        "" => PathBuf::from("/"),
        trimmed => PathBuf::from(trimmed),
    }
}

/// `<failLog path timeToExecute>`. Default `/tmp/rsync_fail_log.sh` every 60 minutes.
fn fail_log(node: Option<&ConfigNode>) -> Result<FailLogConfig, ConfigError> {
    let example = "<failLog path=\"/tmp/rsync_fail_log.sh\" timeToExecute=\"60\"/>";
    Ok(FailLogConfig {
        path: PathBuf::from(optional(node, "path", example)?.unwrap_or("/tmp/rsync_fail_log.sh")),
        every: duration_or(node, "timetoexecute", &MINUTES, minutes(60))?,
    })
}

/// `<crontab start="true" schedule>`. Default every 600 minutes.
fn crontab(node: Option<&ConfigNode>) -> Result<Option<CrontabConfig>, ConfigError> {
    let Some(node) = node.filter(|c| c.flag("start")) else {
        return Ok(None);
    };
    Ok(Some(CrontabConfig {
        every: duration_or(Some(node), "schedule", &MINUTES, minutes(600))?,
    }))
}

/// `timeToExecute`, `schedule`: a bare number is minutes; at least one, at most ten years.
const MINUTES: Span = Span {
    meaning: "a period",
    unit: Unit::Minutes,
    min: minutes(1),
    max: minutes(5_256_000),
};

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}
