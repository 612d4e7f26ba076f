//! A secondary of one export: applies the primary's updates in the replication order, each
//! once, and acknowledges each with the status it computed (patent Figure 3; DESIGN.md
//! decision 3).
//!
//! Updates may arrive late, twice or out of order (a resend after a lost ack, a reconnect):
//! an update already applied is acknowledged again with the status it had; one already
//! waiting or running is ignored; one too far ahead of what is applied is dropped (the
//! primary resends it), which bounds what a secondary holds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::order::{ready, Applied};
use super::Update;
use crate::ids::{Epoch, ExportId, SeqNo};

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondaryEffect<P> {
    /// Apply this update locally, then call [`Secondary::applied`].
    Apply(Update<P>),
    /// Acknowledge `seq` to the primary.
    Ack {
        /// The epoch acknowledged in.
        epoch: Epoch,
        /// The update.
        seq: SeqNo,
        /// The status this member computed.
        status: u32,
    },
    /// Tell the sender that its epoch is not ours.
    Refuse {
        /// The update refused.
        seq: SeqNo,
        /// Our epoch.
        ours: Epoch,
    },
}

/// Counters for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondaryStats {
    /// Updates applied.
    pub applied: u64,
    /// Copies ignored or re-acknowledged.
    pub duplicates: u64,
    /// Updates dropped for being too far ahead.
    pub too_far: u64,
    /// Updates refused for their epoch.
    pub refused: u64,
}

/// The secondary's state for one export.
#[derive(Debug)]
pub struct Secondary<P> {
    export: ExportId,
    epoch: Epoch,
    window: u64,
    applied: Applied,
    waiting: BTreeMap<SeqNo, Update<P>>,
    running: BTreeSet<SeqNo>,
    /// Updates known by their order only (proxy mode, [`super::proxy`]): the client's
    /// datagram is awaited or being fetched. They count in the backlog, and nothing after
    /// the first of them is applied until its update is here: a hole below an applied update
    /// is not where the watermark, or the change log's highest update after a crash, says
    /// the mirror stands (sim_group seeds 3001593, 3002392).
    ordered: BTreeSet<SeqNo>,
    /// Statuses of recently applied updates, to re-acknowledge duplicates.
    results: BTreeMap<SeqNo, u32>,
    effects: VecDeque<SecondaryEffect<P>>,
    stats: SecondaryStats,
}

impl<P: Clone> Secondary<P> {
    /// A secondary in `epoch` whose state is that of update `base`. It holds at most `window`
    /// updates beyond what it has applied (the primary's `max_pending` must not exceed it).
    pub fn new(export: ExportId, epoch: Epoch, base: SeqNo, window: u64) -> Self {
        Self {
            export,
            epoch,
            window: window.max(1),
            applied: Applied::starting_at(base),
            waiting: BTreeMap::new(),
            running: BTreeSet::new(),
            ordered: BTreeSet::new(),
            results: BTreeMap::new(),
            effects: VecDeque::new(),
            stats: SecondaryStats::default(),
        }
    }

