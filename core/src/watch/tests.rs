//! The watch table against the real kernel, with the reader stopped while the operations
//! happen: every race between the disk and the reader is forced, not hoped for.
//!
//! - Regressions: one test per way a directory was seen to lose its watch.
//! - A model check: seeded random operations on a real tree, the reader pumped at random
//!   points; afterwards every live directory is watched exactly once, and each
//!   descriptor's recorded path leads to the inode it watches.
//!   `SERSYNC_WATCH_SEEDS=N` runs N seeds instead of the default.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};
use tempfile::TempDir;

use super::tree::DirKey;
use super::{Root, Watcher};
use crate::config::{EventSwitches, FilterConfig};
use crate::filter::Filter;

/// A watched tree in a temporary directory, with a place outside it to move things to.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
    watcher: Watcher,
}

fn switches() -> EventSwitches {
    EventSwitches {
        delete: true,
        create_folder: true,
        create_file: false,
        close_write: true,
        move_from: true,
        move_to: true,
        attrib: false,
        modify: false,
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_tree(|_| {})
    }

    /// A fixture whose root `make` fills before it is watched.
    fn with_tree(make: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        make(&root);
        let filter = Arc::new(Filter::new(&FilterConfig {
            excludes: Vec::new(),
            temp_names: Vec::new(),
        }));
        let roots = vec![Root {
            watch: WatchId(0),
            path: root.clone(),
        }];
        let watcher = Watcher::new(roots, filter, switches(), false).unwrap();
        Fixture {
            _dir: dir,
            root,
            outside,
            watcher,
        }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Lets the reader catch up with everything done so far: reads until the queue is empty
    /// and no doubt is left open.
    fn pump(&mut self) -> Vec<Event> {
        let mut buffer = vec![0u8; 256 * 1024];
        let mut out = Vec::new();
        for _ in 0..50 {
            self.watcher.round(&mut buffer, &mut out).unwrap();
            if self.watcher.doubts.is_empty()
                && !self.watcher.tree.has_homeless()
                && !super::reader::wait_readable(&self.watcher.inotify, Duration::ZERO)
            {
                return out;
            }
        }
        panic!(
            "the reader did not settle: {:?}, homeless {:?}",
            self.watcher.doubts,
            self.watcher.tree.homeless()
        );
    }

    /// Asserts that the table is true: every directory below the root is watched exactly
    /// once, under its path, with its identity.
    fn assert_table_true(&self, context: &str) {
        let real = real_directories(&self.root);
        let mut table: BTreeMap<RelPath, DirKey> = BTreeMap::new();
        for (_, _, path, key) in self.watcher.tree.entries() {
            if let Some(other) = table.insert(path.clone(), key) {
                panic!("{context}: {path} is in the table twice ({other:?} and {key:?})");
            }
        }
        if table != real {
            let missing: Vec<_> = real.keys().filter(|p| !table.contains_key(*p)).collect();
            let stale: Vec<_> = table.keys().filter(|p| !real.contains_key(*p)).collect();
            let wrong: Vec<_> = real
                .iter()
                .filter(|(p, k)| table.get(*p).is_some_and(|t| t != *k))
                .map(|(p, _)| p)
                .collect();
            panic!(
                "{context}: the watch table is not true\n  unwatched: {missing:?}\n  stale: {stale:?}\n  wrong directory: {wrong:?}"
            );
        }
    }

    /// Writes a file at `rel` and asserts that the reader reports it under that path.
    fn assert_write_reported(&mut self, rel: &str) {
        fs::write(self.at(rel), b"hello").unwrap();
        let events = self.pump();
        let path = RelPath::new(rel.as_bytes());
        assert!(
            events
                .iter()
                .any(|e| e.path == path && e.kind == EventKind::CloseWrite),
            "writing {rel} was not reported: {events:?}"
        );
    }
}

/// Every directory below `root` (not following symlinks) with its identity.
fn real_directories(root: &Path) -> BTreeMap<RelPath, DirKey> {
    let mut found = BTreeMap::new();
    let mut stack = vec![RelPath::ROOT];
    while let Some(dir) = stack.pop() {
        let abs = dir.absolute(root);
        let Ok(meta) = fs::symlink_metadata(&abs) else {
            continue;
        };
        found.insert(dir.clone(), DirKey::of(&meta));
        for entry in fs::read_dir(&abs).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(dir.join(entry.file_name().as_bytes()));
            }
        }
    }
    found
}

#[test]
fn a_directory_renamed_before_its_create_is_read_is_watched_under_its_new_name() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("x")).unwrap();
    fs::rename(f.at("x"), f.at("y")).unwrap();
    f.pump();
    f.assert_table_true("mkdir x && mv x y");
    f.assert_write_reported("y/f");
}

#[test]
fn a_new_directory_whose_parent_is_renamed_before_its_create_is_read_is_watched() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("p")).unwrap();
    f.pump();
    fs::create_dir(f.at("p/x")).unwrap();
    fs::rename(f.at("p"), f.at("p2")).unwrap();
    f.pump();
    f.assert_table_true("mkdir p/x && mv p p2");
    f.assert_write_reported("p2/x/f");
}

