//! Seeded simulation of whole groups in virtual time (issue 12): 2–3 members and, in most
//! runs, a witness, each member driven by the core's member machine (`ftnfs_core::member`:
//! takeover, fencing, startup negotiation, rejoin, hand-back) and the data path
//! (`mirror::primary` / `mirror::secondary`), with clients that retransmit, and a campaign of
//! combined faults: crash and restart (losing memory), pause and resume (SIGSTOP, a stalled
//! host), link cuts between two members or of one member from everybody, and planned
//! switches by the operator.
//!
//! Peer links behave like TCP: per link, messages arrive in order or not at all (a cut or a
//! crash loses what is in flight and ends the link); different links reorder freely. Clients
//! talk to whoever holds the virtual IP. In the multicast family ([`MULTICAST_FROM`]) every
//! client datagram also reaches every other member (lossy, reordered against the peer
//! links): secondaries run in proxy mode (`mirror::proxy`) — they hold the datagrams, the
//! primary's first send of an update is an order without the request, and a missing
//! datagram is fetched.
//!
//! Checked at every step, or where it happens:
//! - **never two serving**: at no instant do two running members each hold the primary role
//!   with a valid read lease; a reply an older primary releases late (it was paused) is for
//!   an update the newer primary holds;
//! - **exactly once**: a retransmitted update gets its original reply (each client's updates
//!   succeed the first time, so any EXIST/NOENT or a record appended twice is a second
//!   execution);
//! - **nothing acknowledged lost**: a member that becomes primary holds every acknowledged
//!   update, and so does the final primary;
//! - **liveness**: once faults stop, within a bound, exactly one primary, every other member
//!   its joined secondary with the same data, and every client's last update answered;
//! - **no stale read** (the split family, [`SPLIT_FROM`]): a read answered by the read
//!   server — the write primary or a secondary under its read lease — shows every record
//!   acknowledged to its client before it was sent.
//!
//! `FTNFS_SIM_SEED=N` replays one seed (with a trace: `FTNFS_SIM_TRACE=1`);
//! `FTNFS_SIM_SEEDS=N` runs N seeds (default 200); `scripts/sim` runs many more.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use ftnfs_core::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use ftnfs_core::lock_manager::{LockManager, LockOutcome};
use ftnfs_core::locks::Owner;
use ftnfs_core::member::exclusion::{self, HearingConfig};
use ftnfs_core::member::follower::{self, Follower};
use ftnfs_core::member::rejoin::{self, Offer};
use ftnfs_core::member::settings::Settings;
use ftnfs_core::member::startup::{secondary_answer, ProbeState};
use ftnfs_core::member::states::{Heard, Leading, Standing, SteppedDown};
use ftnfs_core::member::transitions::{self, Promotion};
use ftnfs_core::member::{fencing, Effect, Facts, Member, Node, RoleView};
use ftnfs_core::mirror::primary::{PrimaryConfig, PrimaryEffect};
use ftnfs_core::mirror::proxy::{Fingerprint, ProxyConfig, ProxyEffect, ProxyHold, RequestKey};
use ftnfs_core::mirror::resync::Candidate;
use ftnfs_core::mirror::secondary::SecondaryEffect;
use ftnfs_core::mirror::{FailReason, Key, MemberSet, Touch, Update};

const E: ExportId = ExportId(1);
const WITNESS: MemberId = MemberId(9);
/// Bound on the time from the last fault's end to a converged group.
const CONVERGE_MS: u64 = 30_000;
/// Members keep their cached replies through a crash of the process (the daemon's reply log,
/// `ftnfsd/src/local.rs`): a restarted member has every reply it had, tagged not released.
const REPLY_LOG: bool = true;

mod common;
use common::Rng;

// ---- the export's data, and what clients do to it ---------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Appends record `rec` to client `file`'s log (like the kernel-client campaign's
    /// acknowledged records).
    Append { file: u32, rec: u64 },
    /// Creates a name (EXIST if it is there: a second execution).
    Create(u64),
    /// Removes a name (NOENT if it is gone: a second execution).
    Remove(u64),
    /// The lock family: client `.0` asks for an exclusive lock of the shared lock file,
    /// without waiting (NLM LOCK with `block` unset): granted (0) or denied (1).
    Lock(u32),
    /// Client `.0` lets its lock go (NLM UNLOCK).
    Unlock(u32),
    /// The split family: a read of client `file`'s log, never mirrored; answered by the
    /// read server (the write primary or a secondary under its read lease), and it must show
    /// every record acknowledged to that client before it was sent.
    Read { file: u32 },
}

/// The file every client of the lock family contends for (no client's append file).
const LOCK_FILE: u64 = 1_000;
/// NLM4_DENIED.
const DENIED: u32 = 1;

fn lock_owner(client: u32) -> Owner {
    Owner {
        host: format!("client{client}"),
        svid: client,
        oh: vec![client as u8],
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Data {
    logs: BTreeMap<u32, Vec<u64>>,
    names: BTreeSet<u64>,
    /// The lock table (the core's lock manager, as in the daemon). Like the data it
    /// survives a crash of the process: the daemon logs every change of it before the
    /// reply (`ftnfsd/src/lock_log.rs`; a host that restarted is resynced whole anyway).
    locks: LockManager<u64, ()>,
}

impl Data {
    fn apply(&mut self, op: &Op) -> u32 {
        match op {
            Op::Append { file, rec } => {
                self.logs.entry(*file).or_default().push(*rec);
                0
            }
            Op::Create(n) => {
                if self.names.insert(*n) {
                    0
                } else {
                    17
                }
            }
            Op::Remove(n) => {
                if self.names.remove(n) {
                    0
                } else {
                    2
                }
            }
            Op::Lock(c) => {
                match self
                    .locks
                    .lock(&LOCK_FILE, &lock_owner(*c), true, 0, u64::MAX, None)
                {
                    LockOutcome::Granted => 0,
                    LockOutcome::Denied(_) => DENIED,
                    _ => 2,
                }
            }
            Op::Unlock(c) => match self.locks.unlock(&LOCK_FILE, &lock_owner(*c), 0, u64::MAX) {
                Ok(_) => 0,
                Err(_) => 2,
            },
            Op::Read { .. } => unreachable!("reads are not mirrored"),
        }
    }

    /// Whether client `c` holds the lock here.
    fn holds(&self, c: u32) -> bool {
        self.locks
            .held(&LOCK_FILE)
            .iter()
            .any(|l| l.owner == lock_owner(c))
    }
}

fn touch(op: &Op) -> Touch {
    match op {
        Op::Append { file, .. } => Touch {
            keys: vec![Key::whole(u64::from(*file))],
            barrier: false,
        },
        // as the daemon's lock calls: a part of the file no data uses
        Op::Lock(_) | Op::Unlock(_) => Touch {
            keys: vec![Key::part(LOCK_FILE, u64::MAX)],
            barrier: false,
        },
        _ => Touch {
            keys: vec![],
            barrier: true,
        },
    }
}

/// An update as it travels: the client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    client: u32,
    xid: u64,
    op: Op,
}

type Drc = BTreeMap<(u32, u64), u32>;

// ---- messages -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Msg {
    Update(Update<Req>),
    /// Proxy mode: update `seq` is the client request with this key and fingerprint, which
    /// the secondary received itself (everything but the request).
    Order {
        epoch: Epoch,
        seq: SeqNo,
        deps: Vec<SeqNo>,
        barrier: bool,
        key: RequestKey,
        print: Fingerprint,
    },
    /// Proxy mode: send update `seq` whole.
    Fetch {
        epoch: Epoch,
        seq: SeqNo,
    },
    /// Proxy mode: `count` held datagrams expired that no order claimed.
    Unknown {
        count: u64,
    },
    Ack {
        epoch: Epoch,
        seq: SeqNo,
        status: u32,
    },
    Refuse {
        epoch: Epoch,
    },
    /// `at`: the primary's clock when sent; the echo carries it back (the lease counts
    /// from there).
    Heartbeat {
        epoch: Epoch,
        at: Millis,
    },
    Echo {
        epoch: Epoch,
        at: Millis,
    },
    Join {
        offer: Offer,
    },
    JoinReply {
        ok: bool,
        copy: bool,
    },
    /// A whole resync in one message (the last pass with writes held): data and replies.
    Copy {
        epoch: Epoch,
        base: SeqNo,
        history: u64,
        data: Box<Data>,
        drc: Drc,
    },
    Probe,
    ProbeReply {
        state: ProbeState,
        claim: Candidate,
    },
    /// A liveness ping to the witness, carrying the sender's time; the answer echoes it.
    Ping {
        at: Millis,
    },
    Pong {
        at: Millis,
    },
    /// The witness to a member it reported lost: stop serving as primary.
    WitnessLost,
    WitnessQuery {
        about: MemberId,
    },
    WitnessSeen {
        about: MemberId,
        ago: u64,
        /// The answering member's highest epoch of the export (the witness: 0).
        epoch: Epoch,
    },
    TakeOver,
    Handoff,
    FailedOut {
        epoch: Epoch,
    },
    /// A member that joined hands the primary its cached replies.
    Replies {
        drc: Drc,
    },
    /// The split family: the primary grants its read server a lease on its echo of the
    /// heartbeat sent `at` (`member::read_lease`).
    ReadLease {
        epoch: Epoch,
        at: u64,
    },
}

#[derive(Debug)]
enum Ev {
    Peer {
        from: MemberId,
        to: MemberId,
        gen: u64,
        msg: Msg,
    },
    Request {
        to: MemberId,
        req: Req,
    },
    /// Multicast delivery: the client's datagram as another member receives it.
    Datagram {
        to: MemberId,
        req: Req,
    },
    Reply {
        from: MemberId,
        client: u32,
        xid: u64,
        status: u32,
        epoch: Epoch,
    },
    Tick {
        m: MemberId,
        at: u64,
    },
    ClientTimer {
        client: u32,
        xid: u64,
    },
    Fault(Fault),
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash(MemberId),
    /// A clean stop: sealed where it stands, if it is in step.
    Stop(MemberId),
    Restart(MemberId),
    Pause(MemberId),
    Resume(MemberId),
    Cut(MemberId, MemberId),
    Heal(MemberId, MemberId),
    Isolate(MemberId),
    Rejoin(MemberId),
    Demote,
}

// ---- members ------------------------------------------------------------------------------

/// A client's update waiting at the primary: the request and, once executed here, its
/// local result.
#[derive(Debug)]
struct Waiting {
    req: Req,
    status: Option<u32>,
}

/// The primary role: the core's state, as in the daemon (`member::states`).
type Prim = Leading<Req, Waiting>;

/// `read_lease_ms`: the split family's read leases (0: none).
fn prim_cfg(read_lease_ms: u64) -> PrimaryConfig {
    PrimaryConfig {
        retry_ms: 200,
        max_sends: 5,
        max_pending: WINDOW as usize,
        read_lease_ms,
    }
}

/// A secondary's place in the stream: the core's, as in the daemon.
type SecCore = Follower<Req>;

/// The reorder window of a secondary's stream.
const WINDOW: u64 = 1024;

/// Following `leader`'s stream of `offer` from its base, its Join accepted at `at`.
fn follow_offer(offer: &Offer, leader: MemberId, at: Millis) -> SecCore {
    SecCore::following(
        E,
        offer.epoch,
        offer.base,
        offer.history,
        leader,
        false,
        at,
        WINDOW,
    )
}

// a few members per run: the secondary's state inline is simpler than another box
#[allow(clippy::large_enum_variant)]
enum Role {
    Primary(Box<Prim>),
    /// `primary`: the listed primary, or the member it last followed (the daemon's
    /// `follow`).
    Secondary {
        primary: MemberId,
        core: Option<SecCore>,
    },
    Standby(Standing),
}

struct Mem {
    id: MemberId,
    pos: usize,
    others: Vec<MemberId>,
    up: bool,
    paused: bool,
    deferred: Vec<Ev>,
    node: Node,
    role: Role,
    // durable
    data: Data,
    epoch_disk: Epoch,
    log: (u64, u64),
    /// The cached replies: in memory, and in the reply log (`REPLY_LOG`) but for
    /// `unlogged`.
    drc: Drc,
    /// Replies in `drc` that a restart loses even with the reply log: the released ones a
    /// resync kept in memory after the log's clear record voided them.
    unlogged: BTreeSet<(u32, u64)>,
    // memory only
    /// Requests whose reply this member released to the client as primary.
    released: BTreeSet<(u32, u64)>,
    next_tick: u64,
    /// The stream this member applied before it became primary (its `Join`s name it).
    prev_history: u64,
    /// Written at a clean stop, taken at the next start: (epoch, stream, last update).
    seal: Option<(Epoch, u64, u64)>,
    /// Proxy mode: the datagrams held for the leader's orders, and the epoch they are for
    /// (memory only; a new epoch or stream starts empty, as the daemon's `SecondaryCore`).
    proxy: (Epoch, u64, Proxy),
    /// Unknown requests of `proxy`'s table already reported to the leader.
    unknown_sent: u64,
    /// Client update datagrams received as primary in this term (`member::exclusion`).
    received: u64,
}

