//! Split read and write primaries (patent Table II: `-ftnfsr=B:A,ftnfsw=A:B`, issue 16):
//! updates are ordered by the *write primary* (the `ftnfsw` list is the mirroring order, as
//! `-ftnfs=`), reads are answered by the *read server* — the first member of the `ftnfsr`
//! list that is the write primary or a live secondary in its stream. Only delivery by
//! multicast gives this a meaning: every member receives every client datagram, and each
//! answers only what is its to answer.
//!
//! The rule that keeps reads honest: a read must show every acknowledged update. A live
//! secondary has every released update (a release needs its acknowledgement), but the
//! primary releases without a member it failed out — and that member, cut off or stalled,
//! does not know. So a secondary answers reads only under a **read lease**, and the primary
//! releases nothing a lease holder may lack until that lease ended:
//! - the secondary notes when it received each heartbeat of its leader
//!   ([`ReadLease::heard`], keyed by the leader's clock the heartbeat carries) and echoes it;
//! - the primary, on the echo of its designated read server, grants ([`grant`]): it tells the
//!   secondary which heartbeat's echo it answers, and notes `now + lease` as the lease's end
//!   ([`crate::mirror::primary::Primary::lease_granted`]);
//! - the secondary's lease ends a lease after it *received that heartbeat*
//!   ([`ReadLease::granted`]) — before it echoed, so before the primary granted: whatever
//!   the delays (a stalled secondary reading an old grant late), it ends no later than the
//!   primary counts, clocks running at the same rate;
//! - a primary that fails a lease holder out releases nothing until that lease ended
//!   (`Primary::fail`); a *new* primary of a split export releases nothing in its first
//!   lease (the previous primary's holder may still serve, and has not joined this stream;
//!   once it joins, it left the old stream and its lease with it);
//! - a secondary drops its lease when it leaves its leader's stream, rejoins in another
//!   epoch, or closes.
//!
//! Two members may answer reads at once (the primary after failing the holder out, while the
//! holder's lease runs): both hold every acknowledged update, which is all a read needs.
//!
//! A read server that does not hear the clients (its multicast membership lost) answers no
//! read, yet stays live in the stream. The primary receives every read too and sees the
//! clients retransmit: a read repeated a second or more after its first copy went
//! unanswered ([`UnansweredReads`]). Past [`PASS_OVER_AFTER`] of them within
//! [`UNANSWERED_WINDOW_MS`], the read server is *passed over* for [`PASS_OVER_MS`]: no more
//! grants (its lease runs out), and the next member of the read order answers
//! (`Leading::read_unanswered`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::ids::{MemberId, Millis};
use crate::mirror::MemberSet;

/// Heartbeats remembered for a grant that comes later (a grant answers the latest echo; a
/// few more cover a reordering of heartbeats and grants in flight).
const HEARD: usize = 8;

/// A read repeated this long after its first copy was not answered (the Linux client's UDP
/// retransmission comes 1.1 s after a lost one at the earliest).
pub const REPEAT_MS: u64 = 1_000;
/// Unanswered reads are counted over this window.
pub const UNANSWERED_WINDOW_MS: u64 = 10_000;
/// Unanswered reads within the window that pass the read server over (one lost reply is
/// not enough).
pub const PASS_OVER_AFTER: usize = 2;
/// How long a read server that was passed over stays passed over.
pub const PASS_OVER_MS: u64 = 60_000;
/// Most reads remembered (older than the window are dropped first).
const MAX_READS: usize = 4096;

/// The primary's count of reads that were not its to answer and that clients repeated.
#[derive(Debug, Clone)]
pub struct UnansweredReads<K> {
    /// Each read's latest copy counted (its first, or its last counted repeat).
    seen: HashMap<K, Millis>,
    /// Unanswered repeats within the window.
    recent: VecDeque<Millis>,
}

