//! [`log`]: a plugin's lines in sersync's log, whatever the plugin is compiled to.

use std::sync::atomic::AtomicPtr;

use super::raw::{HostApi, LEVEL_DEBUG, LEVEL_ERROR, LEVEL_INFO, LEVEL_TRACE, LEVEL_WARN};

/// Severity of a plugin's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail useful when something goes wrong.
    Debug,
    /// Normal operation worth a line.
    Info,
    /// Something looks wrong but work goes on.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The ABI number of the level (`LEVEL_*`).
    pub fn code(self) -> u32 {
        match self {
            Level::Trace => LEVEL_TRACE,
            Level::Debug => LEVEL_DEBUG,
            Level::Info => LEVEL_INFO,
            Level::Warn => LEVEL_WARN,
            Level::Error => LEVEL_ERROR,
        }
    }

    /// The level of an ABI number; unknown numbers are errors.
    pub fn from_code(code: u32) -> Level {
        match code {
            LEVEL_TRACE => Level::Trace,
            LEVEL_DEBUG => Level::Debug,
            LEVEL_INFO => Level::Info,
            LEVEL_WARN => Level::Warn,
            _ => Level::Error,
        }
    }
}

/// The host's services, set once per native library by `set_host` (null until then).
pub(super) static HOST: AtomicPtr<HostApi> = AtomicPtr::new(std::ptr::null_mut());

/// Writes one line to sersync's log at `level`, tagged with the plugin's name.
///
/// In a native plugin it goes through the [`HostApi`] sersync handed over at load time; in a
/// WASM plugin (feature `guest`) through the `log` import. Outside sersync it does nothing.
pub fn log(level: Level, message: &str) {
    #[cfg(all(feature = "guest", target_family = "wasm"))]
    crate::guest::log(level, message);
    #[cfg(not(all(feature = "guest", target_family = "wasm")))]
    {
        let host = HOST.load(std::sync::atomic::Ordering::Acquire);
        if host.is_null() {
            return;
        }
        // SAFETY: `host` was handed over by sersync through `set_host`, which promises it
        // stays valid for the life of the process; `message` is borrowed for the call.
        unsafe {
            let message = super::raw::RawBytes::new(message.as_bytes());
            ((*host).log)((*host).context, level.code(), message)
        }
    }
}