/// A secondary's held datagrams: an order is (epoch, dependencies, barrier).
type Proxy = ProxyHold<(Epoch, Vec<SeqNo>, bool), Req>;

fn proxy_table() -> Proxy {
    ProxyHold::new(ProxyConfig::default())
}

/// A new stream (epoch or history) starts with an empty table, as the daemon's
/// `SecondaryCore`; a member that follows nothing holds nothing.
fn sync_proxy(m: &mut Mem) {
    let at = match &m.role {
        Role::Secondary { core: Some(c), .. } => (c.s.epoch(), c.history),
        _ => (Epoch(0), 0),
    };
    if (m.proxy.0, m.proxy.1) != at {
        m.proxy = (at.0, at.1, proxy_table());
        m.unknown_sent = 0;
    }
}

/// A member that follows a stream anew (joined, copied, restarted) holds nothing from before,
/// as the daemon's new `SecondaryCore` (what it held is dropped, not reported).
fn fresh_proxy(m: &mut Mem) {
    m.proxy = (Epoch(0), 0, proxy_table());
    m.unknown_sent = 0;
}

/// Which client request: the client as the address, the xid.
fn key_of(req: &Req) -> RequestKey {
    let mut ip = [0u8; 16];
    ip[12..].copy_from_slice(&req.client.to_be_bytes());
    RequestKey {
        ip,
        port: 0,
        xid: req.xid as u32,
    }
}

/// The request's fingerprint (its operation, hashed).
fn print_of(req: &Req) -> Fingerprint {
    let s = format!("{:?}", req.op);
    let sum = s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    Fingerprint {
        len: s.len() as u32,
        sum,
    }
}

struct Witness {
    heard: BTreeMap<MemberId, u64>,
    /// Members it reported lost (an answer that lets the asker take over), not yet told.
    reported: BTreeSet<MemberId>,
}

struct Client {
    next_rec: u64,
    next_name: u64,
    /// The update in flight: (xid, op, first sent).
    current: Option<(u64, Op, u64)>,
    next_xid: u64,
    /// The first reply to every xid.
    replies: BTreeMap<u64, u32>,
    /// Acknowledged appends, in order.
    acked: Vec<u64>,
    /// The request that carried each record.
    xid_of_rec: BTreeMap<u64, u64>,
    /// Names whose create was acknowledged and whose remove was not.
    live_names: BTreeSet<u64>,
    /// Names created and removed, both acknowledged.
    gone_names: BTreeSet<u64>,
    longest_wait: u64,
    /// It holds the lock: its LOCK was granted, and it has not sent its UNLOCK yet.
    holds: bool,
}

struct World {
    rng: Rng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    settings: Settings,
    has_witness: bool,
    members: Vec<Mem>,
    witness: Witness,
    clients: Vec<Client>,
    /// Link generations (a cut or a crash ends a link: what is in flight is lost).
    gen: BTreeMap<(MemberId, MemberId), u64>,
    link_free: BTreeMap<(MemberId, MemberId), u64>,
    cuts: BTreeSet<(MemberId, MemberId)>,
    isolated: BTreeSet<MemberId>,
    /// Links a cut broke (what was in flight is lost): when the cut heals, both ends see a
    /// new connection — as the daemon's `link_down`/`link_up`, a primary sends its Join
    /// again first on the new link, then what still awaits the member; a lost link alone
    /// does not put a member out (seed 175651). A link that lost messages and then carried
    /// later ones would be no TCP connection (seed 55907: a lost Join, then an update applied
    /// over a gap).
    broken: BTreeSet<(MemberId, MemberId)>,
    vip: Option<MemberId>,
    max_reply_epoch: Epoch,
    histories: u64,
    trace: bool,
    faults_until: u64,
    /// Acknowledged appends so far (client, rec), for the takeover check.
    acked_appends: Vec<(u32, u64)>,
    /// The lock family (seeds from [`LOCKS_FROM`]): clients contend for one lock.
    with_locks: bool,
    /// The multicast family (seeds from [`MULTICAST_FROM`]): proxy-mode secondaries.
    multicast: bool,
    /// Orders that claimed a held datagram.
    claimed: u64,
    /// The deaf family (seeds from [`DEAF_FROM`]): this member hears no client datagram
    /// from this time on, to the end of the run.
    deaf: Option<(MemberId, u64)>,
    /// Primaries that handed their role over because they did not hear their clients.
    handed_over: u64,
    /// The split family (seeds from [`SPLIT_FROM`]): the read list (`-ftnfsr=`); the member
    /// order is the write list.
    split: Option<Vec<MemberId>>,
    /// Reads answered by a secondary, and by a primary.
    reads: (u64, u64),
    /// Read servers passed over for not answering (`Leading::read_unanswered`).
    passed_over: u64,

    /// Requests whose cached reply died with every member that had it — possible only
    /// without the reply log (`REPLY_LOG` false: a memory-only DRC, as a cold restart of
    /// knfsd or Ganesha forgets it); then a second execution of one of these is counted, not
    /// failed. With the reply log every second run with another result fails the run.
    drc_lost: BTreeSet<(u32, u64)>,
    /// Every local execution of a request by a primary: (member, when).
    runs: BTreeMap<(u32, u64), Vec<(MemberId, u64)>>,
    /// When each member crashed (lost its memory).
    crashed_at: BTreeMap<MemberId, Vec<u64>>,
    second_runs_after_drc_loss: usize,
}

fn pair(a: MemberId, b: MemberId) -> (MemberId, MemberId) {
    (a.min(b), a.max(b))
}

fn name(m: MemberId) -> String {
    if m == WITNESS {
        "w".into()
    } else {
        format!("m{}", m.0)
    }
}

/// What the member machine may ask of a member.
struct View<'a> {
    w: &'a World,
    me: MemberId,
}

impl Facts for View<'_> {
    fn linked(&self, m: MemberId) -> bool {
        self.w.reachable(self.me, m)
    }
    fn candidate(&self, _: ExportId, seen: Epoch) -> Candidate {
        let m = self.w.mem(self.me);
        Candidate {
            complete: true,
            epoch: seen.0.max(m.epoch_disk.0),
            history: m.log.0,
            seq: m.log.1,
            position: m.pos,
        }
    }
    fn name(&self, m: MemberId) -> String {
        name(m)
    }
}

impl World {
    /// The primary's tuning: read leases in the split family.
    fn prim_cfg(&self) -> PrimaryConfig {
        prim_cfg(if self.split.is_some() {
            self.settings.lease_ms()
        } else {
            0
        })
    }

    fn mem(&self, id: MemberId) -> &Mem {
        &self.members[usize::from(id.0) - 1]
    }
    fn mem_mut(&mut self, id: MemberId) -> &mut Mem {
        &mut self.members[usize::from(id.0) - 1]
    }
    fn ids(&self) -> Vec<MemberId> {
        self.members.iter().map(|m| m.id).collect()
    }
    fn up(&self, id: MemberId) -> bool {
        id == WITNESS || self.mem(id).up
    }

