//! RPC dispatch: one call record in, at most one reply record out.
//!
//! The reply is returned as bytes, not written to a socket, so the caller decides when it
//! leaves (mirroring will hold it until the secondaries acknowledge). Order of checks follows
//! RFC 5531 §9: RPC version, program, version, procedure, credentials, then arguments.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ftnfs_core::access::Cred;
use ftnfs_core::drc::{Drc, DrcKey, Verdict};
use ftnfs_core::exports::ReadMode;
use ftnfs_core::handle::FileHandle;
use ftnfs_core::ids::{ExportId, Millis, SeqNo};

use ftnfs_core::mirror::{Key, Touch};
/// Granularity of the replication order inside a file's data: the change log's block.
use ftnfs_core::proc_table::{self, ProcInfo};
use ftnfs_wire::mount::{self, ExportList, ExportNode, MntRes, MountList, MountStat3};
use ftnfs_wire::nfs3::{self, Args, ArgsError, NfsStat3};
use ftnfs_wire::nlm::Stat as NlmStat;
use ftnfs_wire::peer::{Origin, UpdatePayload};
use ftnfs_wire::rpc::{
    flavor, AcceptStat, AuthStat, AuthSys, CallHeader, MessageError, ReplyHeader, Xid,
};
use ftnfs_wire::xdr::{XdrDecode, XdrEncode, XdrReader, XdrWriter};

use crate::fs::ExportFs;
use crate::local::Local;
use crate::lock_table::{Body, Call, Pending};
use crate::mirror::{Mirror, Role, Signal};
use crate::nfs3_procs::Dictation;

/// Most remembered mounts (MOUNT DUMP list).
pub const MAX_MOUNTS: usize = 4096;

/// Per-procedure call counters.
#[derive(Default)]
pub struct Counters {
    /// NFSv3 calls by procedure.
    pub nfs: [AtomicU64; 22],
    /// MOUNT calls by procedure.
    pub mount: [AtomicU64; 6],
    /// Calls refused at the RPC level (bad version, program, procedure, auth, garbage).
    pub rpc_errors: AtomicU64,
    /// Per-procedure latency and errors, bytes read and written (`--metrics`).
    pub calls: crate::call_stats::CallStats,
}

/// How a call reached this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A TCP connection (this member alone received it).
    Stream,
    /// A UDP datagram; `everyone`: sent to a multicast virtual IP, so every member received
    /// it (DESIGN.md decision 8).
    Datagram {
        /// Every member received it.
        everyone: bool,
        /// This member may answer it: not a multicast virtual IP held by another member.
        answer: bool,
    },
}

/// Where a call's reply goes (`None`: send nothing), exactly once.
pub type Respond = Box<dyn FnOnce(Option<Vec<u8>>) + Send>;

/// What a call handled on a request thread needs to be carried on by another thread.
struct Later<'a> {
    server: &'a Arc<Server>,
    respond: &'a mut Option<Respond>,
    record: &'a bytes::Bytes,
    t0: Instant,
}

/// A mirrored update executed here, waiting for its release: what its reply needs.
struct Released {
    key: DrcKey,
    info: &'static ProcInfo,
    export: ExportId,
    in_memory: bool,
    seq: SeqNo,
    t_sub: Instant,
    t_run: Instant,
    t_done: Instant,
    reply: Vec<u8>,
}

impl Later<'_> {
    /// The rest of the request, for whoever releases it: what may wait (an `InMemory`
    /// update released alone is flushed; a lease that does not hold is waited for) goes to
    /// a blocking thread, the rest runs on the releasing thread — a link's reader, mostly.
    fn then(self, c: Released) -> crate::mirror::Then {
        let server = self.server.clone();
        let respond = self.respond.take().expect("a call is answered once");
        let record = self.record.clone();
        let t0 = self.t0;
        let rt = tokio::runtime::Handle::try_current().ok();
        Box::new(move |sig: Signal| {
            let (export, key, info) = (c.export, c.key, c.info);
            let waits = (c.in_memory && sig == Signal::Release { alone: true })
                || !server.mirror.lease_ok(export, server.now());
            let run = move |server: Arc<Server>| {
                let reply = server.after_release(sig, c);
                if let Some(r) = &reply {
                    server.settle_reply(key, r, info, Some(export.0));
                }
                server
                    .counters
                    .calls
                    .observe(&record, t0.elapsed(), reply.as_deref());
                respond(reply);
            };
            match rt {
                Some(rt) if waits => {
                    rt.spawn_blocking(move || run(server));
                }
                _ => run(server),
            }
        })
    }
}

/// The NFS and MOUNT service of one member: dispatch over this member's exports (`local`)
/// and, for mirrored exports, through its roles (`mirror`), which it shares with the mirror
/// driver and the peer links.
pub struct Server {
    /// The exports, the DRC, the clock.
    pub local: Arc<Local>,
    /// Counters.
    pub counters: Counters,
    /// (client, path) of MNT calls not yet UMNTed.
    pub mounts: Mutex<Vec<(IpAddr, String)>>,
    /// Mirrored exports and their roles.
    pub mirror: Arc<Mirror>,
    /// The NLM lock service.
    pub nlm: Arc<crate::nlm::Nlm>,
    /// Its GRANTED callbacks, until main starts their sender (`nlm::callbacks`).
    pub nlm_grants: Mutex<Option<tokio::sync::mpsc::Receiver<crate::nlm::Outgoing>>>,
    /// What local lock managers asked our status monitor to watch (SM_MON).
    pub nsm_watches: crate::nsm::Watches,
}

/// A mirrored update slower than this is logged (debug) with where its time went.
const SLOW_UPDATE: std::time::Duration = std::time::Duration::from_millis(200);

