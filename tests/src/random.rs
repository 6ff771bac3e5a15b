//! Seeded random operations on a real tree, shared by the randomized suites
//! (`rsync_convergence`, `churn`): one generator, so a seed means the same sequence
//! everywhere.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// A tiny deterministic generator (xorshift64), so a failing run can be repeated from its
/// seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed` (0, xorshift's fixed point, is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One element of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The name pool of [`random_path`]: few names (so operations collide often), some hostile
/// (a space, a leading `-`, shell syntax, a newline).
pub const NAMES: &[&[u8]] = &[b"a", b"b", b"c d", b"-x", b"$(q)", b"new\nline"];

/// [`NAMES`] plus a name that is not UTF-8.
pub const HOSTILE_NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"c d",
    b"-x",
    b"$(q)",
    b"new\nline",
    b"\xff\xfe-bin",
];

/// A random relative path of one to three components from [`NAMES`].
pub fn random_path(rng: &mut Rng) -> PathBuf {
    random_path_from(rng, NAMES, 3)
}

/// A random relative path of one to `max_depth` components from `names`.
pub fn random_path_from(rng: &mut Rng, names: &[&[u8]], max_depth: usize) -> PathBuf {
    let depth = 1 + rng.below(max_depth);
    (0..depth).map(|_| random_name(rng, names)).collect()
}

/// One name of `names`, at random.
pub fn random_name<'a>(rng: &mut Rng, names: &[&'a [u8]]) -> &'a OsStr {
    OsStr::from_bytes(names[rng.below(names.len())])
}

/// Applies one random operation on a path from [`NAMES`] below `root`: write, mkdir,
/// delete (file or tree), rename, symlink, chmod or append. Failures (a parent missing, a
/// name taken) are part of the game and ignored. `counter` numbers the operations; it
/// makes written contents differ.
pub fn random_operation(root: &Path, rng: &mut Rng, counter: &mut u64) {
    random_operation_from(root, rng, counter, NAMES);
}

/// [`random_operation`] on paths made of `names`.
pub fn random_operation_from(root: &Path, rng: &mut Rng, counter: &mut u64, names: &[&[u8]]) {
    let path = root.join(random_path_from(rng, names, 3));
    *counter += 1;
    let _ = match rng.below(10) {
        0..=2 => fs::write(&path, counter.to_string().repeat(1 + rng.below(200))),
        3 => fs::create_dir(&path),
        4 => fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path)),
        5 | 6 => fs::rename(&path, root.join(random_path_from(rng, names, 3))),
        7 => symlink(random_path_from(rng, names, 3), &path),
        8 => fs::set_permissions(
            &path,
            fs::Permissions::from_mode(0o600 + (rng.below(2) as u32) * 0o44),
        ),
        _ => fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"+")),
    };
}

/// The seed in the environment variable `var` (a decimal number), if it is set and valid.
pub fn seed_from_env(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|s| s.trim().parse().ok())
}

/// How many recently made or moved-in directories a [`Walk`] remembers to write into.
const RECENT: usize = 16;

/// A random walk over a watched tree that goes beyond [`random_operation`]: the directory
/// churn real trees see. Besides the basic operations (on [`HOSTILE_NAMES`], so names
/// with newlines, a leading `-`, `$(…)` and invalid UTF-8 occur), one step may
///
/// - `mkdir -p` a few levels,
/// - make a directory and rename it at once (`mkdir x && mv x y`),
/// - make a nested directory and rename its parent or grandparent at once
///   (`mkdir -p p/q/x && mv p p2`),
/// - move a file or directory out of the tree into `outside` (a sibling of the root that
///   is not watched), or move one of those back in, under any name,
/// - `rm -rf` a directory while another thread writes files into it,
/// - write into a directory it made or moved in a moment ago (where a lost watch shows).
///
/// Every step is decided by the seed; only the outcome of `rm -rf` racing its writer
/// depends on timing. Failures (a name taken, a parent missing) are ignored.
pub struct Walk {
    root: PathBuf,
    outside: PathBuf,
    rng: Rng,
    counter: u64,
    parked: Vec<PathBuf>,
    recent: Vec<PathBuf>,
}

impl Walk {
    /// A walk over `root` from `seed`, parking what it moves out in `outside` (created if
    /// missing; it must be on the same file system as `root` and outside the watch).
    pub fn new(root: &Path, outside: &Path, seed: u64) -> Walk {
        fs::create_dir_all(outside).expect("the directory outside the watch");
        Walk {
            root: root.to_path_buf(),
            outside: outside.to_path_buf(),
            rng: Rng::new(seed),
            counter: 0,
            parked: Vec::new(),
            recent: Vec::new(),
        }
    }

    /// The walk's generator, e.g. to draw pause lengths from the same seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Runs `steps` steps at full speed, pausing up to `max_pause_ms` after every hundred
    /// so that later steps race deliveries.
    pub fn run(&mut self, steps: usize, max_pause_ms: usize) {
        for step in 0..steps {
            self.step();
            if step % 100 == 99 && max_pause_ms > 0 {
                let pause = self.rng.below(max_pause_ms + 1) as u64;
                std::thread::sleep(std::time::Duration::from_millis(pause));
            }
        }
    }

