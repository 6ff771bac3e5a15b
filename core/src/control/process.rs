//! The standard process metrics (the names every Prometheus client library's process
//! collector uses), read from `/proc/self` at each scrape: start time, CPU, memory,
//! descriptors. A value that cannot be read is left out, not reported as 0.

use std::fs;

/// One process metric: name, type, help text, value.
pub type ProcessMetric = (&'static str, &'static str, &'static str, f64);

/// The process metrics that could be read now, in output order.
pub fn metrics() -> Vec<ProcessMetric> {
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(stat_fields);
    let ticks = clock_ticks();
    let mut out = Vec::new();
    if let (Some(fields), Some(ticks)) = (&stat, ticks) {
        // Fields after the command's closing parenthesis: utime is the 14th of the whole
        // line, so index 11 here (state is index 0); stime 12, starttime 19, vsize 20.
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(11), field(12)) {
            out.push((
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (utime + stime) as f64 / ticks,
            ));
        }
        if let (Some(start), Some(boot)) = (field(19), boot_time()) {
            out.push((
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + start as f64 / ticks,
            ));
        }
        if let Some(vsize) = field(20) {
            out.push((
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                vsize as f64,
            ));
        }
    }
    if let Some(rss) = resident_bytes() {
        out.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss as f64,
        ));
    }
    if let Ok(dir) = fs::read_dir("/proc/self/fd") {
        out.push((
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        ));
    }
    if let Some(max) = max_fds() {
        out.push((
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        ));
    }
    out
}

/// `fs.inotify.max_user_watches`: the watches one user may hold, all its processes together
/// (`sersync_watched_directories` is sersync's share), as sersync's own metric.
pub fn inotify_limit() -> Option<ProcessMetric> {
    let text = fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").ok()?;
    Some((
        "sersync_inotify_max_user_watches",
        "gauge",
        "The kernel's fs.inotify.max_user_watches: inotify watches the user may hold, all its processes together.",
        text.trim().parse::<u64>().ok()? as f64,
    ))
}

/// The fields of `/proc/self/stat` after `(comm)` (which may hold spaces and parentheses,
/// so the line is cut at its last `)`).
fn stat_fields(line: &str) -> Option<Vec<String>> {
    let rest = &line[line.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/self/stat`.
fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// `btime` of `/proc/stat`: when the system booted, Unix seconds.
fn boot_time() -> Option<u64> {
    fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The second field of `/proc/self/statm` (resident pages) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

/// The soft limit of open descriptors.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_may_hold_parentheses_and_spaces() {
        let fields = stat_fields("42 (a) b (c) S 1 42 42 0 -1").unwrap();
        assert_eq!(fields[..2], ["S", "1"]);
    }

    #[test]
    fn this_process_has_every_metric_with_plausible_values() {
        let metrics = metrics();
        let value = |name: &str| {
            metrics
                .iter()
                .find(|m| m.0 == name)
                .unwrap_or_else(|| panic!("no {name} in {metrics:?}"))
                .3
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert!(value("process_resident_memory_bytes") > 1e5);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
    }
}
