//! The effective configuration in words, for `sersync --check`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    Config, CrontabConfig, EngineConfig, EventSwitches, FilterConfig, Pattern, WatchConfig,
};

impl Config {
    /// The effective configuration, one topic a line (watches with one line per destination):
    /// what is watched and where it goes (the exact rsync destination), how the sinks of
    /// `<sersync>` run (their own words, `SersyncSinks::describe`),
    /// filters, events, fail log, crontab, plugins, control address and engine tuning.
    /// Defaults are shown like values from the file, so the text says what will happen.
    /// Warnings follow, one `warning:` line each (with its hint on the next line).
    pub fn describe(&self) -> String {
        let mut out = format!("configuration {}\n", self.file.display());
        if self.watches.is_empty() {
            out.push_str("watch: none (<sersync><localpath>)\n");
        }
        for (i, watch) in self.watches.iter().enumerate() {
            out.push_str(&self.describe_watch(i, watch));
        }
        let mut lines = self.sersync_sinks.describe();
        lines.extend([
            describe_excludes(&self.filter),
            describe_temp_names(&self.filter),
            describe_events(&self.events),
            format!(
                "fail log: {}, replayed every {}",
                self.fail_log.path.display(),
                minutes(self.fail_log.every)
            ),
            describe_crontab(
                self.crontab.as_ref(),
                self.sersync_sinks.describe_full_syncs(),
            ),
            format!("plugins: {}", list_or_none(&self.enabled_plugins)),
            describe_control(&self.control),
            format!("debug: {}", on_off(self.debug)),
            describe_engine(&self.engine),
        ]);
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        out
    }

    fn describe_watch(&self, i: usize, watch: &WatchConfig) -> String {
        let mut out = format!("watch {}\n", watch.root.display());
        for line in self.sersync_sinks.describe_watch(i) {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

fn describe_excludes(filter: &FilterConfig) -> String {
    format!("exclude: {}", patterns_or_none(&filter.excludes))
}

fn describe_temp_names(filter: &FilterConfig) -> String {
    let source = if filter.temp_names.iter().all(|p| p.position.is_none()) {
        "built-in"
    } else {
        "from the file"
    };
    match filter.temp_names.as_slice() {
        [] => "temporary names: not filtered".to_string(),
        names => format!("temporary names ({source}): {}", patterns_or_none(names)),
    }
}

fn describe_events(events: &EventSwitches) -> String {
    let switches = [
        ("delete", events.delete),
        ("createFolder", events.create_folder),
        ("createFile", events.create_file),
        ("closeWrite", events.close_write),
        ("moveFrom", events.move_from),
        ("moveTo", events.move_to),
        ("attrib", events.attrib),
        ("modify", events.modify),
    ];
    let named = |on: bool| -> Vec<String> {
        switches
            .iter()
            .filter(|(_, state)| *state == on)
            .map(|(name, _)| (*name).to_string())
            .collect()
    };
    format!(
        "events on: {}; off: {}",
        list_or_none(&named(true)),
        list_or_none(&named(false))
    )
}

/// `control: HOST:PORT, …` and who may use it (the token itself is never shown).
fn describe_control(control: &super::ControlAddress) -> String {
    let token = match &control.token_file {
        Some(file) => format!("token from {}", file.display()),
        None if std::env::var_os(super::TOKEN_ENV).is_some_and(|v| !v.is_empty()) => {
            format!("token from ${}", super::TOKEN_ENV)
        }
        None => "no token".into(),
    };
    let guarded = match (token.as_str(), control.reads_need_token) {
        ("no token", _) => "every request open",
        (_, false) => "POST /sync needs it, reads open",
        (_, true) => "every request needs it",
    };
    format!(
        "control: {}:{}, {token} ({guarded})",
        control.host, control.port
    )
}

fn describe_crontab(crontab: Option<&CrontabConfig>, full_syncs: Option<String>) -> String {
    let excluding = full_syncs.map_or_else(String::new, |leave_out| format!(", {leave_out}"));
    match crontab {
        None => format!("crontab: off{excluding}"),
        Some(c) => format!("crontab: full sync every {}{excluding}", minutes(c.every)),
    }
}

fn describe_engine(engine: &EngineConfig) -> String {
    format!(
        "engine: settle {} ({} when idle and finished), max delay {}{}, max pending {} paths, retry {} to {}, {} transfers per remote{}, state in {}{}",
        millis(engine.settle),
        millis(engine.idle_settle),
        millis(engine.max_delay),
        if engine.busy_max_delay > engine.max_delay {
            format!(" ({} while behind)", millis(engine.busy_max_delay))
        } else {
            String::new()
        },
        engine.max_pending,
        millis(engine.retry_initial),
        millis(engine.retry_max),
        engine.transfers_per_remote,
        if engine.warm_transfers {
            " (each keeping its next run connected)"
        } else {
            ""
        },
        engine.state_dir.display(),
        describe_state_dir(&engine.state_dir)
    )
}

/// What the start will make of the state directory, looked at without creating it.
fn describe_state_dir(path: &std::path::Path) -> String {
    match crate::state_dir::inspect(path) {
        Ok(true) => String::new(),
        Ok(false) => " (created at start, mode 0700)".to_string(),
        Err(refused) => format!(" (REFUSED at start: journals and heartbeat off: {refused})"),
    }
}

fn patterns_or_none(patterns: &[Pattern]) -> String {
    let sources: Vec<String> = patterns.iter().map(|p| p.source.clone()).collect();
    list_or_none(&sources)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn minutes(d: Duration) -> String {
    format!("{} min", d.as_secs() / 60)
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
