//! The 22 NFSv3 procedures (RFC 1813 §3.3) on the local mirror filesystem.
//!
//! Each handler returns a [`Res`]: the ok body or a status with the fail body (the attributes
//! RFC 1813 asks for even on failure). Permission decisions come from `ftnfs_core::access`;
//! the daemon runs as root, so nothing here relies on the kernel to refuse a caller.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use ftnfs_core::access::{self, AttrChange, Cred};
use ftnfs_core::dircookie;
use ftnfs_core::exports::ClientOptions;
use ftnfs_core::handle::FileHandle;
use ftnfs_core::ids::{FileId, Generation};
use ftnfs_wire::nfs3::*;
use ftnfs_wire::xdr::{XdrEncode, XdrWriter};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::errors::Fail;
use crate::fs::listing::Stamp;
use crate::fs::{check_name, is_dot, sync_dir, wcc_attr, DirFd, ExportFs, Obj};

/// Serializes WRITEs per file (striped by file id), which also makes the mtime stamping of
/// mirrored WRITEs atomic.
static STAMP_LOCKS: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];

/// Serializes the mirrored makes and removals in one directory (striped by directory id) on
/// this member, which makes their mtime stamping atomic: read-mtime, change, set-mtime
/// (`Order::Entry`, `Order::Unlink`; [`Caller::entry_change`]).
static DIR_STAMP_LOCKS: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];

/// Who is calling, from where.
pub struct Caller<'a> {
    /// All exports of this member.
    pub exports: &'a crate::fs::set::ExportSet,
    /// Client address.
    pub ip: IpAddr,
    /// Client source port (for `secure`).
    pub port: u16,
    /// Credential before squashing.
    pub cred: Cred,
    /// AUTH_NONE: act as the export's anonymous user.
    pub anonymous: bool,
    /// The current write verifier.
    pub write_verf: Verf,
    /// For an update of a mirrored export: what the primary decided. Every member then
    /// gives a new object the same identity and sets the same server times.
    pub dictate: Option<Dictation>,
}

/// The primary's decisions for one update (DESIGN.md decisions 5 and 6).
#[derive(Debug, Clone, Copy)]
pub struct Dictation {
    /// Identity of the object a CREATE/MKDIR/SYMLINK/MKNOD makes.
    pub new_id: Option<(FileId, Generation)>,
    /// The server time of the update: the mtime of what it changed (and the atime of what it
    /// creates), and what SET_TO_SERVER_TIME means.
    pub time: TimeSpec,
    /// A READ of a `HighRead` export: it sets the file's atime to the latest dictated time.
    pub atime: bool,
    /// Durable once in every live member's memory (an `InMemory` export with a live
    /// secondary): nothing is synced before the reply; the member flushes within a second
    /// (`ExportFs::flush_memory_updates`).
    pub in_memory: bool,
}

/// What a handle gives a request: the export, the object, and the caller's rights there.
struct Ctx<'a> {
    ex: &'a ExportFs,
    cred: Cred,
    opts: ClientOptions,
    /// The update is durable in the members' memory (`Dictation::in_memory`).
    in_memory: bool,
    /// The descriptor that made this call's new object (a CREATE's file), kept to sync it
    /// through after the directory's lock is released: no second open to sync it.
    made: std::cell::Cell<Option<OwnedFd>>,
}

impl Ctx<'_> {
    /// Whether this client's updates are stable before their reply: `sync` (the default).
    /// With `async` (exports(5), knfsd's meaning) nothing is synced before the reply — not
    /// the object, its directory, a FILE_SYNC write or a COMMIT, nor the identity table
    /// (flushed within seconds: `IdTable::flush_if_unsynced`): a crash of the server can
    /// lose updates the client was told were done (Documentation/05-write-stability.md).
    /// Also not for an update that counts as durable in every live member's memory
    /// (`InMemory`, `Dictation::in_memory`).
    fn stable(&self) -> bool {
        self.opts.sync && !self.in_memory
    }

    fn writable(&self) -> Result<(), Fail> {
        if self.opts.read_write {
            Ok(())
        } else {
            Err(Fail(NfsStat3::Rofs))
        }
    }
}

fn ok_or(b: bool, s: NfsStat3) -> Result<(), Fail> {
    if b {
        Ok(())
    } else {
        Err(Fail(s))
    }
}

fn deny(b: bool) -> Result<(), Fail> {
    ok_or(b, NfsStat3::Acces)
}

/// Bytes of a successful READ reply before its data: status, post_op_attr with fattr3 (84
/// bytes), count, eof.
const READ_HEAD: usize = 4 + 4 + 84 + 4 + 4;

/// post_op_attr body for fail replies.
struct Post(PostOpAttr);
impl XdrEncode for Post {
    fn encode(&self, w: &mut XdrWriter) {
        self.0.encode(w)
    }
}

