//! Mirroring in the daemon (relay mode, DESIGN.md decision 8): the per-export roles and the
//! code that carries out what the core's state machines decide.
//!
//! ```text
//!  primary:   server::handle ─▶ PrimarySide::submit ─▶ core Primary ─▶ effects:
//!               (blocking thread waits)                   Send ─▶ peer link (peer.rs)
//!                 ◀── Signal::Run ──────────────────────  Run
//!               execute locally (dictated id/time)
//!               PrimarySide::local_done ─▶ core ──────────▶ Release ─▶ Signal::Release
//!                 ◀── reply goes out ──┘                  Failed  ─▶ event log
//!  secondary: peer.rs ─▶ SecondarySide::on_update ─▶ core Secondary ─▶ Apply (blocking pool:
//!               Server::apply_update, DRC record) ─▶ applied ─▶ Ack ─▶ peer link
//! ```
//! Locks: a side's core lock may be held while taking the links lock or the events lock,
//! never the other way round. Effects are carried out with `try_send` only, so nothing blocks
//! while a core lock is held: a frame that does not fit a full link queue is dropped and the
//! core's resend timer sends it again (or fails the silent member out).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

use ftnfs_core::exports::Mirroring;
use ftnfs_core::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use ftnfs_core::mirror::primary::{Busy, Primary, PrimaryConfig, PrimaryEffect};
use ftnfs_core::mirror::secondary::{Secondary, SecondaryEffect};
use ftnfs_core::mirror::{FailReason, MemberSet, Touch};
use ftnfs_wire::peer::{update_frame, PeerMsg, UpdatePayload};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::fs::ExportFs;
use crate::server::Server;

/// The epoch every group starts in (role changes come with the failover issue).
pub const FIRST_EPOCH: Epoch = Epoch(1);
/// Most updates a secondary holds beyond what it applied; the primary's `max_pending` is the
/// same, so a resend is never too far ahead.
pub const WINDOW: u64 = 1024;
/// Most events kept for `ftnfsctl status`.
const MAX_EVENTS: usize = 1024;

/// A frame queue towards one peer.
pub type Link = mpsc::Sender<Vec<u8>>;

/// One configured peer.
#[derive(Debug, Clone)]
pub struct PeerCfg {
    /// Its member name (as in `-ftnfs=` lists).
    pub name: String,
    /// Where its peer channel listens.
    pub addr: SocketAddr,
    /// Our local id for it.
    pub id: MemberId,
}

/// This member's view of its group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Our own member name.
    pub me: String,
    /// Every other member.
    pub peers: Vec<PeerCfg>,
    /// Shared secret peers prove they know.
    pub secret: Vec<u8>,
    /// Primary tuning.
    pub primary: PrimaryConfig,
}

impl Group {
    /// The peer called `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerCfg> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The name of member `id`.
    pub fn name_of(&self, id: MemberId) -> &str {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.as_str())
            .unwrap_or("?")
    }
}

/// Wakes the blocking thread that holds a client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The local execution may start.
    Run,
    /// The reply may go out.
    Release,
}

/// One logged mirroring event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Milliseconds since start.
    pub at: Millis,
    /// The export.
    pub export: ExportId,
    /// What happened.
    pub what: String,
}

/// What this member does for one mirrored export.
pub enum Role {
    /// It numbers, executes and forwards clients' updates.
    Primary(PrimarySide),
    /// It applies the primary's updates.
    Secondary(SecondarySide),
}

/// The primary side of one export.
pub struct PrimarySide {
    /// The export.
    pub export: ExportId,
    /// Its listed secondaries.
    pub secondaries: Vec<MemberId>,
    /// Identifies this incarnation's update stream (random, new at every start).
    pub history: u64,
    /// Nothing but an empty root when this member started.
    pub pristine_at_start: bool,
    core: Mutex<PrimaryCore>,
}

struct PrimaryCore {
    p: Primary<Arc<UpdatePayload>>,
    waiters: HashMap<u64, SyncSender<Signal>>,
    next_token: u64,
    /// Stopping: sealed or not, no new update is numbered.
    closed: bool,
}

/// The secondary side of one export.
pub struct SecondarySide {
    /// The export.
    pub export: ExportId,
    /// The listed primary.
    pub primary: MemberId,
    core: Mutex<Option<SecondaryCore>>,
}

struct SecondaryCore {
    s: Secondary<Arc<UpdatePayload>>,
    history: u64,
    out: Link,
    /// Stopping: no further update is applied (the seal must stay true).
    closed: bool,
    /// Nothing applied since this member started (and the mirror was pristine then).
    pristine: bool,
}

