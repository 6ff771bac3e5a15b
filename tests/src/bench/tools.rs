//! The tools under test (our `sersync`, lsyncd), started against a watched tree and an rsync
//! daemon, and the CPU and memory they use, read from `/proc`.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::USER;
use crate::{wait_for, ConfigBuilder, RsyncDaemon, Sersync, SshServer};

/// Which tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    /// This project's `sersync` (release build).
    Sersync,
    /// lsyncd with `default.rsync`, `delay = 0`.
    Lsyncd,
}

impl fmt::Display for ToolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ToolKind::Sersync => "sersync",
            ToolKind::Lsyncd => "lsyncd",
        })
    }
}

/// How the tools are configured.
#[derive(Clone, Debug)]
pub struct ToolOptions {
    /// sersync's `<commonParams params>`.
    pub sersync_params: String,
    /// Raw XML added to sersync's `<head>` (an `<engine …/>` element), may be empty.
    pub engine_xml: String,
}

/// A tool running against a watched tree.
pub enum RunningTool {
    /// Our sersync.
    Sersync(Sersync),
    /// lsyncd.
    Lsyncd(Lsyncd),
}

impl RunningTool {
    /// Starts `kind` watching `src`, pushing to `modules` of `daemon`; its config and log go in
    /// `dir`. Returns once it is watching (sersync: logged "running"; lsyncd: its start-up sync
    /// finished). `init = false` skips lsyncd's start-up sync and does not wait at all.
    pub fn start(
        kind: ToolKind,
        src: &Path,
        daemon: &RsyncDaemon,
        modules: &[&str],
        dir: &Path,
        options: &ToolOptions,
        init: bool,
    ) -> Result<RunningTool, String> {
        match kind {
            ToolKind::Sersync => {
                let mut config = ConfigBuilder::new(src)
                    .common_params(&options.sersync_params)
                    .head_xml(&options.engine_xml);
                for module in modules {
                    config = config.remote(daemon, module);
                }
                let config = config.write(dir);
                Ok(RunningTool::Sersync(Sersync::start(&config, &[], dir)))
            }
            ToolKind::Lsyncd => Lsyncd::start(src, daemon, modules, dir, init).map(Self::Lsyncd),
        }
    }

    /// Our sersync watching `src`, pushing over ssh through `server` to the directories
    /// `slaves`; its config and log go in `dir`. Returns once it logged "running".
    pub fn start_ssh(
        src: &Path,
        server: &SshServer,
        slaves: &[PathBuf],
        dir: &Path,
        options: &ToolOptions,
    ) -> RunningTool {
        let mut config = ConfigBuilder::new(src)
            .common_params(&options.sersync_params)
            .head_xml(&options.engine_xml);
        for slave in slaves {
            config = config.ssh_remote(slave);
        }
        let config = config.write(dir);
        let path = server.path_env();
        RunningTool::Sersync(Sersync::start_with_env(
            &config,
            &[],
            dir,
            &[("PATH", &path)],
        ))
    }

    /// The tool's process id.
    pub fn pid(&self) -> u32 {
        match self {
            RunningTool::Sersync(s) => s.pid(),
            RunningTool::Lsyncd(l) => l.child.id(),
        }
    }

    /// CPU and peak memory so far, once its rsync children have exited (see [`Usage::settled`]).
    pub fn usage(&self) -> Usage {
        Usage::settled(self.pid())
    }

    /// sersync's own account of its directory walk: `elapsed_ms` of its "watches established"
    /// log line (`None` for lsyncd, or when not logged).
    pub fn logged_walk(&self) -> Option<Duration> {
        let RunningTool::Sersync(s) = self else {
            return None;
        };
        let log = s.log();
        let line = log.lines().find(|l| l.contains("watches established"))?;
        let value = line.split("elapsed_ms=").nth(1)?;
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().map(Duration::from_millis)
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(self) {
        match self {
            RunningTool::Sersync(mut s) => {
                s.terminate(Duration::from_secs(5));
            }
            RunningTool::Lsyncd(l) => drop(l),
        }
    }
}

/// lsyncd 2.2.3 as `anchors.md` ran it: `default.rsync`, `delay = 0`, `archive = true`.
pub struct Lsyncd {
    child: Child,
    log: PathBuf,
}

impl Lsyncd {
    fn start(
        src: &Path,
        daemon: &RsyncDaemon,
        modules: &[&str],
        dir: &Path,
        init: bool,
    ) -> Result<Lsyncd, String> {
        let log = dir.join("lsyncd.log");
        let config = dir.join("lsyncd.lua");
        fs::write(&config, lsyncd_config(src, daemon, modules, &log, init))
            .map_err(|e| e.to_string())?;
        let out = File::create(dir.join("lsyncd.out")).map_err(|e| e.to_string())?;
        let child = Command::new("lsyncd")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("lsyncd: {e} (apt-get install lsyncd)"))?;
        let mut lsyncd = Lsyncd { child, log };
        if init {
            lsyncd.wait_startup_sync()?;
        }
        Ok(lsyncd)
    }

