//! A member's role for one export as states whose changes consume `self` (rustls'
//! handshake states): [`Leading`] (primary), [`Follower`] (secondary, in [`super::follower`])
//! and [`Standing`] (standby). A change of role moves what carries over into the new state
//! and hands back what does not, so nothing of an old role keeps acting by accident: a
//! deposed primary has no [`Primary`] left to number, send or release an update with, and
//! the clients' requests it held come back to the caller, who must drop them.
//!
//! ```text
//!                  take_over (epoch persisted first)
//!   Follower ───────────────────────────────────────────▶ Leading
//!      ▲                                                  │   │
//!      │ Join accepted (shell)     depose / fence ────────┘   │ step_down: drained,
//!      │                              │                       │ successor live
//!   Standing ◀────────────────────────┴───────────────────────┘
//!      │ start (epoch persisted first: negotiation won, operator)
//!      └────────────────────────────────────────────────▶ Leading
//! ```
//!
//! The decisions *whether* to change are the member machine's ([`super::Node`],
//! [`super::transitions`]); these types carry a decision out and keep what each role holds
//! in one place. Both shells hold them: the daemon (`ftnfsd/src/mirror/`, one lock per
//! export's side) and the whole-group simulation (`tests/sim_group.rs`), so a role change
//! there is the daemon's.
//!
//! `W` is whatever waits for a client's update (the daemon: the channel that wakes the
//! blocked request; the simulation: the request and its local result).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use crate::member::exclusion::{Hearing, HearingConfig, UnknownTally};
use crate::member::follower::Follower;
use crate::member::read_lease::{self, UnansweredReads, PASS_OVER_MS};
use crate::member::transitions::{self, Promotion, StepDown};
use crate::member::RoleView;
use crate::mirror::primary::{Busy, Primary, PrimaryConfig};
use crate::mirror::proxy::RequestKey;
use crate::mirror::{MemberSet, Touch};

/// Primary of an export: numbers, executes and forwards clients' updates.
#[derive(Debug)]
pub struct Leading<R, W> {
    /// The data path: numbering, ordering, acknowledgements, resends.
    pub p: Primary<R>,
    /// This stream's id (random per incarnation in the daemon).
    pub history: u64,
    /// The stream this member followed before it led this one (0 if none).
    pub prev_history: u64,
    /// The update of `prev_history` this stream starts after.
    pub chain_base: SeqNo,
    waiters: BTreeMap<u64, W>,
    next_token: u64,
    closed: bool,
    stepping_down: Option<String>,
    handoff_to: Option<MemberId>,
    joining: BTreeMap<MemberId, Millis>,
    held: BTreeSet<MemberId>,
    confirmed: BTreeMap<MemberId, Millis>,
    /// Members failed out because they computed another result: copied whole before they
    /// serve again.
    pub diverged: BTreeSet<MemberId>,
    /// Live secondaries that accepted their latest Join.
    pub accepted: BTreeSet<MemberId>,
    /// Unknown requests the secondaries reported in this term (proxy mode).
    unknowns: Option<UnknownTally>,
    /// (Split exports) reads clients repeated that were not ours to answer, and the read
    /// servers passed over for not answering, until when ([`crate::member::read_lease`]).
    unanswered: UnansweredReads<RequestKey>,
    passed_over: BTreeMap<MemberId, Millis>,
}

/// What a primary does about unknown requests a secondary reported
/// ([`Leading::unknown_reported`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Nothing.
    Nothing,
    /// Log an event: `unknown` within the window.
    Alert {
        /// Unknown requests within the window.
        unknown: u64,
    },
    /// It does not hear its clients: a step-down for `to` began (carry it out as a planned
    /// switch, and do not take the role back by itself: `Member::demoted`).
    HandingOver {
        /// The member that reported, which hears them.
        to: MemberId,
        /// Unknown requests within the window.
        unknown: u64,
        /// Client datagrams this primary received within it.
        received: u64,
    },
}

