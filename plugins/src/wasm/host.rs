//! What the host gives an instance: its store data, the `log` import, and WASI.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limits;

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "sink-plugin",
});

use sersync::plugin::host::Level;

/// Longest log message kept from a plugin, in bytes.
const MAX_LOG: usize = 8 * 1024;

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
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG {
            let mut end = MAX_LOG;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let plugin = self.name.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "sersync::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "sersync::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "sersync::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "sersync::plugin", plugin, "{message}"),
            Level::Error => {
                tracing::error!(target: "sersync::plugin", plugin, "{message}");
                self.last_error = Some(message);
            }
        }
    }
}
