//! The secondary side of one export in the daemon: accepts the leader's updates, applies them
//! on the blocking pool (through the core's `Secondary`), acknowledges them, echoes heartbeats
//! and remembers when the primary last led it.

use super::*;

/// The secondary side of one export.
pub struct SecondarySide {
    /// The export.
    pub export: ExportId,
    /// The listed primary.
    pub primary: MemberId,
    /// Every other listed member.
    pub others: Vec<MemberId>,
    pub(super) core: Mutex<Option<SecondaryCore>>,
}

/// A secondary's place in its leader's stream (the core's [`Follower`]: whom it follows,
/// answers and acknowledges) and the link its answers go out on.
pub(super) struct SecondaryCore {
    pub(super) f: Follower<Arc<Forwarded>>,
    pub(super) out: Link,
    /// Client datagrams held for the primary's orders (proxy mode, `proxy_side.rs`).
    pub(super) proxy: super::proxy_side::Held,
    /// Unknown requests (`ProxyStats::unknown`) already reported to the primary.
    pub(super) unknown_sent: u64,
}

impl std::ops::Deref for SecondaryCore {
    type Target = Follower<Arc<Forwarded>>;
    fn deref(&self) -> &Self::Target {
        &self.f
    }
}

impl std::ops::DerefMut for SecondaryCore {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.f
    }
}

impl SecondaryCore {
    /// `leader`'s Join accepted at `now`: following its stream `history` of `export` in
    /// `epoch` from update `base`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn following(
        export: ExportId,
        epoch: Epoch,
        base: SeqNo,
        history: u64,
        out: Link,
        leader: MemberId,
        pristine: bool,
        now: Millis,
    ) -> SecondaryCore {
        SecondaryCore {
            f: Follower::following(export, epoch, base, history, leader, pristine, now, WINDOW),
            out,
            proxy: super::proxy_side::held(),
            unknown_sent: 0,
        }
    }

    /// Where a clean stop left this mirror in its primary's stream (the seal), following
    /// nobody until a Join is accepted.
    pub(super) fn sealed(export: ExportId, seal: &Seal) -> SecondaryCore {
        SecondaryCore {
            f: Follower::sealed(
                export,
                Epoch(seal.epoch),
                SeqNo(seal.seq),
                seal.history,
                WINDOW,
            ),
            out: Link::closed(),
            proxy: super::proxy_side::held(),
            unknown_sent: 0,
        }
    }
}

impl SecondarySide {
    /// The primary asks us to be its secondary. Until resync exists (the rejoin issue), we
    /// accept only when our state is certainly the primary's at `base`: we are still in the
    /// same update stream (`history`) and have applied at least up to `base`, or both mirrors
    /// are pristine and nothing was released yet.
    #[allow(clippy::too_many_arguments)]
    pub fn on_join(
        &self,
        m: &Mirror,
        ex: &ExportFs,
        from: MemberId,
        epoch: u64,
        base: u64,
        history: u64,
        primary_pristine: bool,
        prev: u64,
        out: Link,
        now: Millis,
    ) -> PeerMsg {
        let reply = |ok: bool, reason: String| PeerMsg::JoinReply {
            export: self.export.0,
            ok,
            reason,
            want: Want::Nothing,
        };
        let known = read_epoch(&m.state_dir, self.export);
        let mut c = lock(&self.core);
        let applied_epoch = c.as_ref().map(|sc| sc.s.epoch());
        let applied = c.as_ref().map(|sc| sc.applied());
        let mirror_pristine = match applied {
            Some(_) => false, // not asked: a stream is applied here
            None => match ex.pristine() {
                Ok(p) => p,
                Err(e) => {
                    drop(c);
                    return reply(false, format!("cannot inspect this mirror: {e}"));
                }
            },
        };
        let offer = rules_rejoin::Offer {
            from_listed_primary: from == self.primary,
            epoch: Epoch(epoch),
            base: SeqNo(base),
            history,
            prev,
            pristine: primary_pristine,
        };
        let accept = rules_rejoin::secondary_join(
            &offer,
            Epoch(known),
            m.complete(self.export),
            applied,
            mirror_pristine,
        );
        if let Err(r) = &accept {
            if !r.needs_resync() {
                drop(c);
                let why = match r {
                    rules_rejoin::Refusal::NotListed => format!(
                        "{} is not the listed primary of this export",
                        m.group.name_of(from)
                    ),
                    r => format!("epoch {epoch}: {r}"),
                };
                return reply(false, why);
            }
        }
        match accept {
            Ok(keep) => {
                if epoch > known {
                    if let Err(e) = write_epoch(&m.state_dir, self.export, epoch) {
                        return reply(false, format!("cannot persist epoch: {e}"));
                    }
                }
                if keep {
                    let sc = c.as_mut().expect("checked above");
                    sc.out = out;
                    sc.rejoined(from, Epoch(epoch), now);
                    sc.proxy.clear(); // orders of the old epoch wait no more
                } else {
                    let pristine = c.as_ref().is_none_or(|sc| sc.pristine());
                    if let Some(log) = m.log(self.export) {
                        log.start(history, base);
                    }
                    *c = Some(SecondaryCore::following(
                        self.export,
                        Epoch(epoch),
                        SeqNo(base),
                        history,
                        out,
                        from,
                        pristine && prev == 0,
                        now,
                    ));
                }
                drop(c);
                m.event(
                    now,
                    self.export,
                    format!(
                        "joined {} as secondary at update {base}",
                        m.group.name_of(from)
                    ),
                );
                reply(true, String::new())
            }
            Err(why) => {
                // A newer epoch asks: whoever we followed was replaced. Stop following it
                // (so the new primary's resync is accepted, and we never take over from a
                // stream that moved on without us). The epoch is not persisted: it would
                // make this stale mirror's claim look newer in startup negotiation.
                if rules_rejoin::leaves_old_stream(Epoch(known), applied_epoch, Epoch(epoch)) {
                    *c = None;
                } else if let Some(sc) = c.as_mut() {
                    // a Join from the primary we follow says it failed us out (it asks only
                    // members that are out): we are not in step with it any more
                    sc.leave(from);
                }
                drop(c);
                let why = why.to_string();
                m.event(
                    now,
                    self.export,
                    format!("refused join of {}: {why}", m.group.name_of(from)),
                );
                PeerMsg::JoinReply {
                    export: self.export.0,
                    ok: false,
                    reason: why,
                    want: m.want(self.export),
                }
            }
        }
    }

