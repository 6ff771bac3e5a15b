//! A lane's durable journal: every change the lane has not delivered yet, on disk.
//!
//! Every event the lane receives is appended with a plain `write()` (no fsync: the page cache
//! outlives a crash or `kill -9` of sersync). After each delivered (or failed) batch the file
//! is rewritten as exactly what is undelivered: the batches in flight, then the pending set
//! (temporary file, fsync, rename), or truncated when nothing is. On start a lane with the
//! same identity ([`LaneId`]) replays it. A power loss may lose the last appends since the
//! previous rewrite; a full sync (`-r`, the crontab) recovers those.
//!
//! Only the lane's journal writer calls these, never under the lane's lock: the router and
//! the deliveries queue what the file must become (`super::writer`), so a slow disk delays
//! nothing but the writer.
//!
//! Format: the line `SERSYNC-JOURNAL 1\n`, then records
//! `kind:u8 flags:u8 path_len:u32le path [from_len:u32le from]`, flags bit 0 = is_dir,
//! bit 1 = has `from`. A truncated last record (a write cut short) is dropped quietly (a
//! debug line). A record that cannot be parsed (unknown kind or flags) ends the replay with
//! a warning naming the file and the byte offset, and the lane rescans its whole root for
//! what the rest may have held. Either way the file is cut back to its last whole record,
//! so that new appends are readable.
//!
//! The file lives in a verified [`StateDir`] and is opened through it: never through a
//! symbolic link, created 0600 (it holds file names), and the rewrite's temporary file is
//! created afresh with `O_EXCL`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

use super::LaneId;
use crate::naming::stable_hash;
use crate::state_dir::StateDir;

const HEADER: &[u8] = b"SERSYNC-JOURNAL 1\n";

/// The journal of one lane.
#[derive(Debug)]
pub struct Journal {
    dir: Arc<StateDir>,
    name: String,
    file: File,
    bytes: u64,
    /// A test's hold on every write of this journal (a stuck disk).
    #[cfg(test)]
    stall: Option<Stall>,
}

/// For tests: a stuck disk under one journal. While held, every write of the journals it
/// was given to waits (see [`Journal::stall_with`]).
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct Stall(Arc<(std::sync::Mutex<StallState>, std::sync::Condvar)>);

#[cfg(test)]
#[derive(Debug, Default)]
struct StallState {
    held: bool,
    /// Writes waiting now.
    waiting: usize,
    /// Writes that went through.
    passed: usize,
}

#[cfg(test)]
impl Stall {
    /// Every write waits from now on.
    pub(crate) fn hold(&self) {
        self.0 .0.lock().unwrap().held = true;
    }

    /// The waiting writes, and later ones, go through.
    pub(crate) fn release(&self) {
        self.0 .0.lock().unwrap().held = false;
        self.0 .1.notify_all();
    }

    /// Writes waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.0 .0.lock().unwrap().waiting
    }

    /// Writes that went through so far.
    pub(crate) fn passed(&self) -> usize {
        self.0 .0.lock().unwrap().passed
    }

    fn pass(&self) {
        let (state, released) = &*self.0;
        let mut state = state.lock().unwrap();
        state.waiting += 1;
        while state.held {
            state = released.wait(state).unwrap();
        }
        state.waiting -= 1;
        state.passed += 1;
    }
}

impl Journal {
    /// The file name for the lane `id`: readable prefix plus a hash of its name and root,
    /// so that a lane keeps its journal across restarts and reloads.
    pub fn file_name(id: &LaneId) -> String {
        let hash = stable_hash([
            id.name().as_bytes(),
            id.root().as_os_str().as_encoded_bytes(),
        ]);
        let readable: String = id
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        format!("{readable}-{hash:016x}.journal")
    }

