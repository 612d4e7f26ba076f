//! `ftnfs-lazyfs BACKING MOUNTPOINT --control SOCKET`: a test tool that simulates a power
//! loss of one server (Jepsen's LazyFS does the same).
//!
//! A FUSE filesystem that passes every namespace and attribute operation straight through to
//! the directory `BACKING` (the "disk"), but keeps **file data and sizes** (WRITE, truncate)
//! in its own memory — a page cache the kernel cannot flush — until the file is `fsync`ed or
//! `fdatasync`ed. The command `crash` on the control socket drops everything not synced, as
//! a power cut drops the page cache; `dirty` tells how much is unsynced; `slow-fsync MS`
//! makes every file fsync take that long (a slow disk). Files are opened
//! with `direct_io`, so the kernel keeps no copy either.
//!
//! What it does not model: a lost directory entry or attribute change (those reach the disk
//! at once), and `syncfs(2)` — FUSE does not pass it to the daemon, so a `syncfs` of this
//! filesystem makes nothing durable, which is the strictest reading of "synced".

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

const PAGE: u64 = 4096;
/// The kernel caches no attribute or entry: every stat sees the cache's size.
const TTL: Duration = Duration::ZERO;

#[derive(Parser)]
struct Cli {
    /// The directory that plays the disk.
    backing: PathBuf,
    /// Where to mount.
    mountpoint: PathBuf,
    /// Unix socket for commands: `crash`, `dirty`.
    #[arg(long)]
    control: PathBuf,
}

/// An inode the kernel knows: an O_PATH descriptor of the backing object.
struct Node {
    fd: OwnedFd,
    key: (u64, u64),
    nlookup: u64,
    /// Where it was last seen (for a symlink's times, which need a parent and a name).
    parent_name: Option<(OwnedFd, Vec<u8>)>,
}

/// Unsynced data of one backing inode.
struct Dirty {
    /// Size as the file's users see it.
    size: u64,
    /// Lowest size the file was cut to since the last sync: backing bytes at or past it are
    /// gone (read as zeros).
    floor: u64,
    /// Pages written since the last sync (each PAGE bytes).
    pages: BTreeMap<u64, Vec<u8>>,
    /// Modification time of the last write, until a sync (or an explicit time) lands it.
    mtime: Option<SystemTime>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<(u64, u64), u64>,
    next_ino: u64,
    dirty: HashMap<(u64, u64), Dirty>,
    files: HashMap<u64, (u64, OwnedFd)>,
    /// Milliseconds every file `fsync` takes (a slow disk): `slow-fsync MS`.
    fsync_delay_ms: u64,
    /// Open directories: their inode and the listing read at offset 0.
    dirs: HashMap<u64, (u64, Listing)>,
    next_fh: u64,
}

struct Lazy {
    st: Arc<Mutex<State>>,
}

type R<T> = Result<T, Errno>;

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

fn io(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn stat_of(fd: BorrowedFd<'_>) -> R<FileStat> {
    fstatat(
        fd,
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno)
}

fn kind(mode: u32) -> FileType {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => FileType::Directory,
        SFlag::S_IFLNK => FileType::Symlink,
        SFlag::S_IFBLK => FileType::BlockDevice,
        SFlag::S_IFCHR => FileType::CharDevice,
        SFlag::S_IFIFO => FileType::NamedPipe,
        SFlag::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH
    }
}

