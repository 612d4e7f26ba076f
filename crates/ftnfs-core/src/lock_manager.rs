//! The lock manager of one export (issue 14): the byte-range locks of every file
//! ([`crate::locks::FileLocks`]) and the clients waiting for one (an NLM LOCK with `block`
//! set that met a conflict). Pure and deterministic: every member of a mirrored export
//! executes the same calls in the same order on its own manager (the daemon's
//! `ftnfsd/src/lock_table.rs`) and holds the same table; a blocked waiter granted later is
//! returned, and the primary alone sends the client the NLM GRANTED callback. A table is
//! copied entry by entry ([`LockManager::all_held`], [`LockManager::restore_held`] …) in a
//! resync.
//!
//! Rules (X/Open XNFS, NLM v4):
//! - TEST never changes anything; LOCK either grants, denies (no `block`), or queues the
//!   caller (`block`: NLM4_BLOCKED) — a retransmitted blocking LOCK does not queue twice;
//! - waiters of one file are granted in the order they came, each as soon as nothing
//!   conflicts (an UNLOCK, a CANCEL is not needed for that, a FREE_ALL of the holder);
//! - CANCEL takes a waiter out of the queue (it changes no held lock);
//! - FREE_ALL (a client rebooted: its NSM notification) drops every lock and waiter of the
//!   host.
//!
//! Bounded: at most [`MAX_FILES`] files with locks or waiters, [`MAX_WAITERS`] waiters in
//! all, and [`crate::locks::MAX_LOCKS`] locks per file; past a bound, NLM4_DENIED_NOLOCKS.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::locks::{Denied, FileLocks, Lock, Owner};

/// Most files with a lock or a waiter.
pub const MAX_FILES: usize = 65_536;
/// Most blocked waiters, over every file.
pub const MAX_WAITERS: usize = 4096;
/// Most share reservations, over every file.
pub const MAX_SHARES: usize = 4096;

/// A DOS share reservation (NLM SHARE): what its owner does to the file (`access`) and what
/// it denies every other owner (`deny`), each a set of 1 = read, 2 = write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Whose: the client host and its owner handle (a share has no process id).
    pub owner: Owner,
    /// Read (1) and/or write (2) access it has.
    pub access: u32,
    /// Read (1) and/or write (2) access it denies the others.
    pub deny: u32,
}

/// A client waiting for a lock, with what the daemon needs to tell it later (`W`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter<W> {
    /// Who waits.
    pub owner: Owner,
    /// For an exclusive lock.
    pub exclusive: bool,
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
    /// The daemon's part (where to send the GRANTED callback, with which arguments).
    pub token: W,
}

/// What a LOCK got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Held now.
    Granted,
    /// Another owner holds this conflicting lock (no `block`).
    Denied(Lock),
    /// Queued: granted by a later callback.
    Blocked,
    /// A bound was reached.
    NoLocks,
}

/// Why a SHARE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRefused {
    /// Another owner's reservation conflicts (NLM4_DENIED).
    Conflict,
    /// [`MAX_SHARES`] reached (NLM4_DENIED_NOLOCKS).
    NoRoom,
}

/// Every lock and waiter of one member, by file key `K`.
#[derive(Debug, Clone)]
pub struct LockManager<K, W> {
    files: HashMap<K, FileLocks>,
    waiting: HashMap<K, VecDeque<Waiter<W>>>,
    waiters: usize,
    shares: HashMap<K, Vec<Share>>,
    share_count: usize,
}

/// Two tables are equal when they hold the same locks, the same waiters in the same order per
/// file, and the same share reservations (mirrors compare them).
impl<K: Hash + Eq, W: PartialEq> PartialEq for LockManager<K, W> {
    fn eq(&self, o: &Self) -> bool {
        self.files == o.files && self.waiting == o.waiting && self.shares == o.shares
    }
}

impl<K: Hash + Eq, W: Eq> Eq for LockManager<K, W> {}