#[test]
fn a_new_directory_whose_grandparent_is_renamed_before_its_create_is_read_is_watched() {
    let mut f = Fixture::new();
    fs::create_dir_all(f.at("g/p")).unwrap();
    f.pump();
    fs::create_dir(f.at("g/p/x")).unwrap();
    fs::rename(f.at("g"), f.at("g2")).unwrap();
    f.pump();
    f.assert_table_true("mkdir g/p/x && mv g g2");
    f.assert_write_reported("g2/p/x/f");
}

#[test]
fn mkdir_p_then_a_move_of_the_inner_directory_keeps_both_watched() {
    let mut f = Fixture::new();
    for n in 0..300 {
        fs::create_dir_all(f.at(&format!("p{n}/c"))).unwrap();
        fs::rename(f.at(&format!("p{n}/c")), f.at(&format!("m{n}"))).unwrap();
    }
    f.pump();
    f.assert_table_true("mkdir -p pN/c && mv pN/c mN");
    f.assert_write_reported("m299/f");
}

#[test]
fn a_directory_moved_out_of_the_watch_and_straight_back_in_stays_watched() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("a")).unwrap();
    f.pump();
    fs::rename(f.at("a"), f.outside.join("a")).unwrap();
    fs::rename(f.outside.join("a"), f.at("b")).unwrap();
    f.pump();
    f.assert_table_true("mv a OUT/a && mv OUT/a b");
    f.assert_write_reported("b/f2");
}

#[test]
fn a_directory_moved_out_and_back_under_its_own_name_stays_watched() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("a")).unwrap();
    f.pump();
    fs::rename(f.at("a"), f.outside.join("a")).unwrap();
    fs::rename(f.outside.join("a"), f.at("a")).unwrap();
    f.pump();
    f.assert_table_true("mv a OUT/a && mv OUT/a a");
    f.assert_write_reported("a/f");
}

#[test]
fn a_name_taken_again_by_a_new_directory_after_a_rename_is_watched_twice_correctly() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("x")).unwrap();
    fs::rename(f.at("x"), f.at("y")).unwrap();
    fs::create_dir(f.at("x")).unwrap();
    f.pump();
    f.assert_table_true("mkdir x && mv x y && mkdir x");
    f.assert_write_reported("x/f");
    f.assert_write_reported("y/f");
}

#[test]
fn renamed_twice_with_the_first_name_taken_again() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("a")).unwrap();
    f.pump();
    fs::rename(f.at("a"), f.at("b")).unwrap();
    fs::rename(f.at("b"), f.at("c")).unwrap();
    fs::create_dir(f.at("b")).unwrap();
    f.pump();
    f.assert_table_true("mv a b && mv b c && mkdir b");
    f.assert_write_reported("b/f");
    f.assert_write_reported("c/f");
}

#[test]
fn a_directory_renamed_over_an_empty_one_replaces_its_watch() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("a")).unwrap();
    fs::create_dir(f.at("b")).unwrap();
    f.pump();
    fs::rename(f.at("a"), f.at("b")).unwrap();
    f.pump();
    f.assert_table_true("mv a b (b an empty directory)");
    f.assert_write_reported("b/f");
}

#[test]
fn a_tree_removed_and_made_again_at_once_is_watched_anew() {
    let mut f = Fixture::new();
    fs::create_dir_all(f.at("t/u/v")).unwrap();
    f.pump();
    fs::remove_dir_all(f.at("t")).unwrap();
    fs::create_dir_all(f.at("t/u/v")).unwrap();
    f.pump();
    f.assert_table_true("rm -rf t && mkdir -p t/u/v");
    f.assert_write_reported("t/u/v/f");
}

