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

thread_local! {
    /// Where the last panic on this thread happened, recorded by the quiet hook.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces this library's panic hook (a plugin links its own copy of `std`, so the host's
/// hook is untouched) with one that records where the panic happened instead of printing a
/// backtrace to the daemon's standard error on every retry: the panic reaches the host as an
/// error result carrying the message and that place.
fn quiet_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|cell| *cell.borrow_mut() = at);
        }))
    });
}

/// Runs `f`, turning a panic into [`STATUS_PANICKED`] with its message in `*error`.
///
/// # Safety
/// `error` must be null or point to a writable [`RawError`].
unsafe fn guarded(error: *mut RawError, f: impl FnOnce() -> Result<(), (u32, String)>) -> u32 {
    quiet_panics();
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let at = PANIC_AT.with(|cell| cell.borrow_mut().take());
            let place = at.map(|a| format!(" (at {a})")).unwrap_or_default();
            (
                STATUS_PANICKED,
                format!("plugin panicked: {}{place}", panic_message(&*payload)),
            )
        }
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

#[cfg(test)]
mod tests {
    use super::__private::vtable;
    use super::*;
    use crate::{EventKind, Sink, SinkError};

    /// Records what it is given; panics on the path `panic`, fails on `fail`.
    struct Probe {
        seen: Vec<Batch>,
    }

    impl Plugin for Probe {
        fn from_params(params: &[(String, String)]) -> Result<Self, String> {
            match params {
                [] => Ok(Probe { seen: Vec::new() }),
                [(k, v)] if k == "panic" => panic!("constructor panic {v}"),
                _ => Err(format!("bad params {params:?}")),
            }
        }
    }

