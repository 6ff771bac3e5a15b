//! A compiled WASM plugin: configuration, compilation, and making instances.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sersync_plugin_sdk::config::attrs::{duration, number, Bounds, TIMEOUT_MS};
use sersync_plugin_sdk::{ConfigError, ConfigNode, Sink, SinkContext, SinkError};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::compile::compile;
use super::engine::{engine, ticks};
use super::host::{HostState, SinkPlugin, SinkPluginPre};
use super::limits::Limits;
use super::sink::{bounded, trap_error, Instance, WasmSink};
use crate::registry::SinkSpec;
use crate::third_party::{plugin_text, PluginFile, PluginLog, MAX_ERROR};

/// Default `timeout_ms`: the longest one call may run.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default `memory_mb`: the most linear memory an instance may have.
const DEFAULT_MEMORY_MB: usize = 64;
/// Default `max_files`: the most WASI handles (open files and directories, streams,
/// pollables) an instance may hold at once, and so the most descriptors it can take from the
/// daemon.
const DEFAULT_MAX_FILES: usize = 64;

/// A directory granted to the plugin by `<allow_dir path="…" readonly="true"/>`, seen at the
/// same path inside the sandbox.
#[derive(Clone, Debug)]
struct AllowDir {
    path: PathBuf,
    readonly: bool,
}

/// Everything needed to make an instance; shared by the spec and its lanes.
pub(super) struct WasmPlugin {
    pub(super) file: PluginFile,
    pre: SinkPluginPre<HostState>,
    dirs: Vec<AllowDir>,
    /// The epoch deadline of one call.
    pub(super) timeout: Duration,
    /// The memory cap of one instance, in bytes.
    pub(super) memory: usize,
    /// The most WASI handles one instance may hold.
    pub(super) max_files: usize,
    /// The plugin's log, shared by its instances.
    log: Arc<PluginLog>,
    /// How long compiling took at configuration time (near zero when cached).
    compile_time: Duration,
    /// How long making and initialising the configuration-time instance took.
    instantiate_time: Duration,
}

impl fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("file", &self.file)
            .field("dirs", &self.dirs)
            .field("timeout", &self.timeout)
            .field("memory", &self.memory)
            .field("max_files", &self.max_files)
            .finish_non_exhaustive()
    }
}