/// The start-up walk (on several threads where there are cores) opens each directory once
/// and watches it under its path, leaves included (not listed where link counts say they
/// have no subdirectory); a subdirectory made in a leaf afterwards is watched too, and the
/// walking threads' working directory is where it was.
#[test]
fn a_tree_there_at_start_is_watched_whole_opening_each_directory_once() {
    let cwd = std::env::current_dir().unwrap();
    let mut f = Fixture::with_tree(|root| {
        for a in 0..12 {
            for b in 0..6 {
                for c in 0..3 {
                    let leaf = root.join(format!("a{a}/b{b}/c{c}"));
                    fs::create_dir_all(&leaf).unwrap();
                    fs::write(leaf.join("file"), b"x").unwrap();
                }
            }
            symlink(root.join(format!("a{a}")), root.join(format!("link{a}"))).unwrap();
        }
        fs::create_dir(root.join("new\nline")).unwrap();
    });
    let directories = real_directories(&f.root).len() as u64;
    assert_eq!(directories, 1 + 12 * (1 + 6 * (1 + 3)) + 1);
    assert_eq!(
        f.watcher.walking.opened, directories,
        "each directory opened once"
    );
    f.assert_table_true("a tree there at start");
    f.assert_write_reported("a11/b5/c2/f");
    fs::create_dir(f.at("a3/b2/c1/d")).unwrap();
    f.pump();
    f.assert_table_true("a subdirectory made in a leaf");
    f.assert_write_reported("a3/b2/c1/d/f");
    assert_eq!(std::env::current_dir().unwrap(), cwd);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random relative path of one to three components from a small pool of names, so
/// that operations collide often.
fn random_path(rng: &mut Rng) -> PathBuf {
    const NAMES: [&str; 5] = ["a", "b", "c", "new\nline", "-d"];
    let depth = 1 + rng.below(3);
    (0..depth).map(|_| NAMES[rng.below(NAMES.len())]).collect()
}

/// One random operation on the tree; failures (a name taken, a parent missing) are part
/// of the game. Returns what it did, for the failure message.
fn random_operation(f: &Fixture, rng: &mut Rng) -> String {
    let path = f.root.join(random_path(rng));
    let other = f.root.join(random_path(rng));
    let out = f.outside.join(format!("o{}", rng.below(3)));
    let (what, result) = match rng.below(12) {
        0..=2 => ("mkdir", fs::create_dir(&path)),
        3 => ("mkdir -p", fs::create_dir_all(&path)),
        4 | 5 => ("mv", fs::rename(&path, &other)),
        6 => (
            "rm -rf",
            fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path)),
        ),
        7 => ("write", fs::write(&path, b"file")),
        8 => ("mv out", fs::rename(&path, &out)),
        9 => ("mv in", fs::rename(&out, &path)),
        10 => ("ln -s", symlink(&other, &path)),
        _ => (
            "mkdir -p, mv",
            fs::create_dir_all(&path).and_then(|_| fs::rename(&path, &other)),
        ),
    };
    let shown = |p: &Path| {
        p.strip_prefix(&f.root)
            .or_else(|_| p.strip_prefix(f.outside.parent().unwrap()))
            .unwrap_or(p)
            .as_os_str()
            .as_bytes()
            .escape_ascii()
            .to_string()
    };
    format!(
        "{what} {} {} {} -> {}",
        shown(&path),
        shown(&other),
        shown(&out),
        if result.is_ok() { "ok" } else { "failed" }
    )
}

#[test]
fn model_check_random_operations_leave_a_true_table() {
    let seeds: u64 = std::env::var("SERSYNC_WATCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rewalks = 0;
    let only: Option<u64> = std::env::var("SERSYNC_WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for seed in 1..=seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let mut f = Fixture::new();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut since_pump = Vec::new();
        for step in 0..400 {
            since_pump.push(random_operation(&f, &mut rng));
            // The reader runs at random moments, so some operations race it and some don't.
            if rng.below(25) == 0 || step == 399 {
                f.pump();
                f.assert_table_true(&format!(
                    "seed {seed} (SERSYNC_WATCH_SEEDS={seed} replays it among the first), after step {step}; operations since the reader last ran:\n    {}",
                    since_pump.join("\n    ")
                ));
                since_pump.clear();
            }
        }
        rewalks += f.watcher.stats.rewalks();
    }
    eprintln!("{seeds} seeds, {rewalks} root walks for unexplained directories");
}

/// The root renamed away and deleted: its own watch says so, the guard marks it lost and
/// its watches are released (so nothing the old directory does reaches the lanes); back
/// in its place on the same device, the check watches it again.
#[test]
fn a_root_renamed_away_or_deleted_is_lost_until_it_is_back() {
    let mut f = Fixture::new();
    fs::create_dir(f.at("d")).unwrap();
    f.pump();
    let guard = f.watcher.root_guard();
    let away = f.outside.join("root");
    fs::rename(&f.root, &away).unwrap();
    f.pump();
    let lost = guard.lost(WatchId(0)).expect("renamed away: lost");
    assert!(lost.contains("renamed away"), "{lost}");
    assert_eq!(
        f.watcher.tree.len(),
        0,
        "the old directory's watches are released"
    );
    fs::write(away.join("d/late"), "x").unwrap();
    assert!(f.pump().is_empty(), "nothing from the directory moved away");
    // Back: the next check watches it again.
    fs::rename(&away, &f.root).unwrap();
    f.watcher.next_root_check = std::time::Instant::now();
    f.watcher.check_roots().unwrap();
    assert_eq!(guard.lost(WatchId(0)), None);
    f.assert_table_true("root back");
    // Deleted.
    fs::remove_dir_all(&f.root).unwrap();
    f.pump();
    assert!(guard
        .lost(WatchId(0))
        .is_some_and(|l| l.contains("deleted")));
    // Re-created on the same file system: watched again.
    fs::create_dir(&f.root).unwrap();
    f.watcher.next_root_check = std::time::Instant::now();
    f.watcher.check_roots().unwrap();
    assert_eq!(guard.lost(WatchId(0)), None);
    f.assert_table_true("root re-created");
}
