//! The change log of one export (DESIGN.md "Recovery"): for every update this member numbers
//! or applies, the file ids it touched, appended *before* the update executes, so a process
//! killed at any point has logged whatever it may have changed. A rejoining member's resync
//! carries exactly the objects these records name (ftnfs_core::mirror::resync).
//!
//! Two segment files in the state directory, `export-<id>.log` and `export-<id>.log.old`:
//! when the current one passes half the cap it becomes the old one (the previous old one is
//! dropped), so the log never exceeds the cap and always holds the newest updates. A member
//! whose point is older than the log reaches back gets a full copy instead.
//!
//! Records are appended with one `write` each and not synced: they survive a killed process
//! (the kernel has them). A crash of the host loses the page cache of the mirror itself as
//! well, which the boot id check in `resync.rs` treats as an unknown state (full copy).
//!
//! ```text
//!  record: tag u8 ‖ history u64 ‖ seq u64 ‖ n u32 ‖ n × …                         (LE)
//!    1 start (n = 0)   2 update, n × id u64 (whole objects)
//!    3 update, n × (id u64 ‖ first u64 ‖ last u64): blocks first..=last of a file's data,
//!      or the whole object when first = u64::MAX
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ftnfs_core::ids::ExportId;
use ftnfs_core::mirror::resync::{LogEntry, Touched};
use ftnfs_core::mirror::standing::Standing;

/// Most ids one record keeps (an update names at most a few objects).
const MAX_IDS: usize = 16;

/// One export's change log.
pub struct ChangeLog {
    cur: PathBuf,
    old: PathBuf,
    cap: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    len: u64,
    /// Records appended since start (for status).
    appended: u64,
    /// Where this member stands (the newest stream, logged without a gap up to where), kept
    /// up to date with every record so nobody reads the files for it.
    standing: Standing,
}

impl ChangeLog {
    /// Opens (or creates) the log of `export`, at most `cap` bytes; `window` is the most
    /// updates a member holds beyond its watermark (`Standing`).
    pub fn open(dir: &Path, export: ExportId, cap: u64, window: u64) -> std::io::Result<ChangeLog> {
        let cur = dir.join(format!("export-{}.log", export.0));
        let old = dir.join(format!("export-{}.log.old", export.0));
        let file = OpenOptions::new().create(true).append(true).open(&cur)?;
        let len = file.metadata()?.len();
        let log = ChangeLog {
            cur,
            old,
            cap: cap.max(4096),
            inner: Mutex::new(Inner {
                file: Some(file),
                len,
                appended: 0,
                standing: Standing::new(window),
            }),
        };
        // every record, in log order (Standing's window rule needs no more than the newest
        // ones, but the whole log is at most `cap` and read once)
        let mut standing = Standing::new(window);
        log.scan(
            |e| {
                standing.note(e);
                false
            },
            false,
        )?;
        log.inner.lock().unwrap_or_else(|p| p.into_inner()).standing = standing;
        Ok(log)
    }

