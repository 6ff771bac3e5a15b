//! The board's lines, as text: pure functions of what is known about a run.

use std::path::Path;
use std::time::Duration;

use sersync_plugins::progress::Snapshot;

const PREFIX: &str = "full sync";

/// How a remote is named on the board: `remote`, or `root -> remote` when several watch roots
/// are synced. Control characters are shown as `?`, so nothing in a name moves the cursor.
pub fn label(root: &Path, remote: &str, with_root: bool) -> String {
    let text = if with_root {
        format!("{} -> {remote}", root.display())
    } else {
        remote.to_string()
    };
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The line of a run going on for `elapsed`, `last` being its latest snapshot. The share of
/// the bytes is shown once the file list is complete: before, it is a share of what has
/// been listed so far, and says little.
pub fn running(label: &str, last: Option<&Snapshot>, elapsed: Duration) -> String {
    let Some(s) = last else {
        return format!("{PREFIX}  {label}  starting  {}", clock(elapsed));
    };
    let mut parts = vec![format!("{PREFIX}  {label}")];
    let mut bytes = size(s.bytes as f64);
    if let Some(files) = s.files {
        let more = if files.complete { "" } else { "+" };
        parts.push(format!(
            "{}/{}{more} files",
            count(files.checked()),
            count(files.total)
        ));
        parts.push(format!("{} sent", count(files.transferred)));
        if files.complete {
            bytes.push_str(&format!(" ({}%)", s.percent));
        }
    }
    parts.push(bytes);
    parts.push(format!("{}/s", size(s.rate)));
    parts.push(clock(elapsed));
    parts.join("  ")
}

/// The line of a run that failed after `elapsed` and waits for its lane to retry it.
pub fn retrying(label: &str, elapsed: Duration) -> String {
    format!(
        "{PREFIX}  {label}  failed after {}; will retry (see the log)",
        clock(elapsed)
    )
}

/// The line left on the terminal when a run succeeded after `elapsed`.
pub fn done(label: &str, last: Option<&Snapshot>, elapsed: Duration) -> String {
    let mut line = format!("{PREFIX}  {label}  done in {}", clock(elapsed));
    if let Some(s) = last {
        let mut parts = Vec::new();
        if let Some(files) = s.files {
            parts.push(format!("{} files", count(files.total)));
            parts.push(format!("{} sent", count(files.transferred)));
        }
        parts.push(size(s.bytes as f64));
        let secs = elapsed.as_secs_f64();
        if s.bytes > 0 && secs > 0.0 {
            parts.push(format!("{}/s average", size(s.bytes as f64 / secs)));
        }
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    line
}

/// At most `width - 1` characters of `line`, so that the terminal never wraps it.
pub fn fit(line: &str, width: usize) -> &str {
    match line.char_indices().nth(width.saturating_sub(1)) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

/// `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `512 B`, `58.6 KiB`, `1.2 GiB`.
fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024.0 {
        return format!("{} B", bytes.max(0.0).round());
    }
    let mut value = bytes / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0:07`, `12:34`, `1:02:03`.
fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugins::progress::FileCounts;

    fn snapshot(files: Option<FileCounts>) -> Snapshot {
        Snapshot {
            bytes: 60_002,
            percent: 3,
            rate: 18.85 * 1024.0 * 1024.0,
            files,
        }
    }

    const LISTING: FileCounts = FileCounts {
        transferred: 3,
        left: 1000,
        total: 2022,
        complete: false,
    };

    #[test]
    fn running_lines() {
        let secs = Duration::from_secs;
        assert_eq!(
            running("b@h::www", None, secs(3)),
            "full sync  b@h::www  starting  0:03"
        );
        assert_eq!(
            running("b@h::www", Some(&snapshot(Some(LISTING))), secs(75)),
            "full sync  b@h::www  1,022/2,022+ files  3 sent  58.6 KiB  18.9 MiB/s  1:15"
        );
        let complete = FileCounts {
            complete: true,
            ..LISTING
        };
        assert!(running("r", Some(&snapshot(Some(complete))), secs(3725))
            .contains("1,022/2,022 files  3 sent  58.6 KiB (3%)  18.9 MiB/s  1:02:05"));
        assert_eq!(
            running("r", Some(&snapshot(None)), secs(1)),
            "full sync  r  58.6 KiB  18.9 MiB/s  0:01"
        );
    }

    #[test]
    fn final_and_retry_lines() {
        let done_line = done(
            "b@h::www",
            Some(&snapshot(Some(FileCounts {
                left: 0,
                complete: true,
                ..LISTING
            }))),
            Duration::from_secs(2),
        );
        assert_eq!(
            done_line,
            "full sync  b@h::www  done in 0:02: 2,022 files, 3 sent, 58.6 KiB, 29.3 KiB/s average"
        );
        assert_eq!(
            done("r", None, Duration::ZERO),
            "full sync  r  done in 0:00"
        );
        let nothing_sent = Snapshot {
            bytes: 0,
            ..snapshot(None)
        };
        assert_eq!(
            done("r", Some(&nothing_sent), Duration::from_secs(1)),
            "full sync  r  done in 0:01: 0 B"
        );
        assert_eq!(
            retrying("r", Duration::from_secs(4)),
            "full sync  r  failed after 0:04; will retry (see the log)"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(size(0.0), "0 B");
        assert_eq!(size(1023.0), "1023 B");
        assert_eq!(size(1024.0), "1.0 KiB");
        assert_eq!(size(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(
            size(f64::MAX),
            format!("{:.1} PiB", f64::MAX / 1024f64.powi(5))
        );
    }

    #[test]
    fn labels_and_fitting() {
        assert_eq!(label(Path::new("/w"), "h::m", false), "h::m");
        assert_eq!(label(Path::new("/w\n"), "h::\x1bm", true), "/w? -> h::?m");
        assert_eq!(fit("abcdef", 4), "abc");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(fit("ééé", 3), "éé");
        assert_eq!(fit("abc", 0), "");
    }
}