/// Longest a held request waits for its turn to execute locally (only earlier local
/// executions of conflicting updates stand before it; this is a safety net, not a timeout
/// that fires in normal operation).
const MAX_RUN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Server {
    /// A server for these exports.
    pub fn new(local: Arc<Local>, mirror: Arc<Mirror>) -> Server {
        let (tx, rx) = tokio::sync::mpsc::channel(crate::nlm::MAX_CALLBACKS);
        Server {
            local,
            counters: Counters::default(),
            mounts: Mutex::new(Vec::new()),
            mirror,
            nlm: Arc::new(crate::nlm::Nlm::new(tx)),
            nlm_grants: Mutex::new(Some(rx)),
            nsm_watches: crate::nsm::Watches::default(),
        }
    }

    /// The export with this id.
    pub fn export(&self, id: ExportId) -> Option<&ExportFs> {
        self.local.export(id)
    }

    /// Milliseconds since start: the core's notion of time.
    pub fn now(&self) -> Millis {
        self.local.now()
    }

    fn drc(&self) -> std::sync::MutexGuard<'_, Drc> {
        self.local.drc()
    }

    /// Handles one call record from `peer` and gives `respond` its reply (`None`: send
    /// nothing), exactly once. A WRITE's data stays in the record's memory (no copy). Runs on
    /// a blocking thread: it may wait (for the disk, its turn, the read lease). A mirrored
    /// update that executed here before its release is carried on by whoever releases it,
    /// and this thread goes free (`PrimarySide::defer`).
    pub fn handle(
        self: &Arc<Self>,
        record: &bytes::Bytes,
        peer: SocketAddr,
        via: Via,
        respond: Respond,
    ) {
        let t0 = std::time::Instant::now();
        let mut slot = Some(respond);
        let reply = self.handle_with(
            record,
            peer,
            true,
            via,
            Some(Later {
                server: self,
                respond: &mut slot,
                record,
                t0,
            }),
        );
        if let Some(respond) = slot.take() {
            self.counters
                .calls
                .observe(record, t0.elapsed(), reply.as_deref());
            respond(reply);
        }
    }

    /// [`handle`](Self::handle) on the network task, for a call the procedure table marks
    /// `inline` (GETATTR, ACCESS…) of an export this member may answer now without waiting
    /// (not mirrored, or its read lease holds). `Err(())`: not such a call — hand it to a
    /// blocking thread. Inline, a lease that ran out meanwhile is not waited for: the
    /// client is told to try again (JUKEBOX).
    #[allow(clippy::result_unit_err)]
    pub fn handle_inline(
        &self,
        record: &bytes::Bytes,
        peer: SocketAddr,
        via: Via,
    ) -> Result<Option<Vec<u8>>, ()> {
        if let Via::Datagram { answer: false, .. } = via {
            // a multicast datagram this member does not answer as the address's holder:
            // whether it answers at all (a split export's read server) is decided in full
            return Err(());
        }
        let mut r = XdrReader::new(record);
        let h = CallHeader::decode(&mut r).map_err(|_| ())?;
        if h.prog != nfs3::PROGRAM || h.vers != 3 || h.rpcvers != 2 {
            return Err(());
        }
        let info = proc_table::lookup(h.prog, h.proc_).ok_or(())?;
        if !info.inline {
            return Err(());
        }
        if !self.mirror.is_empty() {
            let a = Args::decode(h.proc_, r.rest()).map_err(|_| ())?;
            if let Some(Ok(fh)) = (info.handle)(&a).map(|fh| FileHandle::decode(&fh.0)) {
                let free = self.mirror.role(fh.export).is_none()
                    || (self.mirror.lease_ok(fh.export, self.now())
                        && self.mirror.serves_reads(fh.export));
                if !free {
                    return Err(());
                }
            }
        }
        let t0 = std::time::Instant::now();
        let reply = self.handle_with(record, peer, false, via, None);
        self.counters
            .calls
            .observe(record, t0.elapsed(), reply.as_deref());
        Ok(reply)
    }

    fn handle_with(
        &self,
        record: &bytes::Bytes,
        peer: SocketAddr,
        may_wait: bool,
        via: Via,
        later: Option<Later<'_>>,
    ) -> Option<Vec<u8>> {
        let mut r = XdrReader::new(record);
        let h = match CallHeader::decode(&mut r) {
            Ok(h) => h,
            Err(MessageError::Unreadable) | Err(MessageError::NotACall(_)) => return None,
            Err(MessageError::Garbage(xid)) => {
                return Some(self.reject(xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs)))
            }
        };
        let args = r.rest();
        if h.rpcvers != 2 {
            return Some(self.reject(h.xid, ReplyHeader::RpcMismatch));
        }
        // (NLM has no version 2: lockd answers it as a version it does not have, 1–4)
        let Some(versions) = crate::portmap::versions_of(h.prog) else {
            return Some(self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProgUnavail)));
        };
        if !versions.contains(&h.vers) {
            let (low, high) = (versions[0], versions[versions.len() - 1]);
            return Some(self.reject(
                h.xid,
                ReplyHeader::Accepted(AcceptStat::ProgMismatch { low, high }),
            ));
        }
        if h.prog == ftnfs_wire::nsm::PROGRAM {
            let cx = crate::nsm::Context {
                peer,
                state: self.local.recovery.monitor().state(),
                watches: &self.nsm_watches,
                free_host: |host: &str| self.free_host(host, peer),
            };
            return Some(crate::nsm::handle(h.xid, h.proc_, args, &cx));
        }
        if h.prog == ftnfs_wire::nlm::PROGRAM {
            return self.nlm(h.xid, h.vers, h.proc_, args, peer);
        }
        let Some(info) = proc_table::lookup(h.prog, h.proc_) else {
            return Some(self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail)));
        };
        let cred = match h.cred.flavor {
            flavor::SYS => match AuthSys::from_bytes(h.cred.body) {
                Ok(a) => Cred {
                    uid: a.uid,
                    gid: a.gid,
                    groups: a.gids,
                },
                Err(_) => {
                    return Some(self.reject(h.xid, ReplyHeader::AuthError(AuthStat::BadCred)))
                }
            },
            // AUTH_NONE: the export's anonymous identity, chosen once the export is known.
            flavor::NONE => Cred::anonymous(&Default::default()),
            _ => return Some(self.reject(h.xid, ReplyHeader::AuthError(AuthStat::BadCred))),
        };
        let anonymous = h.cred.flavor == flavor::NONE;

        // calls that name no export (MOUNT, NULL) are the virtual IP's export's: a primary
        // whose lease ran out (it was frozen; another may serve now) answers none of them
        let unnamed = h.prog == mount::PROGRAM || (h.prog == nfs3::PROGRAM && h.proc_ == 0);
        if unnamed && !self.address_leased(may_wait) {
            return None;
        }
        if h.prog == mount::PROGRAM {
            self.counters.mount[h.proc_ as usize].fetch_add(1, Ordering::Relaxed);
            return Some(self.mount(h.xid, h.vers, h.proc_, args, peer));
        }
        self.counters.nfs[h.proc_ as usize].fetch_add(1, Ordering::Relaxed);

        let key = DrcKey::new(peer.ip(), h.xid, h.prog, h.vers, h.proc_, args);
        // decoded once, for the proxy check and the call (a WRITE's data is not copied)
        let shared = record.slice_ref(args);
        let decoded = Args::decode_shared(h.proc_, &shared);
        if let Via::Datagram { answer, .. } = via {
            // proxy mode: a secondary keeps an update datagram the primary also received,
            // for the primary's order, and never answers it
            let held = decoded
                .as_ref()
                .is_ok_and(|a| self.proxy_hold(&key, &h, info, a, &shared, peer, via));
            // a split export's read that reached every member is its read server's alone
            let answer = match decoded
                .as_ref()
                .ok()
                .and_then(|a| self.split_read(info, a, via, peer, h.xid.0))
            {
                Some(ours) => ours,
                None => answer,
            };
            if held || !answer {
                return None;
            }
        }
        let now = self.now();
        match self.drc().begin(key, now) {
            Verdict::Execute => {}
            Verdict::InProgress => return None,
            Verdict::Replay(r) => {
                tracing::debug!(xid = h.xid.0, proc_ = info.name, client = %peer, "DRC replay");
                return Some(r.to_vec());
            }
        }
        // the mirrored export whose update this is: its reply is tagged in the DRC
        let mut mirrored_export = None;
        let reply = match decoded {
            Ok(a)
                if !info.updates
                    && !self.mirror.is_empty()
                    && !self.answers_reads(info, &a, may_wait) =>
            {
                // a mirror that is not in step (out, standing by, being resynced) would
                // answer from stale or half-copied data: try later (the virtual IP leads
                // clients to the primary) — or, at a hand-over, not at all, as an update
                // (tests/chaos.sh seed 6 saw a read's JUKEBOX stall the Linux client 5.2 s
                // at a planned switch). On the network task nothing waits (`handle_inline`
                // checked just before that the export is served: only a change in between
                // gets here).
                let export = (info.handle)(&a)
                    .and_then(|fh| FileHandle::decode(&fh.0).ok())
                    .map(|fh| fh.export);
                return self.try_later(&key, h.xid, h.proc_, export.filter(|_| may_wait));
            }
            Ok(a) => {
                let is_read = info.mirrored_read;
                let export = if (info.updates || is_read) && !self.mirror.is_empty() {
                    (info.handle)(&a).and_then(|fh| FileHandle::decode(&fh.0).ok())
                } else {
                    None
                };
                // READs are mirrored only in the acknowledged and serialized read modes,
                // and only by the primary; any member serves them otherwise.
                let export = export.filter(|fh| {
                    !is_read
                        || (self.local.read_mode(fh.export) != ReadMode::Async
                            && matches!(
                                self.mirror.role(fh.export).as_deref(),
                                Some(Role::Primary(_))
                            ))
                });
                let role = export.and_then(|fh| Some((fh, self.mirror.role(fh.export)?)));
                match role.as_ref().map(|(fh, r)| (*fh, &**r)) {
                    Some((fh, Role::Primary(ps))) => {
                        let origin = Origin {
                            ip: ftnfs_wire::peer::ip_bytes(peer.ip()),
                            port: peer.port(),
                            xid: h.xid.0,
                            anonymous,
                            uid: cred.uid,
                            gid: cred.gid,
                            gids: cred.groups.clone(),
                        };
                        let t_sub = Instant::now();
                        let proxied = self.proxied(fh.export, via);
                        match self.mirrored(ps, fh, &a, origin, h.proc_, &shared, info, proxied) {
                            Some((dictation, seq, token, rx)) => {
                                let t_run = Instant::now();
                                let in_memory = dictation.in_memory;
                                let r = self.local.execute(
                                    h.xid,
                                    a,
                                    peer,
                                    cred,
                                    anonymous,
                                    Some(dictation),
                                );
                                let status = crate::local::reply_status(&r);
                                self.executed(ps, fh.export, in_memory, seq, status);
                                let ctx = Released {
                                    key,
                                    info,
                                    export: fh.export,
                                    in_memory,
                                    seq,
                                    t_sub,
                                    t_run,
                                    t_done: Instant::now(),
                                    reply: r,
                                };
                                // the rest of the request goes with whoever releases it, or
                                // stays here
                                let mut ctx = Some(ctx);
                                let sig = match later {
                                    Some(l) => {
                                        let rest = || l.then(ctx.take().expect("once"));
                                        match ps.defer(token, &rx, rest) {
                                            crate::mirror::Deferred::Now(sig) => sig,
                                            crate::mirror::Deferred::Later => return None,
                                        }
                                    }
                                    None => self.wait_release(seq, &rx),
                                };
                                let ctx = ctx.expect("not deferred");
                                let r = self.after_release(sig, ctx)?;
                                mirrored_export = Some(fh.export.0);
                                r
                            }
                            None => {
                                // could not be numbered: handing the role over (no reply; the
                                // client resends to the new primary), or too many in flight
                                // (the client retries later)
                                return self.try_later(&key, h.xid, h.proc_, Some(fh.export));
                            }
                        }
                    }
                    Some((fh, Role::Secondary(_) | Role::Standby(_))) => {
                        // Clients update through the primary; one that reached a secondary
                        // (or a member standing by) directly is told to try again later,
                        // unless the role is being handed over from here right now.
                        return self.try_later(&key, h.xid, h.proc_, Some(fh.export));
                    }
                    None => self.local.execute(h.xid, a, peer, cred, anonymous, None),
                }
            }
            Err(ArgsError::NoSuchProc(_)) => {
                self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail))
            }
            Err(ArgsError::Garbage(e)) => {
                tracing::debug!(xid = h.xid.0, proc_ = info.name, client = %peer, error = %e, "garbage args");
                self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs))
            }
        };
        self.settle_reply(key, &reply, info, mirrored_export);
        Some(reply)
    }

    /// A reply about to go out: in the DRC (tagged with its mirrored export), and for a
    /// procedure that must never run twice, in the reply log first.
    fn settle_reply(
        &self,
        key: DrcKey,
        reply: &[u8],
        info: &ProcInfo,
        mirrored_export: Option<u32>,
    ) {
        let mut drc = self.drc();
        drc.finish(key, reply, !info.idempotent, self.now());
        if let Some(e) = mirrored_export {
            drc.tag(&key, e, true); // the reply goes out now
        }
        drop(drc);
        if info.once {
            // before it leaves: a restart after this replays it (replylog.rs)
            self.local
                .log_reply(&key, mirrored_export.map(ExportId), reply);
        }
    }

    /// A mirrored update executed here: the core learns its status; an `InMemory` one is
    /// marked for the flush.
    fn executed(
        &self,
        ps: &crate::mirror::PrimarySide,
        export: ExportId,
        in_memory: bool,
        seq: SeqNo,
        status: u32,
    ) {
        if let Some(ex) = self.export(export).filter(|_| in_memory) {
            ex.memory_update(); // executed: flushed within MEMORY_FLUSH
        }
        ps.local_done(&self.mirror, seq, status, self.now());
    }

    /// Waits on this thread for the release of `seq`.
    fn wait_release(&self, seq: SeqNo, rx: &std::sync::mpsc::Receiver<Signal>) -> Signal {
        // The core releases within retry × sends (then it fails silent members out); the
        // bound here only guards against a bug.
        match rx.recv_timeout(MAX_RUN_WAIT) {
            Ok(sig) => sig,
            Err(e) => {
                tracing::error!(seq = seq.0, error = %e, "mirrored update never released");
                Signal::Drop
            }
        }
    }

    /// What a released (or dropped) mirrored update's reply is: `None` — no reply from
    /// here (deposed before every member had it, or this member's lease ran out: the client
    /// resends to whoever holds the address), its reply kept in the DRC all the same, since
    /// it *was* executed here (a resend that reaches this member again, which may serve
    /// again from this very mirror, is answered, not executed twice: tests/sim_group.rs
    /// found the second execution). May wait: an `InMemory` update released alone is
    /// flushed first, and the lease is waited for.
    fn after_release(&self, sig: Signal, c: Released) -> Option<Vec<u8>> {
        let released = match sig {
            Signal::Release { alone } => {
                let memory = self.export(c.export).filter(|_| c.in_memory);
                match memory {
                    Some(ex) if alone => match ex.flush_memory_updates() {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(export = c.export.0, error = %e, "cannot make an update stable: no reply");
                            false
                        }
                    },
                    _ => true,
                }
            }
            Signal::Drop | Signal::Run => false,
        };
        let t_rel = Instant::now();
        if t_rel - c.t_sub > SLOW_UPDATE {
            // where a client stall comes from (a held write, the local disk, a secondary
            // not answering)
            tracing::debug!(
                seq = c.seq.0,
                numbered_ms = (c.t_run - c.t_sub).as_millis() as u64,
                executed_ms = (c.t_done - c.t_run).as_millis() as u64,
                released_ms = (t_rel - c.t_done).as_millis() as u64,
                "slow mirrored update"
            );
        }
        if !released || !self.leased(c.export) {
            self.local.keep_unsent(c.key, &c.reply, c.info, c.export);
            return None;
        }
        Some(c.reply)
    }

    /// Numbers a client update of an export we are primary of, sends it to the secondaries
    /// and waits for its turn to execute locally. Returns the dictation to execute with, or
    /// `None` if it could not be numbered.
    #[allow(clippy::too_many_arguments)]
    fn mirrored(
        &self,
        ps: &crate::mirror::PrimarySide,
        fh: FileHandle,
        a: &Args,
        origin: Origin,
        proc_: u32,
        args: &bytes::Bytes,
        info: &ProcInfo,
        proxied: bool,
    ) -> Option<(Dictation, SeqNo, u64, std::sync::mpsc::Receiver<Signal>)> {
        let ex = self.export(fh.export)?;
        let new_id = info.new_id.then(|| (ex.ids.reserve(), ex.ids.generation()));
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let time = (t.as_secs() as i64, t.subsec_nanos());
        let payload = Arc::new(crate::mirror::Forwarded {
            payload: UpdatePayload {
                origin,
                proc_,
                new_id: new_id.map(|(f, g)| (f.0, g.0)),
                time,
                // a WRITE's data stays in the client's record; small arguments are copied, so
                // that an update in the window does not keep a whole receive buffer alive
                args: if args.len() >= ftnfs_wire::peer::SHARE_FROM {
                    args.clone()
                } else {
                    bytes::Bytes::copy_from_slice(args)
                },
            },
            proxied: proxied.then(|| crate::mirror::fingerprint(args)),
        });
        let touch = info.touch(a, new_id.map(|(f, _)| f.0));
        // in the change log before it executes (it waits for Run below)
        let logged = info.logged(a, new_id.map(|(f, _)| f.0));
        let submitted = match info.order {
            // A removal or a rename is ordered by the objects it touches when they are
            // certain: nothing that could change what its names denote is pending here,
            // before the lookups and when numbering (Documentation/04-replication-order.md);
            // else a barrier.
            proc_table::Order::Unlink | proc_table::Order::Rename => {
                let plan = by_objects(ps, ex, info, a);
                let choose = |p: &ftnfs_core::mirror::primary::Primary<_>| match &plan {
                    Some((entries, keys, since))
                        if entries.iter().all(|e| p.settled(e, *since)) =>
                    {
                        Touch {
                            keys: keys.clone(),
                            barrier: false,
                        }
                    }
                    _ => touch.clone(),
                };
                ps.submit_with(&self.mirror, choose, payload, &logged, self.now())
            }
            _ => ps.submit(&self.mirror, &touch, payload, &logged, self.now()),
        };
        let (seq, token, rx) = match submitted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(export = fh.export.0, "{e}");
                return None;
            }
        };
        if !self.turn(ps, seq, &rx) {
            return None;
        }
        Some((
            Dictation {
                new_id,
                time: nix::sys::time::TimeSpec::new(time.0, time.1 as i64),
                atime: info.mirrored_read
                    && self.local.read_mode(fh.export) == ReadMode::Serialized,
                // durable in memory only while another member holds it too
                in_memory: ex.cfg.in_memory && ps.has_live_secondary(),
            },
            seq,
            token,
            rx,
        ))
    }

    /// Waits for a numbered update's turn to execute here. `false`: it must not (deposed).
    fn turn(
        &self,
        ps: &crate::mirror::PrimarySide,
        seq: SeqNo,
        rx: &std::sync::mpsc::Receiver<Signal>,
    ) -> bool {
        match rx.recv_timeout(MAX_RUN_WAIT) {
            Ok(Signal::Run) => true,
            Ok(Signal::Drop) => false,
            other => {
                // Cannot happen unless the core is wedged; never execute out of order.
                tracing::error!(seq = seq.0, ?other, "mirrored update never got its turn");
                ps.local_done(&self.mirror, seq, u32::MAX, self.now());
                false
            }
        }
    }

    /// Reports the local result of a mirrored update and holds the reply until every live
    /// secondary has it (or was failed out). `false`: send no reply (deposed). An update
    /// executed as durable in memory (`in_memory`) that no secondary acknowledged — each was
    /// failed out meanwhile — is made stable here before its reply.
    fn mirrored_done(
        &self,
        ps: &crate::mirror::PrimarySide,
        export: ExportId,
        seq: SeqNo,
        rx: std::sync::mpsc::Receiver<Signal>,
        status: u32,
    ) -> bool {
        self.executed(ps, export, false, seq, status);
        matches!(self.wait_release(seq, &rx), Signal::Release { .. })
    }

    /// A call this member does not answer now: forgotten by the DRC, then no reply if
    /// `export`'s primary role is being handed over from here (held up to 3 s by
    /// [`Mirror::hold_for_switch`]: the client's connection closes and it resends to the new
    /// primary), else JUKEBOX (try later). `None` for `export`: no hold.
    fn try_later(
        &self,
        key: &DrcKey,
        xid: Xid,
        proc_: u32,
        export: Option<ExportId>,
    ) -> Option<Vec<u8>> {
        self.drc().abandon(key);
        if export.is_some_and(|e| self.mirror.hold_for_switch(e)) {
            return None;
        }
        Some(self.nfs_error(xid, proc_, NfsStat3::Jukebox))
    }

    /// A datagram every member received (proxy mode): a secondary keeps an update for the
    /// primary's order (`SecondarySide::hold`) and notes a read (`SecondarySide::read_seen`);
    /// the primary counts it (`PrimarySide::datagrams`). `true` if it is this member's to
    /// keep — also when it was applied here already (a retransmission: nothing to keep, and
    /// the primary answers it).
    #[allow(clippy::too_many_arguments)]
    fn proxy_hold(
        &self,
        key: &DrcKey,
        h: &CallHeader<'_>,
        info: &ProcInfo,
        a: &Args,
        shared: &bytes::Bytes,
        peer: SocketAddr,
        via: Via,
    ) -> bool {
        if self.mirror.is_empty() {
            return false;
        }
        let Some(fh) = (info.handle)(a).and_then(|fh| FileHandle::decode(&fh.0).ok()) else {
            return false;
        };
        if !self.proxied(fh.export, via) {
            return false;
        }
        let Some(role) = self.mirror.role(fh.export) else {
            return false;
        };
        let ss = match &*role {
            Role::Secondary(ss) => ss,
            Role::Primary(ps) => {
                // beside the unknown requests its secondaries report: whether this primary
                // hears its clients (member::exclusion)
                ps.datagrams.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Role::Standby(_) => return false,
        };
        if !info.updates {
            // a read the primary answers (or a split export's read server, maybe this member:
            // then the client repeats nothing): a retransmission long after the first copy
            // says nobody did (counted as unknown: a primary deaf to the address hands its
            // role over; one that hears is kept by its own count, and passes a deaf read
            // server over itself, `Leading::read_unanswered`)
            ss.read_seen(peer, h.xid.0, self.now());
            return false;
        }
        if self.drc().contains(key) {
            ss.repeated(peer, h.xid.0, self.now()); // counted: the primary answers it, if it hears it
        } else {
            ss.hold(&self.mirror, peer, h.xid.0, shared.clone(), self.now());
        }
        true
    }

    /// A read of a split export (`-ftnfsr=…,ftnfsw=…`) that reached every member: whether
    /// this member answers it — the read server does (`Mirror::answers_split_read`), the
    /// others keep quiet. `None`: not such a read (TCP, an update, an export whose reads are
    /// not split): the usual rules decide.
    fn split_read(
        &self,
        info: &ProcInfo,
        a: &Args,
        via: Via,
        peer: SocketAddr,
        xid: u32,
    ) -> Option<bool> {
        if info.updates || self.mirror.is_empty() {
            return None;
        }
        let fh = (info.handle)(a).and_then(|fh| FileHandle::decode(&fh.0).ok())?;
        self.mirror.read_list(fh.export)?;
        self.proxied(fh.export, via).then(|| {
            self.mirror
                .answers_split_read(fh.export, self.now(), peer, xid)
        })
    }

    /// Whether a call that came `via` to an export in proxy mode reached every member: a
    /// datagram to a multicast virtual IP, or any datagram of a `Proxy` export
    /// (`ftnfs_core::mirror::proxy`).
    fn proxied(&self, export: ExportId, via: Via) -> bool {
        match via {
            Via::Stream => false,
            Via::Datagram { everyone, .. } => {
                everyone || self.export(export).is_some_and(|e| e.cfg.proxy)
            }
        }
    }

    /// A reply with an NFS error status and the procedure's failure body with every
    /// attribute absent (its shape comes from the procedure table).
    fn nfs_error(&self, xid: Xid, proc_: u32, stat: NfsStat3) -> Vec<u8> {
        let mut w = XdrWriter::new();
        ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
        let Some(info) = proc_table::NFS3.get(proc_ as usize) else {
            return w.into_inner();
        };
        if proc_ == nfs3::procs::NULL {
            return w.into_inner(); // NULL's reply has no status
        }
        w.u32(stat as u32);
        for _ in 0..info.fail_body.absent_words() {
            w.bool(false);
        }
        w.into_inner()
    }

    fn reject(&self, xid: Xid, h: ReplyHeader) -> Vec<u8> {
        self.counters.rpc_errors.fetch_add(1, Ordering::Relaxed);
        let mut w = XdrWriter::new();
        h.encode(xid, &mut w);
        w.into_inner()
    }

    fn mount(&self, xid: Xid, vers: u32, proc_: u32, args: &[u8], peer: SocketAddr) -> Vec<u8> {
        let mut w = XdrWriter::new();
        let garbage = |s: &Self| s.reject(xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs));
        let ok = |w: &mut XdrWriter| ReplyHeader::Accepted(AcceptStat::Success).encode(xid, w);
        match proc_ {
            mount::procs::NULL => ok(&mut w),
            mount::procs::MNT => {
                if vers != 3 {
                    // MOUNT v1/v2 hand out NFSv2 handles; we serve NFSv3 only.
                    return self.reject(xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail));
                }
                let Ok(path) = mount::decode_dirpath(args) else {
                    return garbage(self);
                };
                ok(&mut w);
                self.mnt(&path, peer).encode(&mut w);
            }
            mount::procs::DUMP => {
                ok(&mut w);
                let m = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
                MountList(
                    m.iter()
                        .map(|(ip, p)| (ip.to_string().into_bytes(), p.clone().into_bytes()))
                        .collect(),
                )
                .encode(&mut w);
            }
            mount::procs::UMNT => {
                let Ok(path) = mount::decode_dirpath(args) else {
                    return garbage(self);
                };
                let path = match dirpath_parts(&path) {
                    Some(p) if !p.is_empty() => p
                        .iter()
                        .map(|c| format!("/{}", String::from_utf8_lossy(c)))
                        .collect(),
                    _ => String::from_utf8_lossy(&path).into_owned(),
                };
                self.mounts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(ip, p)| !(*ip == peer.ip() && *p == path));
                ok(&mut w);
            }
            mount::procs::UMNTALL => {
                self.mounts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(ip, _)| *ip != peer.ip());
                ok(&mut w);
            }
            _ => {
                // EXPORT
                ok(&mut w);
                ExportList(
                    self.local
                        .exports
                        .iter()
                        .filter_map(|e| {
                            Some(ExportNode {
                                dir: e.cfg.path.clone().into_bytes(),
                                groups: e
                                    .clients()?
                                    .iter()
                                    .map(|c| c.spec.describe().into_bytes())
                                    .collect(),
                            })
                        })
                        .collect(),
                )
                .encode(&mut w);
            }
        }
        w.into_inner()
    }

    /// MNT: the export whose path is the longest prefix of `path`, then the directory below
    /// it that the rest of `path` names (people mount `server:/srv/home/alice`). The walk
    /// goes one component at a time through [`ExportFs::child`], which never leaves the
    /// export: `..` is refused, and a symlink on the way is not followed (MNT3ERR_NOTDIR, as
    /// for any component that is not a directory).
    fn mnt(&self, path: &[u8], peer: SocketAddr) -> MntRes {
        let Some(parts) = dirpath_parts(path) else {
            return MntRes::Err(MountStat3::NoEnt);
        };
        let Some((ex, below)) = self
            .local
            .exports
            .served()
            .filter_map(|e| {
                let ep = dirpath_parts(e.cfg.path.as_bytes())?;
                parts.starts_with(&ep).then_some((e, ep.len()))
            })
            .max_by_key(|(_, n)| *n)
        else {
            return MntRes::Err(MountStat3::NoEnt);
        };
        let shown = if parts.is_empty() {
            "/".to_string()
        } else {
            parts
                .iter()
                .map(|p| format!("/{}", String::from_utf8_lossy(p)))
                .collect()
        };
        let Some(opts) = ex.options_for(peer.ip()) else {
            tracing::info!(client = %peer, path = shown, "mount refused: client not in export list");
            return MntRes::Err(MountStat3::Acces);
        };
        if opts.secure && peer.port() >= 1024 {
            tracing::info!(client = %peer, path = shown, "mount refused: unprivileged port on a secure export");
            return MntRes::Err(MountStat3::Acces);
        }
        let fh = match mount_point(ex, &parts[below..]) {
            Ok(fh) => fh,
            Err(st) => {
                tracing::info!(client = %peer, path = shown, status = ?st, "mount refused");
                return MntRes::Err(st);
            }
        };
        let mut m = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = (peer.ip(), shown.clone());
        if !m.contains(&entry) {
            if m.len() >= MAX_MOUNTS {
                m.remove(0);
            }
            m.push(entry);
        }
        tracing::info!(client = %peer, path = shown, "mounted");
        MntRes::Ok {
            fh: fh.encode(),
            flavors: vec![flavor::SYS, flavor::NONE],
        }
    }
}