    /// Where this member stands: the stream of the newest record, and the update up to which
    /// every update of it is logged ((0, 0): an empty log). Not the highest update logged: a
    /// process killed among concurrent applies leaves holes below that (`Standing`).
    pub fn last(&self) -> (u64, u64) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .standing
            .claim()
    }

    /// For status: the newest stream, the update up to which it is logged without a gap, and
    /// the highest update logged of it.
    pub fn reach(&self) -> (u64, u64, u64) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (h, upto) = g.standing.claim();
        (h, upto, g.standing.top())
    }

    fn append(&self, rec: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.len + rec.len() as u64 > self.cap / 2 {
            g.file = None;
            let _ = std::fs::rename(&self.cur, &self.old);
            g.len = 0;
        }
        if g.file.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .truncate(false)
                .open(&self.cur)
            {
                Ok(f) => g.file = Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "change log: cannot open; a rejoin will need a full copy");
                    return;
                }
            }
        }
        if let Some(f) = g.file.as_mut() {
            if let Err(e) = f.write_all(rec) {
                tracing::warn!(error = %e, "change log: append failed");
                // a hole in the log: forget it, so nobody trusts it
                g.file = None;
                let _ = std::fs::remove_file(&self.cur);
                let _ = std::fs::remove_file(&self.old);
                g.len = 0;
                g.standing.clear();
                return;
            }
            g.len += rec.len() as u64;
            g.appended += 1;
            let word = |at: usize| u64::from_le_bytes(rec[at..at + 8].try_into().unwrap_or([0; 8]));
            match rec[0] {
                1 => g.standing.start(word(1), word(9)),
                _ => g.standing.update(word(1), word(9)),
            }
        }
    }

    /// From here on, every update of `history` after `base` is logged.
    pub fn start(&self, history: u64, base: u64) {
        let mut r = Vec::with_capacity(21);
        r.push(1);
        r.extend_from_slice(&history.to_le_bytes());
        r.extend_from_slice(&base.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        self.append(&r);
    }

    /// Update `seq` of `history` touches `ids` (call before executing it).
    pub fn update(&self, history: u64, seq: u64, ids: &[Touched]) {
        let ids = &ids[..ids.len().min(MAX_IDS)];
        let mut r = Vec::with_capacity(21 + 24 * ids.len());
        r.push(3);
        r.extend_from_slice(&history.to_le_bytes());
        r.extend_from_slice(&seq.to_le_bytes());
        r.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for t in ids {
            let (a, b) = t.blocks.unwrap_or((u64::MAX, 0));
            r.extend_from_slice(&t.id.to_le_bytes());
            r.extend_from_slice(&a.to_le_bytes());
            r.extend_from_slice(&b.to_le_bytes());
        }
        self.append(&r);
    }

    /// Forgets everything (a full resync into this mirror starts).
    pub fn clear(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.file = None;
        let _ = std::fs::remove_file(&self.old);
        let _ = std::fs::remove_file(&self.cur);
        g.len = 0;
        g.standing.clear();
    }

    /// Bytes in the log now, and records appended since start.
    pub fn size(&self) -> (u64, u64) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::fs::metadata(&self.old).map(|m| m.len()).unwrap_or(0);
        (old + g.len, g.appended)
    }

    /// Every record, oldest first (a torn last record is left out).
    #[cfg(test)]
    pub fn entries(&self) -> std::io::Result<Vec<LogEntry>> {
        self.scan(|_| true, false)
    }

    /// The records `keep` accepts, oldest first, read in pieces (the log can be large; only
    /// what is kept is held in memory). With `firsts`, also every `Start` and the first
    /// record of each stream (what tells how far back a stream is covered).
    pub fn scan(
        &self,
        mut keep: impl FnMut(&LogEntry) -> bool,
        firsts: bool,
    ) -> std::io::Result<Vec<LogEntry>> {
        // hold the lock so no rotation happens between reading the two segments
        let _g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in [&self.old, &self.cur] {
            let mut f = match File::open(p) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut chunk)?;
                buf.extend_from_slice(&chunk[..n]);
                let used = parse(&buf, &mut |e| {
                    let h = match &e {
                        LogEntry::Start { history, .. } | LogEntry::Update { history, .. } => {
                            *history
                        }
                    };
                    let first = seen.insert(h);
                    if keep(&e) || (firsts && (first || matches!(e, LogEntry::Start { .. }))) {
                        out.push(e);
                    }
                });
                match used {
                    Some(used) => {
                        buf.drain(..used);
                    }
                    None => {
                        tracing::warn!(path = %p.display(), "change log: unreadable record; ignoring the rest");
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The `Start` records, the first record of each stream, and the last `n` updates: all a
    /// member needs to say where it stands.
    pub fn tail(&self, n: usize) -> std::io::Result<Vec<LogEntry>> {
        let mut last: std::collections::VecDeque<LogEntry> = std::collections::VecDeque::new();
        let mut head = self.scan(
            |e| {
                if matches!(e, LogEntry::Update { .. }) {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(e.clone());
                }
                false
            },
            true,
        )?;
        // keep log order: the head records precede the tail unless they are among its records
        head.retain(|e| !last.contains(e));
        head.extend(last);
        Ok(head)
    }
}

/// Parses whole records off the front of `buf`, handing each to `out`; returns how many bytes
/// it used (a record cut at the end of `buf` waits for more), or `None` at bytes that are not
/// a record (nothing after them can be trusted).
fn parse(buf: &[u8], out: &mut impl FnMut(LogEntry)) -> Option<usize> {
    let mut b = buf;
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    while b.len() >= 21 {
        let tag = b[0];
        let history = u64_at(b, 1);
        let seq = u64_at(b, 9);
        let n = u32::from_le_bytes(b[17..21].try_into().unwrap_or([0; 4])) as usize;
        let each = if tag == 3 { 24 } else { 8 };
        if n > MAX_IDS || !matches!(tag, 1..=3) {
            return None;
        }
        if b.len() < 21 + each * n {
            break;
        }
        match tag {
            1 => out(LogEntry::Start { history, base: seq }),
            2 => out(LogEntry::Update {
                history,
                seq,
                ids: (0..n)
                    .map(|i| Touched::whole(u64_at(b, 21 + 8 * i)))
                    .collect(),
            }),
            3 => out(LogEntry::Update {
                history,
                seq,
                ids: (0..n)
                    .map(|i| {
                        let at = 21 + 24 * i;
                        let (id, a, z) = (u64_at(b, at), u64_at(b, at + 8), u64_at(b, at + 16));
                        if a == u64::MAX {
                            Touched::whole(id)
                        } else {
                            Touched::blocks(id, a, z)
                        }
                    })
                    .collect(),
            }),
            _ => unreachable!("checked above"),
        }
        b = &b[21 + each * n..];
    }
    Some(buf.len() - b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_cap_drops_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(d.path(), ExportId(1), 4096, 1024).unwrap();
        log.start(7, 0);
        log.update(7, 1, &[Touched::whole(10), Touched::blocks(11, 2, 3)]);
        assert_eq!(
            log.entries().unwrap(),
            vec![
                LogEntry::Start {
                    history: 7,
                    base: 0
                },
                LogEntry::Update {
                    history: 7,
                    seq: 1,
                    ids: vec![Touched::whole(10), Touched::blocks(11, 2, 3)]
                }
            ]
        );
        for s in 2..1000 {
            log.update(7, s, &[Touched::whole(s)]);
        }
        let e = log.entries().unwrap();
        assert!(log.size().0 <= 4096);
        assert!(e.len() < 1000 && e.len() > 50);
        assert_eq!(
            e.last(),
            Some(&LogEntry::Update {
                history: 7,
                seq: 999,
                ids: vec![Touched::whole(999)]
            })
        );
        assert_eq!(log.last(), (7, 999));
        // reopened, it still holds the same records and knows where it stands
        drop(log);
        let log = ChangeLog::open(d.path(), ExportId(1), 4096, 1024).unwrap();
        assert_eq!(log.entries().unwrap(), e);
        assert_eq!(log.last(), (7, 999));
        log.start(8, 5);
        assert_eq!(log.last(), (8, 5));
        log.clear();
        assert!(log.entries().unwrap().is_empty());
        assert_eq!(log.last(), (0, 0));
    }

    #[test]
    fn a_restarted_member_claims_its_gapless_prefix_not_its_highest_update() {
        // concurrent applies logged 1..=97, 99, 100; the process died before 98 was logged
        let d = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(d.path(), ExportId(1), 1 << 20, 1024).unwrap();
        log.start(7, 0);
        for s in (1..=100).filter(|s| *s != 98) {
            log.update(7, s, &[Touched::whole(s)]);
        }
        assert_eq!(log.last(), (7, 97));
        drop(log);
        let log = ChangeLog::open(d.path(), ExportId(1), 1 << 20, 1024).unwrap();
        assert_eq!(log.last(), (7, 97), "the hole is seen again from the files");
        log.update(7, 98, &[]);
        assert_eq!(log.last(), (7, 100));
        // a size cap that cut the stream's Start away: the records kept are trusted from the
        // first one, and holes above it still count
        let d = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(d.path(), ExportId(1), 8192, 1024).unwrap();
        log.start(7, 0);
        for s in 1..=400 {
            log.update(7, s, &[Touched::whole(s)]);
        }
        log.update(7, 402, &[]);
        drop(log);
        let log = ChangeLog::open(d.path(), ExportId(1), 8192, 1024).unwrap();
        assert!(!log
            .entries()
            .unwrap()
            .iter()
            .any(|e| matches!(e, LogEntry::Start { .. })));
        assert_eq!(log.last(), (7, 400));
    }

    #[test]
    fn a_torn_tail_waits_and_garbage_stops() {
        let mut out = Vec::new();
        let mut b = vec![2];
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0; 8]); // one id of two
        assert_eq!(parse(&b, &mut |e| out.push(e)), Some(0));
        assert!(out.is_empty());
        assert_eq!(parse(&[9; 40], &mut |e| out.push(e)), None);
    }

    #[test]
    fn tail_keeps_starts_firsts_and_the_last_updates() {
        let d = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(d.path(), ExportId(1), 1 << 20, 1024).unwrap();
        log.start(7, 0);
        for s in 1..=100 {
            log.update(7, s, &[Touched::whole(s)]);
        }
        log.start(8, 100);
        for s in 101..=200 {
            log.update(8, s, &[Touched::blocks(s, 0, 1)]);
        }
        let t = log.tail(10).unwrap();
        let seqs: Vec<(u64, u64)> = t
            .iter()
            .map(|e| match e {
                LogEntry::Start { history, base } => (*history, *base),
                LogEntry::Update { history, seq, .. } => (*history, *seq),
            })
            .collect();
        let mut want = vec![(7, 0), (8, 100)];
        want.extend((191..=200).map(|s| (8, s)));
        assert_eq!(seqs, want);
        // scan keeps what it is asked for, plus the firsts when asked
        let some = log
            .scan(|e| matches!(e, LogEntry::Update { seq: 150, .. }), true)
            .unwrap();
        assert_eq!(some.len(), 3, "{some:?}");
    }
}