impl<'a> Caller<'a> {
    /// Sets the dictated time as `o`'s mtime (and atime with `atime`), so that what the
    /// update changed reads the same on every member. Nothing without a dictation.
    fn stamp(&self, o: &Obj, atime: bool) -> Result<(), Fail> {
        if let Some(d) = self.dictate {
            let a = if atime { d.time } else { TimeSpec::UTIME_OMIT };
            utimensat(
                o.dirfd.as_fd(),
                o.name_os(),
                &a,
                &d.time,
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        Ok(())
    }

    /// A change of `dir`'s entries (`change` says whether it changed one) that, mirrored,
    /// may be applied in another order on another member than concurrent changes of other
    /// names in the same directory (the procedure table's `Order::Entry` and
    /// `Order::Unlink`): it runs under the directory's lock, and the directory's mtime
    /// becomes the latest of the dictated times — max(mtime before, this one's) — the same
    /// in any order. Unmirrored (no dictated time): just the change, the kernel's own
    /// mtime stands.
    fn entry_change<T>(
        &self,
        dir: &Obj,
        dirfd: &OwnedFd,
        change: impl FnOnce() -> Result<(T, bool), Fail>,
    ) -> Result<T, Fail> {
        self.entries_change(&[(dir, dirfd)], change)
    }

    /// [`entry_change`](Self::entry_change) of several directories at once (a RENAME's
    /// two): their locks are taken in stripe order, each directory once.
    fn entries_change<T>(
        &self,
        dirs: &[(&Obj, &OwnedFd)],
        change: impl FnOnce() -> Result<(T, bool), Fail>,
    ) -> Result<T, Fail> {
        let Some(d) = self.dictate else {
            return change().map(|(t, _)| t);
        };
        let mut dirs: Vec<(&Obj, &OwnedFd)> = dirs.to_vec();
        dirs.sort_by_key(|(o, _)| o.id.0);
        dirs.dedup_by_key(|(o, _)| o.id.0);
        let mut stripes: Vec<usize> = dirs
            .iter()
            .map(|(o, _)| (o.id.0 % DIR_STAMP_LOCKS.len() as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _g: Vec<_> = stripes
            .iter()
            .map(|i| {
                DIR_STAMP_LOCKS[*i]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            })
            .collect();
        let before = dirs
            .iter()
            .map(|(_, fd)| nix::sys::stat::fstat(fd.as_fd()))
            .collect::<Result<Vec<_>, _>>()?;
        let (t, changed) = change()?;
        if changed {
            for ((_, fd), st) in dirs.iter().zip(before) {
                let prev = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
                let latest = if prev > d.time { prev } else { d.time };
                nix::sys::stat::futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &latest)?;
            }
        }
        Ok(t)
    }

    /// What SET_TO_SERVER_TIME sets.
    fn server_time(&self) -> TimeSpec {
        self.dictate.map(|d| d.time).unwrap_or(TimeSpec::UTIME_NOW)
    }

    /// The frame of every update of one object that answers with the object's `wcc_data`
    /// (SETATTR, WRITE, COMMIT, and the directory of CREATE…RMDIR): find it, note its
    /// attributes, run `body`, read them again whatever happened; `reply` makes the success
    /// body from `body`'s result and the wcc, a failure carries the wcc alone.
    fn with_wcc<T, R>(
        &self,
        fh: &NfsFh3,
        body: impl FnOnce(&Ctx<'a>, &Obj) -> Result<T, Fail>,
        reply: impl FnOnce(&Ctx<'a>, T, WccData) -> R,
    ) -> Res<R, WccData> {
        let (c, mut o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, WccData::default()),
        };
        let before = Some(wcc_attr(&o.st));
        let r = body(&c, &o);
        let _ = o.restat();
        let wcc = WccData {
            before,
            after: Some(c.ex.attr(&o)),
        };
        match r {
            Ok(t) => Res::Ok(reply(&c, t, wcc)),
            Err(f) => Res::Fail(f.0, wcc),
        }
    }

    fn ctx(&self, fh: &NfsFh3) -> Result<(Ctx<'a>, Obj), Fail> {
        let h = FileHandle::decode(&fh.0).map_err(|_| Fail(NfsStat3::BadHandle))?;
        let ex = self.exports.get(h.export).ok_or(Fail(NfsStat3::Stale))?;
        // a reload took the export away: its handles are stale, as with knfsd
        let clients = ex.clients().ok_or(Fail(NfsStat3::Stale))?;
        let opts =
            *ftnfs_core::exports::options_for(&clients, self.ip).ok_or(Fail(NfsStat3::Acces))?;
        if opts.secure && self.port >= 1024 {
            return Err(Fail(NfsStat3::Acces));
        }
        let cred = if self.anonymous {
            Cred::anonymous(&opts.squash)
        } else {
            opts.squash.apply(self.cred.clone())
        };
        let in_memory = self.dictate.is_some_and(|d| d.in_memory);
        // an `async` client's table changes are not waited for (the flag is per call)
        crate::fs::idtable::reply_before_sync(!opts.sync || in_memory);
        let o = ex.locate(&h)?;
        Ok((
            Ctx {
                ex,
                cred,
                opts,
                in_memory,
                made: std::cell::Cell::new(None),
            },
            o,
        ))
    }

    /// Executes one procedure and appends its result body (status first) to `w`.
    pub fn execute(&self, args: Args, w: &mut XdrWriter) {
        // `ctx` marks an `async` client's call; the mark never outlives the call (this
        // thread runs other work after it)
        struct Unmark;
        impl Drop for Unmark {
            fn drop(&mut self) {
                crate::fs::idtable::reply_before_sync(false);
            }
        }
        crate::fs::idtable::reply_before_sync(false);
        let _unmark = Unmark;
        match args {
            Args::Null => {}
            Args::GetAttr(fh) => self.getattr(&fh).encode(w),
            Args::SetAttr { obj, attr, guard } => self.setattr(&obj, &attr, guard).encode(w),
            Args::Lookup(d) => self.lookup(&d).encode(w),
            Args::Access { obj, access } => self.access(&obj, access).encode(w),
            Args::ReadLink(fh) => self.readlink(&fh).encode(w),
            Args::Read {
                file,
                offset,
                count,
            } => self.read(&file, offset, count, w),
            Args::Write {
                file,
                offset,
                count,
                stable,
                data,
            } => self.write(&file, offset, count, stable, &data).encode(w),
            Args::Create { where_, how } => self.create(&where_, how).encode(w),
            Args::Mkdir { where_, attr } => self.mkdir(&where_, &attr).encode(w),
            Args::Symlink {
                where_,
                attr,
                target,
            } => self.symlink(&where_, &attr, &target).encode(w),
            Args::Mknod { where_, what } => self.mknod(&where_, what).encode(w),
            Args::Remove(d) => self.remove(&d, false).encode(w),
            Args::Rmdir(d) => self.remove(&d, true).encode(w),
            Args::Rename { from, to } => self.rename(&from, &to).encode(w),
            Args::Link { file, link } => self.link(&file, &link).encode(w),
            Args::ReadDir {
                dir, cookie, count, ..
            } => self.readdir(&dir, cookie, count, count, false).encode(w),
            Args::ReadDirPlus {
                dir,
                cookie,
                dircount,
                maxcount,
                ..
            } => self
                .readdir(&dir, cookie, dircount, maxcount, true)
                .encode(w),
            Args::FsStat(fh) => self.fsstat(&fh).encode(w),
            Args::FsInfo(fh) => self.fsinfo(&fh).encode(w),
            Args::PathConf(fh) => self.pathconf(&fh).encode(w),
            Args::Commit { file, .. } => self.commit(&file).encode(w),
        }
    }

    fn getattr(&self, fh: &NfsFh3) -> Res<Fattr3, ()> {
        match self.ctx(fh) {
            Ok((c, o)) => Res::Ok(c.ex.attr(&o)),
            Err(f) => Res::Fail(f.0, ()),
        }
    }

    fn setattr(&self, fh: &NfsFh3, a: &Sattr3, guard: Option<NfsTime3>) -> Res<WccData, WccData> {
        let body = |c: &Ctx<'a>, o: &Obj| {
            if let Some(g) = guard {
                // RFC 1813 §3.3.2: the guard compares against the object's ctime.
                ok_or(g == wcc_attr(&o.st).ctime, NfsStat3::NotSync)?;
            }
            c.writable()?;
            apply_sattr(&c.cred, o, a, true, self.server_time())?;
            if a.size.is_some() && a.mtime == SetTime::DontChange {
                self.stamp(o, false)?; // a truncate sets mtime
            }
            // stable before the reply: size, mode, owner and times alike
            if c.stable() {
                o.make_stable()?;
            }
            Ok(())
        };
        self.with_wcc(fh, body, |_, (), wcc| wcc)
    }

    fn lookup(&self, d: &DirOpArgs3) -> Res<Raw, Post> {
        let (c, dir) = match self.ctx(&d.dir) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let dir_attr = Some(c.ex.attr(&dir));
        let r = (|| -> Result<_, Fail> {
            ok_or(dir.is_dir(), NfsStat3::NotDir)?;
            deny(access::may_search(&c.cred, &dir.owner()))?;
            let o = match d.name.as_slice() {
                b"." => return Ok((dir.handle(c.ex), c.ex.attr(&dir))),
                b".." => c.ex.parent_of(&dir)?,
                name => {
                    let dirfd = dir.open_dir()?;
                    c.ex.child(&dir, &dirfd, name)?
                }
            };
            Ok((o.handle(c.ex), c.ex.attr(&o)))
        })();
        match r {
            Ok((fh, attr)) => {
                let mut w = XdrWriter::new();
                w.opaque(&fh);
                Some(attr).encode(&mut w);
                dir_attr.encode(&mut w);
                Res::Ok(Raw(w.into_inner()))
            }
            Err(f) => Res::Fail(f.0, Post(dir_attr)),
        }
    }

    fn access(&self, fh: &NfsFh3, want: u32) -> Res<Raw, Post> {
        match self.ctx(fh) {
            Ok((c, o)) => {
                let granted = access::access_mask(&c.cred, &o.owner(), want, !c.opts.read_write);
                let mut w = XdrWriter::new();
                Some(c.ex.attr(&o)).encode(&mut w);
                w.u32(granted);
                Res::Ok(Raw(w.into_inner()))
            }
            Err(f) => Res::Fail(f.0, Post(None)),
        }
    }

    fn readlink(&self, fh: &NfsFh3) -> Res<Raw, Post> {
        use std::os::unix::ffi::OsStrExt;
        let (c, o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let attr = Some(c.ex.attr(&o));
        if o.ftype() != FType3::Lnk {
            return Res::Fail(NfsStat3::Inval, Post(attr));
        }
        match nix::fcntl::readlinkat(o.dirfd.as_fd(), o.name_os()) {
            Ok(t) => {
                let mut w = XdrWriter::new();
                attr.encode(&mut w);
                w.opaque(t.as_bytes());
                Res::Ok(Raw(w.into_inner()))
            }
            Err(e) => Res::Fail(Fail::from(e).0, Post(attr)),
        }
    }

    /// READ, encoded straight into `w`: the data is read in place into the reply buffer
    /// (status, attributes, count and eof have a fixed size and are patched in afterwards).
    fn read(&self, fh: &NfsFh3, offset: u64, count: u32, w: &mut XdrWriter) {
        let (c, mut o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::<Raw, Post>::Fail(f.0, Post(None)).encode(w),
        };
        let start = w.len();
        let r = (|| -> Result<usize, Fail> {
            deny(access::may_read(&c.cred, &o.owner()))?;
            let f = o.open_file(OFlag::O_RDONLY)?;
            // HighRead: atime = max(atime before, dictated time), the same on every member
            // whatever order reads of disjoint blocks were applied in (cf. WRITE's mtime).
            let stamp = self.dictate.filter(|d| d.atime).map(|d| {
                let g = STAMP_LOCKS[(o.id.0 % STAMP_LOCKS.len() as u64) as usize]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                (g, d.time, nix::sys::stat::fstat(f.as_fd()))
            });
            w.zeros(READ_HEAD);
            let fd = f.as_raw_fd();
            let fill = |room: *mut u8, max: usize| {
                let mut n = 0;
                while n < max {
                    let at = offset.saturating_add(n as u64).min(i64::MAX as u64) as libc::off_t;
                    // SAFETY: `room` points to `max` writable bytes (opaque_fill_raw), so
                    // `room + n` has `max - n` of them; pread writes at most that many into
                    // them and reads none, and `f` keeps the descriptor open meanwhile.
                    let k = unsafe { libc::pread(fd, room.add(n).cast(), max - n, at) };
                    match k {
                        0 => break,
                        k if k > 0 => n += k as usize,
                        _ => {
                            let e = std::io::Error::last_os_error();
                            if e.kind() != std::io::ErrorKind::Interrupted {
                                return Err(Fail::from(e));
                            }
                        }
                    }
                }
                Ok(n)
            };
            // SAFETY: `fill` reports only the bytes pread wrote, from the start of the room
            // (each call continues where the previous one ended), and reads none of them.
            unsafe { w.opaque_fill_raw(count.min(MAX_IO) as usize, fill) }.and_then(|n| {
                if let Some((_g, t, before)) = stamp {
                    let st = before?;
                    let prev = TimeSpec::new(st.st_atime, st.st_atime_nsec);
                    let a = if prev > t { prev } else { t };
                    nix::sys::stat::futimens(f.as_fd(), &a, &TimeSpec::UTIME_OMIT)?;
                }
                Ok(n)
            })
        })();
        let _ = o.restat();
        let attr = Some(c.ex.attr(&o));
        match r {
            Ok(n) => {
                let eof = offset.saturating_add(n as u64) >= o.st.st_size as u64;
                let mut head = XdrWriter::with_capacity(READ_HEAD);
                head.u32(NfsStat3::Ok as u32);
                attr.encode(&mut head);
                head.u32(n as u32).bool(eof);
                debug_assert_eq!(head.len(), READ_HEAD);
                w.patch(start, head.as_slice());
            }
            Err(f) => {
                w.truncate(start);
                Res::<Raw, Post>::Fail(f.0, Post(attr)).encode(w)
            }
        }
    }

    fn write(
        &self,
        fh: &NfsFh3,
        offset: u64,
        count: u32,
        stable: StableHow,
        data: &[u8],
    ) -> Res<Raw, WccData> {
        let body = |c: &Ctx<'a>, o: &Obj| {
            c.writable()?;
            ok_or(count as usize <= data.len(), NfsStat3::Inval)?;
            deny(access::may_write(&c.cred, &o.owner()))?;
            let f = o.open_file(OFlag::O_WRONLY)?;
            // One writer per file at a time: concurrent buffered writes to one file only
            // spin on the inode lock in the kernel (a quarter of the CPU of a 4-stream
            // write, measured); sleeping here is cheaper.
            let _g = STAMP_LOCKS[(o.id.0 % STAMP_LOCKS.len() as u64) as usize]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match self.dictate {
                None => f.write_all_at(&data[..count as usize], offset)?,
                Some(d) => {
                    // Writes to disjoint blocks of one file may be applied in different
                    // orders on different members (the procedure table's `Order::Blocks`): the mtime they
                    // leave is the latest of their dictated times, the same in any order.
                    // The lock makes read-mtime, write, set-mtime atomic per file.
                    let st = nix::sys::stat::fstat(f.as_fd())?;
                    f.write_all_at(&data[..count as usize], offset)?;
                    let prev = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
                    let t = if prev > d.time { prev } else { d.time };
                    nix::sys::stat::futimens(f.as_fd(), &TimeSpec::UTIME_OMIT, &t)?;
                }
            }
            // A write by someone other than root drops set-id bits, as the kernel would do
            // for that caller (we write with root's CAP_FSETID).
            let mode = o.st.st_mode & 0o7777;
            let kill = access::S_ISUID
                | if mode & 0o010 != 0 {
                    access::S_ISGID
                } else {
                    0
                };
            if !c.cred.is_root() && mode & kill != 0 {
                nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(mode & !kill))?;
            }
            // Honest stability (RFC 1813 §3.3.7): what we report is what is on disk.
            match stable {
                StableHow::Unstable => {}
                _ if !c.stable() => {}
                StableHow::DataSync => f.sync_data()?,
                StableHow::FileSync => f.sync_all()?,
            }
            Ok(stable)
        };
        self.with_wcc(fh, body, |_, committed, wcc| {
            let mut w = XdrWriter::new();
            wcc.encode(&mut w);
            w.u32(count).u32(committed as u32).fixed(&self.write_verf);
            Raw(w.into_inner())
        })
    }

    /// The common frame of CREATE, MKDIR, SYMLINK, MKNOD: checks, then `make` creates the
    /// object under the directory and returns it and whether it is new (an UNCHECKED or
    /// retried EXCLUSIVE CREATE may return an existing file); replies with handle,
    /// attributes and wcc.
    fn create_in(
        &self,
        d: &DirOpArgs3,
        make: impl FnOnce(&Ctx<'_>, &Obj, &DirFd, &std::ffi::OsStr) -> Result<(Obj, bool), Fail>,
    ) -> Res<Raw, WccData> {
        let body = |c: &Ctx<'a>, dir: &Obj| {
            ok_or(dir.is_dir(), NfsStat3::NotDir)?;
            c.writable()?;
            if is_dot(&d.name) {
                return Err(Fail(NfsStat3::Exist));
            }
            let _changing = c.ex.listings.changing(dir.id);
            let name = check_name(&d.name)?;
            deny(access::may_modify_dir(&c.cred, &dir.owner()))?;
            let dirfd = dir.open_dir()?;
            // the identity table's log syncs while the object and its entry do
            let logged = c.ex.ids.defer_log_sync();
            let o = self.entry_change(dir, &dirfd, || make(c, dir, &dirfd, name))?;
            // the new object and its entry are stable before the reply
            if c.stable() {
                match c.made.take() {
                    Some(fd) => nix::unistd::fsync(fd.as_fd())?,
                    None => o.make_stable()?,
                }
                sync_dir(&dirfd)?;
            }
            logged.finish()?;
            Ok(o)
        };
        self.with_wcc(&d.dir, body, |c, o, wcc| {
            let mut w = XdrWriter::new();
            Some(NfsFh3(o.handle(c.ex))).encode(&mut w);
            Some(c.ex.attr(&o)).encode(&mut w);
            wcc.encode(&mut w);
            Raw(w.into_inner())
        })
    }

    fn create(&self, d: &DirOpArgs3, how: CreateHow3) -> Res<Raw, WccData> {
        self.create_in(d, |c, dir, dirfd, name| {
            let (attr, excl, verf) = match how {
                CreateHow3::Unchecked(a) => (a, false, None),
                CreateHow3::Guarded(a) => (a, true, None),
                CreateHow3::Exclusive(v) => (Sattr3::default(), true, Some(v)),
            };
            let mode = match verf {
                Some(_) => 0o600,
                None => attr.mode.unwrap_or(0o644) & 0o7777,
            };
            let mut flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            if excl {
                flags |= OFlag::O_EXCL;
            }
            // Find out whether we create or reuse, to apply the right permission rules.
            let existing = fstatat(dirfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
            if let Some(st) = existing {
                if let Some(v) = verf {
                    // RFC 1813 §3.3.8: a retried EXCLUSIVE create with the same verifier
                    // succeeds with the file it created (verifier kept in atime/mtime).
                    let o = c.ex.child(dir, dirfd, name_bytes(name))?;
                    if crate::fs::ftype_of(&st) == FType3::Reg && st_verf(&st) == v {
                        return Ok((o, false));
                    }
                    return Err(Fail(NfsStat3::Exist));
                }
                if excl {
                    return Err(Fail(NfsStat3::Exist));
                }
                let o = c.ex.child(dir, dirfd, name_bytes(name))?;
                if o.ftype() != FType3::Reg {
                    return Err(Fail(NfsStat3::Exist));
                }
                // UNCHECKED on an existing file: only the size of sattr3 is applied (as knfsd).
                if attr.size.is_some() {
                    let only_size = Sattr3 {
                        size: attr.size,
                        ..Sattr3::default()
                    };
                    apply_sattr(&c.cred, &o, &only_size, true, self.server_time())?;
                    self.stamp(&o, false)?;
                }
                return Ok((o, false));
            }
            let fd = openat(dirfd.as_fd(), name, flags, Mode::from_bits_truncate(mode))?;
            let (uid, gid, _) = access::new_owner(&c.cred, &dir.owner());
            nix::unistd::fchown(
                fd.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )?;
            if let Some(v) = verf {
                let a = TimeSpec::new(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as i64, 0);
                let m = TimeSpec::new(u32::from_be_bytes([v[4], v[5], v[6], v[7]]) as i64, 0);
                nix::sys::stat::futimens(fd.as_fd(), &a, &m)?;
            }
            let o = self.record(c, dir, dirfd, name)?;
            let rest = Sattr3 {
                mode: None,
                uid: None,
                gid: None,
                ..attr
            };
            if verf.is_none() && rest != Sattr3::default() {
                apply_sattr(&c.cred, &o, &rest, false, self.server_time())?;
            }
            if verf.is_none() && !client_times(&rest) {
                self.stamp(&o, true)?;
            }
            let mut o = o;
            o.restat()?;
            // every change to the new file is made: it is synced through the descriptor
            // that made it (make_stable would open it again by name), after the directory's
            // stamp lock is released (a sync under it would serialize the makes of one
            // directory on a mirror)
            c.made.set(Some(fd));
            Ok((o, true))
        })
    }

    /// Gives a just-created name its identity and returns it.
    fn record(
        &self,
        c: &Ctx<'_>,
        dir: &Obj,
        dirfd: &DirFd,
        name: &std::ffi::OsStr,
    ) -> Result<Obj, Fail> {
        let st = fstatat(dirfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let dictated = self.dictate.and_then(|d| d.new_id);
        let (id, gen) = c.ex.ids.record_new(
            dir.id,
            name_bytes(name),
            (st.st_ino, crate::fs::life::of(dirfd.as_fd(), name)),
            dictated,
        )?;
        Ok(Obj {
            id,
            gen,
            dirfd: dirfd.clone(),
            name: name_bytes(name).to_vec(),
            st,
        })
    }

    /// Owner, then remaining attributes, of a new non-regular object.
    fn settle_new(
        &self,
        c: &Ctx<'_>,
        dir: &Obj,
        dirfd: &DirFd,
        name: &std::ffi::OsStr,
        attr: &Sattr3,
        keep_sgid: bool,
    ) -> Result<(Obj, bool), Fail> {
        let (uid, gid, inherit) = access::new_owner(&c.cred, &dir.owner());
        fchownat(
            dirfd.as_fd(),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let mut o = self.record(c, dir, dirfd, name)?;
        let mut rest = Sattr3 {
            uid: None,
            gid: None,
            ..*attr
        };
        if let Some(m) = rest.mode.as_mut() {
            if keep_sgid && inherit {
                *m |= access::S_ISGID;
            }
        }
        if rest != Sattr3::default() && o.ftype() != FType3::Lnk {
            apply_sattr(&c.cred, &o, &rest, false, self.server_time())?;
        }
        if !client_times(&rest) || o.ftype() == FType3::Lnk {
            self.stamp(&o, true)?;
        }
        o.restat()?;
        Ok((o, true))
    }

    fn mkdir(&self, d: &DirOpArgs3, attr: &Sattr3) -> Res<Raw, WccData> {
        self.create_in(d, |c, dir, dirfd, name| {
            let mode = attr.mode.unwrap_or(0o755) & 0o7777;
            mkdirat(dirfd.as_fd(), name, Mode::from_bits_truncate(mode))?;
            self.settle_new(c, dir, dirfd, name, attr, true)
        })
    }

    fn symlink(&self, d: &DirOpArgs3, attr: &Sattr3, target: &[u8]) -> Res<Raw, WccData> {
        self.create_in(d, |c, dir, dirfd, name| {
            if target.is_empty() || target.contains(&0) {
                return Err(Fail(NfsStat3::Inval));
            }
            use std::os::unix::ffi::OsStrExt;
            let t = std::ffi::OsStr::from_bytes(target);
            symlinkat(t, dirfd.as_fd(), name)?;
            self.settle_new(c, dir, dirfd, name, attr, false)
        })
    }

    fn mknod(&self, d: &DirOpArgs3, what: MknodData3) -> Res<Raw, WccData> {
        self.create_in(d, |c, dir, dirfd, name| {
            let (kind, attr, dev) = match what {
                MknodData3::Device { ftype, attr, spec } => {
                    // Device nodes are root's business (mknod(2) needs CAP_MKNOD).
                    if !c.cred.is_root() {
                        return Err(Fail(NfsStat3::Perm));
                    }
                    let k = if ftype == FType3::Chr {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    (
                        k,
                        attr,
                        nix::sys::stat::makedev(spec.0 as u64, spec.1 as u64),
                    )
                }
                MknodData3::Special { ftype, attr } => {
                    let k = if ftype == FType3::Fifo {
                        SFlag::S_IFIFO
                    } else {
                        SFlag::S_IFSOCK
                    };
                    (k, attr, 0)
                }
                MknodData3::Other(_) => return Err(Fail(NfsStat3::BadType)),
            };
            let mode = attr.mode.unwrap_or(0o644) & 0o7777;
            mknodat(
                dirfd.as_fd(),
                name,
                kind,
                Mode::from_bits_truncate(mode),
                dev,
            )?;
            self.settle_new(c, dir, dirfd, name, &attr, false)
        })
    }

    fn remove(&self, d: &DirOpArgs3, rmdir: bool) -> Res<WccData, WccData> {
        let body = |c: &Ctx<'a>, dir: &Obj| {
            ok_or(dir.is_dir(), NfsStat3::NotDir)?;
            c.writable()?;
            let _changing = c.ex.listings.changing(dir.id);
            match d.name.as_slice() {
                b"." => return Err(Fail(NfsStat3::Inval)),
                b".." => return Err(Fail(NfsStat3::Exist)),
                _ => {}
            }
            check_name(&d.name)?;
            let dirfd = dir.open_dir()?;
            self.entry_change(dir, &dirfd, || {
                let victim = c.ex.child(dir, &dirfd, &d.name)?;
                access::may_delete(&c.cred, &dir.owner(), &victim.owner())?;
                if rmdir {
                    ok_or(victim.is_dir(), NfsStat3::NotDir)?;
                    unlinkat(dirfd.as_fd(), victim.name_os(), UnlinkatFlags::RemoveDir)?;
                } else {
                    ok_or(!victim.is_dir(), NfsStat3::IsDir)?;
                    unlinkat(dirfd.as_fd(), victim.name_os(), UnlinkatFlags::NoRemoveDir)?;
                }
                let last = victim.is_dir() || victim.st.st_nlink <= 1;
                c.ex.ids.remove_link(victim.id, dir.id, &d.name, last)?;
                if rmdir {
                    c.ex.dir_gone(victim.id);
                }
                Ok(((), true))
            })?;
            if c.stable() {
                sync_dir(&dirfd)?;
            }
            Ok(())
        };
        self.with_wcc(&d.dir, body, |_, (), wcc| wcc)
    }

    fn rename(&self, from: &DirOpArgs3, to: &DirOpArgs3) -> Res<TwoWcc, TwoWcc> {
        let (c, mut fdir) = match self.ctx(&from.dir) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, TwoWcc::default()),
        };
        let (c2, mut tdir) = match self.ctx(&to.dir) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, TwoWcc::default()),
        };
        let fbefore = Some(wcc_attr(&fdir.st));
        let tbefore = Some(wcc_attr(&tdir.st));
        let r = (|| -> Result<_, Fail> {
            if c.ex.cfg.id != c2.ex.cfg.id {
                return Err(Fail(NfsStat3::Xdev));
            }
            ok_or(fdir.is_dir() && tdir.is_dir(), NfsStat3::NotDir)?;
            c.writable()?;
            if is_dot(&from.name) || is_dot(&to.name) {
                return Err(Fail(NfsStat3::Inval));
            }
            check_name(&from.name)?;
            check_name(&to.name)?;
            let _changing = (
                c.ex.listings.changing(fdir.id),
                c.ex.listings.changing(tdir.id),
            );
            let ffd = fdir.open_dir()?;
            let tfd = tdir.open_dir()?;
            // the identity table's log syncs while the directories do
            let logged = c.ex.ids.defer_log_sync();
            // mirrored renames of files may be applied in other orders than other changes
            // of the same directories (`Order::Rename`): their mtimes commute
            self.entries_change(&[(&fdir, &ffd), (&tdir, &tfd)], || {
                let src = c.ex.child(&fdir, &ffd, &from.name)?;
                access::may_delete(&c.cred, &fdir.owner(), &src.owner())?;
                deny(access::may_modify_dir(&c.cred, &tdir.owner()))?;
                if src.is_dir() && fdir.id != tdir.id {
                    // its ".." changes: needs write permission on the directory itself
                    deny(access::permits(&c.cred, &src.owner(), access::W))?;
                }
                let target = match fstatat(
                    tfd.as_fd(),
                    to.name.as_slice(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(_) => Some(c.ex.child(&tdir, &tfd, &to.name)?),
                    Err(Errno::ENOENT) => None,
                    Err(e) => return Err(e.into()),
                };
                if let Some(t) = &target {
                    if t.st.st_ino == src.st.st_ino {
                        // two names of one file: rename(2) does nothing
                        return Ok(((), false));
                    }
                    access::may_delete(&c.cred, &tdir.owner(), &t.owner())?;
                }
                renameat(ffd.as_fd(), src.name_os(), tfd.as_fd(), to.name.as_slice())?;
                if let Some(t) = target.as_ref().filter(|t| t.is_dir()) {
                    c.ex.dir_gone(t.id);
                }
                let replaced = target.map(|t| (t.id, t.is_dir() || t.st.st_nlink <= 1));
                c.ex.ids
                    .rename(src.id, (fdir.id, &from.name), (tdir.id, &to.name), replaced)?;
                Ok(((), true))
            })?;
            if tdir.id != fdir.id && c.stable() {
                sync_dir(&tfd)?;
            }
            if c.stable() {
                sync_dir(&ffd)?;
            }
            logged.finish()?;
            Ok(())
        })();
        let _ = fdir.restat();
        let _ = tdir.restat();
        let w = TwoWcc(
            WccData {
                before: fbefore,
                after: Some(c.ex.attr(&fdir)),
            },
            WccData {
                before: tbefore,
                after: Some(c.ex.attr(&tdir)),
            },
        );
        match r {
            Ok(()) => Res::Ok(w),
            Err(f) => Res::Fail(f.0, w),
        }
    }

    fn link(&self, file: &NfsFh3, link: &DirOpArgs3) -> Res<LinkRes, LinkRes> {
        let (c, mut o) = match self.ctx(file) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, LinkRes::default()),
        };
        let (c2, mut dir) = match self.ctx(&link.dir) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, LinkRes(Some(c.ex.attr(&o)), WccData::default())),
        };
        let before = Some(wcc_attr(&dir.st));
        let r = (|| -> Result<_, Fail> {
            if c.ex.cfg.id != c2.ex.cfg.id {
                return Err(Fail(NfsStat3::Xdev));
            }
            ok_or(dir.is_dir(), NfsStat3::NotDir)?;
            ok_or(!o.is_dir(), NfsStat3::IsDir)?;
            c.writable()?;
            if is_dot(&link.name) {
                return Err(Fail(NfsStat3::Exist));
            }
            let name = check_name(&link.name)?;
            deny(access::may_modify_dir(&c2.cred, &dir.owner()))?;
            let _changing = c.ex.listings.changing(dir.id);
            let dirfd = dir.open_dir()?;
            // the identity table's log syncs while the object and the directory do
            let logged = c.ex.ids.defer_log_sync();
            // mirrored: ordered by its entry and its object only (`Order::Link`), so the
            // directory's mtime must commute with other changes of it
            self.entry_change(&dir, &dirfd, || {
                linkat(
                    o.dirfd.as_fd(),
                    o.name_os(),
                    dirfd.as_fd(),
                    name,
                    AtFlags::empty(),
                )?;
                c.ex.ids.add_link(o.id, dir.id, &link.name)?;
                Ok(((), true))
            })?;
            // the new entry, and the object's link count
            if c.stable() {
                o.make_stable()?;
                sync_dir(&dirfd)?;
            }
            logged.finish()?;
            Ok(())
        })();
        let _ = o.restat();
        let _ = dir.restat();
        let body = LinkRes(
            Some(c.ex.attr(&o)),
            WccData {
                before,
                after: Some(c.ex.attr(&dir)),
            },
        );
        match r {
            Ok(()) => Res::Ok(body),
            Err(f) => Res::Fail(f.0, body),
        }
    }

    fn readdir(
        &self,
        fh: &NfsFh3,
        cookie: u64,
        dircount: u32,
        maxcount: u32,
        plus: bool,
    ) -> Res<Raw, Post> {
        let (c, dir) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let dir_attr = Some(c.ex.attr(&dir));
        let r = (|| -> Result<_, Fail> {
            ok_or(dir.is_dir(), NfsStat3::NotDir)?;
            deny(access::may_read(&c.cred, &dir.owner()))?;
            let dirfd = dir.open_dir()?;
            list_dir(c.ex, &dir, &dirfd, cookie, dircount, maxcount, plus)
        })();
        match r {
            Ok((entries, eof)) => {
                let mut w = XdrWriter::new();
                dir_attr.encode(&mut w);
                w.fixed(&[0u8; VERF_SIZE]);
                w.fixed(&entries);
                w.bool(false).bool(eof);
                Res::Ok(Raw(w.into_inner()))
            }
            Err(f) => Res::Fail(f.0, Post(dir_attr)),
        }
    }

    fn fsstat(&self, fh: &NfsFh3) -> Res<Raw, Post> {
        let (c, o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let attr = Some(c.ex.attr(&o));
        match nix::sys::statvfs::fstatvfs(c.ex.root_fd()) {
            Ok(s) => {
                let fr = s.fragment_size();
                let mut w = XdrWriter::new();
                attr.encode(&mut w);
                w.u64(s.blocks() * fr)
                    .u64(s.blocks_free() * fr)
                    .u64(s.blocks_available() * fr)
                    .u64(s.files())
                    .u64(s.files_free())
                    .u64(s.files_available())
                    .u32(0);
                Res::Ok(Raw(w.into_inner()))
            }
            Err(e) => Res::Fail(Fail::from(e).0, Post(attr)),
        }
    }

    fn fsinfo(&self, fh: &NfsFh3) -> Res<Raw, Post> {
        let (c, o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let bits = nix::unistd::fpathconf(c.ex.root_fd(), nix::unistd::PathconfVar::FILESIZEBITS)
            .ok()
            .flatten()
            .unwrap_or(64)
            .clamp(32, 64) as u32;
        let maxfilesize = if bits >= 64 {
            i64::MAX as u64
        } else {
            (1u64 << (bits - 1)) - 1
        };
        let mut w = XdrWriter::new();
        Some(c.ex.attr(&o)).encode(&mut w);
        w.u32(MAX_IO)
            .u32(MAX_IO)
            .u32(4096)
            .u32(MAX_IO)
            .u32(MAX_IO)
            .u32(4096)
            .u32(64 * 1024)
            .u64(maxfilesize)
            .u32(0)
            .u32(1)
            .u32(fsf::LINK | fsf::SYMLINK | fsf::HOMOGENEOUS | fsf::CANSETTIME);
        Res::Ok(Raw(w.into_inner()))
    }

    fn pathconf(&self, fh: &NfsFh3) -> Res<Raw, Post> {
        use nix::unistd::{fpathconf, PathconfVar};
        let (c, o) = match self.ctx(fh) {
            Ok(x) => x,
            Err(f) => return Res::Fail(f.0, Post(None)),
        };
        let get = |v, d: i64| fpathconf(c.ex.root_fd(), v).ok().flatten().unwrap_or(d);
        let mut w = XdrWriter::new();
        Some(c.ex.attr(&o)).encode(&mut w);
        w.u32(get(PathconfVar::LINK_MAX, 1).clamp(1, u32::MAX as i64) as u32)
            .u32(get(PathconfVar::NAME_MAX, 255).clamp(1, 255) as u32)
            .bool(true) // no_trunc
            .bool(true) // chown_restricted
            .bool(false) // case_insensitive
            .bool(true); // case_preserving
        Res::Ok(Raw(w.into_inner()))
    }

    fn commit(&self, fh: &NfsFh3) -> Res<Raw, WccData> {
        let body = |c: &Ctx<'a>, o: &Obj| {
            if c.stable() {
                o.open_file(OFlag::O_RDONLY)?.sync_all()?;
            }
            Ok(())
        };
        self.with_wcc(fh, body, |_, (), wcc| {
            let mut w = XdrWriter::new();
            wcc.encode(&mut w);
            w.fixed(&self.write_verf);
            Raw(w.into_inner())
        })
    }
}

