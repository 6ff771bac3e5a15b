//! Deletes that can never wipe the slaves: the watch root deleted, renamed away or unmounted
//! (while running and at start-up with `-r`), an empty root pushed whole, and deletes beyond
//! the budget. Real kernel, real rsync daemon; each ends with the slave compared with the
//! source.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sersync_tests::{assert_converges, free_port, http, wait_for, Sersync, Stage};

const WAIT: Duration = Duration::from_secs(30);
/// Fast retries, and a settle window that keeps a burst of deletes in one batch.
const ENGINE: &str =
    "<engine retryInitialMs=\"100\" retryMaxMs=\"1000\" settleMs=\"300\" maxDelayMs=\"1000\"/>\n";

fn fill(dir: &Path, count: usize) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..count {
        let at = if i % 2 == 0 {
            dir.join(format!("f{i}"))
        } else {
            dir.join(format!("sub/g{i}"))
        };
        fs::write(at, format!("file {i}\n")).unwrap();
    }
}

fn count(dir: &Path) -> usize {
    walk(dir)
}

fn walk(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A stage with 51 files in the source, pushed to the slave by `sersync -r`, and the control
/// endpoint on a free port.
fn synced(rsync_xml: &str) -> (Stage, Sersync, u16, PathBuf) {
    let stage = Stage::new(&["www"]);
    fill(&stage.src, 51);
    let port = free_port();
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n{ENGINE}"
        ))
        .rsync_xml(rsync_xml)
    });
    let sersync = Sersync::start(&config, &["-r"], stage.path());
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
    assert_eq!(count(&stage.dst("www")), 51);
    (stage, sersync, port, config)
}

/// Waits until `/status` says the root is lost and its lane held, and `/metrics` says so.
fn assert_shown_lost(port: u16, root: &Path) {
    let status = wait_for(WAIT, || {
        let (_, body) = http(port, "GET", "/status")?;
        (body.contains("\"lost\": \"") && body.contains("\"held\": \"watch root"))
            .then_some(body.clone())
            .ok_or(body)
    })
    .unwrap();
    assert!(status.contains(&root.display().to_string()), "{status}");
    let (_, metrics) = http(port, "GET", "/metrics").unwrap();
    let line = format!(
        "sersync_watch_root_missing{{root=\"{}\"}} 1",
        root.display()
    );
    assert!(metrics.contains(&line), "{metrics}");
}

fn assert_shown_back(port: u16, root: &Path) {
    wait_for(WAIT, || {
        let (_, metrics) = http(port, "GET", "/metrics")?;
        let line = format!(
            "sersync_watch_root_missing{{root=\"{}\"}} 0",
            root.display()
        );
        metrics.contains(&line).then_some(()).ok_or(metrics)
    })
    .unwrap();
}

#[test]
fn a_root_renamed_away_keeps_the_slave_and_the_lane_resumes_when_it_is_back() {
    let (stage, sersync, port, _) = synced("");
    let away = stage.path().join("away");
    fs::rename(&stage.src, &away).unwrap();
    sersync.wait_for_log("watch root lost", WAIT).unwrap();
    assert_shown_lost(port, &stage.src);
    // What happens in the directory moved away is not this watch's any more.
    fs::remove_file(away.join("f0")).unwrap();
    fs::write(away.join("written-away"), "x").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&stage.dst("www")), 51, "the slave keeps every file");
    fs::rename(&away, &stage.src).unwrap();
    sersync.wait_for_log("watch root is back", WAIT).unwrap();
    assert_shown_back(port, &stage.src);
    // The rescan of the whole root brings what changed meanwhile.
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
    fs::write(stage.src.join("after"), "y").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
}

#[test]
fn a_root_deleted_keeps_the_slave_and_a_root_moved_back_in_converges() {
    let (stage, sersync, port, _) = synced("");
    fs::remove_dir_all(&stage.src).unwrap();
    sersync.wait_for_log("watch root lost", WAIT).unwrap();
    assert_shown_lost(port, &stage.src);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&stage.dst("www")), 51, "the slave keeps every file");
    // Re-created (as a deploy does: built beside it, renamed in), with one file fewer.
    let next = stage.path().join("next");
    fill(&next, 50);
    fs::rename(&next, &stage.src).unwrap();
    sersync.wait_for_log("watch root is back", WAIT).unwrap();
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
}

#[test]
fn an_empty_root_at_start_up_with_r_keeps_the_slave_until_it_has_content() {
    // As after a reboot where the root's file system did not mount: the mount point is an
    // empty directory, the slave holds everything.
    let stage = Stage::new(&["www"]);
    fill(&stage.dst("www"), 51);
    let config = stage.config("www", |c| c.head_xml(ENGINE));
    let sersync = Sersync::start(&config, &["-r"], stage.path());
    sersync
        .wait_for_log("refusing to sync the empty watch root", WAIT)
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&stage.dst("www")), 51, "the slave keeps every file");
    // The content arrives: the full sync, retried, goes through.
    let content = stage.path().join("content");
    fill(&content, 20);
    for entry in fs::read_dir(&content).unwrap().flatten() {
        fs::rename(entry.path(), stage.src.join(entry.file_name())).unwrap();
    }
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
}