impl<K, W> Default for LockManager<K, W> {
    fn default() -> Self {
        Self {
            files: HashMap::new(),
            waiting: HashMap::new(),
            waiters: 0,
            shares: HashMap::new(),
            share_count: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, W: Clone> LockManager<K, W> {
    /// The lock of another owner that `owner` locking `[start, end]` would conflict with
    /// (NLM TEST).
    pub fn test(
        &self,
        k: &K,
        owner: &Owner,
        exclusive: bool,
        start: u64,
        end: u64,
    ) -> Option<Lock> {
        self.files
            .get(k)?
            .conflict(owner, exclusive, start, end)
            .cloned()
    }

    /// NLM LOCK: `block` carries the waiter's token when the caller is willing to wait.
    pub fn lock(
        &mut self,
        k: &K,
        owner: &Owner,
        exclusive: bool,
        start: u64,
        end: u64,
        block: Option<W>,
    ) -> LockOutcome {
        if !self.files.contains_key(k) && self.files.len() >= MAX_FILES {
            return LockOutcome::NoLocks;
        }
        let f = self.files.entry(k.clone()).or_default();
        let r = f.lock(owner, exclusive, start, end);
        if f.is_empty() {
            self.files.remove(k);
        }
        match r {
            Ok(()) => LockOutcome::Granted,
            Err(Denied::NoLocks) => LockOutcome::NoLocks,
            Err(Denied::Conflict(c)) => {
                let Some(token) = block else {
                    return LockOutcome::Denied(c);
                };
                let q = self.waiting.entry(k.clone()).or_default();
                let same = |w: &Waiter<W>| {
                    w.owner == *owner
                        && w.exclusive == exclusive
                        && w.start == start
                        && w.end == end
                };
                if q.iter().any(same) {
                    return LockOutcome::Blocked; // a retransmission: already queued
                }
                if self.waiters >= MAX_WAITERS {
                    if q.is_empty() {
                        self.waiting.remove(k);
                    }
                    return LockOutcome::NoLocks;
                }
                q.push_back(Waiter {
                    owner: owner.clone(),
                    exclusive,
                    start,
                    end,
                    token,
                });
                self.waiters += 1;
                LockOutcome::Blocked
            }
        }
    }

    /// NLM CANCEL: takes `owner`'s waiter for this range out of the queue; whether there
    /// was one.
    pub fn cancel(&mut self, k: &K, owner: &Owner, exclusive: bool, start: u64, end: u64) -> bool {
        let Some(q) = self.waiting.get_mut(k) else {
            return false;
        };
        let before = q.len();
        q.retain(|w| {
            !(w.owner == *owner && w.exclusive == exclusive && w.start == start && w.end == end)
        });
        let gone = before - q.len();
        self.waiters -= gone;
        if q.is_empty() {
            self.waiting.remove(k);
        }
        gone > 0
    }

    /// NLM UNLOCK. `Err` only if splitting a lock would pass the bound. The waiters of the
    /// file that hold their lock now, in the order they came.
    pub fn unlock(
        &mut self,
        k: &K,
        owner: &Owner,
        start: u64,
        end: u64,
    ) -> Result<Vec<Waiter<W>>, Denied> {
        if let Some(f) = self.files.get_mut(k) {
            f.unlock(owner, start, end)?;
            if f.is_empty() {
                self.files.remove(k);
            }
        }
        Ok(self.wake(k))
    }

    /// NLM FREE_ALL (or a client's reboot): every lock and waiter of `host` goes. The
    /// waiters of other hosts that hold their lock now, with their files.
    pub fn free_host(&mut self, host: &str) -> Vec<(K, Waiter<W>)> {
        let mut touched: Vec<K> = Vec::new();
        for (k, f) in self.files.iter_mut() {
            let before = f.held().len();
            f.free(|o| o.host == host);
            if f.held().len() != before {
                touched.push(k.clone());
            }
        }
        self.files.retain(|_, f| !f.is_empty());
        let mut gone = 0;
        for q in self.waiting.values_mut() {
            let before = q.len();
            q.retain(|w| w.owner.host != host);
            gone += before - q.len();
        }
        self.waiters -= gone;
        self.waiting.retain(|_, q| !q.is_empty());
        let mut shares = 0;
        for list in self.shares.values_mut() {
            let before = list.len();
            list.retain(|s| s.owner.host != host);
            shares += before - list.len();
        }
        self.share_count -= shares;
        self.shares.retain(|_, l| !l.is_empty());
        let mut out = Vec::new();
        for k in touched {
            out.extend(self.wake(&k).into_iter().map(|w| (k.clone(), w)));
        }
        out
    }

    /// Grants, in queue order, every waiter of `k` that no longer conflicts.
    fn wake(&mut self, k: &K) -> Vec<Waiter<W>> {
        let Some(mut q) = self.waiting.remove(k) else {
            return Vec::new();
        };
        let mut granted = Vec::new();
        let mut still = VecDeque::with_capacity(q.len());
        while let Some(w) = q.pop_front() {
            match self.lock(k, &w.owner, w.exclusive, w.start, w.end, None) {
                LockOutcome::Granted => granted.push(w),
                _ => still.push_back(w),
            }
        }
        self.waiters -= granted.len();
        if !still.is_empty() {
            self.waiting.insert(k.clone(), still);
        }
        granted
    }

    /// NLM SHARE: granted unless another owner's reservation denies what this one accesses,
    /// or this one denies what another accesses (X/Open XNFS). An owner's second SHARE of a
    /// file replaces its first.
    pub fn share(
        &mut self,
        k: &K,
        owner: &Owner,
        access: u32,
        deny: u32,
    ) -> Result<(), ShareRefused> {
        let (access, deny) = (access & 3, deny & 3);
        let list = self.shares.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let conflict = list
            .iter()
            .filter(|s| s.owner != *owner)
            .any(|s| access & s.deny != 0 || deny & s.access != 0);
        if conflict {
            return Err(ShareRefused::Conflict);
        }
        let mine = list.iter().position(|s| s.owner == *owner);
        if mine.is_none() && self.share_count >= MAX_SHARES {
            return Err(ShareRefused::NoRoom);
        }
        let list = self.shares.entry(k.clone()).or_default();
        let share = Share {
            owner: owner.clone(),
            access,
            deny,
        };
        match mine {
            Some(i) => list[i] = share,
            None => {
                list.push(share);
                self.share_count += 1;
            }
        }
        Ok(())
    }

    /// NLM UNSHARE: the owner's reservation of the file goes (none is no error).
    pub fn unshare(&mut self, k: &K, owner: &Owner) {
        if let Some(list) = self.shares.get_mut(k) {
            let before = list.len();
            list.retain(|s| s.owner != *owner);
            self.share_count -= before - list.len();
            if list.is_empty() {
                self.shares.remove(k);
            }
        }
    }

    /// Drops the locks and waiters of every file `keep` refuses (files that no longer
    /// exist: a removed file's locks would otherwise stay until its clients restart).
    /// How many locks and waiters went.
    pub fn retain_files(&mut self, keep: impl Fn(&K) -> bool) -> usize {
        let mut gone = 0;
        self.files.retain(|k, f| {
            let ok = keep(k);
            if !ok {
                gone += f.held().len();
            }
            ok
        });
        let mut waits = 0;
        self.waiting.retain(|k, q| {
            let ok = keep(k);
            if !ok {
                waits += q.len();
            }
            ok
        });
        self.waiters -= waits;
        let mut shares = 0;
        self.shares.retain(|k, l| {
            let ok = keep(k);
            if !ok {
                shares += l.len();
            }
            ok
        });
        self.share_count -= shares;
        gone + waits + shares
    }

    /// The locks held on `k`.
    pub fn held(&self, k: &K) -> &[Lock] {
        self.files.get(k).map(|f| f.held()).unwrap_or(&[])
    }

    /// Every held lock with its file: for `ftnfsctl locks`.
    pub fn all_held(&self) -> Vec<(&K, &Lock)> {
        self.files
            .iter()
            .flat_map(|(k, f)| f.held().iter().map(move |l| (k, l)))
            .collect()
    }

    /// Every blocked waiter with its file.
    pub fn all_waiting(&self) -> Vec<(&K, &Waiter<W>)> {
        self.waiting
            .iter()
            .flat_map(|(k, q)| q.iter().map(move |w| (k, w)))
            .collect()
    }

    /// Every share reservation with its file.
    pub fn all_shares(&self) -> Vec<(&K, &Share)> {
        self.shares
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |s| (k, s)))
            .collect()
    }

    /// Empties the table (another member's is about to be copied in).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Puts back a held lock of another member's table ([`all_held`](Self::all_held)).
    /// `false`: it conflicts with what is here, or a bound is reached.
    pub fn restore_held(&mut self, k: &K, l: &Lock) -> bool {
        matches!(
            self.lock(k, &l.owner, l.exclusive, l.start, l.end, None),
            LockOutcome::Granted
        )
    }

    /// Puts back a waiter of another member's table at the end of its file's queue (give
    /// them in queue order, [`all_waiting`](Self::all_waiting)). `false`: over the bound.
    pub fn restore_waiter(&mut self, k: &K, w: Waiter<W>) -> bool {
        if self.waiters >= MAX_WAITERS {
            return false;
        }
        self.waiting.entry(k.clone()).or_default().push_back(w);
        self.waiters += 1;
        true
    }

    /// Puts back a share reservation of another member's table. `false`: it conflicts, or
    /// the bound is reached.
    pub fn restore_share(&mut self, k: &K, s: &Share) -> bool {
        self.share(k, &s.owner, s.access, s.deny).is_ok()
    }

    /// (files with locks, locks, waiters): for status.
    pub fn counts(&self) -> (usize, usize, usize) {
        let locks = self.files.values().map(|f| f.held().len()).sum();
        (self.files.len(), locks, self.waiters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_copied_entry_by_entry_is_the_same_table() {
        let mut m: LockManager<u32, u32> = LockManager::default();
        let (a, b, c) = (who("a", 1), who("b", 2), who("c", 3));
        assert_eq!(m.lock(&1, &a, false, 0, 9, None), LockOutcome::Granted);
        assert_eq!(m.lock(&1, &a, true, 10, 19, None), LockOutcome::Granted);
        assert_eq!(m.lock(&1, &b, false, 0, 4, None), LockOutcome::Granted);
        assert_eq!(m.lock(&1, &c, true, 0, 0, Some(30)), LockOutcome::Blocked);
        assert_eq!(m.lock(&1, &b, true, 12, 12, Some(31)), LockOutcome::Blocked);
        assert_eq!(
            m.lock(&2, &c, true, 5, u64::MAX, None),
            LockOutcome::Granted
        );
        m.share(&3, &a, 1, 2).unwrap();
        let mut copy: LockManager<u32, u32> = LockManager::default();
        copy.lock(&9, &a, true, 0, 0, None); // whatever was there goes
        copy.clear();
        for (k, l) in m.all_held() {
            assert!(copy.restore_held(k, l));
        }
        for (k, w) in m.all_waiting() {
            assert!(copy.restore_waiter(k, w.clone()));
        }
        for (k, s) in m.all_shares() {
            assert!(copy.restore_share(k, s));
        }
        assert_eq!(copy.counts(), m.counts());
        for k in [1, 2, 3, 9] {
            assert_eq!(copy.held(&k), m.held(&k));
        }
        // the copy grants the same waiters in the same order when the holders go
        let mut g1 = m.unlock(&1, &a, 0, u64::MAX).unwrap();
        let mut g2 = copy.unlock(&1, &a, 0, u64::MAX).unwrap();
        assert_eq!(g1, g2);
        g1 = m.unlock(&1, &b, 0, u64::MAX).unwrap();
        g2 = copy.unlock(&1, &b, 0, u64::MAX).unwrap();
        assert_eq!(g1, g2);
        assert_eq!(g1.len(), 1, "c's waiter, after b's own went with b's locks");
        assert_eq!(copy.share(&3, &b, 2, 0), Err(ShareRefused::Conflict));
    }

    fn who(host: &str, svid: u32) -> Owner {
        Owner {
            host: host.into(),
            svid,
            oh: vec![svid as u8],
        }
    }

    #[test]
    fn a_blocked_waiter_is_granted_when_the_holder_unlocks() {
        let mut m: LockManager<u64, &str> = LockManager::default();
        let (a, b, c) = (who("a", 1), who("b", 2), who("c", 3));
        assert_eq!(m.lock(&7, &a, true, 0, 9, None), LockOutcome::Granted);
        assert_eq!(
            m.test(&7, &b, false, 5, 5).map(|l| l.owner),
            Some(a.clone())
        );
        assert!(matches!(
            m.lock(&7, &b, false, 5, 5, None),
            LockOutcome::Denied(_)
        ));
        assert_eq!(m.lock(&7, &b, false, 5, 5, Some("b")), LockOutcome::Blocked);
        assert_eq!(m.lock(&7, &b, false, 5, 5, Some("b")), LockOutcome::Blocked);
        assert_eq!(m.counts().2, 1, "a retransmission does not queue twice");
        assert_eq!(m.lock(&7, &c, true, 8, 20, Some("c")), LockOutcome::Blocked);
        // a part of a's lock goes: nobody's range is free yet
        assert!(m.unlock(&7, &a, 0, 1).unwrap().is_empty());
        // the rest goes: b (shared on 5) and then c (exclusive on 8–20) both fit
        let granted = m.unlock(&7, &a, 0, u64::MAX).unwrap();
        assert_eq!(
            granted.iter().map(|w| w.token).collect::<Vec<_>>(),
            vec!["b", "c"]
        );
        assert_eq!(m.counts(), (1, 2, 0));
        assert!(m.test(&7, &a, true, 5, 5).is_some(), "b holds 5");
        assert!(m.test(&7, &a, false, 5, 5).is_none(), "shared with shared");
        // b and c do not conflict with each other's ranges; a waits on c's
        assert_eq!(
            m.lock(&7, &a, false, 10, 10, Some("a")),
            LockOutcome::Blocked
        );
        assert!(m.cancel(&7, &a, false, 10, 10));
        assert!(!m.cancel(&7, &a, false, 10, 10));
        assert_eq!(m.counts().2, 0);
    }

    #[test]
    fn a_rebooted_host_frees_its_locks_and_its_waits() {
        let mut m: LockManager<u64, u32> = LockManager::default();
        let (a, b) = (who("a", 1), who("b", 2));
        assert_eq!(
            m.lock(&1, &a, true, 0, u64::MAX, None),
            LockOutcome::Granted
        );
        assert_eq!(m.lock(&2, &b, true, 0, 0, None), LockOutcome::Granted);
        assert_eq!(m.lock(&1, &b, true, 0, 0, Some(10)), LockOutcome::Blocked);
        assert_eq!(m.lock(&2, &a, true, 0, 0, Some(20)), LockOutcome::Blocked);
        let granted = m.free_host("a");
        assert_eq!(granted.len(), 1);
        assert_eq!((granted[0].0, granted[0].1.token), (1, 10));
        assert_eq!(m.counts(), (2, 2, 0), "a's wait on file 2 went too");
        assert!(m.free_host("b").is_empty());
        assert_eq!(m.counts(), (0, 0, 0));
    }

    #[test]
    fn the_locks_of_files_that_are_gone_are_dropped() {
        let mut m: LockManager<u64, ()> = LockManager::default();
        assert_eq!(
            m.lock(&1, &who("a", 1), true, 0, 0, None),
            LockOutcome::Granted
        );
        assert_eq!(
            m.lock(&2, &who("a", 1), true, 0, 0, None),
            LockOutcome::Granted
        );
        assert_eq!(
            m.lock(&2, &who("b", 2), true, 0, 0, Some(())),
            LockOutcome::Blocked
        );
        assert_eq!(m.retain_files(|k| *k != 2), 2);
        assert_eq!(m.counts(), (1, 1, 0));
        assert_eq!(
            m.lock(&2, &who("b", 2), true, 0, 0, None),
            LockOutcome::Granted
        );
    }

    #[test]
    fn share_reservations_deny_what_others_access() {
        let mut m: LockManager<u64, ()> = LockManager::default();
        let (a, b) = (who("a", 0), who("b", 0));
        // a reads and denies writers
        assert_eq!(m.share(&1, &a, 1, 2), Ok(()));
        assert_eq!(
            m.share(&1, &b, 2, 0),
            Err(ShareRefused::Conflict),
            "b wants to write"
        );
        assert_eq!(
            m.share(&1, &b, 1, 1),
            Err(ShareRefused::Conflict),
            "b denies the reader a"
        );
        assert_eq!(m.share(&1, &b, 1, 0), Ok(()), "another reader");
        // a's second share replaces its first: now it denies readers, which b is
        assert_eq!(m.share(&1, &a, 1, 1), Err(ShareRefused::Conflict));
        assert_eq!(m.share(&1, &a, 3, 0), Ok(()));
        m.unshare(&1, &b);
        assert_eq!(
            m.share(&1, &b, 0, 3),
            Err(ShareRefused::Conflict),
            "a reads and writes"
        );
        m.unshare(&1, &a);
        assert_eq!(m.share(&1, &b, 0, 3), Ok(()));
        assert!(m.free_host("b").is_empty());
        assert_eq!(
            m.share(&1, &a, 3, 3),
            Ok(()),
            "b's host restarted: its share went"
        );
        assert_eq!(m.retain_files(|_| false), 1);
        assert_eq!(m.share_count, 0);
    }

    #[test]
    fn waiters_are_bounded() {
        let mut m: LockManager<u64, ()> = LockManager::default();
        assert_eq!(
            m.lock(&1, &who("h", 0), true, 0, 0, None),
            LockOutcome::Granted
        );
        for i in 1..=MAX_WAITERS as u32 {
            assert_eq!(
                m.lock(&1, &who("w", i), true, 0, 0, Some(())),
                LockOutcome::Blocked
            );
        }
        assert_eq!(
            m.lock(&1, &who("w", 0), true, 0, 0, Some(())),
            LockOutcome::NoLocks
        );
        // one goes: room for one more
        assert!(m.cancel(&1, &who("w", 1), true, 0, 0));
        assert_eq!(
            m.lock(&1, &who("w", 0), true, 0, 0, Some(())),
            LockOutcome::Blocked
        );
    }
}
