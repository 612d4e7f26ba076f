//! Byte-range locks of one file, as NLM (the X/Open XNFS "NLM" protocol, v4) and POSIX
//! `fcntl` define them (issue 14): the range arithmetic the lock manager is built on.
//!
//! A lock is held by an *owner* — the client host, its process (`svid`) and the opaque owner
//! handle (`oh`) it sent — on a byte range `[start, end]` (an NLM length of 0 means "to the
//! end of the file", here `end = u64::MAX`), shared (read) or exclusive (write). Two locks
//! conflict when their owners differ, their ranges overlap and either is exclusive. An
//! owner's own locks never conflict with each other: a new lock of an owner *replaces* what
//! that owner held on its range (POSIX: an upgrade, a downgrade, or a split of a larger lock
//! around a smaller one of the other type), and adjacent or overlapping locks of one owner
//! and one type merge. An unlock removes the range from the owner's locks, splitting one
//! that covers more. Pure and bounded: at most [`MAX_LOCKS`] per file.

/// Most locks one file holds (over all owners); a lock that would need more is refused.
pub const MAX_LOCKS: usize = 4096;

/// Who holds a lock: the client host (its `caller_name`), the process id it sent (`svid`)
/// and its owner handle (`oh`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The client host.
    pub host: String,
    /// The process on it.
    pub svid: u32,
    /// The opaque owner handle.
    pub oh: Vec<u8>,
}

/// One held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Who holds it.
    pub owner: Owner,
    /// Exclusive (write) or shared (read).
    pub exclusive: bool,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive; `u64::MAX`: to the end of the file).
    pub end: u64,
}

/// A range given as NLM gives it: offset and length (0: to the end of the file). `None` if
/// it runs past the largest offset (NLM4_FBIG).
pub fn range(offset: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return Some((offset, u64::MAX));
    }
    offset.checked_add(len - 1).map(|end| (offset, end))
}

/// Why a lock was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Another owner holds a conflicting lock (NLM4_DENIED, or the caller blocks): this one.
    Conflict(Lock),
    /// The file holds too many locks (NLM4_DENIED_NOLOCKS).
    NoLocks,
}

/// The locks of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileLocks {
    held: Vec<Lock>,
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

