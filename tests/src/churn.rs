//! The randomized convergence suites' machinery (`tests/tests/churn.rs`): the churn
//! workload of lsyncd's test suite, and a runner that plays many seeds, each on a fresh
//! tree with its own daemon and `sersync`, and names every seed that did not converge with
//! the command that replays it.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::random::{seed_from_env, Rng};
use crate::{tree_diff, wait_for, Sersync, Stage};

/// How long a seed's remotes get to equal its source after its last operation.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Seeds whose walk is done but whose remotes are not known equal yet, at most: the next
/// seed starts while earlier ones converge, so a seed that never converges costs the run
/// `CONVERGE` once per this many, not once each.
const IN_FLIGHT: usize = 3;

/// One seed's setting, kept alive until its remotes are compared: the stage (source tree,
/// daemon), the running `sersync` and the modules that must equal the source.
pub struct Attempt {
    /// The seed the operations came from.
    pub seed: u64,
    /// Its source tree and daemon.
    pub stage: Stage,
    /// The binary under test.
    pub sersync: Sersync,
    /// The daemon's modules, each a remote of the watch.
    pub modules: Vec<String>,
}

impl Attempt {
    /// `Ok` when every module equals the source; else each module's differences.
    pub fn diff(&self) -> Result<(), String> {
        let problems: Vec<String> = self
            .modules
            .iter()
            .filter_map(|m| {
                tree_diff(&self.stage.src, &self.stage.dst(m))
                    .err()
                    .map(|e| format!("module {m}: {e}"))
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n    "))
        }
    }
}

/// The last `n` warnings and errors in `sersync`'s log (less the control endpoint's, which
/// only says that another instance on the machine has its port).
pub fn complaints(sersync: &Sersync, n: usize) -> Vec<String> {
    let log = sersync.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && !l.contains("control endpoint"))
        .collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| l.to_string()).collect()
}

/// The seeds a randomized test plays: `SERSYNC_CHURN_SEED` (or `SERSYNC_RANDOM_SEED`)
/// alone when set; else `SERSYNC_CHURN_SEEDS` of them (default `count`), derived from
/// `base` so that CI plays the same ones every run.
pub fn seeds(base: u64, count: usize) -> Vec<u64> {
    if let Some(seed) = seed_from_env("SERSYNC_CHURN_SEED").or(seed_from_env("SERSYNC_RANDOM_SEED"))
    {
        return vec![seed];
    }
    let count = std::env::var("SERSYNC_CHURN_SEEDS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(count);
    // Hashed twice, so that the streams of nearby bases do not overlap.
    let start = splitmix(base);
    (0..count as u64)
        .map(|i| splitmix(start.wrapping_add(i)))
        .collect()
}

/// splitmix64: spreads consecutive numbers into unrelated seeds.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The command that replays `seed` of `test` alone.
pub fn replay_command(test: &str, seed: u64) -> String {
    format!("SERSYNC_CHURN_SEED={seed} cargo test -p sersync-tests --test churn -- {test} --exact --nocapture")
}

/// Plays every seed of [`seeds`]`(base, count)`: `play` builds a fresh [`Attempt`] and runs
/// its operations; then its remotes get [`CONVERGE`] to equal the source (the comparison
/// returns as soon as they do; up to [`IN_FLIGHT`] seeds converge while the next plays).
/// Panics naming every seed that did not converge, its replay command and its differences.
pub fn run_seeds(test: &str, base: u64, count: usize, mut play: impl FnMut(u64) -> Attempt) {
    // One randomized suite at a time: two of them side by side on a 2-core machine starve
    // each other's sersyncs of CPU, which measures the machine, not sersync.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let seeds = seeds(base, count);
    let mut waiting: VecDeque<(Attempt, Instant)> = VecDeque::new();
    let mut failures = Vec::new();
    for &seed in &seeds {
        eprintln!(
            "{test}: SERSYNC_RANDOM_SEED={seed} (replay: {})",
            replay_command(test, seed)
        );
        let playing = Instant::now();
        let attempt = play(seed);
        eprintln!("{test}: seed {seed} played in {:.1?}", playing.elapsed());
        waiting.push_back((attempt, Instant::now()));
        waiting.retain(|(attempt, quiet)| settle(test, attempt, *quiet, *quiet).is_err());
        while waiting.len() > IN_FLIGHT {
            let (attempt, quiet) = waiting.pop_front().expect("not empty");
            failures.extend(settle(test, &attempt, quiet, quiet + CONVERGE).err());
        }
    }
    for (attempt, quiet) in waiting {
        failures.extend(settle(test, &attempt, quiet, quiet + CONVERGE).err());
    }
    eprintln!(
        "{test}: {} of {} seeds converged, {:.1?} in all",
        seeds.len() - failures.len(),
        seeds.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{test}: {} of {} seeds did not converge within {CONVERGE:?}:\n{}",
            failures.len(),
            seeds.len(),
            failures.join("\n")
        );
    }
}

/// Waits until `attempt`, whose operations ended at `quiet`, converges (`Ok`, printed with
/// the time it took) or `deadline` passes (`Err`; once the deadline is `quiet + CONVERGE`,
/// the failure report, also printed).
fn settle(test: &str, attempt: &Attempt, quiet: Instant, deadline: Instant) -> Result<(), String> {
    let seed = attempt.seed;
    let wait = deadline.saturating_duration_since(Instant::now());
    let Err(error) = wait_for(wait, || attempt.diff()) else {
        eprintln!(
            "{test}: seed {seed} converged {:.1?} after its last operation",
            quiet.elapsed()
        );
        return Ok(());
    };
    if deadline < quiet + CONVERGE {
        return Err(error);
    }
    // `wait_for` names its own wait; what counts is the time since the last operation.
    let difference = error.split_once(": ").map_or(error.as_str(), |(_, d)| d);
    let mut report = format!(
        "  seed SERSYNC_RANDOM_SEED={seed} — replay: {}\n    {:.0?} after its last operation: {difference}",
        replay_command(test, seed),
        quiet.elapsed()
    );
    for line in complaints(&attempt.sersync, 5) {
        let _ = write!(report, "\n    log: {line}");
    }
    eprintln!("{report}");
    Err(report)
}

