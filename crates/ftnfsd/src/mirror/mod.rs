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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use ftnfs_core::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use ftnfs_core::member::follower::{self, Follower};
use ftnfs_core::member::settings::{FailoverConfig, Settings as MemberSettings};
use ftnfs_core::member::startup::{secondary_answer, ProbeState};
use ftnfs_core::member::states::{Leading, Standing, SteppedDown};
use ftnfs_core::member::transitions::{self, Promotion};
use ftnfs_core::member::{fencing, rejoin as rules_rejoin, Effect, Facts, Member, Node, RoleView};
use ftnfs_core::mirror::primary::{Busy, PrimaryConfig, PrimaryEffect};
use ftnfs_core::mirror::resync::{self as rules, Candidate, Plan, Stream};
use ftnfs_core::mirror::secondary::SecondaryEffect;
use ftnfs_core::mirror::{FailReason, Touch};
use ftnfs_wire::peer::{order_frame, update_frame, PeerMsg, UpdatePayload, Want};
use serde_json::{json, Value};

use crate::changelog::ChangeLog;
use crate::fs::ExportFs;
use crate::local::Local;
use crate::resync::{Incoming, Progress, Reply};

mod persist;
mod primary_side;
mod proxy_side;
mod rejoin_side;
mod resync_host;
mod roles;
mod secondary_side;
mod status;
mod vouching;

pub use persist::read_epoch;
use persist::{take_seal, write_epoch, write_seal, Seal};
pub use primary_side::{Deferred, Forwarded, PrimarySide, Then, Waiter};
pub use proxy_side::fingerprint;
use secondary_side::SecondaryCore;
pub use secondary_side::SecondarySide;

/// Most updates a secondary holds beyond what it applied; the primary's `max_pending` is the
/// same, so a resend is never too far ahead.
pub const WINDOW: u64 = 1024;
/// Most clients remembered for a tickle after a takeover.
const MAX_TICKLED: usize = 256;
/// Most events kept for `ftnfsctl status`.
const MAX_EVENTS: usize = 1024;

pub use crate::link::Link;

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
    /// Mutual TLS on every peer connection (`--tls-cert/--tls-key/--tls-ca`).
    pub tls: Option<Arc<crate::peer_tls::PeerTls>>,
    /// Primary tuning.
    pub primary: PrimaryConfig,
    /// Failure detection.
    pub failover: FailoverConfig,
    /// The witness among the peers, if the group has one.
    pub witness: Option<MemberId>,
    /// The virtual IPs (`--vip`), each of a group of exports (`Mirror::vips` matches them).
    pub vips: Vec<Arc<crate::vip::Vip>>,
    /// Rejoin and resync settings.
    pub rejoin: RejoinCfg,
    /// Unknown requests (proxy mode: datagrams a secondary received that this primary never
    /// ordered) within [`UNKNOWN_WINDOW_MS`] that raise an alert (`--unknown-alert`), or hand
    /// the role to the member that reported them when this primary received fewer update
    /// datagrams itself (`--unknown-exclude`); 0: never (`ftnfs_core::member::exclusion`).
    pub hearing: ftnfs_core::member::exclusion::HearingConfig,
}

/// The window of [`Group::hearing`].
pub const UNKNOWN_WINDOW_MS: u64 = 10_000;

/// Rejoin and resync settings (`ftnfsd --changelog-max-mb --resync-rate-mb --resync-hold-ms
/// --manual-start`).
#[derive(Debug, Clone, Copy)]
pub struct RejoinCfg {
    /// Most bytes of each export's change log.
    pub changelog_max: u64,
    /// Bytes per second a resync sends (0: no limit).
    pub rate: u64,
    /// Longest the last pass of a resync holds writes, in milliseconds.
    pub hold_ms: u64,
    /// A member that finds no primary never starts as one by itself (`ftnfsctl promote`).
    pub manual_start: bool,
}

impl Default for RejoinCfg {
    fn default() -> Self {
        RejoinCfg {
            changelog_max: 64 << 20,
            rate: 0,
            hold_ms: 1000,
            manual_start: false,
        }
    }
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
    /// The reply may go out. `alone`: no secondary has the update (each was failed out).
    Release {
        /// No secondary acknowledged it.
        alone: bool,
    },
    /// Send no reply: this member was deposed before the update was on every member; the
    /// client retransmits to the new primary.
    Drop,
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
// One per export, always behind an Arc: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Role {
    /// It numbers, executes and forwards clients' updates.
    Primary(PrimarySide),
    /// It applies the primary's updates.
    Secondary(SecondarySide),
    /// It serves no update of the export: a listed primary that restarted without a seal
    /// (another member may have taken over), or a primary deposed by a newer epoch.
    /// `ftnfsctl promote` makes it primary again; resync (next issue) a secondary.
    Standby(StandbySide),
}

impl Role {
    /// The export this role is for.
    pub fn export(&self) -> ExportId {
        match self {
            Role::Primary(p) => p.export,
            Role::Secondary(s) => s.export,
            Role::Standby(s) => s.export,
        }
    }
}

/// A member that must not act as primary or secondary of an export until told: the core's
/// [`Standing`] state, and what the daemon needs beside it.
pub struct StandbySide {
    /// The export.
    pub export: ExportId,
    /// Every other listed member.
    pub others: Vec<MemberId>,
    /// The state (epoch known, where a clean step-down left this mirror, since when, why).
    pub st: Standing,
}

impl std::ops::Deref for StandbySide {
    type Target = Standing;
    fn deref(&self) -> &Standing {
        &self.st
    }
}

/// This member in a split export's read list (peers are numbered from 1).
pub const SELF: MemberId = MemberId(0);

/// The primary's tuning, with the window every secondary holds; `split`: the export's reads
/// are split from its writes (`-ftnfsr=`), so the primary grants read leases of a primary's
/// lease time (`ftnfs_core::member::read_lease`).
fn lead_cfg(group: &Group, split: bool) -> PrimaryConfig {
    PrimaryConfig {
        max_pending: WINDOW as usize,
        read_lease_ms: if split { group.failover.lease_ms() } else { 0 },
        ..group.primary
    }
}

/// A resync running from here: where the member's answers go, and its progress.
type Outgoing = (SyncSender<Reply>, Arc<Progress>);

/// Rejoin state of this member that is not a role: change logs, resyncs into this mirror,
/// startup negotiation.
struct Rejoin {
    /// Each mirrored export's change log.
    logs: HashMap<ExportId, ChangeLog>,
    /// Resyncs into this mirror, by export.
    incoming: Mutex<HashMap<ExportId, Incoming>>,
    /// One applying thread per export at a time.
    apply_busy: HashMap<ExportId, Arc<Mutex<()>>>,
    /// This member's place in each export's member list.
    position: HashMap<ExportId, usize>,
    /// Exports whose mirror was not sealed when the host went down (page cache lost).
    damaged: HashSet<ExportId>,
}

