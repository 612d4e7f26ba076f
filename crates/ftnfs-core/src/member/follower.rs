//! Following a stream: a secondary's place in its primary's update stream, and the rules of
//! whom it follows — whose updates it applies, whose heartbeats it answers, whom it
//! acknowledges, when it stops following. The daemon (`ftnfsd/src/mirror/secondary_side.rs`)
//! and the whole-group simulation hold the same [`Follower`], so these rules are written once
//! (issue 12: "every decision moves to the core").
//!
//! ```text
//!   sealed ──Join accepted──▶ following(leader) ──leave / failed out / probed──▶ left
//!                                  │   ▲                                          │
//!                                  │   └──────────── Join accepted (same stream) ─┘
//!                                  └──close (clean stop, promotion)──▶ closed
//! ```

use crate::ids::{Epoch, ExportId, MemberId, Millis, SeqNo};
use crate::member::read_lease::ReadLease;
use crate::member::{rejoin, RoleView};
use crate::mirror::secondary::Secondary;

/// A secondary's place in one export's stream.
#[derive(Debug)]
pub struct Follower<P> {
    /// The data path: orders, applies and acknowledges the stream's updates.
    pub s: Secondary<P>,
    /// The stream (the primary's incarnation of it) this mirror applies.
    pub history: u64,
    pristine: bool,
    closed: bool,
    leader: Option<MemberId>,
    led_at: Option<Millis>,
    window: u64,
    /// The read lease from the leader (split read/write exports, [`super::read_lease`]).
    read: ReadLease,
}

impl<P: Clone> Follower<P> {
    /// `leader`'s Join of stream `history` in `epoch` from update `base` was accepted at
    /// `now`. `pristine`: nothing was ever applied to this mirror and the stream starts from
    /// an empty one.
    #[allow(clippy::too_many_arguments)]
    pub fn following(
        export: ExportId,
        epoch: Epoch,
        base: SeqNo,
        history: u64,
        leader: MemberId,
        pristine: bool,
        now: Millis,
        window: u64,
    ) -> Self {
        Follower {
            s: Secondary::new(export, epoch, base, window),
            history,
            pristine,
            closed: false,
            leader: Some(leader),
            led_at: Some(now),
            window,
            read: ReadLease::default(),
        }
    }

    /// Where a clean stop left this mirror (its seal): at `seq` of stream `history` in
    /// `epoch`, following nobody until a Join is accepted.
    pub fn sealed(export: ExportId, epoch: Epoch, seq: SeqNo, history: u64, window: u64) -> Self {
        Follower {
            s: Secondary::new(export, epoch, seq, window),
            history,
            pristine: false,
            closed: false,
            leader: None,
            led_at: None,
            window,
            read: ReadLease::default(),
        }
    }

    /// The member whose stream this mirror applies now (`None`: not joined yet, left it, or
    /// closed).
    pub fn leader(&self) -> Option<MemberId> {
        if self.closed {
            None
        } else {
            self.leader
        }
    }

    /// Joined to a leader and applying its stream.
    pub fn joined(&self) -> bool {
        self.leader().is_some()
    }

    /// Whether acknowledgements of applied updates go out, and to whom: the leader, also
    /// while closing (a clean stop drains what it received). A member that *left* — it
    /// vouched the leader lost, was failed out, was probed — acknowledges nothing more, not
    /// even what it had received before: the member it vouched to may have taken over
    /// without those updates (`Node::answer_query`).
    pub fn acks_to(&self) -> Option<MemberId> {
        self.leader
    }

    /// When the leader last led us: its Join accepted, or a heartbeat of our epoch.
    pub fn led_at(&self) -> Option<Millis> {
        self.led_at
    }

    /// Nothing applied since this member started, and the mirror was pristine then.
    pub fn pristine(&self) -> bool {
        self.pristine
    }

    /// An update was applied to the mirror.
    pub fn applied_one(&mut self) {
        self.pristine = false;
    }

    /// Stopping (a clean stop, or a promotion under way): nothing more is applied, so a
    /// seal or a new stream's base stays true.
    pub fn close(&mut self) {
        self.closed = true;
        self.read.end();
    }

