//! A bounded cache of directory listings in cookie order (READDIR and READDIRPLUS): listing
//! a directory of n entries takes n / (entries per reply) calls, and without the cache each
//! call read and sorted the whole directory again — quadratic (issue 13: 40,000 entries took
//! 21 s against Ganesha's 0.27 s). Now one call reads and sorts it, the next ones find their
//! place by binary search.
//!
//! A listing stays valid while nothing changed the directory:
//! - every namespace update this daemon makes (`nfs3_procs`: CREATE…LINK, on the primary and
//!   on a secondary applying it) and every object a resync writes *forgets* the directories
//!   it changed — before and after the change, and a listing read while any directory was
//!   forgotten is not kept (a scan that raced with a change may miss it);
//! - a listing also remembers the directory's inode and ctime, and one that no longer
//!   matches is read again (a change made behind the daemon's back, at the granularity of
//!   the kernel's timestamps).
//!
//! Bounded: at most `MAX_DIRS` listings and `MAX_ENTRIES` entries over all of them; the
//! least recently used goes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ftnfs_core::ids::{FileId, Generation};

/// Most directories with a kept listing.
const MAX_DIRS: usize = 64;
/// Most entries kept over all listings.
const MAX_ENTRIES: usize = 1 << 20;

/// One directory's entries: (cookie, name, inode, life), sorted by cookie, without `.` and
/// `..`. The life (`fs/life.rs`: which object an inode number is) is read once with the
/// listing: it cannot change while the directory does not (a new object under a name is a
/// change of the directory).
///
/// Each entry's identity (file id, generation) is kept beside it once a READDIRPLUS or
/// READDIR found it: it cannot change either while the directory does not (a warm
/// READDIRPLUS spent a quarter of its time in the identity table's lookups).
pub type Entries = Arc<Listing>;

/// A directory's entries in cookie order and the identities found for them so far.
#[derive(Debug)]
pub struct Listing {
    entries: Vec<(u64, Vec<u8>, u64, u64)>,
    ids: Vec<OnceLock<(FileId, Generation)>>,
}

impl Listing {
    /// `entries` sorted by cookie.
    pub fn new(entries: Vec<(u64, Vec<u8>, u64, u64)>) -> Listing {
        let ids = (0..entries.len()).map(|_| OnceLock::new()).collect();
        Listing { entries, ids }
    }

    /// The identity found for entry `i`, if any.
    pub fn id(&self, i: usize) -> Option<(FileId, Generation)> {
        self.ids.get(i).and_then(|c| c.get().copied())
    }

    /// Entry `i` is `id` (found by the identity table while this listing was valid).
    pub fn found(&self, i: usize, id: (FileId, Generation)) {
        if let Some(c) = self.ids.get(i) {
            let _ = c.set(id);
        }
    }
}

impl std::ops::Deref for Listing {
    type Target = [(u64, Vec<u8>, u64, u64)];
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

/// What a listing was read from: the directory's inode and ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Inode number.
    pub ino: u64,
    /// ctime, seconds and nanoseconds.
    pub ctime: (i64, i64),
}

struct Kept {
    stamp: Stamp,
    entries: Entries,
    used: u64,
}

#[derive(Default)]
struct Inner {
    dirs: HashMap<FileId, Kept>,
    total: usize,
    /// Bumped by every `forget`: a listing read across a bump is not kept.
    changes: u64,
    clock: u64,
}

/// The listings of one export.
#[derive(Default)]
pub struct Listings {
    inner: Mutex<Inner>,
}

impl Listings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept listing of `dir` if it was read at `stamp`; else `None` and a token to pass
    /// to [`keep`](Self::keep) with the listing read now.
    pub fn get(&self, dir: FileId, stamp: Stamp) -> Result<Entries, u64> {
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        let changes = g.changes;
        match g.dirs.get_mut(&dir) {
            Some(k) if k.stamp == stamp => {
                k.used = now;
                Ok(k.entries.clone())
            }
            _ => Err(changes),
        }
    }

    /// Keeps a listing read after [`get`](Self::get) returned `token`, unless a directory
    /// changed since (through [`forget`](Self::forget)).
    pub fn keep(&self, dir: FileId, stamp: Stamp, entries: Entries, token: u64) {
        let mut g = self.lock();
        if g.changes != token || entries.len() > MAX_ENTRIES / 2 {
            return;
        }
        if let Some(old) = g.dirs.remove(&dir) {
            g.total -= old.entries.len();
        }
        while !g.dirs.is_empty()
            && (g.dirs.len() >= MAX_DIRS || g.total + entries.len() > MAX_ENTRIES)
        {
            let lru = g
                .dirs
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(d, _)| *d)
                .expect("not empty");
            if let Some(k) = g.dirs.remove(&lru) {
                g.total -= k.entries.len();
            }
        }
        g.clock += 1;
        let used = g.clock;
        g.total += entries.len();
        g.dirs.insert(
            dir,
            Kept {
                stamp,
                entries,
                used,
            },
        );
    }

    /// `dir`'s entries change (call before and after the change).
    pub fn forget(&self, dir: FileId) {
        let mut g = self.lock();
        g.changes += 1;
        if let Some(k) = g.dirs.remove(&dir) {
            g.total -= k.entries.len();
        }
    }

    /// `dir`'s entries are about to change: its listing is forgotten now and again when the
    /// returned guard drops (whatever path the change takes out).
    pub fn changing(&self, dir: FileId) -> Changing<'_> {
        self.forget(dir);
        Changing(self, dir)
    }

    /// Every directory may change (a resync writes the export).
    pub fn forget_all(&self) {
        let mut g = self.lock();
        g.changes += 1;
        g.dirs.clear();
        g.total = 0;
    }
}

/// See [`Listings::changing`].
pub struct Changing<'a>(&'a Listings, FileId);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(c: i64) -> Stamp {
        Stamp {
            ino: 5,
            ctime: (c, 0),
        }
    }

    fn list(n: u64) -> Entries {
        Arc::new(Listing::new(
            (0..n).map(|i| (i + 3, vec![b'x'], i, 0)).collect(),
        ))
    }

    #[test]
    fn a_listing_is_kept_until_its_directory_changes() {
        let l = Listings::default();
        let d = FileId(9);
        let t = l.get(d, st(1)).unwrap_err();
        l.keep(d, st(1), list(3), t);
        assert_eq!(l.get(d, st(1)).unwrap().len(), 3);
        // changed behind our back: another ctime
        assert!(l.get(d, st(2)).is_err());
        // changed by us
        l.forget(d);
        assert!(l.get(d, st(1)).is_err());
    }

    #[test]
    fn a_listing_read_across_a_change_is_not_kept() {
        let l = Listings::default();
        let d = FileId(9);
        let t = l.get(d, st(1)).unwrap_err();
        l.forget(FileId(10)); // a CREATE somewhere while we read
        l.keep(d, st(1), list(3), t);
        assert!(l.get(d, st(1)).is_err());
    }

    #[test]
    fn listings_are_bounded_and_the_least_recently_used_goes() {
        let l = Listings::default();
        for i in 0..(MAX_DIRS as u64 + 10) {
            let t = l.get(FileId(i), st(1)).unwrap_err();
            l.keep(FileId(i), st(1), list(2), t);
            // keep dir 0 in use
            let _ = l.get(FileId(0), st(1));
        }
        let g = l.lock();
        assert_eq!(g.dirs.len(), MAX_DIRS);
        assert!(g.dirs.contains_key(&FileId(0)));
        assert_eq!(g.total, 2 * MAX_DIRS);
    }
}
