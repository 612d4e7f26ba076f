//! Resync (DESIGN.md "Recovery"; patent pp. 36–38): a member that missed updates becomes a
//! full mirror again while clients keep writing. The rules (what to send, when to hold) are
//! in `ftnfs_core::mirror::resync`; this file moves the objects.
//!
//! ```text
//!  survivor (primary)                                  rejoining member
//!   Join ─────────────────────────────────────────────▶ refuses: Want{Partial{H,F,ids}|Full}
//!   plan = ids from both change logs (or everything)
//!   SyncBegin{full} ─────────────────────────────────▶ marker file written (durably) first;
//!                                                      full: wipe mirror, identity table, log
//!   pass 1: SyncObject… (one thread, throttled) ─────▶ apply: a directory's entries are
//!            ◀──────────────────────── SyncNeed{…}     reconciled; what it lacks is asked for
//!   SyncRoundEnd ────────────────────────────────────▶ SyncRoundDone
//!   pass k+1: objects touched during pass k (log) …    (each pass shorter)
//!   last pass: writes held, nothing in flight,
//!   SyncRoundEnd{at: (H, seq)} ──────────────────────▶ "in step at (H, seq)"
//!   Join{base: seq} ─────────────────────────────────▶ accepted; marker removed
//!   writes released
//! ```
//! Objects are identified by file id everywhere (never by path), so a rename on the survivor
//! during the resync cannot make the member create an object in the wrong place: the
//! directory holding it is touched by the rename and sent again in the next pass.
//!
//! Safety: the member writes its marker before it changes anything and removes it only when
//! it joins; a member with a marker is never in step, never promotes, and asks for a full
//! copy. So a crash of either side at any moment leaves either a member that knows it is
//! incomplete, or (if the survivor died) a survivor that still has everything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ftnfs_core::handle::FileHandle;
use ftnfs_core::ids::{Epoch, ExportId, FileId, Generation, MemberId, Millis, SeqNo};
use ftnfs_core::member::settings::FailoverConfig;
use ftnfs_core::mirror::resync::{final_pass, Dirty, DirtySet, LogEntry, Plan, BLOCK};
use ftnfs_wire::nfs3::FType3;
use ftnfs_wire::peer::{
    sync_data_frame, PeerMsg, SyncEntry, SyncObj, MAX_SYNC_NEEDS, MAX_SYNC_REPLIES,
};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mknodat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use serde_json::{json, Value};

use crate::changelog::ChangeLog;
use crate::fs::{ftype_of, ExportFs, Obj};
use crate::link::Link;
use crate::local::Local;

/// File data per frame.
const CHUNK: usize = 256 * 1024;
/// Directory entries per frame.
const ENTRIES: usize = 2048;
/// Files the survivor asks the kernel to read ahead of the one it sends.
const READ_AHEAD: usize = 8;
/// Frames a resync keeps queued on the link at most (the rest waits: bounded memory).
const QUEUED: usize = 16;
/// Files a member keeps open between syncs while a pass writes them.
const MAX_UNSYNCED_FILES: usize = 512;
/// Longest the survivor waits for the member's answer at the end of a pass.
const ANSWER: Duration = Duration::from_secs(60);

/// What a resync needs of the member it runs in — implemented by `mirror::Mirror`, which
/// starts resyncs and answers for them; resync.rs sits below the mirror driver and reaches
/// it only through this (no module cycle).
pub trait Host: Send + Sync {
    /// The exports, the DRC, the clock.
    fn local(&self) -> &Local;
    /// Resync tunables.
    fn resync_settings(&self) -> &Settings;
    /// Heartbeats and silence.
    fn failover(&self) -> FailoverConfig;
    /// Records an event (bounded) and logs it.
    fn event(&self, at: Millis, export: ExportId, what: String);
    /// When anything last came from peer `m`.
    fn last_heard(&self, m: MemberId) -> Option<Millis>;
    /// The change log of `export`.
    fn log(&self, export: ExportId) -> Option<&ChangeLog>;
    /// Where seals, epochs and resync markers are kept.
    fn state_dir(&self) -> &std::path::Path;
    /// The primary side of `export` while this member leads its stream `history`.
    fn lead(&self, export: ExportId, history: u64) -> Option<Box<dyn Lead>>;
    /// The last pass into `member` is applied (writes held): asks it to join stream
    /// `history` at the current update. `true` if the Join went out.
    fn join_resynced(&self, export: ExportId, history: u64, member: MemberId, now: Millis) -> bool;
}

/// The primary side of the stream a resync copies from (`mirror::PrimarySide`).
pub trait Lead {
    /// The epoch the primary leads.
    fn epoch(&self) -> Epoch;
    /// Holds (or releases) clients' writes for the last pass into `member`.
    fn hold(&self, member: MemberId, on: bool);
    /// Updates numbered and not yet released.
    fn pending(&self) -> usize;
    /// Every update up to here is released.
    fn released(&self) -> SeqNo;
}

/// Most answers of a member (what it lacks, pass ends) queued for the resync sending to it.
/// The sender takes them before each object it sends, and a member answers an object with
/// a few at most, so a full queue is a member gone wrong: that resync is cancelled (and
/// starts again later).
pub const MAX_REPLIES_QUEUED: usize = 4096;

/// Tunables shared by every resync of this member.
pub struct Settings {
    /// Bytes per second a resync may send (0: no limit). `ftnfsctl resync --rate` sets it.
    pub rate: AtomicU64,
    /// Longest the last pass may hold clients' writes, in milliseconds.
    pub hold_ms: u64,
}

/// Progress of one resync, for `ftnfsctl status` and `ftnfsctl resync`.
pub struct Progress {
    /// The other member.
    pub member: String,
    /// A full copy.
    pub full: bool,
    /// Why full, or how many objects a partial one started with.
    pub why: String,
    /// Pass number.
    pub pass: AtomicU64,
    /// Objects sent or applied.
    pub objects: AtomicU64,
    /// File data bytes sent or applied.
    pub bytes: AtomicU64,
    /// When it started.
    pub started: Instant,
    /// Finished (either way).
    pub done: AtomicBool,
    /// How long it took, once finished.
    took: Mutex<Option<f64>>,
    /// What it is doing now.
    pub phase: Mutex<String>,
}

impl Progress {
    /// A new record.
    pub fn new(member: String, full: bool, why: String) -> Arc<Progress> {
        Arc::new(Progress {
            member,
            full,
            why,
            pass: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            done: AtomicBool::new(false),
            took: Mutex::new(None),
            phase: Mutex::new("starting".into()),
        })
    }

    /// Sets what it is doing now.
    pub fn phase(&self, p: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = p.into();
    }

