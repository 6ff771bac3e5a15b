//! A one-thread tokio runtime for blocking callers (a sink's `deliver`, the follower's loop).
//!
//! The NATS client's connection task (pings, reconnects, acks) runs on the runtime's worker
//! thread all the time, not only while a caller waits in [`Runtime::block_on`], so an idle lane
//! keeps its connection alive.

use std::future::Future;
use std::time::Duration;

/// A multi-thread runtime with one worker: the connection's background task always runs.
#[derive(Debug)]
pub struct Runtime {
    inner: tokio::runtime::Runtime,
}

impl Runtime {
    /// Starts the worker thread, named `name`.
    pub fn new(name: &str) -> std::io::Result<Runtime> {
        let inner = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Runtime { inner })
    }

    /// Runs `future` to completion on the calling thread (its I/O is driven by the worker).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.inner.block_on(future)
    }

    /// Runs `future` for at most `limit`; `None` when the limit passed first.
    pub fn block_on_within<F: Future>(&self, limit: Duration, future: F) -> Option<F::Output> {
        self.inner
            .block_on(async { tokio::time::timeout(limit, future).await.ok() })
    }
}

/// `future`'s output, or `None` when `limit` passed first (tokio's timer, for callers that
/// do not depend on tokio themselves).
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
}

impl Runtime {
    /// Drops `value` inside the runtime (the client's handles spawn tasks when dropped).
    pub fn drop_within<T>(&self, value: T) {
        let _inside = self.inner.enter();
        drop(value);
    }
}