/// What a primary in a planned step-down became at a tick ([`Leading::step_down`]).
#[derive(Debug)]
pub enum SteppedDown<R, W> {
    /// Still primary: not stepping down, or still draining.
    Leading(Leading<R, W>),
    /// Still primary, serving on: the member it stepped down for fell out meanwhile.
    Cancelled(Leading<R, W>),
    /// Stood by, clean at its last update; `to` takes over (tell it).
    StoodBy {
        /// The new state.
        standing: Standing,
        /// The member that takes over.
        to: MemberId,
    },
}

impl<R: Clone, W> Leading<R, W> {
    /// A new stream of `export` in `epoch`, after update `base` of stream `prev_history`.
    /// The shell persists `epoch` before it calls this: a member never leads an epoch it
    /// might forget (nothing of the epoch exists before the state does).
    pub fn start(
        export: ExportId,
        epoch: Epoch,
        base: SeqNo,
        history: u64,
        prev_history: u64,
        cfg: PrimaryConfig,
    ) -> Self {
        Leading {
            p: Primary::new(export, epoch, base, MemberSet::EMPTY, cfg),
            history,
            prev_history,
            chain_base: base,
            waiters: BTreeMap::new(),
            next_token: 0,
            closed: false,
            stepping_down: None,
            handoff_to: None,
            joining: BTreeMap::new(),
            held: BTreeSet::new(),
            confirmed: BTreeMap::new(),
            diverged: BTreeSet::new(),
            accepted: BTreeSet::new(),
            unknowns: None,
            unanswered: UnansweredReads::default(),
            passed_over: BTreeMap::new(),
        }
    }

    /// `from` reports `count` unknown requests: client update datagrams it held that no order
    /// of ours claimed, or retransmissions of requests it applied that we did not answer;
    /// `received` is how many client datagrams this primary received in its term so far. Past
    /// the thresholds, an alert — or, when this primary received fewer than that, a
    /// step-down for the first member of `listed` (the export's other members, in order) that
    /// is live in the stream, if `from` is ([`super::exclusion`]).
    pub fn unknown_reported(
        &mut self,
        from: MemberId,
        count: u64,
        received: u64,
        listed: &[MemberId],
        now: Millis,
        cfg: HearingConfig,
    ) -> Heard {
        let verdict = self
            .unknowns
            .get_or_insert_with(|| UnknownTally::new(cfg))
            .report(from, count, received, now);
        match verdict {
            Hearing::Fine => Heard::Nothing,
            Hearing::Alert { unknown } => Heard::Alert { unknown },
            Hearing::Deaf {
                by,
                unknown,
                received,
            } => {
                let why = format!(
                    "{unknown} client updates reached another member unordered, {received} \
                     reached this one: it does not hear the group's datagrams"
                );
                // To the first listed member live in the stream, which is not always the one
                // that reported: that member is first in line for a takeover, and would take
                // over by itself if this primary died while the role went to another — two
                // primaries of one epoch (sim_group seed 6000653: a deaf primary handed its
                // role to the third member and crashed 20 ms later; the second took over as
                // well). In the simulation the others hear; two deaf members are not handled.
                let live = self.p.live();
                let to = listed.iter().copied().find(|m| live.contains(*m));
                match to {
                    Some(to)
                        if live.contains(by)
                            && self.begin_step_down(why, Some(to), &[]) == Ok(true) =>
                    {
                        Heard::HandingOver {
                            to,
                            unknown,
                            received,
                        }
                    }
                    _ => Heard::Alert { unknown },
                }
            }
        }
    }

    /// This primary has received `received` client datagrams in its term so far
    /// (proxy mode; the shell calls this at its ticks): what `unknown_reported` weighs the
    /// reports against.
    pub fn heard_datagrams(&mut self, received: u64, now: Millis, cfg: HearingConfig) {
        self.unknowns
            .get_or_insert_with(|| UnknownTally::new(cfg))
            .sample(received, now);
    }

    /// Unknown requests reported in this term.
    pub fn unknown_total(&self) -> u64 {
        self.unknowns.as_ref().map_or(0, UnknownTally::total)
    }

