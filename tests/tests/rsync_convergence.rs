//! The rsync sink end to end: real `sersync` binary, real rsync daemon on loopback; every
//! scenario ends in a byte-for-byte comparison of the source and the slave's tree.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync_tests::random::{random_operation, seed_from_env, Rng};
use sersync_tests::{assert_converges, tree_diff, wait_for, ConfigBuilder, RsyncDaemon, Sersync};
use tempfile::TempDir;

const CONVERGE: Duration = Duration::from_secs(20);

struct Setup {
    dir: TempDir,
    src: PathBuf,
    daemon: RsyncDaemon,
    sersync: Sersync,
}

impl Setup {
    fn dst(&self) -> PathBuf {
        self.daemon.module_path("www")
    }

    fn converges(&self) {
        assert_converges(&self.src, &self.dst(), CONVERGE);
    }
}

/// A watched tree (prepared by `prepare` before sersync starts), pushed to module `www`.
fn setup(
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    prepare: impl FnOnce(&Path),
    args: &[&str],
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    prepare(&src);
    let daemon = RsyncDaemon::start(&["www"]);
    let config = configure(ConfigBuilder::new(&src).remote(&daemon, "www")).write(dir.path());
    let sersync = Sersync::start(&config, args, dir.path());
    Setup {
        dir,
        src,
        daemon,
        sersync,
    }
}

fn plain() -> Setup {
    setup(|c| c, |_| {}, &[])
}

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}

#[test]
fn create_modify_append_truncate_delete() {
    let s = plain();
    write(&s.src.join("a"), b"one");
    write(&s.src.join("b"), b"two");
    write(&s.src.join("c"), b"to be deleted");
    s.converges();
    write(&s.src.join("a"), b"ONE, rewritten");
    fs::OpenOptions::new()
        .append(true)
        .open(s.src.join("b"))
        .map(|mut f| std::io::Write::write_all(&mut f, b" appended"))
        .unwrap()
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(s.src.join("a"))
        .unwrap()
        .set_len(3)
        .unwrap();
    fs::remove_file(s.src.join("c")).unwrap();
    s.converges();
}

#[test]
fn renames_of_files_and_directories_with_contents() {
    let s = plain();
    fs::create_dir_all(s.src.join("d/e")).unwrap();
    write(&s.src.join("d/e/f"), b"f");
    write(&s.src.join("x"), b"x");
    s.converges();
    fs::rename(s.src.join("x"), s.src.join("y")).unwrap();
    fs::rename(s.src.join("y"), s.src.join("z")).unwrap();
    fs::rename(s.src.join("z"), s.src.join("d/e/moved")).unwrap();
    // A directory renamed with a change pending below it.
    write(&s.src.join("d/e/g"), b"pending");
    fs::rename(s.src.join("d"), s.src.join("renamed")).unwrap();
    write(&s.src.join("renamed/e/after"), b"written after the rename");
    s.converges();
}

#[test]
fn tree_delete_and_nested_mkdir_with_files() {
    let s = plain();
    fs::create_dir_all(s.src.join("a/b/c")).unwrap();
    write(&s.src.join("a/b/c/f"), b"deep");
    s.converges();
    fs::remove_dir_all(s.src.join("a")).unwrap();
    // mkdir -p then a file at once: the innermost directory must not be missed.
    fs::create_dir_all(s.src.join("p/q/r/s")).unwrap();
    write(&s.src.join("p/q/r/s/f"), b"innermost");
    write(&s.src.join("p/q/g"), b"middle");
    s.converges();
}

#[test]
fn file_replaced_by_directory_and_back() {
    let s = plain();
    write(&s.src.join("thing"), b"a file");
    s.converges();
    fs::remove_file(s.src.join("thing")).unwrap();
    fs::create_dir(s.src.join("thing")).unwrap();
    write(&s.src.join("thing/inside"), b"now a directory");
    s.converges();
    fs::remove_dir_all(s.src.join("thing")).unwrap();
    write(&s.src.join("thing"), b"a file again");
    s.converges();
}

