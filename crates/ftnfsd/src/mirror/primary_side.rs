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
    pub(super) core: Mutex<PrimaryCore>,
    /// Members asked to join when this member became primary whose answer (and cached
    /// replies) is awaited, since when: they hold writes ([`Mirror::joined_answered`]) for at
    /// most the silence time.
    pub(super) joining: Mutex<HashMap<MemberId, Millis>>,
    /// Live secondaries that accepted their latest Join (status: a live member not in here
    /// is still deciding whether it can join or needs a resync).
    pub(super) accepted: Mutex<HashSet<MemberId>>,
    /// Writes held by these members' resyncs (their last pass): new updates wait to be
    /// numbered while any holds.
    pub(super) held: Mutex<HashSet<MemberId>>,
    pub(super) unheld: Condvar,
    /// Resyncs running from here, by member.
    pub(super) resyncs: Mutex<HashMap<MemberId, Outgoing>>,
    /// Finished resyncs (the newest few), for status.
    pub(super) finished: Mutex<VecDeque<Arc<Progress>>>,
    /// Stepping down to give the role to this member (it takes over when we stood down).
    pub(super) handoff_to: Mutex<Option<MemberId>>,
    /// Members failed out because they computed another result: their mirror differs, so
    /// they get a full copy before they serve again.
    pub(super) diverged: Mutex<HashSet<MemberId>>,
    /// When each secondary last confirmed our epoch (its echo of our heartbeat, or an ack):
    /// the read lease ([`Mirror::lease_ok`]).
    pub(super) confirmed: Mutex<std::collections::BTreeMap<MemberId, Millis>>,
}

pub(super) struct PrimaryCore {
    pub(super) p: Primary<Arc<UpdatePayload>>,
    pub(super) waiters: HashMap<u64, SyncSender<Signal>>,
    pub(super) next_token: u64,
    /// Stopping: sealed or not, no new update is numbered.
    pub(super) closed: bool,
    /// A planned step-down: once nothing is in flight, stand by (why).
    pub(super) stepping_down: Option<String>,
}

