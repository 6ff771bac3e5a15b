//! `sersync follow` through forced races: the follower is stopped (SIGSTOP) while the source
//! goes through a change of a name's type or place, the master publishing each step as a
//! message of its own; then it continues and reads them all at once, in one group (a
//! follower applying up to 256 messages together) or one by one (`batch="1"`), and must
//! equal the source byte for byte. Every order here is otherwise a race between the
//! master's batches and the follower's pulls; stopped, it happens every time.
//!
//! The names are hostile on purpose (a newline, bytes that are not UTF-8, a leading `-`,
//! shell syntax). Needs `nats-server`: without it each test says SKIPPED.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use sersync_tests::follow::{Follower, StreamMaster};
use sersync_tests::nats::{nats_server_program, NatsCluster};
use sersync_tests::{tree_diff, wait_for};

/// How long the followers get to equal the source once it is quiet.
const CONVERGE: Duration = Duration::from_secs(60);
/// A pause between two steps, long enough for the master to publish the first as a message
/// of its own (its batches settle in a few milliseconds; 40 at most by default).
const STEP: Duration = Duration::from_millis(300);

/// Names with a newline, invalid UTF-8, a leading dash and shell syntax.
const DIR: &[u8] = b"d\nir \xff";
const LINK_TARGET: &[u8] = b"-t $(x)";
const FILE: &[u8] = b"f\xfe\n";