/// The components of a MOUNT dirpath (empty and `.` components dropped); `None` if it is not
/// absolute or names `..`.
fn dirpath_parts(path: &[u8]) -> Option<Vec<&[u8]>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    (!parts.iter().any(|p| *p == b"..")).then_some(parts)
}

/// The handle of the directory `below` names under the export's root.
fn mount_point(ex: &ExportFs, below: &[&[u8]]) -> Result<FileHandle, MountStat3> {
    let root = FileHandle {
        export: ex.cfg.id,
        file: ftnfs_core::ids::FileId::ROOT,
        gen: crate::fs::idtable::ROOT_GEN,
    };
    let as_mount = |f: crate::errors::Fail| match f.0 {
        NfsStat3::NoEnt | NfsStat3::Stale => MountStat3::NoEnt,
        NfsStat3::NotDir => MountStat3::NotDir,
        NfsStat3::Acces => MountStat3::Acces,
        NfsStat3::NameTooLong => MountStat3::NameTooLong,
        _ => MountStat3::Io,
    };
    if below.is_empty() {
        return Ok(root);
    }
    let mut obj = ex.locate(&root).map_err(as_mount)?;
    for name in below {
        let dirfd = obj.open_dir().map_err(as_mount)?;
        obj = ex.child(&obj, &dirfd, name).map_err(as_mount)?;
    }
    if !obj.is_dir() {
        return Err(MountStat3::NotDir);
    }
    Ok(FileHandle {
        export: ex.cfg.id,
        file: obj.id,
        gen: obj.gen,
    })
}