fn spec(t: SystemTime) -> nix::sys::time::TimeSpec {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    nix::sys::time::TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64)
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn node(&self, ino: INodeNo) -> R<&Node> {
        self.nodes.get(&ino.0).ok_or(Errno::ESTALE)
    }

    /// A copy of a node's O_PATH descriptor.
    fn fd(&self, ino: INodeNo) -> R<OwnedFd> {
        self.node(ino)?.fd.try_clone().map_err(io)
    }

    /// The descriptor of an open file.
    fn file(&self, fh: FileHandle) -> R<OwnedFd> {
        self.files
            .get(&fh.0)
            .ok_or(Errno::EBADF)?
            .1
            .try_clone()
            .map_err(io)
    }

    fn attr(&self, ino: u64, st: &FileStat) -> FileAttr {
        let d = self.dirty.get(&(st.st_dev, st.st_ino));
        let mtime = d
            .and_then(|d| d.mtime)
            .unwrap_or_else(|| time(st.st_mtime, st.st_mtime_nsec));
        FileAttr {
            ino: INodeNo(ino),
            size: d.map(|d| d.size).unwrap_or(st.st_size as u64),
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime,
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: kind(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: PAGE as u32,
            flags: 0,
        }
    }

    /// The node of `name` in `parent`, counted as one more lookup.
    fn child(&mut self, parent: INodeNo, name: &OsStr) -> R<FileAttr> {
        let pfd = self.fd(parent)?;
        let st = fstatat(pfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        let key = (st.st_dev, st.st_ino);
        let ino = match self.by_key.get(&key) {
            Some(&ino) => {
                let n = self.nodes.get_mut(&ino).ok_or(Errno::EIO)?;
                n.nlookup += 1;
                n.parent_name = Some((pfd, name.as_bytes().to_vec()));
                ino
            }
            None => {
                let fd = openat(
                    pfd.as_fd(),
                    name,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                self.next_ino += 1;
                let ino = self.next_ino;
                self.nodes.insert(
                    ino,
                    Node {
                        fd,
                        key,
                        nlookup: 1,
                        parent_name: Some((pfd, name.as_bytes().to_vec())),
                    },
                );
                self.by_key.insert(key, ino);
                ino
            }
        };
        Ok(self.attr(ino, &st))
    }

    /// A backing page as the file's users see it: cached, or read from the disk with what
    /// was cut away since the last sync zeroed.
    fn page(&mut self, key: (u64, u64), fd: &OwnedFd, p: u64) -> R<&mut Vec<u8>> {
        let d = self.dirty.get_mut(&key).ok_or(Errno::EIO)?;
        if !d.pages.contains_key(&p) {
            let mut buf = vec![0u8; PAGE as usize];
            let start = p * PAGE;
            if start < d.floor {
                read_full(fd, &mut buf, start)?;
                let keep = (d.floor - start).min(PAGE) as usize;
                buf[keep..].fill(0);
            }
            d.pages.insert(p, buf);
        }
        d.pages.get_mut(&p).ok_or(Errno::EIO)
    }

    fn dirty_of(&mut self, key: (u64, u64), fd: &OwnedFd) -> R<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.dirty.entry(key) {
            let size = stat_of(fd.as_fd())?.st_size as u64;
            e.insert(Dirty {
                size,
                floor: size,
                pages: BTreeMap::new(),
                mtime: None,
            });
        }
        Ok(())
    }

    fn truncate(&mut self, key: (u64, u64), fd: &OwnedFd, size: u64) -> R<()> {
        self.dirty_of(key, fd)?;
        let d = self.dirty.get_mut(&key).ok_or(Errno::EIO)?;
        d.size = size;
        d.floor = d.floor.min(size);
        d.pages.retain(|p, _| p * PAGE < size);
        if !size.is_multiple_of(PAGE) {
            if let Some(pg) = d.pages.get_mut(&(size / PAGE)) {
                pg[(size % PAGE) as usize..].fill(0);
            }
        }
        d.mtime = Some(SystemTime::now());
        Ok(())
    }

    /// Writes an inode's unsynced data to the disk and syncs it.
    fn sync(&mut self, key: (u64, u64), fd: &OwnedFd) -> R<()> {
        if let Some(d) = self.dirty.remove(&key) {
            let st = stat_of(fd.as_fd())?;
            let f = std::fs::File::from(fd.try_clone().map_err(io)?);
            if d.floor < st.st_size as u64 {
                f.set_len(d.floor).map_err(io)?;
            }
            for (p, page) in &d.pages {
                let start = p * PAGE;
                if start < d.size {
                    let n = (d.size - start).min(PAGE) as usize;
                    f.write_all_at(&page[..n], start).map_err(io)?;
                }
            }
            f.set_len(d.size).map_err(io)?;
            let mtime = d
                .mtime
                .map(spec)
                .unwrap_or_else(|| nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec));
            let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
            nix::sys::stat::futimens(fd.as_fd(), &atime, &mtime).map_err(errno)?;
        }
        nix::unistd::fsync(fd.as_fd()).map_err(errno)
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if ino == INodeNo::ROOT.0 {
            return;
        }
        let gone = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.nlookup = node.nlookup.saturating_sub(n);
                node.nlookup == 0
            }
            None => false,
        };
        if gone {
            if let Some(node) = self.nodes.remove(&ino) {
                self.by_key.remove(&node.key);
                // its number may be reused once we close the descriptor: an unlinked inode's
                // unsynced data goes with it
                if stat_of(node.fd.as_fd())
                    .map(|s| s.st_nlink == 0)
                    .unwrap_or(true)
                    && !self.files.values().any(|(i, _)| *i == ino)
                {
                    self.dirty.remove(&node.key);
                }
            }
        }
    }

    /// The object `name` in `parent` is about to lose a name: its unsynced data goes if
    /// that was its last one.
    fn losing(&mut self, pfd: &OwnedFd, name: &OsStr) {
        if let Ok(st) = fstatat(pfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if st.st_nlink <= 1 && kind(st.st_mode) == FileType::RegularFile {
                let key = (st.st_dev, st.st_ino);
                let open = self
                    .by_key
                    .get(&key)
                    .is_some_and(|ino| self.files.values().any(|(i, _)| i == ino));
                if !open {
                    self.dirty.remove(&key);
                }
            }
        }
    }
}

