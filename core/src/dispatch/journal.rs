//! A lane's durable journal: every change the lane has not delivered yet, on disk.
//!
//! Every event the lane receives is appended with a plain `write()` (no fsync: the page cache
//! outlives a crash or `kill -9` of sersync). After each delivered batch the file is rewritten
//! as exactly the pending set (temporary file, fsync, rename) or truncated when nothing is
//! pending. On start a lane with the same identity replays it. A power loss may lose the
//! last appends since the previous rewrite; a full sync (`-r`, the crontab) recovers those.
//!
//! Format: the line `SERSYNC-JOURNAL 1\n`, then records
//! `kind:u8 flags:u8 path_len:u32le path [from_len:u32le from]`, flags bit 0 = is_dir,
//! bit 1 = has `from`. A truncated last record (a write cut short) is ignored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

use crate::naming::stable_hash;

const HEADER: &[u8] = b"SERSYNC-JOURNAL 1\n";

/// The journal of one lane.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    bytes: u64,
}

impl Journal {
    /// The file name for the lane `name` serving `root`: readable prefix plus a hash of both,
    /// so that a lane keeps its journal across restarts and reloads.
    pub fn file_name(name: &str, root: &Path) -> String {
        let hash = stable_hash([name.as_bytes(), root.as_os_str().as_encoded_bytes()]);
        let readable: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        format!("{readable}-{hash:016x}.journal")
    }

    /// Opens (creating) the journal at `path` and returns it with the events it held.
    pub fn open(path: &Path, watch: WatchId) -> io::Result<(Journal, Vec<Event>)> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let events = if bytes.is_empty() {
            file.write_all(HEADER)?;
            Vec::new()
        } else if let Some(body) = bytes.strip_prefix(HEADER) {
            decode(body, watch)
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
                path: path.to_path_buf(),
                file,
                bytes: size,
            },
            events,
        ))
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
        self.file.write_all(&buffer)?;
        self.bytes += buffer.len() as u64;
        Ok(())
    }

    /// Replaces the contents with exactly `pending`: atomically and durably (temporary file,
    /// fsync, rename), or by truncation when nothing is pending.
    pub fn rewrite(&mut self, pending: &[Event]) -> io::Result<()> {
        if pending.is_empty() {
            self.file.set_len(HEADER.len() as u64)?;
            self.bytes = HEADER.len() as u64;
            return Ok(());
        }
        let temp = self.path.with_extension("journal.new");
        let mut out = BufWriter::new(File::create(&temp)?);
        out.write_all(HEADER)?;
        let mut buffer = Vec::new();
        for event in pending {
            encode(event, &mut buffer);
        }
        out.write_all(&buffer)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&temp, &self.path)?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)?;
        self.bytes = (HEADER.len() + buffer.len()) as u64;
        Ok(())
    }

    /// Removes the file (the lane delivered everything and stops).
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
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

/// Decodes records until the first incomplete or unknown one.
fn decode(mut body: &[u8], watch: WatchId) -> Vec<Event> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if body.len() < n {
            return None;
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Some(head)
    }
    fn take_path(body: &mut &[u8]) -> Option<RelPath> {
        let len = u32::from_le_bytes(take(body, 4)?.try_into().ok()?) as usize;
        Some(RelPath::new(take(body, len)?))
    }
    let mut events = Vec::new();
    loop {
        let record = (|| {
            let header = take(&mut body, 2)?;
            let kind = kind_from(header[0])?;
            let path = take_path(&mut body)?;
            let from = if header[1] & 2 != 0 {
                Some(take_path(&mut body)?)
            } else {
                None
            };
            Some(Event {
                kind,
                path,
                from,
                is_dir: header[1] & 1 != 0,
                watch,
                time: SystemTime::now(),
            })
        })();
        match record {
            Some(event) => events.push(event),
            None => return events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, path: &[u8], is_dir: bool) -> Event {
        Event::now(kind, RelPath::new(path), is_dir, WatchId(3))
    }

    #[test]
    fn appended_events_survive_reopening_with_any_name_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/lane.journal");
        let (mut journal, replayed) = Journal::open(&path, WatchId(3)).unwrap();
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
        let (_, replayed) = Journal::open(&path, WatchId(3)).unwrap();
        let strip = |v: &[Event]| {
            v.iter()
                .map(|e| (e.kind, e.path.clone(), e.from.clone(), e.is_dir))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&replayed), strip(&events));
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane.journal");
        let (mut journal, _) = Journal::open(&path, WatchId(0)).unwrap();
        journal
            .append(&[
                ev(EventKind::Delete, b"kept", false),
                ev(EventKind::Delete, b"torn-off", false),
            ])
            .unwrap();
        drop(journal);
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_, replayed) = Journal::open(&path, WatchId(0)).unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].path, RelPath::from("kept"));
    }

    #[test]
    fn rewrite_keeps_exactly_the_pending_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane.journal");
        let (mut journal, _) = Journal::open(&path, WatchId(0)).unwrap();
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
        let (mut journal, replayed) = Journal::open(&path, WatchId(0)).unwrap();
        let names: Vec<String> = replayed.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["still pending", "after"]);
        journal.rewrite(&[]).unwrap();
        assert_eq!(journal.bytes(), HEADER.len() as u64);
    }

    #[test]
    fn a_foreign_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lane.journal");
        fs::write(&path, b"something else").unwrap();
        let err = Journal::open(&path, WatchId(0)).unwrap_err();
        assert!(err.to_string().contains("not a sersync journal"));
        assert_eq!(fs::read(&path).unwrap(), b"something else");
    }

    #[test]
    fn file_names_are_stable_and_distinct() {
        let a = Journal::file_name("rsync u@h::m", Path::new("/w"));
        assert_eq!(a, Journal::file_name("rsync u@h::m", Path::new("/w")));
        assert_ne!(a, Journal::file_name("rsync u@h::m", Path::new("/x")));
        assert!(a.starts_with("rsync_u_h__m-"));
    }
}