    /// One random step.
    pub fn step(&mut self) {
        match self.rng.below(100) {
            0..=39 => {
                random_operation_from(&self.root, &mut self.rng, &mut self.counter, HOSTILE_NAMES)
            }
            40..=47 => {
                let dir = self.fresh_path(4);
                if fs::create_dir_all(&dir).is_ok() {
                    self.remember(dir);
                }
            }
            48..=55 => {
                let (made, renamed) = (self.fresh_path(2), self.fresh_path(2));
                if fs::create_dir(&made).is_ok() && fs::rename(&made, &renamed).is_ok() {
                    self.remember(renamed);
                }
            }
            56..=61 => self.make_then_rename_ancestor(),
            62..=67 => self.move_out(),
            68..=73 => self.move_back_in(),
            74..=78 => self.remove_tree_while_writing(),
            _ => self.write_into_recent(),
        }
    }

    /// A random path below the root, from [`HOSTILE_NAMES`], one to `max_depth` deep.
    fn fresh_path(&mut self, max_depth: usize) -> PathBuf {
        self.root
            .join(random_path_from(&mut self.rng, HOSTILE_NAMES, max_depth))
    }

    fn remember(&mut self, dir: PathBuf) {
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(dir);
    }

    fn body(&mut self) -> String {
        self.counter += 1;
        format!("{}\n", self.counter).repeat(1 + self.rng.below(64))
    }

    /// `mkdir -p top/mid/leaf && mv top NEW` (or `mv top/mid NEW`): the new leaf's watch
    /// must follow a rename of an ancestor that happened before its create was read.
    fn make_then_rename_ancestor(&mut self) {
        let top = self.fresh_path(1);
        let mid = random_name(&mut self.rng, HOSTILE_NAMES).to_owned();
        let leaf = random_name(&mut self.rng, HOSTILE_NAMES).to_owned();
        let renamed = self.fresh_path(2);
        let grandparent = self.rng.one_in(2);
        if fs::create_dir_all(top.join(&mid).join(&leaf)).is_err() {
            return;
        }
        let moved = if grandparent {
            fs::rename(&top, &renamed).map(|_| renamed.join(&mid).join(&leaf))
        } else {
            fs::rename(top.join(&mid), &renamed).map(|_| renamed.join(&leaf))
        };
        if let Ok(leaf) = moved {
            if self.rng.one_in(2) {
                let body = self.body();
                let _ = fs::write(leaf.join("at-once"), body);
            }
            self.remember(leaf);
        }
    }

    /// Moves a random path out of the tree, to be moved back in later (or never).
    fn move_out(&mut self) {
        let from = self.fresh_path(3);
        self.counter += 1;
        let to = self.outside.join(format!("parked-{}", self.counter));
        if fs::rename(&from, &to).is_ok() {
            self.parked.push(to);
        }
    }

    /// Moves something parked outside back in, under a random name; sometimes at once
    /// after moving something else out (`mv SRC/a OUT/a && mv OUT/a SRC/b`).
    fn move_back_in(&mut self) {
        if self.parked.is_empty() || self.rng.one_in(3) {
            self.move_out();
        }
        if self.parked.is_empty() {
            return;
        }
        let index = self.rng.below(self.parked.len());
        let to = self.fresh_path(2);
        if fs::rename(&self.parked[index], &to).is_ok() {
            self.parked.swap_remove(index);
            if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                self.remember(to);
            }
        }
    }

    /// `rm -rf DIR` while a second thread writes files (and a subdirectory) into it.
    fn remove_tree_while_writing(&mut self) {
        let dir = self.fresh_path(2);
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return;
        }
        // The writer's names come from the seed; only the interleaving is up to timing.
        let names: Vec<PathBuf> = (0..24)
            .map(|_| random_path_from(&mut self.rng, HOSTILE_NAMES, 2))
            .collect();
        let body = self.body();
        let target = dir.clone();
        let writer = std::thread::spawn(move || {
            for name in &names {
                let path = target.join(name);
                // A subdirectory, never the doomed directory itself: the writer races the
                // removal but does not undo it.
                if let Some(parent) = path.parent().filter(|p| *p != target) {
                    let _ = fs::create_dir(parent);
                }
                let _ = fs::write(&path, &body);
            }
        });
        let _ = fs::remove_dir_all(&dir);
        writer.join().expect("the writer thread");
    }

    /// Writes a file (or makes a directory) in a directory made or moved in recently.
    fn write_into_recent(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let dir = self.rng.pick(&self.recent).clone();
        let name = random_name(&mut self.rng, HOSTILE_NAMES).to_owned();
        if self.rng.one_in(4) {
            if fs::create_dir(dir.join(&name)).is_ok() {
                self.remember(dir.join(name));
            }
        } else {
            let body = self.body();
            let _ = fs::write(dir.join(name), body);
        }
    }
}
