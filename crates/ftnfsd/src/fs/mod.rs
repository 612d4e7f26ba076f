//! The local side of an export: the mirror filesystem (a real directory tree) and its identity
//! table, and the one way to reach an object from a handle without ever leaving the tree.
//!
//! Every path walk below the export root uses `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! and every final component is touched with `*at(…, AT_SYMLINK_NOFOLLOW)` or `O_NOFOLLOW`:
//! no LOOKUP, `..` or symlink can reach outside the export, even when a client races renames
//! against us.

pub mod dircache;
pub mod idlog;
pub mod idtable;
pub mod life;
pub mod listing;
pub mod set;

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ftnfs_core::exports::{ClientOptions, ClientRule, Export};
use ftnfs_core::handle::FileHandle;
use ftnfs_core::ids::{FileId, Generation};
use ftnfs_wire::nfs3::{FType3, Fattr3, NfsStat3, NfsTime3, WccAttr};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::errors::Fail;
pub use dircache::DirFd;
use idtable::{IdTable, ObjRec};

/// Longest entry name (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// How long an update of an `InMemory` export may stay in memory only: each member flushes
/// its export this often (the option's bound, `Documentation/11-durable-metadata.md`).
pub const MEMORY_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// The generation a new identity table starts from ([`ExportFs::open`]): the time in
/// seconds, so that a table made again after its loss does not hand out old handles.
pub fn generation_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1) as u32
}

/// One export served by this member.
pub struct ExportFs {
    /// Its configuration, but for the client rules (`cfg.clients` is empty: they change
    /// with a reload and live in `access`).
    pub cfg: Export,
    /// Who may use it, as the exports file said at the last (re)load; `None` once a reload
    /// removed it (its handles then answer STALE, a MNT of it NOENT) — `reload.rs`.
    access: std::sync::RwLock<Option<std::sync::Arc<Vec<ClientRule>>>>,
    /// The exported directory.
    root: DirFd,
    /// Directories kept open by file id ([`dircache`]).
    dirs: dircache::DirCache,
    /// Identity table.
    pub ids: IdTable,
    /// Directory listings in cookie order (READDIR).
    pub listings: listing::Listings,
    /// An update durable only in memory (`InMemory`) executed since the last flush.
    memory_unsynced: std::sync::atomic::AtomicBool,
    /// Its NLM locks (on a mirrored export: the same on every member in step).
    pub locks: crate::lock_table::LockTable,
}

/// An object found from a handle: its identity, the directory that holds its (first) name,
/// that name, and its attributes as just read. A directory found by [`ExportFs::locate`]
/// is held by its own descriptor, with the name "." (as the root always is): only
/// [`ExportFs::locate_named`] gives its parent and real name.
pub struct Obj {
    /// File id.
    pub id: FileId,
    /// Generation.
    pub gen: Generation,
    /// Holding directory (the directory itself, with name ".", for the root and for a
    /// directory found by [`ExportFs::locate`]).
    pub dirfd: DirFd,
    /// Name in `dirfd`.
    pub name: Vec<u8>,
    /// Attributes.
    pub st: FileStat,
}

impl Obj {
    /// The object's type.
    pub fn ftype(&self) -> FType3 {
        ftype_of(&self.st)
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.ftype() == FType3::Dir
    }

    /// The name as a path component.
    pub fn name_os(&self) -> &OsStr {
        OsStr::from_bytes(&self.name)
    }

    /// Owner and mode for permission decisions.
    pub fn owner(&self) -> ftnfs_core::access::Owner {
        owner_of(&self.st)
    }

