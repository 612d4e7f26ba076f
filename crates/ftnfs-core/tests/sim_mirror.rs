//! Seeded simulation of one mirrored export: a primary and 1–3 secondaries (core state
//! machines only) in virtual time, with a network that drops, duplicates, reorders and delays
//! messages, members that apply at different speeds, and (in some runs) a secondary that
//! crashes. Several clients submit conflicting and unrelated updates concurrently.
//!
//! After each run: every submitted update was released to its client; the primary's state is
//! that of applying the released updates one by one in their order (the replication order is
//! honoured even though execution was concurrent); every live secondary's state is identical
//! to the primary's; no secondary was failed out for divergence.
//!
//! `FTNFS_SIM_SEED=N` replays one seed; `FTNFS_SIM_SEEDS=N` runs N seeds (default 300);
//! `scripts/sim` runs many thousands.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ftnfs_core::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use ftnfs_core::mirror::primary::{Primary, PrimaryConfig, PrimaryEffect};
use ftnfs_core::mirror::secondary::{Secondary, SecondaryEffect};
use ftnfs_core::mirror::{FailReason, Key, MemberSet, Touch, Update};

mod common;
use common::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Create(u64),
    Remove(u64),
    Write {
        file: u64,
        off: usize,
        data: Vec<u8>,
    },
    Truncate {
        file: u64,
        len: usize,
    },
}

type State = BTreeMap<u64, Vec<u8>>;

/// Applies `op`; the status is what an NFS server would answer (0 ok, 2 NOENT, 17 EXIST).
fn apply(s: &mut State, op: &Op) -> u32 {
    match op {
        Op::Create(f) => {
            if s.contains_key(f) {
                17
            } else {
                s.insert(*f, vec![]);
                0
            }
        }
        Op::Remove(f) => {
            if s.remove(f).is_some() {
                0
            } else {
                2
            }
        }
        Op::Truncate { file, len } => match s.get_mut(file) {
            None => 2,
            Some(v) => {
                v.resize(*len, 0);
                0
            }
        },
        Op::Write { file, off, data } => match s.get_mut(file) {
            None => 2,
            Some(v) => {
                if v.len() < off + data.len() {
                    v.resize(off + data.len(), 0);
                }
                v[*off..off + data.len()].copy_from_slice(data);
                0
            }
        },
    }
}

/// Block size of the model's parts: writes to different 8-byte blocks of one file commute.
const BLOCK: usize = 8;

fn touch(op: &Op) -> Touch {
    match op {
        Op::Write { file, off, data } => Touch {
            keys: (off / BLOCK..=(off + data.len() - 1) / BLOCK)
                .map(|b| Key::part(*file, b as u64))
                .collect(),
            barrier: false,
        },
        Op::Truncate { file, .. } => Touch {
            keys: vec![Key::whole(*file)],
            barrier: false,
        },
        _ => Touch {
            keys: vec![],
            barrier: true,
        },
    }
}

#[derive(Debug)]
enum Ev {
    Submit { client: usize },
    LocalDone { seq: SeqNo, token: u64 },
    ToSecondary { to: MemberId, update: Update<Op> },
    ToPrimary { from: MemberId, msg: Reply },
    SecondaryDone { at: MemberId, seq: SeqNo, op: Op },
    Tick,
    Crash(MemberId),
}

#[derive(Debug, Clone)]
enum Reply {
    Ack {
        epoch: Epoch,
        seq: SeqNo,
        status: u32,
    },
    Refuse {
        ours: Epoch,
    },
}

struct Sim {
    rng: Rng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    drop_pct: u64,
    dup_pct: u64,
    heal_at: u64,
}

impl Sim {
    fn at(&mut self, delay: u64, ev: Ev) {
        self.order += 1;
        self.queue.push(Reverse((self.now + delay, self.order)));
        self.events.insert(self.order, ev);
    }
    /// A network message: maybe dropped (before the network heals), maybe duplicated,
    /// delayed 1–40 ms (so reordered).
    fn send(&mut self, mk: impl Fn() -> Ev) {
        if self.now < self.heal_at && self.rng.chance(self.drop_pct) {
            return;
        }
        let copies = if self.rng.chance(self.dup_pct) { 2 } else { 1 };
        for _ in 0..copies {
            let d = 1 + self.rng.below(40);
            self.at(d, mk());
        }
    }
}

