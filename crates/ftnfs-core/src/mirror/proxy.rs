//! Proxy-mode secondaries (DESIGN.md decision 8, *multicast*; patent pp. 13–16, 21–30).
//!
//! When every member receives every client datagram (the virtual IP resolves to a multicast
//! MAC), the primary need not forward the arguments of an update: each secondary already has
//! them. The primary sends an **order** instead — the update's place in the replication order
//! and its decisions (new object's identity, server time), a fingerprint of the arguments,
//! and which client request it is (address, port, xid) — and no payload.
//!
//! A secondary in proxy mode:
//! - **holds** each qualified update datagram it receives (not yet applied here, for an export
//!   it follows), keyed by the client request, in a bounded table;
//! - on an order, **claims** the held request with that key *and* that fingerprint and applies
//!   it in the order's place, exactly as if the primary had forwarded it;
//! - if it has no such datagram yet (multicast is lossy, and an order may overtake the
//!   datagram), **waits** a short grace for it, then **fetches** the full update from the
//!   primary (which still holds it: it cannot release the update before this secondary
//!   acknowledges). A held request whose fingerprint differs from the order's is not the one
//!   the primary executed: it is dropped and the update fetched;
//! - a held request that no order claims within `ttl_ms` **expires**: the primary never
//!   executed it (a retransmission the primary answered from its DRC, a request it refused,
//!   or one it never received). Expiries are counted ([`ProxyStats::expired`]).
//!
//! Only the primary replies to the client. The core decides; the shell parses datagrams,
//! applies updates and sends messages.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::ids::{Millis, SeqNo};

/// Which client request a datagram is: client address (IPv4 mapped into 16 bytes), port and
/// RPC transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    /// Client address.
    pub ip: [u8; 16],
    /// Client port.
    pub port: u16,
    /// RPC xid.
    pub xid: u32,
}

/// A fingerprint of a request's arguments: their length and a checksum. An order names the
/// request it executed by key *and* fingerprint, so that a held datagram is applied only if
/// it is that request (a client may reuse an xid for another call after a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Bytes of arguments.
    pub len: u32,
    /// Their checksum (CRC-32, computed by the shell).
    pub sum: u32,
}

/// Limits of the held table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Most datagrams held at once; more are dropped (and fetched if ordered).
    pub max_held: usize,
    /// Most bytes of arguments held at once (a WRITE datagram carries up to 64 KiB).
    pub max_bytes: u64,
    /// How long an order waits for its datagram before the update is fetched.
    pub grace_ms: u64,
    /// How long a held datagram waits for its order before it expires.
    pub ttl_ms: u64,
    /// A retransmission of a datagram held unclaimed this long counts as unknown: a primary
    /// that hears its clients orders an update within milliseconds.
    pub stale_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_held: 4096,
            max_bytes: 32 << 20,
            grace_ms: 20,
            ttl_ms: 5_000,
            stale_ms: 1_000,
        }
    }
}

/// Counters (status output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Datagrams held.
    pub held: u64,
    /// Orders that found their datagram (at once or within the grace).
    pub claimed: u64,
    /// Orders whose update was fetched from the primary.
    pub fetched: u64,
    /// Held datagrams whose fingerprint was not the order's.
    pub mismatched: u64,
    /// Held datagrams no order claimed in time.
    pub expired: u64,
    /// Retransmissions of requests already applied here (the primary answers them).
    pub repeated: u64,
    /// Retransmissions of a datagram held unclaimed for `stale_ms` or more.
    pub stale: u64,
    /// Datagrams not held: the table was full.
    pub dropped: u64,
}

