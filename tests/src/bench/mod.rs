//! The benchmark harness behind `cargo run --release -p sersync-tests --bin bench`: sersync
//! against lsyncd and against the transport's ceiling, on loopback (see `docs/benchmarks.md`).
//!
//! - [`writer`]: the watched tree and the paced writer (create → write → close, close times).
//! - [`probe`]: inotify on the slave's tree, timing when each final name appears.
//! - [`tools`]: sersync and lsyncd started and stopped, their CPU and peak RSS from `/proc`.
//! - [`workloads`]: rate runs, fan-out, bulk-rsync ceiling, burst, append, trees, start-up.
//! - [`report`]: tables, target check, JSON and SVG.

pub mod probe;
pub mod report;
pub mod stats;
pub mod tools;
pub mod workloads;
pub mod writer;