/// Compiles the component a `<plugin type="wasm" path="FILE">` element names, links it,
/// and makes one instance to let it check its parameters.
///
/// Attributes: `timeout_ms` (default 5000), `memory_mb` (default 64), `max_files` (default
/// 64). Children:
/// `<allow_dir path="DIR" readonly="true|false"/>`, `<param name value/>`.
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    let file = PluginFile::from_node(node)?;
    let timeout = duration(node, "timeout_ms", &TIMEOUT_MS)?;
    let memory =
        number(node, "memory_mb", &MEMORY_MB)?.map_or(DEFAULT_MEMORY_MB, |mb| mb as usize) << 20;
    let max_files =
        number(node, "max_files", &MAX_FILES)?.map_or(DEFAULT_MAX_FILES, |n| n as usize);
    let dirs = node
        .children_named("allow_dir")
        .map(|d| {
            let path = PathBuf::from(d.required_attr("path")?);
            if !path.is_dir() {
                return Err(d.error(format!(
                    "<allow_dir path=\"{}\">: no such directory",
                    path.display()
                )));
            }
            Ok(AllowDir {
                path,
                readonly: d.flag("readonly"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let engine = engine().map_err(|m| file.error(node, m))?;
    let started = Instant::now();
    let component = compile(engine, &file.path).map_err(|e| {
        let err = file.error(node, format!("not a loadable WASM component: {e:#}"));
        if is_core_module(&file.path) {
            err.with_hint("this is a core WebAssembly module; build the plugin as a component with `cargo build --target wasm32-wasip2`")
        } else {
            err
        }
    })?;
    let compile_time = started.elapsed();
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| {
            SinkPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
        })
        .map_err(|e| file.error(node, format!("linking WASI: {e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(SinkPluginPre::new)
        .map_err(|e| {
            file.error(
                node,
                format!("is not a sersync:plugin/sink-plugin component: {e:#}"),
            )
        })?;

    let log = Arc::new(PluginLog::new(&file.name));
    let mut plugin = WasmPlugin {
        file,
        pre,
        dirs,
        timeout: timeout.unwrap_or(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
        memory,
        max_files,
        log,
        compile_time,
        instantiate_time: Duration::ZERO,
    };
    let started = Instant::now();
    plugin
        .instantiate()
        .map_err(|e| plugin.file.error(node, &e.message))?;
    plugin.instantiate_time = started.elapsed();
    Ok(Box::new(WasmSpec(Arc::new(plugin))))
}

/// `memory_mb`: at least 1 MiB, at most the 4 GiB a 32-bit instance can address.
const MEMORY_MB: Bounds = Bounds {
    meaning: "a number of MiB",
    min: 1,
    max: 4_096,
};

/// `max_files`: at least one handle.
const MAX_FILES: Bounds = Bounds {
    meaning: "a number of handles",
    min: 1,
    max: 1_000_000,
};

/// True when the file starts like a core module (wasm magic, version 1) rather than a component.
fn is_core_module(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\0asm\x01\0\0\0"))
}

impl WasmPlugin {
    /// Makes a fresh instance in a fresh store and calls `init` with the parameters, each
    /// under the call deadline. The error does not name the plugin: the caller does.
    pub(super) fn instantiate(&self) -> Result<Instance, SinkError> {
        let fail = |what: &str, e: wasmtime::Error| SinkError::retryable(format!("{what}: {e:#}"));
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in &self.dirs {
            let perms = if dir.readonly {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            let guest = dir.path.to_string_lossy();
            wasi.preopened_dir(&dir.path, &guest, perms)
                .map_err(|e| fail(&format!("granting {}", dir.path.display()), e))?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(self.max_files);
        let state = HostState {
            log: self.log.clone(),
            wasi: wasi.build(),
            table,
            limits: Limits::new(self.memory),
            last_error: None,
        };
        let engine = self.pre.engine();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(self.timeout));
        let bindings = bounded(self.timeout, self.pre.instantiate_async(&mut store))
            .map_err(|e| trap_error(self, store.data_mut(), "instantiating", e))?;
        let mut instance = Instance { store, bindings };
        match instance.call_init(self) {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(message)) => Err(SinkError::fatal(format!(
                "rejected its configuration: {}",
                plugin_text(message.as_bytes(), MAX_ERROR)
            ))),
            Err(e) => Err(e),
        }
    }
}

/// The [`SinkSpec`] of a WASM plugin.
#[derive(Debug)]
struct WasmSpec(Arc<WasmPlugin>);

impl SinkSpec for WasmSpec {
    fn name(&self) -> String {
        self.0.file.name.clone()
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        self.0.file.watches.clone()
    }

    fn summary(&self) -> String {
        let p = &self.0;
        format!(
            "WASM plugin {} ({} parameters, {} granted directories, {} ms per call, {} MiB, \
             {} files; compiled in {:.1?}, instantiated in {:.1?})",
            p.file.path.display(),
            p.file.params.len(),
            p.dirs.len(),
            p.timeout.as_millis(),
            p.memory >> 20,
            p.max_files,
            p.compile_time,
            p.instantiate_time,
        )
    }

    fn start(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(WasmSink::new(self.0.clone())?))
    }
}

/// `e` with the plugin's name in front of its message.
pub(super) fn named(plugin: &WasmPlugin, e: SinkError) -> SinkError {
    SinkError {
        message: format!("plugin {}: {}", plugin.file.name, e.message),
        ..e
    }
}