    /// A secondary takes over its primary's export in `epoch` (persisted first, as for
    /// [`start`](Self::start)): its stream ends where it applied it, and the new one
    /// continues from there. The follower is consumed: it acknowledges nothing more.
    pub fn take_over(
        f: Follower<R>,
        export: ExportId,
        epoch: Epoch,
        history: u64,
        cfg: PrimaryConfig,
    ) -> Self {
        Self::start(export, epoch, f.s.watermark(), history, f.history, cfg)
    }

    /// Numbers a client update; `waiter` is handed back by [`take_waiter`](Self::take_waiter)
    /// when it is released, or by [`depose`](Self::depose). Refused while stopping or
    /// stepping down, and when too many are in flight.
    pub fn submit(
        &mut self,
        touch: impl FnOnce(&Primary<R>) -> Touch,
        payload: R,
        waiter: W,
        now: Millis,
    ) -> Result<(SeqNo, u64), Busy> {
        if self.closed {
            return Err(Busy);
        }
        self.next_token += 1;
        let token = self.next_token;
        let touch = touch(&self.p);
        let seq = self.p.submit(token, &touch, payload, now)?;
        self.waiters.insert(token, waiter);
        Ok((seq, token))
    }

    /// What waits for update `token`.
    pub fn waiter(&mut self, token: u64) -> Option<&mut W> {
        self.waiters.get_mut(&token)
    }

    /// The waiter of a released update.
    pub fn take_waiter(&mut self, token: u64) -> Option<W> {
        self.waiters.remove(&token)
    }