    /// Waits for "Startup of … finished": lsyncd watches the tree and has synced it once.
    fn wait_startup_sync(&mut self) -> Result<(), String> {
        let log = self.log.clone();
        let child = &mut self.child;
        wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(format!("lsyncd exited with {status}")));
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Startup of") && text.contains("finished") {
                Ok(Ok(()))
            } else {
                Err("no start-up sync yet".to_string())
            }
        })?
    }
}

impl Drop for Lsyncd {
    fn drop(&mut self) {
        // SAFETY: plain system call on a child we own and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let child = &mut self.child;
        let exited = wait_for(Duration::from_secs(5), || match child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err("still running".to_string()),
        });
        if exited.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lsyncd_config(
    src: &Path,
    daemon: &RsyncDaemon,
    modules: &[&str],
    log: &Path,
    init: bool,
) -> String {
    let mut lua = format!(
        "settings {{ nodaemon = true, insist = true, logfile = {:?} }}\n",
        log.display().to_string()
    );
    for module in modules {
        lua.push_str(&format!(
            "sync {{ default.rsync, source = {src:?}, target = \"{USER}@127.0.0.1::{module}\", \
             delay = 0,{init}\n  rsync = {{ archive = true, password_file = {pass:?}, \
             _extra = {{ \"--port={port}\" }} }} }}\n",
            src = src.display().to_string(),
            pass = daemon.password_file().display().to_string(),
            port = daemon.port(),
            // `init` is lsyncd's start-up sync function; `false` switches it off.
            init = if init { "" } else { " init = false," },
        ));
    }
    lua
}

/// CPU time and peak memory of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// utime + stime of the process plus cutime + cstime: its own CPU and that of every child
    /// it has reaped (the tool's rsync clients), seconds.
    pub cpu_s: f64,
    /// Peak resident set (`VmHWM`) of the process itself, KiB.
    pub rss_peak_kib: u64,
}

impl Usage {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (zeros when the process is gone).
    pub fn of(pid: u32) -> Usage {
        Usage {
            cpu_s: cpu_seconds(pid).unwrap_or(0.0),
            rss_peak_kib: peak_rss_kib(pid).unwrap_or(0),
        }
    }

    /// [`Usage::of`] once `pid` has no live children (waiting at most 5 s): a child's CPU time
    /// is added to `cutime`/`cstime` only when its parent reaps it, so a sample taken while the
    /// last rsync still runs would miss that rsync entirely.
    pub fn settled(pid: u32) -> Usage {
        let _ = wait_for(Duration::from_secs(5), || {
            if has_children(pid) {
                Err("children running".to_string())
            } else {
                Ok(())
            }
        });
        Usage::of(pid)
    }

    /// CPU spent between `earlier` and `self` (peak RSS: `self`'s).
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu_s: (self.cpu_s - earlier.cpu_s).max(0.0),
            rss_peak_kib: self.rss_peak_kib,
        }
    }
}

/// utime + stime + cutime + cstime (fields 14–17 of `/proc/<pid>/stat`), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_seconds(&stat, 11..15)
}

/// The sum of the clock-tick `fields` of a `/proc/…/stat` line (counted from field 3), seconds.
fn stat_seconds(stat: &str, fields: std::ops::Range<usize>) -> Option<f64> {
    // The command name (field 2) may hold spaces; the fields after it start at field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let all: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = all
        .get(fields)?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// utime + stime of this process (all its threads), in seconds.
pub fn own_cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_seconds(&stat, 11..13).unwrap_or(0.0)
}

/// Whether any process has `pid` as its parent (field 4 of `/proc/<p>/stat`).
fn has_children(pid: u32) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        fs::read_to_string(p.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let rest = stat.get(stat.rfind(')')? + 2..)?.to_owned();
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
            == Some(pid)
    })
}

/// `VmHWM` of `/proc/<pid>/status`, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs one `rsync -a` of `sources` into `module` of `daemon`; returns its wall time.
pub fn bulk_rsync(
    daemon: &RsyncDaemon,
    module: &str,
    sources: &[PathBuf],
) -> Result<Duration, String> {
    let started = Instant::now();
    let status = Command::new("rsync")
        .arg("-a")
        .arg(format!("--port={}", daemon.port()))
        .arg(format!(
            "--password-file={}",
            daemon.password_file().display()
        ))
        .args(sources)
        .arg(format!("{USER}@127.0.0.1::{module}/"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("rsync: {e}"))?;
    if status.success() {
        Ok(started.elapsed())
    } else {
        Err(format!("rsync -a exited with {status}"))
    }
}
