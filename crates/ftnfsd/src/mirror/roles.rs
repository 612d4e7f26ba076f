//! Role changes of this member, carried out in the daemon: taking over (`promote`),
//! installing a primary, standing by, the operator's promote and demote, the planned
//! step-down, deposition, following a new primary as a standby, and the tie rules between
//! two primaries. The decisions are the member machine's (`ftnfs_core::member`).

use super::*;

impl Mirror {
    /// Takes over an export we are a secondary of: a new epoch, our applied state as the
    /// base, the other members invited to follow, the virtual IP moved here.
    pub(super) fn promote(&self, ss: &SecondarySide, now: Millis, why: &str) -> bool {
        let persisted = Epoch(read_epoch(&self.state_dir, ss.export));
        // the follower is consumed by the takeover: from here it applies, acknowledges and
        // echoes nothing of the old stream
        let (sc, epoch) = {
            let mut c = lock(&ss.core);
            let Some(sc) = c.as_ref() else { return false };
            match sc.promotion(persisted) {
                // not in step with any stream: nothing to take over from; or local applies
                // still running: the next tick
                Promotion::NotInStep | Promotion::Applying => return false,
                Promotion::Go { epoch } => (c.take().expect("checked above"), epoch),
            }
        };
        if let Err(e) = write_epoch(&self.state_dir, ss.export, epoch.0) {
            self.event(
                now,
                ss.export,
                format!("cannot take over: epoch not persisted: {e}"),
            );
            *lock(&ss.core) = Some(sc); // still a secondary, as it was
            return false;
        }
        let lead = Leading::take_over(
            sc.f,
            ss.export,
            epoch,
            u64::from_be_bytes(random_bytes()),
            self.lead_cfg(ss.export),
        );
        let base = lead.chain_base;
        let ps = PrimarySide::new(ss.export, ss.others.clone(), false, lead);
        self.install_primary(
            ps,
            now,
            format!(
                "took over as primary at update {} in epoch {} ({why})",
                base.0, epoch.0
            ),
        );
        true
    }

    /// The epoch after `seen` and after any epoch persisted for the export, persisted before
    /// it is used (a member never leads an epoch it might forget).
    pub(super) fn next_epoch(&self, export: ExportId, seen: Epoch) -> std::io::Result<Epoch> {
        let epoch = transitions::next_epoch(seen, Epoch(read_epoch(&self.state_dir, export)));
        write_epoch(&self.state_dir, export, epoch.0)?;
        Ok(epoch)
    }

    /// Makes `ps` this member's role for its export: logs `what`, takes the virtual IP, and
    /// asks every linked listed member to join.
    pub(super) fn install_primary(&self, ps: PrimarySide, now: Millis, what: String) {
        let export = ps.export;
        if let Some(log) = self.log(export) {
            log.start(ps.history, ps.chain_base.0);
        }
        self.set_role(export, Role::Primary(ps));
        self.event(now, export, what);
        if let Some(g) = self.vip_led_by(export) {
            g.vip.take_for(self.recent_clients(now));
        }
        let links: Vec<(MemberId, Link)> = lock(&self.links)
            .iter()
            .map(|(m, l)| (*m, l.clone()))
            .collect();
        if let Some(role) = self.role(export) {
            if let Role::Primary(ps) = &*role {
                for (m, l) in links {
                    if ps.secondaries.contains(&m) {
                        // Client updates wait (bounded) for its answer and cached replies
                        // (Leading::join_asked).
                        if let Some(mut c) = ps.lead() {
                            c.join_asked(m, now);
                        }
                        ps.add(self, m, &l, now);
                    }
                }
            }
        }
    }

    /// `m` answered the Join of a new primary (refused, or joined and handed its replies):
    /// client updates need not wait for it any more.
    pub(super) fn joined_answered(&self, ps: &PrimarySide, m: MemberId) {
        if ps.lead().is_some_and(|mut c| c.join_answered(m)) {
            ps.unheld.notify_all();
        }
    }

    /// Replaces primary `ps`, whose state became `st` (stepped down cleanly, or deposed),
    /// by a standby and gives up the virtual IP.
    pub(super) fn stand_by(&self, ps: &PrimarySide, st: Standing, now: Millis, what: String) {
        // clients follow the primary before anything else happens here (fencing.rs)
        if let Some(g) = self.vip_led_by(ps.export) {
            g.vip.give_up();
        }
        self.set_role(
            ps.export,
            Role::Standby(StandbySide {
                export: ps.export,
                others: ps.secondaries.clone(),
                st,
            }),
        );
        self.event(now, ps.export, what);
    }