    /// Whether a link between `a` and `b` can carry messages now (TCP connects even to a
    /// paused process: its kernel answers).
    fn reachable(&self, a: MemberId, b: MemberId) -> bool {
        self.up(a)
            && self.up(b)
            && !self.cuts.contains(&pair(a, b))
            && !self.isolated.contains(&a)
            && !self.isolated.contains(&b)
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.order += 1;
        self.queue.push(Reverse((self.now + delay, self.order)));
        self.events.insert(self.order, ev);
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>7} {}", self.now, what());
        }
    }

    /// Sends on the link `from → to`: in order, 1–15 ms, lost if the link ends first.
    fn send(&mut self, from: MemberId, to: MemberId, msg: Msg) {
        if !self.reachable(from, to) {
            return;
        }
        let gen = *self.gen.get(&pair(from, to)).unwrap_or(&0);
        let d = self.rng.range(1, 15);
        let free = self.link_free.entry((from, to)).or_insert(0);
        let t = (self.now + d).max(*free);
        *free = t;
        let delay = t - self.now;
        self.at(delay, Ev::Peer { from, to, gen, msg });
    }

    /// Ends links of `m`: what is in flight is lost. A crash also resets them (the host
    /// answers for the dead process, and refuses the redial), so primaries fail it out at
    /// once; a cut does not (TCP notices nothing; silence decides).
    fn end_links(&mut self, m: MemberId, other: Option<MemberId>, reset: bool) {
        let all: Vec<MemberId> = self.ids().into_iter().chain([WITNESS]).collect();
        for o in all {
            if o == m || other.is_some_and(|x| x != o) {
                continue;
            }
            *self.gen.entry(pair(m, o)).or_insert(0) += 1;
            if !reset {
                self.broken.insert(pair(m, o));
                continue;
            }
            // the live end redials at once and its host refuses: the process is gone (the
            // daemon's dialer after a link ends) — the member machine fails it out
            for (a, b) in [(m, o), (o, m)] {
                if a == WITNESS
                    || b == WITNESS
                    || !self.up(a)
                    || self.mem(a).paused
                    || self.up(b)
                    || self.cuts.contains(&pair(a, b))
                    || self.isolated.contains(&a)
                    || self.isolated.contains(&b)
                {
                    // a cut link carries no reset, and no redial gets through; a paused
                    // process redials only when it resumes (its tick's dialer)
                    continue;
                }
                let now = Millis(self.now);
                self.mem_mut(a).node.refused(b, now);
                self.tick(a);
            }
        }
    }

    /// Broken links whose cut healed connect again: each primary end asks the other to join
    /// on the new link, live or not (the daemon's `link_down` + `link_up`).
    fn reconnect(&mut self) {
        let now = Millis(self.now);
        let healed: Vec<(MemberId, MemberId)> = self
            .broken
            .iter()
            .copied()
            .filter(|(a, b)| {
                !self.cuts.contains(&pair(*a, *b))
                    && !self.isolated.contains(a)
                    && !self.isolated.contains(b)
            })
            .collect();
        for (a, b) in healed {
            self.broken.remove(&(a, b));
            for (x, y) in [(a, b), (b, a)] {
                if x == WITNESS || y == WITNESS || !self.up(x) {
                    continue;
                }
                let listed = self.mem(x).others.contains(&y);
                if !matches!(self.mem(x).role, Role::Primary(_)) {
                    continue;
                }
                self.pump(x, now);
                if listed && self.up(y) {
                    self.ask_to_join(x, y);
                }
            }
        }
    }

    fn schedule_tick(&mut self, id: MemberId) {
        let m = self.mem(id);
        if !m.up {
            return;
        }
        let views = role_view(m);
        let mut t = m.node.poll_timeout(&|_| Some(views.clone())).0;
        if let Role::Primary(p) = &m.role {
            if let Some(d) = p.p.next_deadline() {
                t = t.min(d.0);
            }
        }
        if let Some(d) = m.proxy.2.poll_timeout() {
            t = t.min(d.0);
        }
        let t = t.max(self.now + 1);
        if m.next_tick == 0 || t < m.next_tick || m.next_tick <= self.now {
            self.mem_mut(id).next_tick = t;
            let delay = t - self.now;
            self.at(delay, Ev::Tick { m: id, at: t });
        }
    }

    // ---- the member's shell: carries out the core's effects -----------------------------

    fn tick(&mut self, id: MemberId) {
        let now = Millis(self.now);
        // the dialer: a crashed member's host refuses connections
        for o in self.ids() {
            if o != id
                && !self.mem(o).up
                && !self.cuts.contains(&pair(id, o))
                && !self.isolated.contains(&id)
            {
                self.mem_mut(id).node.refused(o, now);
            }
        }
        sync_proxy(self.mem_mut(id));
        self.mem_mut(id).proxy.2.tick(now);
        self.drain_proxy(id, now);
        self.report_unknown(id);
        let view = role_view(self.mem(id));
        let blank = Node::new(self.settings, None, vec![]);
        let mut node = std::mem::replace(&mut self.mem_mut(id).node, blank);
        let effects = node.handle_timeout(now, &|_| Some(view.clone()), &View { w: self, me: id });
        self.mem_mut(id).node = node;
        for e in effects {
            self.carry_out(id, e);
        }
        let m = self.mem_mut(id);
        let received = m.received;
        if let Role::Primary(p) = &mut m.role {
            p.p.tick(now);
            p.heard_datagrams(received, now, HearingConfig::default());
        }
        self.pump(id, now);
    }

    fn carry_out(&mut self, id: MemberId, e: Effect) {
        let now = Millis(self.now);
        self.log(|| format!("{} effect {e:?}", name(id)));
        match e {
            Effect::WitnessPing => {
                let at = Millis(self.now);
                self.send(id, WITNESS, Msg::Ping { at });
            }
            Effect::WitnessQuery { about, to, .. } => {
                self.send(id, to, Msg::WitnessQuery { about })
            }
            Effect::Probe { to, .. } => self.send(id, to, Msg::Probe),
            Effect::Event { .. } => {}
            Effect::LeaveStream { why, .. } => {
                if let Role::Secondary { core: Some(c), .. } = &mut self.mem_mut(id).role {
                    c.leave_any();
                }
                self.log(|| format!("{} leaves its stream: {why}", name(id)));
            }
            Effect::Heartbeat { to, .. } => {
                if let Role::Primary(p) = &self.mem(id).role {
                    let epoch = p.p.epoch();
                    let at = Millis(self.now);
                    self.send(id, to, Msg::Heartbeat { epoch, at });
                }
            }
            Effect::FailOut { member, .. } => {
                if let Role::Primary(p) = &mut self.mem_mut(id).role {
                    p.p.member_lost(member);
                }
                self.pump(id, now);
            }
            Effect::AskToRejoin { member, .. } => self.ask_to_join(id, member),
            Effect::FinishStepDown { .. } => self.finish_step_down(id),
            Effect::Fence { why, .. } => self.depose(id, &why),
            Effect::Promote { why, .. } => self.promote(id, &why),
            Effect::StartPrimary { why, .. } => {
                let m = self.mem(id);
                let seen = match &m.role {
                    Role::Standby(st) => st.epoch,
                    Role::Secondary { .. } => Epoch(0),
                    Role::Primary(_) => return,
                };
                let (prev, base) = m.log;
                let epoch = transitions::next_epoch(seen, m.epoch_disk);
                let cfg = self.prim_cfg();
                self.become_primary(id, epoch, &why, |history| {
                    Leading::start(E, epoch, SeqNo(base), history, prev, cfg)
                });
            }
            Effect::AskRoleBack { .. } => {
                if let Role::Secondary { core: Some(c), .. } = &self.mem(id).role {
                    if let Some(l) = c.leader() {
                        self.send(id, l, Msg::Handoff);
                    }
                }
            }
        }
    }

    fn ask_to_join(&mut self, id: MemberId, m: MemberId) {
        let now = Millis(self.now);
        let me = self.mem(id);
        let pos0 = me.pos == 0;
        let Role::Primary(p) = &me.role else { return };
        if p.closed() {
            return;
        }
        let offer = Offer {
            from_listed_primary: pos0,
            epoch: p.p.epoch(),
            base: p.p.released_watermark(),
            history: p.history,
            prev: self.mem(id).log_prev(),
            pristine: false,
        };
        if !self.admit(id, m, now) {
            return;
        }
        // the Join goes on the link before any update add_member queued
        self.send(id, m, Msg::Join { offer });
        self.pump(id, now);
    }

    /// Primary `id` adds `m` to its stream (the data path must be quiet enough) and notes
    /// that it asked `m` to join. `false`: not primary, or not now.
    fn admit(&mut self, id: MemberId, m: MemberId, now: Millis) -> bool {
        let Role::Primary(p) = &mut self.mem_mut(id).role else {
            return false;
        };
        if p.p.add_member(m, now).is_err() {
            return false;
        }
        if let Some(mm) = self.mem_mut(id).node.member(E) {
            mm.asked(m, now);
        }
        true
    }

    fn finish_step_down(&mut self, id: MemberId) {
        let now = Millis(self.now);
        let Some(p) = self.take_primary(id) else {
            return;
        };
        let (standing, to) = match p.step_down(now) {
            SteppedDown::Leading(p) | SteppedDown::Cancelled(p) => {
                // draining, or the member it was for fell out: serve on
                self.mem_mut(id).role = Role::Primary(Box::new(p));
                return;
            }
            SteppedDown::StoodBy { standing, to } => (standing, to),
        };
        self.give_up_vip(id);
        let at = standing
            .clean_at
            .expect("a member that stood down for a successor is clean");
        self.mem_mut(id).role = Role::Standby(standing);
        self.log(|| format!("{} stood down at {at:?}", name(id)));
        self.send(id, to, Msg::TakeOver);
    }

    /// The primary state of `id`, taken out for a transition that consumes it (its role is
    /// a placeholder standby until the caller puts the next one).
    fn take_primary(&mut self, id: MemberId) -> Option<Prim> {
        let m = self.mem_mut(id);
        if !matches!(m.role, Role::Primary(_)) {
            return None;
        }
        let placeholder = Role::Standby(Standing {
            epoch: Epoch(0),
            clean_at: None,
            since: Millis(0),
            waits: false,
            why: String::new(),
        });
        match std::mem::replace(&mut m.role, placeholder) {
            Role::Primary(p) => Some(*p),
            _ => unreachable!("matched above"),
        }
    }

    /// The daemon's `Mirror::yields`: `id`, leading in `ours`, yields to `from` of `theirs`.
    fn yields(&self, id: MemberId, ours: Epoch, from: MemberId, theirs: Epoch) -> bool {
        let m = self.mem(id);
        let them = ftnfs_core::member::startup::position_of(&m.others, m.pos, from);
        fencing::yields_to(ours, m.pos, theirs, them)
    }

    /// A second execution of `key` is the known gap of the memory-only DRC when every cached
    /// copy of its reply died with a crash, or when the member that ran it again had lost its
    /// own with a crash since the first run (the copy another member held did not reach it
    /// in time: that member was frozen).
    fn drc_gap(&self, key: (u32, u64)) -> bool {
        if REPLY_LOG {
            // replies outlive a crash: a second run with another result is never excused
            return false;
        }
        if self.drc_lost.contains(&key) {
            return true;
        }
        let Some(runs) = self.runs.get(&key) else {
            return false;
        };
        let Some(&(_, first)) = runs.first() else {
            return false;
        };
        !REPLY_LOG
            && runs.iter().skip(1).any(|(m, t)| {
                self.crashed_at
                    .get(m)
                    .is_some_and(|cs| cs.iter().any(|c| *c >= first && *c <= *t))
            })
    }

    fn give_up_vip(&mut self, id: MemberId) {
        if self.vip == Some(id) {
            self.vip = None;
        }
    }

    fn depose(&mut self, id: MemberId, why: &str) {
        let Some(p) = self.take_primary(id) else {
            return;
        };
        self.log(|| format!("{} deposed: {why}", name(id)));
        // unreleased replies are dropped (the waiters come back); the virtual IP goes first
        let (standing, _dropped) = p.depose(why.to_string(), Millis(self.now));
        self.give_up_vip(id);
        self.mem_mut(id).role = Role::Standby(standing);
    }

    fn promote(&mut self, id: MemberId, why: &str) {
        let m = self.mem(id);
        let Role::Secondary { core: Some(c), .. } = &m.role else {
            return;
        };
        let Promotion::Go { epoch } = c.promotion(m.epoch_disk) else {
            return;
        };
        // the follower is consumed by the takeover
        let Role::Secondary { core, .. } = &mut self.mem_mut(id).role else {
            unreachable!("matched above")
        };
        let f = core.take().expect("matched above");
        let cfg = self.prim_cfg();
        self.become_primary(id, epoch, why, |history| {
            Leading::take_over(f, E, epoch, history, cfg)
        });
        if let Some(mm) = self.mem_mut(id).node.member(E) {
            mm.took_over();
        }
    }

    /// `id` leads `epoch` (persisted first) with the state `lead` makes for a new stream id.
    fn become_primary(
        &mut self,
        id: MemberId,
        epoch: Epoch,
        why: &str,
        lead: impl FnOnce(u64) -> Prim,
    ) {
        self.histories += 1;
        let history = self.histories;
        // every acknowledged update must be here before this member serves
        let missing: Vec<(u32, u64)> = {
            let d = &self.mem(id).data;
            self.acked_appends
                .iter()
                .filter(|(c, r)| !d.logs.get(c).is_some_and(|l| l.contains(r)))
                .copied()
                .collect()
        };
        assert!(
            missing.is_empty(),
            "{} became primary ({why}) without acknowledged updates {missing:?}",
            name(id)
        );
        let p = lead(history);
        let (prev, base) = (p.prev_history, p.chain_base);
        let m = self.mem_mut(id);
        m.epoch_disk = epoch; // persisted before anything of the epoch is sent
        m.log = (history, base.0);
        m.role = Role::Primary(Box::new(p));
        m.received = 0;
        m.prev_history_set(prev);
        self.vip = Some(id);
        self.log(|| format!("{} primary in {epoch:?} from {base:?} ({why})", name(id)));
        for o in self.mem(id).others.clone() {
            if self.reachable(id, o) {
                let t = Millis(self.now);
                if let Role::Primary(p) = &mut self.mem_mut(id).role {
                    p.join_asked(o, t);
                }
                self.ask_to_join(id, o);
            }
        }
    }

    /// Carries out the data path's effects of member `id`.
    fn pump(&mut self, id: MemberId, now: Millis) {
        loop {
            enum Next {
                P(PrimaryEffect<Req>),
                S(SecondaryEffect<Req>),
            }
            let next = match &mut self.mem_mut(id).role {
                Role::Primary(p) => p.p.poll_effect().map(Next::P),
                Role::Secondary { core: Some(c), .. } => c.s.poll_effect().map(Next::S),
                _ => None,
            };
            let Some(next) = next else { break };
            match next {
                Next::P(PrimaryEffect::Send { to, update, again }) => {
                    // proxy mode: a first send is the order only (the secondary received
                    // the datagram itself, or fetches it)
                    let msg = if self.multicast && !again {
                        Msg::Order {
                            epoch: update.epoch,
                            seq: update.seq,
                            key: key_of(&update.payload),
                            print: print_of(&update.payload),
                            deps: update.deps,
                            barrier: update.barrier,
                        }
                    } else {
                        Msg::Update(update)
                    };
                    self.send(id, to, msg)
                }
                Next::P(PrimaryEffect::Run { seq, token }) => {
                    let m = self.mem_mut(id);
                    let Role::Primary(p) = &mut m.role else {
                        unreachable!()
                    };
                    let req = p
                        .waiter(token)
                        .map(|w| w.req.clone())
                        .expect("a running update was submitted");
                    let status = m.data.apply(&req.op);
                    m.log.1 = m.log.1.max(seq.0);
                    if self.trace {
                        eprintln!(
                            "{:>7} {} runs {seq:?} {req:?} -> {status}",
                            self.now,
                            name(id)
                        );
                    }
                    let t = self.now;
                    let key = (req.client, req.xid);
                    if self.runs.contains_key(&key) {
                        // a second run: the known gap of the memory-only DRC if no running
                        // member could have handed its reply here (every copy died with a
                        // crash, or the only ones left are on a frozen or cut-off member)
                        let held = self.members.iter().any(|o| {
                            o.id != id
                                && o.up
                                && !o.paused
                                && self.reachable(id, o.id)
                                && o.drc.contains_key(&key)
                        });
                        if !held {
                            self.drc_lost.insert(key);
                        }
                    }
                    self.runs.entry(key).or_default().push((id, t));
                    let m = self.mem_mut(id);
                    let Role::Primary(p) = &mut m.role else {
                        unreachable!()
                    };
                    // executed here: its reply is cached even if this member is deposed
                    // before releasing it (the daemon's drc.finish on Drop)
                    m.drc.insert((req.client, req.xid), status);
                    m.unlogged.remove(&(req.client, req.xid));
                    if let Some(w) = p.waiter(token) {
                        w.status = Some(status);
                    }
                    p.p.local_done(seq, status);
                }
                Next::P(PrimaryEffect::Release { token, seq, acked }) => {
                    if self.trace {
                        eprintln!(
                            "{:>7} {} releases {seq:?} acked by {acked:?}",
                            self.now,
                            name(id)
                        );
                    }
                    let (has_witness, settings) = (self.has_witness, self.settings);
                    let m = self.mem_mut(id);
                    let Role::Primary(p) = &mut m.role else {
                        unreachable!()
                    };
                    let Some(Waiting { req, status }) = p.take_waiter(token) else {
                        continue;
                    };
                    let status = status.unwrap_or(0);
                    let epoch = p.p.epoch();
                    m.drc.insert((req.client, req.xid), status);
                    m.unlogged.remove(&(req.client, req.xid));
                    // released, but a primary whose lease ran out answers nobody (the
                    // daemon's `leased` before the reply)
                    let leased = fencing::lease_ok(
                        has_witness,
                        p.p.live(),
                        p.confirmed(),
                        m.node.witness_backed,
                        &settings,
                        now,
                    );
                    if leased {
                        m.released.insert((req.client, req.xid));
                        self.reply(id, req.client, req.xid, status, epoch);
                    }
                }
                Next::P(PrimaryEffect::Failed { member, reason }) => {
                    if let FailReason::Diverged { .. } = reason {
                        panic!("{} diverged from {}: {reason}", name(member), name(id));
                    }
                    if let Role::Primary(p) = &self.mem(id).role {
                        let epoch = p.p.epoch();
                        self.send(id, member, Msg::FailedOut { epoch });
                    }
                }
                Next::S(SecondaryEffect::Apply(u)) => {
                    let m = self.mem_mut(id);
                    let status = m.data.apply(&u.payload.op);
                    if self.trace {
                        eprintln!(
                            "{:>7} {} applies {:?} {:?} -> {status}",
                            self.now,
                            name(id),
                            u.seq,
                            u.payload
                        );
                    }
                    let m = self.mem_mut(id);
                    m.drc.insert((u.payload.client, u.payload.xid), status);
                    m.unlogged.remove(&(u.payload.client, u.payload.xid));
                    let Role::Secondary { core: Some(c), .. } = &mut m.role else {
                        unreachable!()
                    };
                    m.log = (c.history, m.log.1.max(u.seq.0));
                    c.s.applied(u.seq, status);
                }
                Next::S(SecondaryEffect::Ack { epoch, seq, status }) => {
                    if let Some(l) = self.leader(id) {
                        self.send(id, l, Msg::Ack { epoch, seq, status });
                    }
                }
                Next::S(SecondaryEffect::Refuse { ours, .. }) => {
                    if let Some(l) = self.leader(id) {
                        self.send(id, l, Msg::Refuse { epoch: ours });
                    }
                }
            }
        }
        self.try_copies(id);
    }

    fn leader(&self, id: MemberId) -> Option<MemberId> {
        match &self.mem(id).role {
            Role::Secondary { core: Some(c), .. } => c.acks_to(),
            _ => None,
        }
    }

    /// A primary with members waiting for a copy sends it once nothing is in flight (the
    /// last pass of a resync holds writes), and adds them at that point.
    fn try_copies(&mut self, id: MemberId) {
        let now = Millis(self.now);
        let m = self.mem(id);
        let Role::Primary(p) = &m.role else { return };
        if p.held().next().is_none() || p.p.pending() > 0 || p.closed() {
            return;
        }
        let (data, drc, epoch, history) = (m.data.clone(), m.drc.clone(), p.p.epoch(), p.history);
        let base = p.p.released_watermark();
        let targets: Vec<MemberId> = p.held().collect();
        for t in targets {
            let Role::Primary(p) = &mut self.mem_mut(id).role else {
                return;
            };
            p.hold(t, false);
            if !self.reachable(id, t) {
                continue;
            }
            if !self.admit(id, t, now) {
                continue;
            }
            self.send(
                id,
                t,
                Msg::Copy {
                    epoch,
                    base,
                    history,
                    data: Box::new(data.clone()),
                    drc: drc.clone(),
                },
            );
        }
    }

    fn reply(&mut self, from: MemberId, client: u32, xid: u64, status: u32, epoch: Epoch) {
        if self.isolated.contains(&from) {
            return;
        }
        let d = self.rng.range(1, 5);
        self.at(
            d,
            Ev::Reply {
                from,
                client,
                xid,
                status,
                epoch,
            },
        );
    }

    // ---- inputs ----------------------------------------------------------------------------

    fn on_peer(&mut self, from: MemberId, to: MemberId, msg: Msg) {
        let now = Millis(self.now);
        if to == WITNESS {
            self.witness.heard.insert(from, self.now);
            match msg {
                Msg::Ping { at } => {
                    let answer = if self.witness.reported.remove(&from) {
                        Msg::WitnessLost
                    } else {
                        Msg::Pong { at }
                    };
                    self.send(WITNESS, from, answer);
                }
                Msg::WitnessQuery { about } => {
                    let ago = self
                        .witness
                        .heard
                        .get(&about)
                        .map(|h| self.now - h)
                        .unwrap_or(u64::MAX);
                    if ago >= 2 * self.settings.silence_ms() {
                        self.witness.reported.insert(about);
                    }
                    let epoch = Epoch(0);
                    self.send(WITNESS, from, Msg::WitnessSeen { about, ago, epoch });
                }
                _ => {}
            }
            return;
        }
        self.log(|| format!("{} <- {} {}", name(to), name(from), short(&msg)));
        self.mem_mut(to).node.heard(from, now);
        match msg {
            Msg::Pong { at } => self.mem_mut(to).node.witness_backs(at),
            Msg::WitnessLost => {
                let view = role_view(self.mem(to));
                let effects = self
                    .mem_mut(to)
                    .node
                    .witness_lost_us(&|_| Some(view.clone()));
                for e in effects {
                    self.carry_out(to, e);
                }
            }
            Msg::WitnessSeen { about, ago, epoch } => {
                self.mem_mut(to).node.says(from, about, E, ago, epoch, now)
            }
            Msg::Probe => {
                // a probe from the primary followed: it is not primary any more
                if let Role::Secondary { core: Some(c), .. } = &mut self.mem_mut(to).role {
                    if c.leave(from) {
                        self.log(|| {
                            format!("{} leaves {}'s stream (it probes)", name(to), name(from))
                        });
                    }
                }
                let m = self.mem(to);
                let state = match &m.role {
                    Role::Primary(_) => ProbeState::Primary,
                    Role::Secondary { core, .. } => {
                        secondary_answer(core.as_ref().and_then(|c| c.leader()), from)
                    }
                    Role::Standby(_) => ProbeState::Standby,
                };
                let claim = Candidate {
                    complete: true,
                    epoch: m.epoch_disk.0,
                    history: m.log.0,
                    seq: m.log.1,
                    position: 0,
                };
                self.send(to, from, Msg::ProbeReply { state, claim });
            }
            Msg::ProbeReply { state, claim } => {
                if let Some(mm) = self.mem_mut(to).node.member(E) {
                    mm.probe_answered(from, state, claim, now);
                }
            }
            Msg::Heartbeat { epoch, at } => {
                let answer = match &mut self.mem_mut(to).role {
                    Role::Secondary { core: Some(c), .. } => c
                        .heartbeat(from, epoch, at.0, now)
                        .then_some(Msg::Echo { epoch, at }),
                    Role::Primary(p) if fencing::deposed_by(epoch, p.p.epoch()) => {
                        Some(Msg::Refuse { epoch: p.p.epoch() })
                    }
                    _ => None,
                };
                if let Some(a) = answer {
                    self.send(to, from, a);
                }
            }
            Msg::Echo { epoch, at } => {
                let (has_witness, settings) = (self.has_witness, self.settings);
                let read = self.split.clone();
                let m = self.mem_mut(to);
                let backed = m.node.witness_backed;
                let mut grant = None;
                if let Role::Primary(p) = &mut m.role {
                    if p.p.epoch() == epoch {
                        p.confirm(from, at);
                        if let Some(read) = read {
                            let lease_ok = fencing::lease_ok(
                                has_witness,
                                p.p.live(),
                                p.confirmed(),
                                backed,
                                &settings,
                                now,
                            );
                            grant = p.read_echo(&read, to, from, at.0, lease_ok, now);
                        }
                    }
                }
                if let Some(at) = grant {
                    self.send(to, from, Msg::ReadLease { epoch, at });
                }
            }
            Msg::ReadLease { epoch, at } => {
                let ms = self.settings.lease_ms();
                if let Role::Secondary { core: Some(c), .. } = &mut self.mem_mut(to).role {
                    c.read_granted(from, epoch, at, ms);
                }
            }
            Msg::Update(u) => {
                sync_proxy(self.mem_mut(to));
                let Mem { role, proxy, .. } = self.mem_mut(to);
                match role {
                    Role::Secondary { core: Some(c), .. } if c.accepts_from(from) => {
                        proxy.2.delivered(u.seq, Some(key_of(&u.payload)));
                        c.s.on_update(u);
                    }
                    Role::Primary(p) => {
                        let ours = p.p.epoch();
                        if !self.yields(to, ours, from, u.epoch) {
                            self.send(to, from, Msg::Refuse { epoch: ours });
                        }
                    }
                    _ => {}
                }
                self.pump(to, now);
            }
            Msg::Order {
                epoch,
                seq,
                deps,
                barrier,
                key,
                print,
            } => {
                sync_proxy(self.mem_mut(to));
                let Mem { role, proxy, .. } = self.mem_mut(to);
                match role {
                    Role::Secondary { core: Some(c), .. } if c.accepts_from(from) => {
                        // refused, or a second copy, answered as an update would be; else
                        // it waits for its datagram, counted in the backlog
                        let hold = c.s.on_order(epoch, seq);
                        if hold {
                            proxy
                                .2
                                .on_order(seq, key, print, (epoch, deps, barrier), now);
                        }
                    }
                    Role::Primary(p) => {
                        let ours = p.p.epoch();
                        if !self.yields(to, ours, from, epoch) {
                            self.send(to, from, Msg::Refuse { epoch: ours });
                        }
                    }
                    _ => {}
                }
                self.drain_proxy(to, now);
                self.pump(to, now);
            }
            Msg::Unknown { count } => {
                let m = self.mem_mut(to);
                let received = m.received;
                let others = m.others.clone();
                let Role::Primary(p) = &mut m.role else {
                    return;
                };
                let heard = p.unknown_reported(
                    from,
                    count,
                    received,
                    &others,
                    now,
                    HearingConfig::default(),
                );
                if let Heard::HandingOver { .. } = heard {
                    self.log(|| format!("{} does not hear its clients: {heard:?}", name(to)));
                    self.handed_over += 1;
                    // as on the operator's word: it does not take the role back by itself
                    if let Some(mm) = self.mem_mut(to).node.member(E) {
                        mm.demoted();
                    }
                    self.finish_step_down(to);
                }
            }
            Msg::Fetch { epoch, seq } => {
                if let Role::Primary(p) = &mut self.mem_mut(to).role {
                    if epoch == p.p.epoch() {
                        p.p.fetch(from, seq);
                    }
                }
                self.pump(to, now);
            }
            Msg::Ack { epoch, seq, status } => {
                if let Role::Primary(p) = &mut self.mem_mut(to).role {
                    if epoch == p.p.epoch() {
                        if let Some(sent) = p.p.first_sent(seq) {
                            p.confirm(from, sent);
                        }
                    }
                    p.p.on_ack(from, epoch, seq, status);
                }
                self.pump(to, now);
            }
            Msg::Refuse { epoch } => {
                let Role::Primary(p) = &self.mem(to).role else {
                    return;
                };
                let ours = p.p.epoch();
                let yields = self.yields(to, ours, from, epoch);
                let Role::Primary(p) = &mut self.mem_mut(to).role else {
                    return;
                };
                if yields {
                    self.depose(to, "a member follows a newer epoch");
                } else {
                    p.p.on_refused(from, epoch);
                    self.pump(to, now);
                }
            }
            Msg::Join { offer } => self.on_join(to, from, offer),
            Msg::JoinReply { ok, copy } => {
                let asked = self
                    .mem_mut(to)
                    .node
                    .member(E)
                    .and_then(|m| m.asked_at(from));
                let Role::Primary(p) = &mut self.mem_mut(to).role else {
                    return;
                };
                if ok {
                    if let Some(t) = asked {
                        p.confirm(from, t);
                    }
                } else {
                    p.join_answered(from);
                    p.p.member_lost(from);
                    if copy {
                        p.hold(from, true);
                    }
                }
                self.pump(to, now);
            }
            Msg::Copy {
                epoch,
                base,
                history,
                data,
                drc,
            } => {
                let m = self.mem_mut(to);
                // as the daemon's sync_begin: refused while following another primary
                let following = matches!(&m.role, Role::Secondary { core: Some(c), .. }
                    if c.follows_other_than(from));
                if epoch < m.epoch_disk || matches!(m.role, Role::Primary(_)) || following {
                    return;
                }
                m.epoch_disk = epoch;
                m.data = *data;
                // the survivor's replies replace ours (the daemon's clear_export + adopt): one
                // we had that the survivor lost with a crash is gone now too
                // (a reply this member released stays: its update is on every later primary)
                let kept: Drc = m
                    .drc
                    .iter()
                    .filter(|(k, _)| m.released.contains(k))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                let dropped: Vec<(u32, u64)> = m
                    .drc
                    .keys()
                    .filter(|k| !drc.contains_key(k) && !kept.contains_key(k))
                    .copied()
                    .collect();
                // the daemon's clear_replies writes a clear record: what it keeps in memory
                // is not in the log any more; the survivor's replies are logged as adopted
                m.unlogged = kept.keys().copied().collect();
                m.drc = drc;
                m.drc.extend(kept);
                for k in dropped {
                    if !self.members.iter().any(|o| o.up && o.drc.contains_key(&k)) {
                        self.drc_lost.insert(k);
                    }
                }
                let m = self.mem_mut(to);
                m.log = (history, base.0);
                m.role = Role::Secondary {
                    primary: from,
                    core: Some(SecCore::following(
                        E, epoch, base, history, from, false, now, WINDOW,
                    )),
                };
                fresh_proxy(m);
                if let Some(mm) = m.node.member(E) {
                    mm.resynced();
                }
                self.send(
                    to,
                    from,
                    Msg::JoinReply {
                        ok: true,
                        copy: false,
                    },
                );
            }
            Msg::TakeOver => {
                if let Role::Secondary { primary, core } = &self.mem(to).role {
                    if *primary == from || core.as_ref().and_then(|c| c.acks_to()) == Some(from) {
                        if let Some(mm) = self.mem_mut(to).node.member(E) {
                            let _ = mm.take_over_asked(&name(from));
                        }
                    }
                }
            }
            Msg::Handoff => {
                let Role::Primary(p) = &mut self.mem_mut(to).role else {
                    return;
                };
                if rejoin::accept_handback(p.p.live().contains(from), p.handoff_to().is_some())
                    && p.begin_step_down("hand-back".into(), Some(from), &[])
                        .is_ok()
                {
                    self.finish_step_down(to);
                }
            }
            Msg::FailedOut { epoch } => {
                if let Role::Secondary { core: Some(c), .. } = &mut self.mem_mut(to).role {
                    c.failed_out(from, epoch);
                }
            }
            Msg::Replies { drc } => {
                let m = self.mem_mut(to);
                if let Role::Primary(p) = &mut m.role {
                    p.join_answered(from);
                    for (k, v) in drc {
                        if let std::collections::btree_map::Entry::Vacant(e) = m.drc.entry(k) {
                            e.insert(v);
                            m.unlogged.remove(&k);
                        }
                    }
                }
            }
            Msg::WitnessQuery { about } => {
                // a member vouches too: when it last heard `about`
                let view = role_view(self.mem(to));
                let (ago, effects) = self
                    .mem_mut(to)
                    .node
                    .answer_query(about, now, &|_| Some(view.clone()));
                for e in effects {
                    self.carry_out(to, e);
                }
                let epoch = known_epoch(self.mem(to));
                self.send(to, from, Msg::WitnessSeen { about, ago, epoch });
            }
            Msg::Ping { .. } => {}
        }
    }

    fn on_join(&mut self, to: MemberId, from: MemberId, offer: Offer) {
        let m = self.mem(to);
        let listed_primary = m.listing();
        let reply = match &m.role {
            Role::Primary(p) => {
                if self.yields(to, m.epoch_disk.max(p.p.epoch()), from, offer.epoch) {
                    self.depose(to, "a newer epoch asks us to join");
                    Msg::JoinReply {
                        ok: false,
                        copy: true,
                    }
                } else {
                    Msg::JoinReply {
                        ok: false,
                        copy: false,
                    }
                }
            }
            Role::Standby(st) => {
                let (waits, clean_at) = (st.waits, st.clean_at);
                match rejoin::standby_join(
                    m.epoch_disk,
                    st.epoch,
                    clean_at,
                    offer.epoch,
                    (offer.prev, offer.base),
                    true,
                ) {
                    Ok(()) => {
                        let at = Millis(self.now);
                        let mm = self.mem_mut(to);
                        // restarted from its seal and lost the negotiation: the role back
                        // once in step (the daemon's standby_join does the same)
                        if let Some(me) = mm.node.member(E) {
                            me.followed_from_standby(waits, clean_at);
                        }
                        mm.epoch_disk = offer.epoch;
                        mm.log = (offer.history, offer.base.0);
                        mm.role = Role::Secondary {
                            primary: from,
                            core: Some(follow_offer(&offer, from, at)),
                        };
                        fresh_proxy(mm);
                        Msg::JoinReply {
                            ok: true,
                            copy: false,
                        }
                    }
                    Err(rejoin::JoinRefusal::OlderEpoch) => Msg::JoinReply {
                        ok: false,
                        copy: false,
                    },
                    Err(rejoin::JoinRefusal::NeedsResync) => Msg::JoinReply {
                        ok: false,
                        copy: true,
                    },
                }
            }
            Role::Secondary { core, .. } => {
                let applied = core.as_ref().map(|c| c.applied());
                let offer = Offer {
                    from_listed_primary: from == listed_primary,
                    ..offer
                };
                match rejoin::secondary_join(&offer, m.epoch_disk, true, applied, false) {
                    Ok(keep) => {
                        let at = Millis(self.now);
                        let mm = self.mem_mut(to);
                        mm.epoch_disk = mm.epoch_disk.max(offer.epoch);
                        let Role::Secondary { core, .. } = &mut mm.role else {
                            unreachable!()
                        };
                        match core {
                            Some(c) if keep => {
                                c.rejoined(from, offer.epoch, at);
                                // as the daemon's: orders of the old epoch wait no more, and
                                // what was held for them is dropped (not reported)
                                fresh_proxy(mm);
                            }
                            _ => {
                                *core = Some(follow_offer(&offer, from, at));
                                mm.log = (offer.history, offer.base.0);
                                fresh_proxy(mm);
                            }
                        }
                        Msg::JoinReply {
                            ok: true,
                            copy: false,
                        }
                    }
                    Err(r) => {
                        let applied_epoch = core.as_ref().map(|c| c.s.epoch());
                        let leaves =
                            rejoin::leaves_old_stream(m.epoch_disk, applied_epoch, offer.epoch);
                        let mm = self.mem_mut(to);
                        if let Role::Secondary { core, .. } = &mut mm.role {
                            if leaves {
                                *core = None;
                            } else if let Some(c) = core.as_mut() {
                                // a Join from our own leader: it failed us out
                                c.leave(from);
                            }
                        }
                        Msg::JoinReply {
                            ok: false,
                            copy: r.needs_resync(),
                        }
                    }
                }
            }
        };
        let joined = matches!(reply, Msg::JoinReply { ok: true, .. });
        let known = known_epoch(self.mem(to));
        if !joined && known > offer.epoch {
            // an older epoch than one known here: `Refuse` first, so the asker is deposed
            // before the refusal puts us out of its stream (the daemon's peer.rs)
            self.send(to, from, Msg::Refuse { epoch: known });
        }
        self.send(to, from, reply);
        if joined {
            let drc = self.mem(to).drc.clone();
            self.send(to, from, Msg::Replies { drc });
        }
    }

    /// Multicast delivery: a client's datagram at a member that does not hold the address.
    /// A secondary holds it for the leader's order unless it applied it already; anyone
    /// else drops it.
    fn on_datagram(&mut self, to: MemberId, req: Req) {
        if matches!(req.op, Op::Read { .. }) {
            return self.on_read(to, req);
        }
        let now = Millis(self.now);
        let m = self.mem_mut(to);
        sync_proxy(m);
        if matches!(m.role, Role::Secondary { core: Some(_), .. }) {
            if m.drc.contains_key(&(req.client, req.xid)) {
                m.proxy.2.repeated(key_of(&req), now); // the primary answers it, if it hears it
            } else {
                m.proxy.2.hold(key_of(&req), print_of(&req), req, now);
            }
        }
        self.drain_proxy(to, now);
        self.schedule_tick(to);
    }

    /// A secondary reports the held datagrams that expired unclaimed to the leader it
    /// acknowledges (the daemon's `SecondarySide::tick_proxy`).
    fn report_unknown(&mut self, id: MemberId) {
        let now = Millis(self.now);
        let silence = self.settings.silence_ms();
        let m = self.mem(id);
        let expired = m.proxy.2.stats().unknown();
        if expired <= m.unknown_sent {
            return;
        }
        let to = match &m.role {
            Role::Secondary { core: Some(c), .. }
                if exclusion::reports(c.led_at(), now, silence) =>
            {
                c.acks_to()
            }
            _ => None,
        };
        let count = expired - m.unknown_sent;
        self.mem_mut(id).unknown_sent = expired;
        if let Some(to) = to {
            self.send(id, to, Msg::Unknown { count });
        }
    }

    /// Carries out the held table's effects of member `id`: an order with its datagram
    /// enters the secondary's state machine; a missing one is fetched from the leader.
    fn drain_proxy(&mut self, id: MemberId, now: Millis) {
        let mut applied = false;
        while let Some(e) = self.mem_mut(id).proxy.2.poll_effect() {
            match e {
                ProxyEffect::Apply { seq, order, args } => {
                    let mut this = false;
                    if let Role::Secondary { core: Some(c), .. } = &mut self.mem_mut(id).role {
                        c.s.on_update(Update {
                            export: E,
                            epoch: order.0,
                            seq,
                            deps: order.1,
                            barrier: order.2,
                            payload: args,
                        });
                        this = true;
                    }
                    if this {
                        self.claimed += 1;
                        applied = true;
                    }
                }
                ProxyEffect::Fetch { seq } => {
                    let epoch = self.mem(id).proxy.0;
                    if let Some(l) = self.leader(id) {
                        self.send(id, l, Msg::Fetch { epoch, seq });
                    }
                }
            }
        }
        if applied {
            self.pump(id, now);
        }
    }

    /// The split family: a read at a member, answered if it is the read server — the write
    /// primary when it is first in the read list among the members it leads, a secondary
    /// under its read lease — and checked: it shows every record acknowledged to the client.
    fn on_read(&mut self, to: MemberId, req: Req) {
        let now = Millis(self.now);
        let (has_witness, settings) = (self.has_witness, self.settings);
        let read = self.split.clone().unwrap_or_default();
        let trace = self.trace;
        let m = self.mem_mut(to);
        if matches!(m.role, Role::Primary(_)) {
            m.received += 1; // as the daemon's primary, it counts every datagram it hears
        }
        if let Role::Primary(p) = &mut m.role {
            // not ours: a client that repeats it got no answer from the read server
            if !p.closed() && !p.answers_reads(&read, to, now) {
                if let Some(s) = p.read_unanswered(&read, to, key_of(&req), now) {
                    if trace {
                        eprintln!(
                            "{:>7} {} passes read server {} over",
                            now.0,
                            name(to),
                            name(s)
                        );
                    }
                    self.passed_over += 1;
                }
                return;
            }
        }
        let m = self.mem(to);
        let by = match &m.role {
            Role::Primary(p)
                if !p.closed()
                    && p.answers_reads(&read, to, now)
                    && fencing::lease_ok(
                        has_witness,
                        p.p.live(),
                        p.confirmed(),
                        m.node.witness_backed,
                        &settings,
                        now,
                    ) =>
            {
                Some(false)
            }
            Role::Secondary { core: Some(c), .. } if c.reads(now) => Some(true),
            _ => None,
        };
        let Some(secondary) = by else {
            // a secondary that does not answer notes it: a client that repeats it a second
            // later got no answer from whoever should have (the daemon's `ProxyHold::read`;
            // reported as unknown, it hands the role of a primary deaf to reads over)
            let m = self.mem_mut(to);
            if matches!(m.role, Role::Secondary { core: Some(_), .. }) {
                sync_proxy(m);
                m.proxy.2.read(key_of(&req), now);
            }
            return;
        };
        let Op::Read { file } = req.op else {
            unreachable!("on_read takes reads")
        };
        let have = m.data.logs.get(&file);
        let missing: Vec<u64> = self.clients[req.client as usize]
            .acked
            .iter()
            .filter(|r| !have.is_some_and(|l| l.contains(r)))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{} answered client {}'s read (xid {}) without its acknowledged records {missing:?}: a stale read server ({})",
            name(to),
            req.client,
            req.xid,
            if secondary { "secondary" } else { "primary" }
        );
        if secondary {
            self.reads.0 += 1;
        } else {
            self.reads.1 += 1;
        }
        self.reply(to, req.client, req.xid, 0, Epoch(0));
    }

    fn on_request(&mut self, to: MemberId, req: Req) {
        if matches!(req.op, Op::Read { .. }) {
            return self.on_read(to, req);
        }
        let now = Millis(self.now);
        let has_witness = self.has_witness;
        let settings = self.settings;
        let multicast = self.multicast;
        let m = self.mem_mut(to);
        if multicast && matches!(m.role, Role::Primary(_)) {
            m.received += 1; // every request here is an update datagram
        }
        let Role::Primary(p) = &mut m.role else {
            return;
        };
        p.expire_joiners(now, settings.silence_ms());
        if p.closed() || p.writes_held() {
            return; // handing over, writes held for a copy or for joiners' replies: retry
        }
        if p.waiters()
            .any(|w| (w.req.client, w.req.xid) == (req.client, req.xid))
        {
            return; // in progress (its reply waits for the secondaries)
        }
        if let Some(&status) = m.drc.get(&(req.client, req.xid)) {
            let epoch = p.p.epoch();
            if fencing::lease_ok(
                has_witness,
                p.p.live(),
                p.confirmed(),
                m.node.witness_backed,
                &settings,
                now,
            ) {
                self.reply(to, req.client, req.xid, status, epoch);
            }
            return;
        }
        let t = touch(&req.op);
        let waiting = Waiting {
            req: req.clone(),
            status: None,
        };
        let _ = p.submit(|_| t, req, waiting, now);
        self.pump(to, now);
        self.schedule_tick(to);
    }

    fn on_reply(&mut self, from: MemberId, client: u32, xid: u64, status: u32, epoch: Epoch) {
        if self.trace {
            eprintln!(
                "{:>7} client {client} <- {} reply to xid {xid}: {status} ({epoch:?})",
                self.now,
                name(from)
            );
        }
        if epoch < self.max_reply_epoch {
            // An older primary released late (it was paused): harmless only if the update
            // is in the newer primary's history (every member it waited for had it).
            if let Some((_, Op::Append { rec, .. }, _)) = self.clients[client as usize]
                .current
                .clone()
                .filter(|c| c.0 == xid)
            {
                let newest = self.members.iter().find(|m| {
                    m.up && matches!(&m.role, Role::Primary(p) if p.p.epoch() >= self.max_reply_epoch)
                });
                if let Some(n) = newest {
                    assert!(
                        n.data.logs.get(&client).is_some_and(|l| l.contains(&rec)),
                        "{} acknowledged record {rec} in {epoch:?}, which the primary of {:?} lacks: two members serving",
                        name(from),
                        self.max_reply_epoch
                    );
                }
            }
        }
        self.max_reply_epoch = self.max_reply_epoch.max(epoch);
        let now = self.now;
        let c = &mut self.clients[client as usize];
        if let Some(first) = c.replies.get(&xid) {
            assert_eq!(
                *first, status,
                "client {client} xid {xid}: a second, different reply"
            );
            return;
        }
        c.replies.insert(xid, status);
        let Some((cur, op, sent)) = c.current.clone() else {
            return;
        };
        if cur != xid {
            return;
        }
        let denied = matches!(op, Op::Lock(_)) && status == DENIED;
        let gap = status != 0 && !denied && self.drc_gap((client, xid));
        if denied {
        } else if gap {
            self.second_runs_after_drc_loss += 1;
        } else {
            assert_eq!(
                status, 0,
                "client {client} xid {xid} {op:?} answered {status}: executed twice (seed replays)"
            );
        }
        let c = &mut self.clients[client as usize];
        c.longest_wait = c.longest_wait.max(now - sent);
        match op {
            Op::Append { rec, .. } => {
                c.acked.push(rec);
                self.acked_appends.push((client, rec));
            }
            Op::Create(n) => {
                c.live_names.insert(n);
            }
            Op::Remove(n) => {
                c.live_names.remove(&n);
                c.gone_names.insert(n);
            }
            Op::Lock(_) if status == 0 => {
                // mutual exclusion across every fault: nobody else holds it
                let others: Vec<usize> = (0..self.clients.len())
                    .filter(|&o| o != client as usize && self.clients[o].holds)
                    .collect();
                assert!(
                    others.is_empty(),
                    "client {client} was granted the lock that client(s) {others:?} hold (from {}, {epoch:?})",
                    name(from)
                );
                self.clients[client as usize].holds = true;
            }
            Op::Lock(_) | Op::Unlock(_) | Op::Read { .. } => {}
        }
        self.clients[client as usize].current = None;
        self.next_request(client);
    }

    fn next_request(&mut self, client: u32) {
        if self.now > self.faults_until + CONVERGE_MS / 2 {
            return; // the run is winding down
        }
        // the split family also reads (only it draws this number: other seeds replay as before)
        let read = self.split.is_some() && self.rng.below(3) == 0;
        let pick = self.rng.below(if self.with_locks { 6 } else { 4 });
        let c = &mut self.clients[client as usize];
        let op = match (pick, c.live_names.iter().next().copied()) {
            _ if read => Op::Read { file: client },
            (4 | 5, _) if c.holds => {
                // from the moment it sends its UNLOCK it no longer counts on the lock
                c.holds = false;
                Op::Unlock(client)
            }
            (4 | 5, _) => Op::Lock(client),
            (0, _) => {
                c.next_name += 1;
                Op::Create(u64::from(client) * 1_000_000 + c.next_name)
            }
            (1, Some(n)) => Op::Remove(n),
            _ => {
                c.next_rec += 1;
                Op::Append {
                    file: client,
                    rec: c.next_rec,
                }
            }
        };
        c.next_xid += 1;
        let xid = c.next_xid;
        if let Op::Append { rec, .. } = &op {
            c.xid_of_rec.insert(*rec, xid);
        }
        c.current = Some((xid, op, self.now));
        self.transmit(client);
    }

    /// Whether member `m` hears no client datagram now (the deaf family).
    fn is_deaf(&self, m: MemberId) -> bool {
        self.deaf
            .is_some_and(|(d, from)| d == m && self.now >= from)
    }

    fn transmit(&mut self, client: u32) {
        let c = &self.clients[client as usize];
        let Some((xid, op, _)) = c.current.clone() else {
            return;
        };
        if let Some(to) = self.vip {
            if !self.isolated.contains(&to) {
                let d = self.rng.range(1, 5);
                let req = Req { client, xid, op };
                if self.multicast {
                    // every member receives the datagram (lossy, each copy on its own time)
                    for o in self.ids() {
                        if o != to
                            && !self.isolated.contains(&o)
                            && self.rng.below(8) != 0
                            && !self.is_deaf(o)
                        {
                            let d = self.rng.range(1, 8);
                            self.at(
                                d,
                                Ev::Datagram {
                                    to: o,
                                    req: req.clone(),
                                },
                            );
                        }
                    }
                }
                if !self.is_deaf(to) {
                    self.at(d, Ev::Request { to, req });
                }
            }
        }
        self.at(300, Ev::ClientTimer { client, xid });
    }

    // ---- invariants ------------------------------------------------------------------------

    /// At no instant two running members each serve (primary, not stopping, lease valid).
    fn check_one_serving(&self) {
        let now = Millis(self.now);
        let serving: Vec<MemberId> = self
            .members
            .iter()
            .filter(|m| m.up && !m.paused)
            .filter(|m| match &m.role {
                Role::Primary(p) => {
                    !p.closed()
                        && fencing::lease_ok(
                            self.has_witness,
                            p.p.live(),
                            p.confirmed(),
                            m.node.witness_backed,
                            &self.settings,
                            now,
                        )
                }
                _ => false,
            })
            .map(|m| m.id)
            .collect();
        assert!(
            serving.len() <= 1,
            "two members serving at once: {serving:?}"
        );
    }

    fn converged(&self) -> Result<(), String> {
        let prims: Vec<&Mem> = self
            .members
            .iter()
            .filter(|m| matches!(m.role, Role::Primary(_)))
            .collect();
        if prims.len() != 1 {
            return Err(format!("{} primaries", prims.len()));
        }
        let p = prims[0];
        let Role::Primary(pr) = &p.role else {
            unreachable!()
        };
        if pr.p.pending() > 0 || self.vip != Some(p.id) {
            return Err("primary busy or without the virtual IP".into());
        }
        for m in &self.members {
            if m.id == p.id {
                continue;
            }
            if !pr.p.live().contains(m.id) {
                return Err(format!("{} not live", name(m.id)));
            }
            match &m.role {
                Role::Secondary { core: Some(c), .. }
                    if c.leader() == Some(p.id) && c.s.backlog() == 0 => {}
                _ => return Err(format!("{} not a joined secondary", name(m.id))),
            }
            if m.data != p.data {
                if self.trace {
                    eprintln!(
                        "{} data {:?}\nprimary data {:?}",
                        name(m.id),
                        m.data,
                        p.data
                    );
                }
                return Err(format!("{} differs from the primary", name(m.id)));
            }
        }
        if self.clients.iter().any(|c| c.current.is_some()) {
            return Err("a client still waits".into());
        }
        Ok(())
    }

    fn check_final(&self) {
        let p = self
            .members
            .iter()
            .find(|m| matches!(m.role, Role::Primary(_)))
            .expect("converged");
        for (i, c) in self.clients.iter().enumerate() {
            let log = p.data.logs.get(&(i as u32)).cloned().unwrap_or_default();
            let mut seen = BTreeSet::new();
            for r in &log {
                if !seen.insert(*r) {
                    let xid = c.xid_of_rec.get(r).copied().unwrap_or(0);
                    assert!(
                        self.drc_gap((i as u32, xid)),
                        "client {i}: record {r} appended twice"
                    );
                }
            }
            for r in &c.acked {
                assert!(seen.contains(r), "client {i}: acknowledged record {r} lost");
            }
            for n in &c.live_names {
                assert!(
                    p.data.names.contains(n),
                    "client {i}: acknowledged create of {n} lost"
                );
            }
            for n in &c.gone_names {
                assert!(
                    !p.data.names.contains(n),
                    "client {i}: acknowledged remove of {n} lost"
                );
            }
            if c.holds {
                assert!(
                    p.data.holds(i as u32),
                    "client {i}: its granted lock is not in the primary's table"
                );
            }
        }
    }

    // ---- faults ----------------------------------------------------------------------------

    fn fault(&mut self, f: Fault) {
        self.log(|| format!("FAULT {f:?}"));
        match f {
            Fault::Stop(m) => {
                // a clean stop (SIGTERM): the daemon's `Mirror::seal`, then the process ends
                if !self.mem(m).up || self.mem(m).paused {
                    return self.fault(Fault::Crash(m));
                }
                let mem = self.mem(m);
                let seal = match &mem.role {
                    Role::Primary(p) => {
                        let all = mem.others.iter().all(|o| p.p.live().contains(*o));
                        (p.p.pending() == 0 && all && !p.closed())
                            .then(|| (p.p.epoch(), p.history, p.p.last_seq().0))
                    }
                    Role::Secondary { core: Some(c), .. } if !c.closed() => (c.s.backlog() == 0
                        && c.s.running() == 0)
                        .then(|| (c.s.epoch(), c.history, c.s.watermark().0)),
                    _ => None,
                };
                self.log(|| format!("{} stops cleanly, seal {seal:?}", name(m)));
                self.fault(Fault::Crash(m));
                self.mem_mut(m).seal = seal;
            }
            Fault::Crash(m) => {
                if !self.mem(m).up {
                    return;
                }
                self.mem_mut(m).seal = None;
                self.give_up_vip_if_dead(m);
                // the daemon's reply log (local.rs) keeps the DRC through a crash of the process
                let keys: Vec<(u32, u64)> = if REPLY_LOG {
                    Vec::new()
                } else {
                    self.mem(m).drc.keys().copied().collect()
                };
                for k in keys {
                    let elsewhere = self
                        .members
                        .iter()
                        .any(|o| o.id != m && o.up && o.drc.contains_key(&k));
                    if !elsewhere {
                        self.drc_lost.insert(k);
                    }
                }
                self.crashed_at.entry(m).or_default().push(self.now);
                self.mem_mut(m).proxy = (Epoch(0), 0, proxy_table());
                self.mem_mut(m).up = false;
                self.mem_mut(m).paused = false;
                self.mem_mut(m).deferred.clear();
                self.end_links(m, None, true);
            }
            Fault::Restart(m) => {
                if self.mem(m).up {
                    return;
                }
                let self_now = self.now;
                let mm = self.mem_mut(m);
                mm.up = true;
                if REPLY_LOG {
                    let gone = std::mem::take(&mut mm.unlogged);
                    mm.drc.retain(|k, _| !gone.contains(k));
                } else {
                    mm.drc.clear();
                }
                mm.released.clear();
                mm.next_tick = 0;
                mm.node = Node::new(
                    mm.node.settings,
                    mm.node.witness,
                    vec![Member::new(E, mm.pos, mm.others.clone())],
                );
                // no seal after a crash: the listed primary stands by, the others wait; a
                // seal of a clean stop says where this mirror stands (the daemon's
                // Mirror::new): the listed primary negotiates from there, the others follow
                // nobody from there
                let seal = mm.seal.take();
                mm.role = match (mm.pos, seal) {
                    (0, seal) => Role::Standby(Standing {
                        epoch: mm.epoch_disk.max(seal.map_or(Epoch(0), |s| s.0)),
                        clean_at: seal.map(|s| (s.1, SeqNo(s.2))),
                        since: Millis(self_now),
                        waits: false,
                        why: "restarted".into(),
                    }),
                    (_, Some((epoch, history, seq))) => Role::Secondary {
                        primary: mm.listing(),
                        core: Some(SecCore::sealed(E, epoch, SeqNo(seq), history, WINDOW)),
                    },
                    (_, None) => Role::Secondary {
                        primary: mm.listing(),
                        core: None,
                    },
                };
                self.schedule_tick(m);
            }
            Fault::Pause(m) => {
                if self.mem(m).up {
                    self.mem_mut(m).paused = true;
                }
            }
            Fault::Resume(m) => {
                if !self.mem(m).paused {
                    return;
                }
                self.mem_mut(m).paused = false;
                let evs = std::mem::take(&mut self.mem_mut(m).deferred);
                // a resumed process runs its timers and reads its sockets in no fixed order
                let timer_first = self.rng.chance(50);
                if timer_first {
                    self.tick(m);
                }
                for e in evs {
                    self.handle(e);
                }
                self.mem_mut(m).next_tick = 0;
                self.tick(m);
                self.schedule_tick(m);
            }
            Fault::Cut(a, b) => {
                self.cuts.insert(pair(a, b));
                self.end_links(a, Some(b), false);
            }
            Fault::Heal(a, b) => {
                self.cuts.remove(&pair(a, b));
                self.reconnect();
            }
            Fault::Isolate(m) => {
                self.isolated.insert(m);
                self.end_links(m, None, false);
            }
            Fault::Rejoin(m) => {
                self.isolated.remove(&m);
                self.reconnect();
            }
            Fault::Demote => {
                // ftnfsctl demote: the primary hands the role to its first live secondary
                let p = self
                    .members
                    .iter()
                    .find(|m| m.up && !m.paused && matches!(m.role, Role::Primary(_)));
                if let Some(id) = p.map(|m| m.id) {
                    let others = self.mem(id).others.clone();
                    if let Role::Primary(p) = &mut self.mem_mut(id).role {
                        if p.begin_step_down("demote".into(), None, &others).is_err() {
                            return; // refused: nobody in step to take over
                        }
                    }
                    // on the operator's word: it does not take the role back by itself
                    if let Some(mm) = self.mem_mut(id).node.member(E) {
                        mm.demoted();
                    }
                    self.finish_step_down(id);
                }
            }
        }
    }

    fn give_up_vip_if_dead(&mut self, m: MemberId) {
        // a dead member's address lifetime runs out; the next primary takes it
        self.give_up_vip(m);
    }

    fn handle(&mut self, ev: Ev) {
        let target = match &ev {
            Ev::Peer { to, .. } | Ev::Request { to, .. } | Ev::Datagram { to, .. } => Some(*to),
            Ev::Tick { m, .. } => Some(*m),
            _ => None,
        };
        if let Some(t) = target.filter(|t| *t != WITNESS) {
            if !self.mem(t).up {
                return;
            }
            if self.mem(t).paused {
                if !matches!(ev, Ev::Tick { .. }) {
                    self.mem_mut(t).deferred.push(ev);
                }
                return;
            }
        }
        match ev {
            Ev::Peer { from, to, gen, msg } => {
                if *self.gen.get(&pair(from, to)).unwrap_or(&0) != gen || !self.reachable(from, to)
                {
                    return;
                }
                if from != WITNESS && !self.mem(from).up {
                    return;
                }
                self.on_peer(from, to, msg);
                if to != WITNESS {
                    self.schedule_tick(to);
                }
            }
            Ev::Request { to, req } => self.on_request(to, req),
            Ev::Datagram { to, req } => self.on_datagram(to, req),
            Ev::Reply {
                from,
                client,
                xid,
                status,
                epoch,
            } => self.on_reply(from, client, xid, status, epoch),
            Ev::Tick { m, at } => {
                if self.mem(m).next_tick != at {
                    return;
                }
                self.mem_mut(m).next_tick = 0;
                self.tick(m);
                self.schedule_tick(m);
            }
            Ev::ClientTimer { client, xid } => {
                if self.clients[client as usize]
                    .current
                    .as_ref()
                    .is_some_and(|c| c.0 == xid)
                {
                    self.transmit(client);
                }
            }
            Ev::Fault(f) => self.fault(f),
        }
    }
}