#[test]
fn symlinks_are_synced_as_links_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret"), b"outside the watch");
    let s = plain();
    write(&s.src.join("target"), b"t");
    symlink("target", s.src.join("relative")).unwrap();
    symlink(outside.path(), s.src.join("to-outside-dir")).unwrap();
    symlink("does/not/exist", s.src.join("dangling")).unwrap();
    s.converges();
    assert!(fs::symlink_metadata(s.dst().join("to-outside-dir"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn mode_changes_when_attrib_is_on() {
    let s = setup(|c| c.switch("attrib", true), |_| {}, &[]);
    write(&s.src.join("script"), b"#!/bin/sh\n");
    s.converges();
    fs::set_permissions(s.src.join("script"), fs::Permissions::from_mode(0o751)).unwrap();
    s.converges();
}

#[test]
fn names_with_any_bytes_arrive_intact_and_run_nothing() {
    let s = plain();
    let names: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"new\nline".to_vec(),
        b"quote\"s and 'single'".to_vec(),
        b"$(touch PWNED)".to_vec(),
        b"`touch PWNED`".to_vec(),
        b"-rf".to_vec(),
        b"--delete".to_vec(),
        b"invalid-\xff\xfe-utf8".to_vec(),
        b"semi;colon&amp|pipe>redirect".to_vec(),
        "ünïcødé ✓".as_bytes().to_vec(),
    ];
    for name in &names {
        let path = s.src.join(std::ffi::OsStr::from_bytes(name));
        write(&path, name);
    }
    fs::create_dir(s.src.join(std::ffi::OsStr::from_bytes(b"dir\nwith $(x)"))).unwrap();
    write(
        &s.src
            .join(std::ffi::OsStr::from_bytes(b"dir\nwith $(x)/-inner")),
        b"i",
    );
    s.converges();
    for dir in [
        s.src.as_path(),
        s.dst().as_path(),
        s.dir.path(),
        Path::new("/"),
    ] {
        assert!(
            !dir.join("PWNED").exists(),
            "a file name ran a command in {}",
            dir.display()
        );
    }
    // Deleting them reaches the remote too.
    for name in &names {
        fs::remove_file(s.src.join(std::ffi::OsStr::from_bytes(name))).unwrap();
    }
    s.converges();
}

#[test]
fn excluded_directories_and_temporary_files_stay_local_but_dot_files_sync() {
    let s = setup(
        |c| c.exclude(r"(.*)\.svn").exclude("^cache"),
        |src| {
            fs::create_dir_all(src.join("cache/deep")).unwrap();
        },
        &[],
    );
    write(&s.src.join("cache/deep/big"), b"never sent");
    fs::create_dir_all(s.src.join("proj/.svn")).unwrap();
    write(&s.src.join("proj/.svn/entries"), b"never sent");
    write(&s.src.join("proj/.htaccess"), b"sent");
    write(&s.src.join("proj/.main.rs.swp"), b"vim swap, never sent");
    write(&s.src.join("proj/notes~"), b"backup, never sent");
    write(&s.src.join("proj/main.rs"), b"sent");
    wait_for(CONVERGE, || {
        fs::read(s.dst().join("proj/main.rs")).map_err(|e| e.to_string())?;
        fs::read(s.dst().join("proj/.htaccess")).map_err(|e| e.to_string())
    })
    .unwrap();
    for never in ["cache", "proj/.svn", "proj/.main.rs.swp", "proj/notes~"] {
        assert!(!s.dst().join(never).exists(), "{never} reached the remote");
    }
}

#[test]
fn with_delete_off_nothing_is_removed_remotely() {
    let s = setup(|c| c.switch("delete", false), |_| {}, &[]);
    write(&s.src.join("keep"), b"k");
    fs::create_dir(s.src.join("dir")).unwrap();
    write(&s.src.join("dir/f"), b"f");
    s.converges();
    fs::remove_file(s.src.join("keep")).unwrap();
    fs::remove_dir_all(s.src.join("dir")).unwrap();
    write(&s.src.join("marker"), b"m");
    wait_for(CONVERGE, || {
        fs::read(s.dst().join("marker")).map_err(|e| e.to_string())
    })
    .unwrap();
    assert!(s.dst().join("keep").exists());
    assert!(s.dst().join("dir/f").exists());
}

#[test]
fn full_sync_first_pushes_an_existing_tree_and_deletes_extras() {
    const FILES: usize = 20_000;
    let s = setup(
        |c| c,
        |src| {
            for i in 0..FILES {
                let dir = src.join(format!("d{:03}", i % 200));
                if i < 200 {
                    fs::create_dir(&dir).unwrap();
                }
                fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
            }
        },
        &["-r"],
    );
    // An extra file on the slave that the full sync must remove is placed before start by
    // the setup of a second run below; here the tree simply has to arrive whole.
    assert_converges(&s.src, &s.dst(), Duration::from_secs(120));
    drop(s);
}

#[test]
fn full_sync_first_removes_what_the_slave_has_extra() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write(&src.join("kept"), b"k");
    let daemon = RsyncDaemon::start(&["www"]);
    write(
        &daemon.module_path("www").join("stale"),
        b"only on the slave",
    );
    let config = ConfigBuilder::new(&src)
        .remote(&daemon, "www")
        .write(dir.path());
    let _sersync = Sersync::start(&config, &["-r"], dir.path());
    assert_converges(&src, &daemon.module_path("www"), CONVERGE);
}

#[test]
fn two_remotes_one_down_the_other_keeps_syncing_and_the_first_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut daemon = RsyncDaemon::start(&["up", "down"]);
    let config = ConfigBuilder::new(&src)
        .remote(&daemon, "up")
        .remote(&daemon, "down")
        .head_xml("<engine retryInitialMs=\"100\" retryMaxMs=\"500\"/>\n")
        .write(dir.path());
    let _sersync = Sersync::start(&config, &[], dir.path());
    write(&src.join("first"), b"1");
    assert_converges(&src, &daemon.module_path("up"), CONVERGE);
    assert_converges(&src, &daemon.module_path("down"), CONVERGE);
    // Make one module unusable: its directory disappears, so its pushes fail.
    let down = daemon.module_path("down");
    let parked = dir.path().join("parked");
    fs::rename(&down, &parked).unwrap();
    for i in 0..20 {
        write(&src.join(format!("during-{i}")), b"d");
    }
    assert_converges(&src, &daemon.module_path("up"), CONVERGE);
    fs::rename(&parked, &down).unwrap();
    assert_converges(&src, &down, CONVERGE);
    // And a daemon that is stopped outright and comes back.
    daemon.stop();
    write(&src.join("while-stopped"), b"s");
    std::thread::sleep(Duration::from_millis(300));
    daemon.resume();
    assert_converges(&src, &daemon.module_path("up"), CONVERGE);
    assert_converges(&src, &daemon.module_path("down"), CONVERGE);
}

