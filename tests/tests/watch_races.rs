//! Races between the tree and the reader, forced: the real binary is stopped (SIGSTOP) while
//! the operations happen, so the kernel queues them all and the reader meets them at once,
//! late, as a loaded reader does. Then the slave (a real rsync daemon) must equal the source,
//! including what is written later into the directories the race was about: a directory
//! whose watch was lost would never send it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync_tests::{assert_converges, ConfigBuilder, RsyncDaemon, Sersync};
use tempfile::TempDir;

const CONVERGE: Duration = Duration::from_secs(30);

struct Race {
    _dir: TempDir,
    src: PathBuf,
    outside: PathBuf,
    daemon: RsyncDaemon,
    sersync: Sersync,
}

impl Race {
    fn new() -> Race {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let outside = dir.path().join("outside");
        fs::create_dir(&src).unwrap();
        fs::create_dir(&outside).unwrap();
        let daemon = RsyncDaemon::start(&["www"]);
        let config = ConfigBuilder::new(&src)
            .remote(&daemon, "www")
            .write(dir.path());
        let sersync = Sersync::start(&config, &[], dir.path());
        Race {
            _dir: dir,
            src,
            outside,
            daemon,
            sersync,
        }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.src.join(rel)
    }

    /// Runs `operations` with the daemon stopped, then lets it meet them all at once.
    fn while_stopped(&self, operations: impl FnOnce(&Race)) {
        let _frozen = self.sersync.freeze();
        operations(self);
    }

    fn converges(&self) {
        assert_converges(&self.src, &self.daemon.module_path("www"), CONVERGE);
    }
}

fn write(path: &Path, data: &str) {
    fs::write(path, data).unwrap();
}

#[test]
fn a_directory_made_and_renamed_before_the_reader_sees_it_syncs_what_is_written_later() {
    let r = Race::new();
    r.while_stopped(|r| {
        fs::create_dir(r.at("x")).unwrap();
        fs::rename(r.at("x"), r.at("y")).unwrap();
    });
    r.converges();
    write(&r.at("y/f"), "hello");
    r.converges();
}

#[test]
fn a_new_directory_whose_parent_and_grandparent_are_renamed_keeps_syncing() {
    let r = Race::new();
    fs::create_dir_all(r.at("g/p")).unwrap();
    r.converges();
    r.while_stopped(|r| {
        fs::create_dir(r.at("g/p/x")).unwrap();
        fs::create_dir(r.at("g/p/y")).unwrap();
        fs::rename(r.at("g/p"), r.at("g/p2")).unwrap();
        fs::rename(r.at("g"), r.at("g2")).unwrap();
    });
    r.converges();
    write(&r.at("g2/p2/x/f"), "in x");
    write(&r.at("g2/p2/y/f"), "in y");
    r.converges();
}

#[test]
fn a_directory_moved_out_of_the_tree_and_straight_back_in_keeps_syncing() {
    let r = Race::new();
    fs::create_dir(r.at("a")).unwrap();
    write(&r.at("a/f1"), "one");
    fs::create_dir(r.at("same")).unwrap();
    r.converges();
    r.while_stopped(|r| {
        fs::rename(r.at("a"), r.outside.join("a")).unwrap();
        fs::rename(r.outside.join("a"), r.at("b")).unwrap();
        fs::rename(r.at("same"), r.outside.join("same")).unwrap();
        fs::rename(r.outside.join("same"), r.at("same")).unwrap();
    });
    r.converges();
    write(&r.at("b/f2"), "two");
    write(&r.at("same/f3"), "three");
    r.converges();
}

#[test]
fn a_name_reused_at_once_by_a_new_directory_keeps_both_syncing() {
    let r = Race::new();
    fs::create_dir(r.at("release")).unwrap();
    write(&r.at("release/v"), "1");
    r.converges();
    // A deploy script's swap: the live folder moves aside and a new one takes its name.
    r.while_stopped(|r| {
        fs::rename(r.at("release"), r.at("release-old")).unwrap();
        fs::create_dir(r.at("release")).unwrap();
        write(&r.at("release/v"), "2");
    });
    r.converges();
    write(&r.at("release/after"), "new");
    write(&r.at("release-old/after"), "old");
    r.converges();
}

#[test]
fn two_thousand_directories_made_and_moved_back_to_back_all_keep_syncing() {
    const N: usize = 2_000;
    let r = Race::new();
    r.while_stopped(|r| {
        for n in 0..N {
            fs::create_dir_all(r.at(&format!("p{n}/c"))).unwrap();
            fs::rename(r.at(&format!("p{n}/c")), r.at(&format!("m{n}"))).unwrap();
        }
    });
    r.converges();
    for n in 0..N {
        write(&r.at(&format!("m{n}/f")), &n.to_string());
    }
    r.converges();
}