    /// Opens (creating) the journal `name` in `dir` and returns it with the events it held.
    pub fn open(
        dir: &Arc<StateDir>,
        name: &str,
        watch: WatchId,
    ) -> io::Result<(Journal, Vec<Event>)> {
        let path = dir.file_path(name);
        let mut file = dir.open_file(name, true)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let events = if bytes.is_empty() {
            file.write_all(HEADER)?;
            Vec::new()
        } else if let Some(body) = bytes.strip_prefix(HEADER) {
            let Decoded {
                mut events,
                valid,
                end,
            } = decode(body, watch);
            let offset = HEADER.len() + valid;
            match end {
                End::Complete => {}
                End::Torn => {
                    tracing::debug!(journal = %path.display(), offset, "dropping a record cut short at the end of the journal");
                }
                End::Corrupt => {
                    tracing::warn!(journal = %path.display(), offset, ignored_bytes = body.len() - valid, "journal record at byte offset {offset} cannot be parsed: replaying the {} changes before it and rescanning the whole root for the rest", events.len());
                    events.push(Event::now(EventKind::Rescan, RelPath::ROOT, true, watch));
                }
            }
            if end != End::Complete {
                file.set_len(offset as u64)?;
            }
            events
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a sersync journal (unknown header)",
                    path.display()
                ),
            ));
        };
        let size = file.metadata()?.len();
        Ok((
            Journal {
                dir: dir.clone(),
                name: name.to_string(),
                file,
                bytes: size,
                #[cfg(test)]
                stall: None,
            },
            events,
        ))
    }

    /// For tests: every write of this journal waits while `stall` is held.
    #[cfg(test)]
    pub(crate) fn stall_with(&mut self, stall: Stall) {
        self.stall = Some(stall);
    }

    /// Waits while a test holds this journal's writes.
    fn stalled(&self) {
        #[cfg(test)]
        if let Some(stall) = &self.stall {
            stall.pass();
        }
    }

    /// Where the journal is, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.file_path(&self.name)
    }

    /// The journal's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends events (no fsync).
    pub fn append<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) -> io::Result<()> {
        let mut buffer = Vec::new();
        for event in events {
            encode(event, &mut buffer);
        }
        if buffer.is_empty() {
            return Ok(());
        }
        self.stalled();
        self.file.write_all(&buffer)?;
        self.bytes += buffer.len() as u64;
        Ok(())
    }

    /// Replaces the contents with exactly `pending`: atomically and durably (temporary file,
    /// fsync, rename), or by truncation when nothing is pending.
    pub fn rewrite(&mut self, pending: &[Event]) -> io::Result<()> {
        self.stalled();
        if pending.is_empty() {
            self.file.set_len(HEADER.len() as u64)?;
            self.bytes = HEADER.len() as u64;
            return Ok(());
        }
        let temp = format!("{}.new", self.name);
        let mut out = BufWriter::new(self.dir.create_new(&temp)?);
        out.write_all(HEADER)?;
        let mut buffer = Vec::new();
        for event in pending {
            encode(event, &mut buffer);
        }
        out.write_all(&buffer)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        self.dir.rename(&temp, &self.name)?;
        self.file = self.dir.open_file(&self.name, false)?;
        self.bytes = (HEADER.len() + buffer.len()) as u64;
        Ok(())
    }

    /// Removes the file (the lane delivered everything and stops).
    pub fn remove(self) -> io::Result<()> {
        self.stalled();
        self.dir.remove(&self.name)
    }
}

fn kind_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::Create => 1,
        EventKind::Modify => 2,
        EventKind::CloseWrite => 3,
        EventKind::Attrib => 4,
        EventKind::Delete => 5,
        EventKind::Move => 6,
        EventKind::Rescan => 7,
    }
}

fn kind_from(code: u8) -> Option<EventKind> {
    Some(match code {
        1 => EventKind::Create,
        2 => EventKind::Modify,
        3 => EventKind::CloseWrite,
        4 => EventKind::Attrib,
        5 => EventKind::Delete,
        6 => EventKind::Move,
        7 => EventKind::Rescan,
        _ => return None,
    })
}

fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(kind_code(event.kind));
    out.push(u8::from(event.is_dir) | (u8::from(event.from.is_some()) << 1));
    for path in std::iter::once(&event.path).chain(event.from.as_ref()) {
        out.extend_from_slice(&(path.as_bytes().len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
    }
}

/// What [`decode`] found: the events of the whole records, how many body bytes they
/// take, and what came after them.
struct Decoded {
    events: Vec<Event>,
    valid: usize,
    end: End,
}

/// How the records of a journal end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// With the last byte.
    Complete,
    /// With a record cut short (fewer bytes left than it needs): a write interrupted.
    Torn,
    /// With bytes that are no record (unknown kind or flags).
    Corrupt,
}

/// Decodes records until the end, an incomplete one or one that cannot be parsed.
fn decode(body: &[u8], watch: WatchId) -> Decoded {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8], End> {
        if body.len() < n {
            return Err(End::Torn);
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Ok(head)
    }
    fn take_path(body: &mut &[u8]) -> Result<RelPath, End> {
        let len = take(body, 4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        Ok(RelPath::new(take(body, len)?))
    }
    let mut events = Vec::new();
    let mut rest = body;
    loop {
        if rest.is_empty() {
            return Decoded {
                events,
                valid: body.len(),
                end: End::Complete,
            };
        }
        let mut cursor = rest;
        let record = (|| {
            let header = take(&mut cursor, 2)?;
            let kind = kind_from(header[0]).ok_or(End::Corrupt)?;
            if header[1] & !3 != 0 {
                return Err(End::Corrupt);
            }
            let path = take_path(&mut cursor)?;
            let from = if header[1] & 2 != 0 {
                Some(take_path(&mut cursor)?)
            } else {
                None
            };
            Ok(Event {
                kind,
                path,
                from,
                is_dir: header[1] & 1 != 0,
                watch,
                time: SystemTime::now(),
            })
        })();
        match record {
            Ok(event) => {
                events.push(event);
                rest = cursor;
            }
            Err(end) => {
                return Decoded {
                    events,
                    valid: body.len() - rest.len(),
                    end,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    fn ev(kind: EventKind, path: &[u8], is_dir: bool) -> Event {
        Event::now(kind, RelPath::new(path), is_dir, WatchId(3))
    }

    fn state(dir: &tempfile::TempDir) -> Arc<StateDir> {
        Arc::new(StateDir::open(&dir.path().join("state")).unwrap())
    }

    fn strip(v: &[Event]) -> Vec<(EventKind, RelPath, Option<RelPath>, bool)> {
        v.iter()
            .map(|e| (e.kind, e.path.clone(), e.from.clone(), e.is_dir))
            .collect()
    }

    #[test]
    fn appended_events_survive_reopening_with_any_name_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let (mut journal, replayed) = Journal::open(&state, "lane.journal", WatchId(3)).unwrap();
        assert!(replayed.is_empty());
        let moved = Event {
            from: Some(RelPath::new(&b"old\nname"[..])),
            ..ev(EventKind::Move, b"new \xff", false)
        };
        let events = vec![
            ev(EventKind::CloseWrite, b"a/$(x)", false),
            moved,
            ev(EventKind::Rescan, b"", true),
        ];
        journal.append(&events).unwrap();
        drop(journal);
        let (_, replayed) = Journal::open(&state, "lane.journal", WatchId(3)).unwrap();
        assert_eq!(strip(&replayed), strip(&events));
    }

    #[test]
    fn journals_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let (mut journal, _) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&journal.path()), 0o600);
        journal
            .rewrite(&[ev(EventKind::CloseWrite, b"secret name", false)])
            .unwrap();
        assert_eq!(mode(&journal.path()), 0o600, "after the rewrite too");
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_later_appends_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let (mut journal, _) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        journal
            .append(&[
                ev(EventKind::Delete, b"kept", false),
                ev(EventKind::Delete, b"torn-off", false),
            ])
            .unwrap();
        let path = journal.path();
        drop(journal);
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut journal, replayed) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        assert_eq!(
            strip(&replayed),
            strip(&[ev(EventKind::Delete, b"kept", false)])
        );
        journal
            .append(&[ev(EventKind::Delete, b"after", false)])
            .unwrap();
        drop(journal);
        let (_, replayed) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        let names: Vec<String> = replayed.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["kept", "after"]);
    }

    #[test]
    fn garbage_ends_the_replay_at_its_offset_with_a_rescan_of_the_root() {
        let body = {
            let mut b = Vec::new();
            encode(&ev(EventKind::CloseWrite, b"good", false), &mut b);
            b
        };
        let mut garbage = body.clone();
        garbage.extend_from_slice(b"\xffnot a record, and a good one after it is not trusted");
        encode(&ev(EventKind::CloseWrite, b"lost", false), &mut garbage);
        let decoded = decode(&garbage, WatchId(0));
        assert_eq!(
            (decoded.valid, decoded.end, decoded.events.len()),
            (body.len(), End::Corrupt, 1)
        );
        let mut unknown_flags = body.clone();
        unknown_flags.extend_from_slice(&[1, 0x80, 0, 0, 0, 0]);
        assert_eq!(decode(&unknown_flags, WatchId(0)).end, End::Corrupt);
        assert_eq!(decode(&body[..body.len() - 1], WatchId(0)).end, End::Torn);
        assert_eq!(decode(&body, WatchId(0)).end, End::Complete);

        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let mut file = HEADER.to_vec();
        file.extend_from_slice(&garbage);
        fs::write(state.file_path("lane.journal"), &file).unwrap();
        let (journal, replayed) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        assert_eq!(
            strip(&replayed),
            strip(&[
                ev(EventKind::CloseWrite, b"good", false),
                ev(EventKind::Rescan, b"", true)
            ])
        );
        assert_eq!(
            journal.bytes(),
            (HEADER.len() + body.len()) as u64,
            "cut back"
        );
    }

    #[test]
    fn rewrite_keeps_exactly_the_pending_set() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let (mut journal, _) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        journal
            .append(&[ev(EventKind::CloseWrite, b"delivered", false)])
            .unwrap();
        journal
            .rewrite(&[ev(EventKind::CloseWrite, b"still pending", false)])
            .unwrap();
        journal
            .append(&[ev(EventKind::Delete, b"after", false)])
            .unwrap();
        drop(journal);
        let (mut journal, replayed) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        let names: Vec<String> = replayed.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["still pending", "after"]);
        journal.rewrite(&[]).unwrap();
        assert_eq!(journal.bytes(), HEADER.len() as u64);
    }

    #[test]
    fn rewrite_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let victim = dir.path().join("passwd");
        fs::write(&victim, b"root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink(&victim, state.file_path("lane.journal.new")).unwrap();
        let (mut journal, _) = Journal::open(&state, "lane.journal", WatchId(0)).unwrap();
        journal
            .rewrite(&[ev(EventKind::CloseWrite, b"a\nevil::0:0:::\nb", false)])
            .unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        assert!(fs::symlink_metadata(journal.path()).unwrap().is_file());

        symlink(&victim, state.file_path("other.journal")).unwrap();
        let e = Journal::open(&state, "other.journal", WatchId(0)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
    }

    #[test]
    fn a_foreign_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let path = state.file_path("lane.journal");
        fs::write(&path, b"something else").unwrap();
        let err = Journal::open(&state, "lane.journal", WatchId(0)).unwrap_err();
        assert!(err.to_string().contains("not a sersync journal"));
        assert_eq!(fs::read(&path).unwrap(), b"something else");
    }

    #[test]
    fn file_names_are_stable_and_distinct() {
        let id = |root: &str| LaneId::new("rsync u@h::m", root);
        let a = Journal::file_name(&id("/w"));
        assert_eq!(a, Journal::file_name(&id("/w")));
        assert_ne!(a, Journal::file_name(&id("/x")));
        assert_eq!(
            a, "rsync_u_h__m-f8d642d358a6c1ce.journal",
            "the name of journals left by earlier versions"
        );
        assert!(a.starts_with("rsync_u_h__m-"));
    }
}
