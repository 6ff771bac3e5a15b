//! The board: the lines of the full syncs in progress, kept at the bottom of a terminal.
//!
//! Lanes (one per remote and watch root, in parallel) update their entry; the board draws one
//! line per running entry, at most every [`REDRAW_EVERY`] from a ticker thread that runs
//! only while an entry runs, and at once when an entry starts or ends. The log is written
//! through [`ProgressBoard::print_above`]: the board is erased, the log line written, the
//! board drawn again below it, so both stay readable. When an entry's run succeeds its final
//! line is written above the board and stays; once every entry is done the board closes for
//! good, and later runs of the same lanes (crontab, `POST /sync`, overflow recovery) are
//! silent.
//!
//! Snapshots are kept apart from the board's lock, so that the thread reading rsync's
//! output never waits for the terminal (a paused one, say): rsync is never slowed by it.
//!
//! Drawing uses two ANSI sequences only: cursor up (`ESC [ n A`) to the board's first line,
//! and erase to the end of the screen (`ESC [ J`); the board is then written again. Lines are
//! cut to the terminal's width so that none wraps and the cursor arithmetic stays right.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::render;
use sersync_plugins::progress::Snapshot;
use sersync_plugins::progress::{ProgressDisplay, ProgressReporter};

/// How often the ticker redraws while a run goes on (five times a second).
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// The progress of the start-up full syncs (`-r`), drawn on a terminal.
pub struct ProgressBoard {
    inner: Mutex<Inner>,
    tick: Condvar,
}

/// One remote's place on the board; its lane's sink reports through it.
#[derive(Clone, Debug)]
pub struct ProgressEntry {
    board: Arc<ProgressBoard>,
    index: usize,
    latest: Latest,
}

/// The latest snapshot of an entry's run.
type Latest = Arc<Mutex<Option<Snapshot>>>;

/// The log's writer while a board may be drawn: each write lands above the board.
#[derive(Clone, Debug)]
pub struct LogWriter(Arc<ProgressBoard>);

struct Inner {
    out: Box<dyn Write + Send>,
    width: Width,
    entries: Vec<Entry>,
    /// Lines of the board on the screen now, just above the cursor.
    drawn: usize,
    /// Nothing is drawn any more: every entry is done, or sersync is stopping or reloading.
    closed: bool,
    /// A ticker thread is running.
    ticking: bool,
}

struct Entry {
    root: PathBuf,
    remote: String,
    state: State,
    latest: Latest,
}

enum State {
    /// Not started yet: not shown.
    Waiting,
    Running(Instant),
    /// The last run failed after this long; the lane will retry.
    Failed(Duration),
    Done,
}

enum Width {
    Fixed(usize),
    /// Asked of the terminal on standard error at each drawing.
    Stderr,
}

impl ProgressBoard {
    /// A board drawing on standard error, as wide as its terminal.
    pub fn on_stderr() -> Arc<ProgressBoard> {
        Self::with(Box::new(io::stderr()), Width::Stderr)
    }

    /// A board drawing into `out`, `width` columns wide.
    pub fn new(out: Box<dyn Write + Send>, width: usize) -> Arc<ProgressBoard> {
        Self::with(out, Width::Fixed(width))
    }

    fn with(out: Box<dyn Write + Send>, width: Width) -> Arc<ProgressBoard> {
        Arc::new(ProgressBoard {
            inner: Mutex::new(Inner {
                out,
                width,
                entries: Vec::new(),
                drawn: 0,
                closed: false,
                ticking: false,
            }),
            tick: Condvar::new(),
        })
    }

    /// A place on the board for the full sync of `root` to `remote`. Nothing is drawn for it
    /// until its run starts.
    pub fn register(self: &Arc<Self>, root: &Path, remote: &str) -> ProgressEntry {
        let mut inner = self.lock();
        let latest = Latest::default();
        inner.entries.push(Entry {
            root: root.to_path_buf(),
            remote: remote.to_string(),
            state: State::Waiting,
            latest: latest.clone(),
        });
        ProgressEntry {
            board: self.clone(),
            index: inner.entries.len() - 1,
            latest,
        }
    }

    /// Writes `text` (whole lines) above the board and draws the board again below it.
    pub fn print_above(&self, text: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        inner.erase(&mut buf);
        buf.extend_from_slice(text);
        let lines = inner.lines();
        if !lines.is_empty() && !text.is_empty() && !text.ends_with(b"\n") {
            buf.push(b'\n');
        }
        inner.draw(&mut buf, lines);
        inner.out.write_all(&buf)?;
        inner.out.flush()
    }