impl Mem {
    /// The listed primary.
    fn listing(&self) -> MemberId {
        if self.pos == 0 {
            self.id
        } else {
            self.others[0]
        }
    }
    fn log_prev(&self) -> u64 {
        self.prev_history
    }
    fn prev_history_set(&mut self, prev: u64) {
        self.prev_history = prev;
    }
}

fn role_view(m: &Mem) -> RoleView {
    match &m.role {
        Role::Primary(p) => {
            let mut copies = MemberSet::EMPTY;
            p.held().for_each(|m| copies.insert(m));
            p.view(copies)
        }
        Role::Secondary { primary, core } => {
            follower::secondary_view(core.as_ref(), *primary, false, m.epoch_disk)
        }
        Role::Standby(st) => st.view(),
    }
}

/// The highest epoch of the export `m` knows: persisted, or of the stream it leads or follows.
fn known_epoch(m: &Mem) -> Epoch {
    let role = match &m.role {
        Role::Primary(p) => p.p.epoch(),
        Role::Secondary { core: Some(c), .. } => c.s.epoch(),
        Role::Secondary { core: None, .. } => Epoch(0),
        Role::Standby(st) => st.epoch,
    };
    role.max(m.epoch_disk)
}

/// `m` confirmed our epoch as of `at` (when we sent what it answered).
fn short(m: &Msg) -> String {
    match m {
        Msg::Copy {
            epoch,
            base,
            history,
            ..
        } => format!("Copy {epoch:?} {base:?} h{history}"),
        Msg::Update(u) => format!("Update {:?} {:?}", u.epoch, u.seq),
        other => format!("{other:?}"),
    }
}