impl<K> Default for UnansweredReads<K> {
    fn default() -> Self {
        UnansweredReads {
            seen: HashMap::new(),
            recent: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq> UnansweredReads<K> {
    /// A copy of read `key` came at `now` (not this member's to answer): whether the unanswered
    /// repeats within the window reach [`PASS_OVER_AFTER`]. A repeat counts at most once a
    /// [`REPEAT_MS`].
    pub fn datagram(&mut self, key: K, now: Millis) -> bool {
        match self.seen.get_mut(&key) {
            Some(t) if now.since(*t) >= REPEAT_MS => {
                *t = now;
                self.recent.push_back(now);
            }
            Some(_) => {}
            None => {
                if self.seen.len() >= MAX_READS {
                    self.seen
                        .retain(|_, t| now.since(*t) < UNANSWERED_WINDOW_MS);
                }
                if self.seen.len() < MAX_READS {
                    self.seen.insert(key, now);
                }
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.since(*t) > UNANSWERED_WINDOW_MS)
        {
            self.recent.pop_front();
        }
        self.recent.len() >= PASS_OVER_AFTER
    }

    /// Starts over (a read server was passed over).
    pub fn clear(&mut self) {
        self.seen.clear();
        self.recent.clear();
    }
}

/// The read server: the first member of `read` that is `primary` or live in its stream.
pub fn read_server(read: &[MemberId], primary: MemberId, live: MemberSet) -> Option<MemberId> {
    read.iter()
        .copied()
        .find(|m| *m == primary || live.contains(*m))
}

/// What the primary does on `from`'s echo of the heartbeat it sent at `sent_at` (its clock):
/// `Some(sent_at)` — grant it a lease (send the grant naming `sent_at`, having noted the
/// lease's end with `Primary::lease_granted(from, now + lease)`) — when `from` is the read
/// server and this primary's own lease holds (`lease_ok`: a primary that may have been
/// replaced grants nothing).
pub fn grant(
    read: &[MemberId],
    me: MemberId,
    live: MemberSet,
    from: MemberId,
    sent_at: u64,
    lease_ok: bool,
) -> Option<u64> {
    (lease_ok && from != me && read_server(read, me, live) == Some(from)).then_some(sent_at)
}

/// A secondary's read lease from its leader.
#[derive(Debug, Clone, Default)]
pub struct ReadLease {
    /// Heartbeats received: the leader's clock in it, our clock when it came.
    heard: VecDeque<(u64, Millis)>,
    until: Option<Millis>,
}

impl ReadLease {
    /// A heartbeat of our leader carrying its clock `leader_at` came at `now` (and is echoed).
    pub fn heard(&mut self, leader_at: u64, now: Millis) {
        if self.heard.len() == HEARD {
            self.heard.pop_front();
        }
        self.heard.push_back((leader_at, now));
    }

    /// The leader granted a lease of `ms` on our echo of its heartbeat `leader_at`: it holds
    /// until `ms` after that heartbeat *came* (a grant of a heartbeat we no longer remember
    /// gives nothing).
    pub fn granted(&mut self, leader_at: u64, ms: u64) {
        if let Some(&(_, at)) = self.heard.iter().find(|(l, _)| *l == leader_at) {
            let end = Millis(at.0 + ms);
            self.until = Some(self.until.map_or(end, |u| u.max(end)));
        }
    }

    /// Whether reads may be answered here at `now`.
    pub fn holds(&self, now: Millis) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When it ends, if it was granted.
    pub fn until(&self) -> Option<Millis> {
        self.until
    }

    /// The stream it came from is left: no lease, and no grant of an old heartbeat revives it.
    pub fn end(&mut self) {
        self.until = None;
        self.heard.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, ExportId, SeqNo};
    use crate::mirror::primary::{Primary, PrimaryConfig, PrimaryEffect};
    use crate::mirror::{Key, Touch};

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);
    const C: MemberId = MemberId(3);
    const LEASE: u64 = 200;

    fn set(ms: &[MemberId]) -> MemberSet {
        ms.iter().copied().collect()
    }

    #[test]
    fn the_read_server_is_the_first_listed_member_that_serves_the_stream() {
        // Table II's /srv/home4: reads B then A, writes A then B
        assert_eq!(read_server(&[B, A], A, set(&[B])), Some(B));
        assert_eq!(
            read_server(&[B, A], A, set(&[])),
            Some(A),
            "B out: the primary"
        );
        assert_eq!(read_server(&[C, B, A], A, set(&[B])), Some(B), "C not live");
        assert_eq!(
            read_server(&[B, A], B, set(&[A])),
            Some(B),
            "B took over writes too"
        );
        assert_eq!(read_server(&[C], A, set(&[B])), None);
    }

    #[test]
    fn only_the_read_server_gets_a_grant_and_only_under_the_primarys_lease() {
        assert_eq!(grant(&[B, A], A, set(&[B, C]), B, 77, true), Some(77));
        assert_eq!(grant(&[B, A], A, set(&[B, C]), C, 77, true), None);
        assert_eq!(grant(&[B, A], A, set(&[B]), B, 77, false), None);
        assert_eq!(
            grant(&[A, B], A, set(&[B]), B, 77, true),
            None,
            "A reads itself"
        );
    }

    #[test]
    fn reads_repeated_a_second_after_their_first_copy_count_as_unanswered() {
        let mut u = UnansweredReads::default();
        assert!(!u.datagram(1u32, Millis(0)));
        assert!(
            !u.datagram(1, Millis(500)),
            "a quick repeat: the reply may be on its way"
        );
        assert!(!u.datagram(1, Millis(1_100)), "one unanswered");
        assert!(!u.datagram(1, Millis(1_500)), "counted once a second");
        assert!(
            u.datagram(1, Millis(2_200)),
            "two: pass the read server over"
        );
        u.clear();
        assert!(!u.datagram(2, Millis(3_000)));
        assert!(!u.datagram(2, Millis(4_000)));
        // the window forgets: a repeat at 4 s, the next at 15.1 s — one within the window
        assert!(!u.datagram(2, Millis(15_100)));
        assert!(!u.datagram(3, Millis(15_200)));
        assert!(u.datagram(3, Millis(16_300)), "two within the window");
    }

    #[test]
    fn a_lease_counts_from_when_the_heartbeat_came_not_from_the_grant() {
        let mut l = ReadLease::default();
        assert!(!l.holds(Millis(0)));
        l.heard(1_000, Millis(50));
        // a stall: the grant is read long after
        l.granted(1_000, LEASE);
        assert!(l.holds(Millis(249)));
        assert!(
            !l.holds(Millis(250)),
            "ends a lease after the heartbeat came"
        );
        // a grant of a heartbeat never heard gives nothing
        l.granted(999, LEASE);
        assert_eq!(l.until(), Some(Millis(250)));
        // later heartbeats extend it; an older grant read late does not shorten it
        l.heard(1_100, Millis(150));
        l.granted(1_100, LEASE);
        l.granted(1_000, LEASE);
        assert_eq!(l.until(), Some(Millis(350)));
        l.end();
        assert!(!l.holds(Millis(200)));
        l.granted(1_100, LEASE);
        assert!(
            !l.holds(Millis(200)),
            "an old grant does not revive a lease ended"
        );
    }

    fn split_primary(live: &[MemberId]) -> Primary<u32> {
        Primary::new(
            ExportId(1),
            Epoch(1),
            SeqNo(0),
            set(live),
            PrimaryConfig {
                retry_ms: 100,
                max_sends: 3,
                max_pending: 16,
                read_lease_ms: LEASE,
            },
        )
    }

    fn released(p: &mut Primary<u32>) -> Vec<SeqNo> {
        std::iter::from_fn(|| p.poll_effect())
            .filter_map(|e| match e {
                PrimaryEffect::Release { seq, .. } => Some(seq),
                _ => None,
            })
            .collect()
    }

    fn write(p: &mut Primary<u32>, k: u64, now: Millis) -> SeqNo {
        let t = Touch {
            keys: vec![Key::whole(k)],
            barrier: false,
        };
        let s = p.submit(k, &t, 0, now).unwrap();
        p.local_done(s, 0);
        s
    }

    #[test]
    fn a_new_primary_of_a_split_export_releases_nothing_in_its_first_lease() {
        let mut p = split_primary(&[]);
        let s = write(&mut p, 1, Millis(0));
        assert!(released(&mut p).is_empty(), "held from the start");
        assert_eq!(p.next_deadline(), Some(Millis(0)), "ticks at once");
        p.tick(Millis(10));
        assert!(released(&mut p).is_empty());
        assert_eq!(p.next_deadline(), Some(Millis(10 + LEASE)));
        p.tick(Millis(10 + LEASE));
        assert_eq!(released(&mut p), vec![s]);
        assert!(!p.releases_held());
        // an export without split reads is never held
        let mut plain = prim_plain();
        let s = write(&mut plain, 1, Millis(0));
        assert_eq!(released(&mut plain), vec![s]);
    }

    fn prim_plain() -> Primary<u32> {
        Primary::new(
            ExportId(1),
            Epoch(1),
            SeqNo(0),
            MemberSet::EMPTY,
            PrimaryConfig::default(),
        )
    }

    #[test]
    fn failing_out_a_lease_holder_holds_releases_until_its_lease_ended() {
        let mut p = split_primary(&[B, C]);
        p.tick(Millis(0));
        p.tick(Millis(LEASE));
        assert!(!p.releases_held());
        p.lease_granted(B, Millis(1_000 + LEASE));
        let s = write(&mut p, 1, Millis(1_000));
        p.on_ack(C, Epoch(1), s, 0);
        // B is cut off: failed out while its lease may still let it answer reads
        p.member_lost(B);
        assert!(
            released(&mut p).is_empty(),
            "B may still serve reads without {s:?}"
        );
        p.tick(Millis(1_000 + LEASE - 1));
        assert!(released(&mut p).is_empty());
        p.tick(Millis(1_000 + LEASE));
        assert_eq!(released(&mut p), vec![s]);
        // C held no lease: failing it out holds nothing
        let s2 = write(&mut p, 2, Millis(1_300));
        p.member_lost(C);
        assert_eq!(released(&mut p), vec![s2]);
        // a lease is granted only to a live member
        p.lease_granted(B, Millis(5_000));
        let s3 = write(&mut p, 3, Millis(1_400));
        assert_eq!(released(&mut p), vec![s3]);
    }
}