    /// Makes a standby or secondary member primary of an export on an operator's word
    /// (`ftnfsctl promote`). A secondary in step keeps its state; a standby starts a new
    /// stream from its own mirror. `force` (`ftnfsctl promote --force`) also starts from a
    /// mirror this member cannot vouch for — its host restarted without a clean stop, a
    /// resync into it was cut, or it never joined a primary: the way out when that is the
    /// best mirror left (every member's host lost power at once: none is complete, and none
    /// would ever start by itself).
    pub fn promote_by_operator(
        &self,
        export: ExportId,
        now: Millis,
        force: bool,
    ) -> Result<String, String> {
        let role = self.role(export).ok_or("export is not mirrored")?;
        // Never two primaries: a primary still heard is asked to step down first (it
        // drains what is in flight, then falls silent).
        let silence = self.settings.silence_ms();
        let heard = |m: MemberId| lock(&self.node).evidence.heard_within(m, silence, now);
        // a member that answers our probes as primary is followed, not replaced (its Join
        // brings this one in)
        let answered_primary = || {
            lock(&self.node)
                .member(export)
                .and_then(|m| m.answered_primary(now, silence))
        };
        match &*role {
            Role::Primary(_) => Err("already primary".into()),
            Role::Secondary(ss) => {
                if lock(&ss.core).is_none() {
                    if !force {
                        return Err("this secondary never joined its primary: its mirror may \
                                    be stale (--force starts from it anyway)"
                            .into());
                    }
                    if let Some(m) = answered_primary() {
                        return Err(format!("{} is primary", self.group.name_of(m)));
                    }
                    return self.start_primary(
                        export,
                        Epoch(0),
                        ss.others.clone(),
                        now,
                        "promoted by the operator (forced, from a mirror that never joined)",
                    );
                }
                if heard(ss.primary) {
                    return Err(format!(
                        "the primary {} is alive: `ftnfsctl demote` it first",
                        self.group.name_of(ss.primary)
                    ));
                }
                if self.promote(ss, now, "ftnfsctl promote") {
                    if let Some(m) = lock(&self.node).member(export) {
                        m.took_over();
                    }
                    Ok("promoted".into())
                } else {
                    Err("updates still being applied here; try again".into())
                }
            }
            Role::Standby(sb) => {
                if !self.complete(export) && !force {
                    return Err(
                        "this mirror is incomplete (an interrupted resync or a host crash); \
                         promote the member that has the data, or --force if none has"
                            .into(),
                    );
                }
                if let Some(m) = answered_primary().filter(|_| force) {
                    return Err(format!("{} is primary", self.group.name_of(m)));
                }
                self.start_primary(
                    export,
                    sb.epoch,
                    sb.others.clone(),
                    now,
                    if self.complete(export) {
                        "promoted by the operator"
                    } else {
                        "promoted by the operator (forced, from an incomplete mirror)"
                    },
                )
            }
        }
    }

    /// Starts a new stream from this member's own mirror (a standby or a secondary that
    /// never joined): it continues from the last update its change log shows, so members of
    /// that stream can rejoin with a partial resync.
    pub(super) fn start_primary(
        &self,
        export: ExportId,
        seen: Epoch,
        others: Vec<MemberId>,
        now: Millis,
        why: &str,
    ) -> Result<String, String> {
        let epoch = self.next_epoch(export, seen).map_err(|e| e.to_string())?;
        let (prev, base) = self.last_logged(export);
        let lead = Leading::start(
            export,
            epoch,
            SeqNo(base),
            u64::from_be_bytes(random_bytes()),
            prev,
            self.lead_cfg(export),
        );
        let ps = PrimarySide::new(export, others, false, lead);
        self.install_primary(
            ps,
            now,
            format!("{why}: primary in epoch {} from update {base}", epoch.0),
        );
        Ok("promoted".into())
    }