struct Outcome {
    /// Reads answered by a secondary, by a primary (the split family).
    reads: (u64, u64),
    /// Read servers passed over for not answering.
    passed_over: u64,
    claimed: u64,
    handed_over: u64,
    second_runs_after_drc_loss: usize,
    faults: usize,
    converged_after: u64,
    acked: usize,
    longest_wait: u64,
}

fn run(seed: u64, trace: bool) -> Result<Outcome, String> {
    let mut rng = Rng(seed);
    let n = 2 + rng.below(2) as u8;
    let has_witness = rng.chance(70);
    let n_clients = 1 + rng.below(3) as u32;
    let settings = Settings::default();
    let ids: Vec<MemberId> = (1..=n).map(MemberId).collect();
    let mut members = Vec::new();
    for (pos, id) in ids.iter().enumerate() {
        let others: Vec<MemberId> = ids.iter().copied().filter(|o| o != id).collect();
        let node = Node::new(
            settings,
            has_witness.then_some(WITNESS),
            vec![Member::new(E, pos, others.clone())],
        );
        // a formed group: the listed primary in epoch 1, the others joined at update 0
        let role = if pos == 0 {
            Role::Standby(Standing {
                epoch: Epoch(1),
                clean_at: None,
                since: Millis(0),
                waits: false,
                why: "formed".into(),
            })
        } else {
            Role::Secondary {
                primary: ids[0],
                core: None,
            }
        };
        members.push(Mem {
            id: *id,
            pos,
            others,
            up: true,
            paused: false,
            deferred: Vec::new(),
            node,
            role,
            data: Data::default(),
            epoch_disk: Epoch(1),
            log: (1, 0),
            drc: Drc::new(),
            unlogged: BTreeSet::new(),
            released: BTreeSet::new(),
            next_tick: 0,
            prev_history: 0,
            seal: None,
            proxy: (Epoch(0), 0, proxy_table()),
            unknown_sent: 0,
            received: 0,
        });
    }
    let faults_for = rng.range(15_000, 40_000);
    let mut w = World {
        rng,
        now: 0,
        order: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        settings,
        has_witness,
        members,
        witness: Witness {
            heard: BTreeMap::new(),
            reported: BTreeSet::new(),
        },
        clients: (0..n_clients)
            .map(|_| Client {
                next_rec: 0,
                next_name: 0,
                current: None,
                next_xid: 0,
                replies: BTreeMap::new(),
                acked: Vec::new(),
                xid_of_rec: BTreeMap::new(),
                live_names: BTreeSet::new(),
                gone_names: BTreeSet::new(),
                longest_wait: 0,
                holds: false,
            })
            .collect(),
        gen: BTreeMap::new(),
        link_free: BTreeMap::new(),
        cuts: BTreeSet::new(),
        isolated: BTreeSet::new(),
        broken: BTreeSet::new(),
        vip: None,
        max_reply_epoch: Epoch(0),
        histories: 1,
        trace,
        faults_until: 1000 + faults_for,
        acked_appends: Vec::new(),
        with_locks: seed >= LOCKS_FROM,
        multicast: seed >= MULTICAST_FROM,
        claimed: 0,
        deaf: None,
        handed_over: 0,
        split: None,
        reads: (0, 0),
        passed_over: 0,
        drc_lost: BTreeSet::new(),
        runs: BTreeMap::new(),
        crashed_at: BTreeMap::new(),
        second_runs_after_drc_loss: 0,
    };
    if seed >= SPLIT_FROM {
        if seed >= SPLIT_DEAF_FROM {
            let mut r = Rng(seed ^ 0xdeaf_0000_dead);
            let who = ids[r.below(ids.len() as u64) as usize];
            w.deaf = Some((who, r.range(1000, w.faults_until)));
        }
        // Table II's order reversed, or (three members) any order
        let mut r = Rng(seed ^ 0x5b11_7000_00ad);
        let mut read: Vec<MemberId> = ids.iter().rev().copied().collect();
        if read.len() > 2 {
            let k = r.below(read.len() as u64) as usize;
            read.rotate_left(k);
        }
        w.split = Some(read);
    } else if seed >= DEAF_FROM {
        let mut r = Rng(seed ^ 0xdeaf_0000_dead);
        let who = ids[r.below(ids.len() as u64) as usize];
        w.deaf = Some((who, r.range(1000, w.faults_until)));
    }
    // the first primary
    let first = ids[0];
    let cfg = w.prim_cfg();
    w.become_primary(first, Epoch(1), "formed", |history| {
        Leading::start(E, Epoch(1), SeqNo(0), history, 0, cfg)
    });
    for id in &ids {
        w.schedule_tick(*id);
    }
    for c in 0..n_clients {
        w.next_request(c);
    }
    // the campaign: a fault every 0.5–4 s, each undone after 0.3–4 s; they overlap
    let mut t = 1000;
    let mut faults = 0;
    let everyone: Vec<MemberId> = ids
        .iter()
        .copied()
        .chain(has_witness.then_some(WITNESS))
        .collect();
    while t < w.faults_until {
        let dur = w.rng.range(300, 4000);
        let m = ids[w.rng.below(ids.len() as u64) as usize];
        let (f, undo) = match w.rng.below(6) {
            // the clean-stop family: half the crashes are clean stops (SIGTERM) — drawn only
            // there, so every other seed runs exactly as before
            0 if seed >= CLEAN_STOPS_FROM && w.rng.below(2) == 0 => {
                (Fault::Stop(m), Some(Fault::Restart(m)))
            }
            0 => (Fault::Crash(m), Some(Fault::Restart(m))),
            1 => (Fault::Pause(m), Some(Fault::Resume(m))),
            2 => {
                let o = everyone[w.rng.below(everyone.len() as u64) as usize];
                if o == m {
                    continue;
                }
                (Fault::Cut(m, o), Some(Fault::Heal(m, o)))
            }
            3 => (Fault::Isolate(m), Some(Fault::Rejoin(m))),
            4 => (Fault::Demote, None),
            _ => {
                // a host stall: a short pause
                let d = w.rng.range(200, 700);
                w.at(t, Ev::Fault(Fault::Pause(m)));
                w.at(t + d, Ev::Fault(Fault::Resume(m)));
                faults += 1;
                t += w.rng.range(500, 4000);
                continue;
            }
        };
        w.at(t, Ev::Fault(f));
        if let Some(u) = undo {
            w.at((t + dur).min(w.faults_until), Ev::Fault(u));
        }
        faults += 1;
        t += w.rng.range(500, 4000);
    }
    // heal everything at the end of the campaign
    let end = w.faults_until;
    for id in &ids {
        w.at(end + 1, Ev::Fault(Fault::Restart(*id)));
        w.at(end + 1, Ev::Fault(Fault::Resume(*id)));
        w.at(end + 1, Ev::Fault(Fault::Rejoin(*id)));
        for o in &everyone {
            w.at(end + 1, Ev::Fault(Fault::Heal(*id, *o)));
        }
    }
    let deadline = end + CONVERGE_MS;
    let mut converged_at = None;
    while let Some(Reverse((t, order))) = w.queue.pop() {
        if t > deadline {
            break;
        }
        w.now = t;
        let ev = w.events.remove(&order).expect("event");
        w.handle(ev);
        w.check_one_serving();
        if w.now > end + 2 && w.converged().is_ok() && w.now > end + CONVERGE_MS / 2 + 1000 {
            converged_at = Some(w.now);
            break;
        }
    }
    if converged_at.is_none() {
        return Err(format!(
            "not converged {} ms after the faults: {}",
            CONVERGE_MS,
            w.converged().err().unwrap_or_default()
        ));
    }
    w.check_final();
    if w.deaf.is_none() && w.handed_over > 0 {
        // every member hears the clients here: a hand-over is a false exclusion
        return Err(format!(
            "{} primaries handed over as deaf, though every member hears its clients",
            w.handed_over
        ));
    }
    Ok(Outcome {
        reads: w.reads,
        passed_over: w.passed_over,
        claimed: w.claimed,
        handed_over: w.handed_over,
        second_runs_after_drc_loss: w.second_runs_after_drc_loss,
        faults,
        converged_after: converged_at.unwrap_or(0) - end,
        acked: w.clients.iter().map(|c| c.acked.len()).sum(),
        longest_wait: w.clients.iter().map(|c| c.longest_wait).max().unwrap_or(0),
    })
}

