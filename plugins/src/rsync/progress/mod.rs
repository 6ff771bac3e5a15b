//! Progress of the start-up full sync (`-r`) on a terminal.
//!
//! The rsync sink runs the recursive push of a watch root with `--info=progress2` when its
//! remote has a [`ProgressEntry`] that is still pending, reads rsync's standard output with
//! [`parse::follow`] and hands each [`parse::Snapshot`] to the entry. The [`ProgressBoard`]
//! that the entries share draws one line per running remote below the log. Core creates the
//! board only for `-r` in the foreground with a terminal on standard error; without one the
//! sink runs rsync exactly as before.

mod board;
pub mod parse;
mod render;

pub use board::{LogWriter, ProgressBoard, ProgressEntry};
