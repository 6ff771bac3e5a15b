//! The native plugin ABI: how sersync talks to a sink compiled into a shared library.
//!
//! A plugin author writes a [`Plugin`] (a [`Sink`](crate::Sink) plus a constructor from the
//! `<param>` pairs) and invokes [`export_sink!`](crate::export_sink). The macro exports two C
//! symbols:
//!
//! - [`ABI_VERSION_SYMBOL`] (`sersync_plugin_abi_version`): returns the [`ABI_VERSION`] the
//!   plugin was built against. The host calls it first and refuses the library on a mismatch,
//!   before anything else in it runs.
//! - [`VTABLE_SYMBOL`] (`sersync_plugin_vtable`): returns a pointer to a static
//!   [`SinkVTable`], whose `abi_version` and `struct_size` the host checks again.
//!
//! Every entry point of the vtable runs the plugin's code inside `catch_unwind`: a panic comes
//! back as [`STATUS_PANICKED`] with the panic message, never as an unwind across the C
//! boundary. Memory crosses the boundary borrowed, never owned: the host lends the batch and
//! the parameters for the length of a call; an error message is allocated by the plugin and
//! handed back to it through [`SinkVTable::free_error`]. The host never unloads a library.
//!
//! The host hands the plugin a [`HostApi`] (its log) through [`SinkVTable::set_host`] right
//! after the checks; [`log`] uses it.

mod export;
mod log;
mod plugin;
mod raw;

#[doc(hidden)]
pub use export::__private;
pub use log::{log, Level};
pub use plugin::Plugin;
pub use raw::*;

/// Exports a [`Plugin`] type as a native sersync plugin (crate type `cdylib`).
///
/// ```ignore
/// struct MySink;
/// impl sersync_plugin_sdk::Sink for MySink { /* deliver */ }
/// impl sersync_plugin_sdk::Plugin for MySink { /* from_params */ }
/// sersync_plugin_sdk::export_sink!(MySink);
/// ```
///
/// Use it once per library. Keep the default `panic = "unwind"`: with `panic = "abort"` a
/// panic cannot be caught and takes the daemon down with it.
#[macro_export]
macro_rules! export_sink {
    ($plugin:ty) => {
        /// The sersync plugin ABI version this library was built against.
        #[unsafe(no_mangle)]
        pub extern "C" fn sersync_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// The sersync plugin vtable of this library.
        #[unsafe(no_mangle)]
        pub extern "C" fn sersync_plugin_vtable() -> *const $crate::abi::SinkVTable {
            static VTABLE: $crate::abi::SinkVTable = $crate::abi::__private::vtable::<$plugin>();
            &VTABLE
        }
    };
}