    /// It ended (either way).
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
        self.took
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(self.started.elapsed().as_secs_f64());
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        let took = *self.took.lock().unwrap_or_else(|e| e.into_inner());
        let secs = took.unwrap_or_else(|| self.started.elapsed().as_secs_f64());
        let bytes = self.bytes.load(Ordering::Relaxed);
        json!({
            "member": self.member,
            "full": self.full,
            "why": self.why,
            "pass": self.pass.load(Ordering::Relaxed),
            "objects": self.objects.load(Ordering::Relaxed),
            "bytes": bytes,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "mib_per_s": if secs > 0.0 { ((bytes as f64 / 1048576.0 / secs) * 10.0).round() / 10.0 } else { 0.0 },
            "done": self.done.load(Ordering::Relaxed),
            "phase": self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}

/// What the member answers the survivor during a resync.
pub enum Reply {
    /// Objects it lacks: (directory id, name, file id).
    Need(Vec<(u64, Vec<u8>, u64)>),
    /// The end of a pass reached it.
    Done {
        /// Pass end number.
        round: u64,
        /// Applied.
        ok: bool,
        /// Why not.
        reason: String,
    },
}

// ------------------------------------------------------------------------------------------
// Markers: "this mirror is incomplete" survives any crash.

fn marker_path(dir: &Path, export: ExportId) -> PathBuf {
    dir.join(format!("export-{}.resync", export.0))
}

/// Whether a resync into this mirror was started and never finished.
pub fn has_marker(dir: &Path, export: ExportId) -> bool {
    marker_path(dir, export).exists()
}

/// Records, durably, that a resync into this mirror has started.
pub fn set_marker(dir: &Path, export: ExportId) -> std::io::Result<()> {
    let f = std::fs::File::create(marker_path(dir, export))?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// The resync is complete: the mirror is in step again.
pub fn clear_marker(dir: &Path, export: ExportId) -> std::io::Result<()> {
    match std::fs::remove_file(marker_path(dir, export)) {
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the host rebooted since this state directory was last used (its page cache, and
/// so unsynced data of the mirror and the change log, may be lost). Records the current boot.
pub fn host_rebooted(dir: &Path) -> bool {
    let now = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let p = dir.join("boot_id");
    let before = std::fs::read_to_string(&p).ok();
    if before.as_deref() != Some(now.as_str()) {
        // durably: a boot id lost with the power would make the next boot look like the
        // one before (the file found empty counts as a reboot; missing, as a fresh start)
        let write = || -> std::io::Result<()> {
            let tmp = dir.join("boot_id.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, now.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &p)?;
            std::fs::File::open(dir)?.sync_all()
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, "cannot record this boot in the state directory");
        }
    }
    before.is_some_and(|b| b != now)
}

// ------------------------------------------------------------------------------------------
// Survivor side.

enum Item {
    /// An object touched since the member's point (whole, or blocks of its data).
    Id(u64, Dirty),
    /// An object the member lacks, by where it asked for it.
    Named(u64, Vec<u8>, u64),
}

/// The primary side of stream `history` of `export`, or why a resync from it must stop.
fn primary_of(mirror: &dyn Host, export: ExportId, history: u64) -> Result<Box<dyn Lead>, String> {
    mirror
        .lead(export, history)
        .ok_or_else(|| "this member is no longer primary of the stream".into())
}

fn dirty_since(mirror: &dyn Host, export: ExportId, history: u64, since: SeqNo) -> DirtySet {
    let Some(log) = mirror.log(export) else {
        return DirtySet::default();
    };
    let mut out = DirtySet::default();
    let wanted = |e: &LogEntry| matches!(e, LogEntry::Update { history: h, seq, .. } if *h == history && *seq > since.0);
    if let Ok(entries) = log.scan(wanted, false) {
        for e in entries {
            if let LogEntry::Update {
                history: h,
                seq,
                ids,
            } = e
            {
                if h == history && seq > since.0 {
                    for t in ids {
                        out.add(t);
                    }
                }
            }
        }
    }
    out
}

/// The object with file id `id` in `ex`, whatever its generation, if it still exists.
fn locate_id(ex: &ExportFs, id: u64) -> Result<Option<Obj>, String> {
    let Some(rec) = ex.ids.get(FileId(id)).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let h = FileHandle {
        export: ex.cfg.id,
        file: FileId(id),
        gen: rec.gen,
    };
    Ok(ex.locate_named(&h).ok())
}

/// Sorts ids so that directories come before what they hold (by depth on this member).
fn by_depth(ex: &ExportFs, set: DirtySet) -> VecDeque<Item> {
    let mut v: Vec<(usize, u64, Dirty)> = set
        .0
        .into_iter()
        .filter_map(|(id, d)| {
            let p = ex.ids.path_of(FileId(id)).ok()?;
            Some((p.components().count(), id, d))
        })
        .collect();
    v.sort_unstable_by_key(|(depth, id, _)| (*depth, *id));
    v.into_iter().map(|(_, id, d)| Item::Id(id, d)).collect()
}

struct Sender<'a> {
    mirror: &'a Arc<dyn Host>,
    ex: &'a ExportFs,
    export: ExportId,
    link: Link,
    /// The member being resynced.
    member: MemberId,
    rx: Receiver<Reply>,
    progress: Arc<Progress>,
    round: u64,
    sent_bytes: u64,
    since_start: Instant,
    /// The directory of the last object asked for by name, opened (the member asks for a
    /// directory's missing entries together).
    last_dir: Option<(u64, Obj, crate::fs::DirFd)>,
    /// Items at the front of the queue whose data the kernel was asked to read ahead.
    ahead: usize,
    /// Where the time went: waiting for room on the link, waiting at pass ends.
    t_link: Duration,
    t_ends: Duration,
}

impl Sender<'_> {
    fn push(&mut self, msg: &PeerMsg) -> Result<(), String> {
        self.push_frame(msg.to_frame())
    }

    fn push_frame(&mut self, frame: Vec<u8>) -> Result<(), String> {
        let t0 = Instant::now();
        while self.link.queued() > QUEUED {
            if self.link.is_closed() {
                return Err("link to the member lost".into());
            }
            if t0.elapsed() > ANSWER {
                return Err("link to the member stalled".into());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.t_link += t0.elapsed();
        self.link
            .try_send(frame.into())
            .map_err(|_| "link to the member lost".to_string())
    }

    /// The duplicate request cache's replies, in frames of at most [`MAX_SYNC_REPLIES`].
    fn send_replies(&mut self) -> Result<(), String> {
        let replies = self.mirror.local().cached_replies();
        for chunk in replies.chunks(MAX_SYNC_REPLIES as usize) {
            self.push(&PeerMsg::SyncReplies {
                export: self.export.0,
                replies: chunk.to_vec(),
            })?;
        }
        Ok(())
    }

    /// The export's lock table (writes and lock calls are held: it stands at the pass's
    /// update), in frames of at most [`ftnfs_wire::peer::MAX_SYNC_LOCKS`] entries; the first
    /// empties the member's table.
    fn send_locks(&mut self) -> Result<(), String> {
        let records = match self.mirror.local().export(self.export) {
            Some(ex) => ex.locks.records(),
            None => return Ok(()),
        };
        let mut chunks = records.chunks(ftnfs_wire::peer::MAX_SYNC_LOCKS as usize);
        let mut first = true;
        loop {
            let chunk = chunks.next();
            if chunk.is_none() && !first {
                return Ok(());
            }
            self.push(&PeerMsg::SyncLocks {
                export: self.export.0,
                first,
                records: chunk.unwrap_or(&[]).to_vec(),
            })?;
            first = false;
        }
    }

    fn throttle(&mut self, n: usize) {
        self.sent_bytes += n as u64;
        self.progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let rate = self.mirror.resync_settings().rate.load(Ordering::Relaxed);
        if rate > 0 {
            let want = Duration::from_secs_f64(self.sent_bytes as f64 / rate as f64);
            let have = self.since_start.elapsed();
            if want > have {
                std::thread::sleep((want - have).min(Duration::from_secs(1)));
            }
        }
    }

    fn obj(&self, o: SyncObj) -> PeerMsg {
        PeerMsg::SyncObject {
            export: self.export.0,
            obj: o,
        }
    }

    /// Sends one object as it is now, named (parent, name).
    fn send(&mut self, o: &Obj, parent: u64, name: &[u8], dirty: &Dirty) -> Result<(), String> {
        let st = &o.st;
        let mut base = SyncObj {
            parent,
            name: name.to_vec(),
            id: o.id.0,
            gen: o.gen.0,
            ftype: o.ftype() as u32,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            rdev: (
                nix::sys::stat::major(st.st_rdev) as u32,
                nix::sys::stat::minor(st.st_rdev) as u32,
            ),
            atime: (st.st_atime, st.st_atime_nsec as u32),
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ..SyncObj::default()
        };
        self.progress.objects.fetch_add(1, Ordering::Relaxed);
        match o.ftype() {
            FType3::Dir => {
                let dirfd = o.open_dir().map_err(|e| format!("open dir: {e:?}"))?;
                let fd = crate::fs::reopen(&dirfd).map_err(|e| format!("open dir: {e:?}"))?;
                let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| e.to_string())?;
                let mut raw: Vec<(Vec<u8>, u64)> = Vec::new();
                for e in d.iter() {
                    let e = e.map_err(|e| e.to_string())?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        raw.push((n.to_vec(), e.ino()));
                    }
                }
                let mut chunks = raw.chunks(ENTRIES).peekable();
                if chunks.peek().is_none() {
                    base.last = true;
                    return self.push(&self.obj(base));
                }
                while let Some(c) = chunks.next() {
                    let pairs: Vec<(&[u8], u64)> =
                        c.iter().map(|(n, i)| (n.as_slice(), *i)).collect();
                    let ids = self
                        .ex
                        .identify(o.id, dirfd.as_fd(), &pairs)
                        .map_err(|e| format!("{e:?}"))?;
                    let mut piece = base.clone();
                    piece.entries = c
                        .iter()
                        .zip(ids)
                        .map(|((n, _), (id, gen))| SyncEntry {
                            name: n.clone(),
                            id: id.0,
                            gen: gen.0,
                        })
                        .collect();
                    piece.last = chunks.peek().is_none();
                    self.push(&self.obj(piece))?;
                    self.throttle(0);
                }
                Ok(())
            }
            FType3::Reg => {
                let f = o
                    .open_file(OFlag::O_RDONLY)
                    .map_err(|e| format!("open: {e:?}"))?;
                if let Dirty::Blocks(blocks) = dirty {
                    // only the blocks written since the member's point: it has the rest
                    base.partial = true;
                    for b in blocks {
                        let end = (b + 1).saturating_mul(BLOCK).min(st.st_size as u64);
                        let mut off = b.saturating_mul(BLOCK);
                        while off < end {
                            base.offset = off;
                            let max = CHUNK.min((end - off) as usize);
                            let (frame, n) =
                                sync_data_frame(self.export.0, &base, max, Some(false), |b| {
                                    f.read_at(b, off)
                                })
                                .map_err(|e| e.to_string())?;
                            self.push_frame(frame)?;
                            self.throttle(n);
                            if n < max {
                                break; // shorter than when it was stat'ed: sent again later
                            }
                            off += n as u64;
                        }
                    }
                    // the end: size and attributes as they are now
                    let st = nix::sys::stat::fstat(f.as_fd()).map_err(|e| e.to_string())?;
                    base.offset = st.st_size as u64;
                    base.size = st.st_size as u64;
                    base.mode = st.st_mode & 0o7777;
                    base.uid = st.st_uid;
                    base.gid = st.st_gid;
                    base.atime = (st.st_atime, st.st_atime_nsec as u32);
                    base.mtime = (st.st_mtime, st.st_mtime_nsec as u32);
                    base.last = true;
                    return self.push(&self.obj(base));
                }
                let mut off = 0u64;
                loop {
                    base.offset = off;
                    let (frame, n) =
                        sync_data_frame(self.export.0, &base, CHUNK, None, |b| f.read_at(b, off))
                            .map_err(|e| e.to_string())?;
                    off += n as u64;
                    self.push_frame(frame)?;
                    self.throttle(n);
                    if n < CHUNK {
                        return Ok(());
                    }
                }
            }
            FType3::Lnk => {
                base.data = readlinkat(o.dirfd.as_fd(), o.name_os())
                    .map_err(|e| e.to_string())?
                    .as_bytes()
                    .to_vec();
                base.last = true;
                self.push(&self.obj(base))
            }
            _ => {
                base.last = true;
                self.push(&self.obj(base))
            }
        }
    }

    fn send_item(&mut self, item: Item) -> Result<(), String> {
        match item {
            Item::Id(id, dirty) => {
                let Some(o) = locate_id(self.ex, id)? else {
                    return Ok(()); // gone here: its directory says so
                };
                let (parent, name) = if id == FileId::ROOT.0 {
                    (0, Vec::new())
                } else {
                    match self
                        .ex
                        .ids
                        .first_link(FileId(id))
                        .map_err(|e| e.to_string())?
                    {
                        Some((p, n)) => (p.0, n),
                        None => return Ok(()),
                    }
                };
                self.send(&o, parent, &name, &dirty)
            }
            Item::Named(parent, name, id) => {
                if self.last_dir.as_ref().is_none_or(|(p, _, _)| *p != parent) {
                    self.last_dir = None;
                    let Some(dir) = locate_id(self.ex, parent)? else {
                        return Ok(());
                    };
                    let Ok(dirfd) = dir.open_dir() else {
                        return Ok(());
                    };
                    self.last_dir = Some((parent, dir, dirfd));
                }
                let Some((_, dir, dirfd)) = &self.last_dir else {
                    return Ok(());
                };
                let Ok(o) = self.ex.child(dir, dirfd, &name) else {
                    return Ok(()); // gone since: the directory is touched, sent again
                };
                if o.id.0 != id {
                    return Ok(());
                }
                self.send(&o, parent, &name, &Dirty::Whole)
            }
        }
    }

    /// Asks the kernel to read the file named (parent, name) ahead (best effort).
    fn read_ahead(&mut self, parent: u64, name: &[u8]) {
        let dirfd = match &self.last_dir {
            Some((p, _, fd)) if *p == parent => Some(fd.clone()),
            _ => locate_id(self.ex, parent)
                .ok()
                .flatten()
                .and_then(|dir| dir.open_dir().ok()),
        };
        let Some(dirfd) = dirfd else { return };
        let Ok(fd) = openat(
            dirfd.as_fd(),
            OsStr::from_bytes(name),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        if nix::sys::stat::fstat(fd.as_fd()).is_ok_and(|st| ftype_of(&st) == FType3::Reg) {
            let _ = nix::fcntl::posix_fadvise(
                fd.as_fd(),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// One pass: every queued object, then whatever the member asks for, until a pass end
    /// finds nothing more to send. `at`: the last pass (writes held).
    fn pass(
        &mut self,
        queue: &mut VecDeque<Item>,
        at: Option<(u64, u64)>,
        deadline: Option<Instant>,
        release: &dyn Fn(),
    ) -> Result<bool, String> {
        let mut in_time = true;
        loop {
            while let Some(item) = queue.pop_front() {
                while let Ok(r) = self.rx.try_recv() {
                    self.reply(r, queue, None)?;
                }
                // the disk reads the next files while this one goes out
                self.ahead = self.ahead.saturating_sub(1);
                while self.ahead < READ_AHEAD && self.ahead < queue.len() {
                    if let Item::Named(p, n, _) = &queue[self.ahead] {
                        self.read_ahead(*p, n);
                    }
                    self.ahead += 1;
                }
                self.send_item(item)?;
                if in_time && deadline.is_some_and(|d| Instant::now() > d) {
                    // over the hold limit: let clients write again; this pass is not the last
                    in_time = false;
                    release();
                }
            }
            if at.is_some() && in_time {
                // writes are held: hand over the replies of every non-idempotent request
                // executed so far, so none runs twice if a retransmission reaches the member;
                // and the lock table as it stands now (lock calls are held too)
                self.send_replies()?;
                self.send_locks()?;
            }
            self.round += 1;
            let round = self.round;
            self.push(&PeerMsg::SyncRoundEnd {
                export: self.export.0,
                round,
                at: at.filter(|_| in_time),
            })?;
            self.progress.phase(format!("waiting for pass end {round}"));
            let t0 = Instant::now();
            let fo = self.mirror.failover();
            let beat = Duration::from_millis(fo.heartbeat_ms.max(10));
            let mut unanswered = 0u32;
            loop {
                if in_time && deadline.is_some_and(|d| Instant::now() > d) {
                    // the member's pass end outlasts the hold limit (its disk syncs what the
                    // pass wrote): let clients write again; this pass is not the last, no Join
                    // follows it. (Before, only a send checked the limit: a slow pass end held
                    // writes for as long as it took — a 5 s client stall in tests/chaos.sh that
                    // ended when the member was killed.)
                    in_time = false;
                    release();
                }
                let r = match self.rx.recv_timeout(beat) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        // A member that lost power answers nothing and its link stays open:
                        // ping it as the failure detector does everywhere else and give up
                        // after as many unanswered pings as make a member silent there
                        // (the member answers pings from its network task, also while its
                        // disk is busy with the pass end).
                        if self.link.is_closed() {
                            return Err("link to the member lost".into());
                        }
                        let now = self.mirror.local().now();
                        let heard = self.mirror.last_heard(self.member);
                        if heard.is_some_and(|h| now.since(h) <= fo.heartbeat_ms) {
                            unanswered = 0;
                        } else {
                            unanswered += 1;
                        }
                        if unanswered > fo.misses.max(1)
                            && heard.is_none_or(|h| now.since(h) > fo.silence_ms())
                        {
                            return Err(format!(
                                "the member went silent at a pass end (no answer for {} ms)",
                                heard.map(|h| now.since(h)).unwrap_or(0)
                            ));
                        }
                        let _ = self.link.try_send(PeerMsg::ping().to_frame().into());
                        if t0.elapsed() > ANSWER {
                            return Err("the member did not answer a pass end".into());
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Err("resync cancelled".into()),
                };
                if self.reply(r, queue, Some(round))? {
                    break;
                }
            }
            self.t_ends += t0.elapsed();
            if queue.is_empty() {
                return Ok(in_time);
            }
            self.progress.phase(format!(
                "pass {}",
                self.progress.pass.load(Ordering::Relaxed)
            ));
        }
    }

    /// Handles one answer; `true` when it is the end of pass `want`.
    fn reply(
        &mut self,
        r: Reply,
        queue: &mut VecDeque<Item>,
        want: Option<u64>,
    ) -> Result<bool, String> {
        match r {
            Reply::Need(n) => {
                queue.extend(n.into_iter().map(|(p, name, id)| Item::Named(p, name, id)));
                Ok(false)
            }
            Reply::Done {
                ok: false, reason, ..
            } => Err(format!("the member failed: {reason}")),
            Reply::Done { round, .. } => Ok(Some(round) == want),
        }
    }
}

/// Runs a resync of `member` (on its own thread): passes until one is short, then the last
/// one with writes held, then the member joins. `since`: the released watermark taken before
/// `plan` was made.
#[allow(clippy::too_many_arguments)]
pub fn send(
    mirror: Arc<dyn Host>,
    export: ExportId,
    history: u64,
    member: MemberId,
    link: Link,
    plan: Plan,
    since: SeqNo,
    rx: Receiver<Reply>,
    progress: Arc<Progress>,
) -> Result<String, String> {
    let ex = mirror.local().export(export).ok_or("no such export")?;
    let full = matches!(plan, Plan::Full(_));
    let mut s = Sender {
        mirror: &mirror,
        ex,
        export,
        link,
        member,
        rx,
        progress: progress.clone(),
        round: 0,
        sent_bytes: 0,
        since_start: Instant::now(),
        last_dir: None,
        ahead: 0,
        t_link: Duration::ZERO,
        t_ends: Duration::ZERO,
    };
    let epoch = primary_of(&*mirror, export, history)?.epoch();
    s.push(&PeerMsg::SyncBegin {
        export: export.0,
        epoch: epoch.0,
        full,
    })?;
    // the first pass: the plan's objects (a full copy: the root, and whatever it names)
    let (mut queue, mut initial): (VecDeque<Item>, DirtySet) = match plan {
        Plan::Full(_) => (
            [Item::Id(FileId::ROOT.0, Dirty::Whole)].into(),
            DirtySet::default(),
        ),
        Plan::Partial(set) => (VecDeque::new(), set),
    };
    let mut since = since;
    let hold_ms = mirror.resync_settings().hold_ms;
    let mut pass = 1u64;
    loop {
        let ps = primary_of(&*mirror, export, history)?;
        let touched = dirty_since(&*mirror, export, history, since);
        progress.pass.store(pass, Ordering::Relaxed);
        // a full copy's first pass is as big as the export: never with writes held
        let last =
            !(full && pass == 1) && final_pass(pass, queue.len() + initial.len() + touched.len());
        let mut held = None;
        if last {
            progress.phase(format!("pass {pass} (last: writes held)"));
            ps.hold(member, true);
            let t0 = Instant::now();
            while ps.pending() > 0 && t0.elapsed() < Duration::from_millis(hold_ms) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if ps.pending() == 0 {
                held = Some(t0);
            } else {
                ps.hold(member, false);
            }
        } else {
            progress.phase(format!("pass {pass}"));
        }
        let start = ps.released();
        // (read again: with writes held, this is everything up to `start`)
        let mut set = std::mem::take(&mut initial);
        for t in dirty_since(&*mirror, export, history, since).touched() {
            set.add(t);
        }
        queue.extend(by_depth(ex, set));
        let at = held.map(|_| (history, start.0));
        let deadline = held.map(|t| t + Duration::from_millis(hold_ms));
        let result = s.pass(&mut queue, at, deadline, &|| ps.hold(member, false));
        if let Some(t0) = held {
            let joined = match &result {
                Ok(true) => mirror.join_resynced(export, history, member, mirror.local().now()),
                _ => false,
            };
            ps.hold(member, false);
            let held_ms = t0.elapsed().as_millis();
            result?;
            if joined {
                progress.phase("done");
                return Ok(format!(
                    "{} passes, {} objects, {} MiB in {:.2} s (waited {} ms for room on the \
                     link, {} ms at pass ends); the last pass held writes for {held_ms} ms",
                    pass,
                    progress.objects.load(Ordering::Relaxed),
                    progress.bytes.load(Ordering::Relaxed) >> 20,
                    progress.started.elapsed().as_secs_f64(),
                    s.t_link.as_millis(),
                    s.t_ends.as_millis(),
                ));
            }
            mirror.event(
                mirror.local().now(),
                export,
                format!("resync: the last pass took {held_ms} ms, over the {hold_ms} ms hold limit; writes released, another pass"),
            );
        } else {
            result?;
        }
        since = start;
        pass += 1;
        if pass > 1000 {
            return Err("no end in sight after 1000 passes".into());
        }
    }
}

// ------------------------------------------------------------------------------------------
// Rejoining side.

/// A resync into this mirror, as the peer link sees it.
pub struct Incoming {
    /// Messages for the applying thread.
    pub tx: tokio::sync::mpsc::Sender<PeerMsg>,
    /// The survivor sending it.
    pub from: MemberId,
    /// After the last pass: the mirror is the survivor's at (history, seq).
    pub at: Arc<Mutex<Option<(u64, u64)>>>,
    /// Progress.
    pub progress: Arc<Progress>,
}

struct Applier<'a> {
    ex: &'a ExportFs,
    export: ExportId,
    /// The file being written: (id, file).
    file: Option<(u64, std::fs::File)>,
    /// A directory arriving in pieces: its entries so far.
    dir: Option<(u64, Vec<SyncEntry>)>,
    /// Every directory's times as sent: set again at a pass end when entries were added or
    /// removed since (`changed`).
    times: HashMap<u64, (Time, Time)>,
    changed: HashSet<u64>,
    needs: Vec<(u64, Vec<u8>, u64)>,
    out: Link,
    progress: Arc<Progress>,
    /// New objects not yet in the identity table (one commit for many): (parent, name,
    /// (inode, life), id, generation), and their ids.
    pending: Vec<crate::fs::idtable::NewRecord>,
    pending_ids: HashSet<u64>,
    /// Open directories by id (dropped whenever a directory is removed).
    dirs: std::cell::RefCell<HashMap<u64, crate::fs::DirFd>>,
    /// Blocks of a file this mirror lacks arrive: ignored (it asked for the whole file).
    skip: Option<u64>,
    /// Files written in this pass, kept open until the pass end syncs them.
    written: Vec<std::fs::File>,
}

type R<T> = Result<T, String>;
/// Seconds and nanoseconds.
type Time = (i64, u32);

fn errs<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e:?}")
}

fn ts((s, n): (i64, u32)) -> TimeSpec {
    TimeSpec::new(s, n as i64)
}

fn list(fd: &OwnedFd) -> R<Vec<Vec<u8>>> {
    let own = crate::fs::reopen(fd).map_err(|e| format!("readdir: {e:?}"))?;
    let mut d = nix::dir::Dir::from_fd(own).map_err(errs("readdir"))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(errs("readdir"))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

fn open_sub(dirfd: &OwnedFd, name: &[u8]) -> R<OwnedFd> {
    openat(
        dirfd.as_fd(),
        OsStr::from_bytes(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errs("open dir"))
}

impl Applier<'_> {
    /// Commits the new objects recorded so far.
    fn flush_records(&mut self) -> R<()> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_ids.clear();
        self.ex.ids.record_many(&batch).map_err(errs("ids"))
    }

    /// Directory `id`, opened (cached).
    fn dir_fd(&mut self, id: u64) -> R<crate::fs::DirFd> {
        if let Some(fd) = self.dirs.borrow().get(&id) {
            return Ok(fd.clone());
        }
        let dir = self
            .find_any(id)
            .ok_or_else(|| format!("directory {id} is missing"))?;
        let fd = dir.open_dir().map_err(errs("open dir"))?;
        let mut dirs = self.dirs.borrow_mut();
        if dirs.len() >= 4096 {
            dirs.clear();
        }
        dirs.insert(id, fd.clone());
        Ok(fd)
    }

    fn find(&mut self, id: u64, gen: u32) -> Option<Obj> {
        if self.pending_ids.contains(&id) {
            self.flush_records().ok()?;
        }
        self.ex
            .locate_named(&FileHandle {
                export: self.export,
                file: FileId(id),
                gen: Generation(gen),
            })
            .ok()
    }

    fn find_any(&mut self, id: u64) -> Option<Obj> {
        if self.pending_ids.contains(&id) {
            self.flush_records().ok()?;
        }
        locate_id(self.ex, id).ok().flatten()
    }

    /// Removes `name` from directory `dir` (recursively), and from the identity table when
    /// `track`.
    fn remove(&self, dirfd: &OwnedFd, dir: u64, name: &[u8], track: bool) -> R<()> {
        let os = OsStr::from_bytes(name);
        let st = match fstatat(dirfd.as_fd(), os, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(format!("stat: {e}")),
        };
        let lid = if track {
            self.ex.ids.by_ino(st.st_ino).map_err(errs("ids"))?
        } else {
            None
        };
        let is_dir = ftype_of(&st) == FType3::Dir;
        if is_dir {
            self.dirs.borrow_mut().clear();
            let sub = open_sub(dirfd, name)?;
            for n in list(&sub)? {
                self.remove(&sub, lid.map(|i| i.0).unwrap_or(0), &n, track)?;
            }
            unlinkat(dirfd.as_fd(), os, UnlinkatFlags::RemoveDir).map_err(errs("rmdir"))?;
        } else {
            unlinkat(dirfd.as_fd(), os, UnlinkatFlags::NoRemoveDir).map_err(errs("unlink"))?;
        }
        if let Some(lid) = lid {
            self.ex
                .ids
                .remove_link(lid, FileId(dir), name, is_dir || st.st_nlink <= 1)
                .map_err(errs("ids"))?;
        }
        Ok(())
    }

    /// Removes whatever object has id `id` here (another type, a stale generation).
    fn drop_id(&mut self, id: u64) -> R<()> {
        if let Some(o) = self.find_any(id) {
            let parent = self
                .ex
                .ids
                .first_link(FileId(id))
                .map_err(errs("ids"))?
                .map(|(p, _)| p.0)
                .unwrap_or(0);
            self.changed.insert(parent);
            self.remove(&o.dirfd, parent, &o.name, true)?;
        }
        if self.ex.ids.get(FileId(id)).map_err(errs("ids"))?.is_some() {
            self.ex.ids.forget(FileId(id)).map_err(errs("ids"))?;
        }
        Ok(())
    }

    /// The directory where `o` must be created, with its name cleared.
    fn place(&mut self, o: &SyncObj) -> R<crate::fs::DirFd> {
        self.changed.insert(o.parent);
        let fd = self.dir_fd(o.parent)?;
        crate::fs::check_name(&o.name).map_err(|_| "bad name".to_string())?;
        let name = OsStr::from_bytes(&o.name);
        if fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            // something else has the name: it goes, and the table must know it first
            self.flush_records()?;
            self.remove(&fd, o.parent, &o.name, true)?;
        }
        Ok(fd)
    }

    fn record(&mut self, dirfd: &OwnedFd, o: &SyncObj) -> R<()> {
        let st = fstatat(
            dirfd.as_fd(),
            OsStr::from_bytes(&o.name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errs("stat"))?;
        let life = crate::fs::life::of(dirfd.as_fd(), OsStr::from_bytes(&o.name));
        if o.ftype == FType3::Dir as u32 {
            // a directory is looked up next (its entries), so it goes in at once
            self.flush_records()?;
            self.ex
                .ids
                .record_new(
                    FileId(o.parent),
                    &o.name,
                    (st.st_ino, life),
                    Some((FileId(o.id), Generation(o.gen))),
                )
                .map_err(errs("ids"))?;
            return Ok(());
        }
        self.pending.push((
            FileId(o.parent),
            o.name.clone(),
            (st.st_ino, life),
            FileId(o.id),
            Generation(o.gen),
        ));
        self.pending_ids.insert(o.id);
        if self.pending.len() >= 512 {
            self.flush_records()?;
        }
        Ok(())
    }

    /// Owner, mode and times of the entry `name` in `dirfd`.
    fn attrs_at(&self, dirfd: &OwnedFd, name: &[u8], o: &SyncObj, mode: bool) -> R<()> {
        let os = OsStr::from_bytes(name);
        match fchownat(
            dirfd.as_fd(),
            os,
            Some(Uid::from_raw(o.uid)),
            Some(Gid::from_raw(o.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) | Err(Errno::EPERM) => {}
            Err(e) => return Err(format!("chown: {e}")),
        }
        if mode {
            nix::sys::stat::fchmodat(
                dirfd.as_fd(),
                os,
                Mode::from_bits_truncate(o.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(errs("chmod"))?;
        }
        nix::sys::stat::utimensat(
            dirfd.as_fd(),
            os,
            &ts(o.atime),
            &ts(o.mtime),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(errs("utimes"))
    }

    fn apply(&mut self, o: SyncObj) -> R<()> {
        match o.ftype {
            t if t == FType3::Dir as u32 => {
                match &mut self.dir {
                    Some((id, acc)) if *id == o.id => acc.extend(o.entries.iter().cloned()),
                    _ => self.dir = Some((o.id, o.entries.clone())),
                }
                if o.last {
                    let (_, entries) = self.dir.take().unwrap_or_default();
                    self.directory(&o, entries)?;
                    self.progress.objects.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            t if t == FType3::Reg as u32 => {
                if self.skip == Some(o.id) {
                    if o.last {
                        self.skip = None;
                    }
                    return Ok(());
                }
                if o.offset == 0 || self.file.as_ref().is_none_or(|(id, _)| *id != o.id) {
                    let f = if o.partial {
                        // some blocks only: this mirror must have the rest of the file
                        match self.find(o.id, o.gen) {
                            Some(have) if have.ftype() == FType3::Reg => {
                                have.open_file(OFlag::O_WRONLY).map_err(errs("open"))?
                            }
                            _ => {
                                self.needs.push((o.parent, o.name.clone(), o.id));
                                if !o.last {
                                    self.skip = Some(o.id);
                                }
                                return Ok(());
                            }
                        }
                    } else {
                        self.open_file(&o)?
                    };
                    self.file = Some((o.id, f));
                }
                let Some((_, f)) = &self.file else {
                    return Err("no file".into());
                };
                f.write_all_at(&o.data, o.offset).map_err(errs("write"))?;
                self.progress
                    .bytes
                    .fetch_add(o.data.len() as u64, Ordering::Relaxed);
                if o.last {
                    let (_, f) = self.file.take().ok_or("no file")?;
                    f.set_len(o.size).map_err(errs("truncate"))?;
                    match nix::unistd::fchown(
                        f.as_fd(),
                        Some(Uid::from_raw(o.uid)),
                        Some(Gid::from_raw(o.gid)),
                    ) {
                        Ok(()) | Err(Errno::EPERM) => {}
                        Err(e) => return Err(format!("chown: {e}")),
                    }
                    nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(o.mode))
                        .map_err(errs("chmod"))?;
                    nix::sys::stat::futimens(f.as_fd(), &ts(o.atime), &ts(o.mtime))
                        .map_err(errs("utimes"))?;
                    self.progress.objects.fetch_add(1, Ordering::Relaxed);
                    self.written.push(f);
                    if self.written.len() >= MAX_UNSYNCED_FILES {
                        self.sync_written()?;
                    }
                }
                Ok(())
            }
            _ => {
                self.special(&o)?;
                self.progress.objects.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Makes sure `have` (found by id) is also named (o.parent, o.name): a hard link sent
    /// under another of its names.
    fn also_named(&mut self, have: &Obj, o: &SyncObj) -> R<()> {
        if o.parent == 0 {
            return Ok(());
        }
        let fd = self.dir_fd(o.parent)?;
        let name = OsStr::from_bytes(&o.name);
        match fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_ino == have.st.st_ino => return Ok(()),
            Ok(_) => self.remove(&fd, o.parent, &o.name, true)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(format!("stat: {e}")),
        }
        crate::fs::check_name(&o.name).map_err(|_| "bad name".to_string())?;
        linkat(
            have.dirfd.as_fd(),
            have.name_os(),
            fd.as_fd(),
            name,
            AtFlags::empty(),
        )
        .map_err(errs("link"))?;
        self.changed.insert(o.parent);
        self.ex
            .ids
            .add_link(FileId(o.id), FileId(o.parent), &o.name)
            .map_err(errs("ids"))
    }

    fn open_file(&mut self, o: &SyncObj) -> R<std::fs::File> {
        if let Some(have) = self.find(o.id, o.gen) {
            if have.ftype() == FType3::Reg {
                self.also_named(&have, o)?;
                return have.open_file(OFlag::O_WRONLY).map_err(errs("open"));
            }
        }
        self.drop_id(o.id)?;
        let fd = self.place(o)?;
        let f = openat(
            fd.as_fd(),
            OsStr::from_bytes(&o.name),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(errs("create"))?;
        self.record(&fd, o)?;
        Ok(std::fs::File::from(f))
    }

    fn special(&mut self, o: &SyncObj) -> R<()> {
        let is_lnk = o.ftype == FType3::Lnk as u32;
        if let Some(have) = self.find(o.id, o.gen) {
            let same = have.ftype() as u32 == o.ftype
                && (!is_lnk
                    || readlinkat(have.dirfd.as_fd(), have.name_os())
                        .is_ok_and(|t| t.as_bytes() == o.data.as_slice()));
            if same {
                self.also_named(&have, o)?;
                return self.attrs_at(&have.dirfd, &have.name, o, !is_lnk);
            }
        }
        self.drop_id(o.id)?;
        let fd = self.place(o)?;
        let name = OsStr::from_bytes(&o.name);
        if is_lnk {
            symlinkat(OsStr::from_bytes(&o.data), fd.as_fd(), name).map_err(errs("symlink"))?;
        } else {
            let kind = match o.ftype {
                t if t == FType3::Blk as u32 => SFlag::S_IFBLK,
                t if t == FType3::Chr as u32 => SFlag::S_IFCHR,
                t if t == FType3::Sock as u32 => SFlag::S_IFSOCK,
                t if t == FType3::Fifo as u32 => SFlag::S_IFIFO,
                t => return Err(format!("unknown type {t}")),
            };
            mknodat(
                fd.as_fd(),
                name,
                kind,
                Mode::from_bits_truncate(o.mode),
                nix::sys::stat::makedev(o.rdev.0 as u64, o.rdev.1 as u64),
            )
            .map_err(errs("mknod"))?;
        }
        self.record(&fd, o)?;
        self.attrs_at(&fd, &o.name, o, !is_lnk)
    }

    /// Makes directory `o` hold exactly `entries`: removes what is not there, moves or links
    /// what this mirror has elsewhere, and asks for the rest.
    fn directory(&mut self, o: &SyncObj, entries: Vec<SyncEntry>) -> R<()> {
        // the listing below looks entries up by inode: everything recorded must be in
        self.flush_records()?;
        let dir = match self.find(o.id, o.gen) {
            Some(d) if d.is_dir() => d,
            _ => {
                self.drop_id(o.id)?;
                let fd = self.place(o)?;
                nix::sys::stat::mkdirat(
                    fd.as_fd(),
                    OsStr::from_bytes(&o.name),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(errs("mkdir"))?;
                self.record(&fd, o)?;
                self.find(o.id, o.gen).ok_or("directory vanished")?
            }
        };
        let fd = dir.open_dir().map_err(errs("open dir"))?;
        self.changed.insert(o.id);
        let wanted: HashMap<&[u8], (u64, u32)> = entries
            .iter()
            .map(|e| (e.name.as_slice(), (e.id, e.gen)))
            .collect();
        let mut present: HashSet<Vec<u8>> = HashSet::new();
        for name in list(&fd)? {
            let st: FileStat = fstatat(
                fd.as_fd(),
                OsStr::from_bytes(&name),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errs("stat"))?;
            let local = match self.ex.ids.by_ino(st.st_ino).map_err(errs("ids"))? {
                Some(id) => self
                    .ex
                    .ids
                    .get(id)
                    .map_err(errs("ids"))?
                    .map(|r| (id.0, r.gen.0)),
                None => None,
            };
            if local.is_some() && wanted.get(name.as_slice()).copied() == local {
                present.insert(name);
            } else {
                self.remove(&fd, o.id, &name, true)?;
            }
        }
        for e in &entries {
            if present.contains(&e.name) {
                continue;
            }
            crate::fs::check_name(&e.name).map_err(|_| "bad name".to_string())?;
            match self.find(e.id, e.gen) {
                Some(have) if have.is_dir() => {
                    let from = self
                        .ex
                        .ids
                        .first_link(FileId(e.id))
                        .map_err(errs("ids"))?
                        .ok_or("moved directory has no name")?;
                    self.changed.insert(from.0 .0);
                    renameat(
                        have.dirfd.as_fd(),
                        have.name_os(),
                        fd.as_fd(),
                        OsStr::from_bytes(&e.name),
                    )
                    .map_err(errs("rename"))?;
                    self.ex
                        .ids
                        .rename(FileId(e.id), (from.0, &from.1), (dir.id, &e.name), None)
                        .map_err(errs("ids"))?;
                }
                Some(have) => {
                    linkat(
                        have.dirfd.as_fd(),
                        have.name_os(),
                        fd.as_fd(),
                        OsStr::from_bytes(&e.name),
                        AtFlags::empty(),
                    )
                    .map_err(errs("link"))?;
                    self.ex
                        .ids
                        .add_link(FileId(e.id), dir.id, &e.name)
                        .map_err(errs("ids"))?;
                }
                None => self.needs.push((o.id, e.name.clone(), e.id)),
            }
        }
        match nix::unistd::fchown(
            fd.as_fd(),
            Some(Uid::from_raw(o.uid)),
            Some(Gid::from_raw(o.gid)),
        ) {
            Ok(()) | Err(Errno::EPERM) => {}
            Err(e) => return Err(format!("chown: {e}")),
        }
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(o.mode))
            .map_err(errs("chmod"))?;
        self.times.insert(o.id, (o.atime, o.mtime));
        if self.needs.len() >= MAX_SYNC_NEEDS as usize / 2 {
            self.flush_needs();
        }
        Ok(())
    }

    fn flush_needs(&mut self) {
        for c in std::mem::take(&mut self.needs).chunks(MAX_SYNC_NEEDS as usize) {
            let _ = self.out.send_blocking(
                PeerMsg::SyncNeed {
                    export: self.export.0,
                    needs: c.to_vec(),
                }
                .to_frame()
                .into(),
            );
        }
    }

    /// Makes the files written so far durable: one `syncfs` writes back everything the
    /// filesystem holds (fast on a journalled filesystem), then each file is `fsync`ed
    /// itself — cheap after the `syncfs`, and the only sync that reaches filesystems that do
    /// not honour `syncfs` (FUSE: Documentation/05-write-stability.md).
    fn sync_written(&mut self) -> R<()> {
        let _ = nix::unistd::syncfs(self.ex.root_fd());
        for f in self.written.drain(..) {
            f.sync_all().map_err(errs("fsync"))?;
        }
        Ok(())
    }

    /// At a pass end: everything this pass wrote is on the disk — files, then the
    /// directories whose entries or times it changed — before the pass is reported done.
    fn make_durable(&mut self, dirs: &[u64]) -> R<()> {
        self.sync_written()?;
        for id in dirs {
            if let Some(d) = self.find_any(*id) {
                let fd = d.open_dir().map_err(errs("open dir"))?;
                nix::unistd::fsync(fd.as_fd()).map_err(errs("fsync dir"))?;
            }
        }
        let root = self
            .ex
            .root_fd()
            .try_clone_to_owned()
            .map_err(errs("dup"))?;
        nix::unistd::fsync(root.as_fd()).map_err(errs("fsync root"))
    }

    /// At a pass end: directory times again (entries added since changed them).
    fn fix_times(&mut self) {
        for id in std::mem::take(&mut self.changed) {
            let Some((a, m)) = self.times.get(&id).copied() else {
                continue;
            };
            if let Some(d) = self.find_any(id) {
                let _ = nix::sys::stat::utimensat(
                    d.dirfd.as_fd(),
                    d.name_os(),
                    &ts(a),
                    &ts(m),
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
}

/// Empties the mirror and its identity table (a full resync starts).
fn wipe(ex: &ExportFs) -> R<()> {
    let root = ex.root_fd().try_clone_to_owned().map_err(errs("dup"))?;
    let a = Applier {
        ex,
        export: ex.cfg.id,
        file: None,
        dir: None,
        times: HashMap::new(),
        changed: HashSet::new(),
        needs: Vec::new(),
        out: Link::closed(),
        progress: Progress::new(String::new(), true, String::new()),
        pending: Vec::new(),
        pending_ids: HashSet::new(),
        dirs: Default::default(),
        skip: None,
        written: Vec::new(),
    };
    for n in list(&root)? {
        a.remove(&root, FileId::ROOT.0, &n, false)?;
    }
    ex.ids.clear().map_err(errs("ids"))
}

/// Applies a resync into this mirror (on its own thread) until the session ends.
#[allow(clippy::too_many_arguments)]
pub fn receive(
    mirror: Arc<dyn Host>,
    export: ExportId,
    full: bool,
    mut rx: tokio::sync::mpsc::Receiver<PeerMsg>,
    out: Link,
    at: Arc<Mutex<Option<(u64, u64)>>>,
    progress: Arc<Progress>,
    busy: Arc<Mutex<()>>,
) {
    let _one = busy.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ex) = mirror.local().export(export) else {
        return;
    };
    let m = &mirror;
    let done = |round: u64, ok: bool, reason: String| {
        let _ = out.send_blocking(
            PeerMsg::SyncRoundDone {
                export: export.0,
                round,
                ok,
                reason,
            }
            .to_frame()
            .into(),
        );
    };
    let mut failed: Option<String> = None;
    if let Err(e) = set_marker(m.state_dir(), export) {
        failed = Some(format!("cannot write the resync marker: {e}"));
    }
    ex.ids.set_bulk(true);
    if failed.is_none() && full {
        progress.phase("wiping the mirror");
        if let Some(log) = m.log(export) {
            log.clear();
        }
        if let Err(e) = wipe(ex) {
            failed = Some(format!("cannot empty the mirror: {e}"));
        }
    }
    progress.phase("applying");
    let mut a = Applier {
        ex,
        export,
        file: None,
        dir: None,
        times: HashMap::new(),
        changed: HashSet::new(),
        needs: Vec::new(),
        out: out.clone(),
        progress: progress.clone(),
        pending: Vec::new(),
        pending_ids: HashSet::new(),
        dirs: Default::default(),
        skip: None,
        written: Vec::new(),
    };
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            PeerMsg::SyncObject { obj, .. } => {
                *at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                if failed.is_none() {
                    // the copy writes directories behind nfs3_procs: no listing stays
                    ex.listings.forget_all();
                    let r = a.apply(obj);
                    ex.listings.forget_all();
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                }
            }
            PeerMsg::SyncReplies { replies, .. } => {
                // the survivor's replies: a retransmission reaching this member gets them
                mirror.local().adopt_replies(export, &replies, true);
            }
            PeerMsg::SyncLocks { first, records, .. } => {
                // the survivor's lock table replaces ours: a takeover from this member keeps
                // every lock and waiter
                let refused = ex.locks.restore(first, &records);
                if first {
                    // nothing of this member's own table counts any more (recovery.rs)
                    mirror.local().recovery.table_restored(export);
                }
                if refused > 0 {
                    failed.get_or_insert(format!(
                        "{refused} entries of the survivor's lock table could not be taken"
                    ));
                }
            }
            PeerMsg::SyncRoundEnd { round, at: end, .. } => {
                if let Err(e) = a.flush_records() {
                    failed.get_or_insert(e);
                }
                let dirs: Vec<u64> = a.changed.iter().copied().collect();
                a.fix_times();
                a.flush_needs();
                if let Err(e) = ex.ids.flush() {
                    failed.get_or_insert(format!("identity table: {e}"));
                }
                // What this pass wrote (file data, directories, attributes) is on the disk
                // before the pass counts: the last pass's end leads to the Join, after
                // which this member is a mirror that must survive the loss of the other
                // (Documentation/08-rejoin.md).
                if failed.is_none() {
                    if let Err(e) = a.make_durable(&dirs) {
                        failed = Some(format!("cannot sync the mirror: {e}"));
                    }
                }
                progress.pass.store(round, Ordering::Relaxed);
                if failed.is_none() {
                    if let Some(end) = end {
                        // the survivor holds writes: nothing more changes before its Join
                        *at.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
                    }
                }
                done(round, failed.is_none(), failed.clone().unwrap_or_default());
            }
            _ => {}
        }
    }
    if let Err(e) = a.flush_records() {
        failed.get_or_insert(e);
    }
    ex.ids.set_bulk(false);
    let _ = ex.ids.flush();
    progress.finish();
    if let Some(e) = failed {
        m.event(
            mirror.local().now(),
            export,
            format!("resync into this mirror failed: {e}"),
        );
    }
}