/// All mirrored exports of this member.
pub struct Mirror {
    /// The group.
    pub group: Group,
    /// This member's exports, DRC and clock (what updates are applied to).
    pub local: Arc<Local>,
    /// Where seals and epochs are kept.
    pub state_dir: std::path::PathBuf,
    roles: HashMap<ExportId, RwLock<Arc<Role>>>,
    /// Role changes per export since start, to primary, secondary, standby (metrics).
    role_changes: HashMap<ExportId, [std::sync::atomic::AtomicU64; 3]>,
    links: Mutex<HashMap<MemberId, Link>>,
    events: Mutex<VecDeque<Event>>,
    /// Who serves each export: the core's member machine (evidence, timers, decisions).
    /// A leaf lock: held only while calling the core, which reads links and change logs.
    node: Mutex<Node>,
    /// The member machine's settings (a copy, read without the lock).
    settings: MemberSettings,
    /// Wakes the driver before its deadline (an input that may need a decision now).
    pub wake: tokio::sync::Notify,
    /// When the driver runs [`Mirror::tick`] next (ms, the local clock), unless woken: an
    /// input whose deadline is later needs no wake-up ([`Mirror::wake_for`]).
    driver_due: std::sync::atomic::AtomicU64,
    /// Split exports (`-ftnfsr=…,ftnfsw=…`): their read order, this member as [`SELF`], and
    /// the reads this member answered as their read server (status).
    read_lists: HashMap<ExportId, (Vec<MemberId>, std::sync::atomic::AtomicU64)>,
    /// (A witness:) members reported lost to another member and not yet told.
    lost_reported: Mutex<HashSet<MemberId>>,
    /// Clients (IPv4 address and port) seen in the updates this member applied, and when:
    /// tickled to reconnect when it takes the virtual IP (`vip::tickle`). Bounded.
    recent_clients: Mutex<HashMap<std::net::SocketAddr, Millis>>,
    /// Resync tunables.
    pub resync: crate::resync::Settings,
    rejoin: Rejoin,
    /// Bumped when the client connections that reached this member on its own addresses
    /// must close (the primary of a virtual IP moved: clients reconnect to it, now at the
    /// new primary, and resend what got no reply here). Connections to a virtual IP close
    /// with their group's ([`GroupVip::close`]).
    pub close_clients: tokio::sync::watch::Sender<u64>,
    /// The virtual servers, one per `--vip`.
    pub vips: Vec<GroupVip>,
}

/// A virtual server: a virtual IP and the exports it serves — those whose member list is
/// its group's. It follows the primary of `lead`, the first of them; groups with other
/// member orders have other primaries and their own address (patent Table II, issue 16).
pub struct GroupVip {
    /// The address.
    pub vip: Arc<crate::vip::Vip>,
    /// The export whose primary holds it.
    pub lead: ExportId,
    /// Every export of its group (`lead` among them).
    pub exports: Vec<ExportId>,
    /// Bumped when the clients connected to this address must reconnect: its primary
    /// moved (clients of other groups' addresses stay connected).
    pub close: tokio::sync::watch::Sender<u64>,
}

/// Matches each `--vip` with its group: the exports listing exactly its members, in its
/// order (a `--vip` without members: the group of the first mirrored export). A group
/// without exports here, two addresses for one group or one address twice is refused.
fn group_vips(
    vips: &[Arc<crate::vip::Vip>],
    lists: &[(ExportId, Vec<String>)],
) -> anyhow::Result<Vec<GroupVip>> {
    let mut out: Vec<GroupVip> = Vec::new();
    for v in vips {
        let members = match &v.group {
            Some(g) => g.clone(),
            None => match lists.iter().min_by_key(|(e, _)| *e) {
                Some((_, m)) => m.clone(),
                None => anyhow::bail!("--vip {}: no mirrored export", v.addr),
            },
        };
        let mut exports: Vec<ExportId> = lists
            .iter()
            .filter(|(_, m)| *m == members)
            .map(|(e, _)| *e)
            .collect();
        exports.sort();
        let Some(lead) = exports.first().copied() else {
            anyhow::bail!(
                "--vip {}={}: no export is mirrored by exactly these members, in this order",
                members.join(":"),
                v.addr
            );
        };
        if let Some(o) = out.iter().find(|o| o.lead == lead || o.vip.addr == v.addr) {
            anyhow::bail!(
                "--vip {} and --vip {}: one address per group, one group per address",
                o.vip.addr,
                v.addr
            );
        }
        out.push(GroupVip {
            vip: v.clone(),
            lead,
            exports,
            close: tokio::sync::watch::Sender::new(0),
        });
    }
    Ok(out)
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

/// The mirror driver: runs [`Mirror::tick`] (on the blocking pool: it takes the sides'
/// locks) and sleeps until the deadline it returns, or until an input wakes it
/// ([`Mirror::wake`]). No polling: with nothing due it sleeps a heartbeat.
pub async fn drive(mirror: Arc<Mirror>) {
    loop {
        let m = mirror.clone();
        // while it ticks, every input wakes it again (the tick may not have seen it)
        mirror
            .driver_due
            .store(u64::MAX, std::sync::atomic::Ordering::Release);
        let next = tokio::task::spawn_blocking(move || m.tick(m.local.now()))
            .await
            .unwrap_or_else(|_| Millis(mirror.local.now().0 + 10));
        let wait = next.since(mirror.local.now()).max(1);
        mirror.driver_due.store(
            mirror.local.now().0 + wait,
            std::sync::atomic::Ordering::Release,
        );
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            _ = mirror.wake.notified() => {}
        }
    }
}

impl Mirror {
    /// Wakes the driver if something is due at `due`, before it runs next on its own. A
    /// primary's first pending update makes a resend deadline (`retry_ms`, 200 ms by
    /// default) that the driver's heartbeat (100 ms) always comes before: waking it for each
    /// update cost a task wake-up, a blocking-pool hand-off and the sides' locks per update.
    pub fn wake_for(&self, due: Millis) {
        if due.0 < self.driver_due.load(std::sync::atomic::Ordering::Acquire) {
            self.wake.notify_one();
        }
    }

