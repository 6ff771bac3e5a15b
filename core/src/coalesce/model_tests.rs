//! Property test: for any sequence of file operations, cutting batches at any points and
//! applying them to a replica the way the rsync sink does leaves the replica equal to the
//! source.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

use super::Coalescer;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File(u32),
    Dir,
}

type Tree = BTreeMap<RelPath, Node>;

#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    Mkdir(usize),
    Remove(usize),
    Rename(usize, usize),
    /// Renamed out of the watch: one delete for the top, nothing for what is below it.
    MoveOut(usize),
    Cut,
}

/// Candidate paths: up to three levels of the names a and b (few, so operations collide).
fn candidates() -> Vec<RelPath> {
    let names = ["a", "b"];
    let mut out = Vec::new();
    for x in names {
        out.push(RelPath::from(x));
        for y in names {
            out.push(RelPath::from(format!("{x}/{y}").as_str()));
            for z in names {
                out.push(RelPath::from(format!("{x}/{y}/{z}").as_str()));
            }
        }
    }
    out
}

fn parent_is_dir(tree: &Tree, path: &RelPath) -> bool {
    match path.parent() {
        Some(p) if p.is_root() => true,
        Some(p) => tree.get(&p) == Some(&Node::Dir),
        None => false,
    }
}

fn subtree(tree: &Tree, path: &RelPath) -> Vec<RelPath> {
    tree.keys().filter(|p| p.is_within(path)).cloned().collect()
}

fn ev(kind: EventKind, path: RelPath, is_dir: bool) -> Event {
    Event::now(kind, path, is_dir, WatchId(0))
}

/// Performs `op` on `source` and returns the events the watcher reports for it.
fn perform(op: &Op, source: &mut Tree, counter: &mut u32, paths: &[RelPath]) -> Vec<Event> {
    match *op {
        Op::Write(i) => {
            let p = &paths[i];
            if !parent_is_dir(source, p) || source.get(p) == Some(&Node::Dir) {
                return vec![];
            }
            *counter += 1;
            source.insert(p.clone(), Node::File(*counter));
            vec![ev(EventKind::CloseWrite, p.clone(), false)]
        }
        Op::Mkdir(i) => {
            let p = &paths[i];
            if !parent_is_dir(source, p) || source.contains_key(p) {
                return vec![];
            }
            source.insert(p.clone(), Node::Dir);
            vec![ev(EventKind::Create, p.clone(), true)]
        }
        Op::Remove(i) => {
            let p = &paths[i];
            if !source.contains_key(p) {
                return vec![];
            }
            // rm -r: children first, then the directory.
            let mut doomed = subtree(source, p);
            doomed.sort_by(|a, b| b.cmp(a));
            doomed
                .into_iter()
                .map(|q| {
                    let is_dir = source.remove(&q) == Some(Node::Dir);
                    ev(EventKind::Delete, q, is_dir)
                })
                .collect()
        }
        Op::MoveOut(i) => {
            let p = &paths[i];
            let Some(node) = source.get(p).cloned() else {
                return vec![];
            };
            for q in subtree(source, p) {
                source.remove(&q);
            }
            vec![ev(EventKind::Delete, p.clone(), node == Node::Dir)]
        }
        Op::Rename(i, j) => {
            let (from, to) = (&paths[i], &paths[j]);
            let Some(node) = source.get(from).cloned() else {
                return vec![];
            };
            if from == to || to.is_within(from) || !parent_is_dir(source, to) {
                return vec![];
            }
            match (&node, source.get(to)) {
                (_, None) | (Node::File(_), Some(Node::File(_))) => {}
                _ => return vec![],
            }
            for q in subtree(source, from) {
                let n = source.remove(&q).unwrap();
                source.insert(q.rebase(from, to).unwrap(), n);
            }
            vec![Event {
                from: Some(from.clone()),
                ..ev(EventKind::Move, to.clone(), node == Node::Dir)
            }]
        }
        Op::Cut => vec![],
    }
}

/// Makes the replica's `path` (only the entry itself) match the source, creating missing
/// parents as rsync -R does; a path missing in the source is deleted with what is below it.
fn sync_node(source: &Tree, replica: &mut Tree, path: &RelPath) {
    match source.get(path) {
        None => {
            for q in subtree(replica, path) {
                replica.remove(&q);
            }
        }
        Some(node) => {
            if replica.get(path).is_some_and(|r| r != node) {
                for q in subtree(replica, path) {
                    replica.remove(&q);
                }
            }
            let mut parent = path.parent();
            while let Some(p) = parent.filter(|p| !p.is_root()) {
                for q in subtree(replica, &p).into_iter().filter(|q| *q == p) {
                    if replica.get(&q) != Some(&Node::Dir) {
                        replica.remove(&q);
                    }
                }
                replica.insert(p.clone(), Node::Dir);
                parent = p.parent();
            }
            replica.insert(path.clone(), node.clone());
        }
    }
}

/// Makes the replica's whole subtree at `path` match the source (rsync -r --delete).
fn sync_tree(source: &Tree, replica: &mut Tree, path: &RelPath) {
    sync_node(source, replica, path);
    for q in subtree(replica, path) {
        if !source.contains_key(&q) {
            replica.remove(&q);
        }
    }
    for q in subtree(source, path) {
        replica.insert(q.clone(), source[&q].clone());
    }
}

