//! The identity table's intent log (issue 13, `Documentation/11-durable-metadata.md`): the
//! changes a client's CREATE, REMOVE, RENAME or LINK makes to the table, made durable by one
//! small write and `fdatasync` of this file instead of a durable redb commit — which rewrites
//! every B-tree page the change touched (17 pages and ~4 ms for one CREATE, measured with
//! strace) and was most of a durable CREATE's time.
//!
//! The table commits each change without a sync and appends it here, numbered; a change is
//! durable once the log is synced past it (a group sync: concurrent changes share one). Now
//! and then — when the log is full, on `flush`, at open — a *checkpoint* makes the table
//! durable (one durable redb commit, which carries the number of the last change in it) and
//! the log starts over. After a crash, opening the table applies the logged changes numbered
//! after the table's durable number, in order, with the same code that applied them the
//! first time (`idtable::apply`).
//!
//! The file is allocated and zeroed once (`SIZE`), and records overwrite it from the start
//! after each checkpoint, so a sync writes data blocks only, never the file's size. Reading
//! stops at the first record that is torn (length or checksum) or not numbered one more
//! than the one before (what follows is older, from before the last checkpoint).
//!
//! ```text
//!  record: len u32 ‖ crc32(seq ‖ body) u32 ‖ seq u64 ‖ body                     (LE)
//!  body:   1 new    id u64 ‖ gen u32 ‖ ino u64 ‖ life u64 ‖ parent u64 ‖ name
//!          2 link   id u64 ‖ parent u64 ‖ name
//!          3 unlink id u64 ‖ parent u64 ‖ last u8 ‖ name
//!          4 rename id u64 ‖ from u64 ‖ to u64 ‖ victim u64 ‖ flags u8 ‖ from name ‖ to name
//!  name:   len u16 ‖ bytes
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ftnfs_core::ids::{FileId, Generation};

/// Size of the log file: room for ~40,000 creates between checkpoints.
pub const SIZE: u64 = 4 << 20;
/// Longest name a record carries (NAME_MAX, with room to spare).
const MAX_NAME: usize = 1024;
/// Longest record.
pub const MAX_RECORD: usize = 16 + 1 + 8 * 5 + 1 + 2 * (2 + MAX_NAME);

/// One logged change of the identity table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new object `id`/`gen` at inode `ino` (of `life`), named `name` in `parent`.
    New {
        /// Its id.
        id: FileId,
        /// Its generation.
        gen: Generation,
        /// Its inode and the inode's life.
        ino: (u64, u64),
        /// Where.
        parent: FileId,
        /// Its name.
        name: Vec<u8>,
    },
    /// Another name of `id` (LINK).
    Link {
        /// The object.
        id: FileId,
        /// The directory.
        parent: FileId,
        /// The name.
        name: Vec<u8>,
    },
    /// A name of `id` removed; with `last`, the object is gone.
    Unlink {
        /// The object.
        id: FileId,
        /// The directory.
        parent: FileId,
        /// The name.
        name: Vec<u8>,
        /// It was the last name.
        last: bool,
    },
    /// A name of `id` moved; `replaced`: the object the target name denoted, and whether
    /// that was its last name.
    Rename {
        /// The object.
        id: FileId,
        /// Old place.
        from: (FileId, Vec<u8>),
        /// New place.
        to: (FileId, Vec<u8>),
        /// What the new name replaced.
        replaced: Option<(FileId, bool)>,
    },
}

fn name(out: &mut Vec<u8>, n: &[u8]) {
    let n = &n[..n.len().min(MAX_NAME)];
    out.extend_from_slice(&(n.len() as u16).to_le_bytes());
    out.extend_from_slice(n);
}