    /// A promotion that could not persist its epoch: still a secondary.
    pub fn reopen(&mut self) {
        self.closed = false;
    }

    /// Whether it is stopping.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// `leader`'s Join (in `epoch`) of the stream already applied here was accepted at
    /// `now`. A new epoch of the same stream: the data path follows it from where it stands
    /// (its acknowledgements carry the epoch the leader counts).
    pub fn rejoined(&mut self, leader: MemberId, epoch: Epoch, now: Millis) {
        if self.leader != Some(leader) || self.s.epoch() != epoch {
            self.read.end();
        }
        self.leader = Some(leader);
        self.led_at = Some(now);
        if self.s.epoch() != epoch {
            let at = self.s.watermark();
            self.s = Secondary::new(self.s.export(), epoch, at, self.window);
        }
    }

    /// Stop following `m` if it leads us (it vouched lost, asked us to join again, probed
    /// us): whether it did.
    pub fn leave(&mut self, m: MemberId) -> bool {
        if self.leader() == Some(m) {
            self.leader = None;
            self.read.end();
            true
        } else {
            false
        }
    }

    /// Stop following whoever leads us.
    pub fn leave_any(&mut self) {
        self.leader = None;
        self.read.end();
    }

    /// `from` failed us out of its stream in `epoch`: whether that ends our following
    /// ([`rejoin::failed_out_applies`]).
    pub fn failed_out(&mut self, from: MemberId, epoch: Epoch) -> bool {
        if rejoin::failed_out_applies(self.leader, self.s.epoch(), from, epoch) {
            self.leader = None;
            self.read.end();
            true
        } else {
            false
        }
    }

    /// A heartbeat of `epoch` from `from`, carrying its clock `leader_at`, at `now`: whether
    /// to echo it. Only our leader's, of our epoch: an echo confirms the leader's lease, which
    /// a member that left must not (and may earn a read lease, counted from `now`).
    pub fn heartbeat(&mut self, from: MemberId, epoch: Epoch, leader_at: u64, now: Millis) -> bool {
        if self.leader() == Some(from) && self.s.epoch() == epoch {
            self.led_at = Some(now);
            self.read.heard(leader_at, now);
            true
        } else {
            false
        }
    }

    /// `from` granted a read lease of `ms` in `epoch` on our echo of its heartbeat
    /// `leader_at` ([`super::read_lease`]): taken only from our leader, in our epoch.
    pub fn read_granted(&mut self, from: MemberId, epoch: Epoch, leader_at: u64, ms: u64) {
        if self.leader() == Some(from) && self.s.epoch() == epoch {
            self.read.granted(leader_at, ms);
        }
    }

    /// Whether this member may answer reads at `now` (split exports): under its lease, while
    /// it follows the leader that granted it.
    pub fn reads(&self, now: Millis) -> bool {
        self.joined() && self.read.holds(now)
    }

    /// Whether an update sent by `from` is applied here: only the leader's.
    pub fn accepts_from(&self, from: MemberId) -> bool {
        self.leader() == Some(from)
    }

    /// Whether `from`, not our leader, may not order a resync of this mirror: we follow
    /// another primary.
    pub fn follows_other_than(&self, from: MemberId) -> bool {
        self.leader().is_some_and(|l| l != from)
    }

    /// What is applied here, for a Join's acceptance ([`rejoin::secondary_join`]).
    pub fn applied(&self) -> rejoin::Applied {
        rejoin::Applied {
            history: self.history,
            watermark: self.s.watermark(),
            backlog: self.s.backlog(),
            pristine: self.pristine,
        }
    }
}