    /// A writer for the log: everything written to it goes through [`Self::print_above`].
    pub fn log_writer(self: &Arc<Self>) -> LogWriter {
        LogWriter(self.clone())
    }

    /// Erases the board and stops drawing for good (sersync stops, or reloads: the new
    /// configuration's lanes are not shown).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.close();
        self.tick.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Redraws every [`REDRAW_EVERY`] while an entry runs.
    fn tick(self: Arc<Self>) {
        let mut inner = self.lock();
        loop {
            inner = match self.tick.wait_timeout(inner, REDRAW_EVERY) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
            let running = inner
                .entries
                .iter()
                .any(|e| matches!(e.state, State::Running(_)));
            if inner.closed || !running {
                inner.ticking = false;
                return;
            }
            inner.redraw();
        }
    }
}

impl fmt::Debug for ProgressBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("ProgressBoard")
            .field("entries", &inner.entries.len())
            .field("closed", &inner.closed)
            .finish_non_exhaustive()
    }
}

impl ProgressEntry {
    /// True until this remote's full sync has succeeded once (and while the board is open):
    /// its lane's sink reports the runs that send the whole root while this holds.
    pub fn is_pending(&self) -> bool {
        let inner = self.board.lock();
        !inner.closed && !matches!(inner.entries[self.index].state, State::Done)
    }

    /// A run starts now.
    pub fn started(&self) {
        let mut inner = self.board.lock();
        if inner.closed {
            return;
        }
        *lock(&self.latest) = None;
        inner.entries[self.index].state = State::Running(Instant::now());
        inner.redraw();
        if !inner.ticking {
            let board = self.board.clone();
            inner.ticking = std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || board.tick())
                .is_ok();
        }
    }

    /// The run's latest snapshot; drawn at the next tick. Never waits for the terminal.
    pub fn update(&self, snapshot: Snapshot) {
        *lock(&self.latest) = Some(snapshot);
    }

    /// The run ended. On success its final line is written above the board, for good; on
    /// failure the board says the lane will retry.
    pub fn finished(&self, succeeded: bool) {
        let mut inner = self.board.lock();
        if inner.closed {
            return;
        }
        let labels = inner.labels();
        let entry = &mut inner.entries[self.index];
        let State::Running(since) = entry.state else {
            return;
        };
        let last = *lock(&entry.latest);
        let elapsed = since.elapsed();
        if !succeeded {
            entry.state = State::Failed(elapsed);
            inner.redraw();
            return;
        }
        entry.state = State::Done;
        let mut buf = Vec::new();
        inner.erase(&mut buf);
        buf.extend_from_slice(render::done(&labels[self.index], last.as_ref(), elapsed).as_bytes());
        buf.push(b'\n');
        if inner.entries.iter().all(|e| matches!(e.state, State::Done)) {
            inner.closed = true;
            self.board.tick.notify_all();
        } else {
            let lines = inner.lines();
            inner.draw(&mut buf, lines);
        }
        inner.write(&buf);
    }
}

impl ProgressDisplay for ProgressBoard {
    fn reporter(self: Arc<Self>, root: &Path, destination: &str) -> Arc<dyn ProgressReporter> {
        Arc::new(ProgressBoard::register(&self, root, destination))
    }
}

impl ProgressReporter for ProgressEntry {
    fn is_pending(&self) -> bool {
        ProgressEntry::is_pending(self)
    }

    fn started(&self) {
        ProgressEntry::started(self)
    }

    fn update(&self, snapshot: Snapshot) {
        ProgressEntry::update(self, snapshot)
    }

