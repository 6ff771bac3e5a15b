//! An in-memory `Write` that tests hand to code that writes to a terminal or a socket, and
//! read back afterwards.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A byte buffer shared between the writer under test and the test (clones share it).
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything written so far, as text; panics on invalid UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("UTF-8 output")
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