    /// What waits, in the order the updates were numbered.
    pub fn waiters(&self) -> impl Iterator<Item = &W> + '_ {
        self.waiters.values()
    }

    /// No new update is numbered (a clean stop, or a step-down).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Stops numbering new updates (a clean stop: the seal follows).
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Why a planned step-down runs, if one does.
    pub fn stepping_down(&self) -> Option<&str> {
        self.stepping_down.as_deref()
    }

    /// The member a step-down hands the role to.
    pub fn handoff_to(&self) -> Option<MemberId> {
        self.handoff_to
    }

    /// Starts a planned step-down for `to` (or, if none, the first of `listed` live in the
    /// stream: only a live member holds every released update). `Ok(false)`: one runs
    /// already. Refused when no member could take over: the group would have no primary.
    pub fn begin_step_down(
        &mut self,
        why: String,
        to: Option<MemberId>,
        listed: &[MemberId],
    ) -> Result<bool, NoSuccessor> {
        if self.stepping_down.is_some() {
            return Ok(false);
        }
        let live = self.p.live();
        let to = to
            .or(self.handoff_to)
            .or_else(|| listed.iter().copied().find(|m| live.contains(*m)));
        let Some(to) = to else {
            return Err(NoSuccessor);
        };
        self.handoff_to = Some(to);
        self.closed = true;
        self.stepping_down = Some(why);
        Ok(true)
    }

    /// A planned step-down at a tick: once nothing is in flight it stands by, clean at its
    /// last update, for its successor; if the successor fell out it serves on.
    pub fn step_down(mut self, now: Millis) -> SteppedDown<R, W> {
        let next = transitions::step_down(
            self.stepping_down.is_some(),
            self.p.pending(),
            self.handoff_to,
            self.p.live(),
        );
        match next {
            StepDown::No | StepDown::Draining => SteppedDown::Leading(self),
            StepDown::Cancel => {
                self.closed = false;
                self.stepping_down = None;
                self.handoff_to = None;
                SteppedDown::Cancelled(self)
            }
            StepDown::StandBy { to } => {
                debug_assert_eq!(self.waiters.len(), 0, "drained: every waiter was released");
                SteppedDown::StoodBy {
                    standing: Standing {
                        epoch: self.p.epoch(),
                        clean_at: Some((self.history, self.p.last_seq())),
                        since: now,
                        waits: true,
                        why: self.stepping_down.unwrap_or_default(),
                    },
                    to,
                }
            }
        }
    }

    /// A newer epoch exists, or this member fenced itself: it is no longer primary. The
    /// updates in flight get no reply from here (they may not be on the new primary; their
    /// clients retransmit to it): their waiters come back, to be dropped.
    pub fn depose(self, why: String, now: Millis) -> (Standing, Vec<W>) {
        let standing = Standing {
            epoch: self.p.epoch(),
            clean_at: None,
            since: now,
            waits: false,
            why,
        };
        (standing, self.waiters.into_values().collect())
    }

    /// (Split read/write exports, [`crate::member::read_lease`].) `from` echoed our heartbeat
    /// sent at `sent_at` (our clock) and we are `me`, with reads listed `read`: `Some(sent_at)`
    /// when it gets a read lease — send it the grant; its end (`now` + the lease) is noted
    /// first, so a fail-out of `from` holds releases until then. The lease lasts the
    /// primary's `read_lease_ms` (none when 0: the export's reads are not split).
    pub fn read_echo(
        &mut self,
        read: &[MemberId],
        me: MemberId,
        from: MemberId,
        sent_at: u64,
        lease_ok: bool,
        now: Millis,
    ) -> Option<u64> {
        let ms = self.p.read_lease_ms();
        if ms == 0 {
            return None;
        }
        let g = read_lease::grant(read, me, self.read_live(now), from, sent_at, lease_ok)?;
        self.p.lease_granted(from, Millis(now.0 + ms));
        Some(g)
    }

    /// The live secondaries that may serve reads at `now`: not passed over.
    fn read_live(&self, now: Millis) -> MemberSet {
        let mut live = self.p.live();
        for (m, until) in &self.passed_over {
            if now < *until {
                live.remove(*m);
            }
        }
        live
    }

    /// The read server of `read` at `now` (we are `me`).
    pub fn read_server(&self, read: &[MemberId], me: MemberId, now: Millis) -> Option<MemberId> {
        read_lease::read_server(read, me, self.read_live(now))
    }

    /// Whether this primary answers reads now: it is the read server of `read` (it has
    /// every released update; a secondary's lease still running after its fail-out holds
    /// releases, not reads).
    pub fn answers_reads(&self, read: &[MemberId], me: MemberId, now: Millis) -> bool {
        read.is_empty() || self.read_server(read, me, now) == Some(me)
    }

    /// A copy of read `key` reached this primary, which is not its read server: clients that
    /// repeat reads no answer came to pass the read server over ([`read_lease`]). `Some(m)`:
    /// `m` was passed over now (no more grants; the next member of the order answers once its
    /// lease ran out) — tell the operator.
    pub fn read_unanswered(
        &mut self,
        read: &[MemberId],
        me: MemberId,
        key: RequestKey,
        now: Millis,
    ) -> Option<MemberId> {
        let server = self.read_server(read, me, now).filter(|s| *s != me)?;
        if !self.unanswered.datagram(key, now) {
            return None;
        }
        self.unanswered.clear();
        self.passed_over
            .insert(server, Millis(now.0 + PASS_OVER_MS));
        Some(server)
    }

    /// `m` confirmed our epoch as of `at` (when we sent what it answered): the read lease.
    pub fn confirm(&mut self, m: MemberId, at: Millis) {
        let t = self.confirmed.entry(m).or_insert(at);
        *t = (*t).max(at);
    }

    /// When each secondary last confirmed our epoch.
    pub fn confirmed(&self) -> &BTreeMap<MemberId, Millis> {
        &self.confirmed
    }

    /// Holds (or releases) clients' writes for `m` (a resync's last pass). `true` when no
    /// member holds them any more.
    pub fn hold(&mut self, m: MemberId, on: bool) -> bool {
        if on {
            self.held.insert(m);
        } else {
            self.held.remove(&m);
        }
        !self.writes_held()
    }

    /// `m` was asked to join this new primary at `now`: clients' writes wait for its answer
    /// and cached replies (this member may have lost its own with a restart, and a
    /// retransmission executed before they arrive runs twice — tests/sim_group.rs).
    pub fn join_asked(&mut self, m: MemberId, now: Millis) {
        self.joining.insert(m, now);
    }

    /// `m` answered its Join (refused, or joined and handed its replies). `true` when no
    /// member holds writes any more.
    pub fn join_answered(&mut self, m: MemberId) -> bool {
        self.joining.remove(&m).is_some() && !self.writes_held()
    }

    /// Joiners silent for `silence` ms hold writes no longer.
    pub fn expire_joiners(&mut self, now: Millis, silence: u64) -> bool {
        let before = self.joining.len();
        self.joining.retain(|_, t| now.since(*t) < silence);
        before != self.joining.len() && !self.writes_held()
    }

    /// The members that hold clients' writes for a copy or a resync's last pass.
    pub fn held(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.held.iter().copied()
    }

    /// Whether clients' writes wait (a resync's last pass, a joiner's answer).
    pub fn writes_held(&self) -> bool {
        !self.held.is_empty() || !self.joining.is_empty()
    }

    /// Whether `m`'s Join answer is awaited.
    pub fn joining(&self, m: MemberId) -> bool {
        self.joining.contains_key(&m)
    }

    /// The member machine's view of this primary; `resyncing`: members copied from here.
    pub fn view(&self, resyncing: MemberSet) -> RoleView {
        RoleView::Primary {
            live: self.p.live(),
            stepping_down: self.stepping_down.is_some(),
            closed: self.closed,
            resyncing,
            followed: self.confirmed.clone(),
        }
    }
}

