//! A counting semaphore bounding the rsync processes running at once across all lanes (`-n`).

use std::sync::{Condvar, Mutex};

/// Bounds how many rsync processes run at once, across every remote of every watch.
#[derive(Debug)]
pub struct ProcessLimit {
    free: Mutex<usize>,
    released: Condvar,
}

/// One running process's place; the place is given back when this is dropped.
#[derive(Debug)]
pub struct Permit<'a>(&'a ProcessLimit);

impl ProcessLimit {
    /// Allows `max` processes at once (at least one).
    pub fn new(max: usize) -> Self {
        ProcessLimit {
            free: Mutex::new(max.max(1)),
            released: Condvar::new(),
        }
    }

    /// Waits for a free place.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn never_more_than_max_at_once() {
        let limit = Arc::new(ProcessLimit::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _permit = limit.acquire();
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert!(peak.load(Ordering::SeqCst) >= 1);
    }
}