/// One directory of the churn model: its place and what the workload made in it.
#[derive(Debug)]
struct ChurnDir {
    parent: Option<usize>,
    name: u8,
    subdirs: BTreeSet<u8>,
    files: BTreeSet<u8>,
}

/// The churn workload of lsyncd's test suite (`tests/testlib.lua`, `churn()`, run by
/// `tests/churn-rsync.lua`), on a model of the tree it makes: directories are named by one
/// letter, files by `f` and one letter, holding ten random letters. [`Churn::populate`]
/// makes the starting data (mkfile, mkdir); [`Churn::churn`] throws lsyncd's dice: pause
/// 50, mkfile 20, mkdir 20, move a directory anywhere (not into itself) 20, rmfile 20.
/// lsyncd pauses one second; here a pause is up to `max_pause`, so hundreds of actions
/// take seconds.
pub struct Churn {
    root: PathBuf,
    rng: Rng,
    dirs: Vec<ChurnDir>,
}

impl Churn {
    /// A model of the empty tree `root`, with the dice loaded by `seed`.
    pub fn new(root: &Path, seed: u64) -> Churn {
        Churn {
            root: root.to_path_buf(),
            rng: Rng::new(seed),
            dirs: vec![ChurnDir {
                parent: None,
                name: 0,
                subdirs: BTreeSet::new(),
                files: BTreeSet::new(),
            }],
        }
    }

    /// `actions` random mkfile or mkdir, no pauses (lsyncd's `churn(dir, n, true)`).
    pub fn populate(&mut self, actions: usize) {
        for _ in 0..actions {
            if self.rng.one_in(2) {
                self.mkfile();
            } else {
                self.mkdir();
            }
        }
    }

    /// `actions` throws of lsyncd's dice, pauses up to `max_pause` long.
    pub fn churn(&mut self, actions: usize, max_pause: Duration) {
        for _ in 0..actions {
            match self.rng.below(130) {
                0..=49 => {
                    let ms = self.rng.below(max_pause.as_millis() as usize + 1);
                    std::thread::sleep(Duration::from_millis(ms as u64));
                }
                50..=69 => self.mkfile(),
                70..=89 => self.mkdir(),
                90..=109 => self.mvdir(),
                _ => self.rmfile(),
            }
        }
    }

    fn path(&self, mut dir: usize) -> PathBuf {
        let mut names = Vec::new();
        while let Some(parent) = self.dirs[dir].parent {
            names.push(char::from(self.dirs[dir].name).to_string());
            dir = parent;
        }
        names.iter().rev().fold(self.root.clone(), |p, n| p.join(n))
    }

    fn letter(&mut self) -> u8 {
        b'a' + self.rng.below(26) as u8
    }

    fn mkdir(&mut self) {
        let parent = self.rng.below(self.dirs.len());
        let name = self.letter();
        if self.dirs[parent].subdirs.contains(&name) {
            return;
        }
        let path = self.path(parent).join(char::from(name).to_string());
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        self.dirs[parent].subdirs.insert(name);
        self.dirs.push(ChurnDir {
            parent: Some(parent),
            name,
            subdirs: BTreeSet::new(),
            files: BTreeSet::new(),
        });
    }

    fn mkfile(&mut self) {
        let dir = self.rng.below(self.dirs.len());
        let name = self.letter();
        let mut body: Vec<u8> = (0..10).map(|_| self.letter()).collect();
        body.push(b'\n');
        let path = self.path(dir).join(format!("f{}", char::from(name)));
        fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.dirs[dir].files.insert(name);
    }

    fn mvdir(&mut self) {
        if self.dirs.len() <= 2 {
            return;
        }
        let moved = 1 + self.rng.below(self.dirs.len() - 1);
        let target = self.rng.below(self.dirs.len());
        let mut up = Some(target);
        while let Some(dir) = up {
            if dir == moved {
                return; // into itself
            }
            up = self.dirs[dir].parent;
        }
        let name = self.dirs[moved].name;
        if self.dirs[target].subdirs.contains(&name) {
            return;
        }
        let (from, to) = (
            self.path(moved),
            self.path(target).join(char::from(name).to_string()),
        );
        fs::rename(&from, &to)
            .unwrap_or_else(|e| panic!("mv {} {}: {e}", from.display(), to.display()));
        let old_parent = self.dirs[moved].parent.expect("not the root");
        self.dirs[old_parent].subdirs.remove(&name);
        self.dirs[target].subdirs.insert(name);
        self.dirs[moved].parent = Some(target);
    }

    fn rmfile(&mut self) {
        let with_files: Vec<usize> = (0..self.dirs.len())
            .filter(|&d| !self.dirs[d].files.is_empty())
            .collect();
        if with_files.is_empty() {
            return;
        }
        let dir = *self.rng.pick(&with_files);
        let files: Vec<u8> = self.dirs[dir].files.iter().copied().collect();
        let name = *self.rng.pick(&files);
        let path = self.path(dir).join(format!("f{}", char::from(name)));
        fs::remove_file(&path).unwrap_or_else(|e| panic!("rm {}: {e}", path.display()));
        self.dirs[dir].files.remove(&name);
    }
}
