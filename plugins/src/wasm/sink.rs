//! One lane's instance of a WASM plugin, re-created after a trap.

use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use sersync_plugin_sdk::abi::unix_nanos;
use sersync_plugin_sdk::{Batch, EventKind, Sink, SinkError};
use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap};

use super::engine::ticks;
use super::host::sersync::plugin::types as wit;
use super::host::{HostState, SinkPlugin};
use super::plugin::{named, WasmPlugin};
use crate::third_party::{plugin_text, MAX_ERROR};

/// Runs one call into an instance (`call`: instantiating it, `init` or `deliver`) for at most
/// `timeout`. The store's epoch deadline stops WASM code that runs too long; this timer stops a
/// call blocked in a host function (a sleep, a poll), which the epoch cannot interrupt: the
/// call's future is dropped, which abandons the call, and it ends as if interrupted
/// ([`Trap::Interrupt`]). Either way the instance must not be used again.
pub(super) fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    // The timer is made inside the runtime: it needs its clock.
    wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(timeout, call).await })
        .unwrap_or_else(|_elapsed| Err(Trap::Interrupt.into()))
}

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
        let call = self
            .bindings
            .call_init(&mut self.store, &plugin.file.params);
        bounded(plugin.timeout, call).map_err(|e| self.trap(plugin, "init", e))
    }

    /// Sets the call deadline and forgets the previous call's errors.
    fn arm(&mut self, plugin: &WasmPlugin) {
        self.store.set_epoch_deadline(ticks(plugin.timeout));
        self.store.data_mut().last_error = None;
    }

    /// Names what made a call trap: the memory cap, the descriptor cap, the deadline, a
    /// panic, or else the trap (its text, which may quote the component's names, made
    /// printable and cut like any of the plugin's messages).
    fn trap(&mut self, plugin: &WasmPlugin, call: &str, e: wasmtime::Error) -> SinkError {
        trap_error(plugin, self.store.data_mut(), call, e)
    }
}

/// The error of `call` failing with `e`, named from what the store's `state` saw.
pub(super) fn trap_error(
    plugin: &WasmPlugin,
    state: &mut HostState,
    call: &str,
    e: wasmtime::Error,
) -> SinkError {
    let table_full = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    let why = if state.limits.refused {
        format!("exceeded its memory limit of {} MiB", plugin.memory >> 20)
    } else if table_full {
        format!(
            "exceeded its limit of {} open files and other WASI handles (max_files)",
            plugin.max_files
        )
    } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        format!("timed out after {} ms", plugin.timeout.as_millis())
    } else if let Some(message) = state.last_error.take() {
        format!("panicked: {message}")
    } else {
        format!(
            "trapped: {}",
            plugin_text(format!("{e:#}").as_bytes(), MAX_ERROR)
        )
    };
    SinkError::retryable(format!("{call} {why}"))
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
        let batch = to_wit(batch);
        let call = instance.bindings.call_deliver(&mut instance.store, &batch);
        match bounded(plugin.timeout, call) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let message = plugin_text(e.message.as_bytes(), MAX_ERROR);
                Err(if e.retryable {
                    SinkError::retryable(message)
                } else {
                    SinkError::fatal(message)
                })
            }
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