impl Server {
    /// Whether this member may answer a read from its own mirror now: the export is not
    /// mirrored, or this member is its primary (holding the read lease) or a secondary
    /// following one. A call with a bad handle gets that handle's own error.
    /// Whether this member may answer a call that names no export (NULL, MOUNT): not if it
    /// is the virtual IP's export's primary and its read lease ran out (it was frozen;
    /// another may serve now) — waited for as [`leased`](Self::leased) does if `may_wait`,
    /// and refused if it was deposed meanwhile. Any other member answers them (a standby
    /// with JUKEBOX for what follows).
    fn address_leased(&self, may_wait: bool) -> bool {
        // every virtual server this member is primary of (a frozen member's leases all ran
        // out together; the call does not say which address it came to)
        self.mirror.address_exports().into_iter().all(|e| {
            let primary = || matches!(self.mirror.role(e).as_deref(), Some(Role::Primary(_)));
            if !primary() {
                return true;
            }
            let leased = if may_wait {
                self.leased(e)
            } else {
                self.mirror.lease_ok(e, self.now())
            };
            leased && primary()
        })
    }

    fn answers_reads(&self, info: &ProcInfo, a: &Args, may_wait: bool) -> bool {
        match (info.handle)(a).map(|fh| FileHandle::decode(&fh.0)) {
            Some(Ok(h)) => {
                let leased = if may_wait {
                    self.leased(h.export)
                } else {
                    self.mirror.lease_ok(h.export, self.now())
                };
                leased && self.mirror.serves_reads(h.export)
            }
            _ => true,
        }
    }