#[test]
fn sigterm_exits_zero_after_delivering_what_is_pending() {
    let mut s = plain();
    for i in 0..100 {
        write(&s.src.join(format!("f{i}")), b"x");
    }
    let status = s
        .sersync
        .terminate(Duration::from_secs(15))
        .expect("exits within the deadline");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        s.sersync.log()
    );
    assert!(
        tree_diff(&s.src, &s.dst()).is_ok(),
        "pending changes were not delivered before exit"
    );
}

/// The seed CI runs: fixed, so that a red run always means a change broke something.
/// `SERSYNC_RANDOM_SEED=N` explores other sequences.
const DEFAULT_SEED: u64 = 1_795_569_899_368_740_091;

#[test]
fn thousands_of_random_operations_then_every_remote_equals_the_source() {
    let seed = seed_from_env("SERSYNC_RANDOM_SEED").unwrap_or(DEFAULT_SEED);
    random_operations_converge(seed);
}

/// Regression: with this sequence a directory `b` is replaced by a symlink to another
/// directory while a batch still lists a path below `b`. rsync `-R` sends an implied path
/// element that is a symlink as a real directory, so the slave used to end with a real `b`
/// holding the other directory's contents (fixed by listing `b` itself instead).
#[test]
fn random_operations_with_a_directory_replaced_by_a_symlink() {
    random_operations_converge(1_795_575_299_969_897_457);
}