    impl Sink for Probe {
        fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
            match batch.events.first().map(|e| e.path.as_bytes()) {
                Some(b"panic") => panic!("deliver panic"),
                Some(b"fail") => Err(SinkError::fatal("no")),
                _ => {
                    self.seen.push(batch.clone());
                    Ok(())
                }
            }
        }
    }

    /// Calls `create` with `params`; the instance or (status, message).
    fn create(params: &[(&str, &str)]) -> Result<*mut c_void, (u32, String)> {
        let v = vtable::<Probe>();
        let raw: Vec<RawParam> = params
            .iter()
            .map(|(n, val)| RawParam {
                name: RawBytes::new(n.as_bytes()),
                value: RawBytes::new(val.as_bytes()),
            })
            .collect();
        let mut instance = std::ptr::null_mut();
        let mut error = RawError::empty();
        // SAFETY: valid parameters and out-pointers for the call.
        let status = unsafe { (v.create)(raw.as_ptr(), raw.len(), &mut instance, &mut error) };
        if status == STATUS_OK {
            return Ok(instance);
        }
        Err((status, take(&mut error)))
    }

    /// The message of `error`, freed the way the host frees it.
    fn take(error: &mut RawError) -> String {
        // SAFETY: filled by the plugin side for this test.
        let text = unsafe {
            RawBytes {
                ptr: error.ptr,
                len: error.len,
            }
            .as_slice()
        };
        let text = String::from_utf8(text.to_vec()).unwrap();
        // SAFETY: as the host does, once; a second call must be harmless.
        unsafe {
            (vtable::<Probe>().free_error)(error);
            (vtable::<Probe>().free_error)(error);
        }
        assert!(error.ptr.is_null());
        text
    }

    /// Delivers one event on `path` (plus a move with an old path) through the vtable.
    fn deliver(instance: *mut c_void, path: &[u8]) -> Result<(), (u32, String)> {
        let events = [
            RawEvent {
                kind: kind_code(EventKind::Delete),
                flags: EVENT_IS_DIR,
                path: RawBytes::new(path),
                old_path: RawBytes::new(&[]),
                time_unix_nanos: 5,
            },
            RawEvent {
                kind: kind_code(EventKind::Move),
                flags: EVENT_HAS_OLD_PATH,
                path: RawBytes::new(b"new"),
                old_path: RawBytes::new(b"old\n\xff"),
                time_unix_nanos: 6,
            },
        ];
        let batch = RawBatch {
            watch: 3,
            root: RawBytes::new(b"/srv"),
            events: events.as_ptr(),
            len: events.len(),
        };
        let mut error = RawError::empty();
        // SAFETY: `instance` came from `create`; the batch is valid for the call.
        let status = unsafe { (vtable::<Probe>().deliver)(instance, &batch, &mut error) };
        if status == STATUS_OK {
            return Ok(());
        }
        Err((status, take(&mut error)))
    }

    #[test]
    fn vtable_names_its_version_and_size() {
        let v = vtable::<Probe>();
        assert_eq!(v.abi_version, ABI_VERSION);
        assert_eq!(v.struct_size as usize, std::mem::size_of::<SinkVTable>());
    }

    #[test]
    fn create_reports_refusals_and_panics() {
        let (status, message) = create(&[("x", "y")]).unwrap_err();
        assert_eq!(status, STATUS_FATAL);
        assert_eq!(message, "bad params [(\"x\", \"y\")]");
        let (status, message) = create(&[("panic", "now")]).unwrap_err();
        assert_eq!(status, STATUS_PANICKED);
        // The message, then where it happened (recorded by the quiet hook, not printed).
        assert!(
            message.starts_with("plugin panicked: constructor panic now (at "),
            "{message}"
        );
        assert!(message.contains("export.rs:"), "{message}");
    }

    #[test]
    fn deliver_hands_over_the_batch_and_maps_outcomes() {
        let instance = create(&[]).unwrap();
        deliver(instance, b"a/b\nc\xfe").unwrap();
        // SAFETY: the instance is a `Probe`, alive until `destroy` below.
        let seen = unsafe { &(*instance.cast::<Probe>()).seen };
        let batch = &seen[0];
        assert_eq!(batch.watch, WatchId(3));
        assert_eq!(batch.root, std::path::Path::new("/srv"));
        assert_eq!(batch.events[0].path.as_bytes(), b"a/b\nc\xfe");
        assert_eq!(batch.events[0].kind, EventKind::Delete);
        assert!(batch.events[0].is_dir && batch.events[0].from.is_none());
        assert_eq!(batch.events[0].time, time_from_unix_nanos(5));
        assert_eq!(batch.events[1].kind, EventKind::Move);
        assert_eq!(
            batch.events[1].from.as_ref().unwrap().as_bytes(),
            b"old\n\xff"
        );
        assert_eq!(deliver(instance, b"fail"), Err((STATUS_FATAL, "no".into())));
        let (status, message) = deliver(instance, b"panic").unwrap_err();
        assert_eq!(status, STATUS_PANICKED);
        assert!(
            message.starts_with("plugin panicked: deliver panic (at "),
            "{message}"
        );
        // SAFETY: created above, not used afterwards.
        unsafe { (vtable::<Probe>().destroy)(instance) };
    }

    #[test]
    fn unknown_event_kinds_are_refused() {
        let instance = create(&[]).unwrap();
        let event = RawEvent {
            kind: 99,
            flags: 0,
            path: RawBytes::new(b"x"),
            old_path: RawBytes::new(&[]),
            time_unix_nanos: 0,
        };
        let batch = RawBatch {
            watch: 0,
            root: RawBytes::new(b"/"),
            events: &event,
            len: 1,
        };
        let mut error = RawError::empty();
        // SAFETY: as in `deliver`.
        let status = unsafe { (vtable::<Probe>().deliver)(instance, &batch, &mut error) };
        assert_eq!(status, STATUS_FATAL);
        assert_eq!(take(&mut error), "unknown event kind 99");
        // SAFETY: created above, not used afterwards.
        unsafe { (vtable::<Probe>().destroy)(instance) };
    }
}
