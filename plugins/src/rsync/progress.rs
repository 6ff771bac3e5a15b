//! rsync's `--info=progress2` output, parsed.
//!
//! With `--info=progress2` rsync reports on the whole run, not per file, on standard output:
//! one line at a time, each ended by `\r` (redrawn in place) and the last by `\n`:
//!
//! ```text
//!        50000000  71%  781.19MB/s    0:00:00 (xfr#1, ir-chk=1020/1022)
//! ```
//!
//! bytes of the files sent so far, that as a share of the size of all files known so far, the
//! current rate (`kB/s`, `MB/s`, `GB/s`, 1024-based), a time, and — once a file has been
//! handled — the files sent (`xfr#`) and the file-list entries still to check over all
//! entries listed so far (`ir-chk` while rsync is still listing directories, `to-chk` once the
//! list is complete). The lines printed before the first file lack the parenthesis.
//!
//! Nothing here panics or trusts the input: a line that is not exactly that shape (cut short,
//! garbled, a message) is not a snapshot.

use std::io::Read;

pub use crate::progress::{FileCounts, Snapshot};

/// Parses one progress line (without its `\r` or `\n`); `None` unless it is one, whole.
pub fn parse_line(line: &[u8]) -> Option<Snapshot> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    let bytes = count(words.next()?)?;
    let percent = words
        .next()?
        .strip_suffix('%')
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|p| *p <= 100)?;
    let rate = rate(words.next()?)?;
    if !is_time(words.next()?) {
        return None;
    }
    let files = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(sent), Some(check), None) => Some(file_counts(sent, check)?),
        _ => return None,
    };
    Some(Snapshot {
        bytes,
        percent,
        rate,
        files,
    })
}

/// Longest line kept while waiting for its end; anything longer is not a progress line.
const MAX_LINE: usize = 512;

/// Reads `pipe` to its end and hands every progress line to `on_snapshot`, in order. Other
/// lines are skipped, so is what cannot be read.
pub fn follow(mut pipe: impl Read, mut on_snapshot: impl FnMut(Snapshot)) {
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut buf = [0u8; 4096];
    let mut end_of_line = |line: &mut Vec<u8>, overlong: &mut bool| {
        if !*overlong {
            if let Some(snapshot) = parse_line(line) {
                on_snapshot(snapshot);
            }
        }
        line.clear();
        *overlong = false;
    };
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                end_of_line(&mut line, &mut overlong);
            } else if line.len() < MAX_LINE {
                line.push(b);
            } else {
                overlong = true;
            }
        }
    }
    end_of_line(&mut line, &mut overlong);
}

