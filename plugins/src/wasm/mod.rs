//! WASM plugins: a component of the `sersync:plugin/sink-plugin` world (`plugin-sdk/wit`),
//! run by wasmtime.
//!
//! The component is compiled once per file, at configuration time; each lane gets an instance of its
//! own, in a store of its own. Every call runs under an epoch deadline (`timeout_ms`) and a
//! memory cap (`memory_mb`). A trap (a panic, the deadline, the memory cap) is a retryable
//! error; the instance is thrown away and a fresh one is made before the next batch. The
//! component gets no WASI capability but the directories `<allow_dir path="…"/>` grants.

mod compile;
mod engine;
mod host;
mod limits;
mod plugin;
mod sink;

pub use plugin::configure;
