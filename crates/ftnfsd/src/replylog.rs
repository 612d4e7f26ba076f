//! The DRC's memory across a restart (Documentation/02-drc.md): every reply of a procedure
//! that must run once (`ProcInfo::once`: the namespace updates and SETATTR) is appended to
//! `replies.log` in the state directory as it is cached, and read back into the DRC when the
//! daemon starts. A member killed after executing (or applying) such an update and restarted
//! before the client's retransmission arrives replays the reply instead of running the
//! update a second time — a MKDIR answered EXIST, an RMDIR answered NOENT
//! (tests/sim_group.rs counted ~6 % of its runs with such a second run before).
//!
//! Like the change log, records are appended with one `write` each and not synced: they
//! survive a killed process (the kernel has them); a crash of the host loses them with the
//! page cache (and the mirror's own recent state, which the boot id check turns into a full
//! copy). Two segments, `replies.log` and `replies.log.old`: when the current one passes
//! half the cap it becomes the old one, so the log stays under the cap and holds the newest
//! replies. A torn record at the end (killed mid-write) ends the reading.
//!
//! ```text
//!  record: len u32 (LE, of the rest) ‖ export u32 ‖ client opaque<16> ‖ xid u32 ‖ prog u32
//!          ‖ vers u32 ‖ proc u32 ‖ args_sum u64 ‖ reply opaque<MAX_CACHED_REPLY>     (XDR)
//!  clear:  len u32 ‖ export u32 ‖ client opaque<16> of length 0
//! ```
//!
//! A clear record (`clear`, before a resync replaces the export's mirror) drops every
//! earlier reply of that export when the log is read: they may be of updates the survivor
//! never had, and the survivor's own replies, adopted next, are logged after it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ftnfs_core::drc::DrcKey;
use ftnfs_core::ids::{ExportId, Xid};
use ftnfs_wire::peer::{ip_bytes, ip_from_bytes, MAX_CACHED_REPLY};
use ftnfs_wire::xdr::{XdrError, XdrReader, XdrWriter};

/// Default cap of both segments together.
pub const DEFAULT_CAP: u64 = 16 << 20;

/// One reply read back: its key, the export it belongs to (if any), the reply.
pub type Logged = (DrcKey, Option<ExportId>, Vec<u8>);

/// The reply log of one member.
pub struct ReplyLog {
    cur: PathBuf,
    old: PathBuf,
    cap: u64,
    inner: Mutex<(Option<File>, u64)>,
}

impl ReplyLog {
    /// Opens (or creates) the log in `dir`, at most `cap` bytes, and returns what it holds,
    /// oldest first.
    pub fn open(dir: &Path, cap: u64) -> std::io::Result<(ReplyLog, Vec<Logged>)> {
        let cur = dir.join("replies.log");
        let old = dir.join("replies.log.old");
        let mut held = Vec::new();
        for p in [&old, &cur] {
            match std::fs::read(p) {
                Ok(b) => decode_all(&b, &mut held),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&cur)?;
        let len = file.metadata()?.len();
        Ok((
            ReplyLog {
                cur,
                old,
                cap: cap.max(64 << 10),
                inner: Mutex::new((Some(file), len)),
            },
            held,
        ))
    }

    /// Appends the reply cached under `key` (of `export`'s updates, if mirrored). A reply
    /// too big to hand to another member is not logged either.
    pub fn append(&self, key: &DrcKey, export: Option<ExportId>, reply: &[u8]) {
        if reply.len() > MAX_CACHED_REPLY as usize {
            return;
        }
        self.write(&encode(key, export, reply));
    }

    /// The replies of `export` logged so far are void (a resync replaces its mirror).
    pub fn clear(&self, export: ExportId) {
        let mut w = XdrWriter::with_capacity(8);
        w.u32(export.0).opaque(&[]);
        self.write(&framed(w.into_inner()));
    }

    /// Appends one record, starting a new segment first when it would pass half the cap.
    fn write(&self, rec: &[u8]) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.1 + rec.len() as u64 > self.cap / 2 {
            // rotate: the current segment becomes the old one (the previous old is dropped)
            g.0 = None;
            if std::fs::rename(&self.cur, &self.old).is_ok() {
                g.1 = 0;
            }
            match OpenOptions::new().create(true).append(true).open(&self.cur) {
                Ok(f) => {
                    g.1 = f.metadata().map(|m| m.len()).unwrap_or(0);
                    g.0 = Some(f);
                }
                Err(e) => tracing::warn!(error = %e, "reply log: cannot reopen"),
            }
        }
        if let Some(f) = g.0.as_mut() {
            match f.write_all(rec) {
                Ok(()) => g.1 += rec.len() as u64,
                Err(e) => tracing::warn!(error = %e, "reply log: append failed"),
            }
        }
    }

    /// Bytes in both segments.
    pub fn size(&self) -> u64 {
        let old = std::fs::metadata(&self.old).map(|m| m.len()).unwrap_or(0);
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1 + old
    }
}