/// All mirrored exports of this member.
pub struct Mirror {
    /// The group.
    pub group: Group,
    state_dir: std::path::PathBuf,
    roles: HashMap<ExportId, Role>,
    links: Mutex<HashMap<MemberId, Link>>,
    events: Mutex<VecDeque<Event>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a core lock is a bug; keep serving with the state as it is
    // rather than poison every later request.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b
}

impl Mirror {
    /// Decides each mirrored export's role from its `-ftnfs=` list: the first member listed
    /// is the primary (failover comes later), the others are secondaries.
    pub fn new(
        group: Group,
        exports: &[ExportFs],
        state_dir: &std::path::Path,
    ) -> anyhow::Result<Mirror> {
        let mut roles = HashMap::new();
        for e in exports {
            let members = match &e.cfg.mirroring {
                Mirroring::None => continue,
                Mirroring::Group { members, .. } => members,
                Mirroring::Split { .. } => anyhow::bail!(
                    "export {}: -ftnfsr/-ftnfsw (split read/write primaries) is not supported yet",
                    e.cfg.path
                ),
            };
            let Some(pos) = members.iter().position(|m| *m == group.me) else {
                anyhow::bail!(
                    "export {} is mirrored by {} but this member is {:?} (--name)",
                    e.cfg.path,
                    members.join(":"),
                    group.me
                );
            };
            let id_of = |name: &str| -> anyhow::Result<MemberId> {
                group.peer(name).map(|p| p.id).ok_or_else(|| {
                    anyhow::anyhow!(
                        "export {} names member {name:?}, which has no --peer {name}=ADDR:PORT",
                        e.cfg.path
                    )
                })
            };
            let seal = take_seal(state_dir, e.cfg.id)?;
            if let Some(s) = &seal {
                tracing::info!(
                    export = e.cfg.path,
                    seq = s.seq,
                    "sealed at a clean stop; resuming that update stream"
                );
            }
            let role = if pos == 0 {
                let secondaries = members[1..]
                    .iter()
                    .map(|m| id_of(m))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Role::Primary(PrimarySide {
                    export: e.cfg.id,
                    secondaries,
                    history: seal
                        .map(|s| s.history)
                        .unwrap_or_else(|| u64::from_be_bytes(random_bytes())),
                    pristine_at_start: e.pristine()?,
                    core: Mutex::new(PrimaryCore {
                        p: Primary::new(
                            e.cfg.id,
                            FIRST_EPOCH,
                            SeqNo(seal.map(|s| s.seq).unwrap_or(0)),
                            MemberSet::EMPTY,
                            PrimaryConfig {
                                max_pending: WINDOW as usize,
                                ..group.primary
                            },
                        ),
                        waiters: HashMap::new(),
                        next_token: 0,
                        closed: false,
                    }),
                })
            } else {
                Role::Secondary(SecondarySide {
                    export: e.cfg.id,
                    primary: id_of(&members[0])?,
                    // A seal says exactly where this mirror stands in the primary's stream.
                    core: Mutex::new(seal.map(|s| SecondaryCore {
                        s: Secondary::new(e.cfg.id, FIRST_EPOCH, SeqNo(s.seq), WINDOW),
                        history: s.history,
                        out: mpsc::channel(1).0,
                        pristine: false,
                        closed: false,
                    })),
                })
            };
            roles.insert(e.cfg.id, role);
        }
        Ok(Mirror {
            group,
            state_dir: state_dir.to_path_buf(),
            roles,
            links: Mutex::new(HashMap::new()),
            events: Mutex::new(VecDeque::new()),
        })
    }

    /// At a clean stop: for each export whose mirror is certainly in step with the update
    /// stream (primary: nothing in flight and every listed secondary live; secondary: joined
    /// and nothing waiting), writes a seal (stream id and last update) to the state
    /// directory. The next start resumes that stream, so a group stopped and started again
    /// needs no copy. A start removes the seal before serving, so a crash never leaves one.
    pub fn seal(&self) {
        for (id, role) in &self.roles {
            let at = match role {
                Role::Primary(ps) => {
                    let mut c = lock(&ps.core);
                    c.closed = true;
                    let all = ps.secondaries.iter().all(|m| c.p.live().contains(*m));
                    (c.p.pending() == 0 && all).then(|| Seal {
                        history: ps.history,
                        seq: c.p.last_seq().0,
                    })
                }
                Role::Secondary(ss) => lock(&ss.core).as_mut().and_then(|sc| {
                    sc.closed = true;
                    (sc.s.backlog() == 0).then(|| Seal {
                        history: sc.history,
                        seq: sc.s.watermark().0,
                    })
                }),
            };
            match at {
                Some(s) => match write_seal(&self.state_dir, *id, s) {
                    Ok(()) => tracing::info!(export = id.0, seq = s.seq, "mirror sealed"),
                    Err(e) => tracing::warn!(export = id.0, error = %e, "cannot seal mirror"),
                },
                None => tracing::info!(
                    export = id.0,
                    "mirror not sealed (updates in flight or a member out): it will need a resync"
                ),
            }
        }
    }

