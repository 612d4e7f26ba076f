//! Startup negotiation and probe answers (`Documentation/08-rejoin.md` "Who starts"): a
//! member that follows no primary asks the others what they are, and starts as primary only
//! when it heard every other member (or saw its process gone), none is primary and its own
//! mirror is the best ([`crate::mirror::resync::startup`]).

use crate::mirror::resync::{Candidate, Peer};

/// What a member answers a `Probe` about one export (the wire's `state` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeState {
    /// It is primary.
    Primary,
    /// It is a secondary following a live primary other than the asker.
    Following,
    /// It follows nobody: a candidate.
    Candidate,
    /// It stands by (deposed, stood down, or never started).
    Standby,
}

impl ProbeState {
    /// The wire value.
    pub fn code(self) -> u32 {
        match self {
            ProbeState::Primary => 1,
            ProbeState::Following => 2,
            ProbeState::Candidate => 3,
            ProbeState::Standby => 4,
        }
    }

    /// From the wire value (unknown values are taken for a standby: no claim).
    pub fn from_code(c: u32) -> ProbeState {
        match c {
            1 => ProbeState::Primary,
            2 => ProbeState::Following,
            3 => ProbeState::Candidate,
            _ => ProbeState::Standby,
        }
    }

    /// How the asker counts this answer, given the answerer's claim.
    pub fn as_peer(self, claim: Candidate) -> Peer {
        match self {
            ProbeState::Primary | ProbeState::Following => Peer::Primary,
            ProbeState::Candidate | ProbeState::Standby => Peer::Member(claim),
        }
    }
}

/// What a secondary answers a probe from `asker`: following a live primary — unless that
/// primary is the asker itself. A member asks because it is not primary (it stood down, was
/// fenced, or restarted), so a secondary still joined to it follows nobody and is only a
/// candidate; taking it for a primary kept a group without one for good (issue 12: a fenced
/// primary waited for its own secondary).
pub fn secondary_answer(
    leader: Option<crate::ids::MemberId>,
    asker: crate::ids::MemberId,
) -> ProbeState {
    match leader {
        Some(l) if l != asker => ProbeState::Following,
        _ => ProbeState::Candidate,
    }
}

/// The place of member `m` in an export's member list, from this member's `others` (the list
/// without it, in order) and its own place `me`.
pub fn position_of(others: &[crate::ids::MemberId], me: usize, m: crate::ids::MemberId) -> usize {
    let i = others
        .iter()
        .position(|o| *o == m)
        .unwrap_or(usize::MAX - 1);
    if i < me {
        i
    } else {
        i + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;

    #[test]
    fn a_secondary_of_the_asker_is_only_a_candidate() {
        let (a, b) = (MemberId(1), MemberId(2));
        assert_eq!(secondary_answer(Some(a), b), ProbeState::Following);
        assert_eq!(secondary_answer(Some(a), a), ProbeState::Candidate);
        assert_eq!(secondary_answer(None, a), ProbeState::Candidate);
        for s in [
            ProbeState::Primary,
            ProbeState::Following,
            ProbeState::Candidate,
            ProbeState::Standby,
        ] {
            assert_eq!(ProbeState::from_code(s.code()), s);
        }
    }

    #[test]
    fn positions_skip_our_own_place() {
        // list a b c, we are b (place 1): others = [a, c]
        let (a, c) = (MemberId(1), MemberId(3));
        assert_eq!(position_of(&[a, c], 1, a), 0);
        assert_eq!(position_of(&[a, c], 1, c), 2);
    }
}
