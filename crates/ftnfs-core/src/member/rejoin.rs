//! Rejoin and hand-back (`Documentation/08-rejoin.md`): when a member that stood by may
//! follow a new primary without a copy, and when a primary gives the role back.

use crate::ids::{Epoch, SeqNo};

/// Why a standby refuses to follow a primary that asks it to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefusal {
    /// The offered epoch is older than one this member persisted: the asker is deposed.
    OlderEpoch,
    /// Its mirror is not exactly where the new stream starts: it needs a resync.
    NeedsResync,
}

/// A member that stood down cleanly at `clean_at` (stream, last update) follows a primary
/// whose stream starts exactly there, in a newer epoch, if its mirror is complete.
pub fn standby_join(
    persisted: Epoch,
    standby_epoch: Epoch,
    clean_at: Option<(u64, SeqNo)>,
    offered_epoch: Epoch,
    offered_start: (u64, SeqNo),
    complete: bool,
) -> Result<(), JoinRefusal> {
    if offered_epoch < persisted {
        return Err(JoinRefusal::OlderEpoch);
    }
    if clean_at != Some(offered_start) || offered_epoch <= standby_epoch || !complete {
        return Err(JoinRefusal::NeedsResync);
    }
    Ok(())
}

/// A primary's invitation to join its stream (`Join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// It comes from the export's listed primary.
    pub from_listed_primary: bool,
    /// Its epoch.
    pub epoch: Epoch,
    /// The update its stream continues from (everything up to it is released).
    pub base: SeqNo,
    /// Its stream.
    pub history: u64,
    /// The stream it was a secondary of before it took over (0: none).
    pub prev: u64,
    /// Its mirror was empty when it started.
    pub pristine: bool,
}

/// Where a secondary's mirror stands, for a join decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The stream it applies.
    pub history: u64,
    /// Everything up to here is applied.
    pub watermark: SeqNo,
    /// Updates received and not yet applied.
    pub backlog: usize,
    /// Nothing applied since it started, from an empty mirror.
    pub pristine: bool,
}

/// Why a secondary refuses to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The offer's epoch is older than one persisted here: the asker is deposed.
    OlderEpoch {
        /// The epoch known here.
        known: Epoch,
    },
    /// Only the listed primary leads the first epoch.
    NotListed,
    /// This mirror is incomplete (interrupted resync, host crash).
    Incomplete,
    /// A takeover by a fellow secondary that starts where this mirror is not.
    NotAtBase {
        /// Where this mirror is.
        at: SeqNo,
    },
    /// Updates of this stream were released that this mirror missed.
    Missed {
        /// Where this mirror is.
        at: SeqNo,
    },
    /// Another stream than the one applied here.
    OtherStream,
    /// This mirror is empty, the primary's is not.
    PrimaryNotEmpty,
    /// This mirror is not empty and applies no stream.
    NotEmpty,
}

impl Refusal {
    /// The refusal leaves the asker primary but needs a resync of this member (all but an
    /// older epoch and a wrong asker).
    pub fn needs_resync(&self) -> bool {
        !matches!(self, Refusal::OlderEpoch { .. } | Refusal::NotListed)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OlderEpoch { known } => {
                write!(f, "the epoch is older than epoch {known} known here")
            }
            Refusal::NotListed => write!(f, "only the listed primary leads the first epoch"),
            Refusal::Incomplete => write!(
                f,
                "this mirror is incomplete (an interrupted resync or a host crash); needs resync"
            ),
            Refusal::NotAtBase { at } => write!(
                f,
                "the new primary starts elsewhere, this mirror is at {at}; needs resync"
            ),
            Refusal::Missed { at } => write!(
                f,
                "missed updates: applied up to {at}, the primary released more; needs resync"
            ),
            Refusal::OtherStream => write!(
                f,
                "another update stream than the one applied here; needs resync"
            ),
            Refusal::PrimaryNotEmpty => write!(f, "primary mirror is not empty; needs resync"),
            Refusal::NotEmpty => write!(f, "this mirror is not empty; needs resync"),
        }
    }
}

