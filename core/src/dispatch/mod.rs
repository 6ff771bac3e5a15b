//! From the watcher's events to every sink: lanes, the router, retries.
//!
//! Each lane (one sink × one watch) owns a [`Coalescer`](crate::coalesce::Coalescer) that
//! the router merges events into; it cuts a batch when the changes have settled, hands it to
//! a thread of the shared [`Pool`] to deliver, and on failure puts it back and retries after
//! a backoff. A sink's queue is its pending state: a slow sink gets bigger batches, never a
//! stalled reader. Only deliveries in progress (and journal writes, see `writer`) hold
//! threads; an idle lane holds none. The router does in-memory work only: a lane's journal
//! is written by its writer, on the pool, never under the lane's lock.

mod backoff;
mod histogram;
mod in_flight;
mod journal;
mod lane;
mod order;
mod pool;
#[cfg(test)]
mod test_support;
mod writer;

pub use backoff::Backoff;
pub use histogram::{Histogram, HistogramSnapshot, BUCKETS};
pub use journal::Journal;
pub use lane::{FailureRecorder, Lane, LaneId, LaneStats, LaneTiming, LastOutcome, Mode};
pub use order::{OnTimeout, OrderRule, OrderStatus, Quorum, Sequence};
pub use pool::Pool;

use std::sync::Arc;

use crossbeam_channel::Receiver;
use sersync_plugin_sdk::Event;

/// The most events the router merges into one push when several messages wait.
const MAX_PUSH: usize = 4096;

/// Merges every message from the watcher into the lanes of its watch, until the watcher is
/// gone. Messages that queued up while the router was busy are pushed together, in order:
/// one lock, one journal append and one look at the lane for all of them.
pub fn route(events: Receiver<Vec<Event>>, lanes: &[Arc<Lane>]) {
    for mut message in &events {
        while message.len() < MAX_PUSH {
            match events.try_recv() {
                Ok(more) => message.extend(more),
                Err(_) => break,
            }
        }
        for lane in lanes {
            lane.push_all(message.iter());
        }
    }
}
