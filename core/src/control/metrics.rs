//! `/metrics`: the snapshot in Prometheus' text exposition format 0.0.4.

use std::fmt::{Display, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::latency::buckets;
use super::{LaneStatus, StatusSnapshot};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-lane number: metric name, type, help text, and how to read it.
type LaneMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LaneStatus) -> u64,
);

/// The per-lane counters and gauges, in output order.
const LANE_METRICS: &[LaneMetric] = &[
    (
        "sersync_lane_pending_paths",
        "gauge",
        "Paths waiting for the lane's next batch.",
        |l| l.pending,
    ),
    (
        "sersync_lane_in_flight_events",
        "gauge",
        "Events in the batch the lane is delivering now.",
        |l| l.in_flight,
    ),
    (
        "sersync_lane_batches_total",
        "counter",
        "Batches the lane delivered.",
        |l| l.batches,
    ),
    (
        "sersync_lane_events_total",
        "counter",
        "Events the lane delivered.",
        |l| l.events,
    ),
    (
        "sersync_lane_failures_total",
        "counter",
        "Deliveries of the lane that failed.",
        |l| l.failures,
    ),
    (
        "sersync_lane_retry_streak",
        "gauge",
        "Consecutive failures of the lane's current retry streak (0 when healthy).",
        |l| u64::from(l.retry_streak),
    ),
    (
        "sersync_lane_journal_bytes",
        "gauge",
        "Bytes in the lane's durable journal of undelivered changes.",
        |l| l.journal_bytes,
    ),
    (
        "sersync_audit_runs_total",
        "counter",
        "Drift audits of the lane's remote (<engine auditSeconds>).",
        |l| l.audit_runs,
    ),
    (
        "sersync_audit_differences_total",
        "counter",
        "Paths the drift audits found different on the lane's remote, and sent again (0 when nothing outside sersync touches it and no event was lost).",
        |l| l.audit_differences,
    ),
];

/// A number for the whole daemon: metric name, type, help text, and how to read it.
type DaemonMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StatusSnapshot) -> u64,
);

/// The daemon-wide counters and gauges, in output order (after `sersync_build_info`).
const DAEMON_METRICS: &[DaemonMetric] = &[
    (
        "sersync_uptime_seconds",
        "gauge",
        "Seconds since sersync started.",
        |s| s.uptime.as_secs(),
    ),
    (
        "sersync_events_seen_total",
        "counter",
        "Raw inotify events read, all watches together.",
        |s| s.events_seen,
    ),
    (
        "sersync_kernel_overflows_total",
        "counter",
        "Kernel event queue overflows (each one triggers a rescan).",
        |s| s.overflows,
    ),
    (
        "sersync_watched_directories",
        "gauge",
        "Directories watched, all watches together.",
        |s| s.directories,
    ),
    (
        "sersync_watch_skipped_paths_total",
        "counter",
        "Paths neither watched nor synced because they cannot be: longer than PATH_MAX, or unreadable.",
        |s| s.watch_skipped,
    ),
    (
        "sersync_watch_rewalks_total",
        "counter",
        "Watch roots walked again because the kernel's events did not explain where a directory went.",
        |s| s.watch_rewalks,
    ),
];

/// `sersync_watch_root_missing{root}`: 1 while a watch root is lost (see `watch::guard`).
fn root_guard(out: &mut Exposition, s: &StatusSnapshot) {
    const NAME: &str = "sersync_watch_root_missing";
    out.family(
        NAME,
        "gauge",
        "1 while the watch root is lost (deleted, renamed away, unmounted): its lanes are paused and nothing reaches its remotes.",
    );
    for watch in &s.watches {
        let root = watch.root.to_string_lossy();
        out.sample(
            NAME,
            &labels(&[("root", &root)]),
            u64::from(watch.lost.is_some()),
        );
    }
}

/// The latency histogram's name.
const LATENCY: &str = "sersync_lane_sync_latency_seconds";

/// Renders `s` as exposition text.
pub fn render(s: &StatusSnapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "sersync_build_info",
        "gauge",
        "sersync's version, as a label; always 1.",
    );
    out.sample("sersync_build_info", &labels(&[("version", &s.version)]), 1);
    for (name, kind, help, read) in DAEMON_METRICS {
        out.family(name, kind, help);
        out.sample(name, "", read(s));
    }
    root_guard(&mut out, s);
    // The built-in sinks' own daemon-wide counters, named by them.
    for counter in sersync_plugins::sink_counters().iter().chain(&s.counters) {
        out.family(counter.name, "counter", counter.help);
        out.sample(counter.name, "", counter.value);
    }
    process_metrics(&mut out);

    let lane_labels: Vec<String> = s
        .lanes
        .iter()
        .map(|l| labels(&[("lane", &l.name), ("root", &l.root.to_string_lossy())]))
        .collect();
    for (name, kind, help, read) in LANE_METRICS {
        out.family(name, kind, help);
        for (lane, labels) in s.lanes.iter().zip(&lane_labels) {
            out.sample(name, labels, read(lane));
        }
    }
    lane_times(&mut out, s, &lane_labels, SystemTime::now());
    out.family(
        LATENCY,
        "histogram",
        "Seconds from an event's arrival to the delivery of its batch, per lane.",
    );
    for (lane, labels) in s.lanes.iter().zip(&lane_labels) {
        for bucket in buckets(&lane.latency) {
            let le = bucket.le.map_or_else(|| "+Inf".to_string(), float);
            let with_le = format!("{labels},le=\"{le}\"");
            out.sample(&format!("{LATENCY}_bucket"), &with_le, bucket.count);
        }
        let sum = float(lane.latency.sum_seconds);
        out.sample(&format!("{LATENCY}_sum"), labels, sum);
        out.sample(&format!("{LATENCY}_count"), labels, lane.latency.count);
    }
    render_order(&mut out, s, &lane_labels);
    out.text
}