    /// A primary answers from its mirror only under its read lease
    /// ([`crate::mirror::Mirror::lease_ok`]); a call that finds it expired waits for the
    /// secondaries' next confirmation, which a primary still in office gets within a
    /// heartbeat once a stall is over. `false`: still not confirmed (replaced, most likely).
    fn leased(&self, export: ExportId) -> bool {
        // long enough for a host stall to pass and the next heartbeat to be echoed; a primary
        // that was replaced is deposed well within it
        let bound = std::time::Duration::from_millis(10 * self.mirror.group.failover.silence_ms());
        let t0 = Instant::now();
        while !self.mirror.lease_ok(export, self.now()) {
            if t0.elapsed() > bound {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }
}

/// NLM (issue 14): which member executes a lock call, and a change of a mirrored export's
/// lock table mirrored like any update (Documentation/12-locks.md).
impl Server {
    /// One NLM call. `None`: no reply (deposed while it was mirrored; the client resends to
    /// the new primary).
    fn nlm(
        &self,
        xid: Xid,
        vers: u32,
        proc_: u32,
        args: &[u8],
        peer: SocketAddr,
    ) -> Option<Vec<u8>> {
        let call = match Call::decode(vers, proc_, args) {
            Ok(c) => c,
            Err(stat) => return Some(crate::nlm::answer(xid, stat)),
        };
        let body = match (&call.args, call.file()) {
            (ftnfs_wire::nlm::Args::FreeAll(n), _) => {
                self.free_host(&String::from_utf8_lossy(&n.name), peer);
                Body::Void
            }
            // NULL; GRANTED (we are no client: nothing of ours waits)
            (_, None) => call.refused(NlmStat::Denied),
            (_, Some(fh)) => {
                let h = FileHandle::decode(fh).ok();
                match h.and_then(|h| Some((h, self.export(h.export)?))) {
                    None => call.refused(NlmStat::StaleFh),
                    Some((h, ex)) => self.lock_call(ex, h.file, &call, xid, peer)?,
                }
            }
        };
        Some(self.nlm.reply(xid, &call, &body, peer.ip()))
    }

    /// Executes `call` (raw arguments `args`) on `ex`'s lock table, about file `file`: here,
    /// if this member serves the export; through the mirror first if the call changes a
    /// mirrored export's table (every member executes it, in this primary's order); not at
    /// all on a member that is not the export's primary (NLM4_DENIED_GRACE_PERIOD: the client
    /// retries, and the virtual IP leads it to the primary).
    fn lock_call(
        &self,
        ex: &ExportFs,
        file: ftnfs_core::ids::FileId,
        call: &Call,
        xid: Xid,
        peer: SocketAddr,
    ) -> Option<Body> {
        let export = ex.cfg.id;
        let role = self.mirror.role(export);
        // after a start that lost the table, clients reclaim first (recovery.rs)
        if call.waits_for_grace() && self.local.recovery.in_grace(export) {
            return Some(call.refused(NlmStat::DeniedGracePeriod));
        }
        let serves = matches!(role.as_deref(), None | Some(Role::Primary(_)));
        if let Some(host) = call.monitored_host().filter(|_| serves) {
            // monitored before it may hold anything (knfsd's nsm_monitor)
            if let Err(e) = self.local.recovery.monitor().monitor(peer.ip(), &host) {
                tracing::warn!(client = %peer.ip(), error = %e, "NLM: lock refused");
                return Some(call.refused(NlmStat::DeniedNoLocks));
            }
        }
        match role.as_deref() {
            Some(Role::Primary(ps)) if call.changes() => {
                // a part of the file no data block uses: lock calls of one file are ordered
                // among themselves and with what changes the whole file (its REMOVE)
                let touch = Touch {
                    keys: vec![Key::part(file.0, LOCK_PART)],
                    barrier: false,
                };
                self.mirrored_lock(ps, ex, touch, call, xid, peer)
            }
            Some(Role::Primary(_)) if !self.leased(export) => {
                Some(call.refused(NlmStat::DeniedGracePeriod))
            }
            Some(Role::Primary(_)) | None => {
                let o = ex.locks.execute(call, peer.ip(), |fh| ex.lock_file(fh));
                self.nlm.tell(o.granted);
                Some(o.body)
            }
            Some(_) => Some(call.refused(NlmStat::DeniedGracePeriod)),
        }
    }

    /// A lock call numbered and sent to the secondaries, executed here in its turn, its
    /// result compared with theirs; the waiters it granted are told once every member has it.
    #[allow(clippy::too_many_arguments)]
    fn mirrored_lock(
        &self,
        ps: &crate::mirror::PrimarySide,
        ex: &ExportFs,
        touch: Touch,
        call: &Call,
        xid: Xid,
        peer: SocketAddr,
    ) -> Option<Body> {
        let export = ex.cfg.id;
        let payload = UpdatePayload {
            origin: Origin {
                ip: ftnfs_wire::peer::ip_bytes(peer.ip()),
                port: peer.port(),
                xid: xid.0,
                anonymous: true,
                uid: 0,
                gid: 0,
                gids: Vec::new(),
            },
            proc_: ftnfs_wire::peer::NLM_UPDATE + call.proc_,
            new_id: None,
            time: (0, 0),
            args: call.raw.clone().into(),
        };
        let payload = Arc::new(crate::mirror::Forwarded {
            payload,
            proxied: None,
        });
        // it touches no file's data or names: logged with no ids
        let (seq, _, rx) = match ps.submit(&self.mirror, &touch, payload, &[], self.now()) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(export = export.0, "{e}");
                if self.mirror.hold_for_switch(export) {
                    return None;
                }
                return Some(call.refused(NlmStat::DeniedGracePeriod));
            }
        };
        if !self.turn(ps, seq, &rx) {
            return None;
        }
        let o = ex.locks.execute(call, peer.ip(), |fh| ex.lock_file(fh));
        if !self.mirrored_done(ps, export, seq, rx, o.body.stat()) || !self.leased(export) {
            return None;
        }
        self.nlm.tell(o.granted);
        Some(o.body)
    }

