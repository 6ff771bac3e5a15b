//! Progress of the start-up full sync (`-r`) on a terminal: part of sersync's user interface,
//! not of any sink.
//!
//! A sink that can report the progress of a long full sync gets a
//! [`ProgressReporter`](sersync_plugins::progress::ProgressReporter) per destination from the
//! [`ProgressBoard`] (through [`sersync_plugins::SinkSetup`]) and hands it generic snapshots
//! (bytes, share, rate, files checked and sent); the board draws one line per running
//! destination below the log, and the log is written through it. `main.rs` creates the board
//! only for `-r` in the foreground with a terminal on standard error (`Cli::shows_progress`);
//! without one the sinks run as before.

mod board;
mod render;

pub use board::{LogWriter, ProgressBoard, ProgressEntry};