/// A byte count: digits, possibly grouped by commas (rsync's default output).
fn count(word: &str) -> Option<u64> {
    if word.starts_with(',') || word.ends_with(',') {
        return None;
    }
    let digits: String = word.chars().filter(|&c| c != ',').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `781.19MB/s` → bytes per second (rsync's units are 1024-based).
fn rate(word: &str) -> Option<f64> {
    let word = word.strip_suffix("/s")?;
    let (number, unit) = word.split_at(word.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    if !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    Some(value * scale).filter(|r| r.is_finite())
}

/// `H:MM:SS`, or `??:??:??` when rsync cannot tell.
fn is_time(word: &str) -> bool {
    if word == "??:??:??" {
        return true;
    }
    let digits = |p: &str, n: Option<usize>| {
        n.is_none_or(|n| p.len() == n) && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
    };
    matches!(word.split(':').collect::<Vec<_>>()[..],
        [h, m, s] if digits(h, None) && digits(m, Some(2)) && digits(s, Some(2)))
}

/// `(xfr#3,` and `to-chk=414/2022)`.
fn file_counts(sent: &str, check: &str) -> Option<FileCounts> {
    let transferred = sent.strip_prefix("(xfr#")?.strip_suffix(',')?;
    let (kind, numbers) = check.strip_suffix(')')?.split_once('=')?;
    let complete = match kind {
        "to-chk" => true,
        "ir-chk" => false,
        _ => return None,
    };
    let (left, total) = numbers.split_once('/')?;
    let (left, total) = (plain(left)?, plain(total)?);
    (left <= total).then_some(FileCounts {
        transferred: plain(transferred)?,
        left,
        total,
        complete,
    })
}

/// Digits only.
fn plain(word: &str) -> Option<u64> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines captured from rsync 3.5.0 pushing to a daemon (`--info=progress2`), with and
    /// without `--no-human-readable`.
    const FIRST: &[u8] = b"         32,768   0%    0.00kB/s    0:00:00  ";
    const LISTING: &[u8] = b"     50,000,000  71%    1.11GB/s    0:00:00 (xfr#1, ir-chk=1020/1022)";
    const PLAIN: &[u8] = b"       50000000  71%  781.19MB/s    0:00:00 (xfr#1, ir-chk=1020/1022)";
    const LAST: &[u8] = b"     90,000,000 100%  185.31MB/s    0:00:00 (xfr#2001, to-chk=0/2022)";
    const UP_TO_DATE: &[u8] =
        b"         60,002   0%   18.85MB/s    0:00:00 (xfr#3, to-chk=0/2022)  ";

    #[test]
    fn a_line_before_the_first_file_has_no_counts() {
        assert_eq!(
            parse_line(FIRST),
            Some(Snapshot {
                bytes: 32_768,
                percent: 0,
                rate: 0.0,
                files: None
            })
        );
    }

    #[test]
    fn counts_while_listing_and_once_the_list_is_complete() {
        let listing = parse_line(LISTING).unwrap();
        assert_eq!(listing.bytes, 50_000_000);
        assert_eq!(listing.percent, 71);
        assert!((listing.rate - 1.11 * 1024.0 * 1024.0 * 1024.0).abs() < 1.0);
        assert_eq!(
            listing.files,
            Some(FileCounts {
                transferred: 1,
                left: 1020,
                total: 1022,
                complete: false
            })
        );
        assert_eq!(listing.files.unwrap().checked(), 2);
        let last = parse_line(LAST).unwrap();
        assert_eq!(last.percent, 100);
        let files = last.files.unwrap();
        assert!(files.complete);
        assert_eq!((files.transferred, files.checked()), (2001, 2022));
    }

    #[test]
    fn plain_numbers_and_trailing_blanks() {
        assert_eq!(parse_line(PLAIN).unwrap().bytes, 50_000_000);
        let up_to_date = parse_line(UP_TO_DATE).unwrap();
        assert_eq!(up_to_date.files.unwrap().transferred, 3);
        assert_eq!(up_to_date.percent, 0);
    }

    #[test]
    fn unknown_times_are_accepted() {
        let line = b"  1,024  10%  1.00kB/s  ??:??:?? (xfr#1, to-chk=1/2)";
        assert_eq!(parse_line(line).unwrap().rate, 1024.0);
    }

    #[test]
    fn a_line_cut_short_is_not_a_snapshot() {
        let counts = LAST.iter().position(|&b| b == b'(').unwrap();
        for n in 0..LAST.len() {
            let line = &LAST[..n];
            let parsed = parse_line(line);
            if n >= counts - 1 && n <= counts {
                // Cut just before the counts: the shape of a line that has none.
                assert_eq!(parsed.unwrap().files, None);
            } else {
                assert_eq!(parsed, None, "{:?}", String::from_utf8_lossy(line));
            }
        }
    }

    #[test]
    fn anything_else_is_not_a_snapshot() {
        for line in [
            &b""[..],
            b"sending incremental file list",
            b"deleting dir/file",
            b"rsync: [sender] link_stat \"x\" failed: No such file or directory (2)",
            b"total size is 90,000,002  speedup is 1.00",
            // -h: suffixed numbers are ambiguous (1000- or 1024-based); sersync passes
            // --no-human-readable.
            b"         32.77K   0%    0.00kB/s    0:00:00",
            b"  1,024 101%  1.00kB/s  0:00:01",
            b"  1,024 10%  1.00XB/s  0:00:01",
            b"  1,024 10%  1.00kB/s  0:00",
            b"  1,024 10%  1.00kB/s  0:00:0",
            b"  1,024 10%  1.00kB/s  0:0?:00",
            b"  ,024 10%  1.00kB/s  0:00:01",
            b"  1,024 10%  -1.00kB/s  0:00:01",
            b"  1,024 10%  1.00kB/s  0:00:01 (xfr#1, to-chk=3/2)",
            b"  1,024 10%  1.00kB/s  0:00:01 (xfr#1, zz-chk=1/2)",
            b"  1,024 10%  1.00kB/s  0:00:01 (xfr#1, to-chk=1/2) extra",
            b"  99999999999999999999999 10%  1.00kB/s  0:00:01",
            b"  1,024 10%  1.00kB/s  0:00:01 (xfr#\xff, to-chk=1/2)",
            b"\x1b[2J  1,024 10%  1.00kB/s  0:00:01",
        ] {
            assert_eq!(
                parse_line(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Reads a few bytes at a time, so that lines arrive cut anywhere.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn follow_splits_on_carriage_returns_and_newlines() {
        let mut output = b"\r".to_vec();
        for line in [FIRST, LISTING, b"garbage \xff\xfe", LAST] {
            output.extend_from_slice(line);
            output.push(b'\r');
        }
        output.extend_from_slice(LAST);
        output.push(b'\n');
        output.extend_from_slice(&[b'x'; 3 * MAX_LINE]);
        output.push(b'\n');
        // Cut short at the end: not reported.
        output.extend_from_slice(&LAST[..20]);
        let mut seen = Vec::new();
        follow(Trickle(&output), |s| seen.push(s));
        let bytes: Vec<u64> = seen.iter().map(|s| s.bytes).collect();
        assert_eq!(bytes, [32_768, 50_000_000, 90_000_000, 90_000_000]);
    }

    #[test]
    fn follow_survives_arbitrary_bytes() {
        // A fixed pseudo-random stream: every byte value, separators included.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        follow(Trickle(&noise), |_| {});
        follow(&noise[..], |_| {});
    }
}
