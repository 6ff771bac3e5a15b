//! The engine in-process against the real kernel and a real rsync daemon: kernel queue
//! overflow, the crontab, excluded directories, a burst of 50,000 files.

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sersync::config::{parse_str, Config, CrontabConfig};
use sersync::engine::{Engine, FirstSync, RunOptions};
use sersync::filter::Filter;
use sersync::watch::{Root, Watcher};
use sersync_plugin_sdk::{EventKind, RelPath, WatchId};
use sersync_tests::{assert_converges, ConfigBuilder, RsyncDaemon};

/// The builder's configuration, with its state in the test's own directory (not the
/// default `/var/lib/sersync`).
fn config(builder: &ConfigBuilder, dir: &Path) -> Config {
    let path = builder.write(dir);
    let mut config = parse_str(&fs::read_to_string(&path).unwrap(), &path).unwrap();
    config.engine.state_dir = dir.join("sersync-state");
    config
}

/// Creates the subdirectories [`burst`] writes into (before the watch, so they are watched).
fn subdirs(dir: &Path, count: usize) {
    for d in 0..count.div_ceil(1000) {
        fs::create_dir(dir.join(format!("d{d}"))).unwrap();
    }
}

/// Creates `count` files in `dir`, 1,000 per (existing, watched) subdirectory: two kernel
/// events each.
fn burst(dir: &Path, count: usize) {
    for i in 0..count {
        fs::write(
            dir.join(format!("d{}", i / 1000)).join(format!("f{i}")),
            b"",
        )
        .unwrap();
    }
}

#[test]
fn a_kernel_queue_overflow_becomes_a_rescan_that_names_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    fs::create_dir(&root).unwrap();
    subdirs(&root, 50_000);
    let config = config(&ConfigBuilder::new(&root), dir.path());
    let watcher = watcher(&root, &config);
    let stats = watcher.stats();
    // The reader is not running: the kernel queue (max_queued_events) overflows.
    burst(&root, 50_000);
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let reader = std::thread::spawn(move || watcher.run(tx, stopper));
    let mut events = Vec::new();
    while let Ok(batch) = rx.recv_timeout(Duration::from_secs(2)) {
        events.extend(batch);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap().unwrap();
    let rescanned_root = events
        .iter()
        .any(|e| e.kind == EventKind::Rescan && e.path == RelPath::ROOT);
    let named: std::collections::HashSet<&RelPath> = events.iter().map(|e| &e.path).collect();
    let limit: u64 = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if limit < 100_000 {
        assert!(
            stats.overflows() >= 1,
            "50,000 creates (100,000 events) must overflow a queue of {limit}"
        );
        assert!(
            rescanned_root,
            "an overflow must become a rescan of the root"
        );
    } else {
        // A huge queue: no overflow, so every file must be named.
        assert!(rescanned_root || named.len() >= 50_000);
    }
    assert_eq!(
        stats.directories(),
        51,
        "every new directory is watched after the overflow"
    );
}

#[test]
fn excluded_directories_are_never_watched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    for d in ["a/b", "skip/deep/er", "x/.svn/y"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let config = config(
        &ConfigBuilder::new(&root)
            .exclude("skip")
            .exclude(r"(.*)\.svn"),
        dir.path(),
    );
    let watcher = watcher(&root, &config);
    // root, a, a/b, x — not skip/…, not x/.svn/….
    assert_eq!(watcher.stats().directories(), 4);
}

/// A watcher on `root` with `config`'s filter and event switches.
fn watcher(root: &Path, config: &Config) -> Watcher {
    let root = Root {
        watch: WatchId(0),
        path: root.to_path_buf(),
    };
    Watcher::new(
        vec![root],
        std::sync::Arc::new(Filter::new(&config.filter)),
        config.events,
        false,
    )
    .unwrap()
}

/// Runs the engine for `config` until `done` returns, then stops it.
fn run_engine(config: &Config, first: FirstSync, done: impl FnOnce()) {
    let prepared = Engine::prepare(config, &RunOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let engine = Engine::start(prepared, first, move |error| {
        let _ = tx.send(error.map(|e| e.to_string()));
    });
    done();
    engine.stop(Duration::from_secs(10));
    if let Ok(Some(error)) = rx.try_recv() {
        panic!("the reader failed: {error}");
    }
}

#[test]
fn a_queue_overflow_while_the_engine_is_busy_still_converges_on_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let daemon = RsyncDaemon::start(&["www"]);
    subdirs(&src, 50_000);
    let config = config(&ConfigBuilder::new(&src).remote(&daemon, "www"), dir.path());
    // Watches are established at prepare: the kernel queues from then on, but nothing reads.
    let prepared = Engine::prepare(&config, &RunOptions::default()).unwrap();
    burst(&src, 50_000);
    let engine = Engine::start(prepared, FirstSync::CatchUp, |_| {});
    let started = Instant::now();
    sersync_tests::wait_for(Duration::from_secs(30), || {
        (engine.watcher_stats().overflows() >= 1)
            .then_some(())
            .ok_or("no overflow yet".to_string())
    })
    .expect("100,000 queued events overflow the kernel queue");
    assert_converges(&src, &daemon.module_path("www"), Duration::from_secs(180));
    eprintln!("overflow: 50,000 files queued while the reader was stalled; converged in {:?}; overflows seen: {}", started.elapsed(), engine.watcher_stats().overflows());
    engine.stop(Duration::from_secs(10));
}

#[test]
fn the_crontab_pushes_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"source").unwrap();
    let daemon = RsyncDaemon::start(&["www"]);
    let mut config = config(&ConfigBuilder::new(&src).remote(&daemon, "www"), dir.path());
    // The file's schedule is in minutes; one second here.
    config.crontab = Some(CrontabConfig {
        every: Duration::from_secs(1),
    });
    run_engine(&config, FirstSync::CatchUp, || {
        // Nothing happens in the tree: only the crontab can bring the file over, and repair
        // what someone breaks on the slave.
        assert_converges(&src, &daemon.module_path("www"), Duration::from_secs(20));
        // (A file made newer on the slave would be kept: the 2.5.4 default params carry -u.)
        fs::remove_file(daemon.module_path("www").join("f")).unwrap();
        fs::write(daemon.module_path("www").join("stray"), b"extra").unwrap();
        assert_converges(&src, &daemon.module_path("www"), Duration::from_secs(20));
    });
}
