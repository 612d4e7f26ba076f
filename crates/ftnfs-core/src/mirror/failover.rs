//! Failover decisions (DESIGN.md "Failure handling"; patent pp. 25–30, Figures 4 and 5):
//! when does a secondary take over an export from its primary.
//!
//! The rule that matters most is **never two primaries**: silence alone does not prove that
//! the primary is dead — the secondary may be the one cut off. So a secondary promotes only
//! on evidence that the primary *process* is gone while its *host* still answers: after its
//! heartbeats stopped, the primary's host refused a new peer connection (TCP RST: nothing
//! listens any more). A primary that is merely unreachable (partition, host down) is not
//! replaced; the secondary waits and says why. (A witness that lets a majority decide on
//! silence is future work.)
//!
//! Only the first listed secondary promotes; the others follow the new primary when it
//! asks them to join (its `Join` names the stream they were in).

use crate::ids::Millis;

/// Timing of failure detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before the primary counts as silent.
    pub misses: u32,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            misses: 4,
        }
    }
}

impl FailoverConfig {
    /// Silence longer than this means the peer missed its heartbeats.
    pub fn silence_ms(&self) -> u64 {
        self.heartbeat_ms * u64::from(self.misses.max(1))
    }
}

/// What a secondary knows of its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrimaryWatch {
    /// Last message (heartbeat, update) from it.
    pub last_heard: Option<Millis>,
    /// Last time its host refused a connection to its peer port.
    pub refused_at: Option<Millis>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The primary is alive (or we never followed it): nothing to do.
    Follow,
    /// The primary is silent but there is no proof it is dead: do not promote.
    HoldOff(&'static str),
    /// Take over.
    Promote(&'static str),
}

/// Decides for a secondary that is in step with its primary (`joined`) and is `first` among
/// the live secondaries listed for the export.
pub fn decide(
    w: &PrimaryWatch,
    cfg: &FailoverConfig,
    now: Millis,
    joined: bool,
    first: bool,
) -> Verdict {
    let Some(heard) = w.last_heard else {
        return Verdict::Follow; // never followed: nothing to take over from
    };
    if !joined {
        return Verdict::Follow;
    }
    if now.since(heard) < cfg.silence_ms() {
        return Verdict::Follow;
    }
    let process_gone = w.refused_at.is_some_and(|r| r > heard);
    match (process_gone, first) {
        (true, true) => Verdict::Promote(
            "primary process gone (heartbeats stopped, its host refuses connections)",
        ),
        (true, false) => Verdict::HoldOff("primary gone; the first listed secondary takes over"),
        (false, _) => Verdict::HoldOff(
            "primary silent but not proven dead (partition or host down?): not promoting",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: (last heard, refused at, now, joined, first, verdict kind).
    type Case = (Option<u64>, Option<u64>, u64, bool, bool, &'static str);

    /// Scenario table (patent pp. 25–30; DESIGN.md "never two primaries").
    #[test]
    fn scenarios() {
        let cfg = FailoverConfig::default(); // silence after 400 ms
        let cases: &[Case] = &[
            (Some(1000), None, 1100, true, true, "follow"), // heartbeats flowing
            (None, Some(500), 5000, true, true, "follow"),  // never heard it
            (Some(1000), Some(1500), 1500, false, true, "follow"), // not in step: no claim
            (Some(1000), None, 2000, true, true, "hold"),   // silence only: partition?
            (Some(1000), Some(900), 2000, true, true, "hold"), // refusal is older than contact
            (Some(1000), Some(1450), 1450, true, true, "promote"), // silent and refused
            (Some(1000), Some(1450), 1300, true, true, "follow"), // refused but not silent yet
            (Some(1000), Some(1450), 1450, true, false, "hold"), // not first in line
        ];
        for (i, &(heard, refused, now, joined, first, want)) in cases.iter().enumerate() {
            let w = PrimaryWatch {
                last_heard: heard.map(Millis),
                refused_at: refused.map(Millis),
            };
            let got = match decide(&w, &cfg, Millis(now), joined, first) {
                Verdict::Follow => "follow",
                Verdict::HoldOff(_) => "hold",
                Verdict::Promote(_) => "promote",
            };
            assert_eq!(got, want, "case {i}");
        }
    }
}
