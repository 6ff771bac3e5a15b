//! The guest side of WASM plugins: a [`Plugin`] becomes a component with one macro.
//!
//! ```ignore
//! struct MySink;
//! impl sersync_plugin_sdk::Sink for MySink { /* deliver */ }
//! impl sersync_plugin_sdk::Plugin for MySink { /* from_params */ }
//! sersync_plugin_sdk::export_wasm_sink!(MySink);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2` and the SDK's `guest` feature. The crate
//! must be a `cdylib`. [`crate::log`] writes to sersync's log; a panic is logged through it before
//! the instance traps, so the host can say why.

mod convert;

use std::sync::{Mutex, Once};

use crate::{ErrorClass, Plugin, Sink};

/// The code `wit-bindgen` generates for the `sersync:plugin/sink-plugin` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "sink-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_sink_plugin_world",
        default_bindings_module: "sersync_plugin_sdk::guest::bindings",
    });
}

use crate::Level;

/// Writes one line to sersync's log through the `log` import; plugins call [`crate::log`].
pub(crate) fn log(level: Level, message: &str) {
    use bindings::sersync::plugin::host as wit;
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

/// The instance's sink, set by `init`.
static SINK: Mutex<Option<Box<dyn Sink>>> = Mutex::new(None);

/// Items [`export_wasm_sink!`](crate::export_wasm_sink) names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use bindings::sersync::plugin::types as wit;

    /// `init`: builds the sink from the parameters and keeps it for `deliver`.
    pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| log(Level::Error, &format!("{info}"))));
        });
        let sink = P::from_params(&config)?;
        *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(sink));
        Ok(())
    }

    /// `deliver`: hands the batch to the sink kept by `init`.
    pub fn deliver(batch: wit::Batch) -> Result<(), wit::SinkError> {
        let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = guard.as_mut() else {
            return Err(wit::SinkError {
                retryable: false,
                message: "deliver called before init".into(),
            });
        };
        let batch = convert::batch(batch);
        sink.deliver(&batch).map_err(|e| wit::SinkError {
            retryable: e.class == ErrorClass::Retryable,
            message: e.message,
        })
    }
}

/// Exports a [`Plugin`] type as the `sersync:plugin/sink-plugin` component world.
///
/// Use it once, in a `cdylib` crate built with `--target wasm32-wasip2`.
#[macro_export]
macro_rules! export_wasm_sink {
    ($plugin:ty) => {
        const _: () = {
            struct SersyncGuest;

            impl $crate::guest::bindings::Guest for SersyncGuest {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::__private::init::<$plugin>(config)
                }

                fn deliver(
                    batch: $crate::guest::bindings::sersync::plugin::types::Batch,
                ) -> ::std::result::Result<
                    (),
                    $crate::guest::bindings::sersync::plugin::types::SinkError,
                > {
                    $crate::guest::__private::deliver(batch)
                }
            }

            $crate::guest::bindings::__export_sink_plugin_world!(SersyncGuest with_types_in $crate::guest::bindings);
        };
    };
}
