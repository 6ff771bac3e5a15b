//! Fault tests: real rsync daemons on loopback, real faults, each ending in a byte-for-byte
//! tree comparison. Figures (files in flight at the fault, time to converge after it) are
//! printed for the record (`--nocapture`); the assertions are on convergence and loss.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sersync_tests::{
    assert_converges, paced_writer, tree_diff, ConfigBuilder, RsyncDaemon, Sersync, Stage,
};
use tempfile::TempDir;

const CONVERGE: Duration = Duration::from_secs(60);
const FAST_RETRY: &str = "<engine retryInitialMs=\"100\" retryMaxMs=\"1000\"/>\n";

fn tree(dir: &TempDir) -> PathBuf {
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    src
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Waits for convergence and returns how long it took.
fn converge(src: &Path, dst: &Path) -> Duration {
    let started = Instant::now();
    assert_converges(src, dst, CONVERGE);
    started.elapsed()
}

#[test]
fn a_slave_stopped_during_load_catches_up_and_the_other_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(&dir);
    let mut a = RsyncDaemon::start(&["www"]);
    let mut b = RsyncDaemon::start_at("127.0.0.2", a.port(), &["www"]);
    let config = ConfigBuilder::new(&src)
        .remote(&a, "www")
        .remote(&b, "www")
        .head_xml(FAST_RETRY)
        .write(dir.path());
    let _sersync = Sersync::start(&config, &[], dir.path());
    let writer = paced_writer(src.clone(), "load-", 600, 200);
    std::thread::sleep(Duration::from_millis(1000));
    b.stop();
    let in_flight = count_files(&src) - count_files(&b.module_path("www"));
    writer.join().unwrap();
    // The live slave converges while the other is still down.
    let a_time = converge(&src, &a.module_path("www"));
    assert!(
        tree_diff(&src, &b.module_path("www")).is_err(),
        "the stopped slave cannot have everything"
    );
    std::thread::sleep(Duration::from_secs(1));
    b.resume();
    let b_time = converge(&src, &b.module_path("www"));
    eprintln!("slave down: {in_flight} files behind at the fault; live slave converged {a_time:?} after the writer, stopped slave {b_time:?} after it came back; 0 lost");
    a.stop();
}

#[test]
fn kill_9_during_load_then_restart_without_r_converges() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let config = stage.config("www", |c| c);
    let mut sersync = Sersync::start(&config, &[], dir.path());
    let writer = paced_writer(src.clone(), "k-", 1500, 500);
    std::thread::sleep(Duration::from_millis(1200));
    sersync.kill9();
    let behind = count_files(src).saturating_sub(count_files(&daemon.module_path("www")));
    // The writer goes on while sersync is dead: those files were never seen by inotify.
    writer.join().unwrap();
    let _again = Sersync::start(&config, &[], dir.path());
    let time = converge(src, &daemon.module_path("www"));
    eprintln!("kill -9: {behind} files behind at the kill, more written while down; converged {time:?} after restart; 0 lost");
}

#[test]
fn sigterm_during_load_exits_zero_and_the_next_start_finishes_the_job() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let config = stage.config("www", |c| c);
    let mut sersync = Sersync::start(&config, &[], dir.path());
    let writer = paced_writer(src.clone(), "t-", 1500, 1000);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = sersync
        .terminate(Duration::from_secs(15))
        .expect("exits within the deadline");
    let stop_time = started.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", sersync.log());
    writer.join().unwrap();
    let _again = Sersync::start(&config, &[], dir.path());
    let time = converge(src, &daemon.module_path("www"));
    eprintln!("SIGTERM: exited 0 in {stop_time:?}; converged {time:?} after restart; 0 lost");
}