/// RENAME's two wcc_data.
#[derive(Default)]
pub struct TwoWcc(WccData, WccData);
impl XdrEncode for TwoWcc {
    fn encode(&self, w: &mut XdrWriter) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

/// LINK's file attributes and directory wcc.
#[derive(Default)]
pub struct LinkRes(PostOpAttr, WccData);
impl XdrEncode for LinkRes {
    fn encode(&self, w: &mut XdrWriter) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

fn name_bytes(n: &std::ffi::OsStr) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    n.as_bytes()
}

fn st_verf(st: &nix::sys::stat::FileStat) -> Verf {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&(st.st_atime as u32).to_be_bytes());
    v[4..].copy_from_slice(&(st.st_mtime as u32).to_be_bytes());
    v
}

/// Whether a sattr3 sets a time itself (then the new object keeps it).
fn client_times(a: &Sattr3) -> bool {
    a.atime != SetTime::DontChange || a.mtime != SetTime::DontChange
}

fn timespec(t: SetTime, server_time: TimeSpec) -> TimeSpec {
    match t {
        SetTime::DontChange => TimeSpec::UTIME_OMIT,
        SetTime::ServerTime => server_time,
        SetTime::ClientTime(t) => {
            TimeSpec::new(t.seconds as i64, t.nseconds.min(999_999_999) as i64)
        }
    }
}