/// 3,000 random operations from `seed` against two remotes, then both equal the source.
fn random_operations_converge(seed: u64) {
    eprintln!("random operations: SERSYNC_RANDOM_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let daemon = RsyncDaemon::start(&["one", "two"]);
    let config = ConfigBuilder::new(&src)
        .remote(&daemon, "one")
        .remote(&daemon, "two")
        .switch("attrib", true)
        .write(dir.path());
    let _sersync = Sersync::start(&config, &[], dir.path());
    let mut rng = Rng::new(seed);
    let mut counter = 0;
    for round in 0..30 {
        for _ in 0..100 {
            random_operation(&src, &mut rng, &mut counter);
        }
        // Let some batches go out mid-way, so later operations race deliveries.
        if round % 10 == 9 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for module in ["one", "two"] {
        if let Err(e) = wait_for(Duration::from_secs(60), || {
            tree_diff(&src, &daemon.module_path(module))
        }) {
            panic!("module {module} did not converge (SERSYNC_RANDOM_SEED={seed}): {e}");
        }
    }
}

#[test]
fn dry_run_prints_the_command_and_file_list_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let daemon = RsyncDaemon::start(&["www"]);
    let config = ConfigBuilder::new(&src)
        .remote(&daemon, "www")
        .write(dir.path());
    let sersync = Sersync::start(&config, &["--dry-run"], dir.path());
    write(&src.join("planned"), b"p");
    sersync.wait_for_log("  path planned", CONVERGE).unwrap();
    let log = sersync.log();
    assert!(
        log.contains("would run in") && log.contains("--files-from=- --from0"),
        "{log}"
    );
    assert_eq!(
        fs::read_dir(daemon.module_path("www")).unwrap().count(),
        0,
        "a dry run sent something"
    );
}

/// What the slave has received so far, by its daemon's log: one `sent S bytes  received R
/// bytes  total size T` line per connection, written when the connection ends. Read once the
/// log has stopped growing for a second (the last run's line may come after convergence).
fn received_by_slave(daemon: &RsyncDaemon) -> u64 {
    slave_bytes(daemon).1
}

/// What the slave has sent and received so far (see [`received_by_slave`]).
fn slave_bytes(daemon: &RsyncDaemon) -> (u64, u64) {
    let total = |log: &str| -> (u64, u64) {
        log.lines()
            .filter_map(|line| {
                let rest = &line[line.find("] sent ")? + 7..];
                let sent = rest.split(' ').next()?.parse::<u64>().ok()?;
                let rest = &rest[rest.find("received ")? + 9..];
                Some((sent, rest.split(' ').next()?.parse::<u64>().ok()?))
            })
            .fold((0, 0), |(s, r), (a, b)| (s + a, r + b))
    };
    let mut last = daemon.log();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = daemon.log();
        if now == last {
            return total(&now);
        }
        last = now;
    }
}

/// A file of `len` random bytes (incompressible: rsync's -z cannot make them small).
fn random_file(path: &Path, rng: &mut Rng, len: usize) {
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data.truncate(len);
    write(path, &data);
}

const MIB: usize = 1 << 20;

