//! The identity table of one export (DESIGN.md decision 2): file id ⇄ local object.
//!
//! Kept in a redb database under the state directory, outside the exported tree, so clients
//! never see it and an administrator still sees a plain directory tree.
//!
//! ```text
//!  objects : file id            → (generation, local inode)
//!  links   : (file id, parent file id, name) → ()      every name of the object
//!  inodes  : local inode        → file id              to name what READDIR/LOOKUP find
//!  meta    : "next_id", "generation"
//! ```
//! Every change commits with `Durability::Immediate` before the client's reply is built: a
//! handle we hand out is on disk, so it survives a crash of the server.
//!
//! File ids are never reused. The generation is the table's incarnation: if the state
//! directory is lost and the table is rebuilt, handles from before carry an old generation
//! and are answered with NFS3ERR_STALE instead of reaching whatever object got their id.
//! The root is the exception: its generation is always [`ROOT_GEN`], so that the root handle
//! is the same on every member of a group and across rebuilds (the root cannot be replaced).
//! On a secondary, objects get the id and generation the primary dictated.
//!
//! New ids come from an in-memory counter (loaded from `next_id` at open) so that a primary
//! can decide a new object's id *before* creating it and send that decision to the
//! secondaries at the same moment; each commit persists the counter's high mark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ftnfs_core::ids::{FileId, Generation};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const OBJECTS: TableDefinition<u64, (u32, u64)> = TableDefinition::new("objects");
const LINKS: TableDefinition<(u64, u64, &[u8]), ()> = TableDefinition::new("links");
const INODES: TableDefinition<u64, u64> = TableDefinition::new("inodes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Deepest directory nesting we resolve; deeper trees give NFS3ERR_NAMETOOLONG.
pub const MAX_DEPTH: usize = 1024;

/// Errors of the identity table.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The database failed (I/O, corruption).
    #[error("identity table: {0}")]
    Db(#[from] redb::Error),
    /// An object's chain of parents does not lead to the root (table damaged or too deep).
    #[error("file id {0} has no path to the export root")]
    Orphan(FileId),
    /// The export directory could not be read.
    #[error("export directory: {0}")]
    Io(String),
    /// A dictated file id is already used by another object here: this mirror has diverged.
    #[error("dictated file id {0} is already in use")]
    Taken(FileId),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for IdError {
            fn from(e: $t) -> Self {
                IdError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the table knows of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjRec {
    /// Its generation.
    pub gen: Generation,
    /// Its local inode number on this member.
    pub ino: u64,
}

/// Generation of every export's root.
pub const ROOT_GEN: Generation = Generation(1);

/// One export's table.
pub struct IdTable {
    db: Database,
    gen: Generation,
    next: AtomicU64,
    /// A resync is writing: commits are not synced one by one; [`IdTable::flush`] syncs them.
    bulk: std::sync::atomic::AtomicBool,
}

impl IdTable {
    /// Opens (or creates) the table and makes sure the root is recorded with `root_ino`.
    /// `new_generation` is used only when the table is created.
    pub fn open(path: &Path, root_ino: u64, new_generation: u32) -> Result<IdTable, IdError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        let gen;
        {
            let mut meta = tx.open_table(META)?;
            let g = meta.get("generation")?.map(|v| v.value());
            gen = match g {
                Some(g) => g as u32,
                None => {
                    let g = new_generation.max(1);
                    meta.insert("generation", g as u64)?;
                    meta.insert("next_id", FileId::FIRST_FREE.0)?;
                    g
                }
            };
            let mut objects = tx.open_table(OBJECTS)?;
            let old = objects.get(FileId::ROOT.0)?.map(|v| v.value());
            let old_root = old.map(|v| v.1);
            if old != Some((ROOT_GEN.0, root_ino)) {
                objects.insert(FileId::ROOT.0, (ROOT_GEN.0, root_ino))?;
                let mut inodes = tx.open_table(INODES)?;
                if let Some(old) = old_root {
                    inodes.remove(old)?;
                }
                inodes.insert(root_ino, FileId::ROOT.0)?;
            }
            tx.open_table(LINKS)?;
        }
        tx.commit()?;
        let next = {
            let r = db.begin_read()?;
            let meta = r.open_table(META)?;
            let n = meta.get("next_id")?.map(|v| v.value());
            n.unwrap_or(FileId::FIRST_FREE.0)
        };
        Ok(IdTable {
            db,
            gen: Generation(gen),
            next: AtomicU64::new(next),
            bulk: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Decides the id of an object about to be created (the primary, before it executes and
    /// mirrors a create). An id reserved and never used is simply skipped.
    fn write(&self) -> Result<redb::WriteTransaction, IdError> {
        let mut tx = self.db.begin_write()?;
        if self.bulk.load(Ordering::Relaxed) {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| IdError::Io(e.to_string()))?;
        }
        Ok(tx)
    }

    /// Bulk mode (a resync writing into this mirror): commits skip their sync until
    /// [`flush`](Self::flush). A crash meanwhile loses them, and the resync marker makes the
    /// next start copy everything again.
    pub fn set_bulk(&self, on: bool) {
        self.bulk.store(on, Ordering::Relaxed);
    }

    /// Makes every commit so far durable.
    pub fn flush(&self) -> Result<(), IdError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets every object but the root (a full resync starts from an empty mirror).
    pub fn clear(&self) -> Result<(), IdError> {
        let tx = self.write()?;
        {
            let mut objects = tx.open_table(OBJECTS)?;
            let root = objects.get(FileId::ROOT.0)?.map(|v| v.value());
            objects.retain(|k, _| k == FileId::ROOT.0)?;
            let mut inodes = tx.open_table(INODES)?;
            inodes.retain(|_, v| v == FileId::ROOT.0)?;
            if let Some((_, ino)) = root {
                inodes.insert(ino, FileId::ROOT.0)?;
            }
            tx.open_table(LINKS)?.retain(|_, _| false)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets object `id` and every name recorded for it (the object itself is gone or is
    /// about to be replaced).
    pub fn forget(&self, id: FileId) -> Result<(), IdError> {
        let tx = self.write()?;
        unlink_in(&tx, id, FileId(0), &[], true)?;
        tx.commit()?;
        Ok(())
    }

    pub fn reserve(&self) -> FileId {
        FileId(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Only the root is recorded: nothing was ever created or seen through ftnfs.
    pub fn pristine(&self) -> Result<bool, IdError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OBJECTS)?;
        Ok(t.len()? <= 1)
    }

    /// The generation given to objects of this table.
    pub fn generation(&self) -> Generation {
        self.gen
    }

    /// The record of a file id.
    pub fn get(&self, id: FileId) -> Result<Option<ObjRec>, IdError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OBJECTS)?;
        Ok(t.get(id.0)?.map(|v| {
            let (g, ino) = v.value();
            ObjRec {
                gen: Generation(g),
                ino,
            }
        }))
    }

    /// The file id of a local inode.
    pub fn by_ino(&self, ino: u64) -> Result<Option<FileId>, IdError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INODES)?;
        Ok(t.get(ino)?.map(|v| FileId(v.value())))
    }

    /// One name of an object: (parent, name). `None` for the root or an unknown id.
    pub fn first_link(&self, id: FileId) -> Result<Option<(FileId, Vec<u8>)>, IdError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LINKS)?;
        first_link_in(&t, id)
    }

    /// The object's path relative to the export root ("." for the root), following recorded
    /// names up to the root.
    pub fn path_of(&self, id: FileId) -> Result<PathBuf, IdError> {
        use std::os::unix::ffi::OsStrExt;
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LINKS)?;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur = id;
        while cur != FileId::ROOT {
            if parts.len() >= MAX_DEPTH {
                return Err(IdError::Orphan(id));
            }
            let Some((parent, name)) = first_link_in(&t, cur)? else {
                return Err(IdError::Orphan(id));
            };
            parts.push(name);
            cur = parent;
        }
        if parts.is_empty() {
            return Ok(PathBuf::from("."));
        }
        let mut p = PathBuf::new();
        for n in parts.iter().rev() {
            p.push(std::ffi::OsStr::from_bytes(n));
        }
        Ok(p)
    }

    /// Records a new object created at (parent, name) with local inode `ino`, with the given
    /// identity (a secondary applying the primary's decision) or a fresh one.
    pub fn record_new(
        &self,
        parent: FileId,
        name: &[u8],
        ino: u64,
        dictated: Option<(FileId, Generation)>,
    ) -> Result<(FileId, Generation), IdError> {
        let tx = self.write()?;
        let out = {
            let (id, gen) = match dictated {
                Some(d) => {
                    if tx.open_table(OBJECTS)?.get(d.0 .0)?.is_some() {
                        return Err(IdError::Taken(d.0));
                    }
                    self.next.fetch_max(d.0 .0 + 1, Ordering::Relaxed);
                    d
                }
                None => (self.reserve(), self.gen),
            };
            self.persist_next(&tx)?;
            insert_object(&tx, id, gen, ino)?;
            tx.open_table(LINKS)?.insert((id.0, parent.0, name), ())?;
            (id, gen)
        };
        tx.commit()?;
        Ok(out)
    }

    /// Finds or assigns the identities of entries found in directory `parent` (objects
    /// created outside ftnfs are adopted), in one transaction. Returns them in input order.
    /// Records many new objects with dictated ids in one commit (a resync): (parent, name,
    /// inode, id, generation) each.
    pub fn record_many(
        &self,
        objs: &[(FileId, Vec<u8>, u64, FileId, Generation)],
    ) -> Result<(), IdError> {
        if objs.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        for (parent, name, ino, id, gen) in objs {
            if tx.open_table(OBJECTS)?.get(id.0)?.is_some() {
                return Err(IdError::Taken(*id));
            }
            self.next.fetch_max(id.0 + 1, Ordering::Relaxed);
            insert_object(&tx, *id, *gen, *ino)?;
            tx.open_table(LINKS)?
                .insert((id.0, parent.0, name.as_slice()), ())?;
        }
        self.persist_next(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub fn adopt(
        &self,
        parent: FileId,
        entries: &[(&[u8], u64)],
    ) -> Result<Vec<(FileId, Generation)>, IdError> {
        // Fast path: everything known and linked under this name.
        {
            let tx = self.db.begin_read()?;
            let inodes = tx.open_table(INODES)?;
            let links = tx.open_table(LINKS)?;
            let objects = tx.open_table(OBJECTS)?;
            let mut out = Vec::with_capacity(entries.len());
            for (name, ino) in entries {
                match inodes.get(*ino)?.map(|v| v.value()) {
                    Some(id) if links.get((id, parent.0, *name))?.is_some() => {
                        match objects.get(id)?.map(|v| v.value().0) {
                            Some(g) => out.push((FileId(id), Generation(g))),
                            None => break,
                        }
                    }
                    _ => break,
                }
            }
            if out.len() == entries.len() {
                return Ok(out);
            }
        }
        let tx = self.write()?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, ino) in entries {
            let known = tx.open_table(INODES)?.get(*ino)?.map(|v| v.value());
            let known = match known {
                Some(id) => tx
                    .open_table(OBJECTS)?
                    .get(id)?
                    .map(|v| (FileId(id), Generation(v.value().0))),
                None => None,
            };
            let (id, gen) = match known {
                Some(k) => k,
                None => {
                    let id = self.reserve();
                    insert_object(&tx, id, self.gen, *ino)?;
                    (id, self.gen)
                }
            };
            tx.open_table(LINKS)?.insert((id.0, parent.0, *name), ())?;
            out.push((id, gen));
        }
        self.persist_next(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn persist_next(&self, tx: &redb::WriteTransaction) -> Result<(), IdError> {
        let mut meta = tx.open_table(META)?;
        let want = self.next.load(Ordering::Relaxed);
        let have = meta.get("next_id")?.map(|v| v.value()).unwrap_or(0);
        if want > have {
            meta.insert("next_id", want)?;
        }
        Ok(())
    }

    /// Adds a name for an existing object (LINK).
    pub fn add_link(&self, id: FileId, parent: FileId, name: &[u8]) -> Result<(), IdError> {
        let tx = self.write()?;
        tx.open_table(LINKS)?.insert((id.0, parent.0, name), ())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a name; with `last` the object itself is gone (its id becomes stale).
    pub fn remove_link(
        &self,
        id: FileId,
        parent: FileId,
        name: &[u8],
        last: bool,
    ) -> Result<(), IdError> {
        let tx = self.write()?;
        unlink_in(&tx, id, parent, name, last)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a name (RENAME); `replaced` is the object that the target name used to denote and
    /// whether that was its last name.
    pub fn rename(
        &self,
        id: FileId,
        from: (FileId, &[u8]),
        to: (FileId, &[u8]),
        replaced: Option<(FileId, bool)>,
    ) -> Result<(), IdError> {
        let tx = self.write()?;
        if let Some((victim, last)) = replaced {
            unlink_in(&tx, victim, to.0, to.1, last)?;
        }
        {
            let mut links = tx.open_table(LINKS)?;
            links.remove((id.0, from.0 .0, from.1))?;
            links.insert((id.0, to.0 .0, to.1), ())?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn first_link_in(
    t: &impl ReadableTable<(u64, u64, &'static [u8]), ()>,
    id: FileId,
) -> Result<Option<(FileId, Vec<u8>)>, IdError> {
    let lo: (u64, u64, &[u8]) = (id.0, 0, &[]);
    let mut r = t.range(lo..)?;
    match r.next() {
        Some(e) => {
            let (k, _) = e?;
            let (fid, parent, name) = k.value();
            if fid == id.0 {
                Ok(Some((FileId(parent), name.to_vec())))
            } else {
                Ok(None)
            }
        }
        None => Ok(None),
    }
}

fn insert_object(
    tx: &redb::WriteTransaction,
    id: FileId,
    gen: Generation,
    ino: u64,
) -> Result<(), IdError> {
    let mut objects = tx.open_table(OBJECTS)?;
    let mut inodes = tx.open_table(INODES)?;
    // A reused local inode: the previous object is gone (removed outside ftnfs).
    if let Some(old) = inodes.get(ino)?.map(|v| v.value()) {
        if old != id.0 {
            objects.remove(old)?;
        }
    }
    objects.insert(id.0, (gen.0, ino))?;
    inodes.insert(ino, id.0)?;
    Ok(())
}

fn unlink_in(
    tx: &redb::WriteTransaction,
    id: FileId,
    parent: FileId,
    name: &[u8],
    last: bool,
) -> Result<(), IdError> {
    tx.open_table(LINKS)?.remove((id.0, parent.0, name))?;
    if last {
        let mut objects = tx.open_table(OBJECTS)?;
        if let Some((_, ino)) = objects.remove(id.0)?.map(|v| v.value()) {
            let mut inodes = tx.open_table(INODES)?;
            if inodes.get(ino)?.map(|v| v.value()) == Some(id.0) {
                inodes.remove(ino)?;
            }
        }
        // drop any other names we still had for it
        let mut links = tx.open_table(LINKS)?;
        let stale: Vec<(u64, Vec<u8>)> = links
            .range((id.0, 0, &[][..])..)?
            .map_while(|e| {
                let (k, _) = e.ok()?;
                let (fid, p, n) = k.value();
                (fid == id.0).then(|| (p, n.to_vec()))
            })
            .collect();
        for (p, n) in stale {
            links.remove((id.0, p, n.as_slice()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_reopen_and_removed_ids_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = IdTable::open(&p, 100, 7).unwrap();
        let (d, g) = t.record_new(FileId::ROOT, b"d", 101, None).unwrap();
        assert_eq!(g, Generation(7));
        let (f, _) = t.record_new(d, b"f", 102, None).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("d/f"));
        drop(t);
        let t = IdTable::open(&p, 100, 99).unwrap();
        assert_eq!(t.generation(), Generation(7), "generation kept on reopen");
        assert_eq!(t.by_ino(102).unwrap(), Some(f));
        t.rename(f, (d, b"f"), (FileId::ROOT, b"g"), None).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("g"));
        t.remove_link(f, FileId::ROOT, b"g", true).unwrap();
        assert_eq!(t.get(f).unwrap(), None);
        assert_eq!(t.by_ino(102).unwrap(), None);
        let (f2, _) = t.record_new(d, b"f", 102, None).unwrap();
        assert!(f2.0 > f.0, "ids are never reused");
    }

    #[test]
    fn adopt_is_idempotent_and_links_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 1, 1).unwrap();
        let a = t.adopt(FileId::ROOT, &[(b"x", 50), (b"y", 51)]).unwrap();
        assert_eq!(t.adopt(FileId::ROOT, &[(b"x", 50), (b"y", 51)]).unwrap(), a);
        // a second name of inode 50
        let b = t.adopt(FileId::ROOT, &[(b"x2", 50)]).unwrap();
        assert_eq!(b[0], a[0]);
        t.remove_link(a[0].0, FileId::ROOT, b"x", false).unwrap();
        assert_eq!(t.path_of(a[0].0).unwrap(), PathBuf::from("x2"));
    }

    #[test]
    fn dictated_ids_are_kept_and_a_taken_one_is_refused() {
        // DESIGN.md decision 5: a secondary that cannot use the dictated id must say so.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = IdTable::open(&p, 1, 3).unwrap();
        assert!(t.pristine().unwrap());
        let got = t
            .record_new(FileId::ROOT, b"a", 10, Some((FileId(500), Generation(9))))
            .unwrap();
        assert_eq!(got, (FileId(500), Generation(9)));
        assert!(!t.pristine().unwrap());
        assert!(matches!(
            t.record_new(FileId::ROOT, b"b", 11, Some((FileId(500), Generation(9)))),
            Err(IdError::Taken(FileId(500)))
        ));
        // the counter moved past the dictated id, also across a reopen
        assert!(t.reserve().0 > 500);
        drop(t);
        let t = IdTable::open(&p, 1, 3).unwrap();
        assert!(t.reserve().0 > 500);
        assert_eq!(t.get(FileId::ROOT).unwrap().unwrap().gen, ROOT_GEN);
    }
}