/// Whether a secondary joins a primary's stream without a copy (`Documentation/08-rejoin.md`):
/// `Ok(true)` keeps its position in the same stream, `Ok(false)` starts following the new
/// stream at the offer's base. `persisted`: the epoch persisted here; `applied`: the stream
/// it applies, if any; `mirror_pristine`: the mirror is empty.
pub fn secondary_join(
    offer: &Offer,
    persisted: Epoch,
    complete: bool,
    applied: Option<Applied>,
    mirror_pristine: bool,
) -> Result<bool, Refusal> {
    if offer.epoch < persisted {
        return Err(Refusal::OlderEpoch { known: persisted });
    }
    // Only the listed primary leads the first epoch; any later one was won by a takeover.
    let fellow = offer.prev != 0 && applied.is_some_and(|a| a.history == offer.prev);
    if !offer.from_listed_primary && offer.epoch.0 <= 1 && !fellow {
        return Err(Refusal::NotListed);
    }
    if !complete {
        return Err(Refusal::Incomplete);
    }
    match applied {
        // a takeover: the new primary was our fellow secondary in the same stream, and we
        // stand exactly where it starts
        Some(a) if fellow => {
            if a.watermark == offer.base && a.backlog == 0 {
                Ok(false)
            } else {
                Err(Refusal::NotAtBase { at: a.watermark })
            }
        }
        Some(a) if a.history == offer.history => {
            if a.watermark >= offer.base {
                Ok(true)
            } else {
                Err(Refusal::Missed { at: a.watermark })
            }
        }
        Some(a) if a.pristine && offer.pristine && offer.base == SeqNo(0) => Ok(false),
        Some(_) => Err(Refusal::OtherStream),
        None if mirror_pristine && offer.pristine && offer.base == SeqNo(0) => Ok(false),
        None if mirror_pristine => Err(Refusal::PrimaryNotEmpty),
        None => Err(Refusal::NotEmpty),
    }
}

/// Whether a secondary refusing a join must leave the stream it follows: the offer is of a
/// newer epoch than any it knows (persisted, or of the stream it applies), so the primary it
/// followed was replaced. Staying "joined" to it kept the member from accepting the new
/// primary's resync and, once the old primary died, let it take over with a mirror the group
/// had moved on from (found by `tests/sim_group.rs`).
pub fn leaves_old_stream(persisted: Epoch, applied: Option<Epoch>, offered: Epoch) -> bool {
    offered > persisted && applied.is_none_or(|a| offered > a)
}

/// Whether a secondary following `leader` in `epoch` leaves the stream on a `FailedOut`
/// from `from` of `theirs`: only its own leader, in the epoch it follows, can put it out.
/// A secondary put out is no longer joined: it never takes over from that stream, and the
/// primary's next join finds what it missed (a partial resync).
pub fn failed_out_applies(
    leader: Option<crate::ids::MemberId>,
    epoch: Epoch,
    from: crate::ids::MemberId,
    theirs: Epoch,
) -> bool {
    leader == Some(from) && epoch == theirs
}