    /// Re-reads the attributes.
    pub fn restat(&mut self) -> Result<(), Fail> {
        self.st = fstatat(
            self.dirfd.as_fd(),
            self.name_os(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// The directory itself (as the parent of new names; to list it, [`reopen`] it: a
    /// listing must not share its offset), without a system call when it is held by its own
    /// descriptor.
    pub fn open_dir(&self) -> Result<DirFd, Fail> {
        if !self.is_dir() {
            return Err(Fail(NfsStat3::NotDir));
        }
        if self.name == b"." {
            return Ok(self.dirfd.clone());
        }
        let fd = openat(
            self.dirfd.as_fd(),
            self.name_os(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        self.check_same(&fd)?;
        Ok(std::sync::Arc::new(fd))
    }

    /// Opens a regular file with `flags` (plus O_NOFOLLOW).
    pub fn open_file(&self, flags: OFlag) -> Result<std::fs::File, Fail> {
        match self.ftype() {
            FType3::Reg => {}
            FType3::Dir => return Err(Fail(NfsStat3::IsDir)),
            _ => return Err(Fail(NfsStat3::Inval)),
        }
        let fd = openat(
            self.dirfd.as_fd(),
            self.name_os(),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        self.check_same(&fd)?;
        Ok(std::fs::File::from(fd))
    }

    fn check_same(&self, fd: &OwnedFd) -> Result<(), Fail> {
        let st = fstat(fd.as_fd())?;
        if st.st_ino != self.st.st_ino || st.st_dev != self.st.st_dev {
            // replaced between our stat and open
            return Err(Fail(NfsStat3::Stale));
        }
        Ok(())
    }

    /// Makes the object's inode stable (its attributes; a directory's entries too) before a
    /// reply says so (RFC 1813: every update is stable before its reply). Regular files,
    /// directories and FIFOs are opened and fsynced; a symlink, device or socket cannot be
    /// opened for that without side effects, so the filesystem holding it is synced.
    pub fn make_stable(&self) -> Result<(), Fail> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        match self.ftype() {
            FType3::Dir if self.name == b"." => nix::unistd::fsync(self.dirfd.as_fd())?,
            FType3::Reg | FType3::Dir | FType3::Fifo => {
                let fd = openat(self.dirfd.as_fd(), self.name_os(), flags, Mode::empty())?;
                self.check_same(&fd)?;
                nix::unistd::fsync(fd.as_fd())?;
            }
            _ => nix::unistd::syncfs(self.dirfd.as_fd())?,
        }
        Ok(())
    }

    /// The handle of this object in `ex`.
    pub fn handle(&self, ex: &ExportFs) -> Vec<u8> {
        FileHandle {
            export: ex.cfg.id,
            file: self.id,
            gen: self.gen,
        }
        .encode()
    }
}

/// Validates an entry name from the wire (RFC 1813 §3.2 filename3).
pub fn check_name(name: &[u8]) -> Result<&OsStr, Fail> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Fail(NfsStat3::Acces));
    }
    if name.len() > NAME_MAX {
        return Err(Fail(NfsStat3::NameTooLong));
    }
    Ok(OsStr::from_bytes(name))
}

/// Makes a directory's entries stable (after CREATE, REMOVE, RENAME, LINK changed them).
pub fn sync_dir(dirfd: &OwnedFd) -> Result<(), Fail> {
    nix::unistd::fsync(dirfd.as_fd())?;
    Ok(())
}

/// A descriptor of its own for directory `fd`, to list it: a listing reads from its
/// descriptor's offset, which a duplicate would share with every other user of `fd`.
pub fn reopen(fd: impl AsFd) -> nix::Result<OwnedFd> {
    openat(
        fd.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `.` or `..`
pub fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Is `name` in `dir` the life of its inode number that `rec` records (always, when the
/// record has none)?
fn same_life(rec: &ObjRec, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rec.life == life::UNKNOWN || life::same(rec.life, life::of(dir, name))
}

fn resolve_beneath() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        )
}

impl ExportFs {
    /// The options for a client address: `None` when it may not use the export, or when a
    /// reload removed the export.
    pub fn options_for(&self, ip: std::net::IpAddr) -> Option<ClientOptions> {
        let a = self.access.read().unwrap_or_else(|p| p.into_inner());
        ftnfs_core::exports::options_for(a.as_ref()?, ip).copied()
    }

    /// The client rules in force; `None` once a reload removed the export.
    pub fn clients(&self) -> Option<std::sync::Arc<Vec<ClientRule>>> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Is the export served to clients (not removed by a reload)?
    pub fn served(&self) -> bool {
        self.clients().is_some()
    }

    /// A reload's verdict: these rules from now on (`None`: removed — every client call
    /// on its handles answers STALE, its mirror goes on following its primary).
    pub fn set_clients(&self, rules: Option<Vec<ClientRule>>) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = rules.map(std::sync::Arc::new);
    }

    /// The file an NLM call's handle names, if it is this export's and still exists with
    /// that generation (else the call gets NLM4_STALE_FH).
    pub fn lock_file(&self, fh: &[u8]) -> Option<FileId> {
        let h = ftnfs_core::handle::FileHandle::decode(fh).ok()?;
        if h.export != self.cfg.id {
            return None;
        }
        match self.ids.get(h.file) {
            Ok(Some(r)) if r.gen == h.gen => Some(h.file),
            _ => None,
        }
    }

    /// Opens the export's directory and identity table (`state_dir/export-<id>.redb`).
    pub fn open(
        mut cfg: Export,
        state_dir: &Path,
        new_generation: u32,
    ) -> anyhow::Result<ExportFs> {
        use anyhow::Context;
        let root: OwnedFd = std::fs::File::open(&cfg.path)
            .with_context(|| format!("cannot open export directory {}", cfg.path))?
            .into();
        let st = fstat(root.as_fd())?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFDIR {
            anyhow::bail!("export {} is not a directory", cfg.path);
        }
        // The seal of a clean stop relies on syncfs(2) (Documentation/05-write-stability.md);
        // FUSE does not pass it to the filesystem's daemon.
        if let Ok(fs) = nix::sys::statfs::fstatfs(root.as_fd()) {
            if fs.filesystem_type().0 == 0x6573_5546 {
                tracing::warn!(
                    export = cfg.path,
                    "export on a FUSE filesystem: syncfs does not reach it, so a clean stop's seal cannot vouch for uncommitted UNSTABLE data (every stable update and every resync pass syncs its files itself)"
                );
            }
        }
        let ids = IdTable::open(
            &state_dir.join(format!("export-{}.redb", cfg.id.0)),
            st.st_ino,
            new_generation,
        )
        .with_context(|| format!("identity table of {}", cfg.path))?;
        let id = cfg.id.0;
        let clients = std::mem::take(&mut cfg.clients);
        let ex = ExportFs {
            cfg,
            access: std::sync::RwLock::new(Some(std::sync::Arc::new(clients))),
            root: std::sync::Arc::new(root),
            dirs: Default::default(),
            ids,
            listings: Default::default(),
            memory_unsynced: Default::default(),
            locks: Default::default(),
        };
        // the lock table as the last run left it (lock_log.rs)
        ex.locks
            .open_log(&state_dir.join(format!("export-{id}.locklog")), |fh| {
                ex.lock_file(fh)
            })
            .with_context(|| format!("lock table of {}", ex.cfg.path))?;
        let (_, held, waiting) = ex.locks.counts();
        if held + waiting > 0 {
            tracing::info!(
                export = ex.cfg.path,
                held,
                waiting,
                "lock table read back from its log"
            );
        }
        Ok(ex)
    }

    /// An update that counts as durable in the members' memory (`InMemory`) finished here:
    /// the next [`flush_memory_updates`](Self::flush_memory_updates) makes it stable.
    pub fn memory_update(&self) {
        self.memory_unsynced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Makes every in-memory update finished so far stable: the export's filesystem
    /// (syncfs) and its identity table. The daemon calls it every
    /// [`MEMORY_FLUSH`](crate::fs::MEMORY_FLUSH) — the bound `InMemory` promises — and the
    /// primary before releasing an in-memory update no secondary acknowledged.
    pub fn flush_memory_updates(&self) -> std::io::Result<()> {
        if !self
            .memory_unsynced
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return Ok(());
        }
        let r = nix::unistd::syncfs(self.root.as_fd())
            .map_err(std::io::Error::from)
            .and_then(|()| self.ids.flush_if_unsynced().map_err(std::io::Error::other));
        if r.is_err() {
            self.memory_update(); // try again at the next flush
        }
        r
    }

    /// Nothing was ever recorded here and the directory is empty: a mirror in this state
    /// can join a group whose primary is in the same state without a copy.
    pub fn pristine(&self) -> Result<bool, crate::fs::idtable::IdError> {
        if !self.ids.pristine()? {
            return Ok(false);
        }
        let dup =
            reopen(&self.root).map_err(|e| crate::fs::idtable::IdError::Io(format!("{e:?}")))?;
        let mut d = nix::dir::Dir::from_fd(dup)
            .map_err(|e| crate::fs::idtable::IdError::Io(e.to_string()))?;
        let empty = d.iter().all(|e| {
            e.map(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
                .unwrap_or(false)
        });
        Ok(empty)
    }

    /// The export root directory.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Finds the object a (decoded) handle names: NFS3ERR_STALE if it no longer exists here.
    /// A directory comes held by its own descriptor (name "."), kept open for the next call
    /// ([`dircache`]).
    pub fn locate(&self, h: &FileHandle) -> Result<Obj, Fail> {
        let rec = self.record_of(h)?;
        if h.file == FileId::ROOT {
            return self.own(h, &rec, self.root.clone());
        }
        if let Some(fd) = self.dirs.get(h.file, &rec) {
            match self.own(h, &rec, fd) {
                Ok(o) => return Ok(o),
                // removed (or no longer what the table says): found again below, or STALE
                Err(_) => self.dirs.drop_entry(h.file),
            }
        }
        let o = self.named(h, &rec)?;
        if !o.is_dir() {
            return Ok(o);
        }
        let fd = o.open_dir()?;
        self.dirs.put(h.file, rec, fd.clone());
        Ok(Obj {
            dirfd: fd,
            name: b".".to_vec(),
            ..o
        })
    }

    /// Directory `id` was removed through ftnfs: its kept descriptor is closed now rather
    /// than when the cache next looks at it (it would pin the dead inode meanwhile).
    pub fn dir_gone(&self, id: FileId) {
        self.dirs.drop_entry(id);
    }

    /// [`locate`](Self::locate), but a directory too is given by its parent and its (first)
    /// name: for whoever removes or renames what it found (a resync).
    pub fn locate_named(&self, h: &FileHandle) -> Result<Obj, Fail> {
        let rec = self.record_of(h)?;
        if h.file == FileId::ROOT {
            return self.own(h, &rec, self.root.clone());
        }
        self.named(h, &rec)
    }

    /// The table's record of the handle's object, if the generation matches.
    fn record_of(&self, h: &FileHandle) -> Result<ObjRec, Fail> {
        let rec = self.ids.get(h.file)?.ok_or(Fail(NfsStat3::Stale))?;
        if rec.gen != h.gen {
            return Err(Fail(NfsStat3::Stale));
        }
        Ok(rec)
    }

    /// The directory `fd` (kept open, so its inode is the one it was checked to be) as the
    /// object `h` names: STALE once it is removed.
    fn own(&self, h: &FileHandle, rec: &ObjRec, fd: DirFd) -> Result<Obj, Fail> {
        let st = fstat(fd.as_fd())?;
        if st.st_nlink == 0 || st.st_ino != rec.ino {
            return Err(Fail(NfsStat3::Stale));
        }
        Ok(Obj {
            id: h.file,
            gen: h.gen,
            dirfd: fd,
            name: b".".to_vec(),
            st,
        })
    }

    /// The object `h` names by its recorded names: the first, else another (a hard link);
    /// the dead ones are dropped.
    fn named(&self, h: &FileHandle, rec: &ObjRec) -> Result<Obj, Fail> {
        let (parent, name) = self.ids.first_link(h.file)?.ok_or(Fail(NfsStat3::Stale))?;
        let first = self
            .dir_fd(parent)
            .and_then(|dirfd| self.at(h, rec, dirfd, name));
        match first {
            Err(Fail(NfsStat3::Stale)) => {}
            other => return other,
        }
        // The first recorded name is gone (removed or renamed outside ftnfs): another one
        // (a hard link) may still lead to the object; the dead ones are dropped.
        let links = self.ids.links(h.file)?;
        if links.len() < 2 {
            return Err(Fail(NfsStat3::Stale));
        }
        for (p, n) in links.iter().skip(1) {
            let found = self
                .dir_fd(*p)
                .and_then(|dirfd| self.at(h, rec, dirfd, n.clone()));
            if let Ok(o) = found {
                self.prune_links(h.file);
                return Ok(o);
            }
        }
        Err(Fail(NfsStat3::Stale))
    }

    /// Directory `id` open, to reach the names in it: kept open from an earlier call, or
    /// opened by its recorded path beneath the root (and kept if it is the object the table
    /// records).
    fn dir_fd(&self, id: FileId) -> Result<DirFd, Fail> {
        if id == FileId::ROOT {
            return Ok(self.root.clone());
        }
        let rec = self.ids.get(id)?.ok_or(Fail(NfsStat3::Stale))?;
        if let Some(fd) = self.dirs.get(id, &rec) {
            return Ok(fd);
        }
        let fd = std::sync::Arc::new(self.open_beneath(&self.ids.path_of(id)?)?);
        let st = fstat(fd.as_fd())?;
        if st.st_ino == rec.ino && st.st_nlink > 0 && same_life(&rec, fd.as_fd(), OsStr::new(".")) {
            self.dirs.put(id, rec, fd.clone());
        }
        Ok(fd)
    }

    /// The object `h` names if it is `name` in `dirfd`: same inode number, same life.
    fn at(&self, h: &FileHandle, rec: &ObjRec, dirfd: DirFd, name: Vec<u8>) -> Result<Obj, Fail> {
        let st = match fstatat(
            dirfd.as_fd(),
            OsStr::from_bytes(&name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Err(Fail(NfsStat3::Stale)),
            Err(e) => return Err(e.into()),
        };
        if st.st_ino != rec.ino || !same_life(rec, dirfd.as_fd(), OsStr::from_bytes(&name)) {
            // another object has the inode number now (the old one was removed outside
            // ftnfs): never serve it under the old handle
            return Err(Fail(NfsStat3::Stale));
        }
        Ok(Obj {
            id: h.file,
            gen: h.gen,
            dirfd,
            name,
            st,
        })
    }

    /// Opens a directory below the root by relative path, refusing symlinks and escapes.
    fn open_beneath(&self, rel: &Path) -> Result<OwnedFd, Fail> {
        match openat2(self.root.as_fd(), rel, resolve_beneath()) {
            Ok(fd) => Ok(fd),
            // the recorded path no longer leads to a directory: the object moved away or died
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                Err(Fail(NfsStat3::Stale))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The object named `name` in directory `dir` (a child, not `.`/`..`), adopting it into
    /// the identity table if it was created outside ftnfs.
    /// What `name` in directory `dir` denotes now, looked up without adopting or changing
    /// anything (a primary ordering a removal or a rename by the objects it touches,
    /// Documentation/04-replication-order.md): `Ok(None)` no such name, `Ok(Some((id,
    /// is_dir)))` an object this export knows, `Err(())` cannot tell (a stale directory,
    /// an object not known here).
    #[allow(clippy::result_unit_err)]
    pub fn known_child(&self, dir: &FileHandle, name: &[u8]) -> Result<Option<(FileId, bool)>, ()> {
        let d = self.locate(dir).map_err(|_| ())?;
        let dirfd = d.open_dir().map_err(|_| ())?;
        let os = check_name(name).map_err(|_| ())?;
        let st = match fstatat(dirfd.as_fd(), os, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(_) => return Err(()),
        };
        let life = life::of(dirfd.as_fd(), os);
        let id = self
            .ids
            .by_ino_life(st.st_ino, life)
            .map_err(|_| ())?
            .ok_or(())?;
        Ok(Some((id, ftype_of(&st) == FType3::Dir)))
    }

    pub fn child(&self, dir: &Obj, dirfd: &DirFd, name: &[u8]) -> Result<Obj, Fail> {
        let os = check_name(name)?;
        let st = fstatat(dirfd.as_fd(), os, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let (id, gen) = self.identify(dir.id, dirfd.as_fd(), &[(name, st.st_ino)])?[0];
        Ok(Obj {
            id,
            gen,
            dirfd: dirfd.clone(),
            name: name.to_vec(),
            st,
        })
    }

    /// The identities of entries (name, inode) of directory `dir` (open as `dirfd`), adopting
    /// what was created outside ftnfs. Each entry's life is read, so an object that replaced
    /// a removed one under the same inode number gets a new id. Names that no longer lead to
    /// a known object met under a new name (a rename outside ftnfs) are dropped, so its
    /// handles follow it. On a mirrored export every adoption is logged: a local change is
    /// not mirrored, and `ftnfsctl verify` shows the object as present on this member only.
    pub fn identify(
        &self,
        dir: FileId,
        dirfd: BorrowedFd<'_>,
        entries: &[(&[u8], u64)],
    ) -> Result<Vec<(FileId, Generation)>, Fail> {
        let with_life: Vec<(&[u8], u64, u64)> = entries
            .iter()
            .map(|(n, ino)| (*n, *ino, life::of(dirfd, OsStr::from_bytes(n))))
            .collect();
        self.identify_lives(dir, &with_life)
    }

    /// [`identify`](Self::identify) for entries whose life (`fs/life.rs`) is known: (name,
    /// inode number, life).
    pub fn identify_lives(
        &self,
        dir: FileId,
        with_life: &[(&[u8], u64, u64)],
    ) -> Result<Vec<(FileId, Generation)>, Fail> {
        let entries = with_life;
        let a = self.ids.adopt(dir, with_life)?;
        // named one by one up to a few per listing, then counted: the first listing of a
        // tree made outside ftnfs adopts all of it
        const NAMED: usize = 4;
        let mirrored = self.cfg.mirroring.write_order().is_some();
        for (i, reborn) in a.adopted.iter().take(NAMED) {
            let name = String::from_utf8_lossy(entries[*i].0);
            let file = a.ids[*i].0 .0;
            let what = if *reborn {
                "replaces an object removed outside ftnfs (same inode number): it gets a new file id, old handles are STALE"
            } else {
                "was created outside ftnfs: it gets a file id here"
            };
            if mirrored {
                tracing::warn!(export = self.cfg.id.0, dir = dir.0, name = %name, file, "{what}; a change made outside ftnfs is NOT mirrored: the other members do not have it (ftnfsctl verify lists it)");
            } else if *reborn {
                tracing::info!(export = self.cfg.id.0, dir = dir.0, name = %name, file, "{what}");
            }
        }
        if a.adopted.len() > NAMED && mirrored {
            tracing::warn!(
                export = self.cfg.id.0,
                dir = dir.0,
                more = a.adopted.len() - NAMED,
                "more objects made outside ftnfs in this directory (not mirrored)"
            );
        }
        for id in &a.renamed {
            self.prune_links(*id);
        }
        Ok(a.ids)
    }

    /// Drops the recorded names of `id` that no longer lead to it (renamed or removed
    /// outside ftnfs). Best effort: a name that cannot be checked is kept.
    fn prune_links(&self, id: FileId) {
        let Ok(Some(rec)) = self.ids.get(id) else {
            return;
        };
        let Ok(links) = self.ids.links(id) else {
            return;
        };
        for (parent, name) in links {
            let alive = (|| -> Result<bool, Fail> {
                let pgen = match self.ids.get(parent)? {
                    Some(p) => p.gen,
                    None => return Ok(false),
                };
                let pdir = match self.locate(&FileHandle {
                    export: self.cfg.id,
                    file: parent,
                    gen: pgen,
                }) {
                    Ok(p) => p,
                    Err(Fail(NfsStat3::Stale)) => return Ok(false),
                    Err(e) => return Err(e),
                };
                let fd = pdir.open_dir()?;
                let os = OsStr::from_bytes(&name);
                Ok(
                    match fstatat(fd.as_fd(), os, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) => {
                            st.st_ino == rec.ino && life::same(rec.life, life::of(fd.as_fd(), os))
                        }
                        Err(Errno::ENOENT) => false,
                        Err(e) => return Err(e.into()),
                    },
                )
            })();
            if alive == Ok(false) {
                let _ = self.ids.remove_link(id, parent, &name, false);
            }
        }
    }

    /// The parent directory of `dir` (the root is its own parent: `..` never leaves).
    pub fn parent_of(&self, dir: &Obj) -> Result<Obj, Fail> {
        let pid = match self.ids.first_link(dir.id)? {
            Some((p, _)) => p,
            None => FileId::ROOT,
        };
        let gen = self.ids.get(pid)?.ok_or(Fail(NfsStat3::Stale))?.gen;
        self.locate(&FileHandle {
            export: self.cfg.id,
            file: pid,
            gen,
        })
    }

    /// fattr3 of a stat result, with our file id and the export id as fsid.
    pub fn fattr(&self, id: FileId, st: &FileStat) -> Fattr3 {
        let ftype = ftype_of(st);
        let (maj, min) = if matches!(ftype, FType3::Blk | FType3::Chr) {
            (
                nix::sys::stat::major(st.st_rdev) as u32,
                nix::sys::stat::minor(st.st_rdev) as u32,
            )
        } else {
            (0, 0)
        };
        Fattr3 {
            ftype,
            mode: st.st_mode & 0o7777,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            used: (st.st_blocks as u64).saturating_mul(512),
            rdev: (maj, min),
            fsid: self.cfg.id.0 as u64,
            fileid: id.0,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// fattr3 of an object.
    pub fn attr(&self, o: &Obj) -> Fattr3 {
        self.fattr(o.id, &o.st)
    }
}

/// wcc_attr of a stat result.
pub fn wcc_attr(st: &FileStat) -> WccAttr {
    WccAttr {
        size: st.st_size as u64,
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
    }
}

/// nfstime3 of a stat time (times before 1970 or after 2106 are clamped).
pub fn time(sec: i64, nsec: i64) -> NfsTime3 {
    NfsTime3 {
        seconds: sec.clamp(0, u32::MAX as i64) as u32,
        nseconds: nsec.clamp(0, 999_999_999) as u32,
    }
}

/// ftype3 of a stat result.
pub fn ftype_of(st: &FileStat) -> FType3 {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => FType3::Dir,
        SFlag::S_IFLNK => FType3::Lnk,
        SFlag::S_IFBLK => FType3::Blk,
        SFlag::S_IFCHR => FType3::Chr,
        SFlag::S_IFSOCK => FType3::Sock,
        SFlag::S_IFIFO => FType3::Fifo,
        _ => FType3::Reg,
    }
}

/// Owner and mode of a stat result.
pub fn owner_of(st: &FileStat) -> ftnfs_core::access::Owner {
    ftnfs_core::access::Owner {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        is_dir: SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR,
    }
}
