//! The primary side of one export in the daemon: numbers clients' updates, sends them to
//! the secondaries (through the core's `Primary`), holds writes for a resync's last pass or a
//! joiner's answer, and keeps the read lease's confirmations.

use super::*;

/// The primary side of one export.
pub struct PrimarySide {
    /// The export.
    pub export: ExportId,
    /// Its listed secondaries.
    pub secondaries: Vec<MemberId>,
    /// Identifies this incarnation's update stream (random, new at every start).
    pub history: u64,
    /// The stream this member was a secondary of before it took over (0 if none).
    pub prev_history: u64,
    /// Nothing but an empty root when this member started.
    pub pristine_at_start: bool,
    /// The update of `prev_history` where this stream starts.
    pub chain_base: SeqNo,
    /// The role's state (the core's [`Leading`]): `None` once the role moved on — deposed,
    /// fenced or stood down — so that a request thread still holding this side finds
    /// nothing to number, release or send with (the state was consumed by the change).
    pub(super) core: Mutex<Option<Lead>>,
    /// Signalled when no member holds clients' writes any more ([`Leading::writes_held`]).
    pub(super) unheld: Condvar,
    /// Resyncs running from here, by member.
    pub(super) resyncs: Mutex<HashMap<MemberId, Outgoing>>,
    /// Finished resyncs (the newest few), for status.
    pub(super) finished: Mutex<VecDeque<Arc<Progress>>>,
    /// Requests released under the lock, to carry on once it is let go (a leaf lock).
    ready: Mutex<Vec<(Then, Signal)>>,
    /// Client datagrams (updates and reads) this primary received in its term (proxy mode):
    /// beside the unknown requests its secondaries report, whether it hears its clients.
    pub datagrams: std::sync::atomic::AtomicU64,
}

/// An update as the primary holds it until it is released: what a secondary applies and,
/// for a client datagram that reached every member (`Proxy`, a multicast virtual IP), the
/// fingerprint of its arguments (length, CRC-32): its first send to each secondary is then
/// an order without them (`ftnfs_core::mirror::proxy`), and any later send is whole.
pub struct Forwarded {
    /// The update.
    pub payload: UpdatePayload,
    /// Set when every member received the client's datagram.
    pub proxied: Option<(u32, u32)>,
}

/// What carries on with a client's update once it is released (or dropped), on whatever
/// thread released it, after the side's lock is let go.
pub type Then = Box<dyn FnOnce(Signal) + Send>;

/// What waits for a client's update: the blocked request thread (woken for its turn to run
/// and for the release), or — once it executed here and the release had not come yet — the
/// rest of the request, carried on by whoever releases it ([`PrimarySide::defer`]).
pub enum Waiter {
    /// The request's thread, blocked on the other end.
    Thread(SyncSender<Signal>),
    /// The rest of the request.
    Then(Then),
}

/// The primary role's state in the daemon: the core's, with what waits for each client
/// update.
pub(super) type Lead = Leading<Arc<Forwarded>, Waiter>;

/// The locked state of a primary side that is still primary ([`PrimarySide::lead`]). When
/// it is let go, the requests its changes released carry on ([`PrimarySide::run_ready`]):
/// after the lock, so that they may take it again.
pub(super) struct LeadGuard<'a> {
    g: Option<MutexGuard<'a, Option<Lead>>>,
    side: &'a PrimarySide,
}

impl std::ops::Deref for LeadGuard<'_> {
    type Target = Lead;
    fn deref(&self) -> &Lead {
        self.g
            .as_ref()
            .and_then(|g| g.as_ref())
            .expect("a LeadGuard is made only over a present state")
    }
}

impl std::ops::DerefMut for LeadGuard<'_> {
    fn deref_mut(&mut self) -> &mut Lead {
        self.g
            .as_mut()
            .and_then(|g| g.as_mut())
            .expect("a LeadGuard is made only over a present state")
    }
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        self.side.run_ready();
    }
}

/// What [`PrimarySide::defer`] did.
pub enum Deferred {
    /// The update was released (or dropped) already: carry on here.
    Now(Signal),
    /// Whoever releases it carries the request on.
    Later,
}

