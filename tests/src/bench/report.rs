//! Presenting results: terminal tables, the target check, the JSON document and the SVG plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::workloads::{
    AppendResult, BurstResult, CeilingResult, RateResult, SetupResult, TreesResult,
};

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The machine and the settings of the run.
    pub context: Vec<(String, String)>,
    /// Rate runs, one remote.
    pub rates: Vec<RateResult>,
    /// Rate runs fanned out to several remotes.
    pub fanout: Vec<RateResult>,
    /// Bulk rsync.
    pub ceiling: Option<CeilingResult>,
    /// Bursts of tiny files.
    pub burst: Vec<BurstResult>,
    /// Large appended file.
    pub append: Vec<AppendResult>,
    /// Tree create / rename / delete.
    pub trees: Vec<TreesResult>,
    /// Start-up on a large tree.
    pub setup: Vec<SetupResult>,
    /// The targets, checked.
    pub targets: Vec<TargetCheck>,
}

/// One target of the issue and how this run did against it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: String,
    /// The target.
    pub target: String,
    /// The figure this run got.
    pub measured: String,
    /// Met (`None`: not measured in this run).
    pub met: Option<bool>,
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.2}{unit}"))
        .unwrap_or_else(|| "—".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The header of the rate table.
pub fn rate_header() -> String {
    format!(
        "{:<8} {:>3} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9}",
        "tool",
        "rem",
        "rate",
        "writer",
        "written",
        "landed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "first ms",
        "drain s",
        "cpu s",
        "slave s",
        "bench s",
        "peak RSS"
    )
}

/// One row of the rate table.
pub fn rate_row(r: &RateResult) -> String {
    let (p50, p99, max) = r.latency.map_or(("—".into(), "—".into(), "—".into()), |l| {
        (
            format!("{:.1}", l.p50_ms),
            format!("{:.1}", l.p99_ms),
            format!("{:.1}", l.max_ms),
        )
    });
    format!(
        "{:<8} {:>3} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>9}{}",
        r.tool,
        r.remotes,
        r.rate,
        r.achieved_rate,
        r.written,
        r.landed,
        p50,
        p99,
        max,
        r.first_file_ms.map_or("—".into(), |ms| format!("{ms:.0}")),
        opt(r.drain_s, ""),
        r.cpu_s,
        r.slave_cpu_s,
        r.bench_cpu_s,
        mib(r.rss_peak_kib),
        if !r.writer_kept_pace() {
            "  ← writer < 90% of the rate"
        } else if r.kept_up() {
            ""
        } else {
            "  ← behind"
        }
    )
}

/// The ceiling, as text.
pub fn ceiling_text(c: &CeilingResult) -> String {
    format!(
        "bulk rsync -a of {} files (median of {}): one process {:.2} s = {} files/s, cpu {:.2} s = {:.3} s per 1,000 files (slave {:.2} s); two in parallel {:.2} s = {} files/s",
        c.files, c.repeats, c.one_process_s, c.one_process_files_per_s, c.one_process_cpu_s,
        1000.0 * c.one_process_cpu_s / c.files as f64, c.one_process_slave_cpu_s,
        c.two_processes_s, c.two_processes_files_per_s
    )
}

/// A burst result, as text.
pub fn burst_text(b: &BurstResult) -> String {
    format!(
        "{:<8} {} tiny files: written in {:.2} s; landed {}/{}; all landed {} after the first write, {} after the last; cpu {:.2} s; peak RSS {}",
        b.tool, b.files, b.write_s, b.landed, b.files,
        opt(b.all_landed_s, " s"), opt(b.after_last_close_s, " s"), b.cpu_s, mib(b.rss_peak_kib)
    )
}

/// An append result, as text.
pub fn append_text(a: &AppendResult) -> String {
    format!(
        "{:<8} {} MiB appended in 1 MiB writes ({} MiB/s asked) in {:.2} s; slave complete {} after the last close; cpu {:.2} s (slave {:.2} s)",
        a.tool, a.mib, a.mib_per_s, a.write_s, opt(a.converge_s, " s"), a.cpu_s, a.slave_cpu_s
    )
}

/// A trees result, as text.
pub fn trees_text(t: &TreesResult) -> String {
    format!(
        "{:<8} tree of {} files: create → equal {}, rename → equal {}, delete → equal {}",
        t.tool,
        t.files,
        opt(t.create_s, " s"),
        opt(t.rename_s, " s"),
        opt(t.delete_s, " s")
    )
}

/// A set-up result, as text.
pub fn setup_text(s: &SetupResult) -> String {
    format!(
        "{:<15} {} dirs: ready {} (its walk: {}), first change on the slave {}, peak RSS {}",
        s.tool,
        s.dirs,
        opt(s.ready_s, " s"),
        opt(s.walk_s, " s"),
        opt(s.first_change_s, " s"),
        mib(s.rss_peak_kib)
    )
}

/// The highest rate `tool` kept up with (every file landed, p99 < 1 s), in files/s.
pub fn sustained(rates: &[RateResult], tool: &str) -> Option<f64> {
    rates
        .iter()
        .filter(|r| r.tool == tool && r.kept_up())
        .map(|r| r.rate)
        .reduce(f64::max)
}

/// Checks the targets against what `report` holds.
pub fn check_targets(report: &Report) -> Vec<TargetCheck> {
    let ours = sustained(&report.rates, "sersync");
    let theirs = sustained(&report.rates, "lsyncd");
    let ceiling = report.ceiling.as_ref().map(|c| c.one_process_files_per_s);
    let slow = report
        .rates
        .iter()
        .find(|r| r.tool == "sersync" && r.rate == 50.0);
    let setup = report.setup.iter().find(|s| s.tool == "sersync");
    let over_ssh = report
        .context
        .iter()
        .any(|(k, v)| k == "transport" && v.starts_with("ssh"));
    let (p50_max, p99_max) = if over_ssh {
        (50.0, 150.0)
    } else {
        (15.0, 40.0)
    };
    // The fastest rate kept up with, and its CPU per 1,000 files against bulk rsync's.
    let fastest = report
        .rates
        .iter()
        .filter(|r| r.tool == "sersync" && r.kept_up() && r.written > 0)
        .max_by(|a, b| a.rate.total_cmp(&b.rate));
    let bulk_cpu = report
        .ceiling
        .as_ref()
        .filter(|c| c.files > 0)
        .map(|c| 1000.0 * c.one_process_cpu_s / c.files as f64);
    let check = |name: &str, target: &str, measured: Option<(String, bool)>| TargetCheck {
        name: name.into(),
        target: target.into(),
        measured: measured
            .as_ref()
            .map_or("not measured".into(), |(m, _)| m.clone()),
        met: measured.map(|(_, ok)| ok),
    };
    vec![
        check(
            "sustained rate (p99 < 1 s, nothing lost)",
            "≥ 4,000 files/s",
            report.rates.iter().any(|r| r.tool == "sersync").then(|| {
                let r = ours.unwrap_or(0.0);
                (format!("{r} files/s"), r >= 4000.0)
            }),
        ),
        check(
            "vs lsyncd's sustained rate",
            "≥ 8×",
            ours.zip(theirs)
                .map(|(o, t)| (format!("{:.1}× ({o} vs {t})", o / t), o >= 8.0 * t)),
        ),
        check(
            "vs one bulk rsync -a",
            "≥ 90%",
            ours.zip(ceiling).map(|(o, c)| {
                (
                    format!("{:.0}% ({o} vs {c} files/s)", 100.0 * o / c),
                    o >= 0.9 * c,
                )
            }),
        ),
        check(
            "cpu per 1,000 files vs bulk rsync -a",
            "≤ 1.3×",
            fastest.zip(bulk_cpu).map(|(r, bulk)| {
                let ours = 1000.0 * r.cpu_s / r.written as f64;
                (
                    format!(
                        "{:.2}× ({ours:.3} vs {bulk:.3} s, at {} files/s)",
                        ours / bulk,
                        r.rate
                    ),
                    ours <= 1.3 * bulk,
                )
            }),
        ),
        check(
            if over_ssh {
                "latency at 50 files/s, ssh"
            } else {
                "latency at 50 files/s, daemon"
            },
            if over_ssh {
                "p50 ≤ 50 ms, p99 ≤ 150 ms"
            } else {
                "p50 ≤ 15 ms, p99 ≤ 40 ms"
            },
            slow.and_then(|r| r.latency).map(|l| {
                (
                    format!("p50 {:.1} ms, p99 {:.1} ms", l.p50_ms, l.p99_ms),
                    l.p50_ms <= p50_max && l.p99_ms <= p99_max,
                )
            }),
        ),
        check(
            "watch set-up, 110,101 dirs",
            "first sync ≤ 1.0 s, ≤ 15 MB RSS",
            setup
                .and_then(|s| s.first_change_s.map(|t| (t, s.rss_peak_kib)))
                .map(|(t, kib)| {
                    (
                        format!("{t:.2} s, {}", mib(kib)),
                        t <= 1.0 && kib as f64 * 1024.0 <= 15e6,
                    )
                }),
        ),
    ]
}

/// The targets as text lines.
pub fn targets_text(targets: &[TargetCheck]) -> Vec<String> {
    targets
        .iter()
        .map(|t| {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "—",
            };
            format!(
                "{:<44} {:<28} {:<40} {}",
                t.name, t.target, t.measured, verdict
            )
        })
        .collect()
}

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Log–log plot of p50 (solid) and p99 (dashed) latency against the write rate, one colour per
/// tool, with the 1 s line; hand-written SVG.
pub fn svg(rates: &[RateResult]) -> String {
    let with_latency: Vec<&RateResult> = rates.iter().filter(|r| r.latency.is_some()).collect();
    let (x_lo, x_hi) = decades(with_latency.iter().map(|r| r.rate), 10.0, 10_000.0);
    let y_hi_seen = with_latency
        .iter()
        .filter_map(|r| r.latency.map(|l| l.p99_ms))
        .fold(1000.0, f64::max);
    let (y_lo, y_hi) = decades(
        with_latency
            .iter()
            .filter_map(|r| r.latency.map(|l| l.p50_ms)),
        1.0,
        y_hi_seen,
    );
    let x = |v: f64| LEFT + (v.log10() - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - (v.max(1e-3).log10() - y_lo) / (y_hi - y_lo) * (H - TOP - BOTTOM);

    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">close() → file on the slave: latency against write rate</text>\n",
        (W - RIGHT + LEFT) / 2.0
    );
    axes(&mut s, (x_lo, x_hi), (y_lo, y_hi), &x, &y);
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y1:.1}\" y2=\"{y1:.1}\" stroke=\"#888\" stroke-dasharray=\"2,3\"/>\
         <text x=\"{}\" y=\"{:.1}\" fill=\"#888\">1 s</text>",
        W - RIGHT,
        W - RIGHT + 4.0,
        y(1000.0) + 4.0,
        y1 = y(1000.0)
    );
    let mut tools: Vec<&str> = Vec::new();
    for r in &with_latency {
        if !tools.contains(&r.tool.as_str()) {
            tools.push(&r.tool);
        }
    }
    for (i, tool) in tools.iter().enumerate() {
        let colour = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"][i % 4];
        let points: Vec<(f64, f64, f64)> = with_latency
            .iter()
            .filter(|r| r.tool == *tool)
            .filter_map(|r| r.latency.map(|l| (r.rate, l.p50_ms, l.p99_ms)))
            .collect();
        for (dash, p99) in [("", false), ("6,4", true)] {
            let coords: Vec<String> = points
                .iter()
                .map(|&(rate, p50_ms, p99_ms)| {
                    let v = if p99 { p99_ms } else { p50_ms };
                    format!("{:.1},{:.1}", x(rate), y(v))
                })
                .collect();
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
                coords.join(" ")
            );
            for c in &coords {
                let (cx, cy) = c.split_once(',').expect("x,y");
                let _ = writeln!(
                    s,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>"
                );
            }
        }
        let ly = TOP + 20.0 + 40.0 * i as f64;
        let lx = W - RIGHT + 30.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{}\">{tool} p50</text>\n\
             <line x1=\"{lx}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\
             <text x=\"{}\" y=\"{}\">{tool} p99</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            lx + 24.0,
            ly + 16.0,
            ly + 16.0,
            lx + 30.0,
            ly + 20.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The log10 range covering `values` and `at_least_lo..at_least_hi`, widened to whole decades.
