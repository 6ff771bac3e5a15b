//! One lane's instance of a native plugin.

use std::ffi::c_void;
use std::os::unix::ffi::OsStrExt;
use std::ptr::NonNull;

use sersync_plugin_sdk::abi::*;
use sersync_plugin_sdk::{Batch, Sink, SinkError};

use crate::third_party::{plugin_text, MAX_ERROR};

/// An instance of a native plugin, serving one lane.
pub(super) struct DylibSink {
    name: String,
    vtable: &'static SinkVTable,
    params: Vec<(String, String)>,
    /// `None` after a panic: re-created before the next batch.
    instance: Option<NonNull<c_void>>,
}

// SAFETY: the instance is a `Plugin`, hence a `Sink`, hence `Send`; it is only ever used
// through `&mut self`, so by one thread at a time.
unsafe impl Send for DylibSink {}

impl DylibSink {
    /// Creates an instance from `params`; the plugin may reject them (the error does not
    /// name the plugin: the caller does).
    pub(super) fn new(
        name: &str,
        vtable: &'static SinkVTable,
        params: &[(String, String)],
    ) -> Result<Self, SinkError> {
        let mut sink = DylibSink {
            name: name.to_string(),
            vtable,
            params: params.to_vec(),
            instance: None,
        };
        sink.instance = Some(sink.create()?);
        Ok(sink)
    }

    fn create(&self) -> Result<NonNull<c_void>, SinkError> {
        let raw: Vec<RawParam> = self
            .params
            .iter()
            .map(|(n, v)| RawParam {
                name: RawBytes::new(n.as_bytes()),
                value: RawBytes::new(v.as_bytes()),
            })
            .collect();
        let mut instance = std::ptr::null_mut();
        let mut error = RawError::empty();
        // SAFETY: the parameters borrow `self.params` for the call; out-pointers are writable.
        let status =
            unsafe { (self.vtable.create)(raw.as_ptr(), raw.len(), &mut instance, &mut error) };
        match (status, NonNull::new(instance)) {
            (STATUS_OK, Some(instance)) => Ok(instance),
            (STATUS_OK, None) => Err(SinkError::fatal("create returned no instance")),
            _ => Err(self.error(status, &mut error)),
        }
    }

    /// The [`SinkError`] for a failed call, copying (cut and escaped by [`plugin_text`]) and
    /// then freeing the plugin's message.
    fn error(&self, status: u32, error: &mut RawError) -> SinkError {
        // SAFETY: the plugin filled `error` (or left it empty); it is read once, then handed
        // back to the plugin's `free_error`.
        let message = unsafe {
            let text = RawBytes {
                ptr: error.ptr,
                len: error.len,
            }
            .as_slice();
            let text = plugin_text(text, MAX_ERROR);
            (self.vtable.free_error)(error);
            text
        };
        match status {
            STATUS_RETRYABLE | STATUS_PANICKED => SinkError::retryable(message),
            STATUS_FATAL => SinkError::fatal(message),
            other => SinkError::fatal(format!("{message} (unknown status {other})")),
        }
    }

    fn destroy(&mut self) {
        if let Some(instance) = self.instance.take() {
            // SAFETY: created by this vtable's `create`, not used after this call.
            unsafe { (self.vtable.destroy)(instance.as_ptr()) }
        }
    }
}

impl Sink for DylibSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.try_deliver(batch).map_err(|e| SinkError {
            message: format!("plugin {}: {}", self.name, e.message),
            ..e
        })
    }
}

impl DylibSink {
    fn try_deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let instance = match self.instance {
            Some(instance) => instance,
            None => *self.instance.insert(self.create()?),
        };
        let events: Vec<RawEvent> = batch
            .events
            .iter()
            .map(|e| RawEvent {
                kind: kind_code(e.kind),
                flags: if e.is_dir { EVENT_IS_DIR } else { 0 }
                    | if e.from.is_some() {
                        EVENT_HAS_OLD_PATH
                    } else {
                        0
                    },
                path: RawBytes::new(e.path.as_bytes()),
                old_path: RawBytes::new(e.from.as_ref().map_or(&[][..], |f| f.as_bytes())),
                time_unix_nanos: unix_nanos(e.time),
            })
            .collect();
        let raw = RawBatch {
            watch: batch.watch.0,
            root: RawBytes::new(batch.root.as_os_str().as_bytes()),
            events: events.as_ptr(),
            len: events.len(),
        };
        let mut error = RawError::empty();
        // SAFETY: `raw` and everything it points to borrow `batch` and `events`, which outlive
        // the call; `instance` is live and used by this thread only.
        let status = unsafe { (self.vtable.deliver)(instance.as_ptr(), &raw, &mut error) };
        if status == STATUS_OK {
            return Ok(());
        }
        let err = self.error(status, &mut error);
        if status == STATUS_PANICKED {
            // Its state may be half-updated: start afresh for the next batch.
            self.destroy();
        }
        Err(err)
    }
}

impl Drop for DylibSink {
    fn drop(&mut self) {
        self.destroy();
    }
}