#[test]
fn allow_empty_root_lets_a_full_sync_empty_the_slave() {
    let stage = Stage::new(&["www"]);
    fill(&stage.dst("www"), 5);
    let config = stage.config("www", |c| {
        c.head_xml(ENGINE)
            .rsync_xml("      <deleteSafety allowEmptyRoot=\"true\"/>\n")
    });
    let _sersync = Sersync::start(&config, &["-r"], stage.path());
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
}

#[test]
fn deletes_beyond_the_budget_are_held_then_approved_and_converge() {
    let (stage, sersync, port, _) = synced("      <deleteSafety maxDeletes=\"10\"/>\n");
    for entry in fs::read_dir(&stage.src).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
    fs::write(stage.src.join("kept"), "k").unwrap();
    sersync
        .wait_for_log("held by the delete budget", WAIT)
        .unwrap();
    let status = wait_for(WAIT, || {
        let (_, body) = http(port, "GET", "/status")?;
        body.contains("held by the delete budget")
            .then_some(body.clone())
            .ok_or(body)
    })
    .unwrap();
    assert!(status.contains("would be deleted"), "{status}");
    std::thread::sleep(Duration::from_secs(2));
    let dst = stage.dst("www");
    assert!(
        dst.join("f0").exists() && dst.join("sub/g1").exists(),
        "held, not sent"
    );
    assert!(
        dst.join("kept").exists(),
        "the batch's other changes went out"
    );
    let (code, body) = http(port, "POST", "/approve").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_converges(&stage.src, &dst, WAIT);
}

/// A slave holding `remote` files, a source holding `source` of them (the same names and
/// contents) and one more, `sersync -r` with `safety` (a `<deleteSafety>` element): the full
/// sync is held with nothing deleted on the slave (`expect` in the message), then released by
/// `POST /approve` and converges.
fn full_sync_held_until_approved(remote: usize, source: usize, safety: &str, expect: &str) {
    let stage = Stage::new(&["www"]);
    fill(&stage.dst("www"), remote);
    fill(&stage.src, source);
    fs::write(stage.src.join("only"), "o").unwrap();
    let port = free_port();
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n{ENGINE}"
        ))
        .rsync_xml(safety)
    });
    let sersync = Sersync::start(&config, &["-r"], stage.path());
    sersync
        .wait_for_log("held by the delete budget", WAIT)
        .unwrap();
    let log = sersync.log();
    assert!(log.contains(expect), "{log}");
    assert!(log.contains("first: "), "{log}");
    let status = wait_for(WAIT, || {
        let (_, body) = http(port, "GET", "/status")?;
        body.contains("would be deleted")
            .then_some(body.clone())
            .ok_or(body)
    })
    .unwrap();
    assert!(status.contains(expect), "{status}");
    // Counted before anything was deleted: nothing is, while the rest was sent.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&stage.dst("www")), remote + 1, "held, not sent");
    assert!(stage.dst("www").join("only").exists());
    let (code, body) = http(port, "POST", "/approve").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
}

#[test]
fn a_full_sync_beyond_the_budget_deletes_nothing_until_approved() {
    full_sync_held_until_approved(
        40,
        0,
        "      <deleteSafety maxDeletes=\"5\"/>\n",
        "(maxDeletes 5;",
    );
}

#[test]
fn a_full_sync_deleting_more_than_max_delete_percent_of_the_remote_is_held() {
    // 12 of the remote's 21 entries (20 files and sub/) would go: 57 % > 50 %. No count
    // budget, so only the share holds it.
    full_sync_held_until_approved(
        20,
        8,
        "      <deleteSafety maxDeletes=\"0\" maxDeletePercent=\"50\"/>\n",
        "12 entries would be deleted",
    );
}

/// Runs `mount` (or `umount`) with `args`; false when it is refused.
fn mount(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts `at`, retrying for up to 15 s while it is busy: an rsync run, or a warm one
/// waiting for its next list (ended after 5 s unused, `rsync::warm::IDLE`), has its working
/// directory in the root, as any process running there would.
fn unmount(at: &str) -> bool {
    sersync_tests::peers::poll(Duration::from_secs(15), || mount("umount", &[at]))
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for at in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

#[test]
fn a_root_whose_file_system_is_unmounted_keeps_the_slave_and_resumes_when_remounted() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a file system on the watch root needs root");
        return;
    }
    let stage = Stage::new(&["www"]);
    let store = stage.path().join("store");
    fs::create_dir(&store).unwrap();
    let (src, store_s) = (stage.src.display().to_string(), store.display().to_string());
    if !mount("mount", &["-t", "tmpfs", "sersync-test", &store_s]) {
        eprintln!("skipped: mount -t tmpfs is refused here");
        return;
    }
    let mut mounted = Mounted(vec![store.clone()]);
    fill(&store, 51);
    assert!(mount("mount", &["--bind", &store_s, &src]));
    mounted.0.push(stage.src.clone());
    let port = free_port();
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n{ENGINE}"
        ))
    });
    let sersync = Sersync::start(&config, &["-r"], stage.path());
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
    // Unmounted: the root shows the empty directory below the mount point, on another
    // device. A crontab or POST /sync now would have pushed it with --delete.
    assert!(unmount(&src));
    mounted.0.pop();
    sersync.wait_for_log("watch root lost", WAIT).unwrap();
    assert_shown_lost(port, &stage.src);
    let (code, _) = http(port, "POST", "/sync").unwrap();
    assert_eq!(code, 200);
    fs::write(store.join("while-unmounted"), "u").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&stage.dst("www")), 51, "the slave keeps every file");
    // Mounted again: same device, watched again, rescanned.
    assert!(mount("mount", &["--bind", &store_s, &src]));
    mounted.0.push(stage.src.clone());
    sersync.wait_for_log("watch root is back", WAIT).unwrap();
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
    assert!(stage.dst("www").join("while-unmounted").exists());
    drop(sersync);
    drop(mounted);
}