impl PrimarySide {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        export: ExportId,
        secondaries: Vec<MemberId>,
        pristine_at_start: bool,
        lead: Lead,
    ) -> PrimarySide {
        PrimarySide {
            export,
            secondaries,
            history: lead.history,
            prev_history: lead.prev_history,
            pristine_at_start,
            chain_base: lead.chain_base,
            unheld: Condvar::new(),
            resyncs: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            datagrams: Default::default(),
            ready: Mutex::new(Vec::new()),
            core: Mutex::new(Some(lead)),
        }
    }

    /// The role's state, locked, while this side is still the primary.
    pub(super) fn lead(&self) -> Option<LeadGuard<'_>> {
        let g = lock(&self.core);
        g.is_some().then(|| LeadGuard {
            g: Some(g),
            side: self,
        })
    }

    /// Carries on the requests released while the lock was held (each exactly once).
    pub(super) fn run_ready(&self) {
        loop {
            let ready = std::mem::take(&mut *lock(&self.ready));
            if ready.is_empty() {
                return;
            }
            for (then, sig) in ready {
                then(sig);
            }
        }
    }

    /// The request that numbered `token` executed here and waits for its release: if it
    /// came already (on `rx`), carry on at once; else `then()` carries it on when it comes,
    /// on the releasing thread ([`Waiter::Then`]) — the request's thread goes free instead
    /// of sleeping on the release (13-request-path.md).
    pub fn defer(
        &self,
        token: u64,
        rx: &Receiver<Signal>,
        then: impl FnOnce() -> Then,
    ) -> Deferred {
        let Some(mut c) = self.lead() else {
            // the role ended: its waiters were told (Drop)
            return Deferred::Now(rx.try_recv().unwrap_or(Signal::Drop));
        };
        // releases are sent under this lock: nothing can come between the check and the
        // change of waiter
        if let Ok(sig) = rx.try_recv() {
            return Deferred::Now(sig);
        }
        match c.waiter(token) {
            Some(w) => {
                *w = Waiter::Then(then());
                Deferred::Later
            }
            None => Deferred::Now(Signal::Drop),
        }
    }

    /// Ends the role here: the state, for the transition that consumes it. A request thread
    /// that still holds this side finds nothing from now on.
    pub(super) fn take(&self) -> Option<Lead> {
        let l = lock(&self.core).take();
        self.unheld.notify_all(); // a held submit finds the role gone
        l
    }

    /// Holds (or releases) clients' writes for the resync of `member`: while any resync
    /// holds them, `submit` waits before numbering.
    pub fn hold(&self, member: MemberId, on: bool) {
        if let Some(mut c) = self.lead() {
            if c.hold(member, on) {
                self.unheld.notify_all();
            }
        }
    }

    /// Whether any secondary is live in the stream now.
    pub fn has_live_secondary(&self) -> bool {
        self.lead().is_some_and(|c| !c.p.live().is_empty())
    }

    /// Updates numbered and not yet released.
    pub fn pending(&self) -> usize {
        self.lead().map_or(0, |c| c.p.pending())
    }

    /// Every update up to here is released (executed here and on every live secondary).
    pub fn released(&self) -> SeqNo {
        self.lead().map_or(SeqNo(0), |c| c.p.released_watermark())
    }

    /// The epoch this primary leads (`None`: not primary any more).
    pub fn epoch(&self) -> Option<Epoch> {
        self.lead().map(|c| c.p.epoch())
    }

    /// The last pass of a resync of `member` is applied (writes held, nothing in flight):
    /// asks it to join at the current update. `true` if the Join went out.
    pub fn join_resynced(&self, m: &Mirror, member: MemberId, now: Millis) -> bool {
        let Some(link) = lock(&m.links).get(&member).cloned() else {
            return false;
        };
        self.add(m, member, &link, now);
        self.lead().is_some_and(|c| c.p.live().contains(member))
    }

    pub(super) fn add(&self, m: &Mirror, peer: MemberId, link: &Link, now: Millis) {
        if let Some(me) = lock(&m.node).member(self.export) {
            me.asked(peer, now);
        }
        let Some(mut c) = self.lead() else { return };
        c.accepted.remove(&peer);
        // The Join goes on the link before any update sent by add_member.
        let base = c.p.released_watermark();
        let join = PeerMsg::Join {
            export: self.export.0,
            epoch: c.p.epoch().0,
            base: base.0,
            history: self.history,
            pristine: self.pristine_at_start,
            prev: self.prev_history,
        };
        if link.try_send(join.to_frame().into()).is_err() {
            return;
        }
        match c.p.add_member(peer, now) {
            Ok(b) => debug_assert_eq!(b, base),
            Err(e) => {
                m.event(
                    now,
                    self.export,
                    format!("cannot add {} now: {e}", m.group.name_of(peer)),
                );
            }
        }
        self.drain(&mut c, m, now);
    }

    /// Numbers a client update and sends it; the caller waits on the receiver for
    /// [`Signal::Run`], executes, calls [`local_done`](Self::local_done), then waits for
    /// [`Signal::Release`] before replying.
    pub fn submit(
        &self,
        m: &Mirror,
        touch: &Touch,
        payload: Arc<Forwarded>,
        logged: &[ftnfs_core::mirror::resync::Touched],
        now: Millis,
    ) -> Result<(SeqNo, u64, Receiver<Signal>), Busy> {
        self.submit_with(m, |_| touch.clone(), payload, logged, now)
    }

    /// If everything numbered so far that conflicts with `keys` has executed here: the
    /// number to hand [`submit_with`](Self::submit_with)'s check (`Primary::settled`).
    pub fn settled_now(&self, keys: &[ftnfs_core::mirror::Key]) -> Option<SeqNo> {
        let c = self.lead()?;
        let since = c.p.next_seq();
        keys.iter().all(|k| c.p.settled(k, since)).then_some(since)
    }

    /// [`submit`](Self::submit), with what the update touches decided by `touch` from the
    /// primary's order state at the instant it is numbered. `Busy` once the role moved on.
    ///
    /// `logged` goes to the change log under the same lock that numbers the update, before
    /// it is sent or executed: the primary's log holds its updates in number order, without
    /// holes (what `Standing`'s window rule relies on; a member restarted from this log
    /// claims exactly what it numbered).
    pub fn submit_with(
        &self,
        m: &Mirror,
        touch: impl FnOnce(&ftnfs_core::mirror::primary::Primary<Arc<Forwarded>>) -> Touch,
        payload: Arc<Forwarded>,
        logged: &[ftnfs_core::mirror::resync::Touched],
        now: Millis,
    ) -> Result<(SeqNo, u64, Receiver<Signal>), Busy> {
        // the last pass of a resync, or a joiner's answer: wait (bounded by the hold limit,
        // plus a margin)
        let limit = std::time::Duration::from_millis(m.resync.hold_ms + 1000);
        let (g, _) = self
            .unheld
            .wait_timeout_while(lock(&self.core), limit, |c| {
                c.as_ref().is_some_and(|l| l.writes_held())
            })
            .unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(Busy);
        }
        let mut c = LeadGuard {
            g: Some(g),
            side: self,
        };
        let (tx, rx) = sync_channel(2);
        let idle = c.p.pending() == 0;
        let (seq, token) = c.submit(touch, payload, Waiter::Thread(tx), now)?;
        if let Some(log) = m.log(self.export) {
            log.update(self.history, seq.0, logged);
        }
        self.drain(&mut c, m, now);
        if idle {
            // a resend deadline now exists
            m.wake_for(Millis(now.0 + m.group.primary.retry_ms));
        }
        Ok((seq, token, rx))
    }

    /// The local execution of `seq` ended with `status`.
    pub fn local_done(&self, m: &Mirror, seq: SeqNo, status: u32, now: Millis) {
        if let Some(mut c) = self.lead() {
            c.p.local_done(seq, status);
            self.drain(&mut c, m, now);
        }
    }

    pub(super) fn drain(&self, c: &mut Lead, m: &Mirror, now: Millis) {
        // an update goes to every secondary in a row: encode it once, share the bytes
        let mut last: Option<(SeqNo, Epoch, bool, bytes::Bytes)> = None;
        while let Some(e) = c.p.poll_effect() {
            match e {
                PrimaryEffect::Send { to, update, again } => {
                    let link = lock(&m.links).get(&to).cloned();
                    if let Some(link) = link {
                        // a first send of a datagram every member received: its order only
                        let order = update.payload.proxied.filter(|_| !again);
                        let frame = match &last {
                            Some((s, e, o, f))
                                if *s == update.seq
                                    && *e == update.epoch
                                    && *o == order.is_some() =>
                            {
                                f.clone()
                            }
                            _ => {
                                let deps: Vec<u64> = update.deps.iter().map(|d| d.0).collect();
                                let u = &update.payload.payload;
                                let f = bytes::Bytes::from(match order {
                                    Some((len, sum)) => order_frame(
                                        update.export.0,
                                        update.epoch.0,
                                        update.seq.0,
                                        &deps,
                                        update.barrier,
                                        u,
                                        len,
                                        sum,
                                    ),
                                    None => update_frame(
                                        update.export.0,
                                        update.epoch.0,
                                        update.seq.0,
                                        &deps,
                                        update.barrier,
                                        u,
                                    ),
                                });
                                last = Some((update.seq, update.epoch, order.is_some(), f.clone()));
                                f
                            }
                        };
                        // full queue or closed link: the resend timer tries again
                        let _ = link.try_send(frame);
                    }
                }
                PrimaryEffect::Run { token, .. } => {
                    if let Some(Waiter::Thread(w)) = c.waiter(token) {
                        let _ = w.try_send(Signal::Run);
                    }
                }
                PrimaryEffect::Release { token, acked, .. } => {
                    let sig = Signal::Release {
                        alone: acked.is_empty(),
                    };
                    match c.take_waiter(token) {
                        Some(Waiter::Thread(w)) => {
                            let _ = w.try_send(sig);
                        }
                        // carried on once the lock is let go (LeadGuard)
                        Some(Waiter::Then(then)) => lock(&self.ready).push((then, sig)),
                        None => {}
                    }
                }
                PrimaryEffect::Failed { member, reason } => {
                    // tell it (best effort: a cut link loses it; the takeover window covers
                    // that): it no longer follows this stream
                    if let Some(l) = lock(&m.links).get(&member) {
                        let _ = l.try_send(
                            PeerMsg::FailedOut {
                                export: self.export.0,
                                epoch: c.p.epoch().0,
                            }
                            .to_frame()
                            .into(),
                        );
                    }
                    if matches!(reason, FailReason::Diverged { .. }) {
                        // copy it at the next tick: it stops serving reads when that starts
                        c.diverged.insert(member);
                        if let Some(me) = lock(&m.node).member(self.export) {
                            me.ask_soon(member);
                        }
                    }
                    let what = match &reason {
                        FailReason::Diverged { .. } => "failed out (diverged)",
                        FailReason::Silent { .. } => "failed out (silent)",
                        FailReason::Lost => "out (link lost)",
                        FailReason::Refused { .. } => "failed out (refused)",
                    };
                    // the instant the change log matters: what the member may lack starts here
                    let log = m
                        .log(self.export)
                        .map(|l| {
                            let (bytes, _) = l.size();
                            format!(
                                "; it misses updates after {} (change log {} KiB of {} KiB)",
                                c.p.released_watermark().0,
                                bytes >> 10,
                                m.group.rejoin.changelog_max >> 10
                            )
                        })
                        .unwrap_or_default();
                    m.event(
                        now,
                        self.export,
                        format!(
                            "secondary {} {what}: {reason}{log}",
                            m.group.name_of(member)
                        ),
                    );
                }
            }
        }
        if c.stepping_down().is_some() && c.p.pending() == 0 {
            m.wake.notify_one(); // the planned step-down can complete now
        }
    }
}
