//! A primary deaf to the group's datagrams hands its role over (issue 16; patent pp. 28–30,
//! "unknown acknowledgements"; `Documentation/16-proxy-mode.md`).
//!
//! In proxy mode every member receives each client's update datagram; the secondaries hold
//! theirs for the primary's order. A held datagram that no order claims expires, and its
//! secondary reports it to the primary as *unknown*. A few are normal (a request the client
//! gave up on). Many, while the primary itself received fewer update datagrams than that, say
//! the primary does not hear the clients — its multicast membership was lost, or a switch does
//! not flood the address to its port — while a secondary does: its clients are stuck.
//!
//! The rule (per primary term, over a sliding window):
//! - `alert` unknowns within the window: an event, at most once a window;
//! - `exclude` unknowns from one member within the window **and** fewer than half as many
//!   update datagrams received by the primary in the same window: the primary steps down for
//!   that member (a planned switch: it drains what is in flight, stands by clean, and that
//!   member takes over) and does not take its role back by itself (as after an operator's
//!   demote). The count of received datagrams keeps a primary that hears its clients from
//!   being excluded by requests it saw and refused, by retransmissions of a reply a client
//!   lost, or by a client sending to the secondaries alone.
//!
//! Unknown, at a secondary: a held datagram that expired unclaimed, and a retransmission of a
//! request already applied there (the primary answers those from its reply cache; one that
//! does not hear them leaves the client retrying — after a takeover, the request the client
//! waits for is often one the secondaries applied already).
//!
//! ```text
//!  secondary: held datagram expired ──Unknown{count}──▶ primary: UnknownTally::report
//!                                                        ├─ Fine
//!                                                        ├─ Alert{unknown}       (event)
//!                                                        └─ Deaf{unknown, received}
//!                                                             → Leading::unknown_reported
//!                                                               begins the step-down for
//!                                                               the reporter
//! ```

use std::collections::VecDeque;

use crate::ids::{MemberId, Millis};

/// Whether a secondary reports unknown requests now: only while its primary leads it (heard
/// within `silence_ms`, `led_at`). What it holds while the primary is silent — stalled,
/// paused, cut off — says nothing of what the primary hears once it is back (a resumed
/// primary read hundreds of stale reports at once and handed over: sim_group seed 3005950);
/// the failover rules own that case. What expires meanwhile is not reported later either.
pub fn reports(led_at: Option<Millis>, now: Millis, silence_ms: u64) -> bool {
    led_at.is_some_and(|t| now.since(t) < silence_ms)
}

/// The thresholds (`ftnfsd --unknown-alert`, `--unknown-exclude`; 0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HearingConfig {
    /// Alert at this many unknown requests within the window.
    pub alert: u64,
    /// Hand the role over at this many from one member within the window, if the primary
    /// received fewer than half as many.
    pub exclude: u64,
    /// The window.
    pub window_ms: u64,
}

impl Default for HearingConfig {
    fn default() -> Self {
        HearingConfig {
            alert: 16,
            exclude: 2,
            window_ms: 10_000,
        }
    }
}

/// What a report of unknown requests means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hearing {
    /// Nothing to say.
    Fine,
    /// Many unknown requests (`unknown` within the window): worth an event.
    Alert {
        /// Within the window.
        unknown: u64,
    },
    /// The primary does not hear its clients.
    Deaf {
        /// The member that reported the most: it hears the clients.
        by: MemberId,
        /// Unknown requests it reported within the window.
        unknown: u64,
        /// Update datagrams the primary received within the window.
        received: u64,
    },
}

/// Unknown requests reported to one primary in one term, beside the update datagrams it
/// received itself.
#[derive(Debug, Clone)]
pub struct UnknownTally {
    cfg: HearingConfig,
    /// (when, by whom, how many reported), within the window.
    recent: VecDeque<(Millis, MemberId, u64)>,
    /// The primary's received count over time: one sample per eighth of a window, reaching
    /// back just past a window.
    samples: VecDeque<(Millis, u64)>,
    total: u64,
    alerted_at: Option<Millis>,
}

impl UnknownTally {
    /// A tally for a new term (its received count starts at 0).
    pub fn new(cfg: HearingConfig) -> Self {
        UnknownTally {
            cfg: HearingConfig {
                window_ms: cfg.window_ms.max(1),
                ..cfg
            },
            recent: VecDeque::new(),
            samples: VecDeque::new(),
            total: 0,
            alerted_at: None,
        }
    }