fn decades(values: impl Iterator<Item = f64>, at_least_lo: f64, at_least_hi: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((at_least_lo, at_least_hi), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    )
}

/// Frame, decade grid lines with 1-2-5 ticks, tick labels and axis titles.
fn axes(
    s: &mut String,
    xr: (f64, f64),
    yr: (f64, f64),
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = writeln!(
        s,
        "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        x1 - x0,
        y1 - y0
    );
    for v in ticks(xr) {
        let px = x(v);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{y0}\" y2=\"{y1}\" stroke=\"#eee\"/>\
             <text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y1 + 16.0,
            label(v)
        );
    }
    for v in ticks(yr) {
        let py = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            py + 4.0,
            label(v)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">write rate (files/s, log scale)</text>\n\
         <text transform=\"translate(18,{:.1}) rotate(-90)\" text-anchor=\"middle\">latency (ms, log scale)</text>",
        (x0 + x1) / 2.0,
        H - 18.0,
        (y0 + y1) / 2.0
    );
}

/// 1, 2, 5 × each power of ten within the log10 range.
fn ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    (lo as i32..=hi as i32)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| v.log10() <= hi + 1e-9)
        .collect()
}

fn label(v: f64) -> String {
    if v >= 1000.0 && v % 1000.0 == 0.0 {
        format!("{}k", v / 1000.0)
    } else {
        format!("{v}")
    }
}
