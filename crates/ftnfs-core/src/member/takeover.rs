//! Takeover: when does a secondary take an export over from its primary (DESIGN.md "Failure
//! handling"; patent pp. 25–30, Figures 4 and 5).
//!
//! The rule that matters most is **never two primaries**: silence alone does not prove that
//! the primary is dead — the secondary may be the one cut off. So a secondary promotes only
//! on evidence:
//! - the primary *process* is gone while its *host* still answers: after its heartbeats
//!   stopped, the primary's host refused a new peer connection (TCP RST: nothing listens);
//! - or a **witness** (a third vote, `ftnfsd --witness-mode`) has not heard the primary for
//!   twice the silence time either, so the secondary and the witness are a majority. A
//!   primary that hears neither the witness nor any secondary for the silence time fences
//!   itself first ([`super::fencing::isolated`]) — it is the minority — so it has stopped
//!   before the majority replaces it.
//!
//! A primary that is merely unreachable without a witness is not replaced; the secondary
//! waits and says why.
//!
//! Only the first listed secondary promotes; the others follow the new primary when it
//! asks them to join (its `Join` names the stream they were in).

use super::evidence::Evidence;
use super::settings::FailoverConfig;
use crate::ids::{Epoch, ExportId, MemberId, Millis};

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

/// What a secondary follows: the primary of `export`, in `epoch`, which last led it at
/// `led_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// The export.
    pub export: ExportId,
    /// Its primary.
    pub primary: MemberId,
    /// The epoch of the stream followed.
    pub epoch: Epoch,
    /// When the primary last led us (see [`super::RoleView::Secondary`]).
    pub led_at: Option<Millis>,
}

/// Decides for a secondary that is in step with its primary (`joined`) and is `first` among
/// the live secondaries listed for the export. `vouchers`: the witness and every other
/// member (not us, not the primary); with a witness, the primary counts as lost when every
/// voucher lost it too (or its own process is proven gone) — the primary is then cut off
/// from all of them and has fenced itself. The witness alone is not enough once a third
/// member exists: the primary may go on with it (the simulation found exactly that).
///
/// Every voucher must *answer*: a member that is down does not vouch, because it may have
/// led (or followed) a newer epoch this secondary never heard of — a hand-back whose Join
/// did not reach us, say — and released updates without us (tests/sim_group.rs seed 154793:
/// the newer primary crashed, its refusal counted as its vouch, and the stale secondary
/// promoted). And a voucher that answers knowing a newer epoch than the one followed proves
/// that takeover happened: this secondary holds off.
pub fn decide(
    followed: Followed,
    ev: &Evidence,
    vouchers: &[MemberId],
    cfg: &FailoverConfig,
    now: Millis,
    joined: bool,
    first: bool,
) -> Verdict {
    let Followed {
        export,
        primary,
        epoch,
        led_at,
    } = followed;
    let w = ev.of(primary);
    let Some(alive) = w.last_heard else {
        return Verdict::Follow; // never followed: nothing to take over from
    };
    if !joined {
        return Verdict::Follow;
    }
    // The silence and the window count from when the primary last *led* us (a heartbeat of
    // our epoch), not from its last message of any kind: a member that failed us out while
    // we were cut off, or stopped being primary, still queries us — and a secondary that
    // took those for its primary's life promoted without the updates released since
    // (tests/sim_group.rs seed 41225).
    let heard = led_at.map_or(alive, |l| l.min(alive));
    // The primary went silent to us close enough to its end that it cannot have failed us
    // out and released replies without us first (a secondary cut off earlier holds a mirror
    // the group moved on from: it must wait for a resync or the operator).
    let in_window = |gone: u64| gone.saturating_sub(heard.0) <= cfg.takeover_window_ms();
    let in_vouched_window = |gone: u64| gone.saturating_sub(heard.0) <= cfg.vouched_window_ms();
    let refused_after = w.refused_at.filter(|r| *r > alive);
    let process_gone = refused_after.is_some_and(|r| in_window(r.0));
    // Its process proven gone, nothing is gained by waiting out the silence — once every
    // voucher answered since the refusal (one that knows a newer epoch must be heard: seed
    // 154793). This is the single-kill stall: the redial's refusal comes within a round
    // trip of the kill, the silence only after 400 ms.
    let answered_since = |r: Millis| {
        vouchers
            .iter()
            .all(|v| ev.said(*v, primary).is_some_and(|(at, _)| at >= r))
    };
    let proven_now = process_gone && refused_after.is_some_and(answered_since);
    if now.since(heard) < cfg.silence_ms() && !proven_now {
        return Verdict::Follow;
    }
    let fresh = |at: Millis| now.since(at) <= 2 * cfg.heartbeat_ms;
    if vouchers.iter().any(|v| {
        ev.epoch_of(*v, export)
            .is_some_and(|(at, e)| fresh(at) && e > epoch)
    }) {
        return Verdict::HoldOff(
            "another member knows a newer epoch: a takeover happened without us, and its \
             primary may have released updates we do not hold",
        );
    }
    // a fresh answer (within two heartbeats) saying the voucher lost the primary too, long
    // enough ago that an isolated primary has fenced itself
    let lost_by = |v: MemberId, windowed: bool| {
        ev.said(v, primary).is_some_and(|(at, ago)| {
            fresh(at)
                && vouch_binds(ago, cfg)
                && (!windowed || in_vouched_window(at.0.saturating_sub(ago)))
        })
    };
    let majority = !vouchers.is_empty() && vouchers.iter().all(|v| lost_by(*v, true));
    let gone_long_after_us = !process_gone
        && !majority
        && (refused_after.is_some()
            || (!vouchers.is_empty() && vouchers.iter().all(|v| lost_by(*v, false))));
    if gone_long_after_us {
        return Verdict::HoldOff(
            "the primary is gone, but it fell silent to us long before: it may have \
             released updates without us (resync, or ftnfsctl promote the member that has them)",
        );
    }
    match (process_gone || majority, first) {
        (true, true) if process_gone => Verdict::Promote(
            "primary process gone (heartbeats stopped, its host refuses connections)",
        ),
        (true, true) => Verdict::Promote("the witness and every other member lost the primary too"),
        (true, false) => Verdict::HoldOff("primary gone; the first listed secondary takes over"),
        (false, _) => Verdict::HoldOff(
            "primary silent but not proven dead (partition or host down?): not promoting",
        ),
    }
}