    /// `host` restarted (its SM_NOTIFY, or NLM FREE_ALL from `peer`): every lock, wait and
    /// share reservation of it goes from each export this member serves — mirrored, as an
    /// update that every member executes. How many went.
    pub fn free_host(&self, host: &str, peer: SocketAddr) -> usize {
        self.free_host_where(host, peer).0
    }

    /// [`free_host`](Self::free_host), also naming the exports it left alone: mirrored
    /// ones this member is not the primary of (their primary frees them).
    pub fn free_host_where(&self, host: &str, peer: SocketAddr) -> (usize, Vec<&ExportFs>) {
        let call = Call::free_all(host);
        let total = |ex: &ExportFs| {
            let (_, held, waiting) = ex.locks.counts();
            held + waiting
        };
        let mut freed = 0;
        let mut elsewhere = Vec::new();
        for ex in &self.local.exports {
            let before = total(ex);
            let role = self.mirror.role(ex.cfg.id);
            match role.as_deref() {
                Some(Role::Primary(ps)) => {
                    let barrier = Touch {
                        keys: Vec::new(),
                        barrier: true,
                    };
                    let _ = self.mirrored_lock(ps, ex, barrier, &call, Xid(0), peer);
                }
                None => {
                    let o = ex.locks.execute(&call, peer.ip(), |fh| ex.lock_file(fh));
                    self.nlm.tell(o.granted);
                }
                // the export's primary frees them (the client notifies the address it
                // mounted, which leads to the primary)
                Some(_) => {
                    elsewhere.push(ex);
                    continue;
                }
            }
            freed += before.saturating_sub(total(ex));
        }
        (freed, elsewhere)
    }

