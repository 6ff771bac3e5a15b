//! A WASM sersync plugin that appends each event of each batch as one JSON line to the file
//! named by `<param name="output" value="/path/events.jsonl"/>`.
//!
//! The component has no file system of its own: sersync must grant the output file's
//! directory with `<allow_dir path="/path"/>` in the plugin's element, which it maps at the
//! same path inside the sandbox. The lines are the SDK's JSON form of an event
//! ([`sersync_plugin_sdk::json::batch_lines`]), as in the native example. Each batch is also
//! summed up in sersync's log at debug level, through the `log` import.

use std::fs::{File, OpenOptions};
use std::io::Write;

use sersync_plugin_sdk::json::batch_lines;
use sersync_plugin_sdk::{export_wasm_sink, log, Batch, Level, Plugin, Sink, SinkError};

/// Appends JSON lines to one file.
struct JsonlSink {
    file: File,
    output: String,
}

impl Plugin for JsonlSink {
    fn from_params(params: &[(String, String)]) -> Result<Self, String> {
        let mut output = None;
        for (name, value) in params {
            match name.as_str() {
                "output" => output = Some(value.clone()),
                other => return Err(format!("unknown parameter \"{other}\" (known: output)")),
            }
        }
        let output = output.ok_or("missing <param name=\"output\" value=\"FILE\"/>")?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&output)
            .map_err(|e| {
                format!("cannot open {output}: {e} (is its directory granted with <allow_dir path=\"…\"/>?)")
            })?;
        Ok(JsonlSink { file, output })
    }
}

impl Sink for JsonlSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let text = batch_lines(batch);
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| SinkError::retryable(format!("writing {}: {e}", self.output)))?;
        log(
            Level::Debug,
            &format!("appended {} events to {}", batch.len(), self.output),
        );
        Ok(())
    }
}

export_wasm_sink!(JsonlSink);
