//! A native sersync plugin that appends each event of each batch as one JSON line to the file
//! named by `<param name="output" value="/path/events.jsonl"/>`.
//!
//! A line is the SDK's JSON form of an event ([`sersync_plugin_sdk::json`]), the same object
//! sersync's socket and http sinks send:
//! `{"from":"a/old","is_dir":false,"kind":"move","path":"a/new","root":"/srv/www","time":1764031125.123}`.
//! A name that is not UTF-8 also gets a `"path_b64"` (`"from_b64"`, `"root_b64"`) member with
//! its exact bytes, so that no name is lost. Each batch is also summed up in sersync's log at
//! debug level.

use std::fs::{File, OpenOptions};
use std::io::Write;

use sersync_plugin_sdk::json::batch_lines;
use sersync_plugin_sdk::{export_sink, log, Batch, Level, Plugin, Sink, SinkError};

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
            .map_err(|e| format!("cannot open {output}: {e}"))?;
        Ok(JsonlSink { file, output })
    }
}

impl Sink for JsonlSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        // One write per batch: a batch is appended whole or (on a short write) retried.
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

export_sink!(JsonlSink);