    /// This member's role for an export, if it is mirrored.
    pub fn role(&self, export: ExportId) -> Option<&Role> {
        self.roles.get(&export)
    }

    /// Whether any export is mirrored.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// Records an event (bounded) and logs it.
    pub fn event(&self, at: Millis, export: ExportId, what: String) {
        if what.contains("fail") || what.contains("refuse") || what.contains("cannot") {
            tracing::warn!(export = export.0, "{what}");
        } else {
            tracing::info!(export = export.0, "{what}");
        }
        let mut ev = lock(&self.events);
        if ev.len() >= MAX_EVENTS {
            ev.pop_front();
        }
        ev.push_back(Event { at, export, what });
    }

    /// A connection to `peer` is up and authenticated: it becomes a live secondary of every
    /// export we are primary of that lists it (the `Join` goes first on the link).
    pub fn link_up(&self, peer: MemberId, link: Link, now: Millis) {
        lock(&self.links).insert(peer, link.clone());
        for role in self.roles.values() {
            if let Role::Primary(ps) = role {
                if ps.secondaries.contains(&peer) {
                    ps.add(self, peer, &link, now);
                }
            }
        }
    }

    /// The connection to `peer` is gone: it is out of every export we are primary of.
    pub fn link_down(&self, peer: MemberId, now: Millis) {
        lock(&self.links).remove(&peer);
        for role in self.roles.values() {
            if let Role::Primary(ps) = role {
                let mut c = lock(&ps.core);
                c.p.member_lost(peer);
                ps.drain(&mut c, self, now);
            }
        }
    }

    /// Resends and fails out silent secondaries; call every few milliseconds.
    pub fn tick(&self, now: Millis) {
        for role in self.roles.values() {
            if let Role::Primary(ps) = role {
                let mut c = lock(&ps.core);
                c.p.tick(now);
                ps.drain(&mut c, self, now);
            }
        }
    }

    /// A message from the peer `from` on the link we dialed (we are its primary).
    pub fn on_primary_link_msg(&self, from: MemberId, msg: PeerMsg, now: Millis) {
        let export = match &msg {
            PeerMsg::Ack { export, .. }
            | PeerMsg::Refuse { export, .. }
            | PeerMsg::JoinReply { export, .. } => ExportId(*export),
            other => {
                tracing::warn!(
                    peer = self.group.name_of(from),
                    "unexpected message {other:?}"
                );
                return;
            }
        };
        let Some(Role::Primary(ps)) = self.roles.get(&export) else {
            return;
        };
        let mut c = lock(&ps.core);
        match msg {
            PeerMsg::Ack {
                epoch, seq, status, ..
            } => c.p.on_ack(from, Epoch(epoch), SeqNo(seq), status),
            PeerMsg::Refuse { epoch, .. } => c.p.on_refused(from, Epoch(epoch)),
            PeerMsg::JoinReply { ok: true, .. } => self.event(
                now,
                export,
                format!("{} joined as secondary", self.group.name_of(from)),
            ),
            PeerMsg::JoinReply { reason, .. } => {
                self.event(
                    now,
                    export,
                    format!(
                        "{} refused to join as secondary: {reason}",
                        self.group.name_of(from)
                    ),
                );
                c.p.member_lost(from);
            }
            _ => {}
        }
        ps.drain(&mut c, self, now);
    }

