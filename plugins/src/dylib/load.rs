//! Opening a plugin library and checking its ABI before trusting its vtable.

use std::path::Path;

use std::ffi::c_void;
use std::panic::catch_unwind;

use libloading::Library;
use sersync_plugin_sdk::abi::{
    AbiVersionFn, HostApi, RawBytes, SinkVTable, VTableFn, ABI_VERSION, ABI_VERSION_SYMBOL,
    VTABLE_SYMBOL,
};
use sersync_plugin_sdk::Level;

use crate::third_party::PluginLog;

/// Loads `path` (never unloaded) and returns its vtable once its ABI version checks out,
/// after handing it the host's services; its log lines are tagged `name`.
pub(super) fn load(path: &Path, name: &str) -> Result<&'static SinkVTable, String> {
    // SAFETY: loading runs the library's initialisers. The operator named this file as a
    // sersync plugin in the configuration, which trusts it like the daemon's own code.
    let library = unsafe { Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
    // Never unloaded: instances, vtable and any thread the plugin started point into it.
    let library: &'static Library = Box::leak(Box::new(library));

    // SAFETY: the symbol has the type `export_sink!` gives it; a library that exports the
    // name with another type is not a sersync plugin and breaks the contract it claims.
    let version =
        unsafe { library.get::<AbiVersionFn>(ABI_VERSION_SYMBOL.as_bytes()) }.map_err(|_| {
            format!("does not export {ABI_VERSION_SYMBOL}: not a sersync plugin (see export_sink!)")
        })?;
    // SAFETY: a plain function without arguments, checked to exist just above.
    let version = unsafe { version() };
    if version != ABI_VERSION {
        return Err(format!(
            "was built for sersync plugin ABI version {version}, but this sersync needs version \
             {ABI_VERSION}: rebuild the plugin against a matching sersync-plugin-sdk"
        ));
    }

    // SAFETY: as for the version symbol.
    let vtable = unsafe { library.get::<VTableFn>(VTABLE_SYMBOL.as_bytes()) }
        .map_err(|_| format!("does not export {VTABLE_SYMBOL}"))?;
    // SAFETY: the ABI version matches, so this is the SDK's function returning a static.
    let vtable = unsafe { vtable() };
    if vtable.is_null() {
        return Err(format!("{VTABLE_SYMBOL} returned a null vtable"));
    }
    // SAFETY: non-null, points to a static of the library, which is never unloaded. Only the
    // two leading `u32`s are read before `struct_size` is checked.
    let (abi_version, struct_size) = unsafe { ((*vtable).abi_version, (*vtable).struct_size) };
    let needed = std::mem::size_of::<SinkVTable>();
    if abi_version != ABI_VERSION || (struct_size as usize) < needed {
        return Err(format!(
            "has a vtable of ABI version {abi_version} and {struct_size} bytes, but this \
             sersync needs version {ABI_VERSION} and {needed} bytes"
        ));
    }
    // SAFETY: as above; the whole struct is present.
    let vtable: &'static SinkVTable = unsafe { &*vtable };

    // Never freed, like the library: the plugin may log from any thread at any time. A library
    // loaded again (under another name) keeps the first host it was given, and so the first
    // name and log budget.
    let log: &'static PluginLog = Box::leak(Box::new(PluginLog::new(name)));
    let host: &'static HostApi = Box::leak(Box::new(HostApi {
        struct_size: std::mem::size_of::<HostApi>() as u32,
        context: (log as *const PluginLog).cast(),
        log: host_log,
    }));
    // SAFETY: the checks passed; `host` lives for the rest of the process.
    unsafe { (vtable.set_host)(host) };
    Ok(vtable)
}

/// [`HostApi::log`]: the plugin's line into sersync's log, through its [`PluginLog`] (cut,
/// escaped, within its budget). Never unwinds into the plugin.
unsafe extern "C" fn host_log(context: *const c_void, level: u32, message: RawBytes) {
    // SAFETY: `context` is the leaked log `load` put in the `HostApi`; the plugin lends
    // `message` for the call.
    let (log, message) = unsafe { (&*context.cast::<PluginLog>(), message.as_slice()) };
    let _ = catch_unwind(|| log.log(Level::from_code(level), message));
}