fn run_seed(seed: u64, trace: bool) -> Result<Outcome, String> {
    match std::panic::catch_unwind(|| run(seed, trace)) {
        Ok(r) => r,
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
    }
}

/// Seeds from here on are the clean-stop family: half their crashes are clean stops, which
/// seal the mirror where it stands (primary: nothing in flight, every member live;
/// secondary: nothing waiting) and restart from the seal (`Fault::Stop`).
const CLEAN_STOPS_FROM: u64 = 1_000_000;

/// Seeds from here on are the lock family (and still clean stops): clients also contend for
/// one exclusive lock, taken and released through the mirror like the daemon's NLM calls
/// (`ftnfsd/src/lock_table.rs`). Checked: never two clients granted it at once, across every
/// fault; a granted lock is in the final primary's table.
const LOCKS_FROM: u64 = 2_000_000;

/// Seeds from here on are the multicast family (and still locks and clean stops): every
/// client datagram also reaches the other members, 1 in 8 of those copies lost, each
/// delayed independently of the peer links (an order may overtake it); secondaries hold them
/// and apply them on the primary's orders (proxy mode, `Documentation/16-proxy-mode.md`).
const MULTICAST_FROM: u64 = 3_000_000;

/// Seeds from here on are the deaf family (and still multicast, locks and clean stops): one
/// member, from a moment in the campaign to the end of the run, hears no client datagram
/// (its multicast membership lost). Whenever it is primary its clients are stuck until it
/// hands the role to a member that reports the datagrams it never ordered
/// (`member::exclusion`); without that rule these seeds never converge.
const DEAF_FROM: u64 = 4_000_000;