impl PrimarySide {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        export: ExportId,
        secondaries: Vec<MemberId>,
        history: u64,
        prev_history: u64,
        pristine_at_start: bool,
        epoch: Epoch,
        base: SeqNo,
        group: &Group,
    ) -> PrimarySide {
        PrimarySide {
            export,
            secondaries,
            history,
            prev_history,
            pristine_at_start,
            chain_base: base,
            held: Mutex::new(HashSet::new()),
            joining: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashSet::new()),
            unheld: Condvar::new(),
            resyncs: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            handoff_to: Mutex::new(None),
            diverged: Mutex::new(HashSet::new()),
            confirmed: Mutex::new(std::collections::BTreeMap::new()),
            core: Mutex::new(PrimaryCore {
                p: Primary::new(
                    export,
                    epoch,
                    base,
                    MemberSet::EMPTY,
                    PrimaryConfig {
                        max_pending: WINDOW as usize,
                        ..group.primary
                    },
                ),
                waiters: HashMap::new(),
                next_token: 0,
                closed: false,
                stepping_down: None,
            }),
        }
    }

    /// `m` confirmed our epoch as of `at` (when we sent what it answered).
    pub(super) fn confirm(&self, m: MemberId, at: Millis) {
        let mut c = lock(&self.confirmed);
        let t = c.entry(m).or_insert(at);
        *t = (*t).max(at);
    }

    /// Holds (or releases) clients' writes for the resync of `member`: while any resync
    /// holds them, `submit` waits before numbering.
    pub fn hold(&self, member: MemberId, on: bool) {
        let mut h = lock(&self.held);
        if on {
            h.insert(member);
        } else {
            h.remove(&member);
            if h.is_empty() {
                self.unheld.notify_all();
            }
        }
    }

    /// Whether any secondary is live in the stream now.
    pub fn has_live_secondary(&self) -> bool {
        !lock(&self.core).p.live().is_empty()
    }

    /// Updates numbered and not yet released.
    pub fn pending(&self) -> usize {
        lock(&self.core).p.pending()
    }

    /// Every update up to here is released (executed here and on every live secondary).
    pub fn released(&self) -> SeqNo {
        lock(&self.core).p.released_watermark()
    }

    /// The epoch this primary leads.
    pub fn epoch(&self) -> Epoch {
        lock(&self.core).p.epoch()
    }

    /// The last pass of a resync of `member` is applied (writes held, nothing in flight):
    /// asks it to join at the current update. `true` if the Join went out.
    pub fn join_resynced(&self, m: &Mirror, member: MemberId, now: Millis) -> bool {
        let Some(link) = lock(&m.links).get(&member).cloned() else {
            return false;
        };
        self.add(m, member, &link, now);
        lock(&self.core).p.live().contains(member)
    }

    pub(super) fn add(&self, m: &Mirror, peer: MemberId, link: &Link, now: Millis) {
        if let Some(me) = lock(&m.node).member(self.export) {
            me.asked(peer, now);
        }
        lock(&self.accepted).remove(&peer);
        let mut c = lock(&self.core);
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
        payload: Arc<UpdatePayload>,
        now: Millis,
    ) -> Result<(SeqNo, Receiver<Signal>), Busy> {
        self.submit_with(m, |_| touch.clone(), payload, now)
    }

    /// If everything numbered so far that conflicts with `keys` has executed here: the
    /// number to hand [`submit_with`](Self::submit_with)'s check (`Primary::settled`).
    pub fn settled_now(&self, keys: &[ftnfs_core::mirror::Key]) -> Option<SeqNo> {
        let c = lock(&self.core);
        let since = c.p.next_seq();
        keys.iter().all(|k| c.p.settled(k, since)).then_some(since)
    }

    /// [`submit`](Self::submit), with what the update touches decided by `touch` from the
    /// primary's order state at the instant it is numbered.
    pub fn submit_with(
        &self,
        m: &Mirror,
        touch: impl FnOnce(&ftnfs_core::mirror::primary::Primary<Arc<UpdatePayload>>) -> Touch,
        payload: Arc<UpdatePayload>,
        now: Millis,
    ) -> Result<(SeqNo, Receiver<Signal>), Busy> {
        {
            // the last pass of a resync: wait (bounded by its hold limit, plus a margin)
            let limit = std::time::Duration::from_millis(m.resync.hold_ms + 1000);
            let held = lock(&self.held);
            let (_g, _) = self
                .unheld
                .wait_timeout_while(held, limit, |h| !h.is_empty())
                .unwrap_or_else(|p| p.into_inner());
        }
        let mut c = lock(&self.core);
        if c.closed {
            return Err(Busy);
        }
        c.next_token += 1;
        let token = c.next_token;
        let (tx, rx) = sync_channel(2);
        c.waiters.insert(token, tx);
        let idle = c.p.pending() == 0;
        let touch = touch(&c.p);
        match c.p.submit(token, &touch, payload, now) {
            Ok(seq) => {
                self.drain(&mut c, m, now);
                if idle {
                    m.wake.notify_one(); // a resend deadline now exists
                }
                Ok((seq, rx))
            }
            Err(b) => {
                c.waiters.remove(&token);
                Err(b)
            }
        }
    }

    /// The local execution of `seq` ended with `status`.
    pub fn local_done(&self, m: &Mirror, seq: SeqNo, status: u32, now: Millis) {
        let mut c = lock(&self.core);
        c.p.local_done(seq, status);
        self.drain(&mut c, m, now);
    }

    pub(super) fn drain(&self, c: &mut PrimaryCore, m: &Mirror, now: Millis) {
        // an update goes to every secondary in a row: encode it once, share the bytes
        let mut last: Option<(SeqNo, Epoch, bytes::Bytes)> = None;
        while let Some(e) = c.p.poll_effect() {
            match e {
                PrimaryEffect::Send { to, update } => {
                    let link = lock(&m.links).get(&to).cloned();
                    if let Some(link) = link {
                        let frame = match &last {
                            Some((s, e, f)) if *s == update.seq && *e == update.epoch => f.clone(),
                            _ => {
                                let deps: Vec<u64> = update.deps.iter().map(|d| d.0).collect();
                                let f = bytes::Bytes::from(update_frame(
                                    update.export.0,
                                    update.epoch.0,
                                    update.seq.0,
                                    &deps,
                                    update.barrier,
                                    &update.payload,
                                ));
                                last = Some((update.seq, update.epoch, f.clone()));
                                f
                            }
                        };
                        // full queue or closed link: the resend timer tries again
                        let _ = link.try_send(frame);
                    }
                }
                PrimaryEffect::Run { token, .. } => {
                    if let Some(w) = c.waiters.get(&token) {
                        let _ = w.try_send(Signal::Run);
                    }
                }
                PrimaryEffect::Release { token, acked, .. } => {
                    if let Some(w) = c.waiters.remove(&token) {
                        let _ = w.try_send(Signal::Release {
                            alone: acked.is_empty(),
                        });
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
                        lock(&self.diverged).insert(member);
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
        if c.stepping_down.is_some() && c.p.pending() == 0 {
            m.wake.notify_one(); // the planned step-down can complete now
        }
    }
}
