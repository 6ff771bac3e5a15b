//! The change stream end to end: a master (`sersync` with the `nats` sink) publishing while
//! files are written, real `nats-server` JetStream nodes on loopback, and `sersync follow`
//! edges pulling from the master's rsync daemon module. Every follower must equal the source
//! byte for byte, through a NATS node killed, a follower killed for 30 s, and a stream whose
//! retention dropped what a follower missed.
//!
//! Needs `nats-server` (Debian package `nats-server`; `.ci/run` installs it): without it each
//! test says SKIPPED.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use sersync_tests::follow::{master_plugin_xml, Follower};
use sersync_tests::nats::{nats_server_program, NatsCluster};
use sersync_tests::random::Walk;
use sersync_tests::{paced_writer, ConfigBuilder, RsyncDaemon, Sersync};

/// How long a follower may take to equal the source once writing stopped.
const CONVERGE: Duration = Duration::from_secs(90);

fn installed() -> bool {
    let found = nats_server_program().is_some();
    if !found {
        println!("SKIPPED: nats-server is not installed (Debian package `nats-server`); this test needs a real JetStream");
    }
    found
}

/// The master: its tree is the module `src` of an rsync daemon (what the followers pull
/// from), watched by `sersync -m stream` publishing to `stream` on `servers`.
struct Master {
    daemon: RsyncDaemon,
    root: PathBuf,
    _dir: tempfile::TempDir,
    sersync: Sersync,
}

impl Master {
    fn start(servers: &str, stream: &str, create: &str) -> Master {
        let daemon = RsyncDaemon::start(&["src"]);
        let root = daemon.module_path("src");
        let dir = tempfile::tempdir().unwrap();
        let (plugin, enable) = master_plugin_xml(servers, stream, create);
        let config = ConfigBuilder::new(&root)
            .head_xml(&plugin)
            .sersync_xml(&enable)
            .write(dir.path());
        let sersync = Sersync::start(&config, &["-m", "stream"], dir.path());
        Master {
            daemon,
            root,
            _dir: dir,
            sersync,
        }
    }

    /// A directory outside the watched tree, on its file system (for the walk's moves out).
    fn outside(&self) -> PathBuf {
        self.root.parent().unwrap().join("outside")
    }
}

/// `n` followers of `stream`, consumers `edge0…`, each in a directory of its own.
fn followers(
    n: usize,
    servers: &str,
    stream: &str,
    master: &Master,
) -> Vec<(tempfile::TempDir, Follower)> {
    (0..n)
        .map(|i| {
            let dir = tempfile::tempdir().unwrap();
            let f = Follower::start(
                dir.path(),
                servers,
                stream,
                &format!("edge{i}"),
                &master.daemon,
                "src",
            );
            (dir, f)
        })
        .collect()
}

