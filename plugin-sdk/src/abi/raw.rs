//! The `#[repr(C)]` types and constants both sides of the native ABI agree on.

use std::ffi::c_void;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::EventKind;

/// The version of the native ABI described in this module. A library exporting another
/// version is refused. Bumped on any change to the types below.
pub const ABI_VERSION: u32 = 1;

/// Name of the exported `extern "C" fn() -> u32` that returns the plugin's [`ABI_VERSION`].
pub const ABI_VERSION_SYMBOL: &str = "sersync_plugin_abi_version";

/// Name of the exported `extern "C" fn() -> *const SinkVTable`.
pub const VTABLE_SYMBOL: &str = "sersync_plugin_vtable";

/// Signature of [`ABI_VERSION_SYMBOL`].
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;

/// Signature of [`VTABLE_SYMBOL`].
pub type VTableFn = unsafe extern "C" fn() -> *const SinkVTable;

/// Status of a vtable call: success.
pub const STATUS_OK: u32 = 0;
/// Status of a vtable call: a passing fault; the error holds the message.
pub const STATUS_RETRYABLE: u32 = 1;
/// Status of a vtable call: retrying unchanged won't help (for `create`: the configuration is
/// rejected); the error holds the message.
pub const STATUS_FATAL: u32 = 2;
/// Status of a vtable call: the plugin panicked; the error holds the panic message. The host
/// destroys the instance and creates a new one before the next batch.
pub const STATUS_PANICKED: u32 = 3;

/// [`RawEvent::flags`] bit: the path is (or was) a directory.
pub const EVENT_IS_DIR: u32 = 1;
/// [`RawEvent::flags`] bit: [`RawEvent::old_path`] is set (a move).
pub const EVENT_HAS_OLD_PATH: u32 = 2;

/// Borrowed bytes: a pointer and a length. `ptr` may be null when `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawBytes {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl RawBytes {
    /// Borrows `bytes` (the caller keeps them alive for as long as the result is used).
    pub fn new(bytes: &[u8]) -> Self {
        RawBytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay unchanged for `'a`, or `len` be 0.
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr` points to `len` bytes valid for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// One `<param name="…" value="…"/>`, as UTF-8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawParam {
    /// The `name` attribute.
    pub name: RawBytes,
    /// The `value` attribute.
    pub value: RawBytes,
}

/// One event of a [`RawBatch`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    /// The [`EventKind`] as a number: see [`kind_code`].
    pub kind: u32,
    /// [`EVENT_IS_DIR`] | [`EVENT_HAS_OLD_PATH`].
    pub flags: u32,
    /// The path relative to the watch root, raw bytes.
    pub path: RawBytes,
    /// The old path of a move (empty unless [`EVENT_HAS_OLD_PATH`]).
    pub old_path: RawBytes,
    /// When the engine saw the event, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
}

/// A batch, lent to the plugin for the length of one `deliver` call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawBatch {
    /// The watch index.
    pub watch: u32,
    /// The absolute path of the watch root, raw bytes.
    pub root: RawBytes,
    /// The first event.
    pub events: *const RawEvent,
    /// The number of events.
    pub len: usize,
}

/// An error message allocated by the plugin (a Rust `Vec<u8>` taken apart), to be copied by
/// the host and then released with [`SinkVTable::free_error`]. All zero when no message.
#[repr(C)]
#[derive(Debug)]
pub struct RawError {
    /// UTF-8 message bytes.
    pub ptr: *mut u8,
    /// Length of the message.
    pub len: usize,
    /// Capacity of the allocation, for the plugin to free it.
    pub capacity: usize,
}

impl RawError {
    /// No message.
    pub const fn empty() -> Self {
        RawError {
            ptr: std::ptr::null_mut(),
            len: 0,
            capacity: 0,
        }
    }
}

/// The plugin's entry points, with the ABI version and the size of this struct as the plugin
/// was compiled, which the host checks before calling any of them.
#[repr(C)]
#[derive(Debug)]
pub struct SinkVTable {
    /// [`ABI_VERSION`] as the plugin saw it.
    pub abi_version: u32,
    /// `size_of::<SinkVTable>()` as the plugin saw it.
    pub struct_size: u32,
    /// Builds an instance from `len` parameters; on [`STATUS_OK`] stores it in `*instance`,
    /// otherwise fills `*error`.
    pub create: unsafe extern "C" fn(
        params: *const RawParam,
        len: usize,
        instance: *mut *mut c_void,
        error: *mut RawError,
    ) -> u32,
    /// Delivers one batch to an instance; on failure fills `*error`.
    pub deliver: unsafe extern "C" fn(
        instance: *mut c_void,
        batch: *const RawBatch,
        error: *mut RawError,
    ) -> u32,
    /// Drops an instance.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
    /// Releases the message of an error filled by `create` or `deliver`, and zeroes it.
    pub free_error: unsafe extern "C" fn(error: *mut RawError),
    /// Hands the plugin the host's services. Called once per load, after the version checks
    /// and before any `create`; `host` stays valid for the life of the process.
    pub set_host: unsafe extern "C" fn(host: *const HostApi),
}

/// [`HostApi::log`] level: trace.
pub const LEVEL_TRACE: u32 = 0;
/// [`HostApi::log`] level: debug.
pub const LEVEL_DEBUG: u32 = 1;
/// [`HostApi::log`] level: info.
pub const LEVEL_INFO: u32 = 2;
/// [`HostApi::log`] level: warn.
pub const LEVEL_WARN: u32 = 3;
/// [`HostApi::log`] level: error.
pub const LEVEL_ERROR: u32 = 4;

/// What the host offers a native plugin, owned by the host and never freed.
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host saw it.
    pub struct_size: u32,
    /// Passed back as the first argument of every callback.
    pub context: *const c_void,
    /// Writes one line (UTF-8, borrowed for the call) to sersync's log at a `LEVEL_*`,
    /// tagged with the plugin's name. Callable from any thread; never unwinds.
    pub log: unsafe extern "C" fn(context: *const c_void, level: u32, message: RawBytes),
}

/// The ABI number of an [`EventKind`].
pub fn kind_code(kind: EventKind) -> u32 {
    match kind {
        EventKind::Create => 0,
        EventKind::Modify => 1,
        EventKind::CloseWrite => 2,
        EventKind::Attrib => 3,
        EventKind::Delete => 4,
        EventKind::Move => 5,
        EventKind::Rescan => 6,
    }
}

/// The [`EventKind`] of an ABI number, if it is one.
pub fn kind_from_code(code: u32) -> Option<EventKind> {
    Some(match code {
        0 => EventKind::Create,
        1 => EventKind::Modify,
        2 => EventKind::CloseWrite,
        3 => EventKind::Attrib,
        4 => EventKind::Delete,
        5 => EventKind::Move,
        6 => EventKind::Rescan,
        _ => return None,
    })
}

/// Nanoseconds since the Unix epoch (0 before it, saturating after year 2554).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The time `nanos` nanoseconds after the Unix epoch.
pub fn time_from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// A path from the raw bytes of a file name, unchanged.
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(crate::os_bytes::os_str(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for code in 0..7 {
            let kind = kind_from_code(code).unwrap();
            assert_eq!(kind_code(kind), code);
        }
        assert_eq!(kind_from_code(7), None);
    }

    #[test]
    fn times_round_trip() {
        let t = time_from_unix_nanos(1_700_000_000_123_456_789);
        assert_eq!(unix_nanos(t), 1_700_000_000_123_456_789);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