/// No member could take over from a primary that wants to step down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no secondary is in step to take over: not stepping down")]
pub struct NoSuccessor;

/// Serves no update of the export: a primary deposed or stood down, or a listed primary
/// restarted without a seal (another member may have taken over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The highest epoch it knows.
    pub epoch: Epoch,
    /// After a clean, planned step-down: the stream and update this mirror stands at, so
    /// the new primary (our secondary until now) can take it as its secondary.
    pub clean_at: Option<(u64, SeqNo)>,
    /// When it began to stand by.
    pub since: Millis,
    /// It waits for the member it stood down for before negotiating; a listed primary
    /// restarted from its seal negotiates at once.
    pub waits: bool,
    /// Why.
    pub why: String,
}

impl Standing {
    /// The member machine's view.
    pub fn view(&self) -> RoleView {
        RoleView::Standby {
            clean: self.clean_at.is_some() && self.waits,
            epoch: self.epoch,
            since: self.since,
        }
    }
}

impl<R: Clone> Follower<R> {
    /// Whether this secondary may take over now, having persisted epoch `persisted`. An
    /// update known by its order only (proxy mode) holds the takeover like one being applied:
    /// the old primary may have released it without us (it dropped us, then took us back
    /// without sending it again: sim_group seed 3002336), and the client, if unanswered,
    /// sends its datagram again, which completes it.
    pub fn promotion(&self, persisted: Epoch) -> Promotion {
        let unsettled = self.s.running() + self.s.ordered();
        transitions::promotion(self.joined(), unsettled, self.s.epoch(), persisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::primary::PrimaryEffect;
    use crate::mirror::Key;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);
    const C: MemberId = MemberId(3);
    const E: ExportId = ExportId(1);

    fn cfg() -> PrimaryConfig {
        PrimaryConfig {
            retry_ms: 200,
            max_sends: 5,
            max_pending: 64,
            read_lease_ms: 0,
        }
    }

    fn touch(_: &Primary<u32>) -> Touch {
        Touch {
            keys: vec![Key::whole(7)],
            ..Touch::default()
        }
    }

    /// A primary with B live in its stream.
    fn leading() -> Leading<u32, &'static str> {
        let mut l = Leading::start(E, Epoch(4), SeqNo(10), 77, 66, cfg());
        l.p.add_member(B, Millis(0)).unwrap();
        l
    }

    #[test]
    fn a_deposed_primary_hands_back_every_waiting_request() {
        let mut l = leading();
        l.submit(touch, 1, "first", Millis(5)).unwrap();
        l.submit(touch, 2, "second", Millis(6)).unwrap();
        let (st, mut dropped) = l.depose("epoch 5 seen".into(), Millis(9));
        dropped.sort();
        assert_eq!(dropped, vec!["first", "second"]);
        assert_eq!(st.epoch, Epoch(4));
        assert_eq!(st.clean_at, None, "deposed: not clean");
        assert_eq!(
            st.view(),
            RoleView::Standby {
                clean: false,
                epoch: Epoch(4),
                since: Millis(9)
            }
        );
    }