fn converge_all(master: &Master, followers: &[(tempfile::TempDir, Follower)]) {
    for (_, f) in followers {
        if let Err(e) = sersync_tests::wait_for(CONVERGE, || {
            sersync_tests::tree_diff(&master.root, f.tree())
        }) {
            panic!(
                "follower {} did not converge: {e}\n--- follower log\n{}\n--- master log\n{}",
                f.tree().display(),
                tail(&f.log()),
                tail(&master.sersync.log())
            );
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn full_pulls(f: &Follower) -> f64 {
    f.metric("sersync_follow_full_pulls_total").unwrap_or(-1.0)
}

/// A random walk (hostile names, moves in and out, `rm -rf` while writing) and a paced
/// writer at 50 files/s, at once; returns when both are done.
fn load(master: &Master, seed: u64, steps: usize, paced: usize) {
    let dir = master.root.join("paced");
    std::fs::create_dir_all(&dir).unwrap();
    let writer = paced_writer(dir, "f", paced, 50);
    let mut walk = Walk::new(&master.root, &master.outside(), seed);
    walk.run(steps, 200);
    writer.join().unwrap();
}

/// Ignored in CI while it fails: under load a follower was seen to keep a directory where the
/// source had made a symbolic link (`c d/$(q)`: source a link, follower a directory with an
/// entry in it), in 2 of 3 runs on a loaded 2-core box. Issue 19 stays open for it; run it
/// with `cargo test -p sersync-tests --test stream -- --ignored three_followers`.
#[test]
#[ignore = "a follower can keep a directory the source replaced by a link (issue 19, open)"]
fn three_followers_converge_byte_for_byte_from_a_three_node_cluster() {
    if !installed() {
        return;
    }
    let cluster = NatsCluster::start(3);
    let servers = cluster.servers();
    let master = Master::start(&servers, "A", r#"replicas="3""#);
    let followers = followers(3, &servers, "A", &master);
    load(&master, 19, 1500, 250);
    converge_all(&master, &followers);
    for (_, f) in &followers {
        assert_eq!(
            full_pulls(f),
            1.0,
            "only the first start's full pull\n{}",
            f.log()
        );
    }
}

/// Ignored in CI while it fails: under the random walk a follower was seen to keep a file the
/// source had removed (`\xff\xfe-bin/\xff\xfe-bin`), once in two runs on a loaded 2-core
/// box; the node's death itself lost nothing. Issue 19 stays open for it.
#[test]
#[ignore = "a follower can keep a name the source removed under the random walk (issue 19, open)"]
fn a_nats_node_killed_during_the_load_loses_nothing() {
    if !installed() {
        return;
    }
    let mut cluster = NatsCluster::start(3);
    let servers = cluster.servers();
    let master = Master::start(&servers, "B", r#"replicas="3""#);
    let followers = followers(2, &servers, "B", &master);
    let dir = master.root.join("paced");
    std::fs::create_dir_all(&dir).unwrap();
    let writer = paced_writer(dir, "f", 500, 50);
    thread::sleep(Duration::from_secs(3));
    cluster.kill(0);
    let mut walk = Walk::new(&master.root, &master.outside(), 23);
    walk.run(600, 200);
    writer.join().unwrap();
    converge_all(&master, &followers);
    for (_, f) in &followers {
        assert_eq!(
            full_pulls(f),
            1.0,
            "no full pull beyond the first\n{}",
            f.log()
        );
    }
}

#[test]
fn a_follower_down_for_30_s_catches_up_from_the_stream_without_a_full_pull() {
    if !installed() {
        return;
    }
    let cluster = NatsCluster::single();
    let servers = cluster.servers();
    let master = Master::start(&servers, "C", "");
    let mut followers = followers(1, &servers, "C", &master);
    let dir = master.root.join("paced");
    std::fs::create_dir_all(&dir).unwrap();
    // 40 s of writes at 25 files/s; the follower is SIGKILLed 3 s in and back 30 s later.
    let writer = paced_writer(dir.clone(), "f", 1000, 25);
    thread::sleep(Duration::from_secs(3));
    let f = &mut followers[0].1;
    f.kill9();
    let mut walk = Walk::new(&master.root, &master.outside(), 29);
    walk.run(400, 200);
    thread::sleep(Duration::from_secs(27));
    f.resume();
    writer.join().unwrap();
    converge_all(&master, &followers);
    let f = &followers[0].1;
    assert!(
        f.log()
            .contains("catching up from the stream, no full pull"),
        "{}",
        f.log()
    );
    assert_eq!(
        full_pulls(f),
        0.0,
        "the restarted process pulled nothing whole\n{}",
        f.log()
    );
}

#[test]
fn a_follower_past_the_streams_retention_pulls_whole_once_and_converges() {
    if !installed() {
        return;
    }
    let cluster = NatsCluster::single();
    let servers = cluster.servers();
    let master = Master::start(&servers, "D", r#"maxMsgs="5""#);
    let mut followers = followers(1, &servers, "D", &master);
    let f = &mut followers[0].1;
    f.stop();
    // Written one by one, slowly enough to be separate batches: far more than 5 messages.
    let dir = master.root.join("paced");
    std::fs::create_dir_all(&dir).unwrap();
    paced_writer(dir, "f", 40, 10).join().unwrap();
    thread::sleep(Duration::from_secs(1));
    f.resume();
    converge_all(&master, &followers);
    let f = &followers[0].1;
    assert!(
        f.log().contains("no longer holds the changes"),
        "{}",
        f.log()
    );
    assert_eq!(
        full_pulls(f),
        1.0,
        "one full pull after the restart\n{}",
        f.log()
    );
    if std::env::var_os("SERSYNC_SHOW_LOGS").is_some() {
        println!("{}", f.log());
    }
}

/// Writes `count` files of ~1 KiB as `dir/{prefix}{i}` at `per_second`, returning when each
/// `close()` returned.
fn timed_writes(
    dir: &std::path::Path,
    prefix: &str,
    count: usize,
    per_second: u32,
) -> Vec<std::time::Instant> {
    use std::time::Instant;
    let start = Instant::now();
    (0..count)
        .map(|i| {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(per_second));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            std::fs::write(
                dir.join(format!("{prefix}{i}")),
                format!("{prefix}{i}\n").repeat(64),
            )
            .unwrap();
            Instant::now()
        })
        .collect()
}

/// Latencies (close on the master → final name on the follower) of `count` files written at
/// `rate` into `master.root/dir`, waiting up to `drain` after the last write; `None` for a
/// file that did not land.
fn landings(
    master: &Master,
    probe: &sersync_tests::bench::probe::LandingProbe,
    dir: &str,
    count: usize,
    rate: u32,
    drain: Duration,
) -> Vec<Option<Duration>> {
    let src = master.root.join(dir);
    std::fs::create_dir_all(&src).unwrap();
    thread::sleep(Duration::from_millis(500));
    let closed = timed_writes(&src, "f", count, rate);
    let names: Vec<PathBuf> = (0..count)
        .map(|i| PathBuf::from(dir).join(format!("f{i}")))
        .collect();
    sersync_tests::bench::probe::wait_count(count, drain, || {
        probe
            .arrivals(names.iter().map(PathBuf::as_path))
            .iter()
            .filter(|a| a.is_some())
            .count()
    });
    probe
        .arrivals(names.iter().map(PathBuf::as_path))
        .iter()
        .zip(&closed)
        .map(|(a, c)| a.map(|a| a.saturating_duration_since(*c)))
        .collect()
}

/// The figures of docs/benchmarks.md ("Change stream"): latency at 50 files/s, the highest
/// rate kept, the master's CPU per 1,000 files with 1 and 10 followers. Not a timed test:
/// `cargo test -p sersync-tests --test stream -- --ignored --nocapture bench_` (with
/// `SERSYNC_BIN=target/release/sersync` for release figures).
#[test]
#[ignore]
fn bench_change_stream() {
    use sersync_tests::bench::probe::LandingProbe;
    use sersync_tests::bench::stats::Latency;
    use sersync_tests::bench::tools::Usage;
    if !installed() {
        return;
    }
    let cluster = NatsCluster::single();
    let servers = cluster.servers();
    let master = Master::start(&servers, "BENCH", "");
    let mut fs = followers(1, &servers, "BENCH", &master);
    let probe = LandingProbe::start(fs[0].1.tree()).unwrap();

    let lat = landings(&master, &probe, "r50", 500, 50, Duration::from_secs(20));
    let landed: Vec<Duration> = lat.iter().flatten().copied().collect();
    let l = Latency::of(landed.clone()).unwrap();
    println!(
        "FIGURE latency at 50 files/s (500 files, 1 follower): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, landed {}/500",
        l.p50_ms, l.p99_ms, l.max_ms, landed.len()
    );

    let mut kept = 0;
    for rate in [100u32, 200, 400, 800, 1600] {
        let count = (rate * 5) as usize;
        let lat = landings(
            &master,
            &probe,
            &format!("r{rate}"),
            count,
            rate,
            Duration::from_secs(10),
        );
        let landed: Vec<Duration> = lat.iter().flatten().copied().collect();
        let all = landed.len() == count;
        let l = Latency::of(landed).unwrap();
        println!(
            "FIGURE rate {rate} files/s for 5 s: landed {}/{count}, p50 {:.1} ms, p99 {:.1} ms",
            lat.iter().flatten().count(),
            l.p50_ms,
            l.p99_ms
        );
        // Kept: every file on the follower, the slowest within 2 s of its close().
        if all && l.max_ms < 2000.0 {
            kept = rate;
        } else {
            break;
        }
    }
    println!("FIGURE highest rate kept (all files, max latency < 2 s): {kept} files/s");
    drop(probe);

    for n in [1usize, 10] {
        while fs.len() < n {
            let dir = tempfile::tempdir().unwrap();
            let f = Follower::start(
                dir.path(),
                &servers,
                "BENCH",
                &format!("cpu{}", fs.len()),
                &master.daemon,
                "src",
            );
            fs.push((dir, f));
        }
        thread::sleep(Duration::from_secs(2));
        let pid = master.sersync.pid();
        let daemon_pid = master.daemon.pid().unwrap();
        let before = (Usage::of(pid), Usage::of(daemon_pid));
        let dir = master.root.join(format!("cpu{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        timed_writes(&dir, "f", 2000, 200);
        converge_all(&master, &fs);
        let after = (Usage::of(pid), Usage::settled(daemon_pid));
        println!(
            "FIGURE {n} follower(s): master sersync CPU {:.3} s per 1,000 files; its rsync daemon (serving the pulls) {:.3} s per 1,000 files",
            after.0.since(before.0).cpu_s / 2.0,
            after.1.since(before.1).cpu_s / 2.0
        );
    }
}