fn name(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// A master publishing to one node, and two followers: `many` applies up to 256 messages
/// at once, `one` one at a time.
struct Race {
    cluster: NatsCluster,
    master: StreamMaster,
    followers: Vec<(tempfile::TempDir, Follower)>,
}

impl Race {
    /// `None` (and SKIPPED printed) without `nats-server`.
    fn start(prepare: impl FnOnce(&Path)) -> Option<Race> {
        if nats_server_program().is_none() {
            println!("SKIPPED: nats-server is not installed (Debian package `nats-server`)");
            return None;
        }
        let cluster = NatsCluster::single();
        let servers = cluster.servers();
        let master = StreamMaster::start(&servers, "R", "");
        prepare(&master.root);
        let followers = [("many", ""), ("one", r#"batch="1""#)]
            .into_iter()
            .map(|(consumer, attributes)| {
                let dir = tempfile::tempdir().unwrap();
                let f = Follower::start_with(
                    dir.path(),
                    &servers,
                    "R",
                    consumer,
                    &master.daemon,
                    "src",
                    attributes,
                );
                (dir, f)
            })
            .collect();
        let race = Race {
            cluster,
            master,
            followers,
        };
        race.converge("before the race");
        Some(race)
    }

    /// Runs `steps` one after the other, [`STEP`] apart, with every follower stopped; then
    /// lets them go and waits until they equal the source.
    fn run(&self, steps: &[&dyn Fn(&Path)]) {
        {
            let _frozen: Vec<_> = self.followers.iter().map(|(_, f)| f.freeze()).collect();
            for step in steps {
                step(&self.master.root);
                thread::sleep(STEP);
            }
        }
        self.converge("after the race");
    }

    fn converge(&self, when: &str) {
        for (_, f) in &self.followers {
            if let Err(e) = wait_for(CONVERGE, || tree_diff(&self.master.root, f.tree())) {
                let stored = self
                    .cluster
                    .stored_changes(0, "R")
                    .map(|c| {
                        c.iter()
                            .map(|c| format!("  {c}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_else(|e| e);
                panic!(
                    "{when}: follower {} differs: {e}\n--- the stream\n{stored}\n--- its log\n{}",
                    f.tree().display(),
                    f.log()
                );
            }
        }
    }
}

/// A directory with a file in it becomes a link to a directory holding a file of that name:
/// the change of the file (a message before the link's) names a path that exists on the
/// source only through the link. rsync given it would make the link a directory here.
#[test]
fn a_directory_replaced_by_a_link_stays_a_link() {
    let Some(race) = Race::start(|root| {
        fs::create_dir_all(root.join(name(DIR))).unwrap();
        fs::write(root.join(name(DIR)).join(name(FILE)), "v1").unwrap();
        fs::create_dir_all(root.join(name(LINK_TARGET))).unwrap();
        fs::write(root.join(name(LINK_TARGET)).join(name(FILE)), "target's").unwrap();
    }) else {
        return;
    };
    race.run(&[
        &|root| fs::write(root.join(name(DIR)).join(name(FILE)), "v2").unwrap(),
        &|root| {
            fs::remove_dir_all(root.join(name(DIR))).unwrap();
            symlink(name(LINK_TARGET), root.join(name(DIR))).unwrap();
        },
    ]);
}

/// A link becomes a directory with contents, then a link again, then a directory.
#[test]
fn a_link_replaced_by_a_directory_and_back_ends_as_the_source() {
    let Some(race) = Race::start(|root| {
        fs::create_dir_all(root.join(name(LINK_TARGET))).unwrap();
        fs::write(root.join(name(LINK_TARGET)).join(name(FILE)), "t").unwrap();
        symlink(name(LINK_TARGET), root.join(name(DIR))).unwrap();
    }) else {
        return;
    };
    let dir = || name(DIR);
    race.run(&[
        &|root| {
            fs::remove_file(root.join(dir())).unwrap();
            fs::create_dir(root.join(dir())).unwrap();
            fs::write(root.join(dir()).join(name(FILE)), "own").unwrap();
        },
        &|root| fs::write(root.join(dir()).join("more"), "more").unwrap(),
        &|root| {
            fs::remove_dir_all(root.join(dir())).unwrap();
            symlink(name(LINK_TARGET), root.join(dir())).unwrap();
        },
        &|root| fs::write(root.join(name(LINK_TARGET)).join("new"), "n").unwrap(),
        &|root| {
            fs::remove_file(root.join(dir())).unwrap();
            fs::create_dir_all(root.join(dir()).join("sub")).unwrap();
            fs::write(root.join(dir()).join("sub").join(name(FILE)), "deep").unwrap();
        },
    ]);
}

/// A file becomes a directory with a tree below it, then a file again: the changes below
/// the directory (messages before the file's) name paths below a file on the source.
#[test]
fn a_file_replaced_by_a_directory_and_back_ends_as_the_source() {
    let Some(race) = Race::start(|root| fs::write(root.join(name(FILE)), "file").unwrap()) else {
        return;
    };
    let file = || name(FILE);
    race.run(&[
        &|root| {
            fs::remove_file(root.join(file())).unwrap();
            fs::create_dir_all(root.join(file()).join(name(DIR))).unwrap();
            fs::write(root.join(file()).join(name(DIR)).join("x"), "x").unwrap();
        },
        &|root| fs::write(root.join(file()).join(name(DIR)).join("y"), "y").unwrap(),
        &|root| {
            fs::remove_dir_all(root.join(file())).unwrap();
            fs::write(root.join(file()), "a file again").unwrap();
        },
        // A directory beside it whose pull must still delete what the source lost.
        &|root| {
            fs::create_dir_all(root.join("side")).unwrap();
            fs::write(root.join("side").join("old"), "o").unwrap();
        },
        &|root| fs::remove_file(root.join("side").join("old")).unwrap(),
    ]);
}

/// A file deleted and made again (same size, so only its contents differ), a directory
/// deleted with its tree and made again with another.
#[test]
fn names_deleted_and_made_again_end_as_the_source() {
    let Some(race) = Race::start(|root| {
        fs::write(root.join(name(FILE)), "AAAA").unwrap();
        fs::create_dir_all(root.join(name(DIR)).join("old")).unwrap();
        fs::write(root.join(name(DIR)).join("old").join("f"), "old").unwrap();
    }) else {
        return;
    };
    race.run(&[
        &|root| fs::remove_file(root.join(name(FILE))).unwrap(),
        &|root| fs::write(root.join(name(FILE)), "BBBB").unwrap(),
        &|root| fs::remove_dir_all(root.join(name(DIR))).unwrap(),
        &|root| {
            fs::create_dir_all(root.join(name(DIR)).join("new")).unwrap();
            fs::write(root.join(name(DIR)).join("new").join("f"), "new").unwrap();
        },
    ]);
}

/// Renames onto names that exist: a file over a file, a directory over an empty directory,
/// a file over a file that was just renamed away itself.
#[test]
fn renames_over_existing_names_end_as_the_source() {
    let Some(race) = Race::start(|root| {
        fs::write(root.join("-a"), "A").unwrap();
        fs::write(root.join(name(FILE)), "B").unwrap();
        fs::create_dir_all(root.join(name(DIR)).join("in")).unwrap();
        fs::write(root.join(name(DIR)).join("in").join("x"), "x").unwrap();
        fs::create_dir(root.join("empty")).unwrap();
    }) else {
        return;
    };
    race.run(&[
        &|root| fs::rename(root.join("-a"), root.join(name(FILE))).unwrap(),
        &|root| fs::rename(root.join(name(DIR)), root.join("empty")).unwrap(),
        &|root| fs::rename(root.join(name(FILE)), root.join("-a")).unwrap(),
        &|root| fs::write(root.join(name(FILE)), "C").unwrap(),
        &|root| fs::rename(root.join("empty").join("in"), root.join(name(DIR))).unwrap(),
    ]);
}

/// A tree moved out of the watch, changed there, and moved back in under its name and
/// under another; a tree moved out for good.
#[test]
fn trees_moved_out_and_back_end_as_the_source() {
    let Some(race) = Race::start(|root| {
        for top in ["back", "away"] {
            fs::create_dir_all(root.join(top).join(name(DIR))).unwrap();
            fs::write(root.join(top).join(name(DIR)).join(name(FILE)), top).unwrap();
        }
    }) else {
        return;
    };
    let outside = race.master.outside();
    fs::create_dir_all(&outside).unwrap();
    let out = |what: &str| outside.join(what);
    race.run(&[
        &|root| fs::rename(root.join("back"), out("back")).unwrap(),
        &|_| fs::write(out("back").join(name(DIR)).join("changed"), "c").unwrap(),
        &|root| fs::rename(out("back"), root.join("back")).unwrap(),
        &|root| fs::rename(root.join("away"), out("away")).unwrap(),
        &|root| fs::rename(root.join("back"), out("again")).unwrap(),
        &|root| fs::rename(out("again"), root.join(name(LINK_TARGET))).unwrap(),
    ]);
}

/// A directory made and renamed away again before the master published it is nothing to the
/// master (a pending create renamed is a create of the new name only), yet a follower that
/// pulled its parent whole in between has it; the follower prunes again what it pulled
/// whole (`healAfter`), so it goes. Forced here by stopping the master while the follower
/// pulls: the master reads the make and the rename together afterwards.
#[test]
fn a_directory_the_master_merged_away_is_pruned_after_the_pull_that_brought_it() {
    let Some(race) = Race::start(|_| {}) else {
        return;
    };
    let root = race.master.root.clone();
    let tmp = name(b".tmp \xff\n");
    {
        let _followers: Vec<_> = race.followers.iter().map(|(_, f)| f.freeze()).collect();
        fs::create_dir(root.join(name(DIR))).unwrap();
        thread::sleep(STEP);
        let _master = race.master.sersync.freeze();
        fs::create_dir(root.join(name(DIR)).join(&tmp)).unwrap();
        fs::write(root.join(name(DIR)).join(&tmp).join(name(FILE)), "f").unwrap();
        drop(_followers);
        for (_, f) in &race.followers {
            let pulled = f.tree().join(name(DIR)).join(&tmp);
            wait_for(CONVERGE, || {
                if pulled.exists() {
                    Ok(())
                } else {
                    Err(format!("{} has not pulled it yet", f.tree().display()))
                }
            })
            .unwrap();
        }
        fs::rename(
            root.join(name(DIR)).join(&tmp),
            root.join(name(DIR)).join("final"),
        )
        .unwrap();
    }
    race.converge("after the master published the rename");
}
