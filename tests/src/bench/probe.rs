//! The slave-side stopwatch: inotify on a module's tree, timestamping when each file's final
//! name first appears there.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// How long one `poll()` waits before the reader looks at its stop flag.
const POLL_MS: i32 = 50;

/// Files seen so far: path relative to the watched root → when its name first appeared.
type Landed = Arc<Mutex<HashMap<PathBuf, Instant>>>;

/// Watches a tree recursively for `IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO` and records the
/// first time each name shows up. rsync writes `.name.XXXXXX` and renames it to `name`, so the
/// `IN_MOVED_TO` of the final name is the moment the file is complete on the slave; names
/// starting with `.` (rsync's temporaries) are not recorded, and the benchmark never writes any.
///
/// New directories are watched as they appear and scanned (their files get the scan's time).
/// On a kernel queue overflow the whole tree is rescanned the same way and the overflow is
/// counted, so figures taken across one are slightly late, never missing.
pub struct LandingProbe {
    landed: Landed,
    overflows: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LandingProbe {
    /// Starts watching `root` (which must exist) and everything below it.
    pub fn start(root: &Path) -> io::Result<LandingProbe> {
        let mut reader = Reader {
            inotify: Inotify::init()?,
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            landed: Arc::new(Mutex::new(HashMap::new())),
            overflows: Arc::new(AtomicU64::new(0)),
        };
        reader.add_tree(Path::new(""))?;
        let landed = reader.landed.clone();
        let overflows = reader.overflows.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("landing probe".into())
            .spawn(move || reader.run(&flag))?;
        Ok(LandingProbe {
            landed,
            overflows,
            stop,
            thread: Some(thread),
        })
    }

    /// When `rel` (relative to the root) first appeared, if it has.
    pub fn seen(&self, rel: &Path) -> Option<Instant> {
        self.lock().get(rel).copied()
    }

    /// The arrival time of each of `rels`, in order (`None`: not there yet).
    pub fn arrivals<'a>(&self, rels: impl IntoIterator<Item = &'a Path>) -> Vec<Option<Instant>> {
        let landed = self.lock();
        rels.into_iter().map(|r| landed.get(r).copied()).collect()
    }

    /// How many files have arrived (everything below the root not starting with `.`).
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Kernel queue overflows so far (each one cost a rescan).
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Instant>> {
        self.landed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LandingProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The probe's thread state: the inotify instance and which directory each watch is.
struct Reader {
    inotify: Inotify,
    root: PathBuf,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    landed: Landed,
    overflows: Arc<AtomicU64>,
}

impl Reader {
    fn run(mut self, stop: &AtomicBool) {
        let mut buffer = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            if !self.readable() {
                continue;
            }
            let events: Vec<(WatchDescriptor, EventMask, Option<PathBuf>)> =
                match self.inotify.read_events(&mut buffer) {
                    Ok(events) => events
                        .map(|e| (e.wd, e.mask, e.name.map(PathBuf::from)))
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                };
            let now = Instant::now();
            for (wd, mask, name) in events {
                self.handle(wd, mask, name.as_deref(), now);
            }
        }
    }

    /// Waits up to [`POLL_MS`] for events; `true` when there are some.
    fn readable(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, POLL_MS) > 0 }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<&Path>, now: Instant) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.overflows.fetch_add(1, Ordering::Relaxed);
            let _ = self.add_tree(Path::new(""));
            return;
        }
        let (Some(dir), Some(name)) = (self.dirs.get(&wd), name) else {
            return;
        };
        let rel = dir.join(name);
        if mask.contains(EventMask::ISDIR) {
            let _ = self.add_tree(&rel);
        } else if !is_hidden(name.as_os_str()) {
            self.record(rel, now);
        }
    }

    fn record(&self, rel: PathBuf, at: Instant) {
        let mut landed = self.landed.lock().unwrap_or_else(|e| e.into_inner());
        landed.entry(rel).or_insert(at);
    }

    /// Watches `rel` and every directory below it, recording the files found as landed now.
    fn add_tree(&mut self, rel: &Path) -> io::Result<()> {
        let mask = WatchMask::CREATE | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO;
        let mut stack = vec![rel.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let wd = self.inotify.watches().add(self.root.join(&dir), mask)?;
            self.dirs.insert(wd, dir.clone());
            let Ok(entries) = fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            let now = Instant::now();
            for entry in entries.flatten() {
                let child = dir.join(entry.file_name());
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(child),
                    Ok(_) if !is_hidden(&entry.file_name()) => self.record(child, now),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

/// Waits until `count()` reaches `want`, at most `timeout`; returns the last count seen.
pub fn wait_count(want: usize, timeout: Duration, mut count: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count();
        if n >= want || Instant::now() >= deadline {
            return n;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
