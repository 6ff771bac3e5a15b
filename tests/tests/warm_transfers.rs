//! Warm transfers (`<engine warmTransfers>`) end to end: the real binary keeps an rsync
//! connected to a real daemon on loopback (and a pool of them to a real sshd), waiting for
//! the next batch's file list. Batches delivered through them converge, hostile names
//! included; one the daemon cut (`timeout = 1`), or that was killed or whose session was cut
//! while it waited, never fails a batch; over ssh the sessions stay below sshd's
//! `MaxSessions` and idle ones are ended (nothing keeps standing in the watch root); with the
//! switch off no rsync waits. No timing is asserted: latency is the benchmark's.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use sersync_tests::random::HOSTILE_NAMES;
use sersync_tests::{
    assert_converges, wait_for, ConfigBuilder, RsyncDaemon, Sersync, SshServer, Stage,
};

const CONVERGE: Duration = Duration::from_secs(20);

/// Every process: its pid and `/proc` directory.
fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path())))
}

/// The command name and parent of the process at `proc_dir`.
fn comm_and_parent(proc_dir: &Path) -> Option<(String, u32)> {
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    // pid (comm) state ppid …
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_string();
    Some((comm, rest.split(' ').nth(1)?.parse().ok()?))
}

/// The rsync processes whose parent is `parent`.
fn rsync_children(parent: u32) -> Vec<u32> {
    processes()
        .filter(|(_, dir)| comm_and_parent(dir) == Some(("rsync".into(), parent)))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits (bounded) until an rsync waits as a child of `sersync`, and returns it.
fn waiting_rsync(sersync: &Sersync) -> u32 {
    wait_for(Duration::from_secs(10), || {
        rsync_children(sersync.pid())
            .first()
            .copied()
            .ok_or_else(|| "no rsync waits".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", sersync.log()))
}

/// No delivery failed (a failed one is logged with its `attempt`) and nothing went wrong.
fn assert_clean_log(sersync: &Sersync) {
    let log = sersync.log();
    assert!(
        !log.contains("attempt=") && !log.contains("ERROR"),
        "a batch failed or something went wrong:\n{log}"
    );
}

fn write_hostile_names(src: &Path, round: usize) {
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let name = OsStr::from_bytes(name);
        let sub = src.join(name);
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(name), format!("file {i} round {round}\n")).unwrap();
        fs::write(
            src.join(format!("top-{i}")).with_extension(name),
            format!("{round}\n"),
        )
        .unwrap();
    }
}

#[test]
fn batches_go_through_a_waiting_rsync_and_one_the_daemon_cut_or_that_was_killed_fails_none() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // The daemon ends a connection that has been silent for a second: every warm process
    // that waits longer is cut.
    let daemon = RsyncDaemon::start_with(&["www"], "timeout = 1\n");
    let config = ConfigBuilder::new(&src)
        .remote(&daemon, "www")
        .head_xml("<engine warmTransfers=\"true\" transfersPerRemote=\"1\"/>")
        .write(dir.path());
    let sersync = Sersync::start(&config, &[], dir.path());
    let slave = daemon.module_path("www");

    fs::write(src.join("first"), "1\n").unwrap();
    assert_converges(&src, &slave, CONVERGE);
    waiting_rsync(&sersync);

    // Delivered through the waiting one, quickly enough that the daemon has not cut it.
    write_hostile_names(&src, 0);
    assert_converges(&src, &slave, CONVERGE);

    // Cut by the daemon's timeout while it waited: the batch still goes through (twice: a
    // third warm process of no use in a row would make the instance stop warming a while).
    for round in 1..=2 {
        std::thread::sleep(Duration::from_millis(2_500));
        write_hostile_names(&src, round);
        assert_converges(&src, &slave, CONVERGE);
    }

    // Killed while it waited.
    let victim = waiting_rsync(&sersync);
    // SAFETY: kill(2) on a child of the sersync under test; no memory involved.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    fs::write(src.join("after the kill"), "x\n").unwrap();
    fs::remove_file(src.join("first")).unwrap();
    assert_converges(&src, &slave, CONVERGE);
    assert_clean_log(&sersync);
}

#[test]
fn with_warm_transfers_off_no_rsync_waits() {
    let stage = Stage::new(&["www"]);
    let config = stage.config("www", |c| c.head_xml("<engine warmTransfers=\"false\"/>"));
    let sersync = Sersync::start(&config, &[], stage.path());
    write_hostile_names(&stage.src, 0);
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
    // Every run has ended by the time the slave matches, and none is started ahead.
    let left = wait_for(Duration::from_secs(5), || {
        let children = rsync_children(sersync.pid());
        if children.is_empty() {
            Ok(())
        } else {
            Err(format!("rsync still running: {children:?}"))
        }
    });
    assert!(left.is_ok(), "{left:?}");
    assert_clean_log(&sersync);
}

/// sersync with warm transfers and `transfers` per remote, pushing over ssh through `server`
/// into its directory `name`, after a first file has landed: the test's directory, the
/// watch root, the slave's directory and sersync.
fn over_ssh(
    server: &SshServer,
    name: &str,
    transfers: u32,
) -> (TempDir, PathBuf, PathBuf, Sersync) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let slave = server.slave_dir(name);
    let config = ConfigBuilder::new(&src)
        .ssh_remote(&slave)
        .head_xml(&format!(
            "<engine warmTransfers=\"true\" transfersPerRemote=\"{transfers}\"/>"
        ))
        .write(dir.path());
    let path = server.path_env();
    let sersync = Sersync::start_with_env(&config, &[], dir.path(), &[("PATH", &path)]);
    fs::write(src.join("first"), "1\n").unwrap();
    assert_converges(&src, &slave, CONVERGE);
    (dir, src, slave, sersync)
}

