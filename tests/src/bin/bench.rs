//! `bench`: measures this project's sersync against lsyncd and against one bulk `rsync -a`, on
//! loopback, in one run. See `docs/benchmarks.md` for what each figure means.
//!
//! ```text
//! cargo build --release -p sersync
//! cargo run --release -p sersync-tests --bin bench -- --json bench.json --svg bench.svg
//! ```

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use sersync_tests::bench::report::{self, Report};
use sersync_tests::bench::tools::{ToolKind, ToolOptions};
use sersync_tests::bench::workloads::{self, Bench, RateResult};

/// Benchmark sersync against lsyncd and the transport's ceiling (rsync daemon on 127.0.0.1).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Write rates to try, files/s, ascending; a tool stops at the first rate it falls behind at
    /// (p99 ≥ 1 s or files missing).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,200,500,1000,2000,4000,8000"
    )]
    rates: Vec<f64>,
    /// Seconds of writing per rate (and for the fan-out run).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Tools to measure.
    #[arg(long, value_delimiter = ',', default_value = "sersync,lsyncd")]
    tools: Vec<Tool>,
    /// Workloads to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,rates,fanout,burst,append,trees,setup"
    )]
    workloads: Vec<Workload>,
    /// Longest wait, seconds, for files to land after the writer stops (and for each
    /// convergence).
    #[arg(long, default_value_t = 20.0)]
    drain_timeout: f64,
    /// Files in the bulk-rsync ceiling run.
    #[arg(long, default_value_t = 5_000)]
    ceiling_files: usize,
    /// Times each ceiling copy is repeated (the median is kept).
    #[arg(long, default_value_t = 3)]
    ceiling_repeats: usize,
    /// Write rate of the fan-out run, files/s.
    #[arg(long, default_value_t = 1_000.0)]
    fanout_rate: f64,
    /// Remotes in the fan-out run.
    #[arg(long, default_value_t = 4)]
    fanout_remotes: usize,
    /// Tiny files in the burst.
    #[arg(long, default_value_t = 20_000)]
    burst_files: usize,
    /// Size the appended file grows to, MiB (the issue's target size is 1024).
    #[arg(long, default_value_t = 256)]
    append_mib: usize,
    /// Append rate, MiB/s (0: as fast as the disk takes it).
    #[arg(long, default_value_t = 64.0)]
    append_rate: f64,
    /// Files in the tree that is created, renamed and deleted.
    #[arg(long, default_value_t = 2_000)]
    tree_files: usize,
    /// Full sizes: 10 s per rate, 20,000-file ceiling, 100,000-file burst, 60 s drain timeout
    /// (overrides those options).
    #[arg(long)]
    full: bool,
    /// sersync's `<commonParams params>` (lsyncd and the ceiling use `-a`).
    #[arg(long, default_value = "-a", allow_hyphen_values = true)]
    sersync_params: String,
    /// Raw XML added to sersync's config, e.g. `<engine settleMs="5"/>`.
    #[arg(long, default_value = "")]
    engine: String,
    /// `socket options` for the slave's rsync daemon (e.g. TCP_NODELAY); default: none, as
    /// slaves usually run it.
    #[arg(long)]
    slave_sockopts: Option<String>,
    /// Rate and fan-out runs push over ssh to a real sshd on 127.0.0.1 (sersync only; needs
    /// openssh-server and root), not to the rsync daemon.
    #[arg(long)]
    ssh: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the latency plot (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tool {
    Sersync,
    Lsyncd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// One bulk `rsync -a` of pre-written files.
    Ceiling,
    /// The paced writer at each rate, one remote.
    Rates,
    /// The paced writer at `--fanout-rate`, `--fanout-remotes` remotes.
    Fanout,
    /// Tiny files, unpaced.
    Burst,
    /// One file growing by 1 MiB appends.
    Append,
    /// A tree created, renamed, deleted.
    Trees,
    /// Start-up on 110,101 directories.
    Setup,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.full {
        args.seconds = 10.0;
        args.ceiling_files = 20_000;
        args.burst_files = 100_000;
        args.drain_timeout = 60.0;
    }
    if let Err(e) = locate_sersync() {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }
    let kinds = tool_kinds(&args);
    let bench = Bench {
        tools: ToolOptions {
            sersync_params: args.sersync_params.clone(),
            engine_xml: args.engine.clone(),
        },
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        slave_conf: args
            .slave_sockopts
            .as_ref()
            .map_or(String::new(), |o| format!("socket options = {o}\n")),
        ssh: args.ssh,
    };
    let mut report = Report {
        context: context(&args),
        ..Report::default()
    };
    for (k, v) in &report.context {
        println!("{k}: {v}");
    }
    for workload in &args.workloads {
        run_workload(*workload, &args, &bench, &kinds, &mut report);
    }
    report.targets = report::check_targets(&report);
    println!("\n== targets (sersync)");
    for line in report::targets_text(&report.targets) {
        println!("{line}");
    }
    write_outputs(&args, &report)
}

/// Points `SERSYNC_BIN` at the release `sersync` next to this binary unless it is set.
fn locate_sersync() -> Result<(), String> {
    if let Some(bin) = std::env::var_os("SERSYNC_BIN") {
        println!("sersync: {} (SERSYNC_BIN)", PathBuf::from(bin).display());
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("sersync");
    if !bin.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release -p sersync` first, or set SERSYNC_BIN",
            bin.display()
        ));
    }
    println!("sersync: {}", bin.display());
    std::env::set_var("SERSYNC_BIN", bin);
    Ok(())
}

/// The requested tools, without lsyncd when it is not installed.
fn tool_kinds(args: &Args) -> Vec<ToolKind> {
    let lsyncd = installed("lsyncd", "--version");
    if !lsyncd && args.tools.contains(&Tool::Lsyncd) {
        println!("lsyncd is not installed (apt-get install lsyncd): measuring sersync alone");
    }
    args.tools
        .iter()
        .filter_map(|t| match t {
            Tool::Sersync => Some(ToolKind::Sersync),
            Tool::Lsyncd => lsyncd.then_some(ToolKind::Lsyncd),
        })
        .collect()
}

fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn first_line(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not installed".into())
}

/// The machine and the settings, printed first and kept in the JSON.
fn context(args: &Args) -> Vec<(String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    vec![
        ("unix time".into(), now.to_string()),
        ("cores".into(), cores.to_string()),
        ("kernel".into(), read("/proc/sys/kernel/osrelease")),
        ("load average at start".into(), read("/proc/loadavg")),
        ("rsync".into(), first_line("rsync", "--version")),
        ("lsyncd".into(), first_line("lsyncd", "--version")),
        ("sersync params".into(), args.sersync_params.clone()),
        ("sersync extra xml".into(), args.engine.clone()),
        (
            "slave socket options".into(),
            args.slave_sockopts
                .clone()
                .unwrap_or_else(|| "default".into()),
        ),
        (
            "transport".into(),
            if args.ssh {
                "ssh (sshd on 127.0.0.1)"
            } else {
                "rsync daemon"
            }
            .into(),
        ),
        ("seconds per rate".into(), args.seconds.to_string()),
        ("drain timeout s".into(), args.drain_timeout.to_string()),
    ]
}

fn run_workload(
    workload: Workload,
    args: &Args,
    bench: &Bench,
    kinds: &[ToolKind],
    report: &mut Report,
) {
    println!("\n== {workload:?}");
    match workload {
        Workload::Ceiling => {
            match workloads::ceiling(bench, args.ceiling_files, args.ceiling_repeats) {
                Ok(c) => {
                    println!("{}", report::ceiling_text(&c));
                    report.ceiling = Some(c);
                }
                Err(e) => println!("ceiling: {e}"),
            }
        }
        Workload::Rates => report.rates = rates(args, bench, kinds),
        Workload::Fanout => {
            println!("{}", report::rate_header());
            for &kind in kinds {
                let run = workloads::rate_run(
                    bench,
                    kind,
                    args.fanout_rate,
                    args.seconds,
                    args.fanout_remotes,
                );
                report.fanout.extend(show(kind, run, report::rate_row));
            }
        }
        Workload::Burst => {
            for &kind in kinds {
                let run = workloads::burst(bench, kind, args.burst_files);
                report.burst.extend(show(kind, run, report::burst_text));
            }
        }
        Workload::Append => {
            for &kind in kinds {
                let run = workloads::append(bench, kind, args.append_mib, args.append_rate);
                report.append.extend(show(kind, run, report::append_text));
            }
        }
        Workload::Trees => {
            for &kind in kinds {
                let run = workloads::trees(bench, kind, args.tree_files);
                report.trees.extend(show(kind, run, report::trees_text));
            }
        }
        Workload::Setup => setup(bench, kinds, report),
    }
}

/// Prints a result (or the error) and passes the result on.
fn show<T>(kind: ToolKind, run: Result<T, String>, text: fn(&T) -> String) -> Option<T> {
    match run {
        Ok(r) => {
            println!("{}", text(&r));
            Some(r)
        }
        Err(e) => {
            println!("{kind}: {e}");
            None
        }
    }
}

/// Every rate for every tool, tools interleaved per rate so machine drift hits both alike; a
/// tool is not tried at higher rates once it fell behind.
fn rates(args: &Args, bench: &Bench, kinds: &[ToolKind]) -> Vec<RateResult> {
    println!("{}", report::rate_header());
    let mut results = Vec::new();
    let mut behind = Vec::new();
    for &rate in &args.rates {
        for &kind in kinds {
            if behind.contains(&kind) {
                continue;
            }
            let run = workloads::rate_run(bench, kind, rate, args.seconds, 1);
            match show(kind, run, report::rate_row) {
                Some(r) => {
                    if !r.kept_up() {
                        behind.push(kind);
                    }
                    results.push(r);
                }
                None => behind.push(kind),
            }
        }
    }
    for &kind in kinds {
        let name = kind.to_string();
        let sustained = report::sustained(&results, &name);
        println!(
            "{name}: sustained {}",
            sustained.map_or("no rate tried".into(), |r| format!("{r} files/s"))
        );
    }
    results
}

/// Start-up on a generated 110,101-directory tree: each tool, then `inotifywait -r`.
fn setup(bench: &Bench, kinds: &[ToolKind], report: &mut Report) {
    let Ok(dir) = tempfile::tempdir() else {
        println!("setup: no temp dir");
        return;
    };
    let tree = dir.path().join("tree");
    let dirs = match workloads::make_big_tree(&tree) {
        Ok(n) => n,
        Err(e) => {
            println!("setup: generating the tree: {e}");
            return;
        }
    };
    for &kind in kinds {
        let run = workloads::setup(bench, kind, &tree, dirs);
        report.setup.extend(show(kind, run, report::setup_text));
    }
    match workloads::setup_inotifywait(&tree, dirs, bench.drain_timeout) {
        Ok(r) => {
            println!("{}", report::setup_text(&r));
            report.setup.push(r);
        }
        Err(e) => println!("inotifywait: {e}"),
    }
}

fn write_outputs(args: &Args, report: &Report) -> ExitCode {
    let mut ok = true;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report).expect("plain data serializes");
        ok &= write(path, &text);
    }
    if let Some(path) = &args.svg {
        ok &= write(path, &report::svg(&report.rates));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write(path: &PathBuf, text: &str) -> bool {
    match std::fs::write(path, text) {
        Ok(()) => {
            println!("wrote {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("bench: {}: {e}", path.display());
            false
        }
    }
}