    /// Status of every mirrored export.
    pub fn status(&self) -> Value {
        let mut out = Vec::new();
        for (id, role) in &self.roles {
            let v = match role {
                Role::Primary(ps) => {
                    let c = lock(&ps.core);
                    let st = c.p.stats();
                    json!({
                        "export": id.0,
                        "role": "primary",
                        "epoch": c.p.epoch().0,
                        "secondaries": ps.secondaries.iter().map(|m| json!({
                            "name": self.group.name_of(*m),
                            "live": c.p.live().contains(*m),
                        })).collect::<Vec<_>>(),
                        "last_seq": c.p.last_seq().0,
                        "released": c.p.released_watermark().0,
                        "pending": c.p.pending(),
                        "submitted": st.submitted,
                        "resends": st.resends,
                        "failures": st.failures,
                    })
                }
                Role::Secondary(ss) => {
                    let c = lock(&ss.core);
                    match &*c {
                        None => json!({
                            "export": id.0,
                            "role": "secondary",
                            "primary": self.group.name_of(ss.primary),
                            "joined": false,
                        }),
                        Some(sc) => {
                            let st = sc.s.stats();
                            json!({
                                "export": id.0,
                                "role": "secondary",
                                "primary": self.group.name_of(ss.primary),
                                "joined": true,
                                "epoch": sc.s.epoch().0,
                                "applied": sc.s.watermark().0,
                                "backlog": sc.s.backlog(),
                                "duplicates": st.duplicates,
                                "refused": st.refused,
                            })
                        }
                    }
                }
            };
            out.push(v);
        }
        let events: Vec<Value> = lock(&self.events)
            .iter()
            .rev()
            .take(50)
            .map(|e| json!({"at_ms": e.at.0, "export": e.export.0, "what": e.what}))
            .collect();
        json!({
            "me": self.group.me,
            "peers": self.group.peers.iter().map(|p| json!({
                "name": p.name,
                "addr": p.addr.to_string(),
                "linked": lock(&self.links).contains_key(&p.id),
            })).collect::<Vec<_>>(),
            "exports": out,
            "events": events,
        })
    }
}

