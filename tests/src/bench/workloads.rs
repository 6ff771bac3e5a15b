//! The workloads: each sets up a fresh watched tree and rsync daemon, runs one tool against it,
//! and measures. Every wait is bounded.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use tempfile::TempDir;

use super::probe::{wait_count, LandingProbe};
use super::stats::{secs, Latency};
use super::tools::{
    bulk_rsync, own_cpu_seconds, peak_rss_kib, RunningTool, ToolKind, ToolOptions, Usage,
};
use super::writer::{make_subdirs, write_files, Contents, WritePlan, Written, SUBDIRS};
use crate::{wait_for, RsyncDaemon, SshServer};

/// p99 above this means the tool did not keep up.
pub const KEEP_UP_P99_MS: f64 = 1000.0;

/// Settings shared by every workload.
#[derive(Clone, Debug)]
pub struct Bench {
    /// How the tools are configured.
    pub tools: ToolOptions,
    /// Longest wait for files to land after the writer stops.
    pub drain_timeout: Duration,
    /// Lines added to every rsync daemon's global section (empty: defaults, as slaves run it).
    pub slave_conf: String,
    /// Rate runs push over ssh to a real sshd on loopback (sersync only), not to the daemon.
    pub ssh: bool,
}

/// A fresh source tree and an rsync daemon with `remotes` modules (`r0`, `r1`, …), each holding
/// the same 16 subdirectories as the source (as after a first full sync).
struct Stage {
    dir: TempDir,
    daemon: RsyncDaemon,
    modules: Vec<String>,
    /// With [`Bench::ssh`]: the sshd the remotes are reached through (directories of its own
    /// instead of the daemon's modules).
    ssh: Option<SshServer>,
}

impl Stage {
    fn new(bench: &Bench, remotes: usize) -> Result<Stage, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let modules: Vec<String> = (0..remotes).map(|i| format!("r{i}")).collect();
        let names: Vec<&str> = modules.iter().map(String::as_str).collect();
        let daemon = RsyncDaemon::start_with(&names, &bench.slave_conf);
        let ssh = bench.ssh.then(SshServer::start).transpose()?;
        let stage = Stage {
            dir,
            daemon,
            modules,
            ssh,
        };
        make_subdirs(&stage.src()).map_err(|e| e.to_string())?;
        for m in &stage.modules {
            make_subdirs(&stage.slave(m)).map_err(|e| e.to_string())?;
        }
        Ok(stage)
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// Where module `m`'s files land: the daemon's module, or the sshd's directory.
    fn slave(&self, m: &str) -> PathBuf {
        match &self.ssh {
            Some(server) => server.slave_dir(m),
            None => self.daemon.module_path(m),
        }
    }

    fn probes(&self) -> Result<Vec<LandingProbe>, String> {
        self.modules
            .iter()
            .map(|m| LandingProbe::start(&self.slave(m)).map_err(|e| e.to_string()))
            .collect()
    }

    fn start(&self, bench: &Bench, kind: ToolKind) -> Result<RunningTool, String> {
        let names: Vec<&str> = self.modules.iter().map(String::as_str).collect();
        if let Some(server) = &self.ssh {
            if kind != ToolKind::Sersync {
                return Err(format!("{kind} is not measured over ssh"));
            }
            let slaves: Vec<PathBuf> = names.iter().map(|m| self.slave(m)).collect();
            return Ok(RunningTool::start_ssh(
                &self.src(),
                server,
                &slaves,
                self.dir.path(),
                &bench.tools,
            ));
        }
        RunningTool::start(
            kind,
            &self.src(),
            &self.daemon,
            &names,
            self.dir.path(),
            &bench.tools,
            true,
        )
    }