    /// Every unknown request reported in this term.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The primary received `received` update datagrams in this term so far (the shell
    /// calls this at its ticks; bounded: a sample an eighth of a window, a window's worth).
    pub fn sample(&mut self, received: u64, now: Millis) {
        let step = (self.cfg.window_ms / 8).max(1);
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.since(*t) >= step)
        {
            self.samples.push_back((now, received));
        }
        // keep one sample at least a window old: the baseline
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.since(*t) >= self.cfg.window_ms)
        {
            self.samples.pop_front();
        }
    }

    /// Datagrams received within the window before `now` (or since the oldest sample, or
    /// since the term began, when the term is younger than a window).
    fn heard(&self, received: u64, now: Millis) -> u64 {
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.since(*t) >= self.cfg.window_ms)
            .or(self.samples.front())
            .map_or(0, |(_, r)| *r);
        received.saturating_sub(base)
    }

    /// `count` more reported by `from` at `now`; `received` is how many update datagrams the
    /// primary received in this term so far. At most one alert or verdict a window.
    pub fn report(&mut self, from: MemberId, count: u64, received: u64, now: Millis) -> Hearing {
        self.total += count;
        self.recent.push_back((now, from, count));
        while let Some(&(t, _, _)) = self.recent.front() {
            if now.since(t) < self.cfg.window_ms {
                break;
            }
            self.recent.pop_front();
        }
        // bounded: one entry per report, and reports older than the window are gone
        let unknown: u64 = self.recent.iter().map(|(_, _, c)| c).sum();
        let mut by_member: Vec<(MemberId, u64)> = Vec::new();
        for (_, m, c) in &self.recent {
            match by_member.iter_mut().find(|(b, _)| b == m) {
                Some((_, n)) => *n += c,
                None => by_member.push((*m, *c)),
            }
        }
        let (by, most) = by_member
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .unwrap_or((from, 0));
        let heard = self.heard(received, now);
        let quiet = self
            .alerted_at
            .is_none_or(|a| now.since(a) >= self.cfg.window_ms);
        if !quiet {
            return Hearing::Fine;
        }
        let deaf = self.cfg.exclude > 0 && most >= self.cfg.exclude && heard * 2 < most;
        let alert = self.cfg.alert > 0 && unknown >= self.cfg.alert;
        if deaf {
            self.alerted_at = Some(now);
            Hearing::Deaf {
                by,
                unknown: most,
                received: heard,
            }
        } else if alert {
            self.alerted_at = Some(now);
            Hearing::Alert { unknown }
        } else {
            Hearing::Fine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MemberId = MemberId(2);
    const B: MemberId = MemberId(3);

    fn cfg(alert: u64, exclude: u64) -> HearingConfig {
        HearingConfig {
            alert,
            exclude,
            window_ms: 1000,
        }
    }

    #[test]
    fn a_primary_that_receives_nothing_is_deaf_past_the_threshold() {
        let mut t = UnknownTally::new(cfg(16, 3));
        assert_eq!(t.report(A, 1, 0, Millis(0)), Hearing::Fine);
        assert_eq!(t.report(B, 1, 0, Millis(50)), Hearing::Fine, "per member");
        assert_eq!(t.report(A, 1, 0, Millis(100)), Hearing::Fine);
        assert_eq!(
            t.report(A, 1, 0, Millis(200)),
            Hearing::Deaf {
                by: A,
                unknown: 3,
                received: 0
            }
        );
        // once a window
        assert_eq!(t.report(A, 5, 0, Millis(300)), Hearing::Fine);
        assert_eq!(t.total(), 9);
    }

    #[test]
    fn a_primary_that_hears_its_clients_is_only_alerted() {
        let mut t = UnknownTally::new(cfg(4, 2));
        // 100 datagrams received in the term, 5 unknown within the window: it hears
        assert_eq!(t.report(A, 2, 50, Millis(0)), Hearing::Fine);
        assert_eq!(
            t.report(A, 3, 100, Millis(10)),
            Hearing::Alert { unknown: 5 }
        );
        // a client that lost a reply retransmits twice: the primary heard one of the two,
        // each of two secondaries both: not deaf
        let mut t = UnknownTally::new(cfg(0, 2));
        assert_eq!(t.report(A, 2, 1, Millis(0)), Hearing::Fine);
        assert_eq!(t.report(B, 2, 1, Millis(5)), Hearing::Fine);
        // only what came within the window counts: 100 before it, none since
        let mut t = UnknownTally::new(cfg(0, 2));
        for ms in (0..=2100).step_by(50) {
            t.sample(100, Millis(ms));
        }
        assert!(t.samples.len() <= 10, "bounded: {}", t.samples.len());
        assert_eq!(t.report(A, 1, 100, Millis(2000)), Hearing::Fine);
        assert_eq!(
            t.report(A, 1, 100, Millis(2100)),
            Hearing::Deaf {
                by: A,
                unknown: 2,
                received: 0
            }
        );
    }

    #[test]
    fn a_secondary_reports_only_while_its_primary_leads_it() {
        assert!(reports(Some(Millis(1000)), Millis(1300), 400));
        assert!(!reports(Some(Millis(1000)), Millis(1400), 400));
        assert!(!reports(None, Millis(0), 400));
    }

    #[test]
    fn zero_turns_each_rule_off_and_old_reports_leave_the_window() {
        let mut t = UnknownTally::new(cfg(0, 0));
        for i in 0..100 {
            assert_eq!(t.report(A, 10, 0, Millis(i)), Hearing::Fine);
        }
        let mut t = UnknownTally::new(cfg(0, 3));
        assert_eq!(t.report(A, 2, 0, Millis(0)), Hearing::Fine);
        assert_eq!(
            t.report(A, 2, 0, Millis(1500)),
            Hearing::Fine,
            "the first left"
        );
        assert_eq!(t.recent.len(), 1);
    }
}