#[test]
fn wrong_password_is_a_clear_error_nothing_is_dropped_and_sighup_recovers() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let wrong = dir.path().join("wrong.pass");
    fs::write(&wrong, "not-the-password\n").unwrap();
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = stage.config("www", |c| c.password_file(&wrong));
    let sersync = Sersync::start(&config, &[], dir.path());
    for i in 0..50 {
        fs::write(src.join(format!("f{i}")), b"x").unwrap();
    }
    sersync
        .wait_for_log("auth failed", Duration::from_secs(20))
        .unwrap();
    let log = sersync.log();
    let line = log.lines().find(|l| l.contains("auth failed")).unwrap();
    assert!(
        line.contains("backup@127.0.0.1::www"),
        "the error names the remote: {line}"
    );
    assert!(
        line.contains("ERROR"),
        "a fatal error is logged as an error: {line}"
    );
    // The failLog script shows the failing lane's command, quoted, owner-only.
    let script = dir.path().join("rsync_fail_log.sh");
    let text = sersync_tests::wait_for(Duration::from_secs(10), || {
        let text = fs::read_to_string(&script).unwrap_or_default();
        text.contains("# rsync backup@127.0.0.1::www")
            .then_some(text.clone())
            .ok_or(text)
    })
    .unwrap();
    assert!(
        text.contains(" 'f0'") && text.contains("'--files-from=-'"),
        "{text}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&script).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Fix the password and reload: the kept changes arrive.
    fs::copy(daemon.password_file(), &wrong).unwrap();
    sersync.signal(libc::SIGHUP);
    let time = converge(src, &daemon.module_path("www"));
    sersync_tests::wait_for(Duration::from_secs(10), || {
        let text = fs::read_to_string(&script).unwrap_or_default();
        (!text.contains("# rsync")).then_some(()).ok_or(text)
    })
    .expect("the recovered lane leaves the failLog script");
    eprintln!("auth failure: 50 files held; converged {time:?} after the fix and SIGHUP; 0 lost");
}

#[test]
fn an_unusable_state_directory_is_reported_and_syncing_goes_on() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let not_a_dir = dir.path().join("a-file");
    fs::write(&not_a_dir, b"").unwrap();
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<engine stateDir=\"{}/state\"/>\n",
            not_a_dir.display()
        ))
    });
    let sersync = Sersync::start(&config, &[], dir.path());
    fs::write(src.join("still-synced"), b"yes").unwrap();
    converge(src, &daemon.module_path("www"));
    let log = sersync.log();
    assert!(log.contains("cannot open the lane's journal"), "{log}");
    assert!(log.contains("syncing goes on"), "{log}");
}

#[test]
fn a_remote_that_accepts_and_hangs_is_timed_out_and_retried_while_the_other_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(&dir);
    let good = RsyncDaemon::start(&["www"]);
    // 127.0.0.3 accepts connections on the slaves' port and never answers.
    let hang = TcpListener::bind(("127.0.0.3", good.port())).unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hang.incoming().take(2) {
            held.push(stream);
        }
        held
    });
    let config = ConfigBuilder::new(&src)
        .remote(&good, "www")
        .raw_remote("127.0.0.3", good.port(), "www")
        .timeout(2)
        .head_xml(FAST_RETRY)
        .write(dir.path());
    let sersync = Sersync::start(&config, &[], dir.path());
    for i in 0..20 {
        fs::write(src.join(format!("h{i}")), b"x").unwrap();
    }
    converge(&src, &good.module_path("www"));
    sersync
        .wait_for_log("127.0.0.3::www failed", Duration::from_secs(30))
        .unwrap();
    // The hanging peer is replaced by a real slave: the retry delivers.
    let held = holder.join().unwrap();
    drop(held);
    let replacement = RsyncDaemon::start_at("127.0.0.3", good.port(), &["www"]);
    let time = converge(&src, &replacement.module_path("www"));
    eprintln!("hanging remote: timed out after 2 s, retried; converged {time:?} after a real slave took its place; 0 lost");
}

#[test]
fn sighup_adds_a_remote_which_gets_everything_and_a_bad_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(&dir);
    let a = RsyncDaemon::start(&["www"]);
    let b = RsyncDaemon::start_at("127.0.0.2", a.port(), &["www"]);
    let builder = ConfigBuilder::new(&src).remote(&a, "www");
    let config = builder.write(dir.path());
    let sersync = Sersync::start(&config, &[], dir.path());
    fs::write(src.join("before"), b"1").unwrap();
    converge(&src, &a.module_path("www"));
    // A broken file is refused and the running setup keeps working.
    fs::write(
        &config,
        "<head><sersync><localpath watch=\"/does/not/exist\"/></sersync></head>",
    )
    .unwrap();
    sersync.signal(libc::SIGHUP);
    sersync
        .wait_for_log("reload refused", Duration::from_secs(10))
        .unwrap();
    fs::write(src.join("after-refused-reload"), b"2").unwrap();
    converge(&src, &a.module_path("www"));
    // A second remote added: it gets the whole tree, then live changes.
    builder.remote(&b, "www").write(dir.path());
    sersync.signal(libc::SIGHUP);
    sersync
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .unwrap();
    fs::write(src.join("after-reload"), b"3").unwrap();
    converge(&src, &b.module_path("www"));
    converge(&src, &a.module_path("www"));
}