/// Reads `buf.len()` bytes at `off` or up to the end of the file; the count read.
fn read_full(fd: &OwnedFd, buf: &mut [u8], off: u64) -> R<usize> {
    let f = std::fs::File::from(fd.try_clone().map_err(io)?);
    let mut got = 0usize;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(got)
}

/// Answers a request that names an object (lookup, mknod, mkdir, symlink, link).
fn entry(reply: ReplyEntry, r: R<FileAttr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// A directory opened for reading from its O_PATH descriptor.
fn open_dir(fd: &OwnedFd) -> R<OwnedFd> {
    openat(
        fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// A directory's entries: (inode, type, name).
type Listing = Vec<(u64, FileType, Vec<u8>)>;

/// The entries of a directory (by its O_PATH descriptor).
fn list_dir(fd: &OwnedFd) -> R<Listing> {
    let mut d = nix::dir::Dir::from_fd(open_dir(fd)?).map_err(errno)?;
    let mut list = Vec::new();
    for e in d.iter() {
        let e = e.map_err(errno)?;
        let k = match e.file_type() {
            Some(nix::dir::Type::Directory) => FileType::Directory,
            Some(nix::dir::Type::Symlink) => FileType::Symlink,
            Some(nix::dir::Type::Fifo) => FileType::NamedPipe,
            Some(nix::dir::Type::Socket) => FileType::Socket,
            Some(nix::dir::Type::CharacterDevice) => FileType::CharDevice,
            Some(nix::dir::Type::BlockDevice) => FileType::BlockDevice,
            _ => FileType::RegularFile,
        };
        list.push((e.ino(), k, e.file_name().to_bytes().to_vec()));
    }
    Ok(list)
}

impl Lazy {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> R<T>) -> R<T> {
        f(&mut lock(&self.st))
    }
}

impl Filesystem for Lazy {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(reply, self.with(|s| s.child(parent, name)));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.st).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|s| {
            let st = stat_of(s.node(ino)?.fd.as_fd())?;
            Ok(s.attr(ino.0, &st))
        }) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.with(|s| {
            let node = s.node(ino)?;
            let fd = node.fd.try_clone().map_err(io)?;
            let key = node.key;
            let st = stat_of(fd.as_fd())?;
            let is_link = kind(st.st_mode) == FileType::Symlink;
            if let Some(m) = mode {
                if !is_link {
                    nix::sys::stat::fchmodat(
                        nix::fcntl::AT_FDCWD,
                        &proc_path(&fd),
                        Mode::from_bits_truncate(m & 0o7777),
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    )
                    .map_err(errno)?;
                }
            }
            if uid.is_some() || gid.is_some() {
                nix::unistd::fchownat(
                    fd.as_fd(),
                    "",
                    uid.map(nix::unistd::Uid::from_raw),
                    gid.map(nix::unistd::Gid::from_raw),
                    AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
            }
            if let Some(size) = size {
                if kind(st.st_mode) != FileType::RegularFile {
                    return Err(Errno::EINVAL);
                }
                s.truncate(key, &fd, size)?;
            }
            if atime.is_some() || mtime.is_some() {
                let t = |x: Option<TimeOrNow>| match x {
                    None => nix::sys::time::TimeSpec::UTIME_OMIT,
                    Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::UTIME_NOW,
                    Some(TimeOrNow::SpecificTime(t)) => spec(t),
                };
                if is_link {
                    let node = s.node(ino)?;
                    let (pfd, name) = node.parent_name.as_ref().ok_or(Errno::ENOSYS)?;
                    nix::sys::stat::utimensat(
                        pfd.as_fd(),
                        OsStr::from_bytes(name),
                        &t(atime),
                        &t(mtime),
                        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(errno)?;
                } else {
                    nix::sys::stat::utimensat(
                        nix::fcntl::AT_FDCWD,
                        &proc_path(&fd),
                        &t(atime),
                        &t(mtime),
                        nix::sys::stat::UtimensatFlags::FollowSymlink,
                    )
                    .map_err(errno)?;
                }
                if mtime.is_some() {
                    if let Some(d) = s.dirty.get_mut(&key) {
                        d.mtime = None; // the disk has the time now
                    }
                }
            }
            let st = stat_of(fd.as_fd())?;
            Ok(s.attr(ino.0, &st))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.with(|s| nix::fcntl::readlinkat(s.node(ino)?.fd.as_fd(), "").map_err(errno)) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.with(|s| {
                let pfd = s.fd(parent)?;
                nix::sys::stat::mknodat(
                    pfd.as_fd(),
                    name,
                    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()),
                    Mode::from_bits_truncate(mode & 0o7777),
                    rdev as u64,
                )
                .map_err(errno)?;
                s.child(parent, name)
            }),
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.with(|s| {
                let pfd = s.fd(parent)?;
                nix::sys::stat::mkdirat(pfd.as_fd(), name, Mode::from_bits_truncate(mode & 0o7777))
                    .map_err(errno)?;
                s.child(parent, name)
            }),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|s| {
            let pfd = s.fd(parent)?;
            s.losing(&pfd, name);
            nix::unistd::unlinkat(pfd.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|s| {
            let pfd = s.fd(parent)?;
            nix::unistd::unlinkat(pfd.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir)
                .map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.with(|s| {
                let pfd = s.fd(parent)?;
                nix::unistd::symlinkat(target, pfd.as_fd(), link_name).map_err(errno)?;
                s.child(parent, link_name)
            }),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.with(|s| {
            let pfd = s.fd(parent)?;
            let npfd = s.fd(newparent)?;
            let src = fstatat(pfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
            if let Ok(t) = fstatat(npfd.as_fd(), newname, AtFlags::AT_SYMLINK_NOFOLLOW) {
                if (t.st_dev, t.st_ino) != (src.st_dev, src.st_ino) {
                    s.losing(&npfd, newname);
                }
            }
            nix::fcntl::renameat2(
                pfd.as_fd(),
                name,
                npfd.as_fd(),
                newname,
                nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()),
            )
            .map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.with(|s| {
                let fd = s.fd(ino)?;
                let npfd = s.fd(newparent)?;
                nix::unistd::linkat(
                    fd.as_fd(),
                    "",
                    npfd.as_fd(),
                    newname,
                    AtFlags::AT_EMPTY_PATH,
                )
                .map_err(errno)?;
                s.child(newparent, newname)
            }),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| {
            let node = s.node(ino)?;
            let key = node.key;
            let p = proc_path(&node.fd);
            let fd: OwnedFd = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&p)
                .or_else(|_| std::fs::File::open(&p))
                .map_err(io)?
                .into();
            if flags.0 & libc::O_TRUNC != 0 {
                s.truncate(key, &fd, 0)?;
            }
            s.next_fh += 1;
            let fh = s.next_fh;
            s.files.insert(fh, (ino.0, fd));
            Ok(fh)
        }) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with(|s| {
            let key = s.node(ino)?.key;
            let fd = s.file(fh)?;
            let Some(total) = s.dirty.get(&key).map(|d| d.size) else {
                let mut buf = vec![0u8; size as usize];
                let got = read_full(&fd, &mut buf, offset)?;
                buf.truncate(got);
                return Ok(buf);
            };
            let end = (offset + size as u64).min(total);
            let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
            let mut pos = offset;
            while pos < end {
                let p = pos / PAGE;
                let in_page = (pos % PAGE) as usize;
                let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
                let page = s.page(key, &fd, p)?;
                out.extend_from_slice(&page[in_page..in_page + n]);
                pos += n as u64;
            }
            Ok(out)
        }) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|s| {
            let key = s.node(ino)?.key;
            let fd = s.file(fh)?;
            s.dirty_of(key, &fd)?;
            let mut pos = offset;
            let mut rest = data;
            while !rest.is_empty() {
                let p = pos / PAGE;
                let in_page = (pos % PAGE) as usize;
                let n = ((PAGE as usize) - in_page).min(rest.len());
                let page = s.page(key, &fd, p)?;
                page[in_page..in_page + n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                pos += n as u64;
            }
            let d = s.dirty.get_mut(&key).ok_or(Errno::EIO)?;
            d.size = d.size.max(offset + data.len() as u64);
            d.mtime = Some(SystemTime::now());
            Ok(data.len() as u32)
        }) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok(); // a close syncs nothing
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.st).files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        match self.with(|s| {
            let key = s.node(ino)?.key;
            let fd = s.file(fh)?;
            if s.fsync_delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(s.fsync_delay_ms));
            }
            s.sync(key, &fd)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| {
            s.node(ino)?;
            s.next_fh += 1;
            let fh = s.next_fh;
            s.dirs.insert(fh, (ino.0, Vec::new()));
            Ok(fh)
        }) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = lock(&self.st);
        let Some((ino, _)) = s.dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let ino = *ino;
        if offset == 0 {
            // a listing from the start (also after a rewind) reads the directory as it is now
            let list = match s.node(INodeNo(ino)).and_then(|n| list_dir(&n.fd)) {
                Ok(l) => l,
                Err(e) => return reply.error(e),
            };
            s.dirs.insert(fh.0, (ino, list));
        }
        let (_, list) = &s.dirs[&fh.0];
        for (i, (ino, k, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *k, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.st).dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        // entries are on the disk already; sync them there
        match self.with(|s| {
            let dfd = open_dir(&s.fd(ino)?)?;
            nix::unistd::fsync(dfd.as_fd()).map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.with(|s| {
            let fd = s.fd(INodeNo::ROOT)?;
            nix::sys::statvfs::fstatvfs(fd.as_fd()).map_err(errno)
        }) {
            Ok(v) => reply.statfs(
                v.blocks(),
                v.blocks_free(),
                v.blocks_available(),
                v.files(),
                v.files_free(),
                v.block_size() as u32,
                v.name_max() as u32,
                v.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.with(|s| {
            let pfd = s.fd(parent)?;
            let existed = fstatat(pfd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
            let fd = openat(
                pfd.as_fd(),
                name,
                OFlag::O_CREAT
                    | OFlag::O_RDWR
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOFOLLOW
                    | (OFlag::from_bits_truncate(flags) & OFlag::O_EXCL),
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(errno)?;
            let a = s.child(parent, name)?;
            let key = s.node(a.ino)?.key;
            if existed && flags & libc::O_TRUNC != 0 {
                s.truncate(key, &fd, 0)?;
            }
            s.next_fh += 1;
            let fh = s.next_fh;
            s.files.insert(fh, (a.ino.0, fd));
            Ok((a, fh))
        }) {
            Ok((a, fh)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }
}

/// `crash`: drop every unsynced byte (a power loss); `dirty`: how much is unsynced;
/// `slow-fsync MS`: every file fsync takes that long (a slow disk; 0 ends it).
fn control(st: Arc<Mutex<State>>, l: std::os::unix::net::UnixListener) {
    for c in l.incoming() {
        let Ok(mut c) = c else { continue };
        let mut line = String::new();
        if BufReader::new(&c).read_line(&mut line).is_err() {
            continue;
        }
        let mut s = lock(&st);
        let files = s.dirty.len();
        let bytes: usize = s
            .dirty
            .values()
            .map(|d| d.pages.len() * PAGE as usize)
            .sum();
        let reply = match line.trim() {
            "crash" => {
                s.dirty.clear();
                format!("ok dropped {files} files {bytes} bytes\n")
            }
            "dirty" => format!("ok {files} files {bytes} bytes\n"),
            cmd if cmd.starts_with("slow-fsync ") => match cmd[11..].trim().parse::<u64>() {
                Ok(ms) => {
                    s.fsync_delay_ms = ms.min(60_000);
                    format!("ok fsync takes {ms} ms\n")
                }
                Err(_) => "error: slow-fsync MS\n".to_string(),
            },
            _ => "error: crash | dirty | slow-fsync MS\n".to_string(),
        };
        drop(s);
        let _ = c.write_all(reply.as_bytes());
    }
}

fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    use nix::sys::signal::{SigSet, Signal};
    let cli = Cli::parse();
    // TERM and INT end the filesystem (unmounted cleanly): waited for below, blocked in
    // every thread started from here.
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGINT);
    sigs.thread_block()?;
    let root: OwnedFd = std::fs::File::open(&cli.backing)
        .with_context(|| format!("backing directory {}", cli.backing.display()))?
        .into();
    let rst = stat_of(root.as_fd()).map_err(|e| anyhow::anyhow!("stat backing: {e:?}"))?;
    let mut st = State {
        next_ino: INodeNo::ROOT.0,
        ..State::default()
    };
    st.by_key.insert((rst.st_dev, rst.st_ino), INodeNo::ROOT.0);
    st.nodes.insert(
        INodeNo::ROOT.0,
        Node {
            fd: root,
            key: (rst.st_dev, rst.st_ino),
            nlookup: 1,
            parent_name: None,
        },
    );
    let st = Arc::new(Mutex::new(st));
    let _ = std::fs::remove_file(&cli.control);
    let l = std::os::unix::net::UnixListener::bind(&cli.control)
        .with_context(|| format!("control socket {}", cli.control.display()))?;
    {
        let st = st.clone();
        std::thread::spawn(move || control(st, l));
    }
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![fuser::MountOption::FSName("ftnfs-lazyfs".into())];
    cfg.acl = fuser::SessionACL::All;
    let session = fuser::spawn_mount(Lazy { st }, &cli.mountpoint, &cfg)
        .with_context(|| format!("mount on {}", cli.mountpoint.display()))?;
    eprintln!(
        "ftnfs-lazyfs: {} on {}",
        cli.backing.display(),
        cli.mountpoint.display()
    );
    let _ = sigs.wait();
    drop(session);
    Ok(())
}
