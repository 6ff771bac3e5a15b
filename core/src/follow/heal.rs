//! Directories pulled recursively are pruned again a little later, recursively and deleting
//! only: what a recursive pull brought that the stream will never mention.
//!
//! A recursive pull copies what the source holds *now*, which can be newer than the stream:
//! a name made in the directory after the message was published, whose own change the
//! master still holds. The master merges the changes of a path before it publishes them,
//! and a path made and removed (or renamed away) again before its batch left is nothing
//! at all to it (`coalesce`: "a file created and deleted again before delivery is nothing";
//! a pending create renamed stays a create at the new name only): right for a remote that
//! only ever learns of a name from the master's own batches, but a follower pulling the
//! directory in between has the name, and nothing in the stream ever removes it. An editor's
//! or a packer's temporary file (`D/.tmp` made, written, renamed to `D/file`) in a
//! directory just made is the common case.
//!
//! So every directory pulled whole, and the tree after a full pull, is pruned again
//! between half of `healAfter` (default 5 s) and `healAfter` later: recursively with
//! `--existing --ignore-existing` (nothing sent or updated, only what the source lacks is
//! deleted here), and its own directory one level (in case it is gone itself). The ones due
//! within half the delay go together, so prunes come at most every half delay. Deleting what the source does not have is never
//! wrong: if the source gets it again, that is a change the stream brings. The delay must
//! outlast the time the master holds a change before publishing it (milliseconds normally;
//! longer while its lane waits, e.g. ordered after a slow rsync), which is why it is a
//! setting. The master publishing such a create's removal would make this unnecessary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sersync_plugin_sdk::RelPath;

use super::plan::below_one_of;

/// Directories waiting beyond this many are replaced by their parents (fewer, larger prunes;
/// a prune costs what the directories hold, not what the list holds, so the bound is only
/// for memory: about 100 bytes each).
const MAX_WAITING: usize = 65_536;

/// The directories to prune again, each with when.
#[derive(Debug)]
pub struct Healing {
    after: Duration,
    due: BTreeMap<RelPath, Instant>,
}

impl Healing {
    /// Prunes again `after` a pull (never when zero).
    pub fn new(after: Duration) -> Healing {
        Healing {
            after,
            due: BTreeMap::new(),
        }
    }

    /// `paths` were pulled recursively just now.
    pub fn pulled<'p>(&mut self, paths: impl IntoIterator<Item = &'p RelPath>) {
        if self.after.is_zero() {
            return;
        }
        let at = Instant::now() + self.after;
        for path in paths {
            self.due.insert(path.clone(), at);
        }
        while self.due.len() > MAX_WAITING {
            let before = self.due.len();
            let due = std::mem::take(&mut self.due);
            for (path, at) in due {
                let parent = path.parent().unwrap_or(RelPath::ROOT);
                let entry = self.due.entry(parent).or_insert(at);
                *entry = (*entry).max(at);
            }
            if self.due.len() == before {
                break;
            }
        }
    }

    /// When the next prune is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Takes the paths whose prune is due now, with those due within half the delay (so
    /// that prunes, one rsync run each, come at most every half delay however many pulls
    /// there are, each at least half the delay after its pull); none below another taken one
    /// (which covers it). The others wait.
    pub fn take_due(&mut self) -> Vec<RelPath> {
        let now = Instant::now();
        if self.next_due().is_none_or(|at| at > now) {
            return Vec::new();
        }
        let horizon = now + self.after / 2;
        let taken: Vec<RelPath> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= horizon)
            .map(|(p, _)| p.clone())
            .collect();
        for path in &taken {
            self.due.remove(path);
        }
        let set: BTreeSet<RelPath> = taken.iter().cloned().collect();
        taken
            .into_iter()
            .filter(|p| !below_one_of(p, &set))
            .collect()
    }

    /// Puts `paths` back, due again one delay from now (their prune failed).
    pub fn again(&mut self, paths: &[RelPath]) {
        self.pulled(paths.iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_are_pruned_again_after_the_delay_outermost_first_and_never_when_off() {
        let second = Duration::from_millis(1000);
        let mut h = Healing::new(second);
        h.pulled([RelPath::from("d"), RelPath::from("d/e"), RelPath::from("x")].iter());
        std::thread::sleep(second / 4);
        h.pulled([RelPath::from("soon")].iter());
        assert!(h.take_due().is_empty(), "not yet");
        std::thread::sleep(second * 3 / 4);
        h.pulled([RelPath::from("just now")].iter());
        // Due: `d` and `x`; `soon`, pulled three quarters of the delay ago, with them (due
        // within half the delay); `just now` waits.
        let taken: Vec<String> = h.take_due().iter().map(|p| p.to_string()).collect();
        assert_eq!(taken, ["d", "soon", "x"]);
        assert!(h.next_due().is_some(), "the last one waits");
        assert!(h.take_due().is_empty());

        let mut many = Healing::new(Duration::from_millis(1));
        let names: Vec<RelPath> = (0..MAX_WAITING + 10)
            .map(|i| RelPath::from(format!("p{}/q{i}", i % 3).as_str()))
            .collect();
        many.pulled(names.iter());
        assert!(many.due.len() <= MAX_WAITING);
        std::thread::sleep(Duration::from_millis(5));
        let taken: Vec<String> = many.take_due().iter().map(|p| p.to_string()).collect();
        assert_eq!(taken.len(), 3, "collapsed into their directories");
        assert_eq!(taken, ["p0", "p1", "p2"]);

        let mut off = Healing::new(Duration::ZERO);
        off.pulled([RelPath::ROOT].iter());
        assert_eq!(off.next_due(), None);
    }
}
