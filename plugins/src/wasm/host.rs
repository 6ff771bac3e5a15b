//! What the host gives an instance: its store data, the `log` import, and WASI.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limits;
use crate::third_party::{plugin_text, PluginLog, MAX_ERROR};

// The exports are called asynchronously: a call blocked in an (async) WASI host function can
// then be abandoned at its deadline. `log` stays synchronous: it never blocks.
wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "sink-plugin",
    exports: { default: async },
});

use sersync::plugin::host::Level;

/// The data of one instance's store.
pub(super) struct HostState {
    /// The plugin's log (shared by its lanes).
    pub(super) log: Arc<PluginLog>,
    /// WASI state: no capability but the granted directories.
    pub(super) wasi: WasiCtx,
    /// WASI resources (open files, streams, pollables), at most `max_files` of them.
    pub(super) table: ResourceTable,
    /// Memory cap.
    pub(super) limits: Limits,
    /// The last error-level line the plugin logged during the current call, cut to an error
    /// message's size (the SDK logs a panic's message this way just before the instance
    /// traps). Kept even when the log budget drops the line.
    pub(super) last_error: Option<String>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl sersync::plugin::types::Host for HostState {}

impl sersync::plugin::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => sersync_plugin_sdk::Level::Trace,
            Level::Debug => sersync_plugin_sdk::Level::Debug,
            Level::Info => sersync_plugin_sdk::Level::Info,
            Level::Warn => sersync_plugin_sdk::Level::Warn,
            Level::Error => sersync_plugin_sdk::Level::Error,
        };
        if level == sersync_plugin_sdk::Level::Error {
            self.last_error = Some(plugin_text(message.as_bytes(), MAX_ERROR));
        }
        self.log.log(level, message.as_bytes());
    }
}