    /// Decides each mirrored export's role from its `-ftnfs=` list: the first member listed
    /// is the primary (failover comes later), the others are secondaries.
    /// `rebooted`: the host restarted since the last run (`resync::host_rebooted`).
    pub fn new(
        group: Group,
        local: Arc<Local>,
        state_dir: &std::path::Path,
        rebooted: bool,
    ) -> anyhow::Result<Mirror> {
        let exports = &local.exports;
        let mut roles = HashMap::new();
        let mut members_of = Vec::new();
        let mut lists: Vec<(ExportId, Vec<String>)> = Vec::new();
        let mut rejoin = Rejoin {
            logs: HashMap::new(),
            incoming: Mutex::new(HashMap::new()),
            apply_busy: HashMap::new(),
            damaged: HashSet::new(),
            position: HashMap::new(),
        };
        let mut read_lists = HashMap::new();
        for e in exports {
            // the write order is the mirroring order; a split export's read order names who
            // answers reads (member::read_lease)
            let Some(members) = e.cfg.mirroring.write_order() else {
                continue;
            };
            lists.push((e.cfg.id, members.to_vec()));
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
            if let Some(read) = e.cfg.mirroring.read_order() {
                let ids = read
                    .iter()
                    .map(|n| if *n == group.me { Ok(SELF) } else { id_of(n) })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                read_lists.insert(e.cfg.id, (ids, Default::default()));
            }
            let seal = take_seal(state_dir, e.cfg.id)?;
            if let Some(s) = &seal {
                tracing::info!(
                    export = e.cfg.path,
                    seq = s.seq,
                    "sealed at a clean stop: resumes from there once the group answered"
                );
            }
            let others: Vec<MemberId> = members
                .iter()
                .filter(|m| **m != group.me)
                .map(|m| id_of(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let epoch =
                Epoch(read_epoch(state_dir, e.cfg.id).max(seal.map(|s| s.epoch).unwrap_or(1)));
            let pristine = e.pristine()?;
            let log = ChangeLog::open(state_dir, e.cfg.id, group.rejoin.changelog_max, WINDOW)?;
            if rebooted && seal.is_none() && !pristine {
                tracing::warn!(
                    export = e.cfg.path,
                    "the host went down without a clean stop: this mirror may have lost \
                     unsynced data and will be copied in full from the primary"
                );
                rejoin.damaged.insert(e.cfg.id);
            }
            members_of.push(Member::new(e.cfg.id, pos, others.clone()));
            rejoin.position.insert(e.cfg.id, pos);
            rejoin.apply_busy.insert(e.cfg.id, Arc::new(Mutex::new(())));
            let incomplete = crate::resync::has_marker(state_dir, e.cfg.id);
            let role = if pos == 0 && !incomplete && seal.is_none() && pristine {
                let history = u64::from_be_bytes(random_bytes());
                log.start(history, 0);
                Role::Primary(PrimarySide::new(
                    e.cfg.id,
                    others,
                    pristine,
                    Leading::start(
                        e.cfg.id,
                        epoch,
                        SeqNo(0),
                        history,
                        0,
                        lead_cfg(&group, e.cfg.mirroring.read_order().is_some()),
                    ),
                ))
            } else if let (0, false, Some(s)) = (pos, incomplete, seal) {
                // The seal says where this mirror stopped, not that nobody took over since
                // (a secondary does when its primary stops alone): resuming at once made a
                // second primary in an older epoch, and lost what the other had released.
                // So it negotiates like any member without a primary, at once: it starts
                // when every other member answered and none holds a newer epoch or mirror
                // (a new epoch of a new stream from this one, which a sealed secondary
                // follows without a copy), or it follows whoever does.
                Role::Standby(StandbySide {
                    export: e.cfg.id,
                    others,
                    st: Standing {
                        why: "sealed at a clean stop: starts once every member answered and \
                              none took over since"
                            .into(),
                        epoch,
                        clean_at: Some((s.history, SeqNo(s.seq))),
                        since: Millis(0),
                        waits: false,
                    },
                })
            } else if pos == 0 {
                Role::Standby(StandbySide {
                    export: e.cfg.id,
                    others,
                    st: Standing {
                        why: "restarted without a seal: another member may have taken over \
                              (ftnfsctl promote to serve from this mirror)"
                            .into(),
                        epoch,
                        clean_at: None,
                        since: Millis(0),
                        waits: false,
                    },
                })
            } else {
                Role::Secondary(SecondarySide {
                    export: e.cfg.id,
                    primary: id_of(&members[0])?,
                    others,
                    // A seal says exactly where this mirror stands in the primary's stream.
                    core: Mutex::new(seal.map(|s| SecondaryCore::sealed(e.cfg.id, &s))),
                })
            };
            roles.insert(e.cfg.id, RwLock::new(Arc::new(role)));
            rejoin.logs.insert(e.cfg.id, log);
        }
        let settings = MemberSettings {
            failover: group.failover,
            manual_start: group.rejoin.manual_start,
            ..MemberSettings::default()
        };
        let node = Node::new(settings, group.witness, members_of);
        let vips = group_vips(&group.vips, &lists)?;
        Ok(Mirror {
            close_clients: tokio::sync::watch::Sender::new(0),
            vips,
            resync: crate::resync::Settings {
                rate: std::sync::atomic::AtomicU64::new(group.rejoin.rate),
                hold_ms: group.rejoin.hold_ms.max(10),
            },
            rejoin,
            group,
            local,
            state_dir: state_dir.to_path_buf(),
            role_changes: roles.keys().map(|e| (*e, Default::default())).collect(),
            roles,
            links: Mutex::new(HashMap::new()),
            events: Mutex::new(VecDeque::new()),
            node: Mutex::new(node),
            settings,
            wake: tokio::sync::Notify::new(),
            driver_due: std::sync::atomic::AtomicU64::new(0),
            read_lists,
            lost_reported: Mutex::new(HashSet::new()),
            recent_clients: Mutex::new(HashMap::new()),
        })
    }

    fn roles(&self) -> Vec<Arc<Role>> {
        self.roles
            .values()
            .map(|r| r.read().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// A client update from `origin` was applied here.
    pub fn note_client(&self, origin: &ftnfs_wire::peer::Origin, now: Millis) {
        let Some(ip) = ftnfs_wire::peer::ip_from_bytes(&origin.ip) else {
            return;
        };
        let client = std::net::SocketAddr::new(ip, origin.port);
        let mut c = lock(&self.recent_clients);
        if c.len() >= MAX_TICKLED && !c.contains_key(&client) {
            // forget the longest silent
            if let Some(old) = c.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                c.remove(&old);
            }
        }
        c.insert(client, now);
    }

    /// The clients seen within the last ten minutes.
    fn recent_clients(&self, now: Millis) -> Vec<std::net::SocketAddr> {
        lock(&self.recent_clients)
            .iter()
            .filter(|(_, t)| now.since(**t) < 600_000)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Role changes per export since start: (export, [(to, count)]).
    pub fn role_changes(&self) -> Vec<(ExportId, Vec<(&'static str, u64)>)> {
        self.role_changes
            .iter()
            .map(|(e, c)| {
                let n = |i: usize| c[i].load(std::sync::atomic::Ordering::Relaxed);
                (
                    *e,
                    vec![("primary", n(0)), ("secondary", n(1)), ("standby", n(2))],
                )
            })
            .collect()
    }

    fn set_role(&self, export: ExportId, role: Role) {
        let primary = matches!(role, Role::Primary(_));
        if let Some(c) = self.role_changes.get(&export) {
            let i = match role {
                Role::Primary(_) => 0,
                Role::Secondary(_) => 1,
                Role::Standby(_) => 2,
            };
            c[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(cell) = self.roles.get(&export) {
            *cell.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(role);
            if primary {
                self.local.took_over(export);
            }
        }
    }

    /// At a clean stop: for each export whose mirror is certainly in step with the update
    /// stream (primary: nothing in flight and every listed secondary live; secondary: joined
    /// and nothing waiting), writes a seal (stream id and last update) to the state
    /// directory. The next start resumes that stream, so a group stopped and started again
    /// needs no copy. A start removes the seal before serving, so a crash never leaves one.
    /// `flush` makes an export's mirror durable (syncfs) before its seal is written: a seal
    /// must never outlive data lost with the page cache.
    pub fn seal(&self, flush: &dyn Fn(ExportId) -> std::io::Result<()>) {
        for role in self.roles() {
            let (id, at) = match &*role {
                Role::Primary(ps) => {
                    let s = ps.lead().and_then(|mut c| {
                        c.close();
                        let all = ps.secondaries.iter().all(|m| c.p.live().contains(*m));
                        (c.p.pending() == 0 && all).then(|| Seal {
                            history: ps.history,
                            seq: c.p.last_seq().0,
                            epoch: c.p.epoch().0,
                        })
                    });
                    (ps.export, s)
                }
                Role::Secondary(ss) => {
                    let s = lock(&ss.core).as_mut().and_then(|sc| {
                        sc.close();
                        (sc.s.backlog() == 0).then(|| Seal {
                            history: sc.history,
                            seq: sc.s.watermark().0,
                            epoch: sc.s.epoch().0,
                        })
                    });
                    (ss.export, s)
                }
                Role::Standby(sb) => (sb.export, None),
            };
            let id = &id;
            let at = match at.map(|s| (s, flush(*id))) {
                Some((s, Ok(()))) => Some(s),
                Some((_, Err(e))) => {
                    tracing::warn!(export = id.0, error = %e, "cannot sync the mirror; not sealed");
                    None
                }
                None => None,
            };
            // the lock table's log first: a seal never stands without the table of its
            // instant (lock_log.rs)
            let at = at.filter(|_| {
                match self.local.export(*id).map_or(Ok(()), |ex| ex.locks.sync()) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(export = id.0, error = %e, "cannot sync the lock table; not sealed");
                        false
                    }
                }
            });
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

    /// A client update reached this member while it hands the primary role over (stepping
    /// down, or stood down and not yet following the new primary): waits up to 3 s for the
    /// hand-over. `true`: it happened — send no reply; the client's connection is closed and
    /// it resends to the new primary. `false`: answer JUKEBOX (try later).
    pub fn hold_for_switch(&self, export: ExportId) -> bool {
        if !self.moves_clients(export) {
            return false; // no address moves: the client stays here, and must retry here
        }
        let handing_over = |r: &Role| match r {
            Role::Primary(ps) => ps.lead().is_some_and(|c| c.stepping_down().is_some()),
            Role::Standby(sb) => sb.clean_at.is_some(),
            Role::Secondary(_) => false,
        };
        if !self.role(export).is_some_and(|r| handing_over(&r)) {
            return false;
        }
        for _ in 0..300 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            match self.role(export).as_deref() {
                Some(Role::Secondary(_)) => return true,
                Some(r) if handing_over(r) => {}
                _ => return false,
            }
        }
        false
    }

    /// Whether this member's mirror of `export` may answer reads: it is not mirrored, or
    /// this member is its primary, or a secondary following one. A standby, a secondary that
    /// has not joined and a mirror being resynced may be stale or half copied.
    pub fn serves_reads(&self, export: ExportId) -> bool {
        match self.role(export).as_deref() {
            None | Some(Role::Primary(_)) => true,
            Some(Role::Secondary(ss)) => lock(&ss.core)
                .as_ref()
                .is_some_and(|sc| sc.acks_to().is_some()),
            Some(Role::Standby(_)) => false,
        }
    }

    /// A change of this export's primary moves the clients: a virtual IP follows it.
    fn moves_clients(&self, export: ExportId) -> bool {
        self.vip_led_by(export).is_some()
    }

    /// The virtual server whose address follows `export`'s primary.
    pub fn vip_led_by(&self, export: ExportId) -> Option<&GroupVip> {
        self.vips.iter().find(|g| g.lead == export)
    }

    /// The exports whose primaries answer calls that name no export (NULL, MOUNT): those
    /// the virtual IPs follow; without one, the first mirrored export.
    pub fn address_exports(&self) -> Vec<ExportId> {
        if self.vips.is_empty() {
            self.roles.keys().min().copied().into_iter().collect()
        } else {
            self.vips.iter().map(|g| g.lead).collect()
        }
    }

    /// The virtual IP clients of `export` reach it by (its group's), if it has one.
    pub fn vip_of(&self, export: ExportId) -> Option<Arc<crate::vip::Vip>> {
        self.vips
            .iter()
            .find(|g| g.exports.contains(&export))
            .map(|g| g.vip.clone())
    }

    /// The multicast virtual IP `ip` is, if it is one (every member receives what is sent
    /// to it; only its holder answers).
    pub fn multicast_vip(&self, ip: std::net::IpAddr) -> Option<&Arc<crate::vip::Vip>> {
        let ip = ftnfs_core::exports::client_ip(ip);
        self.vips
            .iter()
            .map(|g| &g.vip)
            .find(|v| v.multicast && v.addr == ip)
    }

    /// The closing signal for a client connection that reached this member at `local`:
    /// its virtual server's, or for any other address the one every move bumps.
    pub fn close_signal(&self, local: std::net::IpAddr) -> tokio::sync::watch::Receiver<u64> {
        let local = ftnfs_core::exports::client_ip(local);
        match self.vips.iter().find(|g| g.vip.addr == local) {
            Some(g) => g.close.subscribe(),
            None => self.close_clients.subscribe(),
        }
    }

    /// `export`'s primary moved away from this member (or to another): the clients of its
    /// virtual IP reconnect — at once, rather than waiting here for replies that will never
    /// come — and so do those on this member's own addresses.
    fn close_clients_of(&self, export: ExportId) {
        if let Some(g) = self.vip_led_by(export) {
            g.close.send_modify(|n| *n += 1);
            self.close_clients.send_modify(|n| *n += 1);
        }
    }

    /// The read lease of a primary: it may answer a client from its own mirror only while
    /// every live secondary confirmed its epoch (echoed its heartbeat or acknowledged an
    /// update) within the silence time less a heartbeat. A secondary takes over only after hearing
    /// nothing from the primary for the whole silence time, so a primary frozen (SIGSTOP, a
    /// stalled host) while another took over finds its lease expired when it resumes and
    /// answers nobody until it is deposed — by construction, not by which message wins a
    /// race. Neither the witness (it answers pings of a member it no longer backs) nor "heard
    /// anything" (the new primary's Join is a message too) would do. Without live
    /// secondaries nobody in step can have taken over: the lease holds.
    pub fn lease_ok(&self, export: ExportId, now: Millis) -> bool {
        if self.group.witness.is_none() {
            return true; // no lease needed (fencing::lease_ok); skip the locks
        }
        let Some(role) = self.role(export) else {
            return true;
        };
        let Role::Primary(ps) = &*role else {
            return true; // not ours to lease: serves_reads decides
        };
        // the node is a leaf lock: read it before taking any other
        let backed = lock(&self.node).witness_backed;
        // a side whose role moved on answers nobody
        ps.lead().is_some_and(|c| {
            fencing::lease_ok(true, c.p.live(), c.confirmed(), backed, &self.settings, now)
        })
    }

    /// A secondary echoed our heartbeat of `epoch`: it still follows us.
    /// `sent`: when we sent the heartbeat it echoes (the lease counts from there: an echo
    /// read after this member was frozen is old).
    pub fn echoed(&self, export: ExportId, from: MemberId, epoch: u64, sent: u64) {
        if let Some(role) = self.role(export) {
            if let Role::Primary(ps) = &*role {
                self.echo_from(ps, export, from, epoch, sent, self.local.now());
            }
        }
    }

    /// The echo of `from` (see [`echoed`](Self::echoed)) at the primary side `ps`: it confirms
    /// our epoch and, for the read server of a split export, earns a read lease
    /// (`Leading::read_echo`: its end is noted before the grant goes out).
    fn echo_from(
        &self,
        ps: &PrimarySide,
        export: ExportId,
        from: MemberId,
        epoch: u64,
        sent: u64,
        now: Millis,
    ) {
        let read = self.read_lists.get(&export).map(|r| &r.0);
        // the node is a leaf lock: read it before the side's
        let backed = read.and_then(|_| lock(&self.node).witness_backed);
        let Some(mut c) = ps.lead().filter(|c| c.p.epoch().0 == epoch) else {
            return;
        };
        c.confirm(from, Millis(sent));
        let Some(read) = read else {
            return;
        };
        let lease_ok = fencing::lease_ok(
            self.group.witness.is_some(),
            c.p.live(),
            c.confirmed(),
            backed,
            &self.settings,
            now,
        );
        if let Some(at) = c.read_echo(read, SELF, from, sent, lease_ok, now) {
            drop(c);
            if let Some(l) = lock(&self.links).get(&from) {
                let msg = PeerMsg::ReadLease {
                    export: export.0,
                    epoch,
                    at,
                };
                let _ = l.try_send(msg.to_frame().into());
            }
        }
    }

    /// A split export's read order (this member as [`SELF`]); `None`: reads are not split.
    pub fn read_list(&self, export: ExportId) -> Option<&[MemberId]> {
        self.read_lists.get(&export).map(|r| r.0.as_slice())
    }

    /// Reads of split export `export` this member took as its read server (a primary whose
    /// own lease then ran out answers them JUKEBOX instead).
    pub fn reads_answered(&self, export: ExportId) -> Option<u64> {
        self.read_lists
            .get(&export)
            .map(|r| r.1.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether this member answers a read of split export `export` that reached every
    /// member (multicast): the primary when it is the read server, a secondary under its
    /// read lease (`ftnfs_core::member::read_lease`). The primary's own lease is checked
    /// where every read is (`Server::answers_reads`).
    ///
    /// A read the primary does not answer is noted: a client that repeats it got no answer
    /// from the read server, which is passed over after a few (`Leading::read_unanswered`).
    pub fn answers_split_read(
        &self,
        export: ExportId,
        now: Millis,
        client: SocketAddr,
        xid: u32,
    ) -> bool {
        let Some((read, answered)) = self.read_lists.get(&export) else {
            return false;
        };
        let ours = match self.role(export).as_deref() {
            Some(Role::Primary(ps)) => {
                let mut passed = None;
                let ours = ps.lead().is_some_and(|mut c| {
                    let ours = c.answers_reads(read, SELF, now);
                    if !ours {
                        let key = proxy_side::key_of(client.ip(), client.port(), xid);
                        passed = c.read_unanswered(read, SELF, key, now);
                    }
                    ours
                });
                if let Some(m) = passed {
                    self.event(
                        now,
                        export,
                        format!(
                            "read server {} passed over for {} s: clients repeat reads it does \
                             not answer (it may not receive the group's datagrams)",
                            self.group.name_of(m),
                            ftnfs_core::member::read_lease::PASS_OVER_MS / 1000
                        ),
                    );
                }
                ours
            }
            Some(Role::Secondary(ss)) => ss.reads(now),
            _ => false,
        };
        if ours {
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ours
    }

    /// The primary's tuning for `export` (read leases if its reads are split).
    pub(crate) fn lead_cfg(&self, export: ExportId) -> PrimaryConfig {
        lead_cfg(&self.group, self.read_lists.contains_key(&export))
    }

    /// This member's role for an export, if it is mirrored.
    pub fn role(&self, export: ExportId) -> Option<Arc<Role>> {
        self.roles
            .get(&export)
            .map(|r| r.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The highest epoch of `export` this member knows (0: not mirrored here): of the
    /// stream it leads or follows, or persisted. It answers every vouching query with it, so
    /// that a member that missed a takeover does not take over itself (`member::takeover`).
    pub fn known_epoch(&self, export: ExportId) -> u64 {
        let Some(role) = self.role(export) else {
            return 0;
        };
        let held = match &*role {
            Role::Primary(ps) => ps.epoch().unwrap_or(Epoch(0)),
            Role::Secondary(ss) => lock(&ss.core).as_ref().map_or(Epoch(0), |c| c.s.epoch()),
            Role::Standby(sb) => sb.epoch,
        };
        held.0.max(read_epoch(&self.state_dir, export))
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
        self.heard(peer, now);
        for role in self.roles() {
            if let Role::Primary(ps) = &*role {
                if ps.secondaries.contains(&peer) {
                    ps.add(self, peer, &link, now);
                }
            }
        }
    }

    /// The connection to `peer` is gone. That alone puts it out of no export: its process may
    /// live on (a reset link, a cut one), inside its takeover window, and replies released
    /// without it could be lost with us (sim_group seed 175651). What awaits it is sent
    /// again on the next link (`link_up` asks it to join again first); the dialer redials at
    /// once, and a refused redial (its process is gone) or its silence fails it out.
    pub fn link_down(&self, peer: MemberId, _now: Millis) {
        lock(&self.links).remove(&peer);
    }

    /// Something came from `peer`: it is alive.
    pub fn heard(&self, peer: MemberId, now: Millis) {
        lock(&self.node).heard(peer, now);
    }

    /// `peer`'s host refused a connection to its peer port: nothing listens there now.
    pub fn refused(&self, peer: MemberId, now: Millis) {
        lock(&self.node).refused(peer, now);
        self.wake.notify_one(); // evidence for a takeover: decide now
    }

    /// When anything last came from `peer`.
    pub fn last_heard(&self, peer: MemberId) -> Option<Millis> {
        lock(&self.node).evidence.last_heard(peer)
    }

    /// What the data path knows of each export's role, for the member machine.
    fn views(&self) -> HashMap<ExportId, RoleView> {
        let mut views = HashMap::new();
        for role in self.roles() {
            let (export, view) = match &*role {
                Role::Primary(ps) => {
                    let resyncing = lock(&ps.resyncs).keys().copied().collect();
                    // (a side whose role moved on is being replaced: no view this instant)
                    let Some(c) = ps.lead() else { continue };
                    (ps.export, c.view(resyncing))
                }
                Role::Secondary(ss) => {
                    let incoming = lock(&self.rejoin.incoming).contains_key(&ss.export);
                    let c = lock(&ss.core);
                    // the persisted epoch matters only while joined, when the stream's is newer
                    let view = follower::secondary_view(
                        c.as_ref().map(|sc| &sc.f),
                        ss.primary,
                        incoming,
                        Epoch(0),
                    );
                    (ss.export, view)
                }
                Role::Standby(sb) => (sb.export, sb.st.view()),
            };
            views.insert(export, view);
        }
        views
    }

    /// The driver's step: runs the data path's timers (resends), asks the member machine
    /// what is due and carries it out. Returns when to run again (the earliest deadline).
    pub fn tick(self: &Arc<Self>, now: Millis) -> Millis {
        // who serves first: a primary that must fence itself does so before its data path
        // may fail a silent secondary out and release replies without it
        let views = self.views();
        let role = |e: ExportId| views.get(&e).cloned();
        let effects = lock(&self.node).handle_timeout(now, &role, &**self);
        for e in effects {
            self.carry_out(e, now);
        }
        let mut next = Millis(now.0 + self.settings.failover.heartbeat_ms);
        for role in self.roles() {
            if let Role::Primary(ps) = &*role {
                // a member that does not answer its Join holds writes for the silence time
                // at most
                let Some(mut c) = ps.lead() else { continue };
                if c.expire_joiners(now, self.settings.silence_ms()) {
                    ps.unheld.notify_all();
                }
                c.p.tick(now);
                // what unknown requests are weighed against (member::exclusion)
                let heard = ps.datagrams.load(std::sync::atomic::Ordering::Relaxed);
                c.heard_datagrams(heard, now, self.group.hearing);
                ps.drain(&mut c, self, now);
                if let Some(d) = c.p.next_deadline() {
                    next = next.min(d);
                }
            } else if let Role::Secondary(ss) = &*role {
                if let Some(d) = ss.tick_proxy(self, now) {
                    next = next.min(d);
                }
            }
        }
        let views = self.views();
        let role = |e: ExportId| views.get(&e).cloned();
        next.min(lock(&self.node).poll_timeout(&role))
    }

    /// Carries out one effect of the member machine.
    fn carry_out(self: &Arc<Self>, e: Effect, now: Millis) {
        let send = |to: MemberId, msg: PeerMsg| {
            if let Some(l) = lock(&self.links).get(&to) {
                let _ = l.try_send(msg.to_frame().into());
            }
        };
        let role = |export: ExportId| self.role(export);
        match e {
            Effect::WitnessPing => {
                if let Some(w) = self.group.witness {
                    send(w, PeerMsg::ping_at(now.0));
                }
            }
            Effect::WitnessQuery { about, to, export } => {
                let about = self.group.name_of(about).to_string();
                send(
                    to,
                    PeerMsg::WitnessQuery {
                        about,
                        export: export.0,
                    },
                );
            }
            Effect::Probe { export, to } => send(to, PeerMsg::Probe { export: export.0 }),
            Effect::Event { export, what } => self.event(now, export, what),
            Effect::LeaveStream { export, why } => {
                if let Some(Role::Secondary(ss)) = role(export).as_deref() {
                    if let Some(sc) = lock(&ss.core).as_mut() {
                        sc.leave_any();
                    }
                }
                self.event(now, export, why);
            }
            Effect::Heartbeat { export, to } => {
                if let Some(Role::Primary(ps)) = role(export).as_deref() {
                    if let Some(epoch) = ps.epoch() {
                        // `seq` carries our clock: the echo tells when we sent it (lease)
                        let hb = PeerMsg::Heartbeat {
                            export: export.0,
                            epoch: epoch.0,
                            seq: now.0,
                        };
                        send(to, hb);
                    }
                }
            }
            Effect::FailOut {
                export,
                member,
                why,
            } => {
                if let Some(Role::Primary(ps)) = role(export).as_deref() {
                    if let Some(mut c) = ps.lead().filter(|c| c.p.live().contains(member)) {
                        c.p.member_lost(member);
                        ps.drain(&mut c, self, now);
                        drop(c);
                        self.event(now, export, why);
                    }
                }
            }
            Effect::AskToRejoin { export, member } => {
                if let Some(Role::Primary(ps)) = role(export).as_deref() {
                    self.ask_to_rejoin(ps, member, now);
                }
            }
            Effect::FinishStepDown { export } => {
                if let Some(Role::Primary(ps)) = role(export).as_deref() {
                    self.finish_step_down(ps, now);
                }
            }
            Effect::Fence { export, why } => self.deposed(export, now, why),
            Effect::Promote { export, why } => {
                if let Some(Role::Secondary(ss)) = role(export).as_deref() {
                    if self.promote(ss, now, &why) {
                        if let Some(m) = lock(&self.node).member(export) {
                            m.took_over();
                        }
                    }
                }
            }
            Effect::StartPrimary { export, why } => {
                let (seen, others) = match role(export).as_deref() {
                    Some(Role::Standby(sb)) => (sb.epoch, sb.others.clone()),
                    Some(Role::Secondary(ss)) => (Epoch(0), ss.others.clone()),
                    _ => return,
                };
                if let Err(e) = self.start_primary(export, seen, others, now, &why) {
                    self.event(now, export, format!("cannot start as primary: {e}"));
                }
            }
            Effect::AskRoleBack { export } => {
                if let Some(Role::Secondary(ss)) = role(export).as_deref() {
                    let out = lock(&ss.core).as_ref().map(|sc| sc.out.clone());
                    if let Some(o) = out {
                        let _ = o.try_send(PeerMsg::Handoff { export: export.0 }.to_frame().into());
                    }
                }
            }
        }
    }

    /// The primary stood down for us: take over at the next tick.
    pub fn take_over_asked(&self, export: ExportId, from: MemberId, now: Millis) {
        if let Some(role) = self.role(export) {
            if let Role::Secondary(ss) = &*role {
                let leader = lock(&ss.core).as_ref().and_then(|sc| sc.acks_to());
                if ss.primary == from || leader == Some(from) {
                    let name = self.group.name_of(from).to_string();
                    let ev = lock(&self.node)
                        .member(export)
                        .map(|m| m.take_over_asked(&name));
                    if let Some(Effect::Event { export, what }) = ev {
                        self.event(now, export, what);
                    }
                    self.wake.notify_one();
                }
            }
        }
    }

    /// A `Probe` from `asker`: what this member answers ([`secondary_answer`]). A probe
    /// from the primary this member follows says that it is not primary any more (a member
    /// asks only when it follows no primary): this member leaves its stream, so that it
    /// negotiates too — else the two wait for each other for good (the fenced primary
    /// defers to its joined secondary as the better candidate, which waits for it; found by
    /// `tests/sim_group.rs`).
    pub fn probe_reply(&self, export: ExportId, asker: MemberId, now: Millis) -> PeerMsg {
        let state = match self.role(export).as_deref() {
            Some(Role::Primary(_)) => ProbeState::Primary,
            Some(Role::Secondary(ss)) => {
                let mut c = lock(&ss.core);
                let leader = c.as_ref().and_then(|sc| sc.leader());
                if c.as_mut().is_some_and(|sc| sc.leave(asker)) {
                    drop(c);
                    self.event(
                        now,
                        export,
                        format!(
                            "{} is not primary any more (it asks what we are): negotiating",
                            self.group.name_of(asker)
                        ),
                    );
                }
                secondary_answer(leader, asker)
            }
            _ => ProbeState::Standby,
        };
        let (history, seq) = self.last_logged(export);
        PeerMsg::ProbeReply {
            export: export.0,
            state: state.code(),
            epoch: read_epoch(&self.state_dir, export),
            complete: self.complete(export),
            history,
            seq,
        }
    }

    /// The other member's answer to our `Probe`.
    fn probed(&self, from: MemberId, msg: &PeerMsg, now: Millis) {
        if let PeerMsg::ProbeReply {
            export,
            state,
            epoch,
            complete,
            history,
            seq,
        } = msg
        {
            let claim = Candidate {
                complete: *complete,
                epoch: *epoch,
                history: *history,
                seq: *seq,
                position: 0, // the member machine knows the list
            };
            if let Some(m) = lock(&self.node).member(ExportId(*export)) {
                m.probe_answered(from, ProbeState::from_code(*state), claim, now);
            }
        }
    }

    /// Hands a member's answer to the resync sending to it (none running: dropped). A full
    /// queue cancels that resync ([`crate::resync::MAX_REPLIES_QUEUED`]): its sender finds
    /// the queue closed and ends, and the member is copied again later.
    fn to_resync(&self, ps: &PrimarySide, from: MemberId, r: Reply, now: Millis) {
        let mut resyncs = lock(&ps.resyncs);
        let Some((tx, _)) = resyncs.get(&from) else {
            return;
        };
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = tx.try_send(r) {
            resyncs.remove(&from);
            drop(resyncs);
            self.event(
                now,
                ps.export,
                format!(
                    "resync of {} cancelled: {} answers queued",
                    self.group.name_of(from),
                    crate::resync::MAX_REPLIES_QUEUED
                ),
            );
        }
    }

    /// A message from the peer `from` on the link we dialed (we are its primary).
    pub fn on_primary_link_msg(self: &Arc<Self>, from: MemberId, msg: PeerMsg, now: Millis) {
        self.heard(from, now);
        if let PeerMsg::WitnessSeen {
            about,
            ms_ago,
            export,
            epoch,
        } = &msg
        {
            self.vouched(from, about, ExportId(*export), *ms_ago, Epoch(*epoch), now);
            return;
        }
        if let PeerMsg::ProbeReply { .. } = &msg {
            self.probed(from, &msg, now);
            return;
        }
        if Some(from) == self.group.witness {
            match msg {
                PeerMsg::Heartbeat { export: 0, seq, .. } if seq > 0 => {
                    // it answered our ping sent at `seq`: it backs us
                    lock(&self.node).witness_backs(Millis(seq));
                    return;
                }
                PeerMsg::WitnessLost => {
                    // it reported us lost to another member, which may have taken over
                    let views = self.views();
                    let role = |e: ExportId| views.get(&e).cloned();
                    let effects = lock(&self.node).witness_lost_us(&role);
                    for e in effects {
                        self.carry_out(e, now);
                    }
                    return;
                }
                _ => {}
            }
        }
        let export = match &msg {
            PeerMsg::Ack { export, .. }
            | PeerMsg::Fetch { export, .. }
            | PeerMsg::Unknown { export, .. }
            | PeerMsg::Refuse { export, .. }
            | PeerMsg::JoinReply { export, .. }
            | PeerMsg::SyncNeed { export, .. }
            | PeerMsg::SyncRoundDone { export, .. }
            | PeerMsg::Handoff { export }
            | PeerMsg::SyncReplies { export, .. }
            | PeerMsg::Heartbeat { export, .. } => ExportId(*export),
            other => {
                tracing::warn!(
                    peer = self.group.name_of(from),
                    "unexpected message {other:?}"
                );
                return;
            }
        };
        let Some(role) = self.role(export) else {
            return;
        };
        let Role::Primary(ps) = &*role else {
            return;
        };
        match msg {
            PeerMsg::Heartbeat { epoch, seq, .. } => {
                // a secondary's echo of our heartbeat (it answers on the link we dialed):
                // it followed our epoch when we sent it (`seq` carries our clock) — the lease.
                // (Echoes were dropped here before: an idle group with a witness answered
                // every read JUKEBOX once the join's confirmation aged; tests/chaos.sh found
                // it with a guest mounting after the faults.)
                self.echo_from(ps, export, from, epoch, seq, now);
                return;
            }
            PeerMsg::SyncReplies { replies, .. } => {
                // a member that joined hands us its cached replies (we may have lost ours)
                self.local.adopt_replies(export, &replies, false);
                self.joined_answered(ps, from);
                return;
            }
            PeerMsg::SyncNeed { needs, .. } => {
                self.to_resync(ps, from, Reply::Need(needs), now);
                return;
            }
            PeerMsg::SyncRoundDone {
                round, ok, reason, ..
            } => {
                self.to_resync(ps, from, Reply::Done { round, ok, reason }, now);
                return;
            }
            PeerMsg::Handoff { .. } => {
                let accept = ps.lead().is_some_and(|c| {
                    rules_rejoin::accept_handback(
                        c.p.live().contains(from),
                        c.handoff_to().is_some(),
                    )
                });
                if accept {
                    let why = format!(
                        "giving the role back to the listed primary {}",
                        self.group.name_of(from)
                    );
                    if let Err(e) = self.step_down_for(export, now, why, Some(from)) {
                        self.event(now, export, format!("not giving the role back: {e}"));
                    }
                }
                return;
            }
            PeerMsg::JoinReply {
                ok: false,
                ref reason,
                ref want,
                ..
            } if *want != Want::Nothing => {
                self.event(
                    now,
                    export,
                    format!(
                        "{} refused to join as secondary: {reason}",
                        self.group.name_of(from)
                    ),
                );
                if let Some(mut c) = ps.lead() {
                    c.p.member_lost(from);
                    ps.drain(&mut c, self, now);
                }
                self.joined_answered(ps, from);
                self.start_resync(ps, from, want.clone(), now);
                return;
            }
            _ => {}
        }
        let Some(mut c) = ps.lead() else { return };
        match msg {
            PeerMsg::Ack {
                epoch, seq, status, ..
            } => {
                if epoch == c.p.epoch().0 {
                    if let Some(sent) = c.p.first_sent(SeqNo(seq)) {
                        c.confirm(from, sent);
                    }
                }
                c.p.on_ack(from, Epoch(epoch), SeqNo(seq), status)
            }
            PeerMsg::Fetch { epoch, seq, .. } if epoch == c.p.epoch().0 => {
                c.p.fetch(from, SeqNo(seq));
            }
            PeerMsg::Unknown { count, .. } => {
                drop(c);
                self.unknown_reported(ps, from, u64::from(count), now);
                return;
            }
            PeerMsg::Refuse { epoch, .. } => {
                if self.yields(export, c.p.epoch(), from, Epoch(epoch)) {
                    // A newer primary exists: we are deposed (never two primaries).
                    drop(c);
                    self.deposed(
                        export,
                        now,
                        format!(
                            "{} follows epoch {epoch}, newer than ours",
                            self.group.name_of(from)
                        ),
                    );
                    return;
                }
                c.p.on_refused(from, Epoch(epoch))
            }
            PeerMsg::JoinReply { ok: true, .. } => {
                c.diverged.remove(&from);
                c.accepted.insert(from);
                let asked = lock(&self.node)
                    .member(export)
                    .and_then(|m| m.asked_at(from));
                if let Some(t) = asked {
                    c.confirm(from, t);
                }
                self.event(
                    now,
                    export,
                    format!("{} joined as secondary", self.group.name_of(from)),
                )
            }
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
                if c.join_answered(from) {
                    ps.unheld.notify_all();
                }
            }
            _ => {}
        }
        ps.drain(&mut c, self, now);
    }
}

/// What the member machine asks the daemon. Takes only leaf locks (links, change logs): it
/// runs under the node lock.
impl Facts for Mirror {
    fn linked(&self, m: MemberId) -> bool {
        lock(&self.links).contains_key(&m)
    }

    fn candidate(&self, export: ExportId, seen: Epoch) -> Candidate {
        let (history, seq) = self.last_logged(export);
        Candidate {
            complete: self.complete(export),
            epoch: seen.0.max(read_epoch(&self.state_dir, export)),
            history,
            seq,
            position: self.rejoin.position.get(&export).copied().unwrap_or(0),
        }
    }

    fn name(&self, m: MemberId) -> String {
        self.group.name_of(m).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(spec: &str) -> Arc<crate::vip::Vip> {
        Arc::new(crate::vip::Vip::parse(spec, "lo").expect("a valid --vip"))
    }

    fn list(m: &str) -> Vec<String> {
        m.split(':').map(str::to_string).collect()
    }

    #[test]
    fn each_virtual_ip_serves_the_exports_of_its_member_order() {
        // Table II: /home1 and /home2 by a:b, /home3 by b:a — two virtual servers
        let lists = vec![
            (ExportId(30), list("b:a")),
            (ExportId(20), list("a:b")),
            (ExportId(10), list("a:b")),
        ];
        let g = group_vips(&[vip("10.0.0.50/24"), vip("b:a=10.0.0.51/24")], &lists).unwrap();
        assert_eq!(
            (g[0].lead, g[0].exports.clone()),
            (ExportId(10), vec![ExportId(10), ExportId(20)])
        );
        assert_eq!(
            (g[1].lead, g[1].exports.clone()),
            (ExportId(30), vec![ExportId(30)])
        );
        // the group of the first export, named or not, is the same group
        let named = group_vips(&[vip("a:b=10.0.0.50/24")], &lists).unwrap();
        assert_eq!(named[0].lead, ExportId(10));
    }

    #[test]
    fn a_virtual_ip_without_its_group_or_twice_is_refused() {
        let lists = vec![(ExportId(10), list("a:b")), (ExportId(30), list("b:a"))];
        for (vips, why) in [
            (vec![vip("a:c=10.0.0.50/24")], "no export"),
            (
                vec![vip("10.0.0.50/24"), vip("a:b=10.0.0.51/24")],
                "one address per group",
            ),
            (
                vec![vip("a:b=10.0.0.50/24"), vip("b:a=10.0.0.50/24")],
                "one address per group",
            ),
        ] {
            let err = group_vips(&vips, &lists).err().expect("refused");
            assert!(err.to_string().contains(why), "{err}");
        }
        assert!(
            group_vips(&[vip("10.0.0.50/24")], &[]).is_err(),
            "no mirrored export"
        );
    }
}