/// Applies a sattr3 to an object: owner first (it clears set-id bits), then mode, size and
/// times. `check` runs the permission rules (false for the creator setting up a new object).
fn apply_sattr(
    cred: &Cred,
    o: &Obj,
    a: &Sattr3,
    check: bool,
    server_time: TimeSpec,
) -> Result<(), Fail> {
    let owner = o.owner();
    if check {
        let ch = AttrChange {
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size.is_some(),
            client_time: matches!(a.atime, SetTime::ClientTime(_))
                || matches!(a.mtime, SetTime::ClientTime(_)),
            server_time: a.atime == SetTime::ServerTime || a.mtime == SetTime::ServerTime,
        };
        access::may_setattr(cred, &owner, &ch)?;
    }
    if a.uid.is_some() || a.gid.is_some() {
        fchownat(
            o.dirfd.as_fd(),
            o.name_os(),
            a.uid.map(Uid::from_raw),
            a.gid.map(Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    if let Some(m) = a.mode {
        if o.ftype() != FType3::Lnk {
            let m = access::effective_chmod(cred, &owner, m);
            fchmodat(
                o.dirfd.as_fd(),
                o.name_os(),
                Mode::from_bits_truncate(m),
                FchmodatFlags::NoFollowSymlink,
            )?;
        }
    }
    if let Some(size) = a.size {
        let f = o.open_file(OFlag::O_WRONLY)?;
        f.set_len(size)?;
    }
    if a.atime != SetTime::DontChange || a.mtime != SetTime::DontChange {
        utimensat(
            o.dirfd.as_fd(),
            o.name_os(),
            &timespec(a.atime, server_time),
            &timespec(a.mtime, server_time),
            UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(())
}

/// A directory entry to list: cookie, name, identity (when known).
type Listed = (u64, Vec<u8>, Option<(FileId, Generation)>);

/// Encodes READDIR(PLUS) entries after `cookie`, in cookie order, within the byte budgets.
/// Returns the entry list bytes (each entry preceded by TRUE, without the final FALSE) and eof.
fn list_dir(
    ex: &ExportFs,
    dir: &Obj,
    dirfd: &OwnedFd,
    cookie: u64,
    dircount: u32,
    maxcount: u32,
    plus: bool,
) -> Result<(Vec<u8>, bool), Fail> {
    use std::os::unix::ffi::OsStrExt;
    // the fixed part of the reply: status, dir attrs, verifier, list end, eof
    const OVERHEAD: usize = 4 + 88 + 4 + 8 + 8;
    let maxcount = (maxcount as usize).min(MAX_IO as usize);
    let dircount = dircount as usize;
    let stamp = Stamp {
        ino: dir.st.st_ino,
        ctime: (dir.st.st_ctime, dir.st.st_ctime_nsec),
    };
    let listing = match ex.listings.get(dir.id, stamp) {
        Ok(l) => l,
        Err(token) => {
            let mut names: Vec<(u64, Vec<u8>, u64, u64)> = Vec::new();
            let mut d = nix::dir::Dir::from_fd(crate::fs::reopen(dirfd)?)?;
            for e in d.iter() {
                let e = e?;
                let n = e.file_name().to_bytes();
                if n == b"." || n == b".." {
                    continue;
                }
                let life = crate::fs::life::of(dirfd.as_fd(), std::ffi::OsStr::from_bytes(n));
                names.push((dircookie::cookie_of(n), n.to_vec(), e.ino(), life));
            }
            names.sort_unstable_by_key(|e| e.0);
            let l = std::sync::Arc::new(crate::fs::listing::Listing::new(names));
            ex.listings.keep(dir.id, stamp, l.clone(), token);
            l
        }
    };
    // the entries after `cookie` (cookie order: a binary search)
    let after = listing.partition_point(|e| e.0 <= cookie);
    let names = &listing[after..];
    let parent_id = ex
        .ids
        .first_link(dir.id)?
        .map(|p| p.0)
        .unwrap_or(FileId::ROOT);
    let mut all: Vec<Listed> = Vec::new();
    if cookie < dircookie::DOT {
        all.push((dircookie::DOT, b".".to_vec(), Some((dir.id, dir.gen))));
    }
    if cookie < dircookie::DOTDOT {
        // READDIRPLUS gives ".." no handle (no stat below), so its generation is not needed
        all.push((
            dircookie::DOTDOT,
            b"..".to_vec(),
            Some((parent_id, Generation(0))),
        ));
    }
    // Assign ids only to what may fit: an entry takes ≥ 28 bytes (marker, fileid, name,
    // cookie), a READDIRPLUS entry 8 more (its attributes and handle, absent at least) and
    // ≥ 28 of `dircount`. Sized by maxcount alone, a Linux READDIRPLUS (dircount 4 KiB,
    // maxcount 32 KiB) identified ~1,370 entries per call to send ~110.
    let room = if plus {
        (maxcount / 36).min(dircount / 28) + 2
    } else {
        maxcount / 28 + 2
    };
    let take = names.len().min(room);
    let eof_possible = take == names.len();
    // identities the listing already holds; the table is asked for the rest only
    let unknown: Vec<usize> = (after..after + take)
        .filter(|i| listing.id(*i).is_none())
        .collect();
    if !unknown.is_empty() {
        let known: Vec<(&[u8], u64, u64)> = unknown
            .iter()
            .map(|i| {
                let (_, n, ino, life) = &listing[*i];
                (n.as_slice(), *ino, *life)
            })
            .collect();
        let ids = ex.identify_lives(dir.id, &known)?;
        for (i, id) in unknown.iter().zip(ids) {
            listing.found(*i, id);
        }
    }
    for (i, (ck, n, _, _)) in names[..take].iter().enumerate() {
        let Some(id) = listing.id(after + i) else {
            return Err(Fail(NfsStat3::ServerFault));
        };
        all.push((*ck, n.clone(), Some(id)));
    }
    let mut w = XdrWriter::new();
    let mut dir_bytes = 0usize;
    for (n_out, (ck, name, id)) in all.into_iter().enumerate() {
        let (id, gen) = id.unwrap_or((FileId::ROOT, crate::fs::idtable::ROOT_GEN));
        let mut e = XdrWriter::new();
        e.bool(true).u64(id.0).opaque(&name).u64(ck);
        let entry_dir_bytes = e.len();
        if plus {
            let st = match name.as_slice() {
                b"." | b".." => None,
                _ => fstatat(
                    dirfd.as_fd(),
                    std::ffi::OsStr::from_bytes(&name),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .ok(),
            };
            let st = match (name.as_slice(), st) {
                (b".", _) => Some(dir.st),
                (_, s) => s,
            };
            match st {
                Some(st) => {
                    Some(ex.fattr(id, &st)).encode(&mut e);
                    Some(NfsFh3(
                        FileHandle {
                            export: ex.cfg.id,
                            file: id,
                            gen,
                        }
                        .encode(),
                    ))
                    .encode(&mut e);
                }
                None => {
                    e.bool(false).bool(false);
                }
            }
        }
        let over_max = OVERHEAD + w.len() + e.len() > maxcount;
        let over_dir = plus && dir_bytes + entry_dir_bytes > dircount;
        if over_max || over_dir {
            if n_out == 0 {
                return Err(Fail(NfsStat3::TooSmall));
            }
            return Ok((w.into_inner(), false));
        }
        dir_bytes += entry_dir_bytes;
        w.fixed(e.as_slice());
    }
    Ok((w.into_inner(), eof_possible))
}