/// Whether answering that we last heard a primary `ago` ms ago lets the asker take over
/// (the same threshold [`decide`] applies to a voucher's answer): such an answer is a vote,
/// and the member that gives it stops following that primary.
pub fn vouch_binds(ago: u64, cfg: &FailoverConfig) -> bool {
    ago >= 2 * cfg.silence_ms()
}

/// Whether member `m` is proven down now: silent, and its host refused a connection since —
/// recently (dialers retry a refused peer every 200 ms: an old refusal is of a member that
/// may have come back, and two secondaries promoted at once in the simulation on one).
fn is_down(m: MemberId, ev: &Evidence, cfg: &FailoverConfig, now: Millis) -> bool {
    let w = ev.of(m);
    w.refused_at.is_some_and(|r| {
        now.since(r) <= cfg.silence_ms()
            && w.last_heard
                .is_none_or(|h| r > h && now.since(h) >= cfg.silence_ms())
    })
}

/// Whether this secondary is first in line: every member listed before it (but the primary
/// it follows) is proven down, or said (freshly) that it lost the primary more than the
/// takeover window before the primary last led us — [`decide`] holds such a member off
/// (the primary may have released updates without it), so waiting for it would leave the
/// group without a primary (tests/sim_group.rs seed 41225: the member ahead had been failed
/// out while cut off, and said it never heard the primary at all).
pub fn first_in_line(
    ahead: &[MemberId],
    primary: MemberId,
    led_at: Option<Millis>,
    ev: &Evidence,
    cfg: &FailoverConfig,
    now: Millis,
) -> bool {
    let out_of_window = |m: MemberId| {
        let (Some(led), Some((at, ago))) = (led_at, ev.said(m, primary)) else {
            return false;
        };
        now.since(at) <= 2 * cfg.heartbeat_ms
            && at.0.saturating_sub(ago) + cfg.takeover_window_ms() < led.0
    };
    // A member ahead that was alive after our primary last led us may have taken over
    // meanwhile — and released updates in a newer epoch before it went down; its being down
    // now does not let us take over (the same rule as "every voucher must answer").
    let down_before_us = |m: MemberId| {
        is_down(m, ev, cfg, now)
            && ev
                .last_heard(m)
                .is_none_or(|h| led_at.is_some_and(|l| h <= l))
    };
    ahead
        .iter()
        .all(|m| down_before_us(*m) || out_of_window(*m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: (last heard, refused at, now, joined, first, verdict kind).
    type Case = (Option<u64>, Option<u64>, u64, bool, bool, &'static str);

    const P: MemberId = MemberId(1);
    const W: MemberId = MemberId(9);
    const C: MemberId = MemberId(3);
    const X: ExportId = ExportId(1);

    /// Following `P` in epoch 5, led at `led_at`.
    fn f(led_at: Option<Millis>) -> Followed {
        Followed {
            export: X,
            primary: P,
            epoch: Epoch(5),
            led_at,
        }
    }

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
            (Some(1000), Some(1100), 1100, true, true, "promote"), // refused: no silence needed
            (Some(1000), Some(1100), 1100, true, false, "hold"), // …but first in line still
            (Some(1000), Some(1450), 1450, true, false, "hold"), // not first in line
            (Some(1000), Some(1700), 1700, true, true, "promote"), // refused within the window
            (Some(1000), Some(1701), 1701, true, true, "hold"), // silent to us for too long
        ];
        for (i, &(heard, refused, now, joined, first, want)) in cases.iter().enumerate() {
            let mut ev = Evidence::default();
            if let Some(h) = heard {
                ev.heard(P, Millis(h));
            }
            if let Some(r) = refused {
                ev.refused(P, Millis(r));
            }
            let got = match decide(f(None), &ev, &[], &cfg, Millis(now), joined, first) {
                Verdict::Follow => "follow",
                Verdict::HoldOff(_) => "hold",
                Verdict::Promote(_) => "promote",
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    fn kind(v: Verdict) -> &'static str {
        match v {
            Verdict::Follow => "follow",
            Verdict::HoldOff(_) => "hold",
            Verdict::Promote(_) => "promote",
        }
    }

    #[test]
    fn witness_majority() {
        let cfg = FailoverConfig::default(); // silence 400 ms, witness must say >= 800 ms
        let mut ev = Evidence::default();
        ev.heard(P, Millis(1000));
        let d = |ev: &Evidence, v: &[MemberId], now| {
            kind(decide(f(None), ev, v, &cfg, Millis(now), true, true))
        };
        // the witness still heard it recently: hold off
        ev.says(W, P, 500, Millis(1950));
        assert_eq!(d(&ev, &[W], 2000), "hold");
        ev.says(W, P, 900, Millis(1950));
        assert_eq!(d(&ev, &[W], 2000), "promote");
        // a stale answer does not count
        assert_eq!(d(&ev, &[W], 2400), "hold");
        // the witness heard the primary long after we did: we may have been failed out
        ev.says(W, P, 900, Millis(3950)); // it heard it at 3050, we at 1000
        assert_eq!(d(&ev, &[W], 4000), "hold");
    }

    /// With a third member the witness alone is no majority: the primary may go on with
    /// that member (cut off from the witness only). Every voucher must have lost it.
    #[test]
    fn a_third_member_must_have_lost_the_primary_too() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        ev.heard(P, Millis(1000));
        ev.says(W, P, 900, Millis(1950));
        let d =
            |ev: &Evidence, now| kind(decide(f(None), ev, &[W, C], &cfg, Millis(now), true, true));
        assert_eq!(d(&ev, 2000), "hold");
        ev.says(C, P, 850, Millis(1960));
        assert_eq!(d(&ev, 2000), "promote");
        // that member being down is not enough: it may have led a newer epoch
        let mut ev2 = Evidence::default();
        ev2.heard(P, Millis(1000));
        ev2.says(W, P, 900, Millis(1950));
        ev2.heard(C, Millis(1000));
        ev2.refused(C, Millis(1900));
        assert_eq!(d(&ev2, 2000), "hold");
    }

    /// tests/sim_group.rs seed 154793: our primary handed the role to the third member, whose
    /// Join never reached us; that member released updates in its epoch without us. It lost
    /// our primary too — but it answers knowing the newer epoch, and we hold off.
    #[test]
    fn a_voucher_that_knows_a_newer_epoch_stops_the_takeover() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        ev.heard(P, Millis(1000));
        ev.says(W, P, 900, Millis(1950));
        ev.knows_epoch(W, X, Epoch(0), Millis(1950));
        ev.says(C, P, 850, Millis(1960));
        ev.knows_epoch(C, X, Epoch(5), Millis(1960));
        let d = |ev: &Evidence| kind(decide(f(None), ev, &[W, C], &cfg, Millis(2000), true, true));
        assert_eq!(d(&ev), "promote");
        ev.knows_epoch(C, X, Epoch(6), Millis(1960));
        assert_eq!(d(&ev), "hold");
        // of another export it says nothing
        let mut ev3 = ev.clone();
        ev3.knows_epoch(C, X, Epoch(5), Millis(1960));
        ev3.knows_epoch(C, ExportId(2), Epoch(9), Millis(1960));
        assert_eq!(d(&ev3), "promote");
    }

    /// The single-kill stall: a refusal proves the process gone at once, but with vouchers
    /// the takeover waits for each one's answer since the refusal (one may know a newer
    /// epoch) — or for the silence, as before.
    #[test]
    fn a_refusal_promotes_before_the_silence_once_every_voucher_answered() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        ev.heard(P, Millis(1000));
        ev.refused(P, Millis(1050));
        let d = |ev: &Evidence, now| kind(decide(f(None), ev, &[W], &cfg, Millis(now), true, true));
        assert_eq!(d(&ev, 1050), "follow", "the witness has not answered since");
        ev.says(W, P, 800, Millis(1040)); // an answer from before the refusal
        assert_eq!(d(&ev, 1055), "follow");
        ev.says(W, P, 20, Millis(1060));
        ev.knows_epoch(W, X, Epoch(0), Millis(1060));
        assert_eq!(d(&ev, 1060), "promote");
        let mut newer = ev.clone();
        newer.says(C, P, 20, Millis(1061));
        newer.knows_epoch(C, X, Epoch(6), Millis(1061));
        assert_eq!(
            kind(decide(
                f(None),
                &newer,
                &[W, C],
                &cfg,
                Millis(1062),
                true,
                true
            )),
            "hold"
        );
        // without answers the silence still ends the wait
        let mut quiet = Evidence::default();
        quiet.heard(P, Millis(1000));
        quiet.refused(P, Millis(1050));
        assert_eq!(d(&quiet, 1400), "promote");
    }

    #[test]
    fn second_in_line_waits_for_the_first_to_be_proven_gone() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        let first = MemberId(1);
        ev.heard(first, Millis(1000));
        assert!(!first_in_line(&[first], P, None, &ev, &cfg, Millis(1200)));
        ev.refused(first, Millis(1450));
        assert!(
            !first_in_line(&[first], P, None, &ev, &cfg, Millis(1450)),
            "never led: we cannot tell"
        );
        assert!(first_in_line(
            &[first],
            P,
            Some(Millis(1010)),
            &ev,
            &cfg,
            Millis(1450)
        ));
        assert!(first_in_line(&[], P, None, &ev, &cfg, Millis(0)));
    }

    /// A member ahead that lived on after our primary last led us may have taken over and
    /// released updates before it went down: its going down lets nobody behind it take over.
    #[test]
    fn a_member_ahead_that_outlived_our_primary_blocks_the_line() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        let first = MemberId(1);
        ev.heard(first, Millis(1500)); // heard after our primary led us at 1200
        ev.refused(first, Millis(2000));
        assert!(!first_in_line(
            &[first],
            P,
            Some(Millis(1200)),
            &ev,
            &cfg,
            Millis(2001)
        ));
        assert!(first_in_line(
            &[first],
            P,
            Some(Millis(1600)),
            &ev,
            &cfg,
            Millis(2001)
        ));
    }

    /// tests/sim_group.rs seed 41225: a secondary cut off from everyone was failed out by
    /// its primary (and missed a whole newer epoch); healed, it took the queries of that
    /// former primary for its life and promoted once the witness lost it — without the
    /// updates released since. Only a heartbeat of its epoch (`led_at`) counts.
    #[test]
    fn a_primary_that_only_queries_us_does_not_lead_us() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        // led until 14_000; heard (queries) until 17_400; the witness lost it at ~17_320
        ev.heard(P, Millis(17_400));
        ev.says(W, P, 860, Millis(18_180));
        let d = |led| kind(decide(f(led), &ev, &[W], &cfg, Millis(18_200), true, true));
        assert_eq!(d(None), "promote", "as before: any message counted");
        assert_eq!(d(Some(Millis(14_000))), "hold");
        assert_eq!(d(Some(Millis(17_300))), "promote");
    }

    /// The same seed's other half: the in-step secondary waited for the member listed before
    /// it, which could never promote (it said it had not heard the primary at all).
    #[test]
    fn a_member_ahead_that_lost_the_primary_long_before_us_is_not_in_line() {
        let cfg = FailoverConfig::default();
        let mut ev = Evidence::default();
        let ahead = MemberId(1);
        ev.heard(ahead, Millis(16_000));
        let led = Some(Millis(15_700));
        assert!(!first_in_line(&[ahead], P, led, &ev, &cfg, Millis(16_800)));
        ev.says(ahead, P, u64::MAX, Millis(16_800));
        assert!(first_in_line(&[ahead], P, led, &ev, &cfg, Millis(16_850)));
        // a stale answer does not count
        assert!(!first_in_line(&[ahead], P, led, &ev, &cfg, Millis(17_100)));
        // nor one from a member that heard the primary within the window before us
        ev.says(ahead, P, 1000, Millis(16_800));
        assert!(!first_in_line(&[ahead], P, led, &ev, &cfg, Millis(16_850)));
    }
}
