//! The plugin side of the native ABI: what [`export_sink!`](crate::export_sink) expands to.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use super::plugin::Plugin;
use super::raw::*;
use crate::{Batch, ErrorClass, Event, RelPath, WatchId};

/// Items the [`export_sink!`](crate::export_sink) macro names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// The vtable of plugin type `P`.
    pub const fn vtable<P: Plugin>() -> SinkVTable {
        SinkVTable {
            abi_version: ABI_VERSION,
            struct_size: std::mem::size_of::<SinkVTable>() as u32,
            create: create::<P>,
            deliver: deliver::<P>,
            destroy: destroy::<P>,
            free_error,
            set_host,
        }
    }
}

/// Runs `f`, turning a panic into [`STATUS_PANICKED`] with its message in `*error`.
///
/// # Safety
/// `error` must be null or point to a writable [`RawError`].
unsafe fn guarded(error: *mut RawError, f: impl FnOnce() -> Result<(), (u32, String)>) -> u32 {
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => (
            STATUS_PANICKED,
            format!("plugin panicked: {}", panic_message(&*payload)),
        ),
    };
    if !error.is_null() {
        let mut bytes = std::mem::ManuallyDrop::new(message.into_bytes());
        // SAFETY: the caller guarantees `error` points to a writable `RawError`; the host frees
        // the allocation through `free_error`, which rebuilds this very `Vec`.
        unsafe {
            *error = RawError {
                ptr: bytes.as_mut_ptr(),
                len: bytes.len(),
                capacity: bytes.capacity(),
            };
        }
    }
    status
}

/// The message of a panic payload (`panic!` with a literal or with format arguments).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// [`SinkVTable::create`]: `P::from_params`, boxed.
unsafe extern "C" fn create<P: Plugin>(
    params: *const RawParam,
    len: usize,
    instance: *mut *mut c_void,
    error: *mut RawError,
) -> u32 {
    // SAFETY: the host passes a writable `error` (or null), `len` parameters at `params`, each
    // pointing to UTF-8 bytes valid for this call, and a writable `instance`.
    unsafe {
        guarded(error, || {
            let raw: &[RawParam] = if len == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(params, len)
            };
            let pairs: Vec<(String, String)> = raw
                .iter()
                .map(|p| {
                    (
                        String::from_utf8_lossy(p.name.as_slice()).into_owned(),
                        String::from_utf8_lossy(p.value.as_slice()).into_owned(),
                    )
                })
                .collect();
            let sink = P::from_params(&pairs).map_err(|m| (STATUS_FATAL, m))?;
            *instance = Box::into_raw(Box::new(sink)).cast();
            Ok(())
        })
    }
}

/// [`SinkVTable::deliver`]: the batch copied into a [`Batch`], then `P::deliver`.
unsafe extern "C" fn deliver<P: Plugin>(
    instance: *mut c_void,
    batch: *const RawBatch,
    error: *mut RawError,
) -> u32 {
    // SAFETY: `instance` came from `create::<P>` and is used by one thread at a time; `batch`
    // and every byte range it points to are valid for this call; `error` is writable or null.
    unsafe {
        guarded(error, || {
            let sink = &mut *instance.cast::<P>();
            let batch = read_batch(&*batch).map_err(|m| (STATUS_FATAL, m))?;
            sink.deliver(&batch).map_err(|e| {
                let status = match e.class {
                    ErrorClass::Retryable => STATUS_RETRYABLE,
                    ErrorClass::Fatal => STATUS_FATAL,
                };
                (status, e.message)
            })
        })
    }
}

/// [`SinkVTable::destroy`]: drops the boxed `P`.
unsafe extern "C" fn destroy<P: Plugin>(instance: *mut c_void) {
    // SAFETY: `instance` came from `create::<P>` and is not used after this call. A panic in
    // `Drop` is caught and dropped: there is nobody left to tell.
    unsafe {
        guarded(std::ptr::null_mut(), || {
            drop(Box::from_raw(instance.cast::<P>()));
            Ok(())
        });
    }
}

/// [`SinkVTable::free_error`]: frees a message `guarded` allocated.
unsafe extern "C" fn free_error(error: *mut RawError) {
    if error.is_null() {
        return;
    }
    // SAFETY: a non-empty `*error` was filled by `guarded` from a `Vec<u8>` that this library
    // allocated and nobody freed since; zeroing it makes a second call harmless.
    unsafe {
        let e = std::mem::replace(&mut *error, RawError::empty());
        if !e.ptr.is_null() {
            drop(Vec::from_raw_parts(e.ptr, e.len, e.capacity));
        }
    }
}

/// [`SinkVTable::set_host`]: keeps the first host handed over, for [`log`](crate::log).
unsafe extern "C" fn set_host(host: *const HostApi) {
    let _ = super::log::HOST.compare_exchange(
        std::ptr::null_mut(),
        host.cast_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

/// Copies a lent batch into an owned [`Batch`].
///
/// # Safety
/// Every pointer in `raw` must be valid as [`RawBatch`] documents, for this call.
unsafe fn read_batch(raw: &RawBatch) -> Result<Batch, String> {
    let events: &[RawEvent] = if raw.len == 0 {
        &[]
    } else {
        // SAFETY: the host lends `len` events at `events`.
        unsafe { std::slice::from_raw_parts(raw.events, raw.len) }
    };
    let events = events
        .iter()
        .map(|e| {
            let kind =
                kind_from_code(e.kind).ok_or_else(|| format!("unknown event kind {}", e.kind))?;
            // SAFETY: the host lends each path for this call.
            let (path, old_path) = unsafe { (e.path.as_slice(), e.old_path.as_slice()) };
            Ok(Event {
                kind,
                path: RelPath::new(path),
                from: (e.flags & EVENT_HAS_OLD_PATH != 0).then(|| RelPath::new(old_path)),
                is_dir: e.flags & EVENT_IS_DIR != 0,
                watch: WatchId(raw.watch),
                time: time_from_unix_nanos(e.time_unix_nanos),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Batch {
        watch: WatchId(raw.watch),
        // SAFETY: the host lends the root for this call.
        root: path_from_bytes(unsafe { raw.root.as_slice() }),
        events,
    })
}
