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
        let (base, epoch, prev) = {
            let mut c = lock(&ss.core);
            let Some(sc) = c.as_mut() else { return false };
            match transitions::promotion(sc.joined(), sc.s.running(), sc.s.epoch(), persisted) {
                // not in step with any stream: nothing to take over from; or local applies
                // still running: the next tick
                Promotion::NotInStep | Promotion::Applying => return false,
                Promotion::Go { epoch } => {
                    sc.close();
                    (sc.s.watermark(), epoch, sc.history)
                }
            }
        };
        let epoch = match write_epoch(&self.state_dir, ss.export, epoch.0).map(|()| epoch) {
            Ok(e) => e,
            Err(e) => {
                self.event(
                    now,
                    ss.export,
                    format!("cannot take over: epoch not persisted: {e}"),
                );
                if let Some(sc) = lock(&ss.core).as_mut() {
                    sc.reopen(); // still a secondary
                }
                return false;
            }
        };
        let ps = PrimarySide::new(
            ss.export,
            ss.others.clone(),
            u64::from_be_bytes(random_bytes()),
            prev,
            false,
            epoch,
            base,
            &self.group,
        );
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
        if let Some(v) = &self.group.vip {
            if self.vip_export() == Some(export) {
                v.take_for(self.recent_clients(now));
            }
        }
        let links: Vec<(MemberId, Link)> = lock(&self.links)
            .iter()
            .map(|(m, l)| (*m, l.clone()))
            .collect();
        if let Some(role) = self.role(export) {
            if let Role::Primary(ps) = &*role {
                for (m, l) in links {
                    if ps.secondaries.contains(&m) {
                        // Client updates wait (bounded) for its answer and cached replies:
                        // this member may have lost its own with a restart, and a
                        // retransmission executed before they arrive runs twice
                        // (tests/sim_group.rs).
                        lock(&ps.joining).insert(m, now);
                        ps.hold(m, true);
                        ps.add(self, m, &l, now);
                    }
                }
            }
        }
    }

    /// `m` answered the Join of a new primary (refused, or joined and handed its replies):
    /// client updates need not wait for it any more.
    pub(super) fn joined_answered(&self, ps: &PrimarySide, m: MemberId) {
        if lock(&ps.joining).remove(&m).is_some() {
            ps.hold(m, false);
        }
    }

    /// Replaces primary `ps` by a standby (stepped down cleanly at `clean_at`, or not) and
    /// gives up the virtual IP.
    pub(super) fn stand_by(
        &self,
        ps: &PrimarySide,
        epoch: Epoch,
        why: String,
        clean_at: Option<(u64, SeqNo)>,
        now: Millis,
        what: String,
    ) {
        // clients follow the primary before anything else happens here (fencing.rs)
        if let Some(v) = &self.group.vip {
            if self.vip_export() == Some(ps.export) {
                v.give_up();
            }
        }
        self.set_role(
            ps.export,
            Role::Standby(StandbySide {
                export: ps.export,
                why,
                epoch,
                others: ps.secondaries.clone(),
                waits: clean_at.is_some(),
                clean_at,
                since: now,
            }),
        );
        self.event(now, ps.export, what);
    }

    /// Makes a standby or secondary member primary of an export on an operator's word
    /// (`ftnfsctl promote`). A secondary in step keeps its state; a standby starts a new
    /// stream from its own mirror.
    pub fn promote_by_operator(&self, export: ExportId, now: Millis) -> Result<String, String> {
        let role = self.role(export).ok_or("export is not mirrored")?;
        match &*role {
            Role::Primary(_) => Err("already primary".into()),
            Role::Secondary(ss) => {
                if lock(&ss.core).is_none() {
                    return Err(
                        "this secondary never joined its primary: its mirror may be stale".into(),
                    );
                }
                // Never two primaries: a primary still heard is asked to step down first
                // (it drains what is in flight, then falls silent).
                let silence = self.settings.silence_ms();
                if lock(&self.node)
                    .evidence
                    .heard_within(ss.primary, silence, now)
                {
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
                if !self.complete(export) {
                    return Err(
                        "this mirror is incomplete (an interrupted resync or a host crash); \
                         promote the member that has the data"
                            .into(),
                    );
                }
                self.start_primary(
                    export,
                    sb.epoch,
                    sb.others.clone(),
                    now,
                    "promoted by the operator",
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
        let ps = PrimarySide::new(
            export,
            others,
            u64::from_be_bytes(random_bytes()),
            prev,
            false,
            epoch,
            SeqNo(base),
            &self.group,
        );
        self.install_primary(
            ps,
            now,
            format!("{why}: primary in epoch {} from update {base}", epoch.0),
        );
        Ok("promoted".into())
    }

    /// Steps down from primary (the operator's word, or a hand-back): no new update is
    /// numbered; those in flight finish normally (the secondaries still acknowledge them);
    /// then this member stands by, exactly at its last update, and tells the first live
    /// secondary to take over; it follows that one as its secondary.
    pub fn demote(&self, export: ExportId, now: Millis, why: String) -> Result<(), String> {
        let Some(role) = self.role(export) else {
            return Err("export is not mirrored".into());
        };
        let Role::Primary(ps) = &*role else {
            return Err("not primary of this export".into());
        };
        {
            let mut c = lock(&ps.core);
            if c.stepping_down.is_some() {
                return Ok(());
            }
            // Hand the role to the first listed secondary that is live in our stream: only
            // we know it holds every released update. (An operator's promote of a secondary
            // cannot know that: one failed out earlier still believes it is in step, and
            // the sim_group simulation lost acknowledged updates that way.) With none, the
            // group would be left without a primary: refused.
            let live = c.p.live();
            let mut to = lock(&ps.handoff_to);
            if to.is_none() {
                *to = ps.secondaries.iter().copied().find(|m| live.contains(*m));
            }
            if to.is_none() {
                return Err("no secondary is in step to take over: not stepping down".into());
            }
            c.closed = true;
            c.stepping_down = Some(why.clone());
        }
        self.event(now, export, format!("stepping down from primary: {why}"));
        self.finish_step_down(ps, now);
        self.wake.notify_one();
        Ok(())
    }

    pub(super) fn finish_step_down(&self, ps: &PrimarySide, now: Millis) {
        let handoff_to = *lock(&ps.handoff_to);
        let (epoch, at, why, to) = {
            let c = lock(&ps.core);
            let why = c.stepping_down.clone().unwrap_or_default();
            let next = transitions::step_down(
                c.stepping_down.is_some(),
                c.p.pending(),
                handoff_to,
                c.p.live(),
            );
            let to = match next {
                StepDown::No | StepDown::Draining => return, // (draining: the next tick)
                StepDown::StandBy { to } => Some(to),
                StepDown::Cancel => None,
            };
            (c.p.epoch(), (ps.history, c.p.last_seq()), why, to)
        };
        lock(&ps.handoff_to).take();
        let what = format!("stood down at update {}: {why}", at.1 .0);
        if to.is_none() {
            // the member it was for fell out meanwhile (transitions::StepDown::Cancel)
            let mut c = lock(&ps.core);
            c.closed = false;
            c.stepping_down = None;
            drop(c);
            self.event(
                now,
                ps.export,
                "step-down cancelled: the member to take over is not in step any more".into(),
            );
            return;
        }
        self.stand_by(ps, epoch, why, Some(at), now, what);
        if let Some(to) = to {
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
    }

    /// A newer epoch exists: this member is no longer primary (never two primaries).
    /// Updates still in flight get no reply — they may not be on the new primary; their
    /// clients retransmit to it.
    pub fn deposed(&self, export: ExportId, now: Millis, why: String) {
        let Some(role) = self.role(export) else {
            return;
        };
        let Role::Primary(ps) = &*role else { return };
        let epoch = {
            let mut c = lock(&ps.core);
            c.closed = true;
            for (_, w) in c.waiters.drain() {
                let _ = w.try_send(Signal::Drop);
            }
            c.p.epoch()
        };
        let what = format!("deposed as primary: {why}");
        if self.moves_clients(ps.export) {
            // reset before standing by: no client waits on this member for a reply it will
            // never send (the virtual IP goes in stand_by, first thing)
            self.close_clients.send_modify(|g| *g += 1);
        }
        self.stand_by(ps, epoch, why, None, now, what);
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
        if self.moves_clients(sb.export) {
            self.close_clients.send_modify(|g| *g += 1);
        }
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
