//! Fencing: when does a primary stop serving (DESIGN.md "never two primaries";
//! `Documentation/07-failover.md`).
//!
//! Three rules, each making a second primary harmless *by construction*:
//! 1. **Isolation** ([`isolated`]): a primary of a group with a witness that hears neither
//!    the witness nor any live secondary for the silence time stands down — it is the
//!    minority, and the majority replaces it only after twice that time.
//! 2. **Read lease** ([`lease_ok`]): a primary answers reads from its own mirror only while
//!    every live secondary confirmed its epoch within the lease (half the silence time). A
//!    secondary takes over only after the whole silence time, so a primary frozen while
//!    another took over finds its lease expired when it resumes and answers nobody. Updates
//!    need no lease: they are released only when every live secondary acknowledged them in
//!    this epoch.
//! 3. **Deposition** ([`deposed_by`]): any member following a newer epoch deposes us.
//!
//! What a fenced primary does, in this order (the order is the rule — clients must follow
//! the primary before anything else happens here): drop every unreleased reply, give up the
//! virtual IP, reset its client connections, then stand by.

use std::collections::BTreeMap;

use super::settings::Settings;
use crate::ids::{Epoch, MemberId, Millis};
use crate::mirror::MemberSet;

/// Whether a primary is cut off from the majority and must stop: a witness is configured
/// (and was heard once), and neither the witness nor any live secondary was heard for the
/// silence time.
pub fn isolated(
    witness_heard: Option<Millis>,
    secondaries_heard: Option<Millis>,
    s: &Settings,
    now: Millis,
) -> bool {
    let silent = |h: Option<Millis>| h.is_none_or(|h| now.since(h) > s.silence_ms());
    witness_heard.is_some() && silent(witness_heard) && silent(secondaries_heard)
}

/// The lease of a primary (rule 2). `confirmed`: when each secondary last confirmed our
/// epoch (its echo of our heartbeat, an acknowledgement, its join). Without a witness a
/// secondary takes over only when the primary's process is provably gone, so a live primary,
/// even a frozen one, is never replaced and needs no lease. With a witness and no live
/// secondary, the witness must have backed us: `witness_backed` is when we sent the newest
/// ping it answered (it answers a member it reported lost with `WitnessLost` instead) — a
/// primary that failed its secondaries out and was then frozen while one of them took over
/// must not serve alone when it resumes (found by `tests/sim_group.rs`).
pub fn lease_ok(
    has_witness: bool,
    live: MemberSet,
    confirmed: &BTreeMap<MemberId, Millis>,
    witness_backed: Option<Millis>,
    s: &Settings,
    now: Millis,
) -> bool {
    let fresh = |t: Option<Millis>| t.is_some_and(|t| now.since(t) <= s.lease_ms());
    if !has_witness {
        return true;
    }
    if live.is_empty() {
        return fresh(witness_backed);
    }
    live.iter().all(|m| fresh(confirmed.get(&m).copied()))
}

/// Rule 3: a member that follows `theirs` deposes a primary of `ours`.
pub fn deposed_by(ours: Epoch, theirs: Epoch) -> bool {
    theirs > ours
}

/// Rule 3 between two primaries, which may have reached the *same* epoch (each promoted
/// from the epoch it knew, at once: a hand-off whose `TakeOver` arrived late while the
/// member that stood down started by itself). The newer epoch wins; on a tie the member
/// listed first does, so that exactly one of the two stands down. `mine`/`theirs`: places
/// in the export's member list.
pub fn yields_to(ours: Epoch, mine: usize, theirs: Epoch, their_place: usize) -> bool {
    theirs > ours || (theirs == ours && their_place < mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_primary_fences_itself_before_the_majority_acts() {
        let s = Settings::default();
        // no witness configured (never heard): never isolated
        assert!(!isolated(None, None, &s, Millis(10_000)));
        // witness and secondaries silent for more than 400 ms: isolated
        assert!(isolated(
            Some(Millis(1000)),
            Some(Millis(1000)),
            &s,
            Millis(1401)
        ));
        // a secondary still heard: not isolated
        assert!(!isolated(
            Some(Millis(1000)),
            Some(Millis(1300)),
            &s,
            Millis(1401)
        ));
    }

    /// The lease must run out before any secondary may take over (silence), and a witness
    /// says "lost" only after twice the silence: the order of the three times is the rule.
    #[test]
    fn lease_expires_before_a_takeover_is_possible() {
        let s = Settings::default();
        assert!(s.lease_ms() < s.silence_ms());
        let live: MemberSet = [MemberId(1)].into_iter().collect();
        let mut confirmed = BTreeMap::new();
        assert!(!lease_ok(true, live, &confirmed, None, &s, Millis(1000)));
        assert!(lease_ok(false, live, &confirmed, None, &s, Millis(1000)));
        confirmed.insert(MemberId(1), Millis(1000));
        let at = |t| lease_ok(true, live, &confirmed, None, &s, Millis(t));
        assert!(at(1000 + s.lease_ms()));
        assert!(!at(1001 + s.lease_ms()));
        // alone: only while the witness backs us (a ping sent within the lease answered)
        let alone = |backed: Option<u64>, t| {
            lease_ok(
                true,
                MemberSet::EMPTY,
                &confirmed,
                backed.map(Millis),
                &s,
                Millis(t),
            )
        };
        assert!(!alone(None, 5000));
        assert!(alone(Some(4900), 5000));
        assert!(!alone(Some(1000), 5000)); // frozen since: answers nobody
    }

    #[test]
    fn of_two_primaries_in_one_epoch_exactly_one_yields() {
        assert!(yields_to(Epoch(3), 1, Epoch(3), 0));
        assert!(!yields_to(Epoch(3), 0, Epoch(3), 1));
        assert!(yields_to(Epoch(3), 0, Epoch(4), 1));
        assert!(!yields_to(Epoch(4), 1, Epoch(3), 0));
    }

    #[test]
    fn only_a_newer_epoch_deposes() {
        assert!(deposed_by(Epoch(3), Epoch(4)));
        assert!(!deposed_by(Epoch(4), Epoch(4)));
        assert!(!deposed_by(Epoch(5), Epoch(4)));
    }
}