    #[test]
    fn a_step_down_drains_then_stands_by_clean_for_its_successor() {
        let mut l = leading();
        let (seq, token) = l.submit(touch, 1, "w", Millis(5)).unwrap();
        assert_eq!(l.begin_step_down("demote".into(), None, &[C, B]), Ok(true));
        assert_eq!(l.handoff_to(), Some(B), "the first listed member live");
        assert_eq!(l.submit(touch, 2, "late", Millis(6)), Err(Busy));
        assert_eq!(l.begin_step_down("again".into(), None, &[B]), Ok(false));
        let mut l = match l.step_down(Millis(7)) {
            SteppedDown::Leading(l) => l,
            other => panic!("an update is in flight: {other:?}"),
        };
        l.p.local_done(seq, 0);
        l.p.on_ack(B, Epoch(4), seq, 0);
        while let Some(e) = l.p.poll_effect() {
            if let PrimaryEffect::Release { token: t, .. } = e {
                assert_eq!(l.take_waiter(t), Some("w"));
                assert_eq!(t, token);
            }
        }
        match l.step_down(Millis(8)) {
            SteppedDown::StoodBy { standing, to } => {
                assert_eq!(to, B);
                assert_eq!(standing.clean_at, Some((77, seq)));
                assert!(standing.waits);
                assert_eq!(standing.why, "demote");
            }
            other => panic!("drained: {other:?}"),
        }
    }

    #[test]
    fn a_step_down_whose_successor_fell_out_serves_on() {
        let mut l = leading();
        l.begin_step_down("demote".into(), Some(B), &[B]).unwrap();
        l.p.member_lost(B);
        let l = match l.step_down(Millis(7)) {
            SteppedDown::Cancelled(l) => l,
            other => panic!("{other:?}"),
        };
        assert!(!l.closed() && l.stepping_down().is_none() && l.handoff_to().is_none());
    }

    #[test]
    fn no_step_down_without_a_live_successor() {
        let mut l: Leading<u32, ()> = Leading::start(E, Epoch(1), SeqNo(0), 1, 0, cfg());
        assert_eq!(
            l.begin_step_down("demote".into(), None, &[B]),
            Err(NoSuccessor)
        );
        assert!(!l.closed(), "refused: it keeps serving");
    }

    #[test]
    fn a_secondary_takes_over_from_what_it_applied() {
        let f: Follower<u32> =
            Follower::following(E, Epoch(3), SeqNo(10), 9, A, false, Millis(0), 64);
        assert_eq!(f.promotion(Epoch(5)), Promotion::Go { epoch: Epoch(6) });
        let l: Leading<u32, ()> = Leading::take_over(f, E, Epoch(6), 12, cfg());
        assert_eq!((l.prev_history, l.chain_base), (9, SeqNo(10)));
        assert_eq!(l.p.next_seq(), SeqNo(11));
        assert_eq!(l.p.epoch(), Epoch(6));
    }

    #[test]
    fn writes_wait_for_joiners_and_resyncs_within_bounds() {
        let mut l = leading();
        assert!(!l.writes_held());
        l.join_asked(C, Millis(100));
        assert!(l.writes_held() && l.joining(C));
        assert!(!l.hold(B, true), "B's resync holds too");
        assert!(!l.join_answered(C), "B still holds");
        assert!(l.hold(B, false));
        l.join_asked(C, Millis(100));
        assert!(!l.expire_joiners(Millis(400), 500));
        assert!(
            l.expire_joiners(Millis(600), 500),
            "silent for the silence time"
        );
        assert!(!l.writes_held());
    }

    #[test]
    fn the_lease_counts_from_the_latest_confirmation() {
        let mut l = leading();
        l.confirm(B, Millis(50));
        l.confirm(B, Millis(40));
        assert_eq!(l.confirmed().get(&B), Some(&Millis(50)));
        let RoleView::Primary { followed, live, .. } = l.view(MemberSet::EMPTY) else {
            panic!()
        };
        assert!(live.contains(B));
        assert_eq!(followed.get(&B), Some(&Millis(50)));
    }
}