#[test]
fn a_renamed_directory_is_built_on_the_slave_from_its_old_name() {
    let s = plain();
    let mut rng = Rng::new(16);
    let files = [
        "release/a",
        "release/b",
        "release/sub dir/c",
        "release/sub dir/-d",
        "release/sub dir/e\nf",
    ];
    fs::create_dir_all(s.src.join("release/sub dir")).unwrap();
    fs::create_dir_all(s.src.join("p/q")).unwrap();
    for file in files {
        random_file(&s.src.join(file), &mut rng, 10 * MIB);
    }
    s.converges();
    let tree = (files.len() * 10 * MIB) as u64;
    let before = received_by_slave(&s.daemon);
    fs::rename(s.src.join("release"), s.src.join("release-2")).unwrap();
    s.converges();
    let renamed = received_by_slave(&s.daemon) - before;
    assert!(
        renamed < tree / 20,
        "renaming a tree of {tree} bytes sent the slave {renamed} bytes"
    );
    // Into another directory, under a name that must not be read as an option.
    fs::rename(s.src.join("release-2"), s.src.join("p/q/-release")).unwrap();
    s.converges();
    let moved = received_by_slave(&s.daemon) - before - renamed;
    assert!(
        moved < tree / 20,
        "moving a tree of {tree} bytes sent the slave {moved} bytes"
    );
    // A name with a newline and bytes that are no UTF-8.
    let hostile = s.src.join(std::ffi::OsStr::from_bytes(b"-x\n\xff y"));
    fs::rename(s.src.join("p/q/-release"), &hostile).unwrap();
    s.converges();
    let hostile = received_by_slave(&s.daemon) - before - renamed - moved;
    assert!(
        hostile < tree / 20,
        "renaming a tree of {tree} bytes to a hostile name sent the slave {hostile} bytes"
    );
}

#[test]
fn a_file_renamed_in_its_directory_is_built_from_its_old_name() {
    let s = plain();
    let mut rng = Rng::new(17);
    fs::create_dir(s.src.join("iso")).unwrap();
    random_file(&s.src.join("iso/big.iso"), &mut rng, 40 * MIB);
    s.converges();
    let before = received_by_slave(&s.daemon);
    fs::rename(s.src.join("iso/big.iso"), s.src.join("iso/-big 2.iso")).unwrap();
    s.converges();
    let renamed = received_by_slave(&s.daemon) - before;
    assert!(
        renamed < (40 * MIB / 20) as u64,
        "renaming a file of 40 MiB sent the slave {renamed} bytes"
    );
}