    fn finished(&self, succeeded: bool) {
        ProgressEntry::finished(self, succeeded)
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.print_above(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Inner {
    /// Every entry's label, padded to the longest so that the columns line up.
    fn labels(&self) -> Vec<String> {
        let with_root = self.entries.iter().any(|e| e.root != self.entries[0].root);
        let labels: Vec<String> = self
            .entries
            .iter()
            .map(|e| render::label(&e.root, &e.remote, with_root))
            .collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        labels.into_iter().map(|l| format!("{l:width$}")).collect()
    }

    /// The board's lines now: one per entry that runs or failed.
    fn lines(&self) -> Vec<String> {
        if self.closed {
            return Vec::new();
        }
        let labels = self.labels();
        self.entries
            .iter()
            .zip(&labels)
            .filter_map(|(entry, label)| match &entry.state {
                State::Running(since) => Some(render::running(
                    label,
                    lock(&entry.latest).as_ref(),
                    since.elapsed(),
                )),
                State::Failed(after) => Some(render::retrying(label, *after)),
                State::Waiting | State::Done => None,
            })
            .collect()
    }

    /// Moves the cursor to where the board starts and erases it.
    fn erase(&mut self, buf: &mut Vec<u8>) {
        if self.drawn > 0 {
            buf.extend_from_slice(format!("\x1b[{}A\r\x1b[J", self.drawn).as_bytes());
            self.drawn = 0;
        }
    }

    /// Draws `lines` at the cursor, each cut to the width.
    fn draw(&mut self, buf: &mut Vec<u8>, lines: Vec<String>) {
        let width = self.width.columns();
        for line in &lines {
            buf.extend_from_slice(render::fit(line, width).as_bytes());
            buf.push(b'\n');
        }
        self.drawn = lines.len();
    }

    fn redraw(&mut self) {
        let mut buf = Vec::new();
        self.erase(&mut buf);
        let lines = self.lines();
        self.draw(&mut buf, lines);
        self.write(&buf);
    }

    fn close(&mut self) {
        let mut buf = Vec::new();
        self.erase(&mut buf);
        self.closed = true;
        self.write(&buf);
    }

    /// Best effort: a terminal that went away must not stop the sync.
    fn write(&mut self, buf: &[u8]) {
        if !buf.is_empty() {
            let _ = self.out.write_all(buf);
            let _ = self.out.flush();
        }
    }
}

fn lock(latest: &Latest) -> MutexGuard<'_, Option<Snapshot>> {
    latest.lock().unwrap_or_else(|e| e.into_inner())
}

impl Width {
    fn columns(&self) -> usize {
        match self {
            Width::Fixed(columns) => *columns,
            Width::Stderr => stderr_columns().unwrap_or(80),
        }
    }
}

fn stderr_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, which lives for
    // the call; on a descriptor that is not a terminal it fails and writes nothing.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugins::progress::FileCounts;
    use sersync_tests::SharedBuffer;

    /// The terminal after all that was written: see [`screen`].
    fn screen_of(out: &SharedBuffer) -> Vec<String> {
        screen(&out.bytes())
    }

    /// A small terminal: text, `\r`, `\n` (as the tty turns it into `\r\n`), and the two
    /// sequences the board uses. Panics on anything else, so stray bytes fail the test.
    fn screen(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 output");
        let mut rows: Vec<Vec<char>> = vec![Vec::new()];
        let (mut row, mut col) = (0usize, 0usize);
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\r' => col = 0,
                '\n' => {
                    row += 1;
                    col = 0;
                    if row == rows.len() {
                        rows.push(Vec::new());
                    }
                }
                '\x1b' => {
                    assert_eq!(chars.next(), Some('['));
                    let mut n = String::new();
                    let command = loop {
                        match chars.next().expect("a whole sequence") {
                            d @ '0'..='9' => n.push(d),
                            other => break other,
                        }
                    };
                    match command {
                        'A' => row -= n.parse::<usize>().unwrap_or(1),
                        'J' => {
                            rows[row].truncate(col);
                            rows.truncate(row + 1);
                        }
                        other => panic!("unexpected sequence {other}"),
                    }
                }
                c => {
                    assert!(!c.is_control(), "control character {c:?}");
                    if col < rows[row].len() {
                        rows[row][col] = c;
                    } else {
                        rows[row].resize(col, ' ');
                        rows[row].push(c);
                    }
                    col += 1;
                }
            }
        }
        let mut lines: Vec<String> = rows.into_iter().map(|r| r.into_iter().collect()).collect();
        if lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    fn snapshot(transferred: u64, left: u64, total: u64) -> Snapshot {
        Snapshot {
            bytes: 2048,
            percent: 50,
            rate: 1024.0,
            files: Some(FileCounts {
                transferred,
                left,
                total,
                complete: true,
            }),
        }
    }

    fn board(width: usize) -> (Arc<ProgressBoard>, SharedBuffer) {
        let out = SharedBuffer::default();
        (ProgressBoard::new(Box::new(out.clone()), width), out)
    }