impl FileLocks {
    /// Every lock held, in no particular order.
    pub fn held(&self) -> &[Lock] {
        &self.held
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The first lock of another owner that conflicts with `owner` locking `[start, end]`
    /// (NLM TEST).
    pub fn conflict(&self, owner: &Owner, exclusive: bool, start: u64, end: u64) -> Option<&Lock> {
        self.held.iter().find(|l| {
            l.owner != *owner
                && (exclusive || l.exclusive)
                && overlap((l.start, l.end), (start, end))
        })
    }

    /// `owner` locks `[start, end]`: granted (its own locks on that range are replaced and
    /// merged) or denied, changing nothing.
    pub fn lock(
        &mut self,
        owner: &Owner,
        exclusive: bool,
        start: u64,
        end: u64,
    ) -> Result<(), Denied> {
        if let Some(c) = self.conflict(owner, exclusive, start, end) {
            return Err(Denied::Conflict(c.clone()));
        }
        let mut next = self.without(owner, start, end);
        next.push(Lock {
            owner: owner.clone(),
            exclusive,
            start,
            end,
        });
        let next = merge(next, owner, exclusive);
        if next.len() > MAX_LOCKS {
            return Err(Denied::NoLocks);
        }
        self.held = next;
        Ok(())
    }

    /// `owner` unlocks `[start, end]` (NLM UNLOCK: unlocking what is not held is no error).
    /// Refused only if splitting a lock would exceed [`MAX_LOCKS`].
    pub fn unlock(&mut self, owner: &Owner, start: u64, end: u64) -> Result<(), Denied> {
        let next = self.without(owner, start, end);
        if next.len() > MAX_LOCKS {
            return Err(Denied::NoLocks);
        }
        self.held = next;
        Ok(())
    }

    /// Drops every lock of the owners `which` picks (NLM FREE_ALL, a client's reboot).
    pub fn free(&mut self, which: impl Fn(&Owner) -> bool) {
        self.held.retain(|l| !which(&l.owner));
    }

    /// The locks with `owner`'s locks cut out of `[start, end]`.
    fn without(&self, owner: &Owner, start: u64, end: u64) -> Vec<Lock> {
        let mut out = Vec::with_capacity(self.held.len() + 1);
        for l in &self.held {
            if l.owner != *owner || !overlap((l.start, l.end), (start, end)) {
                out.push(l.clone());
                continue;
            }
            if l.start < start {
                out.push(Lock {
                    end: start - 1,
                    ..l.clone()
                });
            }
            if l.end > end {
                out.push(Lock {
                    start: end + 1,
                    ..l.clone()
                });
            }
        }
        out
    }
}

/// Merges `owner`'s locks of type `exclusive` that overlap or touch.
fn merge(locks: Vec<Lock>, owner: &Owner, exclusive: bool) -> Vec<Lock> {
    let (mut mine, mut out): (Vec<Lock>, Vec<Lock>) = locks
        .into_iter()
        .partition(|l| l.owner == *owner && l.exclusive == exclusive);
    mine.sort_by_key(|l| l.start);
    let mut merged: Vec<Lock> = Vec::with_capacity(mine.len());
    for l in mine {
        match merged.last_mut() {
            Some(m) if l.start <= m.end.saturating_add(1) => m.end = m.end.max(l.end),
            _ => merged.push(l),
        }
    }
    out.extend(merged);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(svid: u32) -> Owner {
        Owner {
            host: "client".into(),
            svid,
            oh: vec![svid as u8],
        }
    }

    fn mine(f: &FileLocks, owner: &Owner) -> Vec<(bool, u64, u64)> {
        let mut v: Vec<_> = f
            .held()
            .iter()
            .filter(|l| l.owner == *owner)
            .map(|l| (l.exclusive, l.start, l.end))
            .collect();
        v.sort_by_key(|x| x.1);
        v
    }

    #[test]
    fn nlm_ranges() {
        assert_eq!(range(10, 0), Some((10, u64::MAX)));
        assert_eq!(range(10, 5), Some((10, 14)));
        assert_eq!(range(u64::MAX, 1), Some((u64::MAX, u64::MAX)));
        assert_eq!(range(u64::MAX, 2), None);
    }

    #[test]
    fn shared_locks_coexist_exclusive_ones_conflict() {
        let mut f = FileLocks::default();
        f.lock(&o(1), false, 0, 99).unwrap();
        f.lock(&o(2), false, 50, 149).unwrap();
        assert!(matches!(f.lock(&o(3), true, 99, 99), Err(Denied::Conflict(l)) if l.owner == o(1)));
        assert!(f.lock(&o(3), true, 150, u64::MAX).is_ok());
        assert_eq!(f.conflict(&o(1), false, 0, 10), None, "own and shared");
        assert!(
            f.conflict(&o(1), true, 60, 60).is_some(),
            "o2 shares 50..149"
        );
    }

    /// POSIX: a lock of the other type inside an owner's lock splits it; the same type merges.
    #[test]
    fn split_merge_upgrade_downgrade() {
        let me = o(1);
        let mut f = FileLocks::default();
        f.lock(&me, false, 0, 99).unwrap();
        f.lock(&me, true, 40, 59).unwrap(); // upgrade the middle
        assert_eq!(
            mine(&f, &me),
            vec![(false, 0, 39), (true, 40, 59), (false, 60, 99)]
        );
        f.lock(&me, false, 40, 59).unwrap(); // downgrade it back: one lock again
        assert_eq!(mine(&f, &me), vec![(false, 0, 99)]);
        f.lock(&me, false, 100, 199).unwrap(); // adjacent: merged
        assert_eq!(mine(&f, &me), vec![(false, 0, 199)]);
        f.unlock(&me, 50, 149).unwrap(); // a hole
        assert_eq!(mine(&f, &me), vec![(false, 0, 49), (false, 150, 199)]);
        f.unlock(&me, 0, u64::MAX).unwrap();
        assert!(f.is_empty());
    }

    #[test]
    fn a_denied_lock_changes_nothing_and_free_drops_a_host() {
        let mut f = FileLocks::default();
        f.lock(&o(1), true, 0, 9).unwrap();
        let before = f.clone();
        assert!(f.lock(&o(2), false, 5, 5).is_err());
        assert_eq!(f, before);
        f.lock(&o(2), true, 10, 19).unwrap();
        f.free(|w| w.svid == 1);
        assert_eq!(f.held().len(), 1);
        assert!(f.lock(&o(3), true, 0, 9).is_ok());
    }

    /// Random lock/unlock sequences over a small file against a model that keeps, per byte,
    /// what each owner holds: the ranges always say exactly what the model says, a lock is
    /// denied exactly when the model has a conflicting byte, and an owner's locks never
    /// overlap or touch when of one type.
    #[test]
    fn ranges_match_a_per_byte_model() {
        const N: usize = 48;
        let owners = [o(1), o(2), o(3)];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _run in 0..300 {
            let mut f = FileLocks::default();
            // model[owner][byte]: 0 none, 1 shared, 2 exclusive; byte N stands for N..=MAX
            let mut model = [[0u8; N + 1]; 3];
            for _ in 0..40 {
                let w = rnd(3) as usize;
                let start = rnd(N as u64) as usize;
                let to_end = rnd(8) == 0;
                let end = if to_end {
                    N
                } else {
                    start + rnd((N - start) as u64) as usize
                };
                let (s, e) = (start as u64, if to_end { u64::MAX } else { end as u64 });
                if rnd(3) == 0 {
                    f.unlock(&owners[w], s, e).unwrap();
                    model[w][start..=end].fill(0);
                } else {
                    let excl = rnd(2) == 0;
                    let clash = (0..3).filter(|x| *x != w).any(|x| {
                        (start..=end).any(|b| model[x][b] == 2 || (excl && model[x][b] == 1))
                    });
                    let r = f.lock(&owners[w], excl, s, e);
                    assert_eq!(r.is_err(), clash, "lock {w} {excl} {s}..{e}: {r:?}");
                    if !clash {
                        model[w][start..=end].fill(if excl { 2 } else { 1 });
                    }
                }
                for (x, who) in owners.iter().enumerate() {
                    let mut got = [0u8; N + 1];
                    let held = mine(&f, who);
                    for (excl, a, b) in &held {
                        let b = (*b).min(N as u64) as usize;
                        for byte in got.iter_mut().take(b + 1).skip(*a as usize) {
                            assert_eq!(*byte, 0, "{who:?}: overlapping locks {held:?}");
                            *byte = if *excl { 2 } else { 1 };
                        }
                    }
                    assert_eq!(got, model[x], "{who:?}: {held:?}");
                    for pair in held.windows(2) {
                        let ((t1, _, e1), (t2, s2, _)) = (pair[0], pair[1]);
                        assert!(t1 != t2 || e1.saturating_add(1) < s2, "unmerged {held:?}");
                    }
                    // a lock that reaches past byte N-1 reaches the end of the file
                    for (_, _, b) in &held {
                        assert!(*b < N as u64 || *b == u64::MAX, "{held:?}");
                    }
                }
            }
        }
    }
}