/// Seeds from here on are the split family (multicast, locks and clean stops, no deaf
/// member): reads and writes have their own member orders (`-ftnfsr=`, patent Table II) —
/// the member order orders updates, the read list (reversed, or any order of three) names
/// who answers reads: the write primary, or a secondary under its read lease
/// (`member::read_lease`). Clients also read their own logs; a read that misses a record
/// acknowledged to its client fails the run (a stale read server).
const SPLIT_FROM: u64 = 5_000_000;

/// Seeds from here on are the split family with a deaf member (as [`DEAF_FROM`]'s): when it
/// is the read server, clients' reads go unanswered until the primary, which receives them
/// too and sees them repeated, passes it over (`member::read_lease`,
/// `Leading::read_unanswered`); when it is the primary, it hands its role over as in the
/// deaf family.
const SPLIT_DEAF_FROM: u64 = 6_000_000;

/// Seeds that once failed, far beyond the range CI runs (each found by `scripts/sim` at
/// 100,000+ seeds; `Documentation/09-member-machine.md` says what each found). They run on
/// every `cargo test`: undo one of their rules and this test names the seed.
const FOUND: &[u64] = &[
    41_225, 51_241, 51_633, 55_907, 117_335, 135_622, 138_373, 138_537, 154_793, 175_651,
    // the clean-stop family
    1_002_345, 1_026_984, // the multicast family
    3_001_070, 3_001_593, 3_002_336, 3_002_392, 3_005_950,
    // the split family with a deaf member
    6_000_002, 6_000_221, 6_000_653,
];