/// The ordering between sinks (`after=`): per ordered lane, what waits for the lanes it
/// runs after. Kept apart from the other families to ease merging.
fn render_order(out: &mut Exposition, s: &StatusSnapshot, lane_labels: &[String]) {
    let ordered: Vec<(&crate::dispatch::OrderStatus, &String)> = s
        .lanes
        .iter()
        .zip(lane_labels)
        .filter_map(|(lane, labels)| lane.order.as_ref().map(|o| (o, labels)))
        .collect();
    out.family(
        "sersync_lane_order_waiting",
        "gauge",
        "Pending changes of an ordered lane that the sinks it runs after have not delivered yet.",
    );
    for (order, labels) in &ordered {
        out.sample("sersync_lane_order_waiting", labels, order.waiting);
    }
    out.family(
        "sersync_lane_order_oldest_wait_seconds",
        "gauge",
        "How long the oldest change an ordered lane holds for the sinks it runs after has waited (0 when none waits).",
    );
    for (order, labels) in &ordered {
        let age = order.oldest_wait.map_or(0.0, |d| d.as_secs_f64());
        out.sample("sersync_lane_order_oldest_wait_seconds", labels, float(age));
    }
    out.family(
        "sersync_lane_order_timeouts_total",
        "counter",
        "Changes an ordered lane sent after maxWait before the sinks it runs after had delivered them.",
    );
    for (order, labels) in &ordered {
        out.sample("sersync_lane_order_timeouts_total", labels, order.timeouts);
    }
}

/// The standard `process_*` metrics of the daemon's own process.
fn process_metrics(out: &mut Exposition) {
    let limit = super::process::inotify_limit();
    for (name, kind, help, value) in limit.into_iter().chain(super::process::metrics()) {
        out.family(name, kind, help);
        out.sample(name, "", float(value));
    }
}

/// The per-lane times: when the last batch went through (no sample for a lane that never
/// delivered one) and how old the oldest change it still owes is at `now` (0 when none).
fn lane_times(out: &mut Exposition, s: &StatusSnapshot, lane_labels: &[String], now: SystemTime) {
    const LAST: &str = "sersync_lane_last_success_timestamp_seconds";
    out.family(
        LAST,
        "gauge",
        "When the lane last delivered a batch, Unix seconds (no sample before its first).",
    );
    for (lane, labels) in s.lanes.iter().zip(lane_labels) {
        if let Some(t) = lane.last_success {
            out.sample(LAST, labels, unix_seconds(t));
        }
    }
    const OLDEST: &str = "sersync_lane_oldest_pending_seconds";
    out.family(
        OLDEST,
        "gauge",
        "Age of the oldest change the lane still owes (pending or in flight), seconds; 0 when it owes nothing.",
    );
    for (lane, labels) in s.lanes.iter().zip(lane_labels) {
        let age = lane.oldest_pending.map_or(0.0, |t| {
            now.duration_since(t)
                .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
        });
        out.sample(OLDEST, labels, float(age));
    }
}

/// Seconds since the Unix epoch, to the millisecond.
fn unix_seconds(t: SystemTime) -> String {
    float(
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0),
    )
}

/// Label pairs as they go between the braces: `key="escaped value",…`.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Exposition text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines of a metric family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line; `labels` as made by [`labels`], empty for none.
    fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        let _ = match labels {
            "" => writeln!(self.text, "{name} {value}"),
            _ => writeln!(self.text, "{name}{{{labels}}} {value}"),
        };
    }
}

/// A label value escaped as the format requires: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`, else plain decimal).
fn float(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dispatch::{HistogramSnapshot, BUCKETS};

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("rsync u@h::m é"), "rsync u@h::m é");
    }

    #[test]
    fn floats_use_the_format_spelling() {
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(60.0), "60");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
    }

    #[test]
    fn the_histogram_is_rendered_cumulative_with_sum_and_count() {
        let mut cumulative = vec![1, 1, 1, 2];
        cumulative.resize(BUCKETS.len(), 2);
        cumulative.push(3);
        let snapshot = StatusSnapshot {
            lanes: vec![LaneStatus {
                name: "rsync \"x\"".into(),
                root: PathBuf::from("/data"),
                latency: HistogramSnapshot {
                    cumulative,
                    sum_seconds: 100.043,
                    count: 3,
                },
                ..LaneStatus::default()
            }],
            ..StatusSnapshot::default()
        };
        let text = render(&snapshot);
        let labels = r#"lane="rsync \"x\"",root="/data""#;
        for line in [
            format!("{LATENCY}_bucket{{{labels},le=\"0.005\"}} 1"),
            format!("{LATENCY}_bucket{{{labels},le=\"0.05\"}} 2"),
            format!("{LATENCY}_bucket{{{labels},le=\"60\"}} 2"),
            format!("{LATENCY}_bucket{{{labels},le=\"+Inf\"}} 3"),
            format!("{LATENCY}_sum{{{labels}}} 100.043"),
            format!("{LATENCY}_count{{{labels}}} 3"),
            format!("# TYPE {LATENCY} histogram"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let buckets = text.lines().filter(|l| l.contains("_bucket{")).count();
        assert_eq!(buckets, BUCKETS.len() + 1);
    }

    #[test]
    fn families_without_lanes_still_have_help_and_type() {
        let text = render(&StatusSnapshot::default());
        assert!(text.contains("# TYPE sersync_lane_pending_paths gauge\n"));
        assert!(text.contains("sersync_events_seen_total 0\n"));
        assert!(text.contains("# TYPE sersync_rsync_unreadable_paths_total counter\n"));
        assert!(!text.contains("_bucket"));
    }
}
