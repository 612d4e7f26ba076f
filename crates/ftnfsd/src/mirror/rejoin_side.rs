//! Rejoin in the daemon: what this member wants when it cannot join (`want`), the resync
//! into this mirror (`sync_begin`/`sync_tx`/`sync_end`, then `join_after_resync`), the
//! resync from here to a member (`start_resync`), asking members to rejoin, and the
//! operator's resync commands (`Documentation/08-rejoin.md`).

use super::*;

impl Mirror {
    /// The stream and update this member's change log ends with ((0, 0): none).
    pub(super) fn last_logged(&self, export: ExportId) -> (u64, u64) {
        self.log(export).map(|l| l.last()).unwrap_or((0, 0))
    }

    /// The change log of an export.
    pub fn log(&self, export: ExportId) -> Option<&ChangeLog> {
        self.rejoin.logs.get(&export)
    }

    /// The mirror of `export` is complete: no resync into it was interrupted, and its host
    /// did not go down under it.
    pub fn complete(&self, export: ExportId) -> bool {
        !self.rejoin.damaged.contains(&export)
            && !crate::resync::has_marker(&self.state_dir, export)
    }

    /// What this member needs before it can follow a primary of `export` again.
    pub fn want(&self, export: ExportId) -> Want {
        if !self.complete(export) {
            return Want::Full;
        }
        // where it stands needs only the newest records (and each stream's first)
        let entries = self
            .log(export)
            .and_then(|l| l.tail(4 * WINDOW as usize).ok())
            .unwrap_or_default();
        match rules::position(&entries, WINDOW) {
            Some((history, from, ids)) => {
                let ids: Vec<(u64, u64, u64)> = ids
                    .touched()
                    .into_iter()
                    .map(|t| match t.blocks {
                        Some((a, b)) => (t.id, a, b),
                        None => (t.id, ftnfs_wire::peer::WHOLE, 0),
                    })
                    .collect();
                if ids.len() > ftnfs_wire::peer::MAX_WANT_IDS as usize {
                    return Want::Full;
                }
                Want::Partial { history, from, ids }
            }
            _ => Want::Full,
        }
    }

