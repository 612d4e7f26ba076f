//! Open directories by file id (issue 13; `Documentation/13-request-path.md`).
//!
//! Every call resolves its handle to an object, and almost every call touches a directory:
//! the one it changes or lists, or the one holding the object it reads or writes. Opening
//! that directory by its recorded path (`openat2` beneath the root, a walk of every
//! component) and checking it again cost five system calls per call. This cache keeps the
//! directory itself open instead, keyed by file id.
//!
//! Why a kept descriptor is right without any invalidation hook:
//! - it names the inode, not the path: a rename (through ftnfs or not) leaves it correct, and
//!   while it is open the inode cannot be freed, so its number cannot be reused by another
//!   object;
//! - each entry remembers the table record (inode number, life, generation) it was checked
//!   against when it was opened, and is used only while the table still says exactly that
//!   ([`DirCache::get`]): an id that the table now gives to another object (a resync's
//!   clear, a replacement) misses, and the stale entry goes;
//! - a directory removed (through ftnfs or not) has no links: the caller checks `st_nlink`
//!   on the attributes it reads anyway, and drops the entry.
//!
//! What it changes: a directory moved *out of* the export by someone else (not through
//! ftnfs) is still served through handles already cached, as knfsd does with
//! `no_subtree_check`, its default; a cache miss (or a restart) makes such handles STALE.
//!
//! Bounded ([`CAP`] descriptors per export, fewer when the descriptor limit is small:
//! [`set_cap`]; the daemon raises its soft limit to the hard one at start).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use ftnfs_core::ids::FileId;

use super::idtable::ObjRec;

/// Most directories kept open per export.
pub const CAP: usize = 1024;

/// The bound in force per export: [`CAP`], or less when the descriptor limit shared by the
/// exports is small ([`set_cap`]).
static CAP_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(CAP);

/// Sets the per-export bound from the descriptors the daemon may spend on kept directories
/// per export: at most [`CAP`], at least 16.
pub fn set_cap(per_export: u64) {
    let cap = (per_export as usize).clamp(16, CAP);
    CAP_NOW.store(cap, std::sync::atomic::Ordering::Relaxed);
}

/// A directory's own descriptor, shared by the calls that use it at once.
pub type DirFd = Arc<OwnedFd>;

/// The open directories of one export.
#[derive(Default)]
pub struct DirCache {
    map: Mutex<HashMap<u64, (ObjRec, DirFd)>>,
}

impl DirCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (ObjRec, DirFd)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open directory of `id`, if it was opened as the object the table records now
    /// (`rec`, just read from the table); an entry opened under another record is dropped.
    pub fn get(&self, id: FileId, rec: &ObjRec) -> Option<DirFd> {
        let mut m = self.map();
        match m.get(&id.0) {
            Some((r, fd)) if r == rec => Some(fd.clone()),
            Some(_) => {
                m.remove(&id.0);
                None
            }
            None => None,
        }
    }

    /// Keeps `fd`, checked to be the object `rec` describes, as `id`'s directory.
    pub fn put(&self, id: FileId, rec: ObjRec, fd: DirFd) {
        let cap = CAP_NOW.load(std::sync::atomic::Ordering::Relaxed);
        let mut m = self.map();
        if m.len() >= cap && !m.contains_key(&id.0) {
            // bounded: close an arbitrary eighth
            let drop: Vec<u64> = m.keys().take(cap.div_ceil(8)).copied().collect();
            for d in drop {
                m.remove(&d);
            }
        }
        m.insert(id.0, (rec, fd));
    }

    /// Drops `id`'s entry (its directory was found removed).
    pub fn drop_entry(&self, id: FileId) {
        self.map().remove(&id.0);
    }

    /// How many directories are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftnfs_core::ids::Generation;

    fn rec(ino: u64) -> ObjRec {
        ObjRec {
            gen: Generation(1),
            ino,
            life: 7,
        }
    }

    fn fd() -> DirFd {
        Arc::new(OwnedFd::from(std::fs::File::open("/").unwrap()))
    }

    #[test]
    fn an_entry_serves_only_the_record_it_was_opened_as() {
        let c = DirCache::default();
        c.put(FileId(5), rec(10), fd());
        assert!(c.get(FileId(5), &rec(10)).is_some());
        // the table gives id 5 to another object now: a miss, and the entry goes
        assert!(c.get(FileId(5), &rec(11)).is_none());
        assert!(c.get(FileId(5), &rec(10)).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn it_stays_bounded() {
        let c = DirCache::default();
        for i in 0..(CAP as u64 * 3) {
            c.put(FileId(i), rec(i), fd());
            assert!(c.len() <= CAP);
        }
        // the newest entry is always kept
        let last = CAP as u64 * 3 - 1;
        assert!(c.get(FileId(last), &rec(last)).is_some());
    }
}