    /// Steps down from primary (the operator's word): no new update is numbered; those in
    /// flight finish normally (the secondaries still acknowledge them); then this member
    /// stands by, exactly at its last update, and tells the first live secondary to take
    /// over; it follows that one as its secondary.
    pub fn demote(&self, export: ExportId, now: Millis, why: String) -> Result<(), String> {
        self.step_down_for(export, now, why, None)?;
        // on the operator's word: not taken back by a hand-back later (Member::demoted)
        if let Some(m) = lock(&self.node).member(export) {
            m.demoted();
        }
        Ok(())
    }

    /// [`demote`](Self::demote) for member `to` (a hand-back to the listed primary), or for
    /// the first listed secondary live in our stream: only we know it holds every released
    /// update. (An operator's promote of a secondary cannot know that: one failed out
    /// earlier still believes it is in step, and the sim_group simulation lost acknowledged
    /// updates that way.) With none, the group would be left without a primary: refused.
    pub(super) fn step_down_for(
        &self,
        export: ExportId,
        now: Millis,
        why: String,
        to: Option<MemberId>,
    ) -> Result<(), String> {
        let Some(role) = self.role(export) else {
            return Err("export is not mirrored".into());
        };
        let Role::Primary(ps) = &*role else {
            return Err("not primary of this export".into());
        };
        let Some(mut c) = ps.lead() else {
            return Err("not primary of this export any more".into());
        };
        match c.begin_step_down(why.clone(), to, &ps.secondaries) {
            Ok(true) => {}
            Ok(false) => return Ok(()), // one runs already
            Err(e) => return Err(e.to_string()),
        }
        drop(c);
        self.stepping_down(ps, now, format!("stepping down from primary: {why}"));
        Ok(())
    }

    /// A planned step-down of `ps` began (`Leading::begin_step_down`): said in an event, and
    /// finished at once if nothing is in flight (else at the next ticks).
    pub(super) fn stepping_down(&self, ps: &PrimarySide, now: Millis, what: String) {
        self.event(now, ps.export, what);
        self.finish_step_down(ps, now);
        self.wake.notify_one();
    }

    /// A planned step-down, at a tick: once drained, the state is consumed into a clean
    /// standby and the successor is told to take over ([`Leading::step_down`]).
    pub(super) fn finish_step_down(&self, ps: &PrimarySide, now: Millis) {
        let next = {
            let mut g = lock(&ps.core);
            let Some(lead) = g.take() else { return };
            match lead.step_down(now) {
                SteppedDown::Leading(l) => {
                    *g = Some(l); // not stepping down, or draining: the next tick
                    return;
                }
                SteppedDown::Cancelled(l) => {
                    *g = Some(l);
                    None
                }
                SteppedDown::StoodBy { standing, to } => Some((standing, to)),
            }
        };
        ps.unheld.notify_all();
        let Some((standing, to)) = next else {
            // the member it was for fell out meanwhile (transitions::StepDown::Cancel)
            self.event(
                now,
                ps.export,
                "step-down cancelled: the member to take over is not in step any more".into(),
            );
            return;
        };
        let what = format!(
            "stood down at update {}: {}",
            standing.clean_at.map_or(0, |(_, s)| s.0),
            standing.why
        );
        self.stand_by(ps, standing, now, what);
        if let Some(l) = lock(&self.links).get(&to) {
            let _ = l.try_send(
                PeerMsg::TakeOver {
                    export: ps.export.0,
                }
                .to_frame()
                .into(),
            );
        }
    }

    /// A newer epoch exists: this member is no longer primary (never two primaries).
    /// Updates still in flight get no reply — they may not be on the new primary; their
    /// clients retransmit to it.
    pub fn deposed(&self, export: ExportId, now: Millis, why: String) {
        let Some(role) = self.role(export) else {
            return;
        };
        let Role::Primary(ps) = &*role else { return };
        let Some(lead) = ps.take() else { return };
        let (standing, dropped) = lead.depose(why, now);
        ps.run_ready(); // released before: they carry on (their lease check fails)
        for w in dropped {
            match w {
                Waiter::Thread(w) => {
                    let _ = w.try_send(Signal::Drop);
                }
                Waiter::Then(then) => then(Signal::Drop),
            }
        }
        let what = format!("deposed as primary: {}", standing.why);
        // reset before standing by: no client waits on this member for a reply it will
        // never send (the virtual IP goes in stand_by, first thing)
        self.close_clients_of(ps.export);
        self.stand_by(ps, standing, now, what);
    }