impl ProxyStats {
    /// What this member reports to its primary as unknown requests
    /// (`member::exclusion`): expired datagrams and retransmissions of applied requests.
    pub fn unknown(&self) -> u64 {
        self.expired + self.repeated + self.stale
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEffect<O, A> {
    /// Apply the order `seq` with the held arguments: build the update from both and give
    /// it to the secondary's state machine.
    Apply {
        /// The update's number.
        seq: SeqNo,
        /// The primary's order.
        order: O,
        /// The arguments from the client's datagram.
        args: A,
    },
    /// Ask the primary for the whole update `seq` (it is sent again with its arguments).
    Fetch {
        /// The update's number.
        seq: SeqNo,
    },
}

struct Held<A> {
    print: Fingerprint,
    args: A,
    at: Millis,
    /// When a retransmission of it last counted as unknown (its arrival at first).
    counted: Millis,
}

struct Waiting<O> {
    key: RequestKey,
    print: Fingerprint,
    order: O,
    until: Millis,
}

/// The proxy side of one secondary of one export. `O` is the shell's order (everything but
/// the arguments), `A` the arguments.
pub struct ProxyHold<O, A> {
    cfg: ProxyConfig,
    held: HashMap<RequestKey, Held<A>>,
    /// Bytes of arguments held (their fingerprints' lengths).
    held_bytes: u64,
    /// Held keys in arrival order, for expiry (a key may appear again after it was claimed:
    /// an entry whose time is not the held one is skipped).
    arrivals: VecDeque<(Millis, RequestKey)>,
    waiting: BTreeMap<SeqNo, Waiting<O>>,
    effects: VecDeque<ProxyEffect<O, A>>,
    stats: ProxyStats,
    /// Requests applied here whose retransmission last counted as unknown, and when
    /// (bounded by `max_held`; older than `stale_ms` forgotten at each tick).
    repeats: HashMap<RequestKey, Millis>,
    /// Requests the primary ordered lately, and when (bounded by `max_held`; forgotten after
    /// `ttl_ms`): a copy of one that arrives after its order was served — fetched, or read
    /// late after a stall of this member — is no unknown request and is not held.
    ordered: HashMap<RequestKey, Millis>,
    /// Reads seen (only the primary answers them), and when one last counted (bounded by
    /// `max_held`; forgotten after `ttl_ms`).
    reads: HashMap<RequestKey, Millis>,
}

impl<O, A> ProxyHold<O, A> {
    /// An empty table.
    pub fn new(cfg: ProxyConfig) -> Self {
        ProxyHold {
            cfg,
            held: HashMap::new(),
            repeats: HashMap::new(),
            ordered: HashMap::new(),
            reads: HashMap::new(),
            held_bytes: 0,
            arrivals: VecDeque::new(),
            waiting: BTreeMap::new(),
            effects: VecDeque::new(),
            stats: ProxyStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    /// Datagrams held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Bytes of arguments held now.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    fn take(&mut self, key: &RequestKey) -> Option<Held<A>> {
        let h = self.held.remove(key)?;
        self.held_bytes -= u64::from(h.print.len);
        Some(h)
    }

    /// Orders waiting for their datagram now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A client datagram for an update of this export, qualified by the shell (an update
    /// procedure, not applied here yet). A retransmission of a request already held keeps
    /// the first copy (and counts as unknown once that copy waited `stale_ms` unclaimed, at
    /// most once a `stale_ms` per request: a burst of retransmissions read at once — after a
    /// stall of this member — weighs as one).
    pub fn hold(&mut self, key: RequestKey, print: Fingerprint, args: A, now: Millis) {
        // an order may be waiting for it
        let waited = self
            .waiting
            .iter()
            .find(|(_, w)| w.key == key)
            .map(|(s, w)| (*s, w.print));
        if let Some((seq, want)) = waited {
            if want == print {
                let w = self.waiting.remove(&seq).expect("found above");
                self.stats.claimed += 1;
                self.effects.push_back(ProxyEffect::Apply {
                    seq,
                    order: w.order,
                    args,
                });
                return;
            }
            // not the request the primary executed: that one is fetched when the grace ends
        }
        if self.ordered.contains_key(&key) {
            return; // its order was served already (fetched, or this copy came late)
        }
        if let Some(h) = self.held.get_mut(&key) {
            if now.since(h.counted) >= self.cfg.stale_ms {
                self.stats.stale += 1;
                h.counted = now;
            }
            return;
        }
        if self.held.len() >= self.cfg.max_held
            || self.held_bytes + u64::from(print.len) > self.cfg.max_bytes
        {
            self.stats.dropped += 1;
            return;
        }
        self.stats.held += 1;
        self.held_bytes += u64::from(print.len);
        self.held.insert(
            key,
            Held {
                print,
                args,
                at: now,
                counted: now,
            },
        );
        self.arrivals.push_back((now, key));
    }

    /// A client datagram for update `key`, already applied here: nothing to hold (the
    /// primary answers it from its reply cache), but counted — a primary that does not hear
    /// its clients leaves them retransmitting ([`ProxyStats::unknown`]) — at most once a
    /// `stale_ms` per request.
    pub fn repeated(&mut self, key: RequestKey, now: Millis) {
        let due = self
            .repeats
            .get(&key)
            .is_none_or(|t| now.since(*t) >= self.cfg.stale_ms);
        if !due {
            return;
        }
        self.stats.repeated += 1;
        if self.repeats.len() < self.cfg.max_held {
            self.repeats.insert(key, now);
        }
    }

    /// A client's read `key`, which only the primary answers. A retransmission `stale_ms`
    /// or more after the first copy (or the last that counted) says the primary did not
    /// answer it: counted as unknown (`stale`), as a held update's would be — a client whose
    /// pending call is a read is as stuck as one whose call is an update.
    pub fn read(&mut self, key: RequestKey, now: Millis) {
        match self.reads.get_mut(&key) {
            Some(t) if now.since(*t) >= self.cfg.stale_ms => {
                self.stats.stale += 1;
                *t = now;
            }
            Some(_) => {}
            None => {
                if self.reads.len() < self.cfg.max_held {
                    self.reads.insert(key, now);
                }
            }
        }
    }

    /// The primary's order `seq` for the request `key` with arguments `print`.
    pub fn on_order(
        &mut self,
        seq: SeqNo,
        key: RequestKey,
        print: Fingerprint,
        order: O,
        now: Millis,
    ) {
        if self.waiting.contains_key(&seq) {
            return; // a second copy of the order
        }
        if self.ordered.len() < self.cfg.max_held {
            self.ordered.insert(key, now);
        }
        match self.take(&key) {
            Some(h) if h.print == print => {
                self.stats.claimed += 1;
                self.effects.push_back(ProxyEffect::Apply {
                    seq,
                    order,
                    args: h.args,
                });
            }
            Some(_) => {
                self.stats.mismatched += 1;
                self.stats.fetched += 1;
                self.effects.push_back(ProxyEffect::Fetch { seq });
            }
            None => {
                self.waiting.insert(
                    seq,
                    Waiting {
                        key,
                        print,
                        order,
                        until: Millis(now.0 + self.cfg.grace_ms),
                    },
                );
            }
        }
    }

    /// The whole update `seq` arrived (a resend, or the answer to a fetch): its order no
    /// longer waits, and the datagram of `key`, if held, is spent.
    pub fn delivered(&mut self, seq: SeqNo, key: Option<RequestKey>) {
        self.waiting.remove(&seq);
        if let Some(k) = key {
            self.take(&k);
        }
    }

    /// Fetches what waited past its grace and expires what was held past its time.
    pub fn tick(&mut self, now: Millis) {
        let (stale, ttl) = (self.cfg.stale_ms, self.cfg.ttl_ms);
        self.repeats.retain(|_, t| now.since(*t) < stale);
        self.ordered.retain(|_, t| now.since(*t) < ttl);
        self.reads.retain(|_, t| now.since(*t) < ttl);
        let due: Vec<SeqNo> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.until <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in due {
            self.waiting.remove(&seq);
            self.stats.fetched += 1;
            self.effects.push_back(ProxyEffect::Fetch { seq });
        }
        while let Some(&(at, key)) = self.arrivals.front() {
            if now.since(at) < self.cfg.ttl_ms {
                break;
            }
            self.arrivals.pop_front();
            if self.held.get(&key).is_some_and(|h| h.at == at) {
                self.take(&key);
                self.stats.expired += 1;
            }
        }
        // keys claimed long ago leave their arrival entries behind: bounded by the table
        while self.arrivals.len() > 2 * self.cfg.max_held {
            self.arrivals.pop_front();
        }
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let w = self.waiting.values().map(|w| w.until).min();
        let h = self
            .arrivals
            .iter()
            .find(|(at, k)| self.held.get(k).is_some_and(|h| h.at == *at))
            .map(|(at, _)| Millis(at.0 + self.cfg.ttl_ms));
        match (w, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing to do.
    pub fn poll_effect(&mut self) -> Option<ProxyEffect<O, A>> {
        self.effects.pop_front()
    }

    /// The member stopped following this stream (a new primary, a resync): everything held
    /// or waiting is dropped; a new stream sends whole updates until orders start again.
    pub fn clear(&mut self) {
        self.held.clear();
        self.repeats.clear();
        self.ordered.clear();
        self.reads.clear();
        self.held_bytes = 0;
        self.arrivals.clear();
        self.waiting.clear();
        self.effects.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> RequestKey {
        RequestKey {
            ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 9],
            port: 800,
            xid,
        }
    }

    fn fp(n: u32) -> Fingerprint {
        Fingerprint { len: n, sum: n * 7 }
    }

    fn drain(p: &mut ProxyHold<&'static str, u32>) -> Vec<ProxyEffect<&'static str, u32>> {
        std::iter::from_fn(|| p.poll_effect()).collect()
    }

    #[test]
    fn an_order_claims_the_held_datagram_whichever_comes_first() {
        let mut p = ProxyHold::new(ProxyConfig::default());
        // datagram first
        p.hold(key(1), fp(10), 100, Millis(0));
        p.on_order(SeqNo(1), key(1), fp(10), "o1", Millis(1));
        assert_eq!(
            drain(&mut p),
            vec![ProxyEffect::Apply {
                seq: SeqNo(1),
                order: "o1",
                args: 100
            }]
        );
        // order first: it waits, and the datagram completes it
        p.on_order(SeqNo(2), key(2), fp(20), "o2", Millis(2));
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.waiting(), 1);
        p.hold(key(2), fp(20), 200, Millis(3));
        assert_eq!(
            drain(&mut p),
            vec![ProxyEffect::Apply {
                seq: SeqNo(2),
                order: "o2",
                args: 200
            }]
        );
        assert_eq!((p.held(), p.waiting()), (0, 0));
        assert_eq!(p.stats().claimed, 2);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_missing_or_different_datagram_is_fetched_never_applied() {
        let cfg = ProxyConfig::default();
        let mut p = ProxyHold::new(cfg);
        // never arrives: fetched once the grace ends, not before
        p.on_order(SeqNo(5), key(5), fp(50), "o5", Millis(100));
        assert_eq!(p.poll_timeout(), Some(Millis(100 + cfg.grace_ms)));
        p.tick(Millis(100 + cfg.grace_ms - 1));
        assert!(drain(&mut p).is_empty());
        p.tick(Millis(100 + cfg.grace_ms));
        assert_eq!(drain(&mut p), vec![ProxyEffect::Fetch { seq: SeqNo(5) }]);
        // same key, other arguments (an xid reused for another call): never applied
        p.hold(key(6), fp(61), 600, Millis(200));
        p.on_order(SeqNo(6), key(6), fp(60), "o6", Millis(201));
        assert_eq!(drain(&mut p), vec![ProxyEffect::Fetch { seq: SeqNo(6) }]);
        // and while an order waits, a datagram with other arguments does not complete it
        p.on_order(SeqNo(7), key(7), fp(70), "o7", Millis(300));
        p.hold(key(7), fp(71), 700, Millis(301));
        assert!(drain(&mut p).is_empty());
        p.tick(Millis(300 + cfg.grace_ms));
        assert_eq!(drain(&mut p), vec![ProxyEffect::Fetch { seq: SeqNo(7) }]);
        let s = p.stats();
        assert_eq!((s.fetched, s.mismatched, s.claimed), (3, 1, 0));
    }

    #[test]
    fn the_whole_update_arriving_ends_the_wait_and_spends_the_datagram() {
        let mut p = ProxyHold::new(ProxyConfig::default());
        p.on_order(SeqNo(1), key(1), fp(1), "o1", Millis(0));
        p.delivered(SeqNo(1), Some(key(1)));
        p.tick(Millis(1_000_000));
        assert!(drain(&mut p).is_empty(), "no fetch of what arrived");
        p.hold(key(2), fp(2), 2, Millis(0));
        p.delivered(SeqNo(2), Some(key(2)));
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn a_read_retransmitted_long_after_its_first_copy_counts_as_unknown() {
        let mut p: ProxyHold<&'static str, u32> = ProxyHold::new(ProxyConfig::default());
        p.read(key(8), Millis(0));
        p.read(key(8), Millis(400));
        assert_eq!(
            p.stats().unknown(),
            0,
            "within a second: the primary may be slow"
        );
        p.read(key(8), Millis(1000));
        p.read(key(8), Millis(1100));
        assert_eq!(p.stats().unknown(), 1, "once a stale_ms");
        p.read(key(8), Millis(2000));
        assert_eq!(p.stats().stale, 2);
        p.tick(Millis(10_000));
        p.read(key(8), Millis(10_000));
        assert_eq!(
            p.stats().stale,
            2,
            "forgotten after the ttl: a first copy again"
        );
    }

    #[test]
    fn unordered_datagrams_expire_and_the_table_is_bounded() {
        let cfg = ProxyConfig {
            max_held: 3,
            max_bytes: 1 << 20,
            grace_ms: 20,
            ttl_ms: 1000,
            stale_ms: 500,
        };
        let mut p: ProxyHold<&'static str, u32> = ProxyHold::new(cfg);
        for x in 0..5 {
            p.hold(key(x), fp(x), x, Millis(u64::from(x)));
        }
        assert_eq!(p.held(), 3);
        assert_eq!(p.stats().dropped, 2);
        // a retransmission of a held request keeps the first copy; once that one waited
        // stale_ms unclaimed, each retransmission counts as unknown
        p.hold(key(0), fp(0), 99, Millis(10));
        assert_eq!(p.stats().held, 3);
        assert_eq!(p.stats().unknown(), 0);
        p.hold(key(0), fp(0), 99, Millis(600));
        p.hold(key(0), fp(0), 99, Millis(700)); // a burst counts once a stale_ms
        p.repeated(key(9), Millis(600));
        p.repeated(key(9), Millis(601));
        assert_eq!(
            (p.stats().stale, p.stats().repeated, p.stats().unknown()),
            (1, 1, 2)
        );
        assert_eq!(p.poll_timeout(), Some(Millis(1000)));
        p.tick(Millis(1001));
        assert_eq!(p.held(), 1);
        assert_eq!(p.stats().expired, 2);
        assert_eq!(p.stats().unknown(), 4);
        p.tick(Millis(1002));
        assert_eq!((p.held(), p.stats().expired), (0, 3));
        // a copy that comes after its order was served is not held, nor counted, while
        // the order is remembered (ttl); after that it is held again, timed from its arrival
        p.hold(key(1), fp(1), 1, Millis(2000));
        p.on_order(SeqNo(9), key(1), fp(1), "o", Millis(2001));
        p.hold(key(1), fp(1), 1, Millis(2500));
        assert_eq!((p.held(), p.stats().unknown()), (0, 5));
        p.tick(Millis(3001));
        p.hold(key(1), fp(1), 1, Millis(3500));
        p.tick(Millis(4001));
        assert_eq!(p.held(), 1, "the later copy is younger than its ttl");
        p.clear();
        assert_eq!((p.held(), p.waiting(), p.poll_timeout()), (0, 0, None));
        assert_eq!(p.held_bytes(), 0);
        // bounded in bytes too: two 600 KiB datagrams do not fit in 1 MiB
        let big = Fingerprint {
            len: 600 << 10,
            sum: 1,
        };
        p.hold(key(20), big, 20, Millis(4000));
        p.hold(key(21), big, 21, Millis(4000));
        assert_eq!((p.held(), p.held_bytes()), (1, 600 << 10));
        p.on_order(SeqNo(30), key(20), big, "o", Millis(4001));
        assert_eq!(p.held_bytes(), 0, "claimed: its bytes are free again");
    }
}