impl PrimarySide {
    fn add(&self, m: &Mirror, peer: MemberId, link: &Link, now: Millis) {
        let mut c = lock(&self.core);
        // The Join goes on the link before any update sent by add_member.
        let base = c.p.released_watermark();
        let join = PeerMsg::Join {
            export: self.export.0,
            epoch: c.p.epoch().0,
            base: base.0,
            history: self.history,
            pristine: self.pristine_at_start,
        };
        if link.try_send(join.to_frame()).is_err() {
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
        let mut c = lock(&self.core);
        if c.closed {
            return Err(Busy);
        }
        c.next_token += 1;
        let token = c.next_token;
        let (tx, rx) = sync_channel(2);
        c.waiters.insert(token, tx);
        match c.p.submit(token, touch, payload, now) {
            Ok(seq) => {
                self.drain(&mut c, m, now);
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

    fn drain(&self, c: &mut PrimaryCore, m: &Mirror, now: Millis) {
        while let Some(e) = c.p.poll_effect() {
            match e {
                PrimaryEffect::Send { to, update } => {
                    let link = lock(&m.links).get(&to).cloned();
                    if let Some(link) = link {
                        let deps: Vec<u64> = update.deps.iter().map(|d| d.0).collect();
                        let frame = update_frame(
                            update.export.0,
                            update.epoch.0,
                            update.seq.0,
                            &deps,
                            update.barrier,
                            &update.payload,
                        );
                        // full queue or closed link: the resend timer tries again
                        let _ = link.try_send(frame);
                    }
                }
                PrimaryEffect::Run { token, .. } => {
                    if let Some(w) = c.waiters.get(&token) {
                        let _ = w.try_send(Signal::Run);
                    }
                }
                PrimaryEffect::Release { token, .. } => {
                    if let Some(w) = c.waiters.remove(&token) {
                        let _ = w.try_send(Signal::Release);
                    }
                }
                PrimaryEffect::Failed { member, reason } => {
                    let what = match &reason {
                        FailReason::Diverged { .. } => "failed out (diverged)",
                        FailReason::Silent { .. } => "failed out (silent)",
                        FailReason::Lost => "out (link lost)",
                        FailReason::Refused { .. } => "failed out (refused)",
                    };
                    m.event(
                        now,
                        self.export,
                        format!("secondary {} {what}: {reason}", m.group.name_of(member)),
                    );
                }
            }
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
        out: Link,
        now: Millis,
    ) -> PeerMsg {
        let reply = |ok: bool, reason: String| PeerMsg::JoinReply {
            export: self.export.0,
            ok,
            reason,
        };
        if from != self.primary {
            return reply(
                false,
                format!(
                    "{} is not the listed primary of this export",
                    m.group.name_of(from)
                ),
            );
        }
        let mut c = lock(&self.core);
        let accept = match &*c {
            Some(sc) if sc.history == history => {
                if sc.s.watermark().0 >= base {
                    Ok(())
                } else {
                    Err(format!(
                        "missed updates: applied up to {}, primary released up to {base}; needs resync",
                        sc.s.watermark().0
                    ))
                }
            }
            Some(sc) if sc.pristine && primary_pristine && base == 0 => Ok(()),
            Some(_) => Err("another update stream than the one applied here; needs resync".into()),
            None => match ex.pristine() {
                Ok(true) if primary_pristine && base == 0 => Ok(()),
                Ok(true) => Err("primary mirror is not empty; needs resync".into()),
                Ok(false) => Err("this mirror is not empty; needs resync".into()),
                Err(e) => Err(format!("cannot inspect this mirror: {e}")),
            },
        };
        match accept {
            Ok(()) => {
                let keep = matches!(&*c, Some(sc) if sc.history == history);
                if keep {
                    let sc = c.as_mut().expect("checked above");
                    sc.out = out;
                } else {
                    *c = Some(SecondaryCore {
                        s: Secondary::new(self.export, Epoch(epoch), SeqNo(base), WINDOW),
                        history,
                        out,
                        pristine: true,
                        closed: false,
                    });
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
                drop(c);
                m.event(
                    now,
                    self.export,
                    format!("refused join of {}: {why}", m.group.name_of(from)),
                );
                reply(false, why)
            }
        }
    }

    /// An update from the primary.
    pub fn on_update(
        &self,
        server: &Arc<Server>,
        update: ftnfs_core::mirror::Update<Arc<UpdatePayload>>,
    ) {
        let mut c = lock(&self.core);
        let Some(sc) = c.as_mut() else {
            return; // not joined: the primary's Join was refused
        };
        if sc.closed {
            return;
        }
        sc.s.on_update(update);
        self.drain(sc, server);
    }

    /// The update `seq` was applied here with `status`.
    pub fn applied(&self, server: &Arc<Server>, seq: SeqNo, status: u32) {
        let mut c = lock(&self.core);
        if let Some(sc) = c.as_mut() {
            sc.pristine = false;
            sc.s.applied(seq, status);
            self.drain(sc, server);
        }
    }

    fn drain(&self, sc: &mut SecondaryCore, server: &Arc<Server>) {
        while let Some(e) = sc.s.poll_effect() {
            match e {
                SecondaryEffect::Apply(u) => {
                    let server = server.clone();
                    let export = self.export;
                    tokio::runtime::Handle::current().spawn_blocking(move || {
                        let status = server.apply_update(export, &u.payload);
                        if let Some(Role::Secondary(ss)) = server.mirror.role(export) {
                            ss.applied(&server, u.seq, status);
                        }
                    });
                }
                SecondaryEffect::Ack { epoch, seq, status } => {
                    let _ = sc.out.try_send(
                        PeerMsg::Ack {
                            export: self.export.0,
                            epoch: epoch.0,
                            seq: seq.0,
                            status,
                        }
                        .to_frame(),
                    );
                }
                SecondaryEffect::Refuse { seq, ours } => {
                    let _ = sc.out.try_send(
                        PeerMsg::Refuse {
                            export: self.export.0,
                            epoch: ours.0,
                            seq: seq.0,
                        }
                        .to_frame(),
                    );
                }
            }
        }
    }
}

/// Where a cleanly stopped mirror stood in its primary's update stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seal {
    history: u64,
    seq: u64,
}

fn seal_path(dir: &std::path::Path, id: ExportId) -> std::path::PathBuf {
    dir.join(format!("export-{}.seal", id.0))
}

fn write_seal(dir: &std::path::Path, id: ExportId, s: Seal) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("export-{}.seal.tmp", id.0));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{:016x} {}", s.history, s.seq)?;
    f.sync_all()?;
    std::fs::rename(&tmp, seal_path(dir, id))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads and removes (durably) the seal of an export, if any.
fn take_seal(dir: &std::path::Path, id: ExportId) -> anyhow::Result<Option<Seal>> {
    let p = seal_path(dir, id);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    std::fs::remove_file(&p)?;
    std::fs::File::open(dir)?.sync_all()?;
    let mut it = text.split_whitespace();
    let seal = (|| {
        Some(Seal {
            history: u64::from_str_radix(it.next()?, 16).ok()?,
            seq: it.next()?.parse().ok()?,
        })
    })();
    if seal.is_none() {
        tracing::warn!(path = %p.display(), "unreadable seal ignored");
    }
    Ok(seal)
}
