//! Harness for sersync's end-to-end tests: real peers on loopback, the real binary.
//!
//! - [`RsyncDaemon`]: an rsync daemon on 127.0.0.1 with `auth users` and a `secrets file`,
//!   as slaves run it, one module per remote.
//! - [`Sersync`]: the built `sersync` binary running against a generated `confxml.xml`.
//! - [`SshServer`]: a real sshd on 127.0.0.1 with generated keys, for ssh remotes.
//! - [`Stage`]: a temporary source tree and a daemon, the start of most tests.
//! - [`tree_diff`]: byte-for-byte comparison of two trees (names, types, contents, modes,
//!   symlink targets).
//! - [`cdn`]: a static HTTP origin serving a slave's module and a real Varnish before it.
//! - [`peers`]: an HTTP peer that records requests (plain or TLS) and a TCP peer.
//! - [`build_example`]: builds an example plugin from source as its author would;
//!   [`build_wat_example`] turns a hand-written component into a binary one.
//! - [`wait_for`]: bounded polling.
//! - [`random`]: the seeded generator and random operations of the randomized suites;
//!   [`churn`]: lsyncd's churn workload and the runner that plays many seeds.
//! - [`bench`]: the benchmark harness (the `bench` binary).

#![deny(missing_docs)]

pub mod bench;
mod capture;
pub mod cdn;
pub mod churn;
mod compare;
mod daemon;
mod examples;
mod http;
pub mod peers;
pub mod random;
mod sersync;
mod sshd;
mod stage;

pub use capture::SharedBuffer;
pub use compare::tree_diff;
pub use daemon::{free_port, RsyncDaemon, USER};
pub use examples::{build_example, build_wat_example, wasm_target_installed, WASM_TARGET};
pub use http::{http, http_bytes, http_with_headers};
pub use sersync::{sersync_bin, user_ids, ConfigBuilder, Frozen, Sersync};
pub use sshd::SshServer;
pub use stage::Stage;

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Ok`, or fails with its last error after
/// `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(format!("after {timeout:?}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Writes `count` files of ~1 KiB named `{prefix}{i}` into `dir` at about `per_second`
/// files a second, in a thread. Returns the thread; it ends when all are written.
pub fn paced_writer(
    dir: std::path::PathBuf,
    prefix: &str,
    count: usize,
    per_second: u32,
) -> std::thread::JoinHandle<()> {
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..count {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(per_second.max(1)));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let body = format!("{prefix}{i}\n").repeat(64);
            std::fs::write(dir.join(format!("{prefix}{i}")), body).expect("write a file");
        }
    })
}

/// Waits until `dst` equals `src` (see [`tree_diff`]); panics with the difference otherwise.
pub fn assert_converges(src: &std::path::Path, dst: &std::path::Path, timeout: Duration) {
    if let Err(e) = wait_for(timeout, || tree_diff(src, dst)) {
        panic!(
            "{} and {} did not converge: {e}",
            src.display(),
            dst.display()
        );
    }
}