#[test]
fn files_moved_into_other_directories_are_built_from_their_old_ones() {
    let s = plain();
    let mut rng = Rng::new(20);
    fs::create_dir_all(s.src.join("in")).unwrap();
    fs::create_dir_all(s.src.join("-out dir")).unwrap();
    // Sizes apart: a basis found by size and mtime alone could be another file of the same
    // size written in the same moment (sent whole then: data, not correctness).
    random_file(&s.src.join("in/a.iso"), &mut rng, 10 * MIB);
    random_file(&s.src.join("in/b.iso"), &mut rng, 10 * MIB + 1);
    random_file(&s.src.join("in/k.iso"), &mut rng, 20 * MIB);
    random_file(&s.src.join("in/c.iso"), &mut rng, 4096);
    s.converges();
    let before = received_by_slave(&s.daemon);
    // In one batch (sersync frozen meanwhile): split over batches, the first batch's deletes
    // run makes `in` on the slave match `in` as it is then, without the files whose moves are
    // still to come, and those are sent whole. Into a directory whose name must not be read
    // as an option, under a hostile name; into the root; and one whose content changed on
    // the way (the basis is not taken as equal).
    let frozen = s.sersync.freeze();
    let hostile = s
        .src
        .join("-out dir")
        .join(std::ffi::OsStr::from_bytes(b"a\nmoved \xff.iso"));
    fs::rename(s.src.join("in/a.iso"), &hostile).unwrap();
    fs::rename(s.src.join("in/b.iso"), s.src.join("b.iso")).unwrap();
    // Keeping its name: built from the same name in the old directory.
    fs::rename(s.src.join("in/k.iso"), s.src.join("-out dir/k.iso")).unwrap();
    let mtime = fs::metadata(s.src.join("in/c.iso"))
        .unwrap()
        .modified()
        .unwrap();
    random_file(&s.src.join("in/c.iso"), &mut rng, 4096);
    fs::File::options()
        .write(true)
        .open(s.src.join("in/c.iso"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(s.src.join("in/c.iso"), s.src.join("-out dir/c.iso")).unwrap();
    drop(frozen);
    s.converges();
    let moved = received_by_slave(&s.daemon) - before;
    assert!(
        moved < (40 * MIB / 20) as u64,
        "moving files of 40 MiB into other directories sent the slave {moved} bytes"
    );
}

#[test]
fn a_rename_converges_when_the_slave_lacks_or_holds_another_old_name() {
    let s = plain();
    let mut rng = Rng::new(18);
    fs::create_dir_all(s.src.join("gone/d")).unwrap();
    fs::create_dir_all(s.src.join("stale")).unwrap();
    random_file(&s.src.join("gone/d/f"), &mut rng, MIB);
    random_file(&s.src.join("stale/f"), &mut rng, MIB);
    random_file(&s.src.join("stale/g"), &mut rng, 4096);
    s.converges();
    // The slave lost the old name: nothing to build from, all of it is sent.
    fs::remove_dir_all(s.dst().join("gone")).unwrap();
    fs::rename(s.src.join("gone"), s.src.join("back")).unwrap();
    // Rewritten to the same size and mtime just before the rename, both in one batch (sersync
    // frozen meanwhile): a basis that looks the same by size and mtime but is not.
    let frozen = s.sersync.freeze();
    let mtime = fs::metadata(s.src.join("stale/f"))
        .unwrap()
        .modified()
        .unwrap();
    random_file(&s.src.join("stale/f"), &mut rng, MIB);
    fs::File::options()
        .write(true)
        .open(s.src.join("stale/f"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(s.src.join("stale"), s.src.join("fresh")).unwrap();
    drop(frozen);
    s.converges();
}

/// Not a check: prints what the slave receives for renaming a tree of 1,000 files and one
/// file, `MEASURE_MIB` MiB each (1024 by default), from sersync and, in the same run on the
/// same tree, from lsyncd (`default.rsync`, its own daemon) when it is installed.
/// `SERSYNC_BIN` picks the sersync binary measured.
/// `cargo test -p sersync-tests --test rsync_convergence measure_renames -- --ignored --nocapture`
#[test]
#[ignore = "a measurement of a few GiB of disk and minutes"]
fn measure_renames() {
    use sersync_tests::bench::tools::{RunningTool, ToolKind, ToolOptions};
    let mib: u64 = std::env::var("MEASURE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let s = plain();
    let peer = RsyncDaemon::start(&["ls"]);
    let peer_dir = s.dir.path().join("lsyncd");
    fs::create_dir(&peer_dir).unwrap();
    let options = ToolOptions {
        sersync_params: String::new(),
        engine_xml: String::new(),
    };
    let lsyncd = RunningTool::start(
        ToolKind::Lsyncd,
        &s.src,
        &peer,
        &["ls"],
        &peer_dir,
        &options,
        true,
    )
    .map_err(|e| println!("MEASURE without lsyncd: {e}"))
    .ok();
    let mut slaves = vec![("sersync", s.dst(), &s.daemon)];
    if lsyncd.is_some() {
        slaves.push(("lsyncd", peer.module_path("ls"), &peer));
    }
    let fill = |path: &Path, len: u64| {
        let mut random = fs::File::open("/dev/urandom").unwrap();
        let mut file = fs::File::create(path).unwrap();
        std::io::copy(&mut std::io::Read::take(&mut random, len), &mut file).unwrap();
    };
    let slow = Duration::from_secs(1800);
    fs::create_dir_all(s.src.join("tree")).unwrap();
    for i in 0..1000 {
        let dir = s.src.join(format!("tree/d{}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        fill(&dir.join(format!("f{i}")), mib * (MIB as u64) / 1000);
    }
    fill(&s.src.join("big.iso"), mib * MIB as u64);
    // Each slave converges on its own clock, from the rename.
    let converge_all = |started: std::time::Instant| -> Vec<f64> {
        std::thread::scope(|scope| {
            let waits: Vec<_> = slaves
                .iter()
                .map(|(_, dst, _)| {
                    let src = &s.src;
                    scope.spawn(move || {
                        assert_converges(src, dst, slow);
                        started.elapsed().as_secs_f64()
                    })
                })
                .collect();
            waits.into_iter().map(|w| w.join().unwrap()).collect()
        })
    };
    converge_all(std::time::Instant::now());
    let start: Vec<(u64, u64)> = slaves.iter().map(|(_, _, d)| slave_bytes(d)).collect();
    let started = std::time::Instant::now();
    fs::rename(s.src.join("tree"), s.src.join("tree-2")).unwrap();
    let tree_secs = converge_all(started);
    let mid: Vec<(u64, u64)> = slaves.iter().map(|(_, _, d)| slave_bytes(d)).collect();
    let started = std::time::Instant::now();
    fs::rename(s.src.join("big.iso"), s.src.join("big2.iso")).unwrap();
    let file_secs = converge_all(started);
    let end: Vec<(u64, u64)> = slaves.iter().map(|(_, _, d)| slave_bytes(d)).collect();
    let size = mib * MIB as u64;
    let share = |bytes: u64| 100.0 * bytes as f64 / size as f64;
    for (i, (tool, _, _)) in slaves.iter().enumerate() {
        let tree = mid[i].1 - start[i].1;
        let file = end[i].1 - mid[i].1;
        println!(
            "MEASURE {tool}: tree of 1000 files, {size} bytes: slave received {tree} bytes ({:.3}%), converged in {:.1} s",
            share(tree),
            tree_secs[i]
        );
        println!(
            "MEASURE {tool}: one file of {size} bytes: slave received {file} bytes ({:.3}%), converged in {:.1} s",
            share(file),
            file_secs[i]
        );
        println!(
            "MEASURE {tool}: the slave sent {} bytes for both (checksums of its blocks, file lists)",
            end[i].0 - start[i].0
        );
    }
    drop(lsyncd);
}

#[test]
fn a_directory_renamed_over_a_symlink_replaces_the_link_on_the_slave() {
    let s = plain();
    let mut rng = Rng::new(19);
    fs::create_dir_all(s.src.join("release-1")).unwrap();
    fs::create_dir_all(s.src.join("release-2/sub")).unwrap();
    random_file(&s.src.join("release-1/f"), &mut rng, 4096);
    random_file(&s.src.join("release-2/f"), &mut rng, 4096);
    random_file(&s.src.join("release-2/sub/g"), &mut rng, 4096);
    symlink("release-1", s.src.join("current")).unwrap();
    s.converges();
    // The deployment idiom, in one batch: the link's name becomes the new release.
    let frozen = s.sersync.freeze();
    fs::remove_file(s.src.join("current")).unwrap();
    fs::rename(s.src.join("release-2"), s.src.join("current")).unwrap();
    drop(frozen);
    s.converges();
    assert!(fs::symlink_metadata(s.dst().join("current"))
        .unwrap()
        .is_dir());
}

#[test]
fn a_renamed_directory_keeps_its_excluded_entries_off_the_slave() {
    let s = setup(|c| c.exclude(r"(.*)\.svn"), |_| {}, &[]);
    fs::create_dir_all(s.src.join("proj/.svn")).unwrap();
    write(&s.src.join("proj/.svn/entries"), b"never sent");
    write(&s.src.join("proj/main.rs"), b"sent");
    wait_for(CONVERGE, || {
        fs::read(s.dst().join("proj/main.rs")).map_err(|e| e.to_string())
    })
    .unwrap();
    fs::rename(s.src.join("proj"), s.src.join("proj-2")).unwrap();
    wait_for(CONVERGE, || {
        fs::read(s.dst().join("proj-2/main.rs")).map_err(|e| e.to_string())?;
        match s.dst().join("proj").exists() {
            true => Err("the old name is still there".to_string()),
            false => Ok(()),
        }
    })
    .unwrap();
    assert!(
        !s.dst().join("proj-2/.svn").exists(),
        "an excluded directory reached the remote"
    );
}