    /// Makes this member the secondary of `from` for `export`, in step at `base` of stream
    /// `history` (after a clean step-down, or a finished resync), and says so in the change
    /// log: a later rejoin knows it holds everything up to `base`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn follow(
        &self,
        export: ExportId,
        from: MemberId,
        others: Vec<MemberId>,
        epoch: Epoch,
        base: SeqNo,
        history: u64,
        out: Link,
        now: Millis,
    ) {
        if let Some(log) = self.log(export) {
            log.start(history, base.0);
        }
        self.set_role(
            export,
            Role::Secondary(SecondarySide {
                export,
                primary: from,
                others,
                core: Mutex::new(Some(SecondaryCore::following(
                    export, epoch, base, history, out, from, false, now,
                ))),
            }),
        );
    }

    /// A member that stood down cleanly is asked to join the member promoted after it: it
    /// becomes that member's secondary if it stands exactly where the new primary starts.
    #[allow(clippy::too_many_arguments)]
    pub fn standby_join(
        &self,
        sb: &StandbySide,
        from: MemberId,
        epoch: u64,
        base: u64,
        history: u64,
        prev: u64,
        out: Link,
        now: Millis,
    ) -> PeerMsg {
        let reply = |ok: bool, reason: String| PeerMsg::JoinReply {
            export: sb.export.0,
            ok,
            reason,
            want: Want::Nothing,
        };
        let verdict = rules_rejoin::standby_join(
            Epoch(read_epoch(&self.state_dir, sb.export)),
            sb.epoch,
            sb.clean_at,
            Epoch(epoch),
            (prev, SeqNo(base)),
            self.complete(sb.export),
        );
        if verdict == Err(rules_rejoin::JoinRefusal::OlderEpoch) {
            return reply(
                false,
                format!("epoch {epoch} is older than the one known here"),
            );
        }
        if verdict.is_err() {
            let why = format!("standing by ({}); needs resync", sb.why);
            self.event(
                now,
                sb.export,
                format!("refused join of {}: {why}", self.group.name_of(from)),
            );
            return PeerMsg::JoinReply {
                export: sb.export.0,
                ok: false,
                reason: why,
                want: self.want(sb.export),
            };
        }
        if let Err(e) = write_epoch(&self.state_dir, sb.export, epoch) {
            return reply(false, format!("cannot persist epoch: {e}"));
        }
        self.follow(
            sb.export,
            from,
            sb.others.clone(),
            Epoch(epoch),
            SeqNo(base),
            history,
            out,
            now,
        );
        self.event(
            now,
            sb.export,
            format!(
                "follows {} as secondary from update {base} (epoch {epoch})",
                self.group.name_of(from)
            ),
        );
        // a listed primary restarted from its seal may want its role back once in step
        if let Some(me) = lock(&self.node).member(sb.export) {
            me.followed_from_standby(sb.waits, sb.clean_at);
        }
        // the new primary holds the virtual IP now: clients still connected here reconnect
        // to it and resend the requests held here without a reply
        self.close_clients_of(sb.export);
        reply(true, String::new())
    }

    /// Whether this member, leading `export` in `ours`, must yield to `from`, which leads or
    /// follows `theirs` ([`fencing::yields_to`]).
    pub fn yields(&self, export: ExportId, ours: Epoch, from: MemberId, theirs: Epoch) -> bool {
        let me = self.rejoin.position.get(&export).copied().unwrap_or(0);
        let others = match self.role(export).as_deref() {
            Some(Role::Primary(ps)) => ps.secondaries.clone(),
            Some(Role::Secondary(ss)) => ss.others.clone(),
            Some(Role::Standby(sb)) => sb.others.clone(),
            None => Vec::new(),
        };
        let them = ftnfs_core::member::startup::position_of(&others, me, from);
        fencing::yields_to(ours, me, theirs, them)
    }

    /// Whether `from`, leading or following `theirs`, must yield to this member, which
    /// leads `export` in `ours`: it is answered with a `Refuse` of ours.
    pub fn outranks(&self, export: ExportId, ours: Epoch, from: MemberId, theirs: Epoch) -> bool {
        // two members never share a place: exactly one of two yields
        !self.yields(export, ours, from, theirs)
    }
}
