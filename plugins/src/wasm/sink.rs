//! One lane's instance of a WASM plugin, re-created after a trap.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use sersync_plugin_sdk::abi::unix_nanos;
use sersync_plugin_sdk::{Batch, EventKind, Sink, SinkError};
use wasmtime::{Store, Trap};

use super::engine::ticks;
use super::host::sersync::plugin::types as wit;
use super::host::{HostState, SinkPlugin};
use super::plugin::{named, WasmPlugin};

/// A live instance: its store and its exports.
pub(super) struct Instance {
    pub(super) store: Store<HostState>,
    pub(super) bindings: SinkPlugin,
}

impl Instance {
    /// Calls `init` under the deadline; a trap becomes a [`SinkError`].
    pub(super) fn call_init(
        &mut self,
        plugin: &WasmPlugin,
    ) -> Result<Result<(), String>, SinkError> {
        self.arm(plugin);
        let result = self
            .bindings
            .call_init(&mut self.store, &plugin.file.params);
        result.map_err(|e| self.trap(plugin, "init", e))
    }

    /// Sets the call deadline and forgets the previous call's errors.
    fn arm(&mut self, plugin: &WasmPlugin) {
        self.store.set_epoch_deadline(ticks(plugin.timeout));
        self.store.data_mut().last_error = None;
    }

    /// Names what made a call trap: the memory cap, the deadline, a panic, or else the trap.
    fn trap(&mut self, plugin: &WasmPlugin, call: &str, e: wasmtime::Error) -> SinkError {
        let state = self.store.data_mut();
        let why = if state.limits.refused {
            format!("exceeded its memory limit of {} MiB", plugin.memory >> 20)
        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            format!("timed out after {} ms", plugin.timeout.as_millis())
        } else if let Some(message) = state.last_error.take() {
            format!("panicked: {message}")
        } else {
            format!("trapped: {e:#}")
        };
        SinkError::retryable(format!("{call} {why}"))
    }
}

/// A lane of a WASM plugin.
pub(super) struct WasmSink {
    plugin: Arc<WasmPlugin>,
    /// `None` after a trap: re-created before the next batch.
    instance: Option<Instance>,
}

impl WasmSink {
    /// Starts a lane with an instance of its own.
    pub(super) fn new(plugin: Arc<WasmPlugin>) -> Result<Self, SinkError> {
        let instance = Some(plugin.instantiate().map_err(|e| named(&plugin, e))?);
        Ok(WasmSink { plugin, instance })
    }
}

impl Sink for WasmSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.try_deliver(batch).map_err(|e| named(&self.plugin, e))
    }
}

impl WasmSink {
    /// Delivers `batch`, making a fresh instance first if the last call trapped.
    fn try_deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let plugin = &*self.plugin;
        let instance = match &mut self.instance {
            Some(instance) => instance,
            slot => slot.insert(plugin.instantiate()?),
        };
        instance.arm(plugin);
        let result = instance
            .bindings
            .call_deliver(&mut instance.store, &to_wit(batch));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.retryable => Err(SinkError::retryable(e.message)),
            Ok(Err(e)) => Err(SinkError::fatal(e.message)),
            Err(e) => {
                let mut err = instance.trap(plugin, "deliver", e);
                err.message
                    .push_str("; the instance is re-created for the next batch");
                // Its state may be anything: start afresh for the next batch.
                self.instance = None;
                Err(err)
            }
        }
    }
}

/// The WIT form of a batch (paths copied as bytes).
fn to_wit(batch: &Batch) -> wit::Batch {
    wit::Batch {
        watch: batch.watch.0,
        root: batch.root.as_os_str().as_bytes().to_vec(),
        events: batch
            .events
            .iter()
            .map(|e| wit::Event {
                kind: match e.kind {
                    EventKind::Create => wit::EventKind::Create,
                    EventKind::Modify => wit::EventKind::Modify,
                    EventKind::CloseWrite => wit::EventKind::CloseWrite,
                    EventKind::Attrib => wit::EventKind::Attrib,
                    EventKind::Delete => wit::EventKind::Delete,
                    EventKind::Move => wit::EventKind::Move,
                    EventKind::Rescan => wit::EventKind::Rescan,
                },
                path: e.path.as_bytes().to_vec(),
                old_path: e.from.as_ref().map(|f| f.as_bytes().to_vec()),
                is_dir: e.is_dir,
                time_unix_nanos: unix_nanos(e.time),
            })
            .collect(),
    }
}