/// A mount namespace of the test's own (`unshare -m --propagation private`), held by a
/// sleeping process: what is mounted in it is seen by nothing outside (not by the slave, not
/// by the machine), reached through `nsenter` and `/proc/PID/root`, and gone with it.
struct Namespace(std::process::Child);

impl Namespace {
    /// None when `unshare` cannot make one here.
    fn new() -> Option<Namespace> {
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "600"])
            .spawn()
            .ok()?;
        let namespace = Namespace(holder);
        let ours = fs::read_link("/proc/self/ns/mnt").ok()?;
        let theirs = format!("/proc/{}/ns/mnt", namespace.0.id());
        wait_for(Duration::from_secs(10), || match fs::read_link(&theirs) {
            Ok(ns) if ns != ours => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .ok()?;
        Some(namespace)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// Runs `program` with `args` in the namespace; false when it fails.
    fn run(&self, program: &str, args: &[&str]) -> bool {
        Command::new("nsenter")
            .args(["-t", &self.pid(), "-m", "--", program])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `path` as the namespace sees it.
    fn path(&self, path: &Path) -> PathBuf {
        Path::new("/proc")
            .join(self.pid())
            .join("root")
            .join(path.strip_prefix("/").unwrap())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_tmpfs_root_unmounted_keeps_the_slave_at_run_time_and_at_start_up_and_a_reload_takes_it_back() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a file system on the watch root needs root");
        return;
    }
    let Some(ns) = Namespace::new() else {
        // CI runs as root with util-linux: there the test must run, not skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "unshare -m is refused in CI"
        );
        eprintln!("skipped: unshare -m is refused here");
        return;
    };
    let stage = Stage::new(&["www"]);
    let src = stage.src.display().to_string();
    let tmpfs = [
        "-t",
        "tmpfs",
        "-o",
        "mode=0755",
        "sersync-test",
        src.as_str(),
    ];
    assert!(ns.run("mount", &tmpfs));
    let inside = ns.path(&stage.src);
    fill(&inside, 51);
    let port = free_port();
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n{ENGINE}"
        ))
    });
    let pid = ns.pid();
    let under = ["nsenter", "-t", pid.as_str(), "-m", "--"];
    let dst = stage.dst("www");
    let mut sersync = Sersync::start_under(&under, &config, &["-r"], stage.path());
    assert_converges(&inside, &dst, WAIT);
    assert_eq!(count(&dst), 51);

    // Unmounted while running: the root's own watch says IN_UNMOUNT.
    // Busy while an rsync run (its working directory is the root) or a walk is in it.
    wait_for(WAIT, || {
        ns.run("umount", &[&src])
            .then_some(())
            .ok_or("umount refused".to_string())
    })
    .unwrap();
    sersync
        .wait_for_log("its file system was unmounted", WAIT)
        .unwrap();
    assert_shown_lost(port, &stage.src);
    let (code, _) = http(port, "POST", "/sync").unwrap();
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&dst), 51, "the slave keeps every file");

    // Started again with -r on the empty mount point: refused, the slave keeps every file.
    sersync.terminate(Duration::from_secs(10));
    let sersync = Sersync::start_under(&under, &config, &["-r"], stage.path());
    sersync
        .wait_for_log("refusing to sync the empty watch root", WAIT)
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&dst), 51, "the slave keeps every file");

    // Mounted again, the files restored and one more: a new tmpfs is another device, so the
    // root waits for the operator's reload, which takes it and pushes it whole.
    assert!(ns.run("mount", &tmpfs));
    fill(&inside, 51);
    fs::write(inside.join("after-remount"), "r").unwrap();
    sersync
        .wait_for_log("on another file system", WAIT)
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&dst), 51, "nothing sent before the reload");
    sersync.signal(libc::SIGHUP);
    sersync
        .wait_for_log("configuration reloaded", WAIT)
        .unwrap();
    assert_converges(&inside, &dst, WAIT);
    assert!(dst.join("after-remount").exists());
    drop(sersync);
}
