//! The duplicate request cache (DESIGN.md decision 7).
//!
//! A retransmitted non-idempotent request (REMOVE, RENAME, CREATE EXCLUSIVE, …) must get the
//! reply of its first execution, not a second execution's EEXIST/ENOENT. A retransmission of a
//! request that is still executing is dropped: the client will retransmit again and then find
//! the finished reply.
//!
//! The key is (client IP, xid, program, version, procedure, checksum of the arguments). The
//! client's *port* is left out on purpose: a TCP client that reconnects — or, after a
//! failover, reaches another member — comes from a new port. The checksum, over the first
//! [`CHECKSUM_BYTES`] of the arguments plus their length (as Linux knfsd does), keeps two
//! client processes on one host that happen to pick the same xid apart.
//!
//! Bounded by entry count and by reply bytes; the oldest finished entries go first. Pure: time
//! comes in as [`Millis`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::ids::{fnv1a64, Millis, Xid};

/// How much of the arguments the checksum covers (knfsd's `RC_CSUMLEN`).
pub const CHECKSUM_BYTES: usize = 256;

/// Identifies one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrcKey {
    /// Client address (without port).
    pub client: IpAddr,
    /// Transaction id.
    pub xid: Xid,
    /// Program.
    pub prog: u32,
    /// Version.
    pub vers: u32,
    /// Procedure.
    pub proc_: u32,
    /// Checksum of the argument bytes.
    pub args_sum: u64,
}

impl DrcKey {
    /// Builds a key, checksumming `args`.
    pub fn new(client: IpAddr, xid: Xid, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Self {
        let head = &args[..args.len().min(CHECKSUM_BYTES)];
        let args_sum = fnv1a64(head) ^ (args.len() as u64).rotate_left(32);
        Self {
            client,
            xid,
            prog,
            vers,
            proc_,
            args_sum,
        }
    }
}

/// Limits of the cache.
#[derive(Debug, Clone, Copy)]
pub struct DrcLimits {
    /// Most entries (in progress + finished).
    pub max_entries: usize,
    /// Most bytes of cached replies.
    pub max_bytes: usize,
    /// A finished entry older than this may be dropped even when there is room.
    pub max_age_ms: u64,
}

impl Default for DrcLimits {
    fn default() -> Self {
        Self {
            max_entries: 16 * 1024,
            max_bytes: 64 * 1024 * 1024,
            max_age_ms: 10 * 60 * 1000,
        }
    }
}

/// What to do with an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen (or not cached): execute it, then call [`Drc::finish`].
    Execute,
    /// The same request is executing right now: drop this copy.
    InProgress,
    /// Seen and finished: send this reply again without executing.
    Replay(Arc<[u8]>),
}

#[derive(Debug)]
enum State {
    InProgress,
    Done(Arc<[u8]>),
}

#[derive(Debug)]
struct Entry {
    state: State,
    at: Millis,
    order: u64,
    /// The mirrored export whose update this is (`tag`), if any.
    export: Option<u32>,
    /// Its reply went to the client: the update was on every live member then, so every
    /// later primary holds it (a resync keeps such a reply).
    released: bool,
}

/// Counters for `ftnfsctl status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrcStats {
    /// Replies replayed.
    pub replays: u64,
    /// Retransmissions dropped because the original was executing.
    pub dropped_in_progress: u64,
    /// Entries evicted for space or age.
    pub evictions: u64,
    /// Requests that could not be tracked because every slot was in progress.
    pub untracked: u64,
}

/// The cache.
#[derive(Debug)]
pub struct Drc {
    limits: DrcLimits,
    entries: HashMap<DrcKey, Entry>,
    /// Finished entries by age (insertion order) for eviction.
    lru: BTreeMap<u64, DrcKey>,
    next_order: u64,
    bytes: usize,
    stats: DrcStats,
}