/// Applies a batch the way the rsync sink's plan does.
fn apply(batch: Vec<Event>, source: &Tree, replica: &mut Tree) {
    for e in batch {
        match e.kind {
            EventKind::Rescan => sync_tree(source, replica, &e.path),
            EventKind::Create | EventKind::Move if e.is_dir => {
                if let Some(from) = &e.from {
                    sync_node(source, replica, from);
                }
                sync_tree(source, replica, &e.path)
            }
            _ => {
                if let Some(from) = &e.from {
                    sync_node(source, replica, from);
                }
                sync_node(source, replica, &e.path)
            }
        }
    }
}

fn op_strategy(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n).prop_map(Op::Write),
        2 => (0..n).prop_map(Op::Mkdir),
        2 => (0..n).prop_map(Op::Remove),
        2 => (0..n, 0..n).prop_map(|(i, j)| Op::Rename(i, j)),
        1 => (0..n).prop_map(Op::MoveOut),
        1 => Just(Op::Cut),
    ]
}

fn run(ops: &[Op], max_pending: usize, requeue_every: Option<usize>) {
    let paths = candidates();
    let mut source = Tree::new();
    let mut replica = Tree::new();
    let mut counter = 0;
    let mut coalescer = Coalescer::new(WatchId(0), max_pending);
    let mut cuts = 0;
    for op in ops {
        for e in perform(op, &mut source, &mut counter, &paths) {
            coalescer.push(e);
        }
        if matches!(op, Op::Cut) {
            cuts += 1;
            let batch = coalescer.take();
            if requeue_every.is_some_and(|k| cuts % k == 0) {
                // The delivery failed: nothing reached the replica.
                coalescer.requeue(batch);
            } else {
                apply(batch, &source, &mut replica);
            }
        }
    }
    apply(coalescer.take(), &source, &mut replica);
    assert_eq!(replica, source, "ops: {ops:?}");
}

/// What a lane's journal replays to: its events put back into an empty state, as at start.
fn replayed(journal: &[Event], max_pending: usize) -> Vec<String> {
    let mut c = Coalescer::new(WatchId(0), max_pending);
    c.requeue(journal.to_vec());
    let mut kept: Vec<String> = c
        .take()
        .into_iter()
        .map(|e| format!("{} {:?} {} {}", e.kind, e.from, e.path, e.is_dir))
        .collect();
    kept.sort();
    kept
}

/// A journal of only the events [`Coalescer::push`] says changed something replays to what
/// one of every event does (each rewritten as the pending state at every cut, as the lane's
/// is after a delivery).
fn run_journaled(ops: &[Op], max_pending: usize) {
    let paths = candidates();
    let mut source = Tree::new();
    let mut counter = 0;
    let mut coalescer = Coalescer::new(WatchId(0), max_pending);
    let (mut every, mut changed) = (Vec::new(), Vec::new());
    for op in ops {
        for e in perform(op, &mut source, &mut counter, &paths) {
            every.push(e.clone());
            if coalescer.push(e.clone()) {
                changed.push(e);
            }
        }
        assert_eq!(
            replayed(&changed, max_pending),
            replayed(&every, max_pending),
            "ops: {ops:?}"
        );
        if matches!(op, Op::Cut) {
            coalescer.take();
            (every, changed) = (Vec::new(), Vec::new());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn a_journal_of_the_changes_that_changed_something_replays_as_one_of_all(ops in prop::collection::vec(op_strategy(14), 1..60)) {
        run_journaled(&ops, 1000);
    }

    #[test]
    fn batches_converge(ops in prop::collection::vec(op_strategy(14), 1..60)) {
        run(&ops, 1000, None);
    }

    #[test]
    fn batches_converge_when_deliveries_fail_and_are_requeued(ops in prop::collection::vec(op_strategy(14), 1..60)) {
        run(&ops, 1000, Some(2));
    }

    #[test]
    fn batches_converge_when_pending_paths_collapse(ops in prop::collection::vec(op_strategy(14), 1..60)) {
        run(&ops, 3, None);
    }
}

#[test]
fn a_file_moved_into_a_directory_that_then_leaves_the_watch_is_deleted() {
    // write a; mkdir b; sync; mv a b/a; mv b out-of-watch
    let p = candidates();
    let idx = |s: &str| p.iter().position(|x| *x == RelPath::from(s)).unwrap();
    run(
        &[
            Op::Write(idx("a")),
            Op::Mkdir(idx("b")),
            Op::Cut,
            Op::Rename(idx("a"), idx("b/a")),
            Op::MoveOut(idx("b")),
        ],
        1000,
        None,
    );
}

#[test]
fn a_file_renamed_over_another_and_back_deletes_the_overwritten_name() {
    // mkdir a; write b; sync; write a/a; mv a/a b (overwrites b); mv b a/a
    let p = candidates();
    let idx = |s: &str| p.iter().position(|x| *x == RelPath::from(s)).unwrap();
    run(
        &[
            Op::Mkdir(idx("a")),
            Op::Write(idx("b")),
            Op::Cut,
            Op::Write(idx("a/a")),
            Op::Rename(idx("a/a"), idx("b")),
            Op::Rename(idx("b"), idx("a/a")),
        ],
        1000,
        None,
    );
}
