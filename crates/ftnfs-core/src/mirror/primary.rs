//! The primary of one export: numbers updates, sends them, holds each client reply until the
//! local execution and every live secondary are done (DESIGN.md decision 4), resends to the
//! silent, and fails out the silent and the divergent (patent p. 25: bounded retries, then a
//! failover event; the reply goes out only after that decision).
//!
//! Effect order is the contract: a [`PrimaryEffect::Release`] for an update is emitted only
//! after its `local_done` and after every member in its ack set acknowledged with the same
//! status or was failed out by a [`PrimaryEffect::Failed`] emitted before it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::order::{ready, Applied};
use super::{FailReason, MemberSet, Touch, Update};

/// Most dependencies an update carries; an update that would need more is sent as a
/// barrier instead (which waits for everything, a superset).
pub const MAX_DEPS: usize = 64;

/// The last updates that touched one object.
#[derive(Debug, Default)]
struct ObjTouch {
    whole: Option<SeqNo>,
    parts: HashMap<u64, SeqNo>,
}
use crate::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};

/// Tuning of the primary.
#[derive(Debug, Clone, Copy)]
pub struct PrimaryConfig {
    /// Resend an unacknowledged update after this long.
    pub retry_ms: u64,
    /// Sends of one update (the first included) before a silent secondary is failed out.
    pub max_sends: u32,
    /// Most updates in flight; `submit` refuses more.
    pub max_pending: usize,
    /// Split read and write primaries (`member::read_lease`): how long a read lease this
    /// primary grants lasts; 0 = the export has none (the primary answers every read).
    pub read_lease_ms: u64,
}

impl Default for PrimaryConfig {
    fn default() -> Self {
        Self {
            retry_ms: 200,
            max_sends: 5,
            max_pending: 4096,
            read_lease_ms: 0,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryEffect<P> {
    /// Send `update` to secondary `to` (first send or a resend).
    Send {
        /// The secondary.
        to: MemberId,
        /// The update.
        update: Update<P>,
        /// Not the first send to it: a resend, a fetch, or the window sent again to a member
        /// that (re)joined. A proxy-mode primary sends such an update whole, arguments
        /// included (`proxy.rs`), since the secondary may not hold the client's datagram.
        again: bool,
    },
    /// The local execution of `seq` may start now (order allows it).
    Run {
        /// The update.
        seq: SeqNo,
        /// The shell's token given to `submit`.
        token: u64,
    },
    /// The client's reply for `seq` may be sent.
    Release {
        /// The update.
        seq: SeqNo,
        /// The shell's token.
        token: u64,
        /// The secondaries that have it.
        acked: MemberSet,
    },
    /// A secondary is out of this export from now on.
    Failed {
        /// The secondary.
        member: MemberId,
        /// Why.
        reason: FailReason,
    },
}

/// `submit` refused: too many updates in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many mirrored updates in flight")]
pub struct Busy;

/// `add_member` refused: an update released out of order is not yet covered by the
/// watermark, so there is no single point at which the newcomer's state is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("export not quiet enough to add a member; try again")]
pub struct NotQuiet;

#[derive(Debug)]
struct Pending<P> {
    token: u64,
    update: Update<P>,
    awaiting: MemberSet,
    acked: MemberSet,
    /// Acks that came before the local result.
    early: Vec<(MemberId, u32)>,
    local: Option<u32>,
    started: bool,
    /// When it was first sent: an acknowledgement of it proves the secondary followed our
    /// epoch at that time at the latest (the read lease).
    first_send: Millis,
    last_send: Millis,
    sends: u32,
}

/// Counters for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrimaryStats {
    /// Updates submitted.
    pub submitted: u64,
    /// Updates released.
    pub released: u64,
    /// Resends.
    pub resends: u64,
    /// Secondaries failed out.
    pub failures: u64,
}

/// The primary's state for one export.
#[derive(Debug)]
pub struct Primary<P> {
    export: ExportId,
    epoch: Epoch,
    cfg: PrimaryConfig,
    live: MemberSet,
    next: SeqNo,
    last_touch: HashMap<u64, ObjTouch>,
    last_barrier: SeqNo,
    pending: BTreeMap<SeqNo, Pending<P>>,
    /// Executed here.
    local: Applied,
    /// Released to the client (local + every live secondary).
    released: Applied,
    effects: VecDeque<PrimaryEffect<P>>,
    stats: PrimaryStats,
    /// Read leases granted (split exports): member → when its lease ends at the latest.
    leases: BTreeMap<MemberId, Millis>,
    /// Releases wait (split exports, `member::read_lease`).
    hold: Hold,
}

/// Why releases wait: a member that may still answer reads lacks what they would
/// acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    None,
    /// A new primary of a split export, until its first tick plus a lease: a read lease the
    /// previous primary granted may still hold, and its holder has not joined this stream.
    FromStart,
    /// A member holding a lease was failed out: until its lease ended.
    Until(Millis),
}

impl<P: Clone> Primary<P> {
    /// A primary whose updates continue after `base` (everything ≤ `base` is on every member
    /// of `live`).
    pub fn new(
        export: ExportId,
        epoch: Epoch,
        base: SeqNo,
        live: MemberSet,
        cfg: PrimaryConfig,
    ) -> Self {
        Self {
            export,
            epoch,
            cfg,
            live,
            next: base.next(),
            last_touch: HashMap::new(),
            last_barrier: SeqNo(0),
            pending: BTreeMap::new(),
            local: Applied::starting_at(base),
            released: Applied::starting_at(base),
            effects: VecDeque::new(),
            stats: PrimaryStats::default(),
            leases: BTreeMap::new(),
            hold: if cfg.read_lease_ms > 0 {
                Hold::FromStart
            } else {
                Hold::None
            },
        }
    }

