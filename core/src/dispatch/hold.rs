//! A lane held for a reason outside it: its watch root is lost (see `watch::guard`). A held
//! lane takes changes as always (they wait, journaled) but starts no delivery until it is
//! released; closing it finishes it with what it holds left in its journal.

use super::Lane;

impl Lane {
    /// Holds the lane (`Some(reason)`, shown in `/status`) or releases it (`None`).
    pub fn hold(&self, reason: Option<String>) {
        {
            let mut state = self.lock();
            if state.held == reason {
                return;
            }
            state.held = reason;
        }
        self.schedule();
    }

    /// Why the lane is held, if it is.
    pub fn held(&self) -> Option<String> {
        self.lock().held.clone()
    }
}