    /// The primary `from` failed this member out of its stream (`epoch`).
    pub fn failed_out(&self, m: &Mirror, from: MemberId, epoch: u64, now: Millis) {
        let mut c = lock(&self.core);
        if let Some(sc) = c.as_mut() {
            if sc.failed_out(from, Epoch(epoch)) {
                drop(c);
                m.event(
                    now,
                    self.export,
                    format!(
                        "failed out by {}: not in step any more (a resync follows)",
                        m.group.name_of(from)
                    ),
                );
            }
        }
    }

    /// A heartbeat from `from`: answered on the same link; from our leader, it leads us.
    pub fn on_heartbeat(&self, from: MemberId, epoch: u64, seq: u64, now: Millis) {
        let mut c = lock(&self.core);
        if let Some(sc) = c.as_mut() {
            // only the leader is answered: a member that left its stream (it vouched the
            // leader lost, or the leader probed it) gives it no read lease
            if sc.heartbeat(from, Epoch(epoch), seq, now) {
                let _ = sc.out.try_send(
                    PeerMsg::Heartbeat {
                        export: self.export.0,
                        epoch,
                        seq,
                    }
                    .to_frame()
                    .into(),
                );
            }
        }
    }

    /// `from` granted a read lease on our echo of its heartbeat `at` (split exports): taken
    /// only from the leader, in our epoch (`Follower::read_granted`).
    pub fn on_read_lease(&self, from: MemberId, epoch: u64, at: u64, lease_ms: u64) {
        if let Some(sc) = lock(&self.core).as_mut() {
            sc.read_granted(from, Epoch(epoch), at, lease_ms);
        }
    }

    /// Whether this member answers reads of a split export now: under its read lease.
    pub fn reads(&self, now: Millis) -> bool {
        lock(&self.core).as_ref().is_some_and(|sc| sc.reads(now))
    }

    /// An update from `from`, accepted only from the primary whose Join we accepted.
    pub fn on_update(
        &self,
        m: &Arc<Mirror>,
        from: MemberId,
        update: ftnfs_core::mirror::Update<Arc<Forwarded>>,
    ) {
        let mut c = lock(&self.core);
        let Some(sc) = c.as_mut() else {
            return; // not joined: the primary's Join was refused
        };
        if !sc.accepts_from(from) {
            return;
        }
        m.note_client(&update.payload.payload.origin, m.local.now());
        Self::delivered(sc, &update);
        sc.s.on_update(update);
        self.drain(sc, m);
    }

    /// The update `seq` was applied here with `status`.
    pub fn applied(&self, m: &Arc<Mirror>, seq: SeqNo, status: u32) {
        let mut c = lock(&self.core);
        if let Some(sc) = c.as_mut() {
            sc.applied_one();
            sc.s.applied(seq, status);
            self.drain(sc, m);
        }
    }

    pub(super) fn drain(&self, sc: &mut SecondaryCore, m: &Arc<Mirror>) {
        while let Some(e) = sc.s.poll_effect() {
            match e {
                SecondaryEffect::Apply(u) if m.local.in_memory(self.export) => {
                    // An `InMemory` export syncs nothing: applied here, on whatever thread
                    // drains (a link's reader, mostly), without a hand-off to a blocking
                    // thread and back — one wake-up and two thread switches fewer per update
                    // (13-request-path.md). Under this side's lock, in order: the next
                    // effects (its Ack, updates it unblocks) come out of the same loop.
                    let status = m.local.apply_update(
                        self.export,
                        &u.payload.payload,
                        (sc.history, u.seq),
                        m.log(self.export),
                    );
                    sc.applied_one();
                    sc.s.applied(u.seq, status);
                }
                SecondaryEffect::Apply(u) => {
                    let m = m.clone();
                    let export = self.export;
                    let history = sc.history;
                    tokio::runtime::Handle::current().spawn_blocking(move || {
                        let status = m.local.apply_update(
                            export,
                            &u.payload.payload,
                            (history, u.seq),
                            m.log(export),
                        );
                        if let Some(role) = m.role(export) {
                            if let Role::Secondary(ss) = &*role {
                                ss.applied(&m, u.seq, status);
                            }
                        }
                    });
                }
                // a member that left its stream acknowledges nothing more of it, not even
                // what it had received before: it vouched that the leader was lost, and the
                // asker may have taken over without those updates
                SecondaryEffect::Ack { .. } if sc.acks_to().is_none() => {}
                SecondaryEffect::Ack { epoch, seq, status } => {
                    let _ = sc.out.try_send(
                        PeerMsg::Ack {
                            export: self.export.0,
                            epoch: epoch.0,
                            seq: seq.0,
                            status,
                        }
                        .to_frame()
                        .into(),
                    );
                }
                SecondaryEffect::Refuse { seq, ours } => {
                    let _ = sc.out.try_send(
                        PeerMsg::Refuse {
                            export: self.export.0,
                            epoch: ours.0,
                            seq: seq.0,
                        }
                        .to_frame()
                        .into(),
                    );
                }
            }
        }
    }
}
