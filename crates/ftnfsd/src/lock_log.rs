//! The log of an export's lock table (`state_dir/export-<id>.locks`): every call that
//! changes the table is appended before its reply leaves (on a secondary: before it
//! acknowledges the update that carried it), so the table survives a crash of the process as
//! the files do — in the page cache. A host that restarted without a seal is resynced whole,
//! which replaces the table; a clean stop syncs the log to the disk with the seal. Replayed
//! at start; past [`MAX_LOG_BYTES`] it is rewritten as a snapshot of the table.
//!
//! A record is a 4-byte big-endian length and XDR: a tag, then for a call its NLM procedure,
//! the client's address and the call's arguments, for a snapshot piece the entries as a
//! resync sends them (`PeerMsg::SyncLocks`). A torn last record (a crash while appending) is
//! dropped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ftnfs_wire::peer::{ip_bytes, ip_from_bytes, LockRecord, PeerMsg, MAX_SYNC_LOCKS};
use ftnfs_wire::xdr::{XdrReader, XdrWriter};

/// Past this size the log is rewritten as a snapshot of the table.
pub const MAX_LOG_BYTES: u64 = 4 << 20;
/// Largest record (a snapshot piece of [`MAX_SYNC_LOCKS`] entries fits).
const MAX_RECORD: usize = ftnfs_wire::peer::MAX_FRAME;

const CALL: u32 = 1;
const SNAPSHOT: u32 = 2;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An NLM call that changes the table.
    Call {
        /// Its (synchronous) procedure.
        proc_: u32,
        /// The client it came from.
        client: IpAddr,
        /// Its arguments, as sent.
        args: Vec<u8>,
    },
    /// A piece of a whole table; `first` empties the table before it.
    Snapshot {
        /// The first piece.
        first: bool,
        /// Its entries.
        records: Vec<LockRecord>,
    },
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.u32(0); // length, patched below
        match self {
            Entry::Call {
                proc_,
                client,
                args,
            } => {
                w.u32(CALL)
                    .u32(*proc_)
                    .opaque(&ip_bytes(*client))
                    .opaque(args);
            }
            Entry::Snapshot { first, records } => {
                let frame = PeerMsg::SyncLocks {
                    export: 0,
                    first: *first,
                    records: records.clone(),
                }
                .to_frame();
                w.u32(SNAPSHOT).opaque(&frame[4..]);
            }
        }
        let len = (w.len() - 4) as u32;
        w.patch(0, &len.to_be_bytes());
        w.into_inner()
    }

    fn decode(body: &[u8]) -> Option<Entry> {
        let mut r = XdrReader::new(body);
        match r.u32().ok()? {
            CALL => Some(Entry::Call {
                proc_: r.u32().ok()?,
                client: ip_from_bytes(r.opaque(16).ok()?)?,
                args: r.opaque(MAX_RECORD as u32).ok()?.to_vec(),
            }),
            SNAPSHOT => match PeerMsg::decode(r.opaque(MAX_RECORD as u32).ok()?).ok()? {
                PeerMsg::SyncLocks { first, records, .. } => {
                    Some(Entry::Snapshot { first, records })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The open log of one export's lock table.
pub struct LockLog {
    path: PathBuf,
    file: File,
    bytes: u64,
}

impl LockLog {
    /// Opens (or creates) the log at `path`: the log, and what it holds, in order.
    pub fn open(path: &Path) -> std::io::Result<(LockLog, Vec<Entry>)> {
        let mut data = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut data)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut entries = Vec::new();
        let mut at = 0;
        while data.len() >= at + 4 {
            let len =
                u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
            if len > MAX_RECORD || data.len() < at + 4 + len {
                break;
            }
            match Entry::decode(&data[at + 4..at + 4 + len]) {
                Some(e) => entries.push(e),
                None => break,
            }
            at += 4 + len;
        }
        if at < data.len() {
            tracing::warn!(path = %path.display(), dropped = data.len() - at, "lock log: a torn or unreadable tail dropped");
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        file.set_len(at as u64)?;
        Ok((
            LockLog {
                path: path.to_path_buf(),
                file,
                bytes: at as u64,
            },
            entries,
        ))
    }

    /// Appends one record.
    pub fn append(&mut self, e: &Entry) -> std::io::Result<()> {
        let rec = e.encode();
        self.file.write_all(&rec)?;
        self.bytes += rec.len() as u64;
        Ok(())
    }

    /// Whether the log has grown past [`MAX_LOG_BYTES`] (rewrite it as a snapshot).
    pub fn wants_compaction(&self) -> bool {
        self.bytes > MAX_LOG_BYTES
    }

    /// Replaces the log by a snapshot of the whole table (`records`): written beside it,
    /// then renamed over it.
    pub fn rewrite(&mut self, records: &[LockRecord]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("locks.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut bytes = 0u64;
        let mut chunks = records.chunks(MAX_SYNC_LOCKS as usize);
        let mut first = true;
        while let Some(chunk) = chunks.next().or(first.then_some(&[][..])) {
            let rec = Entry::Snapshot {
                first,
                records: chunk.to_vec(),
            }
            .encode();
            out.write_all(&rec)?;
            bytes += rec.len() as u64;
            first = false;
        }
        out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.bytes = bytes;
        Ok(())
    }

    /// Makes the log durable (a clean stop, before the seal).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftnfs_wire::peer::LockOwner;

    #[test]
    fn records_read_back_a_torn_tail_is_dropped_and_a_rewrite_replaces_all() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("export-1.locks");
        let call = Entry::Call {
            proc_: 2,
            client: "10.0.0.9".parse().unwrap(),
            args: vec![1, 2, 3, 4],
        };
        let held = LockRecord::Held {
            file: 5,
            owner: LockOwner {
                host: b"g".to_vec(),
                svid: 1,
                oh: vec![1],
            },
            exclusive: true,
            start: 0,
            end: u64::MAX,
        };
        let snap = Entry::Snapshot {
            first: true,
            records: vec![held.clone()],
        };
        {
            let (mut log, got) = LockLog::open(&p).unwrap();
            assert!(got.is_empty());
            log.append(&snap).unwrap();
            log.append(&call).unwrap();
        }
        // a crash in the middle of an append
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[0, 0, 0, 40, 0, 0]).unwrap();
        drop(f);
        let (mut log, got) = LockLog::open(&p).unwrap();
        assert_eq!(got, vec![snap.clone(), call.clone()]);
        log.append(&call).unwrap();
        drop(log);
        let (mut log, got) = LockLog::open(&p).unwrap();
        assert_eq!(
            got,
            vec![snap, call.clone(), call],
            "appends after the torn tail"
        );
        log.rewrite(std::slice::from_ref(&held)).unwrap();
        drop(log);
        let (_, got) = LockLog::open(&p).unwrap();
        assert_eq!(
            got,
            vec![Entry::Snapshot {
                first: true,
                records: vec![held]
            }]
        );
    }
}