#[test]
fn over_ssh_batches_go_through_a_waiting_rsync_on_a_multiplexed_connection() {
    let Some(mut server) = SshServer::start_or_skip() else {
        return;
    };
    let (dir, src, slave, sersync) = over_ssh(&server, "www", 1);
    waiting_rsync(&sersync);
    // The connection is shared through a socket in the state directory.
    let state = dir.path().join("sersync-state");
    let socket = wait_for(Duration::from_secs(10), || {
        fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().as_bytes().starts_with(b"ssh-"))
            .map(|e| e.path())
            .ok_or_else(|| "no ssh control socket in the state directory".to_string())
    });
    assert!(socket.is_ok(), "{socket:?}\n{}", sersync.log());

    write_hostile_names(&src, 0);
    assert_converges(&src, &slave, CONVERGE);
    fs::rename(src.join("c d"), src.join("c d renamed")).unwrap();
    fs::remove_dir_all(src.join(OsStr::from_bytes(b"new\nline"))).unwrap();
    assert_converges(&src, &slave, CONVERGE);

    // The waiting one killed: the next batch still goes through.
    let victim = waiting_rsync(&sersync);
    // SAFETY: kill(2) on a child of the sersync under test; no memory involved.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    write_hostile_names(&src, 1);
    assert_converges(&src, &slave, CONVERGE);
    assert_clean_log(&sersync);
    drop(sersync);
    server.stop();
}

/// The slave-side sessions of rsync into `slave`: `rsync --server` processes started by
/// sshd for a session (not the receivers they fork).
fn server_sessions(slave: &Path) -> Vec<u32> {
    let slave = slave.as_os_str().as_bytes();
    processes()
        .filter(|(_, dir)| {
            let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
            let mut args = cmdline.split(|&b| b == 0);
            let serves =
                args.clone().any(|a| a == b"--server") && args.any(|a| a.starts_with(slave));
            let parent = comm_and_parent(dir)
                .and_then(|(_, ppid)| fs::read_to_string(format!("/proc/{ppid}/comm")).ok());
            serves && parent.is_some_and(|comm| comm.starts_with("sshd"))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The processes whose working directory is `dir` (what makes `umount` say "target is
/// busy").
fn standing_in(dir: &Path) -> Vec<u32> {
    let dir = fs::canonicalize(dir).unwrap();
    processes()
        .filter(|(_, proc_dir)| fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == dir))
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn over_ssh_a_pool_of_waiting_sessions_stays_below_max_sessions_survives_cuts_and_ends_when_idle() {
    let Some(mut server) = SshServer::start_or_skip() else {
        return;
    };
    let (_dir, src, slave, sersync) = over_ssh(&server, "pool", 2);

    // A steady stream of small batches, the slave's sessions counted all along; one waiting
    // rsync is killed and one waiting session is cut on the slave along the way.
    let mut most = 0;
    for i in 0..150 {
        fs::write(src.join(format!("stream-{i}")), format!("{i}\n")).unwrap();
        if i % 10 == 0 {
            fs::write(
                src.join(format!("stream-{i}"))
                    .with_extension(OsStr::from_bytes(
                        HOSTILE_NAMES[i / 10 % HOSTILE_NAMES.len()],
                    )),
                "h\n",
            )
            .unwrap();
        }
        most = most.max(server_sessions(&slave).len());
        if i == 50 {
            if let Some(&victim) = rsync_children(sersync.pid()).first() {
                // SAFETY: kill(2) on a child of the sersync under test.
                unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
            }
        }
        if i == 100 {
            if let Some(&victim) = server_sessions(&slave).last() {
                // SAFETY: kill(2) on an rsync --server the test's sshd started.
                unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_converges(&src, &slave, CONVERGE);
    assert!(
        most < 10,
        "{most} sessions at once on one connection: sshd's default MaxSessions is 10"
    );
    assert!(most > 0, "no session seen on the slave");

    // Idle: every waiting one is ended, on both sides, and nothing stands in the root.
    let idle = wait_for(Duration::from_secs(20), || {
        let (children, sessions) = (rsync_children(sersync.pid()), server_sessions(&slave));
        let standing = standing_in(&src);
        if children.is_empty() && sessions.is_empty() && standing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "still waiting: rsync {children:?}, sessions {sessions:?}, in the root {standing:?}"
            ))
        }
    });
    assert!(idle.is_ok(), "{idle:?}\n{}", sersync.log());
    assert_clean_log(&sersync);
    drop(sersync);
    server.stop();
}
