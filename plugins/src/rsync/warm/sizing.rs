//! How many processes an instance keeps waiting: as few as hand each batch one that has
//! finished its set-up, learnt batch by batch (see [`warm`](super::super::warm)).
//!
//! A process has finished its set-up when it waits for its list: rsync 3.2.7 then sits in
//! `select` on its standard input alone (`pselect6(1, [0], …)` under strace; `/proc/PID/
//! syscall` shows the call and its first argument, 1). The pool's replacement is started as
//! a run begins and handed the batch that comes as many runs later as the pool is long; so
//! when the process a batch is handed is still connecting, the set-up takes longer than that
//! many batch intervals and the pool grows by one; when the one behind it is ready too, one
//! fewer would do and it shrinks by one. It never grows past the bound the sink gives.

use std::fs;

/// The pool size, adapted at each batch.
#[derive(Debug)]
pub struct Sizing {
    target: usize,
}

impl Default for Sizing {
    fn default() -> Sizing {
        Sizing { target: 1 }
    }
}

impl Sizing {
    /// A batch was handed a process: `handed_ready` when it had finished its set-up,
    /// `next_ready` when the one waiting behind it had too.
    pub fn observed(&mut self, handed_ready: bool, next_ready: bool, bound: usize) {
        if !handed_ready {
            self.target = (self.target + 1).min(bound.max(1));
        } else if next_ready {
            self.target = self.target.saturating_sub(1).max(1);
        }
    }

    /// Processes to keep waiting: the learnt size, at most `bound` (none when it is 0).
    pub fn target(&self, bound: usize) -> usize {
        self.target.min(bound)
    }
}

/// True when rsync `pid` waits for its file list: blocked in `select` (or `pselect6`) on
/// descriptor 0 alone, or reading it. False when that cannot be read (then the pool only
/// grows, within its bound).
pub fn ready(pid: u32) -> bool {
    let Ok(line) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = line.split(' ');
    let (Some(call), Some(first)) = (fields.next(), fields.next()) else {
        return false;
    };
    let Ok(call) = call.parse::<libc::c_long>() else {
        return false;
    };
    let selects = call == libc::SYS_pselect6 || is_select(call);
    (selects && first == "0x1") || (call == libc::SYS_read && first == "0x0")
}

#[cfg(target_arch = "x86_64")]
fn is_select(call: libc::c_long) -> bool {
    call == libc::SYS_select
}

/// Other architectures have no `select` system call (glibc uses `pselect6`).
#[cfg(not(target_arch = "x86_64"))]
fn is_select(_call: libc::c_long) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn the_pool_grows_when_a_batch_finds_its_process_connecting_and_shrinks_when_two_were_ready() {
        let mut sizing = Sizing::default();
        assert_eq!(sizing.target(4), 1);
        sizing.observed(false, false, 4);
        sizing.observed(false, false, 4);
        assert_eq!(sizing.target(4), 3);
        sizing.observed(true, false, 4);
        assert_eq!(
            sizing.target(4),
            3,
            "the one handed out was ready, the next not yet"
        );
        sizing.observed(true, true, 4);
        assert_eq!(sizing.target(4), 2);
        for _ in 0..10 {
            sizing.observed(false, false, 2);
        }
        assert_eq!(sizing.target(2), 2, "past its bound");
        assert_eq!(sizing.target(0), 0, "no share of the connection: none");
        for _ in 0..10 {
            sizing.observed(true, true, 4);
        }
        assert_eq!(sizing.target(4), 1);
    }

    #[test]
    fn an_rsync_waiting_for_its_list_is_ready_and_one_that_works_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        // A local copy reads its list once it has started: the same read as a remote one.
        let mut rsync = Command::new("rsync")
            .args(["-a", "--files-from=-", "--from0", "./"])
            .arg(&dest)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(rsync.id()) {
            assert!(Instant::now() < deadline, "rsync never waited for its list");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut stdin = rsync.stdin.take().unwrap();
        stdin.write_all(b"").unwrap();
        drop(stdin);
        rsync.wait().unwrap();
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        assert!(!ready(busy.id()), "a process that computes is not waiting");
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(!ready(u32::MAX), "no such process");
    }
}
