//! The replication order (DESIGN.md decision 3; Documentation/04-replication-order.md).
//!
//! The primary numbers every update of an export. Two updates that touch the same object must
//! be applied in number order on every member — the primary included — or two clients writing
//! one file could leave the mirrors different. Unrelated updates may run in parallel.
//!
//! Each update names what it waits for:
//! - `deps`: the last earlier update that touched each object it touches (file data and
//!   attribute updates — WRITE, SETATTR, COMMIT — touch just their file), and the last
//!   earlier *barrier*;
//! - `barrier`: a namespace update (CREATE, REMOVE, RENAME, LINK, …) waits for *every*
//!   earlier update. A namespace update can change the path of many objects at once (a
//!   directory rename), so it is simplest and safe to put it in total order.
//!
//! [`Applied`] records which numbers are done; [`ready`] is the rule. The same code decides on
//! the primary (when may the local execution start) and on each secondary.

use std::collections::BTreeSet;

use crate::ids::SeqNo;

/// Which update numbers are applied: everything up to a watermark, plus a set above it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    watermark: SeqNo,
    above: BTreeSet<SeqNo>,
}

impl Applied {
    /// Everything up to and including `base` counts as applied (a member that joins at
    /// `base`, or a fresh export at 0).
    pub fn starting_at(base: SeqNo) -> Self {
        Self {
            watermark: base,
            above: BTreeSet::new(),
        }
    }

    /// Every number ≤ this is applied.
    pub fn watermark(&self) -> SeqNo {
        self.watermark
    }

    /// Numbers above the watermark that are applied (gaps below them are not).
    pub fn holes_above(&self) -> usize {
        self.above.len()
    }

    /// Whether `s` is applied.
    pub fn contains(&self, s: SeqNo) -> bool {
        s <= self.watermark || self.above.contains(&s)
    }

    /// Marks `s` applied, moving the watermark over every contiguous number.
    pub fn insert(&mut self, s: SeqNo) {
        if s <= self.watermark {
            return;
        }
        self.above.insert(s);
        while self.above.remove(&self.watermark.next()) {
            self.watermark = self.watermark.next();
        }
    }
}

/// Whether update `seq` with these `deps` and `barrier` flag may be applied now.
pub fn ready(applied: &Applied, seq: SeqNo, deps: &[SeqNo], barrier: bool) -> bool {
    if barrier && applied.watermark() < SeqNo(seq.0.saturating_sub(1)) {
        return false;
    }
    deps.iter().all(|d| applied.contains(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_moves_over_contiguous_numbers_only() {
        let mut a = Applied::starting_at(SeqNo(0));
        a.insert(SeqNo(2));
        a.insert(SeqNo(4));
        assert_eq!(a.watermark(), SeqNo(0));
        assert!(a.contains(SeqNo(2)) && !a.contains(SeqNo(1)) && !a.contains(SeqNo(3)));
        a.insert(SeqNo(1));
        assert_eq!(a.watermark(), SeqNo(2));
        a.insert(SeqNo(3));
        assert_eq!(a.watermark(), SeqNo(4));
        assert_eq!(a.holes_above(), 0);
        a.insert(SeqNo(3)); // a duplicate changes nothing
        assert_eq!(a.watermark(), SeqNo(4));
    }

    #[test]
    fn barrier_waits_for_everything_before_it() {
        let mut a = Applied::starting_at(SeqNo(0));
        a.insert(SeqNo(2));
        assert!(!ready(&a, SeqNo(3), &[], true));
        assert!(ready(&a, SeqNo(3), &[SeqNo(2)], false));
        a.insert(SeqNo(1));
        assert!(ready(&a, SeqNo(3), &[], true));
    }

    #[test]
    fn dependent_update_waits_for_its_dependency() {
        let a = Applied::starting_at(SeqNo(5));
        assert!(ready(&a, SeqNo(9), &[SeqNo(5)], false));
        assert!(!ready(&a, SeqNo(9), &[SeqNo(7)], false));
    }
}
