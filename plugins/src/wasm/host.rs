//! What the host gives an instance: its store data, the `log` import, and WASI.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limits;
use crate::third_party::plugin_log;

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "sink-plugin",
});

use sersync::plugin::host::Level;

/// The data of one instance's store.
pub(super) struct HostState {
    /// The plugin's name, for log lines.
    pub(super) name: String,
    /// WASI state: no capability but the granted directories.
    pub(super) wasi: WasiCtx,
    /// WASI resources.
    pub(super) table: ResourceTable,
    /// Memory cap.
    pub(super) limits: Limits,
    /// The last error-level line the plugin logged during the current call (the SDK logs a
    /// panic's message this way just before the instance traps).
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
        let line = plugin_log(&self.name, level, &message);
        if level == sersync_plugin_sdk::Level::Error {
            self.last_error = Some(line);
        }
    }
}
