//! The source side: the tree the tool watches, random file contents, and the paced writer.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Subdirectories every rate run writes into (they exist before the tool starts).
pub const SUBDIRS: usize = 16;

/// Creates `root/d00 … d15` (and `root` itself).
pub fn make_subdirs(root: &Path) -> io::Result<()> {
    for i in 0..SUBDIRS {
        fs::create_dir_all(root.join(subdir(i)))?;
    }
    Ok(())
}

fn subdir(i: usize) -> String {
    format!("d{:02}", i % SUBDIRS)
}

/// The relative path of the `i`-th file a writer makes: spread round-robin over the subdirs.
pub fn file_name(i: usize) -> PathBuf {
    PathBuf::from(subdir(i)).join(format!("f{i:07}"))
}

/// A small xorshift generator: reproducible, fast, good enough for file contents and sizes.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Random bytes to cut file contents from: each file is a slice at a random offset, so no two
/// files share contents and no generator runs on the writer's hot path.
pub struct Contents {
    pool: Vec<u8>,
    rng: Rng,
}

impl Contents {
    /// A pool of 8 MiB of random bytes.
    pub fn new(seed: u64) -> Contents {
        let mut rng = Rng::new(seed);
        let pool = (0..(8 << 20) / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect();
        Contents { pool, rng }
    }

    /// `len` random bytes (`len` at most 1 MiB).
    pub fn bytes(&mut self, len: usize) -> &[u8] {
        let start = self.rng.between(0, self.pool.len() - len);
        &self.pool[start..start + len]
    }

    /// A size between `lo` and `hi` bytes.
    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.between(lo, hi)
    }
}

/// One file the writer made: where, and when its `close()` returned.
#[derive(Clone, Debug)]
pub struct Written {
    /// Path relative to the watched root.
    pub rel: PathBuf,
    /// When `close()` returned.
    pub closed: Instant,
}

/// What a writer run did.
pub struct WriterRun {
    /// Every file, in order.
    pub files: Vec<Written>,
    /// When the first file was due.
    pub started: Instant,
    /// When the last file was closed.
    pub ended: Instant,
}

impl WriterRun {
    /// Files per second actually achieved.
    pub fn achieved_rate(&self) -> f64 {
        self.files.len() as f64 / (self.ended - self.started).as_secs_f64().max(1e-9)
    }
}

/// What to write: how many files, how fast (`None`: as fast as possible), how big.
#[derive(Clone, Copy, Debug)]
pub struct WritePlan {
    /// Number of files.
    pub files: usize,
    /// Files per second; `None` for an unpaced burst.
    pub rate: Option<f64>,
    /// Smallest file, bytes.
    pub min_size: usize,
    /// Largest file, bytes.
    pub max_size: usize,
}

/// Runs `plan` on a thread of its own ("writer") under `root`: create → write → close, file
/// `i` due at `i / rate` seconds after the start (no sleep when behind schedule).
pub fn write_files(root: &Path, plan: WritePlan, seed: u64) -> io::Result<WriterRun> {
    let root = root.to_path_buf();
    thread::Builder::new()
        .name("writer".into())
        .spawn(move || paced(&root, plan, seed))?
        .join()
        .map_err(|_| io::Error::other("the writer thread panicked"))?
}

fn paced(root: &Path, plan: WritePlan, seed: u64) -> io::Result<WriterRun> {
    let mut contents = Contents::new(seed);
    let mut files = Vec::with_capacity(plan.files);
    let started = Instant::now();
    for i in 0..plan.files {
        if let Some(rate) = plan.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        let rel = file_name(i);
        let len = contents.size(plan.min_size, plan.max_size);
        let mut file = File::create(root.join(&rel))?;
        file.write_all(contents.bytes(len))?;
        drop(file);
        files.push(Written {
            rel,
            closed: Instant::now(),
        });
    }
    let ended = files.last().map(|f| f.closed).unwrap_or(started);
    Ok(WriterRun {
        files,
        started,
        ended,
    })
}