/// Runs `seed`, failing with the line that replays it.
fn must_pass(seed: u64) -> Outcome {
    run_seed(seed, false).unwrap_or_else(|e| {
        panic!(
            "seed {seed}: {e}\nreplay: FTNFS_SIM_SEED={seed} FTNFS_SIM_TRACE=1 cargo test -p ftnfs-core --test sim_group -- --nocapture"
        )
    })
}

/// The 200 seeds of the family starting at `from` on every `cargo test` (`must_pass` each);
/// `None` when `FTNFS_SIM_SEED` or `FTNFS_SIM_BASE` asks for one seed or a range instead
/// (`whole_groups_under_combined_faults` runs it).
fn family(from: u64) -> Option<Vec<Outcome>> {
    if std::env::var("FTNFS_SIM_SEED").is_ok() || std::env::var("FTNFS_SIM_BASE").is_ok() {
        return None;
    }
    Some((from..from + 200).map(must_pass).collect())
}

#[test]
fn seeds_that_once_failed() {
    for &seed in FOUND {
        must_pass(seed);
    }
}

/// The clean-stop family (a restarted sealed primary once resumed at once in its old epoch
/// while the member that took over from it lived on: tests/mirror.sh found it): 200 seeds
/// from `CLEAN_STOPS_FROM` on every `cargo test`; `FTNFS_SIM_BASE=1000000 scripts/sim N`
/// runs more.
#[test]
fn whole_groups_with_clean_stops() {
    family(CLEAN_STOPS_FROM);
}

/// The lock family: 200 seeds from [`LOCKS_FROM`] on every `cargo test`;
/// `FTNFS_SIM_BASE=2000000 scripts/sim N` runs more.
#[test]
fn whole_groups_with_locks() {
    family(LOCKS_FROM);
}

/// The multicast family: 200 seeds from [`MULTICAST_FROM`] on every `cargo test`;
/// `FTNFS_SIM_BASE=3000000 scripts/sim N` runs more.
#[test]
fn whole_groups_by_multicast() {
    let Some(runs) = family(MULTICAST_FROM) else {
        return;
    };
    let claimed: u64 = runs.iter().map(|o| o.claimed).sum();
    let handed_over: u64 = runs.iter().map(|o| o.handed_over).sum();
    eprintln!("multicast family: {claimed} orders claimed a held datagram");
    assert!(claimed > 1000, "orders claimed held datagrams: {claimed}");
    // every member hears the clients here (1 in 8 copies lost): no primary is taken for deaf
    assert_eq!(handed_over, 0, "primaries that handed over as deaf");
}

/// The deaf family: 200 seeds from [`DEAF_FROM`] on every `cargo test`;
/// `FTNFS_SIM_BASE=4000000 scripts/sim N` runs more.
#[test]
fn whole_groups_with_a_deaf_member() {
    let Some(runs) = family(DEAF_FROM) else {
        return;
    };
    let handed_over: u64 = runs.iter().map(|o| o.handed_over).sum();
    eprintln!("deaf family: {handed_over} primaries handed their role over");
    assert!(
        handed_over > 20,
        "deaf primaries that handed over: {handed_over}"
    );
}

/// The split family: 200 seeds from [`SPLIT_FROM`] on every `cargo test`;
/// `FTNFS_SIM_BASE=5000000 scripts/sim N` runs more.
#[test]
fn whole_groups_with_split_read_and_write_primaries() {
    let Some(runs) = family(SPLIT_FROM) else {
        return;
    };
    let by_secondaries: u64 = runs.iter().map(|o| o.reads.0).sum();
    let by_primaries: u64 = runs.iter().map(|o| o.reads.1).sum();
    let handed_over: u64 = runs.iter().map(|o| o.handed_over).sum();
    eprintln!(
        "split family: {by_secondaries} reads answered by a secondary under its lease, {by_primaries} by the write primary"
    );
    // every member hears the clients here: no primary is taken for deaf (reads a secondary
    // counts as unanswered included)
    assert_eq!(handed_over, 0, "primaries that handed over as deaf");
    assert!(
        by_secondaries > 1000,
        "reads answered by secondaries: {by_secondaries}"
    );
    assert!(
        by_primaries > 100,
        "reads answered by write primaries: {by_primaries}"
    );
}

/// The split family with a deaf member: 200 seeds from [`SPLIT_DEAF_FROM`] on every
/// `cargo test`; `FTNFS_SIM_BASE=6000000 scripts/sim N` runs more.
#[test]
fn whole_groups_with_split_reads_and_a_deaf_member() {
    let Some(runs) = family(SPLIT_DEAF_FROM) else {
        return;
    };
    let passed_over: u64 = runs.iter().map(|o| o.passed_over).sum();
    let handed_over: u64 = runs.iter().map(|o| o.handed_over).sum();
    eprintln!(
        "split family with a deaf member: {passed_over} read servers passed over, {handed_over} primaries handed over"
    );
    assert!(passed_over > 20, "read servers passed over: {passed_over}");
    assert!(
        handed_over > 20,
        "deaf primaries that handed over: {handed_over}"
    );
}

#[test]
fn whole_groups_under_combined_faults() {
    let trace = std::env::var("FTNFS_SIM_TRACE").is_ok();
    if let Ok(s) = std::env::var("FTNFS_SIM_SEED") {
        let seed: u64 = s.parse().expect("FTNFS_SIM_SEED is a number");
        match run_seed(seed, trace) {
            Ok(o) => eprintln!(
                "seed {seed}: ok, {} faults, {} acknowledged, converged {} ms after, longest client wait {} ms, \
                 {} second runs after the DRC died with every member that had it",
                o.faults, o.acked, o.converged_after, o.longest_wait, o.second_runs_after_drc_loss
            ),
            Err(e) => panic!("seed {seed}: {e}"),
        }
        return;
    }
    let seeds: u64 = std::env::var("FTNFS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("FTNFS_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut faults, mut acked, mut worst, mut lost, mut waits) = (0, 0, 0, 0, Vec::new());
    let mut handed_over = 0;
    for seed in base..base + seeds {
        match run_seed(seed, false) {
            Ok(o) => {
                faults += o.faults;
                acked += o.acked;
                worst = worst.max(o.converged_after);
                lost += o.second_runs_after_drc_loss;
                waits.push(o.longest_wait);
                handed_over += o.handed_over;
            }
            Err(e) => panic!(
                "seed {seed}: {e}\nreplay: FTNFS_SIM_SEED={seed} FTNFS_SIM_TRACE=1 cargo test -p ftnfs-core --test sim_group -- --nocapture"
            ),
        }
    }
    waits.sort_unstable();
    let pct = |p: usize| waits.get(waits.len() * p / 100).copied().unwrap_or(0);
    eprintln!(
        "sim_group: {seeds} seeds from {base}: {faults} faults, {acked} acknowledged updates, \
         slowest convergence {worst} ms after the faults; longest client wait per run: \
         median {} ms, p90 {} ms, max {} ms; {lost} second runs after the DRC died with every \
         member that had it (0 with the reply log: any would have failed the run); \
         {handed_over} primaries handed over as deaf to their clients",
        pct(50),
        pct(90),
        waits.last().copied().unwrap_or(0)
    );
}