    /// Writes one file at the source's root and waits until every remote has it: the tool's
    /// cold start, ms (`None` past the drain timeout). The measured stream comes after it.
    fn first_file(&self, bench: &Bench) -> Result<Option<f64>, String> {
        let name = "first-file";
        let closed = Instant::now();
        std::fs::write(self.src().join(name), vec![b'x'; 30_000]).map_err(|e| e.to_string())?;
        let closed_at = closed.elapsed();
        let landed = wait_for(bench.drain_timeout, || {
            if self
                .modules
                .iter()
                .all(|m| self.slave(m).join(name).exists())
            {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
        Ok(landed
            .ok()
            .map(|()| (closed.elapsed() - closed_at).as_secs_f64() * 1000.0))
    }

    /// Removes everything from every module (the daemon keeps serving them).
    fn empty_modules(&self) -> Result<(), String> {
        for m in &self.modules {
            let path = self.slave(m);
            fs::remove_dir_all(&path)
                .and_then(|()| fs::create_dir(&path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// `Err` when the rsync daemon is no longer running: whatever was measured against it is
    /// void (see [`daemon_alive`]).
    fn check_daemon(&self) -> Result<(), String> {
        daemon_alive(&self.daemon)
    }

    fn slave_usage(&self) -> Usage {
        self.daemon.pid().map(Usage::settled).unwrap_or_default()
    }
}

/// `Err` (with the end of its log) when `daemon`'s process is gone or a zombie. On a shared
/// machine something else may take its port or kill it; the tool then (rightly) retries with
/// back-off, and a figure taken meanwhile would blame the tool.
fn daemon_alive(daemon: &RsyncDaemon) -> Result<(), String> {
    let state = daemon
        .pid()
        .and_then(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?.to_owned();
            rest.chars().next()
        });
    if matches!(state, Some(s) if s != 'Z') {
        return Ok(());
    }
    let log = daemon.log();
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    Err(format!(
        "the rsync daemon exited during the run; result discarded (its log ends: {})",
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// One tool at one write rate.
#[derive(Clone, Debug, Serialize)]
pub struct RateResult {
    /// `sersync` or `lsyncd`.
    pub tool: String,
    /// Remotes pushed to (a file has landed when it is on all of them).
    pub remotes: usize,
    /// Files per second asked of the writer.
    pub rate: f64,
    /// Files per second the writer achieved.
    pub achieved_rate: f64,
    /// Files written.
    pub written: usize,
    /// Files that landed on every remote within the drain timeout.
    pub landed: usize,
    /// close() → final name on the (slowest) remote, over the files that landed.
    pub latency: Option<Latency>,
    /// Last close() → last file landed; `None` when not all landed in time.
    pub drain_s: Option<f64>,
    /// CPU seconds of the tool and its rsync clients during the run.
    pub cpu_s: f64,
    /// CPU seconds of the rsync daemon and its per-connection children (the slave side).
    pub slave_cpu_s: f64,
    /// The tool's peak RSS, KiB.
    pub rss_peak_kib: u64,
    /// CPU seconds of the benchmark itself (writer, landing probes) during the run.
    pub bench_cpu_s: f64,
    /// Kernel queue overflows in the landing probes (figures around one are a little late).
    pub probe_overflows: u64,
    /// close() → landing of one file written before the measured stream, on every remote,
    /// ms: the cold start (sersync's first connection to each remote, over ssh the master
    /// connection). Kept out of the latency figures, which are the steady state; `None` when
    /// it did not land within the drain timeout.
    pub first_file_ms: Option<f64>,
}

impl RateResult {
    /// The writer reached at least 90% of the rate asked; below that the machine, not the
    /// tool, set the pace, and the run says nothing about the rate asked.
    pub fn writer_kept_pace(&self) -> bool {
        self.achieved_rate >= 0.9 * self.rate
    }

    /// The writer kept its pace, every file landed, and p99 < 1 s.
    pub fn kept_up(&self) -> bool {
        self.writer_kept_pace()
            && self.landed == self.written
            && self.latency.is_some_and(|l| l.p99_ms < KEEP_UP_P99_MS)
    }
}

/// Writes `rate` files/s for `seconds` into a tree `kind` watches, pushing to `remotes`.
pub fn rate_run(
    bench: &Bench,
    kind: ToolKind,
    rate: f64,
    seconds: f64,
    remotes: usize,
) -> Result<RateResult, String> {
    let stage = Stage::new(bench, remotes)?;
    let tool = stage.start(bench, kind)?;
    let first_file_ms = stage.first_file(bench)?;
    let probes = stage.probes()?;
    let (before, slave_before) = (tool.usage(), stage.slave_usage());
    let own_before = own_cpu_seconds();
    let plan = WritePlan {
        files: ((rate * seconds).round() as usize).max(1),
        rate: Some(rate),
        min_size: 10_000,
        max_size: 50_000,
    };
    let run = write_files(&stage.src(), plan, rate as u64 + 1).map_err(|e| e.to_string())?;
    let written = run.files.len();
    let until = run.ended + bench.drain_timeout;
    for probe in &probes {
        let left = until.saturating_duration_since(Instant::now());
        wait_count(written, left, || probe.count());
    }
    let own = own_cpu_seconds() - own_before;
    let usage = tool.usage().since(before);
    let slave = stage.slave_usage().since(slave_before);
    tool.stop();
    stage.check_daemon()?;

    let (latencies, last) = landing_latencies(&run.files, &probes);
    let landed = latencies.len();
    Ok(RateResult {
        tool: kind.to_string(),
        remotes,
        rate,
        achieved_rate: run.achieved_rate().round(),
        written,
        landed,
        latency: Latency::of(latencies),
        drain_s: last
            .filter(|_| landed == written)
            .map(|at| secs(at.saturating_duration_since(run.ended))),
        cpu_s: usage.cpu_s,
        slave_cpu_s: slave.cpu_s,
        rss_peak_kib: usage.rss_peak_kib,
        bench_cpu_s: own,
        probe_overflows: probes.iter().map(LandingProbe::overflows).sum(),
        first_file_ms,
    })
}

/// For every file on all probes' trees: close() → its arrival on the last of them; and when
/// the last of those files arrived.
fn landing_latencies(
    files: &[Written],
    probes: &[LandingProbe],
) -> (Vec<Duration>, Option<Instant>) {
    let arrivals: Vec<Vec<Option<Instant>>> = probes
        .iter()
        .map(|p| p.arrivals(files.iter().map(|f| f.rel.as_path())))
        .collect();
    let mut latencies = Vec::new();
    let mut last = None;
    for (i, file) in files.iter().enumerate() {
        let on_all = arrivals
            .iter()
            .try_fold(file.closed, |latest, a| a[i].map(|at| at.max(latest)));
        if let Some(at) = on_all {
            latencies.push(at.saturating_duration_since(file.closed));
            last = last.max(Some(at));
        }
    }
    (latencies, last)
}

/// The transport's ceiling: one bulk `rsync -a` of pre-written files.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingResult {
    /// Files copied (10–50 KB each, 16 subdirectories).
    pub files: usize,
    /// Times each copy was repeated (into an emptied module); the figures are the median.
    pub repeats: usize,
    /// One rsync process: wall seconds.
    pub one_process_s: f64,
    /// One rsync process: files per second.
    pub one_process_files_per_s: f64,
    /// One rsync process: CPU seconds of the client (user + system), median.
    pub one_process_cpu_s: f64,
    /// One rsync process: CPU seconds of the slave's rsync daemon, median.
    pub one_process_slave_cpu_s: f64,
    /// Two rsync processes in parallel, 8 subdirectories each: wall seconds.
    pub two_processes_s: f64,
    /// Two rsync processes in parallel: files per second.
    pub two_processes_files_per_s: f64,
}

/// Times `rsync -a` of `files` pre-written files with one process and with two, each
/// `repeats` times into an emptied module, and keeps the medians.
pub fn ceiling(bench: &Bench, files: usize, repeats: usize) -> Result<CeilingResult, String> {
    let stage = Stage::new(bench, 2)?;
    let plan = WritePlan {
        files,
        rate: None,
        min_size: 10_000,
        max_size: 50_000,
    };
    write_files(&stage.src(), plan, 7).map_err(|e| e.to_string())?;
    let mut whole = stage.src().into_os_string();
    whole.push("/");
    let whole = [PathBuf::from(whole)];
    let halves: Vec<Vec<PathBuf>> = (0..2)
        .map(|h| {
            (0..SUBDIRS)
                .filter(|i| i % 2 == h)
                .map(|i| stage.src().join(format!("d{i:02}")))
                .collect()
        })
        .collect();
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let (mut cpu, mut slave_cpu) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        stage.empty_modules()?;
        let (children, slave) = (children_cpu_s(), stage.slave_usage());
        one.push(bulk_rsync(&stage.daemon, "r0", &whole)?);
        cpu.push(Duration::from_secs_f64(children_cpu_s() - children));
        slave_cpu.push(Duration::from_secs_f64(
            stage.slave_usage().since(slave).cpu_s.max(0.0),
        ));
        stage.empty_modules()?;
        let started = Instant::now();
        thread::scope(|s| {
            let jobs: Vec<_> = halves
                .iter()
                .zip(["r0", "r1"])
                .map(|(dirs, module)| s.spawn(|| bulk_rsync(&stage.daemon, module, dirs)))
                .collect();
            jobs.into_iter().try_for_each(|j| {
                j.join()
                    .map_err(|_| "rsync thread panicked".to_string())?
                    .map(drop)
            })
        })?;
        two.push(started.elapsed());
    }
    let (one, two) = (median(one), median(two));
    let (cpu, slave_cpu) = (median(cpu), median(slave_cpu));
    Ok(CeilingResult {
        files,
        repeats: repeats.max(1),
        one_process_s: secs(one),
        one_process_files_per_s: (files as f64 / one.as_secs_f64()).round(),
        one_process_cpu_s: secs(cpu),
        one_process_slave_cpu_s: secs(slave_cpu),
        two_processes_s: secs(two),
        two_processes_files_per_s: (files as f64 / two.as_secs_f64()).round(),
    })
}

/// CPU seconds (user + system) of this process's reaped children so far.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given; no other memory is touched.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

/// A burst of tiny files written as fast as possible.
#[derive(Clone, Debug, Serialize)]
pub struct BurstResult {
    /// The tool.
    pub tool: String,
    /// Files written (100 bytes each).
    pub files: usize,
    /// How long the writer took.
    pub write_s: f64,
    /// Files that landed within the drain timeout.
    pub landed: usize,
    /// First file started → all landed; `None` when not all landed.
    pub all_landed_s: Option<f64>,
    /// Last close() → all landed.
    pub after_last_close_s: Option<f64>,
    /// CPU seconds of the tool and its rsync clients.
    pub cpu_s: f64,
    /// The tool's peak RSS, KiB.
    pub rss_peak_kib: u64,
    /// Kernel queue overflows in the landing probe.
    pub probe_overflows: u64,
}

/// Writes `files` files of 100 bytes, unpaced, and waits for all of them to land.
pub fn burst(bench: &Bench, kind: ToolKind, files: usize) -> Result<BurstResult, String> {
    let stage = Stage::new(bench, 1)?;
    let probes = stage.probes()?;
    let tool = stage.start(bench, kind)?;
    let before = tool.usage();
    let plan = WritePlan {
        files,
        rate: None,
        min_size: 100,
        max_size: 100,
    };
    let run = write_files(&stage.src(), plan, 11).map_err(|e| e.to_string())?;
    let landed = wait_count(files, bench.drain_timeout, || probes[0].count());
    let usage = tool.usage().since(before);
    tool.stop();
    stage.check_daemon()?;
    let last = (landed == files)
        .then(|| {
            probes[0]
                .arrivals(run.files.iter().map(|f| f.rel.as_path()))
                .into_iter()
                .max()
                .flatten()
        })
        .flatten();
    Ok(BurstResult {
        tool: kind.to_string(),
        files,
        write_s: secs(run.ended - run.started),
        landed,
        all_landed_s: last.map(|at| secs(at.saturating_duration_since(run.started))),
        after_last_close_s: last.map(|at| secs(at.saturating_duration_since(run.ended))),
        cpu_s: usage.cpu_s,
        rss_peak_kib: usage.rss_peak_kib,
        probe_overflows: probes[0].overflows(),
    })
}

/// One large file growing by appends.
#[derive(Clone, Debug, Serialize)]
pub struct AppendResult {
    /// The tool.
    pub tool: String,
    /// Final size, MiB.
    pub mib: usize,
    /// Append rate asked for, MiB/s (0: as fast as the disk takes it).
    pub mib_per_s: f64,
    /// How long the appends took (1 MiB per open–write–close).
    pub write_s: f64,
    /// Last close() → the slave's copy has the final size; `None` when it did not in time.
    pub converge_s: Option<f64>,
    /// CPU seconds of the tool and its rsync clients.
    pub cpu_s: f64,
    /// CPU seconds of the slave side.
    pub slave_cpu_s: f64,
}

/// Appends `mib` MiB to one file, 1 MiB per open–write–close, `mib_per_s` MiB a second
/// (0: unpaced), and waits for the slave's copy to reach the final size.
pub fn append(
    bench: &Bench,
    kind: ToolKind,
    mib: usize,
    mib_per_s: f64,
) -> Result<AppendResult, String> {
    let stage = Stage::new(bench, 1)?;
    let tool = stage.start(bench, kind)?;
    let (before, slave_before) = (tool.usage(), stage.slave_usage());
    let path = stage.src().join("big.log");
    let mut contents = Contents::new(5);
    let started = Instant::now();
    for i in 0..mib {
        if mib_per_s > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / mib_per_s);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| e.to_string())?;
        file.write_all(contents.bytes(1 << 20))
            .map_err(|e| e.to_string())?;
    }
    let ended = Instant::now();
    let remote = stage.slave("r0").join("big.log");
    let want = (mib as u64) << 20;
    let converged = wait_for(bench.drain_timeout, || match fs::metadata(&remote) {
        Ok(m) if m.len() == want => Ok(Instant::now()),
        Ok(m) => Err(format!("{} of {want} bytes", m.len())),
        Err(e) => Err(e.to_string()),
    });
    let usage = tool.usage().since(before);
    let slave = stage.slave_usage().since(slave_before);
    tool.stop();
    stage.check_daemon()?;
    Ok(AppendResult {
        tool: kind.to_string(),
        mib,
        mib_per_s,
        write_s: secs(ended - started),
        converge_s: converged.ok().map(|at| secs(at - ended)),
        cpu_s: usage.cpu_s,
        slave_cpu_s: slave.cpu_s,
    })
}

/// Whole trees created, renamed and deleted.
#[derive(Clone, Debug, Serialize)]
pub struct TreesResult {
    /// The tool.
    pub tool: String,
    /// Files in the tree (in 2-level directories of 20 files).
    pub files: usize,
    /// Tree created (files written) → slave equal; `None` when not in time.
    pub create_s: Option<f64>,
    /// `rename(tree, tree2)` → slave equal.
    pub rename_s: Option<f64>,
    /// `rm -r tree2` → slave equal.
    pub delete_s: Option<f64>,
}

/// Creates a tree of `files` files, renames its top directory, then deletes it; times how long
/// the slave takes to match after each step (names, types and sizes compared).
pub fn trees(bench: &Bench, kind: ToolKind, files: usize) -> Result<TreesResult, String> {
    let stage = Stage::new(bench, 1)?;
    let tool = stage.start(bench, kind)?;
    let (src, dst) = (stage.src(), stage.slave("r0"));
    let converge = |since: Instant| {
        wait_for(bench.drain_timeout, || {
            (listing(&src) == listing(&dst))
                .then(|| secs(since.elapsed()))
                .ok_or_else(|| "differs".to_string())
        })
        .ok()
    };
    let started = Instant::now();
    write_tree(&src.join("tree"), files).map_err(|e| e.to_string())?;
    let create_s = converge(started);
    let started = Instant::now();
    fs::rename(src.join("tree"), src.join("tree2")).map_err(|e| e.to_string())?;
    let rename_s = converge(started);
    let started = Instant::now();
    fs::remove_dir_all(src.join("tree2")).map_err(|e| e.to_string())?;
    let delete_s = converge(started);
    tool.stop();
    stage.check_daemon()?;
    Ok(TreesResult {
        tool: kind.to_string(),
        files,
        create_s,
        rename_s,
        delete_s,
    })
}

/// `root/aNN/bNN/fNN`: 20 files per leaf directory, 10 leaves per top directory.
fn write_tree(root: &Path, files: usize) -> std::io::Result<()> {
    let mut contents = Contents::new(3);
    for i in 0..files {
        let dir = root.join(format!("a{:02}/b{:02}", i / 200, (i / 20) % 10));
        if i % 20 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let len = contents.size(1_000, 5_000);
        fs::write(dir.join(format!("f{:02}", i % 20)), contents.bytes(len))?;
    }
    Ok(())
}

/// Every entry below `root`: relative path, whether a directory, size of files.
fn listing(root: &Path) -> Vec<(PathBuf, bool, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(child.clone());
            }
            out.push((
                child,
                meta.is_dir(),
                if meta.is_dir() { 0 } else { meta.len() },
            ));
        }
    }
    out.sort();
    out
}

/// Start-up on a large tree.
#[derive(Clone, Debug, Serialize)]
pub struct SetupResult {
    /// `sersync`, `lsyncd` or `inotifywait -r`.
    pub tool: String,
    /// Directories in the tree, its root included.
    pub dirs: usize,
    /// Start → ready (sersync: logged "running"; inotifywait: "Watches established.").
    pub ready_s: Option<f64>,
    /// sersync only: the directory walk as it logs it ("watches established", `elapsed_ms`).
    pub walk_s: Option<f64>,
    /// Start → the first of the files written every 50 ms at the root lands on the slave.
    pub first_change_s: Option<f64>,
    /// Peak RSS, KiB, after the first change (or when ready).
    pub rss_peak_kib: u64,
}

/// Creates `root/aNN/bNN/cN`: 1 + 100 + 10,000 + 100,000 = 110,101 directories.
pub fn make_big_tree(root: &Path) -> std::io::Result<usize> {
    let mut dirs = 1;
    fs::create_dir_all(root)?;
    for a in 0..100 {
        for b in 0..100 {
            for c in 0..10 {
                fs::create_dir_all(root.join(format!("a{a:02}/b{b:02}/c{c}")))?;
                dirs += 1;
            }
            dirs += 1;
        }
        dirs += 1;
    }
    Ok(dirs)
}

/// Starts `kind` on `tree` (no start-up sync) while a file is written at the tree's root every
/// 50 ms; measures until it is ready and until the first of those files is on the slave.
pub fn setup(
    bench: &Bench,
    kind: ToolKind,
    tree: &Path,
    dirs: usize,
) -> Result<SetupResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let daemon = RsyncDaemon::start_with(&["r0"], &bench.slave_conf);
    let probe = LandingProbe::start(&daemon.module_path("r0")).map_err(|e| e.to_string())?;
    let pinger = Pinger::start(tree);
    let started = Instant::now();
    let tool = RunningTool::start(
        kind,
        tree,
        &daemon,
        &["r0"],
        dir.path(),
        &bench.tools,
        false,
    );
    let ready = started.elapsed();
    let tool = tool?;
    let first = wait_for(bench.drain_timeout, || {
        (probe.count() > 0)
            .then(Instant::now)
            .ok_or_else(|| "nothing yet".to_string())
    });
    let rss = tool.usage().rss_peak_kib;
    let walk_s = tool.logged_walk().map(secs);
    tool.stop();
    pinger.stop();
    daemon_alive(&daemon)?;
    let first_change_s = first.ok().and_then(|_| {
        (0..PINGS)
            .filter_map(|i| probe.seen(Path::new(&ping_name(i))))
            .min()
            .map(|at| secs(at.saturating_duration_since(started)))
    });
    Ok(SetupResult {
        tool: kind.to_string(),
        dirs,
        ready_s: (kind == ToolKind::Sersync).then(|| secs(ready)),
        walk_s,
        first_change_s,
        rss_peak_kib: rss,
    })
}

/// `inotifywait -m -r` on `tree`: time until "Watches established." and its peak RSS.
pub fn setup_inotifywait(
    tree: &Path,
    dirs: usize,
    timeout: Duration,
) -> Result<SetupResult, String> {
    let started = Instant::now();
    let mut child = Command::new("inotifywait")
        .args(["-m", "-r", "-e", "close_write"])
        .arg(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("inotifywait: {e} (apt-get install inotify-tools)"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Watches established") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let ready = rx.recv_timeout(timeout).ok();
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    Ok(SetupResult {
        tool: "inotifywait -r".into(),
        dirs,
        ready_s: ready.map(|at| secs(at - started)),
        walk_s: None,
        first_change_s: None,
        rss_peak_kib: rss,
    })
}

/// Writes `ping-N` at a tree's root every 50 ms (at most [`PINGS`] files), then removes them
/// when stopped.
struct Pinger {
    root: PathBuf,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

/// Most files a [`Pinger`] writes (one minute's worth).
const PINGS: usize = 1200;

fn ping_name(i: usize) -> String {
    format!("ping-{i:04}")
}

impl Pinger {
    fn start(root: &Path) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, dir) = (stop.clone(), root.to_path_buf());
        let thread = thread::spawn(move || {
            for i in 0..PINGS {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let _ = fs::write(dir.join(ping_name(i)), b"ping");
                thread::sleep(Duration::from_millis(50));
            }
        });
        Pinger {
            root: root.to_path_buf(),
            stop,
            thread,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        for i in 0..PINGS {
            let _ = fs::remove_file(self.root.join(ping_name(i)));
        }
    }
}