    /// The export.
    pub fn export(&self) -> ExportId {
        self.export
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Every update up to this one is applied here.
    pub fn watermark(&self) -> SeqNo {
        self.applied.watermark()
    }

    /// Counters.
    pub fn stats(&self) -> SecondaryStats {
        self.stats
    }

    /// Whether update `seq` is applied, being applied, waiting or ordered here.
    pub fn knows(&self, seq: SeqNo) -> bool {
        self.applied.contains(seq)
            || self.running.contains(&seq)
            || self.waiting.contains_key(&seq)
            || self.ordered.contains(&seq)
    }

    /// The primary's order for update `seq` (proxy mode): `true` if the shell is to find its
    /// datagram (`proxy::ProxyHold`) and hand the whole update to [`on_update`] — until
    /// then it counts in the backlog. Otherwise it was answered as the update would be: a
    /// refusal of another epoch, a duplicate acknowledged again or ignored, one too far
    /// ahead dropped (the primary sends it again, whole).
    ///
    /// [`on_update`]: Self::on_update
    pub fn on_order(&mut self, epoch: Epoch, seq: SeqNo) -> bool {
        if epoch != self.epoch {
            self.stats.refused += 1;
            self.effects.push_back(SecondaryEffect::Refuse {
                seq,
                ours: self.epoch,
            });
            return false;
        }
        if self.applied.contains(seq) {
            self.stats.duplicates += 1;
            if let Some(&status) = self.results.get(&seq) {
                self.effects.push_back(SecondaryEffect::Ack {
                    epoch: self.epoch,
                    seq,
                    status,
                });
            }
            return false;
        }
        if self.knows(seq) {
            self.stats.duplicates += 1;
            return false;
        }
        if seq.0 > self.applied.watermark().0 + self.window {
            self.stats.too_far += 1;
            return false;
        }
        self.ordered.insert(seq);
        true
    }

    /// Updates known by their order only, their datagram or fetch awaited (proxy mode).
    pub fn ordered(&self) -> usize {
        self.ordered.len()
    }

    /// Updates being applied right now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Updates received (or ordered) but not yet applied.
    pub fn backlog(&self) -> usize {
        self.waiting.len() + self.running.len() + self.ordered.len()
    }

    /// An update from the primary.
    pub fn on_update(&mut self, u: Update<P>) {
        if u.epoch == self.epoch {
            self.ordered.remove(&u.seq);
        }
        if u.epoch != self.epoch || u.export != self.export {
            self.stats.refused += 1;
            self.effects.push_back(SecondaryEffect::Refuse {
                seq: u.seq,
                ours: self.epoch,
            });
            return;
        }
        if self.applied.contains(u.seq) {
            self.stats.duplicates += 1;
            if let Some(&status) = self.results.get(&u.seq) {
                self.effects.push_back(SecondaryEffect::Ack {
                    epoch: self.epoch,
                    seq: u.seq,
                    status,
                });
            }
            return;
        }
        if self.running.contains(&u.seq) || self.waiting.contains_key(&u.seq) {
            self.stats.duplicates += 1;
            return;
        }
        if u.seq.0 > self.applied.watermark().0 + self.window {
            self.stats.too_far += 1;
            return;
        }
        self.waiting.insert(u.seq, u);
        self.start_ready();
    }

    /// The shell applied `seq`, computing `status`.
    pub fn applied(&mut self, seq: SeqNo, status: u32) {
        if !self.running.remove(&seq) {
            return;
        }
        self.applied.insert(seq);
        self.stats.applied += 1;
        self.results.insert(seq, status);
        let floor = SeqNo(self.applied.watermark().0.saturating_sub(self.window));
        while let Some((&s, _)) = self.results.first_key_value() {
            if s >= floor {
                break;
            }
            self.results.remove(&s);
        }
        self.effects.push_back(SecondaryEffect::Ack {
            epoch: self.epoch,
            seq,
            status,
        });
        self.start_ready();
    }

    /// The next thing to do.
    pub fn poll_effect(&mut self) -> Option<SecondaryEffect<P>> {
        self.effects.pop_front()
    }

    fn start_ready(&mut self) {
        // nothing beyond an update known by its order only: such a hole below an applied
        // update survives a crash unseen (the change log's highest update is taken for the
        // member's position) — relay delivers in order and makes none
        let below = self.ordered.first().copied().unwrap_or(SeqNo(u64::MAX));
        let go: Vec<SeqNo> = self
            .waiting
            .values()
            .filter(|u| u.seq < below && ready(&self.applied, u.seq, &u.deps, u.barrier))
            .map(|u| u.seq)
            .collect();
        for s in go {
            if let Some(u) = self.waiting.remove(&s) {
                self.running.insert(s);
                self.effects.push_back(SecondaryEffect::Apply(u));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(seq: u64, deps: &[u64], barrier: bool) -> Update<&'static str> {
        Update {
            export: ExportId(7),
            epoch: Epoch(1),
            seq: SeqNo(seq),
            deps: deps.iter().map(|d| SeqNo(*d)).collect(),
            barrier,
            payload: "x",
        }
    }

    fn drain(s: &mut Secondary<&'static str>) -> Vec<SecondaryEffect<&'static str>> {
        std::iter::from_fn(|| s.poll_effect()).collect()
    }

    #[test]
    fn out_of_order_arrival_is_applied_in_order() {
        let mut s = Secondary::new(ExportId(7), Epoch(1), SeqNo(0), 64);
        s.on_update(upd(2, &[1], false));
        assert!(drain(&mut s).is_empty());
        s.on_update(upd(1, &[], false));
        assert!(matches!(&drain(&mut s)[..], [SecondaryEffect::Apply(u)] if u.seq == SeqNo(1)));
        s.applied(SeqNo(1), 0);
        let e = drain(&mut s);
        assert!(matches!(e[0], SecondaryEffect::Ack { seq: SeqNo(1), .. }));
        assert!(matches!(&e[1], SecondaryEffect::Apply(u) if u.seq == SeqNo(2)));
    }

    #[test]
    fn duplicates_are_reacked_or_ignored_never_reapplied() {
        let mut s = Secondary::new(ExportId(7), Epoch(1), SeqNo(0), 64);
        s.on_update(upd(1, &[], true));
        s.on_update(upd(1, &[], true));
        assert_eq!(drain(&mut s).len(), 1);
        s.applied(SeqNo(1), 5);
        drain(&mut s);
        s.on_update(upd(1, &[], true));
        assert_eq!(
            drain(&mut s),
            vec![SecondaryEffect::Ack {
                epoch: Epoch(1),
                seq: SeqNo(1),
                status: 5
            }]
        );
        assert_eq!(s.stats().applied, 1);
    }

    #[test]
    fn an_order_counts_in_the_backlog_and_holds_what_follows_until_its_update_comes() {
        let mut s = Secondary::new(ExportId(7), Epoch(1), SeqNo(0), 64);
        assert!(s.on_order(Epoch(1), SeqNo(1)));
        assert_eq!(s.backlog(), 1);
        // a later independent update waits behind it: no hole below an applied update
        s.on_update(upd(2, &[], false));
        assert!(drain(&mut s).is_empty());
        assert_eq!((s.watermark(), s.backlog()), (SeqNo(0), 2));
        assert!(!s.on_order(Epoch(1), SeqNo(1)), "a second copy");
        assert!(!s.on_order(Epoch(1), SeqNo(2)), "waiting already");
        assert!(!s.on_order(Epoch(2), SeqNo(3)));
        assert!(matches!(
            drain(&mut s)[..],
            [SecondaryEffect::Refuse { .. }]
        ));
        assert!(!s.on_order(Epoch(1), SeqNo(99)), "too far ahead");
        // the whole update arrives (held datagram or fetch): both go, in order
        s.on_update(upd(1, &[], false));
        let e = drain(&mut s);
        assert!(
            matches!(&e[..], [SecondaryEffect::Apply(a), SecondaryEffect::Apply(b)]
            if a.seq == SeqNo(1) && b.seq == SeqNo(2))
        );
        s.applied(SeqNo(1), 0);
        s.applied(SeqNo(2), 0);
        drain(&mut s);
        assert_eq!((s.watermark(), s.backlog()), (SeqNo(2), 0));
        assert!(!s.on_order(Epoch(1), SeqNo(2)), "applied already");
        assert!(matches!(
            drain(&mut s)[..],
            [SecondaryEffect::Ack { seq: SeqNo(2), .. }]
        ));
    }

    #[test]
    fn other_epoch_is_refused_and_far_future_dropped() {
        let mut s = Secondary::new(ExportId(7), Epoch(2), SeqNo(0), 4);
        s.on_update(upd(1, &[], false));
        assert!(matches!(
            drain(&mut s)[..],
            [SecondaryEffect::Refuse { .. }]
        ));
        let mut s = Secondary::new(ExportId(7), Epoch(1), SeqNo(0), 4);
        s.on_update(upd(9, &[], false));
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.backlog(), 0);
    }
}