struct Outcome {
    released: usize,
    failed: usize,
}

fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = Rng(seed);
    let n_sec = 1 + rng.below(3) as u8;
    let clients = 1 + rng.below(4) as usize;
    let ops_per_client = 20 + rng.below(60) as usize;
    let files = 1 + rng.below(6);
    let crash = rng
        .chance(30)
        .then(|| MemberId(1 + rng.below(n_sec as u64) as u8));
    let drop_pct = rng.below(15);
    let dup_pct = rng.below(15);
    let mut sim = Sim {
        rng,
        now: 0,
        order: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        drop_pct,
        dup_pct,
        heal_at: 4_000,
    };
    let secs: Vec<MemberId> = (1..=n_sec).map(MemberId).collect();
    let cfg = PrimaryConfig {
        retry_ms: 100,
        max_sends: 12,
        max_pending: 256,
        read_lease_ms: 0,
    };
    let mut prim: Primary<Op> = Primary::new(
        ExportId(1),
        Epoch(1),
        SeqNo(0),
        secs.iter().copied().collect(),
        cfg,
    );
    let mut second: BTreeMap<MemberId, (Secondary<Op>, State)> = secs
        .iter()
        .map(|m| {
            (
                *m,
                (
                    Secondary::new(ExportId(1), Epoch(1), SeqNo(0), 512),
                    State::new(),
                ),
            )
        })
        .collect();
    let mut crashed = MemberSet::EMPTY;
    let mut pstate = State::new();
    let mut ops: BTreeMap<u64, Op> = BTreeMap::new(); // token -> op
    let mut client_of: BTreeMap<u64, usize> = BTreeMap::new(); // token -> client
    let mut released: BTreeMap<SeqNo, Op> = BTreeMap::new();
    let mut left = vec![ops_per_client; clients];
    let mut next_token = 0u64;
    let mut failed = 0;
    for c in 0..clients {
        let d = sim.rng.below(20);
        sim.at(d, Ev::Submit { client: c });
    }
    if let Some(m) = crash {
        let d = sim.rng.below(3_000);
        sim.at(d, Ev::Crash(m));
    }
    let mut tick_at: Option<u64> = None;
    let mut steps = 0u64;
    while let Some(Reverse((t, o))) = sim.queue.pop() {
        steps += 1;
        if steps > 2_000_000 || t > 600_000 {
            return Err(format!("seed {seed}: no progress (t={t}, steps={steps})"));
        }
        sim.now = t;
        let ev = sim.events.remove(&o).expect("event");
        match ev {
            Ev::Submit { client } => {
                if left[client] == 0 {
                    continue;
                }
                left[client] -= 1;
                let f = sim.rng.below(files);
                let op = match sim.rng.below(12) {
                    0 => Op::Create(f),
                    1 => Op::Remove(f),
                    2 => Op::Truncate {
                        file: f,
                        len: sim.rng.below(24) as usize,
                    },
                    _ => {
                        let len = 1 + sim.rng.below(8) as usize;
                        let b = sim.rng.below(256) as u8;
                        Op::Write {
                            file: f,
                            off: sim.rng.below(16) as usize,
                            data: vec![b; len],
                        }
                    }
                };
                next_token += 1;
                ops.insert(next_token, op.clone());
                client_of.insert(next_token, client);
                prim.submit(next_token, &touch(&op), op, Millis(t))
                    .map_err(|e| format!("seed {seed}: {e}"))?;
            }
            Ev::LocalDone { seq, token } => {
                let status = apply(&mut pstate, &ops[&token]);
                prim.local_done(seq, status);
            }
            Ev::ToSecondary { to, update } => {
                if crashed.contains(to) {
                    continue;
                }
                let (s, _) = second.get_mut(&to).expect("member");
                s.on_update(update);
            }
            Ev::ToPrimary { from, msg } => match msg {
                Reply::Ack { epoch, seq, status } => prim.on_ack(from, epoch, seq, status),
                Reply::Refuse { ours } => prim.on_refused(from, ours),
            },
            Ev::SecondaryDone { at, seq, op } => {
                if crashed.contains(at) {
                    continue;
                }
                let (s, st) = second.get_mut(&at).expect("member");
                let status = apply(st, &op);
                s.applied(seq, status);
            }
            Ev::Tick => {
                tick_at = None;
                prim.tick(Millis(t));
            }
            Ev::Crash(m) => crashed.insert(m),
        }
        // carry out effects
        while let Some(e) = prim.poll_effect() {
            match e {
                PrimaryEffect::Send { to, update, .. } => {
                    sim.send(|| Ev::ToSecondary {
                        to,
                        update: update.clone(),
                    });
                }
                PrimaryEffect::Run { seq, token } => {
                    let d = sim.rng.below(30);
                    sim.at(d, Ev::LocalDone { seq, token });
                }
                PrimaryEffect::Release { seq, token, .. } => {
                    released.insert(seq, ops[&token].clone());
                    // the client that got this reply submits its next update
                    let client = client_of[&token];
                    let d = sim.rng.below(20);
                    sim.at(d, Ev::Submit { client });
                }
                PrimaryEffect::Failed { member, reason } => {
                    if matches!(reason, FailReason::Diverged { .. }) {
                        return Err(format!("seed {seed}: {member} diverged: {reason}"));
                    }
                    if !crashed.contains(member) && sim.now >= sim.heal_at + 5_000 {
                        return Err(format!(
                            "seed {seed}: healthy {member} failed after the network healed: {reason}"
                        ));
                    }
                    failed += 1;
                }
            }
        }
        for (m, (s, _)) in second.iter_mut() {
            while let Some(e) = s.poll_effect() {
                let m = *m;
                match e {
                    SecondaryEffect::Apply(u) => {
                        let d = sim.rng.below(30);
                        sim.at(
                            d,
                            Ev::SecondaryDone {
                                at: m,
                                seq: u.seq,
                                op: u.payload,
                            },
                        );
                    }
                    SecondaryEffect::Ack { epoch, seq, status } => sim.send(|| Ev::ToPrimary {
                        from: m,
                        msg: Reply::Ack { epoch, seq, status },
                    }),
                    SecondaryEffect::Refuse { ours, .. } => sim.send(|| Ev::ToPrimary {
                        from: m,
                        msg: Reply::Refuse { ours },
                    }),
                }
            }
        }
        if let Some(d) = prim.next_deadline() {
            if tick_at.is_none_or(|x| x > d.0) {
                tick_at = Some(d.0.max(sim.now));
                sim.at(d.0.saturating_sub(sim.now), Ev::Tick);
            }
        }
    }
    // Liveness: every update submitted was released.
    if released.len() != ops.len() {
        return Err(format!(
            "seed {seed}: {} of {} updates released; {} pending",
            released.len(),
            ops.len(),
            prim.pending()
        ));
    }
    // Order: the primary's state is the serial application of released updates in order.
    let mut reference = State::new();
    for op in released.values() {
        apply(&mut reference, op);
    }
    if reference != pstate {
        return Err(format!(
            "seed {seed}: primary state differs from the serial order"
        ));
    }
    // Mirrors: every live secondary is identical to the primary (a secondary that crashed
    // after its last acknowledgement is still live — heartbeats are the failover issue's —
    // and must be identical too).
    for (m, (_, st)) in &second {
        if prim.live().contains(*m) && *st != pstate {
            return Err(format!(
                "seed {seed}: live secondary {m} differs from the primary"
            ));
        }
    }
    Ok(Outcome {
        released: released.len(),
        failed,
    })
}

#[test]
fn seeded_mirroring_simulation() {
    if let Ok(s) = std::env::var("FTNFS_SIM_SEED") {
        let seed: u64 = s.parse().expect("FTNFS_SIM_SEED is a number");
        let o = run(seed).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "seed {seed}: {} updates released, {} members failed out",
            o.released, o.failed
        );
        return;
    }
    let n: u64 = std::env::var("FTNFS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let base: u64 = std::env::var("FTNFS_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut total = 0;
    let mut failures = 0;
    for seed in base..base + n {
        match run(seed) {
            Ok(o) => {
                total += o.released;
                failures += o.failed;
            }
            Err(e) => panic!("{e}\nreplay with FTNFS_SIM_SEED={seed}"),
        }
    }
    println!("{n} seeds from {base}: {total} updates released, {failures} members failed out");
}