impl Change {
    /// Losing this change in a power loss (its record unsynced, the table's commit lost)
    /// harms nothing, so the caller need not wait for the log's sync: a removed name.
    /// The filesystem already made the removal durable (the directory's fsync) before the
    /// reply, so after a loss the table keeps a link whose name is gone, and maybe the
    /// object's record and inode number:
    /// - its handle walks to the missing name, tries the object's other names, and answers
    ///   STALE — what a removed object's handle answers anyway;
    /// - a LOOKUP asks the filesystem, which has no such name; ids are never reused;
    /// - an object that later gets the inode number is another life (`fs/life.rs`): a new
    ///   id, the stale record forgotten;
    /// - any change logged after it that was synced covers it (a sync covers every record
    ///   written before it), so only a tail of removals can be lost.
    ///
    /// A new object, a new name (LINK) and a RENAME must be synced: losing them would leave
    /// a handle the client holds without the name it walks to.
    pub fn may_be_lost(&self) -> bool {
        matches!(self, Change::Unlink { .. })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Change::New {
                id,
                gen,
                ino,
                parent,
                name: n,
            } => {
                out.push(1);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.extend_from_slice(&gen.0.to_le_bytes());
                out.extend_from_slice(&ino.0.to_le_bytes());
                out.extend_from_slice(&ino.1.to_le_bytes());
                out.extend_from_slice(&parent.0.to_le_bytes());
                name(out, n);
            }
            Change::Link {
                id,
                parent,
                name: n,
            } => {
                out.push(2);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.extend_from_slice(&parent.0.to_le_bytes());
                name(out, n);
            }
            Change::Unlink {
                id,
                parent,
                name: n,
                last,
            } => {
                out.push(3);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.extend_from_slice(&parent.0.to_le_bytes());
                out.push(u8::from(*last));
                name(out, n);
            }
            Change::Rename {
                id,
                from,
                to,
                replaced,
            } => {
                out.push(4);
                out.extend_from_slice(&id.0.to_le_bytes());
                out.extend_from_slice(&from.0 .0.to_le_bytes());
                out.extend_from_slice(&to.0 .0.to_le_bytes());
                let (victim, flags) = match replaced {
                    None => (0, 0u8),
                    Some((v, last)) => (v.0, 1 | (u8::from(*last) << 1)),
                };
                out.extend_from_slice(&victim.to_le_bytes());
                out.push(flags);
                name(out, &from.1);
                name(out, &to.1);
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Change> {
        let mut r = Rd(b);
        let c = match r.u8()? {
            1 => Change::New {
                id: FileId(r.u64()?),
                gen: Generation(r.u32()?),
                ino: (r.u64()?, r.u64()?),
                parent: FileId(r.u64()?),
                name: r.name()?,
            },
            2 => Change::Link {
                id: FileId(r.u64()?),
                parent: FileId(r.u64()?),
                name: r.name()?,
            },
            3 => Change::Unlink {
                id: FileId(r.u64()?),
                parent: FileId(r.u64()?),
                last: r.u8()? != 0,
                name: r.name()?,
            },
            4 => {
                let id = FileId(r.u64()?);
                let (f, t, v, flags) = (r.u64()?, r.u64()?, r.u64()?, r.u8()?);
                Change::Rename {
                    id,
                    from: (FileId(f), r.name()?),
                    to: (FileId(t), r.name()?),
                    replaced: (flags & 1 != 0).then_some((FileId(v), flags & 2 != 0)),
                }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(c)
    }
}

struct Rd<'a>(&'a [u8]);
impl Rd<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn name(&mut self) -> Option<Vec<u8>> {
        let n = self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
        self.take(usize::from(n)).map(<[u8]>::to_vec)
    }
}

fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// The log file: where the next record goes.
pub struct IdLog {
    file: File,
    at: u64,
}

/// The log has no room for another record: checkpoint first.
#[derive(Debug)]
pub struct Full;

impl IdLog {
    /// Opens (or creates, zeroed) the log at `path`; the records in it, in order (the caller
    /// applies those after its durable number).
    pub fn open(path: &Path) -> std::io::Result<(IdLog, Vec<(u64, Change)>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() < SIZE {
            // allocate and zero it once: later syncs write data blocks only
            file.seek(SeekFrom::Start(0))?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = SIZE;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut all)?;
        let mut out = Vec::new();
        let mut at = 0usize;
        let mut prev: Option<u64> = None;
        while at + 16 <= all.len() {
            let len = u32::from_le_bytes(all[at..at + 4].try_into().expect("4")) as usize;
            let sum = u32::from_le_bytes(all[at + 4..at + 8].try_into().expect("4"));
            let seq = u64::from_le_bytes(all[at + 8..at + 16].try_into().expect("8"));
            if len == 0 || len > MAX_RECORD || at + 16 + len > all.len() {
                break;
            }
            let body = &all[at + 16..at + 16 + len];
            if crc(seq, body) != sum || prev.is_some_and(|p| seq != p + 1) {
                break;
            }
            let Some(c) = Change::decode(body) else { break };
            out.push((seq, c));
            prev = Some(seq);
            at += 16 + len;
        }
        Ok((IdLog { file, at: 0 }, out))
    }

    /// Writes record `seq` (not synced); `Full` if it does not fit.
    pub fn append(&mut self, seq: u64, c: &Change) -> Result<std::io::Result<()>, Full> {
        let mut body = Vec::with_capacity(64);
        c.encode(&mut body);
        let mut rec = Vec::with_capacity(16 + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc(seq, &body).to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&body);
        // keep room for a terminator: a zero length after the last record
        if self.at + rec.len() as u64 + 16 > SIZE {
            return Err(Full);
        }
        let r = self.file.write_all_at(&rec, self.at);
        if r.is_ok() {
            self.at += rec.len() as u64;
        }
        Ok(r)
    }

    /// Another handle of the log file (to sync it without the log's lock).
    pub fn file_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Whether a record of the longest kind still fits.
    pub fn has_room(&self) -> bool {
        self.at + MAX_RECORD as u64 + 32 <= SIZE
    }

    /// Makes every record written so far durable.
    #[cfg(test)]
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Starts over (after a checkpoint made every record durable in the table): the next
    /// record goes first. Its predecessor in the file is then one from before, with a lower
    /// number: reading stops there. The first record's header is zeroed now, so that a
    /// crash before the next record finds an empty log rather than the old records.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&[0u8; 16], 0)?;
        self.at = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes() -> Vec<Change> {
        vec![
            Change::New {
                id: FileId(7),
                gen: Generation(3),
                ino: (99, 12),
                parent: FileId(1),
                name: b"a".to_vec(),
            },
            Change::Link {
                id: FileId(7),
                parent: FileId(8),
                name: b"hard".to_vec(),
            },
            Change::Rename {
                id: FileId(7),
                from: (FileId(1), b"a".to_vec()),
                to: (FileId(8), b"b".to_vec()),
                replaced: Some((FileId(9), true)),
            },
            Change::Rename {
                id: FileId(7),
                from: (FileId(8), b"b".to_vec()),
                to: (FileId(8), b"c".to_vec()),
                replaced: None,
            },
            Change::Unlink {
                id: FileId(7),
                parent: FileId(8),
                name: b"hard".to_vec(),
                last: false,
            },
        ]
    }

    #[test]
    fn records_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.log");
        let (mut log, old) = IdLog::open(&p).unwrap();
        assert!(old.is_empty());
        for (i, c) in changes().iter().enumerate() {
            log.append(10 + i as u64, c).unwrap().unwrap();
        }
        log.sync().unwrap();
        drop(log);
        let (_, got) = IdLog::open(&p).unwrap();
        let want: Vec<(u64, Change)> = changes()
            .into_iter()
            .enumerate()
            .map(|(i, c)| (10 + i as u64, c))
            .collect();
        assert_eq!(got, want);
    }

    /// After a reset the old records are not read again, also when the new ones are fewer;
    /// a torn record ends the log.
    #[test]
    fn a_reset_and_a_torn_record_end_the_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.log");
        let (mut log, _) = IdLog::open(&p).unwrap();
        for (i, c) in changes().iter().enumerate() {
            log.append(1 + i as u64, c).unwrap().unwrap();
        }
        log.reset().unwrap();
        drop(log);
        assert!(
            IdLog::open(&p).unwrap().1.is_empty(),
            "nothing after a reset"
        );
        let (mut log, _) = IdLog::open(&p).unwrap();
        log.append(6, &changes()[0]).unwrap().unwrap();
        let end = log.at;
        log.append(7, &changes()[1]).unwrap().unwrap();
        drop(log);
        let got = IdLog::open(&p).unwrap().1;
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![6, 7]);
        // tear the second record's body
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xff], end + 20).unwrap();
        let got = IdLog::open(&p).unwrap().1;
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn a_full_log_says_so() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = IdLog::open(&d.path().join("t.log")).unwrap();
        let big = Change::Link {
            id: FileId(1),
            parent: FileId(2),
            name: vec![b'x'; 1000],
        };
        let mut seq = 0;
        while log.has_room() {
            seq += 1;
            log.append(seq, &big).unwrap().unwrap();
        }
        seq += 1;
        while log.append(seq, &big).is_ok() {
            seq += 1;
        }
        assert!(log.at <= SIZE);
    }
}