    /// A read lease of `m` was granted until `until` at the latest (`member::read_lease`):
    /// if `m` is failed out, nothing is released before then.
    pub fn lease_granted(&mut self, m: MemberId, until: Millis) {
        if self.cfg.read_lease_ms > 0 && self.live.contains(m) {
            let t = self.leases.entry(m).or_insert(until);
            *t = (*t).max(until);
        }
    }

    /// How long a read lease granted here lasts (0: reads are not split).
    pub fn read_lease_ms(&self) -> u64 {
        self.cfg.read_lease_ms
    }

    /// Whether releases wait for a read lease to end.
    pub fn releases_held(&self) -> bool {
        self.hold != Hold::None
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Live secondaries.
    pub fn live(&self) -> MemberSet {
        self.live
    }

    /// The last number given out.
    pub fn last_seq(&self) -> SeqNo {
        SeqNo(self.next.0 - 1)
    }

    /// Every update up to this one is released.
    pub fn released_watermark(&self) -> SeqNo {
        self.released.watermark()
    }

    /// Updates in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters.
    pub fn stats(&self) -> PrimaryStats {
        self.stats
    }

    /// Numbers a new update, sends it to every live secondary and, if order allows, lets the
    /// local execution start. The shell keeps the client's reply until `Release(token)`.
    pub fn submit(
        &mut self,
        token: u64,
        touch: &Touch,
        payload: P,
        now: Millis,
    ) -> Result<SeqNo, Busy> {
        if self.pending.len() >= self.cfg.max_pending {
            return Err(Busy);
        }
        let seq = self.next;
        self.next = seq.next();
        let mut barrier = touch.barrier;
        let mut deps: Vec<SeqNo> = Vec::new();
        if !barrier {
            let released = &self.released;
            let mut add = |s: Option<SeqNo>| {
                if let Some(s) = s {
                    if !released.contains(s) && !deps.contains(&s) {
                        deps.push(s);
                    }
                }
            };
            for k in &touch.keys {
                let Some(ot) = self.last_touch.get(&k.object) else {
                    continue;
                };
                add(ot.whole);
                match k.part {
                    None => ot.parts.values().for_each(|s| add(Some(*s))),
                    Some(p) => add(ot.parts.get(&p).copied()),
                }
            }
            if self.last_barrier.0 > 0 {
                add(Some(self.last_barrier));
            }
            if deps.len() > MAX_DEPS {
                barrier = true;
                deps.clear();
            }
        }
        if barrier {
            // Everything after it depends on it, and it on everything before: what was
            // recorded so far is covered.
            self.last_touch.clear();
            self.last_barrier = seq;
        } else {
            for k in &touch.keys {
                let ot = self.last_touch.entry(k.object).or_default();
                match k.part {
                    None => {
                        ot.parts.clear();
                        ot.whole = Some(seq);
                    }
                    Some(p) => {
                        ot.parts.insert(p, seq);
                    }
                }
            }
            if self.last_touch.len() > 4 * self.cfg.max_pending {
                let released = &self.released;
                self.last_touch.retain(|_, ot| {
                    ot.parts.retain(|_, s| !released.contains(*s));
                    if ot.whole.is_some_and(|s| released.contains(s)) {
                        ot.whole = None;
                    }
                    ot.whole.is_some() || !ot.parts.is_empty()
                });
            }
        }
        let update = Update {
            export: self.export,
            epoch: self.epoch,
            seq,
            deps,
            barrier,
            payload,
        };
        for m in self.live.iter() {
            self.effects.push_back(PrimaryEffect::Send {
                to: m,
                update: update.clone(),
                again: false,
            });
        }
        self.pending.insert(
            seq,
            Pending {
                token,
                update,
                awaiting: self.live,
                acked: MemberSet::EMPTY,
                early: Vec::new(),
                local: None,
                started: false,
                first_send: now,
                last_send: now,
                sends: 1,
            },
        );
        self.stats.submitted += 1;
        self.start_ready();
        Ok(seq)
    }

    /// The number the next update will get.
    pub fn next_seq(&self) -> SeqNo {
        self.next
    }

    /// Whether what this member holds for `key` is final up to the updates numbered before
    /// `since`: every numbered update that conflicts with `key`, and the last barrier, was
    /// numbered before `since` and has executed here. A shell that looked something up
    /// under `key` (which object a name denotes) after asking with `since` = [`next_seq`]
    /// and found it settled, and that finds it settled again with the same `since` when it
    /// numbers, looked at the state that update will meet everywhere
    /// (Documentation/04-replication-order.md: a REMOVE ordered by its victim).
    ///
    /// [`next_seq`]: Self::next_seq
    pub fn settled(&self, key: &super::Key, since: SeqNo) -> bool {
        let done = |s: SeqNo| s < since && self.local.contains(s);
        if self.last_barrier.0 > 0 && !done(self.last_barrier) {
            return false;
        }
        let Some(ot) = self.last_touch.get(&key.object) else {
            return true;
        };
        if ot.whole.is_some_and(|s| !done(s)) {
            return false;
        }
        match key.part {
            None => ot.parts.values().all(|s| done(*s)),
            Some(p) => ot.parts.get(&p).is_none_or(|s| done(*s)),
        }
    }

    /// The local execution of `seq` finished with `status` (the NFS status of its reply).
    pub fn local_done(&mut self, seq: SeqNo, status: u32) {
        let Some(p) = self.pending.get_mut(&seq) else {
            return;
        };
        p.local = Some(status);
        let early = std::mem::take(&mut p.early);
        self.local.insert(seq);
        for (m, theirs) in early {
            if theirs != status {
                self.fail(
                    m,
                    FailReason::Diverged {
                        seq,
                        ours: status,
                        theirs,
                    },
                );
            }
        }
        self.start_ready();
        self.release_ready();
    }

    /// Secondary `from` acknowledged `seq` with `status`.
    pub fn on_ack(&mut self, from: MemberId, epoch: Epoch, seq: SeqNo, status: u32) {
        if epoch != self.epoch {
            return;
        }
        let Some(p) = self.pending.get_mut(&seq) else {
            return; // a duplicate ack of something already released
        };
        if !p.awaiting.contains(from) {
            return;
        }
        p.awaiting.remove(from);
        p.acked.insert(from);
        match p.local {
            Some(ours) if ours != status => self.fail(
                from,
                FailReason::Diverged {
                    seq,
                    ours,
                    theirs: status,
                },
            ),
            Some(_) => {}
            None => p.early.push((from, status)),
        }
        self.release_ready();
    }

    /// Secondary `from` refused an update: it is at another epoch.
    pub fn on_refused(&mut self, from: MemberId, theirs: Epoch) {
        if self.live.contains(from) {
            self.fail(from, FailReason::Refused { theirs });
            self.release_ready();
        }
    }

    /// The shell lost its connection to `m`.
    pub fn member_lost(&mut self, m: MemberId) {
        if self.live.contains(m) {
            self.fail(m, FailReason::Lost);
            self.release_ready();
        }
    }

    /// Adds `m` as a live secondary whose state is that of the released watermark, which is
    /// returned; every update in flight is sent to it.
    ///
    /// `m` already live (a new connection to it: what was in flight on the old one may be
    /// lost): it keeps its place — everything it acknowledged stays acknowledged, and every
    /// update still awaiting it is sent again now. A lost connection never puts a member out
    /// by itself (its process may live on, inside its takeover window: sim_group seed
    /// 175651); silence, a refusal or a refused connection does.
    pub fn add_member(&mut self, m: MemberId, now: Millis) -> Result<SeqNo, NotQuiet> {
        if self.live.contains(m) {
            for p in self.pending.values_mut().filter(|p| p.awaiting.contains(m)) {
                p.last_send = now;
                self.effects.push_back(PrimaryEffect::Send {
                    to: m,
                    update: p.update.clone(),
                    again: true,
                });
            }
            return Ok(self.released.watermark());
        }
        if self.released.holes_above() > 0 {
            return Err(NotQuiet);
        }
        self.live.insert(m);
        for p in self.pending.values_mut() {
            p.awaiting.insert(m);
            p.last_send = now;
            self.effects.push_back(PrimaryEffect::Send {
                to: m,
                update: p.update.clone(),
                again: true,
            });
        }
        Ok(self.released.watermark())
    }

    /// A proxy-mode secondary `from` asks for update `seq` whole (the client's datagram did not
    /// reach it as executed here): sent again, with its arguments, if it still awaits `from`'s
    /// acknowledgement. Nothing else changes: the resend timer and the tries left are as
    /// they were, so a member that keeps asking is still failed out when silent.
    pub fn fetch(&mut self, from: MemberId, seq: SeqNo) {
        if let Some(p) = self.pending.get(&seq) {
            if p.awaiting.contains(from) {
                self.effects.push_back(PrimaryEffect::Send {
                    to: from,
                    update: p.update.clone(),
                    again: true,
                });
            }
        }
    }

    /// Resends what is due and fails out secondaries that stayed silent through every retry.
    pub fn tick(&mut self, now: Millis) {
        let mut silent: Vec<(MemberId, SeqNo, u32)> = Vec::new();
        for (seq, p) in self.pending.iter_mut() {
            if p.awaiting.is_empty() || now.since(p.last_send) < self.cfg.retry_ms {
                continue;
            }
            if p.sends >= self.cfg.max_sends {
                for m in p.awaiting.iter() {
                    if !silent.iter().any(|(x, _, _)| *x == m) {
                        silent.push((m, *seq, p.sends));
                    }
                }
                continue;
            }
            p.sends += 1;
            p.last_send = now;
            for m in p.awaiting.iter() {
                self.stats.resends += 1;
                self.effects.push_back(PrimaryEffect::Send {
                    to: m,
                    update: p.update.clone(),
                    again: true,
                });
            }
        }
        for (m, seq, sends) in silent {
            self.fail(m, FailReason::Silent { seq, sends });
        }
        self.hold = match self.hold {
            Hold::FromStart => Hold::Until(Millis(now.0 + self.cfg.read_lease_ms)),
            Hold::Until(t) if now >= t => Hold::None,
            h => h,
        };
        self.release_ready();
    }

    /// When update `seq` was first sent, while it is pending: the confirmation time of its
    /// acknowledgement (an ack read after a freeze was sent before it).
    pub fn first_sent(&self, seq: SeqNo) -> Option<Millis> {
        self.pending.get(&seq).map(|p| p.first_send)
    }

    /// When `tick` has something to do next.
    pub fn next_deadline(&self) -> Option<Millis> {
        let hold = match self.hold {
            Hold::None => None,
            Hold::FromStart => Some(Millis(0)), // at once: the hold starts counting
            Hold::Until(t) => Some(t),
        };
        self.pending
            .values()
            .filter(|p| !p.awaiting.is_empty())
            .map(|p| Millis(p.last_send.0 + self.cfg.retry_ms))
            .chain(hold)
            .min()
    }

    /// The next thing to do.
    pub fn poll_effect(&mut self) -> Option<PrimaryEffect<P>> {
        self.effects.pop_front()
    }

    fn fail(&mut self, m: MemberId, reason: FailReason) {
        if !self.live.contains(m) {
            return;
        }
        self.live.remove(m);
        if let Some(end) = self.leases.remove(&m) {
            // it may answer reads until then: nothing it lacks is acknowledged before
            self.hold = match self.hold {
                Hold::None => Hold::Until(end),
                Hold::Until(t) => Hold::Until(t.max(end)),
                Hold::FromStart => Hold::FromStart, // ends later than any lease we granted
            };
        }
        for p in self.pending.values_mut() {
            p.awaiting.remove(m);
            p.early.retain(|(x, _)| *x != m);
        }
        self.stats.failures += 1;
        self.effects
            .push_back(PrimaryEffect::Failed { member: m, reason });
    }

    fn start_ready(&mut self) {
        for (seq, p) in self.pending.iter_mut() {
            if !p.started && ready(&self.local, *seq, &p.update.deps, p.update.barrier) {
                p.started = true;
                self.effects.push_back(PrimaryEffect::Run {
                    seq: *seq,
                    token: p.token,
                });
            }
        }
    }

    fn release_ready(&mut self) {
        if self.hold != Hold::None {
            return;
        }
        let done: Vec<SeqNo> = self
            .pending
            .iter()
            .filter(|(_, p)| p.local.is_some() && p.awaiting.is_empty())
            .map(|(s, _)| *s)
            .collect();
        for seq in done {
            if let Some(p) = self.pending.remove(&seq) {
                self.released.insert(seq);
                self.stats.released += 1;
                self.effects.push_back(PrimaryEffect::Release {
                    seq,
                    token: p.token,
                    acked: p.acked,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::Key;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);

    fn prim(live: &[MemberId]) -> Primary<u32> {
        Primary::new(
            ExportId(7),
            Epoch(1),
            SeqNo(0),
            live.iter().copied().collect(),
            PrimaryConfig {
                retry_ms: 100,
                max_sends: 3,
                max_pending: 16,
                read_lease_ms: 0,
            },
        )
    }

    fn drain(p: &mut Primary<u32>) -> Vec<PrimaryEffect<u32>> {
        std::iter::from_fn(|| p.poll_effect()).collect()
    }

    fn write(k: u64) -> Touch {
        Touch {
            keys: vec![Key::whole(k)],
            barrier: false,
        }
    }

    fn barrier() -> Touch {
        Touch {
            keys: vec![],
            barrier: true,
        }
    }

    fn block(k: u64, b: u64) -> Touch {
        Touch {
            keys: vec![Key::part(k, b)],
            barrier: false,
        }
    }

    fn runs(p: &mut Primary<u32>) -> Vec<u64> {
        drain(p)
            .into_iter()
            .filter_map(|e| match e {
                PrimaryEffect::Run { token, .. } => Some(token),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn disjoint_parts_run_in_parallel_and_the_whole_waits_for_every_part() {
        let mut p = prim(&[]);
        let s1 = p.submit(1, &block(5, 0), 0, Millis(0)).unwrap();
        let s2 = p.submit(2, &block(5, 1), 0, Millis(0)).unwrap();
        let _s3 = p.submit(3, &block(5, 0), 0, Millis(0)).unwrap();
        let s4 = p.submit(4, &write(5), 0, Millis(0)).unwrap();
        assert_eq!(
            runs(&mut p),
            vec![1, 2],
            "block 0 twice is ordered; blocks 0 and 1 not"
        );
        p.local_done(s1, 0);
        assert_eq!(runs(&mut p), vec![3]);
        p.local_done(s2, 0);
        assert!(
            runs(&mut p).is_empty(),
            "the whole file waits for block 0's second write"
        );
        p.local_done(SeqNo(3), 0);
        assert_eq!(runs(&mut p), vec![4]);
        let _ = s4;
    }

    #[test]
    fn reply_is_held_until_local_and_every_secondary_are_done() {
        // DESIGN.md decision 4: the reply waits for every live secondary.
        let mut p = prim(&[A, B]);
        let s = p.submit(10, &write(5), 99, Millis(0)).unwrap();
        let e = drain(&mut p);
        assert_eq!(e.len(), 3, "{e:?}"); // two sends + run
        assert!(matches!(e[2], PrimaryEffect::Run { token: 10, .. }));
        p.on_ack(A, Epoch(1), s, 0);
        p.local_done(s, 0);
        assert!(drain(&mut p).is_empty(), "B has not acked");
        p.on_ack(B, Epoch(1), s, 0);
        assert!(matches!(
            drain(&mut p)[..],
            [PrimaryEffect::Release { token: 10, .. }]
        ));
    }

    #[test]
    fn a_key_is_settled_once_everything_on_it_executed_and_nothing_new_came() {
        let mut p = prim(&[]);
        let entry = Key::part(1, 77);
        let on = |keys: Vec<Key>| Touch {
            keys,
            barrier: false,
        };
        assert!(p.settled(&entry, p.next_seq()), "nothing numbered yet");
        let s1 = p
            .submit(1, &on(vec![entry, Key::whole(9)]), 1, Millis(0))
            .unwrap();
        let other = p
            .submit(2, &on(vec![Key::part(1, 78)]), 2, Millis(0))
            .unwrap();
        assert!(
            !p.settled(&entry, p.next_seq()),
            "its make has not executed"
        );
        p.local_done(other, 0);
        assert!(!p.settled(&entry, p.next_seq()));
        p.local_done(s1, 0);
        let since = p.next_seq();
        assert!(p.settled(&entry, since));
        // the directory as a whole conflicts with every part
        let s3 = p
            .submit(3, &on(vec![Key::part(1, 78)]), 3, Millis(0))
            .unwrap();
        assert!(p.settled(&entry, since), "another name of the directory");
        assert!(
            !p.settled(&Key::whole(1), p.next_seq()),
            "the whole directory"
        );
        p.local_done(s3, 0);
        // numbered after `since` on the same key: not settled, even once executed
        let s4 = p.submit(4, &on(vec![entry]), 4, Millis(0)).unwrap();
        p.local_done(s4, 0);
        assert!(!p.settled(&entry, since), "a newer update on the key");
        assert!(p.settled(&entry, p.next_seq()));
        // a barrier not yet executed unsettles every key
        let b = p.submit(5, &barrier(), 5, Millis(0)).unwrap();
        assert!(!p.settled(&Key::part(2, 1), p.next_seq()));
        p.local_done(b, 0);
        assert!(p.settled(&Key::part(2, 1), p.next_seq()));
    }

    #[test]
    fn conflicting_updates_run_locally_in_order_unrelated_ones_in_parallel() {
        let mut p = prim(&[]);
        let s1 = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        let s2 = p.submit(2, &write(5), 0, Millis(0)).unwrap();
        let _s3 = p.submit(3, &write(6), 0, Millis(0)).unwrap();
        let runs: Vec<u64> = drain(&mut p)
            .into_iter()
            .filter_map(|e| match e {
                PrimaryEffect::Run { token, .. } => Some(token),
                _ => None,
            })
            .collect();
        assert_eq!(runs, vec![1, 3]);
        p.local_done(s1, 0);
        let e = drain(&mut p);
        assert!(
            e.contains(&PrimaryEffect::Run { seq: s2, token: 2 }),
            "{e:?}"
        );
    }

    #[test]
    fn barrier_waits_for_all_earlier_and_later_wait_for_it() {
        let mut p = prim(&[]);
        let s1 = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        let s2 = p.submit(2, &barrier(), 0, Millis(0)).unwrap();
        let _ = p.submit(3, &write(9), 0, Millis(0)).unwrap();
        let e = drain(&mut p);
        assert_eq!(
            e.iter()
                .filter(|e| matches!(e, PrimaryEffect::Run { .. }))
                .count(),
            1
        );
        p.local_done(s1, 0);
        let e = drain(&mut p);
        assert!(e.contains(&PrimaryEffect::Run { seq: s2, token: 2 }));
        assert!(!e
            .iter()
            .any(|e| matches!(e, PrimaryEffect::Run { token: 3, .. })));
        p.local_done(s2, 0);
        assert!(drain(&mut p)
            .iter()
            .any(|e| matches!(e, PrimaryEffect::Run { token: 3, .. })));
    }

    #[test]
    fn divergent_secondary_is_failed_out_before_the_reply() {
        // DESIGN.md decision 5: never silently diverge.
        let mut p = prim(&[A]);
        let s = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        drain(&mut p);
        p.on_ack(A, Epoch(1), s, 17); // before the local result
        p.local_done(s, 0);
        let e = drain(&mut p);
        assert!(matches!(
            e[0],
            PrimaryEffect::Failed {
                member: A,
                reason: FailReason::Diverged { .. }
            }
        ));
        assert!(matches!(e[1], PrimaryEffect::Release { .. }));
        assert!(p.live().is_empty());
    }

    #[test]
    fn a_fetch_sends_the_update_whole_again_only_to_an_asker_it_awaits() {
        let mut p = prim(&[A]);
        let s = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        assert!(matches!(
            drain(&mut p)[..],
            [
                PrimaryEffect::Send {
                    to: A,
                    again: false,
                    ..
                },
                PrimaryEffect::Run { .. }
            ]
        ));
        p.fetch(A, s);
        assert!(matches!(
            &drain(&mut p)[..],
            [PrimaryEffect::Send { to: A, again: true, update }] if update.seq == s
        ));
        // the fetch does not reset the resend timer nor spend a try
        assert_eq!(p.next_deadline(), Some(Millis(100)));
        p.fetch(MemberId(9), s);
        p.fetch(A, SeqNo(s.0 + 7));
        assert!(
            drain(&mut p).is_empty(),
            "not a member it awaits, or no such update"
        );
        p.on_ack(A, Epoch(1), s, 0);
        p.fetch(A, s);
        assert!(drain(&mut p).is_empty(), "acknowledged already");
    }

    #[test]
    fn silent_secondary_gets_resends_then_is_failed_out() {
        // patent p. 25: bounded retries, then a failover event, then the reply.
        let mut p = prim(&[A]);
        let s = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        p.local_done(s, 0);
        drain(&mut p);
        assert_eq!(p.next_deadline(), Some(Millis(100)));
        p.tick(Millis(50));
        assert!(drain(&mut p).is_empty());
        p.tick(Millis(100));
        assert!(matches!(
            drain(&mut p)[..],
            [PrimaryEffect::Send { to: A, .. }]
        ));
        p.tick(Millis(200));
        drain(&mut p);
        p.tick(Millis(300));
        let e = drain(&mut p);
        assert!(matches!(
            e[0],
            PrimaryEffect::Failed {
                reason: FailReason::Silent { sends: 3, .. },
                ..
            }
        ));
        assert!(matches!(e[1], PrimaryEffect::Release { .. }));
    }

    #[test]
    fn stale_epoch_acks_are_ignored_and_busy_is_bounded() {
        let mut p = prim(&[A]);
        let s = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        p.local_done(s, 0);
        drain(&mut p);
        p.on_ack(A, Epoch(0), s, 0);
        assert!(drain(&mut p).is_empty());
        for i in 0..15 {
            p.submit(i, &write(i), 0, Millis(0)).unwrap();
        }
        assert_eq!(p.submit(99, &write(1), 0, Millis(0)), Err(Busy));
    }

    #[test]
    fn added_member_gets_everything_in_flight() {
        let mut p = prim(&[]);
        let s = p.submit(1, &write(5), 0, Millis(0)).unwrap();
        drain(&mut p);
        assert_eq!(p.add_member(A, Millis(1)), Ok(SeqNo(0)));
        assert!(matches!(
            drain(&mut p)[..],
            [PrimaryEffect::Send { to: A, .. }]
        ));
        p.local_done(s, 0);
        assert!(drain(&mut p).is_empty());
        p.on_ack(A, Epoch(1), s, 0);
        assert!(matches!(drain(&mut p)[..], [PrimaryEffect::Release { .. }]));
    }

    /// A new connection to a live member: it stays live, keeps what it acknowledged, and gets
    /// again only what still awaits it — nothing is released without it.
    #[test]
    fn a_live_member_on_a_new_link_keeps_its_place() {
        let mut p = prim(&[A, B]);
        let s1 = p.submit(1, &write(1), 0, Millis(0)).unwrap();
        let s2 = p.submit(2, &write(2), 0, Millis(0)).unwrap();
        p.local_done(s1, 0);
        p.local_done(s2, 0);
        p.on_ack(A, Epoch(1), s1, 0);
        p.on_ack(B, Epoch(1), s1, 0);
        p.on_ack(B, Epoch(1), s2, 0);
        drain(&mut p);
        assert_eq!(p.add_member(A, Millis(5)), Ok(s1));
        let e = drain(&mut p);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(matches!(&e[0], PrimaryEffect::Send { to: A, update, .. } if update.seq == s2));
        assert!(p.live().contains(A));
        assert_eq!(p.released_watermark(), s1, "s2 still waits for A");
        p.on_ack(A, Epoch(1), s2, 0);
        assert!(matches!(drain(&mut p)[..], [PrimaryEffect::Release { .. }]));
    }
}