    /// The primary `from` sent a resync's first message: accept it when this member is not
    /// following anyone (a standby, or a secondary that did not join) and the epoch is
    /// current. Starts the applying thread.
    #[allow(clippy::too_many_arguments)]
    pub fn sync_begin(
        self: &Arc<Self>,
        from: MemberId,
        export: ExportId,
        epoch: u64,
        full: bool,
        out: Link,
        now: Millis,
    ) -> Result<(), String> {
        let role = self.role(export).ok_or("export not mirrored here")?;
        match &*role {
            Role::Primary(_) => return Err("this member is primary".into()),
            Role::Secondary(ss) => {
                let mut c = lock(&ss.core);
                // a primary orders a resync of its own secondary when that one diverged
                if c.as_ref().is_some_and(|sc| sc.follows_other_than(from)) {
                    return Err("this member follows another primary".into());
                }
                *c = None; // the mirror is about to change under any old position
                drop(c);
                // and so are the replies it executed: the survivor's come at the last pass
                // (a reply kept here for an update the resync undoes would answer a
                // retransmission for an update that no longer exists)
                self.local.clear_replies(export);
            }
            Role::Standby(sb) if sb.clean_at.is_some() && epoch <= sb.epoch.0 => {
                return Err("standing by after a step-down in this epoch".into())
            }
            Role::Standby(_) => {}
        }
        let known = read_epoch(&self.state_dir, export);
        if epoch < known {
            return Err(format!(
                "epoch {epoch} is older than epoch {known} known here"
            ));
        }
        if epoch > known {
            write_epoch(&self.state_dir, export, epoch).map_err(|e| e.to_string())?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let at = Arc::new(Mutex::new(None));
        let progress = Progress::new(
            self.group.name_of(from).to_string(),
            full,
            if full {
                "full copy".into()
            } else {
                "partial".into()
            },
        );
        let busy = self
            .rejoin
            .apply_busy
            .get(&export)
            .cloned()
            .ok_or("export not mirrored here")?;
        lock(&self.rejoin.incoming).insert(
            export,
            Incoming {
                tx,
                from,
                at: at.clone(),
                progress: progress.clone(),
            },
        );
        self.event(
            now,
            export,
            format!(
                "resync from {} started ({}): this mirror is incomplete until it ends",
                self.group.name_of(from),
                if full { "full copy" } else { "partial" }
            ),
        );
        let server = self.clone();
        std::thread::Builder::new()
            .name("ftnfs-resync-in".into())
            .stack_size(16 << 20)
            .spawn(move || {
                crate::resync::receive(server, export, full, rx, out, at, progress, busy)
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Where a resync message from `from` for `export` goes.
    pub fn sync_tx(
        &self,
        export: ExportId,
        from: MemberId,
    ) -> Option<tokio::sync::mpsc::Sender<PeerMsg>> {
        lock(&self.rejoin.incoming)
            .get(&export)
            .filter(|i| i.from == from)
            .map(|i| i.tx.clone())
    }

    /// The link from `from` is gone: its resyncs into this mirror end (they restart, in full,
    /// when it asks again).
    pub fn sync_end(&self, from: MemberId) {
        lock(&self.rejoin.incoming).retain(|_, i| i.from != from);
    }

    /// A Join that follows a finished resync: the mirror is exactly the primary's at `base`
    /// of `history`, so this member becomes its secondary from there. `None`: not such a Join.
    #[allow(clippy::too_many_arguments)]
    pub fn join_after_resync(
        &self,
        from: MemberId,
        export: ExportId,
        epoch: u64,
        base: u64,
        history: u64,
        out: Link,
        now: Millis,
    ) -> Option<PeerMsg> {
        {
            let inc = lock(&self.rejoin.incoming);
            let i = inc.get(&export)?;
            let at = *lock(&i.at);
            if i.from != from || at != Some((history, base)) {
                return None;
            }
        }
        let reply = |ok: bool, reason: String| PeerMsg::JoinReply {
            export: export.0,
            ok,
            reason,
            want: Want::Nothing,
        };
        let role = self.role(export)?;
        let others = match &*role {
            Role::Primary(_) => return None,
            Role::Secondary(ss) => ss.others.clone(),
            Role::Standby(sb) => sb.others.clone(),
        };
        if let Err(e) = crate::resync::clear_marker(&self.state_dir, export) {
            return Some(reply(false, format!("cannot clear the resync marker: {e}")));
        }
        if let Some(i) = lock(&self.rejoin.incoming).remove(&export) {
            i.progress.finish();
        }
        if let Some(m) = lock(&self.node).member(export) {
            m.resynced();
        }
        self.follow(
            export,
            from,
            others,
            Epoch(epoch),
            SeqNo(base),
            history,
            out,
            now,
        );
        self.event(
            now,
            export,
            format!(
                "resync done: in step with {} at update {base}; secondary again",
                self.group.name_of(from)
            ),
        );
        Some(reply(true, String::new()))
    }

    /// The primary side: member `from` refused to join and needs `want`: starts its resync
    /// (one at a time per member).
    pub(super) fn start_resync(
        self: &Arc<Self>,
        ps: &PrimarySide,
        from: MemberId,
        want: Want,
        now: Millis,
    ) {
        if lock(&ps.resyncs).contains_key(&from) {
            return;
        }
        let since = ps.released();
        let plan = match want {
            Want::Nothing => return,
            Want::Full if ps.lead().is_some_and(|c| c.diverged.contains(&from)) => {
                Plan::Full("it computed another result than this member (diverged)".into())
            }
            Want::Full => Plan::Full("its mirror's state is unknown".into()),
            Want::Partial {
                history,
                from: f,
                ids,
            } => {
                // only what the plan reads: the member's stream after its point, this
                // member's own stream, and each stream's first record
                let entries = self
                    .log(ps.export)
                    .and_then(|l| {
                        l.scan(
                            |e| match e {
                                rules::LogEntry::Update {
                                    history: h, seq, ..
                                } => (*h == history && *seq > f) || *h == ps.history,
                                rules::LogEntry::Start { .. } => true,
                            },
                            true,
                        )
                        .ok()
                    })
                    .unwrap_or_default();
                rules::plan(
                    &entries,
                    Stream {
                        history: ps.history,
                        prev: ps.prev_history,
                        base: ps.chain_base.0,
                    },
                    history,
                    f,
                    &ids.iter()
                        .map(|(id, a, b)| {
                            if *a == ftnfs_wire::peer::WHOLE {
                                rules::Touched::whole(*id)
                            } else {
                                rules::Touched::blocks(*id, *a, *b)
                            }
                        })
                        .collect::<Vec<_>>(),
                    WINDOW,
                )
            }
        };
        let Some(link) = lock(&self.links).get(&from).cloned() else {
            return;
        };
        let name = self.group.name_of(from).to_string();
        let (full, why) = match &plan {
            Plan::Full(why) => (true, format!("full copy: {why}")),
            Plan::Partial(ids) => (false, format!("partial: {} objects touched", ids.len())),
        };
        let progress = Progress::new(name.clone(), full, why.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(crate::resync::MAX_REPLIES_QUEUED);
        lock(&ps.resyncs).insert(from, (tx, progress.clone()));
        self.event(now, ps.export, format!("resync of {name} started ({why})"));
        let server2 = self.clone();
        let (export, history) = (ps.export, ps.history);
        let spawned = std::thread::Builder::new()
            .name("ftnfs-resync-out".into())
            .spawn(move || {
                let r = crate::resync::send(
                    server2.clone(),
                    export,
                    history,
                    from,
                    link,
                    plan,
                    since,
                    rx,
                    progress.clone(),
                );
                progress.finish();
                let m = &server2;
                if let Some(role) = m.role(export) {
                    if let Role::Primary(ps) = &*role {
                        lock(&ps.resyncs).remove(&from);
                        let mut f = lock(&ps.finished);
                        if f.len() >= 8 {
                            f.pop_front();
                        }
                        f.push_back(progress.clone());
                    }
                }
                let what = match r {
                    Ok(s) => format!("resync of {name} done: {s}"),
                    Err(e) => {
                        progress.phase(format!("failed: {e}"));
                        format!("resync of {name} failed: {e}; it will be tried again")
                    }
                };
                m.event(server2.local.now(), export, what);
            });
        if let Err(e) = spawned {
            lock(&ps.resyncs).remove(&from);
            self.event(now, ps.export, format!("cannot start a resync thread: {e}"));
        }
    }

    /// `ftnfsctl resync`: progress of every resync, and the rate (MiB/s, 0: no limit) when
    /// `rate` is given.
    pub fn resync_status(&self, rate_mb: Option<u64>) -> Value {
        if let Some(r) = rate_mb {
            self.resync
                .rate
                .store(r << 20, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = Vec::new();
        for role in self.roles() {
            if let Role::Primary(ps) = &*role {
                for (_, p) in lock(&ps.resyncs).values() {
                    out.push(
                        json!({"export": ps.export.0, "direction": "out", "progress": p.json()}),
                    );
                }
                for p in lock(&ps.finished).iter() {
                    out.push(
                        json!({"export": ps.export.0, "direction": "out", "progress": p.json()}),
                    );
                }
            }
        }
        for (e, i) in lock(&self.rejoin.incoming).iter() {
            out.push(json!({"export": e.0, "direction": "in", "progress": i.progress.json()}));
        }
        json!({
            "rate_mib_per_s": self.resync.rate.load(std::sync::atomic::Ordering::Relaxed) >> 20,
            "hold_ms": self.resync.hold_ms,
            "resyncs": out,
        })
    }

    /// `ftnfsctl resync start`: asks every listed secondary that is linked but out to join
    /// now (a resync follows if it needs one).
    pub fn resync_start(self: &Arc<Self>, export: Option<ExportId>, now: Millis) -> Value {
        let mut asked = Vec::new();
        for role in self.roles() {
            if let Role::Primary(ps) = &*role {
                if export.is_some_and(|e| e != ps.export) {
                    continue;
                }
                let Some(live) = ps.lead().map(|c| c.p.live()) else {
                    continue;
                };
                for m in &ps.secondaries {
                    if live.contains(*m) || lock(&ps.resyncs).contains_key(m) {
                        continue;
                    }
                    if self.ask_to_rejoin(ps, *m, now) {
                        asked
                            .push(json!({"export": ps.export.0, "member": self.group.name_of(*m)}));
                    }
                }
            }
        }
        json!({"asked": asked})
    }

    /// Asks listed secondary `m`, linked but out, to rejoin: a Join (it answers with what it
    /// needs), or — when it diverged and so believes it is in step — a full copy at once.
    /// `false` if it is not linked.
    pub(super) fn ask_to_rejoin(
        self: &Arc<Self>,
        ps: &PrimarySide,
        m: MemberId,
        now: Millis,
    ) -> bool {
        let Some(l) = lock(&self.links).get(&m).cloned() else {
            return false;
        };
        if ps.lead().is_some_and(|c| c.diverged.contains(&m)) {
            self.start_resync(ps, m, Want::Full, now);
        } else {
            ps.add(self, m, &l, now);
        }
        true
    }
}