fn encode(key: &DrcKey, export: Option<ExportId>, reply: &[u8]) -> Vec<u8> {
    let mut w = XdrWriter::with_capacity(64 + reply.len());
    w.u32(export.map_or(0, |e| e.0));
    w.opaque(&ip_bytes(key.client));
    w.u32(key.xid.0)
        .u32(key.prog)
        .u32(key.vers)
        .u32(key.proc_)
        .u64(key.args_sum)
        .opaque(reply);
    framed(w.into_inner())
}

/// A record: its body's length (u32, little-endian), then the body.
fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut rec = Vec::with_capacity(4 + body.len());
    rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
    rec.extend_from_slice(&body);
    rec
}

/// One record read back.
enum Rec {
    Reply(Logged),
    Clear(ExportId),
}

fn decode(body: &[u8]) -> Option<Rec> {
    let mut r = XdrReader::new(body);
    let f = |r: &mut XdrReader<'_>| -> Result<Rec, XdrError> {
        let export = r.u32()?;
        let client = r.opaque(16)?.to_vec();
        if client.is_empty() {
            return Ok(Rec::Clear(ExportId(export)));
        }
        let xid = Xid(r.u32()?);
        let (prog, vers, proc_, args_sum) = (r.u32()?, r.u32()?, r.u32()?, r.u64()?);
        let reply = r.opaque(MAX_CACHED_REPLY)?.to_vec();
        let client = ip_from_bytes(&client).ok_or(XdrError::TooLong {
            len: client.len() as u32,
            max: 16,
        })?;
        let key = DrcKey {
            client,
            xid,
            prog,
            vers,
            proc_,
            args_sum,
        };
        Ok(Rec::Reply((
            key,
            (export != 0).then_some(ExportId(export)),
            reply,
        )))
    };
    f(&mut r).ok()
}

/// Adds every whole, well-formed reply of a segment to `out`, in order (a clear record drops
/// its export's earlier ones); reading stops at the first torn or malformed record.
fn decode_all(b: &[u8], out: &mut Vec<Logged>) {
    let mut at = 0usize;
    while b.len() - at >= 4 {
        let len = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
        if len > 2 * MAX_CACHED_REPLY as usize || b.len() - at - 4 < len {
            break;
        }
        match decode(&b[at + 4..at + 4 + len]) {
            Some(Rec::Reply(x)) => out.push(x),
            Some(Rec::Clear(e)) => out.retain(|(_, x, _)| *x != Some(e)),
            None => break,
        }
        at += 4 + len;
    }
}

/// Reads a whole file (for tests).
#[cfg(test)]
fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> DrcKey {
        DrcKey {
            client: "192.0.2.7".parse().unwrap(),
            xid: Xid(xid),
            prog: 100003,
            vers: 3,
            proc_: 9,
            args_sum: 0xfeed_0000 + u64::from(xid),
        }
    }

    #[test]
    fn replies_come_back_after_a_restart_and_a_torn_tail_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let (log, held) = ReplyLog::open(d.path(), DEFAULT_CAP).unwrap();
        assert!(held.is_empty());
        log.append(&key(1), Some(ExportId(4711)), b"reply one");
        log.append(&key(2), None, b"reply two");
        drop(log);
        // a record torn by a kill in the middle of its write
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join("replies.log"))
            .unwrap();
        f.write_all(&encode(&key(3), None, b"torn")[..9]).unwrap();
        let (_log, held) = ReplyLog::open(d.path(), DEFAULT_CAP).unwrap();
        assert_eq!(held.len(), 2);
        assert_eq!(
            held[0],
            (key(1), Some(ExportId(4711)), b"reply one".to_vec())
        );
        assert_eq!(held[1], (key(2), None, b"reply two".to_vec()));
    }

    #[test]
    fn a_clear_drops_the_earlier_replies_of_its_export_only() {
        let d = tempfile::tempdir().unwrap();
        let (log, _) = ReplyLog::open(d.path(), DEFAULT_CAP).unwrap();
        log.append(&key(1), Some(ExportId(1)), b"a");
        log.append(&key(2), Some(ExportId(2)), b"b");
        log.clear(ExportId(1));
        log.append(&key(3), Some(ExportId(1)), b"c");
        drop(log);
        let (_, held) = ReplyLog::open(d.path(), DEFAULT_CAP).unwrap();
        let keys: Vec<u32> = held.iter().map(|(k, _, _)| k.xid.0).collect();
        assert_eq!(keys, [2, 3]);
    }

    #[test]
    fn the_log_stays_under_its_cap_and_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let cap = 64 << 10;
        let (log, _) = ReplyLog::open(d.path(), cap).unwrap();
        let reply = vec![7u8; 1000];
        for i in 0..500 {
            log.append(&key(i), None, &reply);
        }
        assert!(log.size() <= cap, "{} > {cap}", log.size());
        drop(log);
        let (_, held) = ReplyLog::open(d.path(), cap).unwrap();
        assert_eq!(held.last().unwrap().0, key(499));
        assert!(held.len() >= 30, "{}", held.len());
        assert!(!read(&d.path().join("replies.log.old")).is_empty());
    }
}
