//! Harness for sersync's end-to-end tests: real peers on loopback, the real binary.
//!
//! - [`RsyncDaemon`]: an rsync daemon on 127.0.0.1 with `auth users` and a `secrets file`,
//!   as slaves run it, one module per remote.
//! - [`Sersync`]: the built `sersync` binary running against a generated `confxml.xml`.
//! - [`tree_diff`]: byte-for-byte comparison of two trees (names, types, contents, modes,
//!   symlink targets).
//! - [`wait_for`]: bounded polling.
//! - [`bench`]: the benchmark harness (the `bench` binary).

pub mod bench;
mod compare;
mod daemon;
mod sersync;

pub use compare::tree_diff;
pub use daemon::RsyncDaemon;
pub use sersync::{sersync_bin, ConfigBuilder, Sersync};

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