/// A primary gives its role back to the listed primary that asks (it rejoined through a
/// resync) only when that member is a live secondary in step, and only once.
pub fn accept_handback(asker_live: bool, already_handing_over: bool) -> bool {
    asker_live && !already_handing_over
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_follows_only_the_stream_it_stood_down_at() {
        let at = Some((7, SeqNo(40)));
        let ok = |e: u64, start: (u64, u64), complete: bool| {
            standby_join(
                Epoch(3),
                Epoch(3),
                at,
                Epoch(e),
                (start.0, SeqNo(start.1)),
                complete,
            )
        };
        assert_eq!(ok(4, (7, 40), true), Ok(()));
        assert_eq!(ok(4, (7, 39), true), Err(JoinRefusal::NeedsResync));
        assert_eq!(ok(4, (8, 40), true), Err(JoinRefusal::NeedsResync));
        assert_eq!(ok(3, (7, 40), true), Err(JoinRefusal::NeedsResync)); // not newer
        assert_eq!(ok(4, (7, 40), false), Err(JoinRefusal::NeedsResync));
        assert_eq!(ok(2, (7, 40), true), Err(JoinRefusal::OlderEpoch));
    }

    /// Scenario table of joins (`Documentation/08-rejoin.md`).
    #[test]
    fn secondary_join_scenarios() {
        let offer = |from_listed, epoch, base, history, prev, pristine| Offer {
            from_listed_primary: from_listed,
            epoch: Epoch(epoch),
            base: SeqNo(base),
            history,
            prev,
            pristine,
        };
        let at = |history, w, backlog| {
            Some(Applied {
                history,
                watermark: SeqNo(w),
                backlog,
                pristine: false,
            })
        };
        type Row = (
            Offer,
            u64,
            bool,
            Option<Applied>,
            bool,
            Result<bool, Refusal>,
        );
        let rows: Vec<Row> = vec![
            // the same stream, in step or ahead of the released base: keep going
            (
                offer(true, 1, 10, 7, 0, false),
                1,
                true,
                at(7, 12, 0),
                false,
                Ok(true),
            ),
            (
                offer(true, 1, 10, 7, 0, false),
                1,
                true,
                at(7, 9, 0),
                false,
                Err(Refusal::Missed { at: SeqNo(9) }),
            ),
            // a takeover by a fellow secondary of stream 7 starting at 12
            (
                offer(false, 2, 12, 8, 7, false),
                1,
                true,
                at(7, 12, 0),
                false,
                Ok(false),
            ),
            (
                offer(false, 2, 12, 8, 7, false),
                1,
                true,
                at(7, 11, 0),
                false,
                Err(Refusal::NotAtBase { at: SeqNo(11) }),
            ),
            (
                offer(false, 2, 12, 8, 7, false),
                1,
                true,
                at(7, 12, 1),
                false,
                Err(Refusal::NotAtBase { at: SeqNo(12) }),
            ),
            // older epochs are refused; the first epoch only from the listed primary
            (
                offer(true, 1, 10, 7, 0, false),
                2,
                true,
                at(7, 12, 0),
                false,
                Err(Refusal::OlderEpoch { known: Epoch(2) }),
            ),
            (
                offer(false, 1, 10, 7, 0, false),
                1,
                true,
                at(7, 12, 0),
                false,
                Err(Refusal::NotListed),
            ),
            // incomplete mirrors and strangers need a copy
            (
                offer(true, 1, 10, 7, 0, false),
                1,
                false,
                at(7, 12, 0),
                false,
                Err(Refusal::Incomplete),
            ),
            (
                offer(true, 1, 10, 9, 0, false),
                1,
                true,
                at(7, 12, 0),
                false,
                Err(Refusal::OtherStream),
            ),
            // two empty mirrors start together; one empty one does not
            (
                offer(true, 1, 0, 9, 0, true),
                1,
                true,
                None,
                true,
                Ok(false),
            ),
            (
                offer(true, 1, 3, 9, 0, false),
                1,
                true,
                None,
                true,
                Err(Refusal::PrimaryNotEmpty),
            ),
            (
                offer(true, 1, 0, 9, 0, true),
                1,
                true,
                None,
                false,
                Err(Refusal::NotEmpty),
            ),
        ];
        for (i, (o, persisted, complete, applied, pristine, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                secondary_join(&o, Epoch(persisted), complete, applied, pristine),
                want,
                "row {i}"
            );
        }
    }

    #[test]
    fn a_newer_epoch_ends_following_the_old_primary() {
        assert!(leaves_old_stream(Epoch(1), Some(Epoch(1)), Epoch(2)));
        assert!(leaves_old_stream(Epoch(1), None, Epoch(2)));
        assert!(!leaves_old_stream(Epoch(2), Some(Epoch(2)), Epoch(2)));
        assert!(!leaves_old_stream(Epoch(3), Some(Epoch(1)), Epoch(2)));
    }

    #[test]
    fn only_the_leader_in_its_epoch_puts_a_secondary_out() {
        use crate::ids::MemberId;
        let (a, b) = (MemberId(1), MemberId(2));
        assert!(failed_out_applies(Some(a), Epoch(2), a, Epoch(2)));
        assert!(!failed_out_applies(Some(a), Epoch(2), b, Epoch(2)));
        assert!(!failed_out_applies(Some(a), Epoch(2), a, Epoch(1)));
        assert!(!failed_out_applies(None, Epoch(2), a, Epoch(2)));
    }

    #[test]
    fn hand_back_once_to_a_live_member() {
        assert!(accept_handback(true, false));
        assert!(!accept_handback(false, false));
        assert!(!accept_handback(true, true));
    }
}