impl Drc {
    /// An empty cache.
    pub fn new(limits: DrcLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            next_order: 0,
            bytes: 0,
            stats: DrcStats::default(),
        }
    }

    /// Decides what to do with a request. `cacheable` is false for idempotent procedures:
    /// those are still tracked while in progress (so a retransmission does not run twice in
    /// parallel) but their replies are not kept.
    pub fn begin(&mut self, key: DrcKey, now: Millis) -> Verdict {
        self.expire(now);
        if let Some(e) = self.entries.get(&key) {
            return match &e.state {
                State::InProgress => {
                    self.stats.dropped_in_progress += 1;
                    Verdict::InProgress
                }
                State::Done(r) => {
                    self.stats.replays += 1;
                    Verdict::Replay(r.clone())
                }
            };
        }
        while self.entries.len() >= self.limits.max_entries {
            if !self.evict_oldest() {
                // Every slot is executing; the in-flight bound of the shell should make this
                // impossible. Execute without tracking rather than refuse service.
                self.stats.untracked += 1;
                return Verdict::Execute;
            }
        }
        let order = self.bump();
        self.entries.insert(
            key,
            Entry {
                state: State::InProgress,
                at: now,
                order,
                export: None,
                released: false,
            },
        );
        Verdict::Execute
    }

    /// Records the reply of an executed request. With `keep == false` (idempotent procedure)
    /// the entry is just removed.
    pub fn finish(&mut self, key: DrcKey, reply: &[u8], keep: bool, now: Millis) {
        if !keep || reply.len() > self.limits.max_bytes {
            self.entries.remove(&key);
            return;
        }
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let order = self.next_order;
        self.next_order += 1;
        e.state = State::Done(Arc::from(reply));
        e.at = now;
        e.order = order;
        self.lru.insert(order, key);
        self.bytes += reply.len();
        while self.bytes > self.limits.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    /// Records the reply a secondary computed when it applied a mirrored update, so that a
    /// retransmission reaching this member after a failover gets the original reply
    /// (DESIGN.md decision 7). A tracked in-progress copy of the same request is replaced.
    pub fn record(&mut self, key: DrcKey, reply: &[u8], now: Millis) {
        self.expire(now);
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.limits.max_entries {
                if !self.evict_oldest() {
                    return;
                }
            }
            let order = self.bump();
            self.entries.insert(
                key,
                Entry {
                    state: State::InProgress,
                    at: now,
                    order,
                    export: None,
                    released: false,
                },
            );
        }
        if let Some(Entry {
            state: State::Done(_),
            ..
        }) = self.entries.get(&key)
        {
            return; // already recorded (a re-applied duplicate cannot happen, but be safe)
        }
        self.finish(key, reply, true, now);
    }

    /// Records a reply another member holds for a request this member has no entry for (a
    /// member joining a new primary hands it its replies: the new primary may have lost its
    /// own with a restart). An entry here, finished or in progress, is kept as it is.
    pub fn record_if_absent(&mut self, key: DrcKey, reply: &[u8], now: Millis) {
        if !self.entries.contains_key(&key) {
            self.record(key, reply, now);
        }
    }

    /// Every finished reply kept, oldest first: a survivor hands them to a member it resyncs,
    /// so a retransmission that reaches that member later (after a hand-back, or the
    /// survivor's death) gets its original reply, not a second execution.
    pub fn replies(&self) -> Vec<(DrcKey, Arc<[u8]>)> {
        self.lru
            .values()
            .filter_map(|k| match &self.entries.get(k)?.state {
                State::Done(r) => Some((*k, r.clone())),
                State::InProgress => None,
            })
            .collect()
    }

    /// Forgets a request that was not executed after all (e.g. its connection closed while it
    /// waited), so that a retransmission executes it.
    pub fn abandon(&mut self, key: &DrcKey) {
        if let Some(e) = self.entries.get(key) {
            if matches!(e.state, State::InProgress) {
                self.entries.remove(key);
            }
        }
    }

    /// Marks `key` as the reply of an update of mirrored export `export`
    /// ([`clear_export`](Self::clear_export)).
    pub fn tag(&mut self, key: &DrcKey, export: u32, released: bool) {
        if let Some(e) = self.entries.get_mut(key) {
            e.export = Some(export);
            e.released |= released;
        }
    }

    /// Forgets the finished replies of `export`'s updates that were not released to their
    /// client: a resync is about to replace that mirror, and a reply kept for an update the
    /// resync undoes would answer a retransmission for an update that no longer exists. A
    /// released one stays (its update is on every later primary; dropping it let the
    /// simulation execute a retransmission twice). The survivor's replies come at the
    /// resync's last pass.
    pub fn clear_export(&mut self, export: u32) {
        let gone: Vec<DrcKey> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.export == Some(export) && !e.released && matches!(e.state, State::Done(_))
            })
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(e) = self.entries.remove(&k) {
                self.lru.remove(&e.order);
                if let State::Done(r) = e.state {
                    self.bytes = self.bytes.saturating_sub(r.len());
                }
            }
        }
    }

    /// Whether `key` has an entry (finished or in progress).
    pub fn contains(&self, key: &DrcKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of cached replies.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counters.
    pub fn stats(&self) -> DrcStats {
        self.stats
    }

    fn bump(&mut self) -> u64 {
        let o = self.next_order;
        self.next_order += 1;
        o
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.lru.pop_first() else {
            return false;
        };
        if let Some(Entry {
            state: State::Done(r),
            ..
        }) = self.entries.remove(&key)
        {
            self.bytes -= r.len();
        }
        self.stats.evictions += 1;
        true
    }

    fn expire(&mut self, now: Millis) {
        while let Some((_, key)) = self.lru.first_key_value() {
            let old = self
                .entries
                .get(key)
                .is_some_and(|e| now.since(e.at) > self.limits.max_age_ms);
            if !old {
                break;
            }
            self.evict_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    /// A resync into one export forgets that export's replies, not another's.
    #[test]
    fn clear_export_forgets_one_exports_replies() {
        let mut d = Drc::new(DrcLimits::default());
        let k = |x: u32| {
            DrcKey::new(
                "10.0.0.1".parse().unwrap(),
                Xid(x),
                100003,
                3,
                9,
                &[x as u8],
            )
        };
        for x in 1..=3 {
            d.record(k(x), b"reply", Millis(1));
        }
        d.record(k(4), b"reply", Millis(1));
        d.tag(&k(1), 7, false);
        d.tag(&k(2), 8, false);
        d.tag(&k(4), 7, true);
        d.clear_export(7);
        assert!(matches!(d.begin(k(1), Millis(2)), Verdict::Execute));
        assert!(matches!(d.begin(k(2), Millis(2)), Verdict::Replay(_)));
        assert!(matches!(d.begin(k(3), Millis(2)), Verdict::Replay(_)));
        // released to its client: kept
        assert!(matches!(d.begin(k(4), Millis(2)), Verdict::Replay(_)));
        assert_eq!(d.bytes(), 15);
    }

    #[test]
    fn recorded_reply_of_a_mirrored_update_is_replayed() {
        let mut d = Drc::new(DrcLimits::default());
        let k = DrcKey::new(
            "10.0.0.9".parse().unwrap(),
            Xid(5),
            100003,
            3,
            12,
            b"remove x",
        );
        d.record(k, b"reply", Millis(1));
        assert_eq!(
            d.begin(k, Millis(2)),
            Verdict::Replay(Arc::from(&b"reply"[..]))
        );
    }

    use super::*;

    fn key(xid: u32, args: &[u8]) -> DrcKey {
        DrcKey::new("10.0.0.1".parse().unwrap(), Xid(xid), 100003, 3, 12, args)
    }

    #[test]
    fn retransmitted_remove_gets_the_original_reply() {
        let mut d = Drc::new(DrcLimits::default());
        let k = key(1, b"remove a");
        assert_eq!(d.begin(k, Millis(0)), Verdict::Execute);
        // retransmission while executing: dropped, never executed twice
        assert_eq!(d.begin(k, Millis(1)), Verdict::InProgress);
        d.finish(k, b"NFS3_OK", true, Millis(2));
        assert_eq!(
            d.begin(k, Millis(3)),
            Verdict::Replay(Arc::from(&b"NFS3_OK"[..]))
        );
        assert_eq!(d.stats().replays, 1);
        assert_eq!(d.stats().dropped_in_progress, 1);
    }

    #[test]
    fn same_xid_different_arguments_is_a_new_request() {
        let mut d = Drc::new(DrcLimits::default());
        let a = key(1, b"remove a");
        d.begin(a, Millis(0));
        d.finish(a, b"r", true, Millis(0));
        assert_eq!(d.begin(key(1, b"remove b"), Millis(0)), Verdict::Execute);
    }

    #[test]
    fn idempotent_replies_are_not_kept() {
        let mut d = Drc::new(DrcLimits::default());
        let k = key(5, b"getattr");
        d.begin(k, Millis(0));
        d.finish(k, b"attrs", false, Millis(0));
        assert!(d.is_empty());
        assert_eq!(d.begin(k, Millis(0)), Verdict::Execute);
    }

    #[test]
    fn bounded_by_entries_and_bytes_and_age() {
        let limits = DrcLimits {
            max_entries: 4,
            max_bytes: 10,
            max_age_ms: 100,
        };
        let mut d = Drc::new(limits);
        for i in 0..10 {
            let k = key(i, b"x");
            assert_eq!(d.begin(k, Millis(0)), Verdict::Execute);
            d.finish(k, b"abcd", true, Millis(0));
            assert!(d.len() <= 4);
            assert!(d.bytes() <= 10);
        }
        // the newest survives, the oldest was evicted
        assert!(matches!(
            d.begin(key(9, b"x"), Millis(0)),
            Verdict::Replay(_)
        ));
        assert_eq!(d.begin(key(0, b"x"), Millis(0)), Verdict::Execute);
        // age
        assert_eq!(d.begin(key(9, b"x"), Millis(1000)), Verdict::Execute);
    }

    #[test]
    fn all_slots_in_progress_still_executes() {
        let mut d = Drc::new(DrcLimits {
            max_entries: 2,
            ..DrcLimits::default()
        });
        d.begin(key(1, b""), Millis(0));
        d.begin(key(2, b""), Millis(0));
        assert_eq!(d.begin(key(3, b""), Millis(0)), Verdict::Execute);
        assert_eq!(d.stats().untracked, 1);
        d.abandon(&key(1, b""));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn replies_move_to_another_cache_and_are_replayed_there() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let mut a = Drc::new(DrcLimits::default());
        let k1 = DrcKey::new(ip, Xid(1), 100003, 3, 12, b"remove x");
        let k2 = DrcKey::new(ip, Xid(2), 100003, 3, 9, b"mkdir y");
        let k3 = DrcKey::new(ip, Xid(3), 100003, 3, 9, b"mkdir z");
        assert_eq!(a.begin(k1, Millis(1)), Verdict::Execute);
        a.finish(k1, b"removed", true, Millis(2));
        a.record(k2, b"made", Millis(3));
        assert_eq!(a.begin(k3, Millis(4)), Verdict::Execute); // still executing: not handed
        let got = a.replies();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, &*got[0].1), (k1, &b"removed"[..]));
        let mut b = Drc::new(DrcLimits::default());
        for (k, r) in got {
            b.record(k, &r, Millis(10));
        }
        assert_eq!(
            b.begin(k1, Millis(11)),
            Verdict::Replay(Arc::from(&b"removed"[..]))
        );
        assert_eq!(
            b.begin(k2, Millis(11)),
            Verdict::Replay(Arc::from(&b"made"[..]))
        );
    }
}
