//! The kernel's inotify limits: read them, compare, and say what to raise.

use std::fs;
use std::io;
use std::path::Path;

const PROC_DIR: &str = "/proc/sys/fs/inotify";

/// The current values of `/proc/sys/fs/inotify/*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InotifyLimits {
    /// `max_user_watches`: directories one user may watch.
    pub max_user_watches: u64,
    /// `max_queued_events`: events the kernel queues before it reports an overflow.
    pub max_queued_events: u64,
    /// `max_user_instances`.
    pub max_user_instances: u64,
}

fn read_value(name: &str) -> io::Result<u64> {
    let text = fs::read_to_string(Path::new(PROC_DIR).join(name))?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{PROC_DIR}/{name}: {e}"),
        )
    })
}

impl InotifyLimits {
    /// Reads the limits.
    pub fn read() -> io::Result<Self> {
        Ok(InotifyLimits {
            max_user_watches: read_value("max_user_watches")?,
            max_queued_events: read_value("max_queued_events")?,
            max_user_instances: read_value("max_user_instances")?,
        })
    }

    /// The advice for watching `directories` directories: `None` when the limit suffices.
    pub fn advice_for(&self, directories: u64) -> Option<String> {
        (directories > self.max_user_watches)
            .then(|| watch_limit_advice(self.max_user_watches, directories))
    }
}

/// What to tell the user when `needed` directories exceed `limit` watches.
pub fn watch_limit_advice(limit: u64, needed: u64) -> String {
    let suggested = (needed.saturating_mul(2)).max(524_288);
    format!(
        "fs.inotify.max_user_watches is {limit}, but at least {needed} directories are to be watched; \
         raise it with `sysctl -w fs.inotify.max_user_watches={suggested}` (and persist it in /etc/sysctl.d/), \
         or start sersync as root with --raise-limits"
    )
}

/// Raises `max_user_watches` to at least `watches` and `max_queued_events` to at least
/// `queued` (root only). Never lowers a value.
pub fn raise(watches: u64, queued: u64) -> io::Result<InotifyLimits> {
    let current = InotifyLimits::read()?;
    if current.max_user_watches < watches {
        fs::write(
            Path::new(PROC_DIR).join("max_user_watches"),
            watches.to_string(),
        )?;
    }
    if current.max_queued_events < queued {
        fs::write(
            Path::new(PROC_DIR).join("max_queued_events"),
            queued.to_string(),
        )?;
    }
    InotifyLimits::read()
}

/// Counts the directories at and below `root`, without following symlinks (an estimate of
/// the watches it needs: excluded directories are counted too).
pub fn count_directories(root: &Path) -> u64 {
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        count += 1;
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(entry.path());
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_numbers_and_the_sysctl() {
        let limits = InotifyLimits {
            max_user_watches: 8192,
            max_queued_events: 16384,
            max_user_instances: 128,
        };
        assert_eq!(limits.advice_for(8000), None);
        let advice = limits.advice_for(110_101).unwrap();
        assert!(advice.contains("is 8192"));
        assert!(advice.contains("110101 directories"));
        assert!(advice.contains("sysctl -w fs.inotify.max_user_watches=524288"));
    }
}