    /// A client refused the GRANTED callback of `p` (it no longer waits): its lock is
    /// released, by an UNLOCK of it executed like the client's own.
    pub fn release_refused(&self, p: Pending) {
        let call = Call::unlock(p.args.cookie.clone(), p.args.alock.clone());
        let Ok(h) = FileHandle::decode(&p.args.alock.fh) else {
            return;
        };
        if let Some(ex) = self.export(h.export) {
            let peer = SocketAddr::new(p.addr, 0);
            let _ = self.lock_call(ex, h.file, &call, Xid(0), peer);
        }
    }

    /// This member took `export` over: the lock waiters granted lately (on the old primary,
    /// whose GRANTED may never have gone out) are told again, once this member holds the
    /// virtual IP (clients take a GRANTED only from the address they locked through; up to
    /// 2 s). A client that had been told answers "denied": that releases nothing.
    pub fn tell_recent_grants(&self, export: ExportId) {
        let Some(ex) = self.export(export) else {
            return;
        };
        let again = ex.locks.recent_grants();
        if again.is_empty() {
            return;
        }
        tracing::info!(
            export = export.0,
            waiters = again.len(),
            "took over: lock waiters granted lately are told again"
        );
        let nlm = self.nlm.clone();
        let vip = self.mirror.vip_of(export);
        std::thread::spawn(move || {
            for _ in 0..200 {
                if vip.as_ref().is_none_or(|v| v.held()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            nlm.tell_again(again);
        });
    }

    /// This member starts serving `export`'s locks (it took the export over, or serves it
    /// alone from the start): if this start lost its table, the grace period begins and
    /// every monitored client host is told to reclaim — once this member holds the virtual
    /// IP they locked through (up to 2 s; `recovery.rs`).
    pub fn start_lock_recovery(&self, export: ExportId) {
        if !self.local.recovery.start_serving(export) {
            return;
        }
        let hosts = self.local.recovery.monitor().hosts();
        let state = self.local.recovery.monitor().state();
        let vip = self.mirror.vip_of(export);
        std::thread::spawn(move || {
            for _ in 0..200 {
                if vip.as_ref().is_none_or(|v| v.held()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let n = hosts.len();
            let told = crate::nsm::notify_hosts(hosts, state, vip);
            tracing::info!(told, of = n, state, "clients told to reclaim their locks");
        });
    }

    /// Drops the locks of removed files (every `nlm::PURGE_EVERY`, and before a listing):
    /// each member by its own identity table, which holds the same files once the removal
    /// is applied; no lock call succeeds on a removed file meanwhile.
    pub fn purge_removed_locks(&self) {
        // hosts that hold nothing any more are not monitored (never while a table is being
        // reclaimed: a host not yet told holds nothing yet)
        let recovering = self
            .local
            .exports
            .iter()
            .any(|ex| self.local.recovery.may_recover(ex.cfg.id));
        if !recovering {
            let holding: std::collections::HashSet<String> = self
                .local
                .exports
                .iter()
                .flat_map(|ex| ex.locks.hosts())
                .collect();
            let gone = self
                .local
                .recovery
                .monitor()
                .forget_idle(|_, name| holding.contains(name));
            if gone > 0 {
                tracing::info!(
                    gone,
                    "NSM: client hosts that hold no lock are not monitored"
                );
            }
        }
        for ex in &self.local.exports {
            let gone = ex.locks.retain(|id| !matches!(ex.ids.get(id), Ok(None)));
            if gone > 0 {
                tracing::info!(
                    export = ex.cfg.id.0,
                    gone,
                    "NLM: locks and waits of removed files dropped"
                );
            }
        }
    }

    /// For status: the counts over every export (files with locks, locks, blocked
    /// waiters), and locks and waiters per export and per client host.
    pub fn lock_summary(&self) -> serde_json::Value {
        let (mut files, mut held, mut waiting) = (0, 0, 0);
        let mut by_export = Vec::new();
        let mut by_client: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for ex in &self.local.exports {
            let (f, h, w) = ex.locks.counts();
            (files, held, waiting) = (files + f, held + h, waiting + w);
            let grace = self.local.recovery.grace_left(ex.cfg.id);
            if h + w > 0 || grace.is_some() {
                by_export.push(serde_json::json!({"export": ex.cfg.id.0, "path": ex.cfg.path, "held": h, "waiting": w, "grace_s": grace}));
            }
            let (hl, wl) = ex.locks.list(ex.cfg.id.0);
            for (list, i) in [(hl, 0), (wl, 1)] {
                for l in list {
                    let c = by_client
                        .entry(l["client"].as_str().unwrap_or("?").to_string())
                        .or_default();
                    if i == 0 {
                        c.0 += 1;
                    } else {
                        c.1 += 1;
                    }
                }
            }
        }
        serde_json::json!({
            "files": files,
            "held": held,
            "waiting": waiting,
            "monitored_hosts": self.local.recovery.monitor().hosts().len(),
            "nsm_state": self.local.recovery.monitor().state(),
            "exports": by_export,
            "clients": by_client
                .iter()
                .map(|(c, (h, w))| serde_json::json!({"client": c, "held": h, "waiting": w}))
                .collect::<Vec<_>>(),
        })
    }

    /// Every lock held and every blocked waiter, as JSON (`ftnfsctl locks`).
    pub fn locks_json(&self) -> serde_json::Value {
        let (mut held, mut waiting) = (Vec::new(), Vec::new());
        for ex in &self.local.exports {
            let (h, w) = ex.locks.list(ex.cfg.id.0);
            held.extend(h);
            waiting.extend(w);
        }
        serde_json::json!({ "held": held, "waiting": waiting })
    }
}

/// The part of a file's order key that lock calls touch (`Key::part`): no data block is
/// numbered this high.
pub const LOCK_PART: u64 = u64::MAX;

/// The keys of a removal or a rename that names its objects: (its entries, all its keys,
/// the number its entries were settled before). `None`: it must be a barrier — an entry not
/// settled here, an object that cannot be told, or a directory moved.
fn by_objects(
    ps: &crate::mirror::PrimarySide,
    ex: &ExportFs,
    info: &ProcInfo,
    a: &Args,
) -> Option<(Vec<Key>, Vec<Key>, SeqNo)> {
    let entries = info.entries(a);
    // a handle of another export (a RENAME across exports fails everywhere alike)
    let ours = |fh: &nfs3::NfsFh3| FileHandle::decode(&fh.0).is_ok_and(|h| h.export == ex.cfg.id);
    if !entries.iter().all(|(d, _)| ours(d)) {
        return None;
    }
    let entry_keys: Vec<Key> = entries
        .iter()
        .map(|(d, n)| proc_table::entry_key_of(d, n))
        .collect::<Option<_>>()?;
    let since = ps.settled_now(&entry_keys)?;
    let look = |i: usize| {
        let (d, n) = entries[i];
        ex.known_child(&FileHandle::decode(&d.0).ok()?, n).ok()
    };
    let mut keys = entry_keys.clone();
    match info.order {
        proc_table::Order::Unlink => {
            let (victim, _) = look(0)??;
            keys.push(Key::whole(victim.0));
        }
        proc_table::Order::Rename => {
            let (src, is_dir) = look(0)??;
            if is_dir {
                return None;
            }
            keys.push(Key::whole(src.0));
            if let Some((target, _)) = look(1)? {
                keys.push(Key::whole(target.0));
            }
        }
        _ => return None,
    }
    Some((entry_keys, keys, since))
}
