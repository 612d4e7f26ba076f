//! The role changes the machine orders (`Effect::Promote`, `Effect::FinishStepDown`), as the
//! shell must carry them out: whether its state allows the change *now*, and what the new
//! role starts from. Both shells — the daemon's driver (`ftnfsd/src/mirror/`) and the
//! whole-group simulation — call these instead of deciding on their own (the simulation used
//! to repeat the daemon's checks, and a difference between the two would go untested).

use crate::ids::{Epoch, MemberId};
use crate::mirror::MemberSet;

/// Whether a secondary may take over now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// It follows no stream (not joined, or closing): nothing to take over from.
    NotInStep,
    /// Updates it accepted are still being applied (or, proxy mode, known by their order
    /// only): the next tick.
    Applying,
    /// Take over in this epoch (persist it before anything of it is sent).
    Go {
        /// The new epoch.
        epoch: Epoch,
    },
}

/// A secondary following a stream (`joined`), with `applying` local applies running, that
/// has seen epoch `seen` and persisted `persisted`, is told to take over.
pub fn promotion(joined: bool, applying: usize, seen: Epoch, persisted: Epoch) -> Promotion {
    if !joined {
        Promotion::NotInStep
    } else if applying > 0 {
        Promotion::Applying
    } else {
        Promotion::Go {
            epoch: next_epoch(seen, persisted),
        }
    }
}

/// The epoch a member that takes a role leads: after every epoch it has seen or persisted
/// (a member never leads an epoch it might have led, or followed, before).
pub fn next_epoch(seen: Epoch, persisted: Epoch) -> Epoch {
    Epoch(seen.0.max(persisted.0) + 1)
}

/// What a primary in a planned step-down does at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// It is not stepping down.
    No,
    /// Updates are still in flight: wait.
    Draining,
    /// The member it steps down for fell out of its stream meanwhile (only a live member
    /// holds every released update): standing down would leave the group without a
    /// primary — serve on (the simulation's "0 primaries").
    Cancel,
    /// Stand by (clean, at the last update) and tell `to` to take over.
    StandBy {
        /// The member that takes over.
        to: MemberId,
    },
}

/// A primary stepping down (`stepping_down`) for `handoff_to`, with `pending` updates in
/// flight and `live` secondaries.
pub fn step_down(
    stepping_down: bool,
    pending: usize,
    handoff_to: Option<MemberId>,
    live: MemberSet,
) -> StepDown {
    if !stepping_down {
        return StepDown::No;
    }
    if pending > 0 {
        return StepDown::Draining;
    }
    match handoff_to.filter(|m| live.contains(*m)) {
        Some(to) => StepDown::StandBy { to },
        None => StepDown::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: MemberId = MemberId(2);

    #[test]
    fn a_secondary_takes_over_only_in_step_and_idle_in_a_new_epoch() {
        assert_eq!(
            promotion(false, 0, Epoch(3), Epoch(3)),
            Promotion::NotInStep
        );
        assert_eq!(promotion(true, 1, Epoch(3), Epoch(3)), Promotion::Applying);
        assert_eq!(
            promotion(true, 0, Epoch(3), Epoch(5)),
            Promotion::Go { epoch: Epoch(6) },
            "after what it persisted (a refused Join of epoch 5, say)"
        );
        assert_eq!(
            promotion(true, 0, Epoch(7), Epoch(5)),
            Promotion::Go { epoch: Epoch(8) }
        );
    }

    #[test]
    fn a_step_down_waits_for_its_updates_and_needs_its_member_live() {
        let mut live = MemberSet::EMPTY;
        live.insert(B);
        assert_eq!(step_down(false, 0, Some(B), live), StepDown::No);
        assert_eq!(step_down(true, 2, Some(B), live), StepDown::Draining);
        assert_eq!(
            step_down(true, 0, Some(B), live),
            StepDown::StandBy { to: B }
        );
        assert_eq!(
            step_down(true, 0, Some(B), MemberSet::EMPTY),
            StepDown::Cancel
        );
        assert_eq!(step_down(true, 0, None, live), StepDown::Cancel);
    }
}