    #[test]
    fn log_lines_stay_above_the_running_remotes() {
        let (board, out) = board(200);
        let a = board.register(Path::new("/w"), "backup@a::www");
        let b = board.register(Path::new("/w"), "backup@bb::www");
        board.print_above(b"before\n").unwrap();
        a.started();
        a.update(snapshot(1, 3, 10));
        b.started();
        board.print_above(b"a log line\n").unwrap();
        let screen = screen_of(&out);
        assert_eq!(screen.len(), 4, "{screen:#?}");
        assert_eq!(screen[..2], ["before", "a log line"]);
        assert!(
            screen[2].starts_with(
                "full sync  backup@a::www   7/10 files  1 sent  2.0 KiB (50%)  1.0 KiB/s  "
            ),
            "{screen:#?}"
        );
        assert!(screen[3].starts_with("full sync  backup@bb::www  starting  "));

        b.update(snapshot(4, 0, 4));
        b.finished(true);
        let screen = screen_of(&out);
        assert_eq!(screen.len(), 4, "{screen:#?}");
        assert!(screen[2].starts_with("full sync  backup@bb::www  done in "));
        assert!(screen[2].contains(": 4 files, 4 sent, 2.0 KiB"));
        assert!(screen[3].starts_with("full sync  backup@a::www   7/10 files"));
        assert!(!b.is_pending() && a.is_pending());

        a.finished(true);
        board.print_above(b"after\n").unwrap();
        let screen = screen_of(&out);
        assert_eq!(screen.len(), 5, "{screen:#?}");
        assert!(screen[3].starts_with("full sync  backup@a::www   done in "));
        assert_eq!(screen[4], "after");
        assert!(!a.is_pending());
    }

    #[test]
    fn once_every_remote_is_done_nothing_is_drawn() {
        let (board, out) = board(200);
        let a = board.register(Path::new("/w"), "a");
        a.started();
        a.finished(true);
        let written = out.bytes().len();
        // A later full sync of the same lane (crontab, POST /sync) is silent.
        assert!(!a.is_pending());
        a.started();
        a.update(snapshot(1, 0, 1));
        a.finished(true);
        board.print_above(b"log\n").unwrap();
        assert_eq!(out.bytes()[written..], *b"log\n");
    }

    #[test]
    fn a_failed_run_says_it_will_be_retried_and_the_retry_is_shown() {
        let (board, out) = board(200);
        let a = board.register(Path::new("/w"), "a");
        a.started();
        a.finished(false);
        assert!(a.is_pending());
        let screen = screen_of(&out);
        assert_eq!(screen.len(), 1);
        assert!(screen[0].contains("  failed after "), "{screen:#?}");
        assert!(screen[0].ends_with("will retry (see the log)"));
        a.started();
        assert!(screen_of(&out)[0].starts_with("full sync  a  starting"));
        a.finished(true);
        assert_eq!(screen_of(&out).len(), 1);
        assert!(screen_of(&out)[0].starts_with("full sync  a  done in "));
    }

    #[test]
    fn several_roots_are_named_and_lines_fit_the_width() {
        let (board, out) = board(30);
        let a = board.register(Path::new("/srv/www"), "backup@10.0.0.2::www");
        board.register(Path::new("/srv/img"), "backup@10.0.0.2::img");
        a.started();
        let screen = screen_of(&out);
        assert_eq!(screen, ["full sync  /srv/www -> backup"]);
    }

    #[test]
    fn close_erases_the_board_and_ends_reporting() {
        let (board, out) = board(200);
        let a = board.register(Path::new("/w"), "a");
        board.print_above(b"log\n").unwrap();
        a.started();
        board.close();
        assert_eq!(screen_of(&out), ["log"]);
        assert!(!a.is_pending());
        a.started();
        a.finished(false);
        assert_eq!(screen_of(&out), ["log"]);
    }

    #[test]
    fn partial_log_writes_do_not_run_into_the_board() {
        let (board, out) = board(200);
        let a = board.register(Path::new("/w"), "a");
        a.started();
        let mut log = board.log_writer();
        log.write_all(b"no newline").unwrap();
        let screen = screen_of(&out);
        assert_eq!(screen[0], "no newline");
        assert!(screen[1].starts_with("full sync  a  starting"));
    }
}
