//! The remote shell of ssh remotes (`<ssh start="true">`): OpenSSH, with one multiplexed
//! connection per remote host when the daemon has a state directory.
//!
//! Every rsync over ssh costs a new ssh connection (key exchange, authentication, a session:
//! 380–750 ms per `ssh host true` measured on the loaded 2-core box, 20–40 ms over an
//! existing ControlMaster connection). So sersync keeps a master connection per host
//! ([`master`]: started in the state directory, `ControlPersist=60`) and rsync is given `-e
//! "ssh -o ControlMaster=no -o ControlPath=DIR/ssh-HASH"`: its ssh opens a session on the
//! master's connection, or connects directly while there is none, and never becomes a master
//! itself (one started by rsync's ssh would keep rsync's working directory, the watch root,
//! for 60 s after the last run: `umount` of the root would say "target is busy"). `HASH` is
//! of the host as configured (`[user@]host`), so two hosts never share a connection; ssh
//! resolves the rest (port, user from its configuration) the same way for both. The socket
//! lives in the state directory, which only sersync's user can write to (created 0700,
//! refused otherwise: then no multiplexing), so no one else can plant a socket there.
//!
//! The value is one argument word for rsync, which splits it at spaces itself; a directory
//! whose path needs quoting (a space, a quote, `%`, which ssh expands) or is too long for a
//! Unix socket's name is not used: such remotes get plain `ssh`. A user's own `-e`/`--rsh`
//! in `<commonParams>` always wins (and then sersync keeps no master).
//!
//! Every rsync over the master connection is one session of it, and the slave's sshd allows
//! [`MAX_SESSIONS`] per connection (`MaxSessions`, Debian's default 10; one more is refused
//! and that run fails). The instances of every remote on one host (all `transfersPerRemote`
//! of each remote, of every watch, and the auditors) share one connection, so each registers
//! a [`Share`] of it while it lives; warm processes are kept only within that share.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::RsyncOptions;

pub use master::keep_master;

mod master;

/// Seconds a master connection outlives its last session.
pub const PERSIST_SECS: u32 = 60;

/// The longest socket path (`sun_path` holds 108 bytes with its NUL; ssh first binds a
/// temporary name 17 bytes longer than the final one).
const MAX_SOCKET_PATH: usize = 107 - 17;

/// `ssh-` and the 16 hex digits of the host's hash.
const SOCKET_NAME_LEN: usize = 4 + 16;

/// sshd's default `MaxSessions`: sessions one connection may have open at once.
pub const MAX_SESSIONS: usize = 10;

/// The most rsync processes one instance keeps waiting over ssh, however many sessions its
/// share would allow (each is an `rsync --server` waiting on the slave).
pub const MAX_POOL: usize = 4;

/// The instances alive per connection: the remote shell and the host.
static INSTANCES: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn instances() -> std::sync::MutexGuard<'static, BTreeMap<String, usize>> {
    INSTANCES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One sink instance's share of the connection to its ssh host, registered while it lives.
#[derive(Debug)]
pub struct Share {
    key: String,
}

impl Share {
    /// Registers an instance that sends over `shell` (the `-e` word) to `host`.
    pub fn join(shell: &OsString, host: &str) -> Share {
        let key = format!("{}\0{host}", shell.to_string_lossy());
        *instances().entry(key.clone()).or_default() += 1;
        Share { key }
    }

    /// How many processes this instance may keep waiting: each instance of the connection
    /// runs at most one rsync and keeps this many waiting, and all of them together stay
    /// below [`MAX_SESSIONS`] (at most [`MAX_POOL`]; 0 with more than 4 instances: then
    /// none waits).
    pub fn pool_bound(&self) -> usize {
        let sharing = instances().get(&self.key).copied().unwrap_or(1).max(1);
        ((MAX_SESSIONS - 1) / sharing)
            .saturating_sub(1)
            .min(MAX_POOL)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut instances = instances();
        if let Some(count) = instances.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                instances.remove(&self.key);
            }
        }
    }
}

/// The program (and its options) rsync is given with `-e` to reach the ssh remote `host`.
pub fn remote_shell(options: &RsyncOptions, host: &str) -> OsString {
    match socket(options, host) {
        Some(path) => format!("ssh -o ControlMaster=no -o ControlPath={}", path.display()).into(),
        None => "ssh".into(),
    }
}

/// The master connection's socket for `host`: `DIR/ssh-HASH` in the state directory, when
/// that can be written into rsync's `-e` word as it is and the socket's name fits.
fn socket(options: &RsyncOptions, host: &str) -> Option<PathBuf> {
    let dir = options.ssh_control_dir.as_deref()?;
    let dir = dir.to_str()?.trim_end_matches('/');
    let plain = dir
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,".contains(&b));
    (plain && dir.starts_with('/') && dir.len() + 1 + SOCKET_NAME_LEN <= MAX_SOCKET_PATH)
        .then(|| Path::new(dir).join(format!("ssh-{:016x}", fnv1a(host.as_bytes()))))
}

/// FNV-1a, 64 bits: the same name for the same host in every run of sersync.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_to(dir: Option<&str>, host: &str) -> String {
        let options = RsyncOptions {
            ssh: true,
            ssh_control_dir: dir.map(Into::into),
            ..RsyncOptions::default()
        };
        remote_shell(&options, host).into_string().unwrap()
    }

    fn shell(dir: Option<&str>) -> String {
        shell_to(dir, "backup@www.example")
    }

    #[test]
    fn a_state_directory_gives_one_master_connection_per_remote_host() {
        let word = shell(Some("/var/lib/sersync/"));
        let path = word
            .strip_prefix("ssh -o ControlMaster=no -o ControlPath=/var/lib/sersync/ssh-")
            .unwrap_or_else(|| panic!("{word}"));
        assert_eq!(path.len(), 16, "{word}");
        assert!(path.bytes().all(|b| b.is_ascii_hexdigit()), "{word}");
        assert_eq!(
            word,
            shell(Some("/var/lib/sersync")),
            "the same host, the same socket"
        );
        assert_ne!(word, shell_to(Some("/var/lib/sersync"), "www.example"));
        assert_eq!(shell(None), "ssh");
    }

    #[test]
    fn instances_of_one_connection_share_its_sessions() {
        let shell = OsString::from("ssh -o test-share");
        let first = Share::join(&shell, "u@share-host");
        assert_eq!(first.pool_bound(), MAX_POOL);
        let second = Share::join(&shell, "u@share-host");
        let other = Share::join(&shell, "u@other-host");
        // Two instances: 2 × (1 running + 3 waiting) = 8 sessions, below 10.
        assert_eq!(first.pool_bound(), 3);
        assert_eq!(second.pool_bound(), 3);
        assert_eq!(
            other.pool_bound(),
            MAX_POOL,
            "another host is another connection"
        );
        let more: Vec<Share> = (0..3)
            .map(|_| Share::join(&shell, "u@share-host"))
            .collect();
        assert_eq!(first.pool_bound(), 0, "five instances: none waits");
        drop(more);
        drop(second);
        assert_eq!(first.pool_bound(), MAX_POOL);
    }

    #[test]
    fn a_directory_that_would_need_quoting_or_is_too_long_is_not_used() {
        for dir in [
            "/srv/state dir",
            "/srv/it's",
            "/srv/100%",
            "relative/state",
            "/srv/\"q\"",
        ] {
            assert_eq!(shell(Some(dir)), "ssh", "{dir}");
        }
        let long = format!("/{}", "d".repeat(70));
        assert_eq!(shell(Some(&long)), "ssh");
    }
}