/// The role view of a secondary with `follower` (`None`: no stream applied yet), whose listed
/// primary (or last one followed) is `listed`, `incoming` a resync into it running, `known`
/// the highest epoch it has persisted.
pub fn secondary_view<P: Clone>(
    follower: Option<&Follower<P>>,
    listed: MemberId,
    incoming: bool,
    known: Epoch,
) -> RoleView {
    let joined = follower.is_some_and(|f| f.joined());
    RoleView::Secondary {
        primary: follower.and_then(|f| f.leader()).unwrap_or(listed),
        joined,
        in_step: joined && follower.is_some_and(|f| f.s.backlog() == 0),
        incoming,
        led_at: follower.and_then(|f| f.led_at()),
        epoch: follower.map_or(known, |f| f.s.epoch().max(known)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);
    const E: ExportId = ExportId(1);

    fn f() -> Follower<u32> {
        Follower::following(E, Epoch(3), SeqNo(10), 7, A, false, Millis(100), 64)
    }

    #[test]
    fn only_the_leader_is_followed() {
        let mut f = f();
        assert!(f.accepts_from(A) && !f.accepts_from(B));
        assert!(!f.heartbeat(B, Epoch(3), 0, Millis(150)), "not our leader");
        assert!(!f.heartbeat(A, Epoch(2), 0, Millis(150)), "not our epoch");
        assert_eq!(f.led_at(), Some(Millis(100)));
        assert!(f.heartbeat(A, Epoch(3), 0, Millis(200)));
        assert_eq!(f.led_at(), Some(Millis(200)));
        assert!(f.follows_other_than(B) && !f.follows_other_than(A));
    }

    /// A read lease is the leader's, in our epoch, and ends with the following.
    #[test]
    fn a_read_lease_comes_from_the_leader_and_ends_when_the_member_leaves() {
        let mut f = f();
        assert!(f.heartbeat(A, Epoch(3), 5_000, Millis(200)));
        f.read_granted(B, Epoch(3), 5_000, 200);
        assert!(!f.reads(Millis(210)), "B does not lead us");
        f.read_granted(A, Epoch(2), 5_000, 200);
        assert!(!f.reads(Millis(210)), "another epoch");
        f.read_granted(A, Epoch(3), 5_000, 200);
        assert!(f.reads(Millis(210)) && !f.reads(Millis(400)));
        assert!(f.leave(A));
        assert!(!f.reads(Millis(210)), "left the stream");
        // back in the same stream and epoch: a new lease is needed
        f.rejoined(A, Epoch(3), Millis(220));
        f.read_granted(A, Epoch(3), 5_000, 200);
        assert!(!f.reads(Millis(230)));
        assert!(f.heartbeat(A, Epoch(3), 5_100, Millis(300)));
        f.read_granted(A, Epoch(3), 5_100, 200);
        assert!(f.reads(Millis(300)));
        f.close();
        assert!(!f.reads(Millis(300)), "closing");
    }

    /// A member that left acknowledges nothing more and answers no heartbeat.
    #[test]
    fn leaving_ends_acks_and_echoes() {
        let mut f = f();
        assert!(!f.leave(B), "B does not lead us");
        assert!(f.leave(A));
        assert_eq!((f.leader(), f.acks_to()), (None, None));
        assert!(!f.heartbeat(A, Epoch(3), 0, Millis(300)));
        assert!(!f.accepts_from(A));
        f.rejoined(A, Epoch(4), Millis(400));
        assert_eq!((f.leader(), f.led_at()), (Some(A), Some(Millis(400))));
        assert_eq!((f.s.epoch(), f.s.watermark()), (Epoch(4), SeqNo(10)));
    }

    /// Closing (a clean stop) stops applying but still acknowledges what was received.
    #[test]
    fn closing_keeps_acks_but_not_the_stream() {
        let mut f = f();
        f.close();
        assert_eq!((f.leader(), f.acks_to()), (None, Some(A)));
        assert!(!f.joined() && !f.accepts_from(A));
        f.reopen();
        assert!(f.joined());
    }

    #[test]
    fn the_view_of_a_follower() {
        let f = f();
        let v = secondary_view(Some(&f), B, false, Epoch(4));
        assert_eq!(
            v,
            RoleView::Secondary {
                primary: A,
                joined: true,
                in_step: true,
                incoming: false,
                led_at: Some(Millis(100)),
                epoch: Epoch(4),
            }
        );
        let none = secondary_view::<u32>(None, B, true, Epoch(2));
        assert!(matches!(
            none,
            RoleView::Secondary {
                primary: B,
                joined: false,
                epoch: Epoch(2),
                ..
            }
        ));
    }
}
