//! The member state machine: every decision about *who serves an export* — takeover,
//! fencing, deposition, startup negotiation, rejoin asks, hand-back — for one daemon's
//! mirrored exports, sans I/O (issue 12; `Documentation/07-failover.md`, `08-rejoin.md`).
//!
//! ```text
//!   shell (ftnfsd mirror driver)                    core (this module)
//!   peer message / refused dial / witness answer ─▶ Node::heard / refused / witness_says
//!   probe answer, hand-back ask, resync done      ─▶ Member::probe_answered / … / resynced
//!   deadline reached (sleeps until poll_timeout)  ─▶ Node::handle_timeout(now, roles, facts)
//!                                                ◀─ Vec<Effect> (carried out in order)
//! ```
//!
//! The data path (numbering, ordering, acknowledging updates) stays in
//! [`crate::mirror::primary`] / [`crate::mirror::secondary`]; the shell tells this machine
//! what the data path knows through a [`RoleView`] per export (live secondaries, joined, in
//! step) and [`Facts`] (links, this mirror's claim). Files, one rule each:
//! - [`evidence`]: what we heard of each peer;
//! - [`exclusion`]: a primary deaf to the group's datagrams hands its role over;
//! - [`takeover`]: when a secondary promotes;
//! - [`fencing`]: isolation, the read lease, deposition by a newer epoch;
//! - [`startup`]: negotiation of a member that follows no primary, probe answers;
//! - [`rejoin`]: a standby following a new primary, hand-back;
//! - [`follower`]: a secondary's place in a stream — whom it follows, answers, acknowledges;
//! - [`states`]: the roles as states whose changes consume `self` (primary, standby);
//! - [`settings`]: every interval, by name.
//!
//! # Effect order
//! [`Node::handle_timeout`] returns effects in the order they must be carried out:
//! - a [`Effect::Fence`] of an export comes before anything else for it, and nothing else for
//!   that export follows it in the same batch: a fenced primary sends no heartbeat of an epoch
//!   it no longer serves. The shell carries a fence out as: drop unreleased replies, give up
//!   the virtual IP, reset client connections, stand by ([`fencing`]).
//! - [`Effect::Promote`] / [`Effect::StartPrimary`]: the shell persists the new epoch
//!   *before* anything of it is sent or the virtual IP is taken (a member never leads an epoch
//!   it might forget); if that fails it stays what it was and tells nobody.
//! - heartbeats of an export precede the [`Effect::FailOut`] of a silent secondary, which
//!   precede any ask to rejoin.

pub mod evidence;
pub mod exclusion;
pub mod fencing;
pub mod follower;
pub mod read_lease;
pub mod rejoin;
pub mod settings;
pub mod startup;
pub mod states;
pub mod takeover;
pub mod transitions;

use std::collections::BTreeMap;

use crate::ids::{Epoch, ExportId, MemberId, Millis};
use crate::mirror::resync::{self as plan, Candidate, Peer};
use crate::mirror::MemberSet;
use evidence::Evidence;
use settings::Settings;
use startup::ProbeState;
use takeover::Verdict;

/// What the data path knows of this member's role for one export, as the shell sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleView {
    /// Primary of the export.
    Primary {
        /// Secondaries live in the stream (updates wait for them).
        live: MemberSet,
        /// A planned step-down is draining what is in flight.
        stepping_down: bool,
        /// Stopping: no new update is numbered.
        closed: bool,
        /// Members being resynced from here (not asked to join meanwhile).
        resyncing: MemberSet,
        /// When each secondary last confirmed our epoch: as of when we sent the heartbeat it
        /// echoed or the update it acknowledged. A live secondary's silence counts from
        /// there, not from any message of it: one that never got our Join (or left our
        /// stream) still probes and queries us, and was never failed out — nor asked to join
        /// again (tests/sim_group.rs seed 117335).
        followed: BTreeMap<MemberId, Millis>,
    },
    /// Secondary of the export.
    Secondary {
        /// The primary it follows (or, not joined, the one it last followed or the listed
        /// one): the member whose silence may make it take over.
        primary: MemberId,
        /// Joined to a leader and applying its stream.
        joined: bool,
        /// Joined with nothing waiting to be applied.
        in_step: bool,
        /// A resync into this mirror is running.
        incoming: bool,
        /// When the primary last led this member: its Join accepted, or a heartbeat of the
        /// joined epoch. Other messages from it (a query, a probe) do not count: a member
        /// that stopped being primary, or failed us out, still talks to us.
        led_at: Option<Millis>,
        /// The epoch of the stream followed (or, not joined, the highest this member knows).
        epoch: Epoch,
    },
    /// Serves no update of the export.
    Standby {
        /// Stood down cleanly for a planned switch (waits for the new primary's join).
        clean: bool,
        /// The highest epoch it knows.
        epoch: Epoch,
        /// When it began to stand by.
        since: Millis,
    },
}

/// What the shell tells the machine on demand (cheap calls; `candidate` may read disk and
/// is asked only when a decision needs it).
pub trait Facts {
    /// Whether an authenticated link to `m` is up.
    fn linked(&self, m: MemberId) -> bool;
    /// This member's claim to start as primary of `export`, knowing epoch `seen`.
    fn candidate(&self, export: ExportId, seen: Epoch) -> Candidate;
    /// A member's name, for events.
    fn name(&self, m: MemberId) -> String;
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Ping the witness (keeps its view of us fresh).
    WitnessPing,
    /// Ask `to` (the witness, or another member) when it last heard `about`.
    WitnessQuery {
        /// The silent primary.
        about: MemberId,
        /// The export it is the primary of (a member answers its epoch of it).
        export: ExportId,
        /// Who is asked.
        to: MemberId,
    },
    /// Send our heartbeat of `export` (epoch and last update) to `to`.
    Heartbeat {
        /// The export.
        export: ExportId,
        /// A live secondary.
        to: MemberId,
    },
    /// Fail `member` out of the stream: updates stop waiting for it.
    FailOut {
        /// The export.
        export: ExportId,
        /// The silent secondary.
        member: MemberId,
        /// Why.
        why: String,
    },
    /// Ask listed member `member`, linked but out, to join (or copy it if it diverged).
    AskToRejoin {
        /// The export.
        export: ExportId,
        /// The member.
        member: MemberId,
    },
    /// A planned step-down may complete if nothing is in flight any more.
    FinishStepDown {
        /// The export.
        export: ExportId,
    },
    /// Stop serving the export as primary now (see [`fencing`] for the order).
    Fence {
        /// The export.
        export: ExportId,
        /// Why.
        why: String,
    },
    /// Take the export over from its primary, from the state applied here.
    Promote {
        /// The export.
        export: ExportId,
        /// Why.
        why: String,
    },
    /// Start a new stream from this member's own mirror (startup negotiation won).
    StartPrimary {
        /// The export.
        export: ExportId,
        /// Why.
        why: String,
    },
    /// Ask the primary followed now for the role back (this is the listed primary, in step
    /// again after a resync).
    AskRoleBack {
        /// The export.
        export: ExportId,
    },
    /// Ask `to` what it is for `export`.
    Probe {
        /// The export.
        export: ExportId,
        /// The member asked.
        to: MemberId,
    },
    /// Stop following the primary of `export` (no more acks, echoes or applied updates from
    /// it) and negotiate: this member vouched it lost (see [`Node::answer_query`]).
    LeaveStream {
        /// The export.
        export: ExportId,
        /// Why.
        why: String,
    },
    /// Record and log an event.
    Event {
        /// The export.
        export: ExportId,
        /// What.
        what: String,
    },
}

/// The decision state of this member for one export: timers and what was asked or answered.
#[derive(Debug, Clone)]
pub struct Member {
    /// The export.
    pub export: ExportId,
    /// This member's place in the export's member list (0: the listed primary).
    pub position: usize,
    /// Every other listed member, in list order.
    pub others: Vec<MemberId>,
    probed_at: Option<Millis>,
    probes: BTreeMap<MemberId, (Millis, Peer)>,
    /// Since when this member follows no primary and negotiates (`None`: it does not).
    negotiating_since: Option<Millis>,
    negotiated: Option<(Millis, String)>,
    holdoff_logged: Option<Millis>,
    /// When vouchers were last asked about our primary (a refusal newer than this asks
    /// again at once).
    queried_at: Option<Millis>,
    take_over: bool,
    want_back: bool,
    /// Stood down on the operator's word (`ftnfsctl demote`): never asks for its role back,
    /// however it comes back in step (a join or a resync), until it takes a role over again.
    held_down: bool,
    asked_back: Option<Millis>,
    asked: BTreeMap<MemberId, Millis>,
    /// When this process last resumed from a freeze (a stalled host, SIGSTOP).
    resumed_at: Option<Millis>,
    /// A member that answered our probe as following another member, and when: if it is
    /// the primary we follow, that stream ended without us (`handle_timeout`).
    follows_another: Option<(MemberId, Millis)>,
}

impl Member {
    /// A member at place `position` of an export listing `others` beside it.
    pub fn new(export: ExportId, position: usize, others: Vec<MemberId>) -> Member {
        Member {
            export,
            position,
            others,
            probed_at: None,
            probes: BTreeMap::new(),
            negotiating_since: None,
            negotiated: None,
            holdoff_logged: None,
            queried_at: None,
            take_over: false,
            want_back: false,
            held_down: false,
            asked_back: None,
            asked: BTreeMap::new(),
            resumed_at: None,
            follows_another: None,
        }
    }

    /// `from` answered our probe with `state` and its claim.
    pub fn probe_answered(
        &mut self,
        from: MemberId,
        state: ProbeState,
        claim: Candidate,
        now: Millis,
    ) {
        if !self.others.contains(&from) {
            return;
        }
        let claim = Candidate {
            position: startup::position_of(&self.others, self.position, from),
            ..claim
        };
        if state == ProbeState::Following {
            self.follows_another = Some((from, now));
        }
        self.probes.insert(from, (now, state.as_peer(claim)));
    }

    /// A member that answered one of our probes as primary within `within` ms before
    /// `now` (an operator's forced promotion is refused while one did).
    pub fn answered_primary(&self, now: Millis, within: u64) -> Option<MemberId> {
        self.probes
            .iter()
            .find(|(_, (t, p))| matches!(p, Peer::Primary) && now.since(*t) <= within)
            .map(|(m, _)| *m)
    }

    /// The primary we follow stood down for us (`from` must be the listed primary... or the
    /// leader; the shell checks): take over at the next timeout. Returns the event to log.
    pub fn take_over_asked(&mut self, from_name: &str) -> Effect {
        self.take_over = true;
        Effect::Event {
            export: self.export,
            what: format!("{from_name} stood down for us: taking the role back"),
        }
    }

    /// A resync into this mirror finished and this member follows the survivor (or, restarted
    /// from its seal, it follows the member that took over meanwhile): the listed primary
    /// wants its role back.
    pub fn resynced(&mut self) {
        if self.position == 0 && !self.held_down {
            self.want_back = true;
        }
    }

    /// The operator demoted this member (`ftnfsctl demote`): it follows whoever takes over
    /// and does not take its role back by itself — also not when its way back is a resync
    /// (a refused join) rather than a clean join — until it takes a role over again (the
    /// operator's promote, or a takeover after a failure).
    pub fn demoted(&mut self) {
        self.held_down = true;
        self.want_back = false;
    }

    /// Whether the operator's demote still keeps this member from taking its role back.
    pub fn held_down(&self) -> bool {
        self.held_down
    }

    /// This member stood by and now follows another member's stream (`standby_join`
    /// accepted). A listed primary restarted from its seal (`clean_at`) that lost the
    /// startup negotiation — another member took over while it was stopped — takes its role
    /// back once in step, as after a resync; one that stands by on the operator's word
    /// (`waits`: a demote, or a restart without a seal) does not.
    pub fn followed_from_standby<S>(&mut self, waits: bool, clean_at: Option<S>) {
        if !waits && clean_at.is_some() {
            self.resynced();
        }
    }

    /// This member took the export over (whatever the reason): pending hand-back wishes end.
    pub fn took_over(&mut self) {
        self.take_over = false;
        self.want_back = false;
        self.held_down = false;
    }

    /// A join was just sent to `m` (it is asked again only after `rejoin_every_ms`).
    pub fn asked(&mut self, m: MemberId, now: Millis) {
        self.asked.insert(m, now);
    }

    /// When `m` was last asked to join: its acceptance proves it followed us then at the
    /// latest (the lease counts from there, not from when the answer was read).
    pub fn asked_at(&self, m: MemberId) -> Option<Millis> {
        self.asked.get(&m).copied()
    }

    /// Ask `m` again at the next timeout (it diverged: it gets a copy).
    pub fn ask_soon(&mut self, m: MemberId) {
        self.asked.remove(&m);
    }

    /// When live secondary `m` last followed us (`followed`: its confirmations of our
    /// epoch) or was last asked to join, whichever is later; never either: when it last
    /// spoke. Not before this process resumed from a freeze: the silence was ours, and a
    /// primary resumed after 800 ms failed its in-step secondary out at once, released an
    /// update alone and crashed — the secondary took over without it (seed 135622).
    fn followed_or_asked(
        &self,
        m: MemberId,
        followed: &BTreeMap<MemberId, Millis>,
        ev: &Evidence,
    ) -> Option<Millis> {
        followed
            .get(&m)
            .copied()
            .max(self.asked.get(&m).copied())
            .or_else(|| ev.last_heard(m))
            .map(|t| t.max(self.resumed_at.unwrap_or(t)))
    }

    /// Whether a probe round is due (and marks it done).
    fn probe_due(&mut self, s: &Settings, now: Millis) -> bool {
        let due = self
            .probed_at
            .is_none_or(|t| now.since(t) >= s.probe_every_ms);
        if due {
            self.probed_at = Some(now);
        }
        due
    }

    #[allow(clippy::too_many_arguments)]
    fn on_timeout(
        &mut self,
        now: Millis,
        beat: bool,
        started: Millis,
        view: &RoleView,
        ev: &Evidence,
        s: &Settings,
        witness: Option<MemberId>,
        facts: &dyn Facts,
        out: &mut Vec<Effect>,
    ) {
        let export = self.export;
        // Answers from before this member began to negotiate describe another state of the
        // group (the simulation started a second primary on a 2.7 s old answer): forget them.
        let negotiating = match view {
            RoleView::Primary { .. } => false,
            RoleView::Standby { clean, since, .. } => {
                !*clean || now.since(*since) >= s.clean_wait_ms
            }
            RoleView::Secondary {
                joined, incoming, ..
            } => !*joined && !*incoming,
        };
        match (negotiating, self.negotiating_since) {
            (true, None) => {
                self.negotiating_since = Some(now);
                self.probes.clear();
                self.probed_at = None;
            }
            (false, Some(_)) => self.negotiating_since = None,
            _ => {}
        }
        match view {
            RoleView::Primary {
                live,
                stepping_down,
                closed,
                resyncing,
                followed,
            } => {
                if let Some(w) = witness {
                    let heard = live.iter().filter_map(|m| ev.last_heard(m)).max();
                    if fencing::isolated(ev.last_heard(w), heard, s, now) {
                        out.push(Effect::Fence {
                            export,
                            why: "isolated: neither the witness nor any secondary heard".into(),
                        });
                        return;
                    }
                }
                for m in live.iter() {
                    if beat {
                        out.push(Effect::Heartbeat { export, to: m });
                    }
                    // A live secondary answers every heartbeat; one that stopped (frozen, cut
                    // off) is failed out so replies do not wait on it. Its silence counts from
                    // its join at the earliest: a member that stood by was silent before.
                    let since = self.followed_or_asked(m, followed, ev);
                    if since.is_some_and(|h| now.since(h) > s.failover.fail_out_ms()) {
                        out.push(Effect::FailOut {
                            export,
                            member: m,
                            why: format!(
                                "secondary {} failed out (silent for {} ms)",
                                facts.name(m),
                                s.failover.fail_out_ms()
                            ),
                        });
                    } else if process_gone(ev.of(m), since) {
                        // a lost connection alone never puts a member out (seed 175651): a
                        // refused one after everything it said proves its process gone
                        out.push(Effect::FailOut {
                            export,
                            member: m,
                            why: format!(
                                "secondary {} failed out (its host refused a connection)",
                                facts.name(m)
                            ),
                        });
                    }
                }
                if *stepping_down {
                    out.push(Effect::FinishStepDown { export });
                } else if !closed {
                    for m in self.others.clone() {
                        let due = self
                            .asked
                            .get(&m)
                            .is_none_or(|t| now.since(*t) >= s.rejoin_every_ms);
                        // Only a member we hear: asking puts it back in the stream, and
                        // client updates wait for it again — a secondary failed out for its
                        // silence (a cut link TCP has not given up on) would stall them
                        // for another fail-out time (tests/chaos.sh: 1.6 s for a 1 s cut).
                        // A live one says something within the silence time (its probes of
                        // a primary it no longer hears).
                        let heard = ev.heard_within(m, s.silence_ms(), now);
                        if due
                            && heard
                            && !live.contains(m)
                            && !resyncing.contains(m)
                            && facts.linked(m)
                        {
                            self.asked.insert(m, now);
                            out.push(Effect::AskToRejoin { export, member: m });
                        }
                    }
                }
            }
            RoleView::Standby {
                clean,
                epoch,
                since,
            } => {
                // a clean standby waits for the member it stood down for; if that one never
                // took over (it died on the way), it negotiates like any other
                let waiting = *clean && now.since(*since) < s.clean_wait_ms;
                if !waiting && self.probe_due(s, now) {
                    self.negotiate(now, started, *epoch, ev, s, facts, out);
                }
            }
            RoleView::Secondary {
                primary,
                joined,
                in_step,
                incoming,
                led_at,
                epoch,
            } => {
                if self.take_over {
                    if *joined {
                        out.push(Effect::Promote {
                            export,
                            why: "the primary handed the role back".into(),
                        });
                        return;
                    }
                    // put out of the stream since it asked: it no longer holds everything
                    self.take_over = false;
                }
                if !joined && !incoming && self.probe_due(s, now) {
                    self.negotiate(now, started, Epoch(0), ev, s, facts, out);
                }
                if *in_step
                    && self.want_back
                    && self
                        .asked_back
                        .is_none_or(|t| now.since(t) >= s.ask_back_every_ms)
                {
                    self.asked_back = Some(now);
                    out.push(Effect::AskRoleBack { export });
                }
                // first in line: every member listed before us, but the one we follow, is
                // proven gone too (a listed primary that now follows another member comes
                // first; two members must never both promote)
                let ahead: Vec<MemberId> = self.others[..self.position.min(self.others.len())]
                    .iter()
                    .copied()
                    .filter(|m| m != primary)
                    .collect();
                let first =
                    takeover::first_in_line(&ahead, *primary, *led_at, ev, &s.failover, now);
                // with a witness, the witness and every other member vouch for a silent
                // primary (without one, only its process proven gone counts)
                let vouchers: Vec<MemberId> = match witness {
                    Some(w) => std::iter::once(w)
                        .chain(self.others.iter().copied().filter(|m| m != primary))
                        .collect(),
                    None => Vec::new(),
                };
                let silent = ev
                    .last_heard(*primary)
                    .is_some_and(|h| now.since(h) >= s.silence_ms());
                // the primary we follow, silent to us, answers our probe that it follows
                // another member: its stream went on elsewhere (a planned switch while we
                // were cut off, after it failed us out). Leave it, and negotiate: our probes
                // reach every member, so the primary hears us and asks us back (it asks only
                // members it hears). Waiting for our old primary would wait for good
                // (sim_group seed 3001070).
                if *joined && silent {
                    if let Some((m, t)) = self.follows_another {
                        if m == *primary && led_at.is_none_or(|l| t > l) {
                            self.follows_another = None;
                            out.push(Effect::LeaveStream {
                                export,
                                why: format!(
                                    "{} follows another member now: leaving its stream",
                                    facts.name(m)
                                ),
                            });
                        }
                    }
                }
                // say so to the primary (at most once a probe interval): it asks only members it
                // hears back into its stream, and one that failed us out for our silence (a
                // cut, a freeze) and heard nothing since would otherwise leave us out for good
                if silent && *joined && facts.linked(*primary) && self.probe_due(s, now) {
                    out.push(Effect::Probe {
                        export,
                        to: *primary,
                    });
                }
                // a refusal after the primary's last word: ask at once, not at the next
                // heartbeat after the silence (the answers let `decide` promote now)
                let w = ev.of(*primary);
                let refused = w
                    .refused_at
                    .filter(|r| w.last_heard.is_none_or(|h| *r > h))
                    .filter(|r| {
                        // a refusal newer than the last question; the dialer retries, so not
                        // more than once a heartbeat (the simulation's refused every tick)
                        self.queried_at
                            .is_none_or(|q| q < *r && now.since(q) >= s.failover.heartbeat_ms)
                    });
                if (silent && beat) || refused.is_some() {
                    self.queried_at = Some(now);
                    for v in &vouchers {
                        if facts.linked(*v) {
                            out.push(Effect::WitnessQuery {
                                about: *primary,
                                export,
                                to: *v,
                            });
                        }
                    }
                }
                let followed = takeover::Followed {
                    export,
                    primary: *primary,
                    epoch: *epoch,
                    led_at: *led_at,
                };
                match takeover::decide(followed, ev, &vouchers, &s.failover, now, *joined, first) {
                    Verdict::Follow => {}
                    Verdict::HoldOff(why) => {
                        if self
                            .holdoff_logged
                            .is_none_or(|l| now.since(l) > s.holdoff_log_ms)
                        {
                            self.holdoff_logged = Some(now);
                            out.push(Effect::Event {
                                export,
                                what: format!("not taking over: {why}"),
                            });
                        }
                    }
                    Verdict::Promote(why) => out.push(Effect::Promote {
                        export,
                        why: why.into(),
                    }),
                }
            }
        }
    }

    /// Startup negotiation (about once a second): probe every linked member; after the
    /// grace time, start as primary if [`plan::startup`] says so.
    #[allow(clippy::too_many_arguments)]
    fn negotiate(
        &mut self,
        now: Millis,
        started: Millis,
        seen: Epoch,
        ev: &Evidence,
        s: &Settings,
        facts: &dyn Facts,
        out: &mut Vec<Effect>,
    ) {
        let export = self.export;
        for m in &self.others {
            if facts.linked(*m) {
                out.push(Effect::Probe { export, to: *m });
            }
        }
        if now.since(started) < s.startup_grace_ms {
            return; // give the group time to link up
        }
        if self
            .negotiating_since
            .is_none_or(|t| now.since(t) < s.probe_every_ms)
        {
            return; // a round of answers to this negotiation's own probes first
        }
        let fresh = |t: Millis| now.since(t) <= s.probe_fresh_ms;
        let view: Vec<(String, Peer)> = self
            .others
            .iter()
            .map(|m| {
                let p = match self.probes.get(m) {
                    Some((t, p)) if fresh(*t) && facts.linked(*m) => *p,
                    _ if ev.of(*m).refused_at.is_some_and(fresh) => Peer::Down,
                    _ => Peer::Unknown,
                };
                (facts.name(*m), p)
            })
            .collect();
        let me = facts.candidate(export, seen);
        let verdict = plan::startup(&me, &view).and_then(|()| {
            if s.manual_start {
                Err("--manual-start: waiting for ftnfsctl promote".to_string())
            } else {
                Ok(())
            }
        });
        match verdict {
            Ok(()) => out.push(Effect::StartPrimary {
                export,
                why: "no primary, every other member heard and none newer".into(),
            }),
            Err(why) => {
                let repeat = self
                    .negotiated
                    .as_ref()
                    .is_none_or(|(t, w)| *w != why || now.since(*t) > s.startup_log_ms);
                if repeat {
                    self.negotiated = Some((now, why.clone()));
                    out.push(Effect::Event {
                        export,
                        what: format!("not starting as primary: {why}"),
                    });
                }
            }
        }
    }

    /// The earliest instant at which [`Node::handle_timeout`] may decide something new for
    /// this export, from the evidence alone (messages that arrive wake the shell anyway).
    fn deadline(
        &self,
        view: &RoleView,
        ev: &Evidence,
        s: &Settings,
        witness: Option<MemberId>,
    ) -> Option<Millis> {
        let after = |h: Option<Millis>, ms: u64| h.map(|h| Millis(h.0 + ms + 1));
        match view {
            RoleView::Primary { live, followed, .. } => {
                let mut d: Option<Millis> = None;
                for m in live.iter() {
                    d = min_opt(
                        d,
                        after(
                            self.followed_or_asked(m, followed, ev),
                            s.failover.fail_out_ms(),
                        ),
                    );
                }
                if let Some(w) = witness {
                    d = min_opt(d, after(ev.last_heard(w), s.silence_ms()));
                }
                d
            }
            RoleView::Secondary {
                primary, led_at, ..
            } => after(led_at.or(ev.last_heard(*primary)), s.silence_ms()),
            RoleView::Standby { .. } => None,
        }
    }
}

/// Whether a live secondary's process is gone: its host refused a connection after the last
/// thing it said and after `since` (its last confirmation or our last Join to it). A refusal
/// is the host's answer that nothing listens on the peer port; a lost connection is not
/// evidence (a cut link, a full queue), only this and silence are.
fn process_gone(w: evidence::Watch, since: Option<Millis>) -> bool {
    w.refused_at
        .is_some_and(|r| since.is_none_or(|s| r > s) && w.last_heard.is_none_or(|h| r > h))
}

fn min_opt(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One daemon's member machine: the evidence about its peers and one [`Member`] per mirrored
/// export.
#[derive(Debug, Clone)]
pub struct Node {
    /// The settings.
    pub settings: Settings,
    /// The witness among the peers, if the group has one.
    pub witness: Option<MemberId>,
    /// What we heard of each peer.
    pub evidence: Evidence,
    /// When the newest ping the witness answered (backing us) was sent.
    pub witness_backed: Option<Millis>,
    members: BTreeMap<ExportId, Member>,
    started: Option<Millis>,
    next_beat: Millis,
    last_timeout: Option<Millis>,
}

impl Node {
    /// A node with these members.
    pub fn new(settings: Settings, witness: Option<MemberId>, members: Vec<Member>) -> Node {
        Node {
            settings,
            witness,
            evidence: Evidence::default(),
            witness_backed: None,
            members: members.into_iter().map(|m| (m.export, m)).collect(),
            started: None,
            next_beat: Millis(0),
            last_timeout: None,
        }
    }

    /// Something came from `peer`.
    pub fn heard(&mut self, peer: MemberId, now: Millis) {
        self.evidence.heard(peer, now);
    }

    /// `peer`'s host refused a connection.
    pub fn refused(&mut self, peer: MemberId, now: Millis) {
        self.evidence.refused(peer, now);
    }

    /// `voucher` (the witness or another member) answered about `about`, the primary of
    /// `export`: it last heard it `ms_ago` ms ago, and the highest epoch of `export` it knows
    /// is `epoch` (the witness: 0).
    pub fn says(
        &mut self,
        voucher: MemberId,
        about: MemberId,
        export: ExportId,
        ms_ago: u64,
        epoch: Epoch,
        now: Millis,
    ) {
        self.evidence.says(voucher, about, ms_ago, now);
        self.evidence.knows_epoch(voucher, export, epoch, now);
    }

    /// The witness answered our ping sent at `sent` (it still backs us).
    pub fn witness_backs(&mut self, sent: Millis) {
        self.witness_backed = self.witness_backed.max(Some(sent));
    }

    /// Answers a vouching query about `about` (from the witness's role: another member asks
    /// when we last heard it): milliseconds since. An answer that lets the asker take over
    /// ([`takeover::vouch_binds`]) binds this member like a vote: it leaves the stream of
    /// every export `about` leads for it (the returned effects, carried out before the
    /// answer is sent). Else `about`, only paused, resumes and releases updates acknowledged
    /// by us after the asker took over without them (tests/sim_group.rs seed 138537).
    pub fn answer_query(
        &mut self,
        about: MemberId,
        now: Millis,
        role: &dyn Fn(ExportId) -> Option<RoleView>,
    ) -> (u64, Vec<Effect>) {
        let ago = self.evidence.ms_since_heard(about, now);
        if !takeover::vouch_binds(ago, &self.settings.failover) {
            return (ago, Vec::new());
        }
        let leave = self
            .members
            .keys()
            .filter(|e| {
                matches!(role(**e), Some(RoleView::Secondary { primary, joined: true, .. })
                    if primary == about)
            })
            .map(|e| Effect::LeaveStream {
                export: *e,
                why: format!("vouched that we lost our primary for {ago} ms: leaving its stream"),
            })
            .collect();
        (ago, leave)
    }

    /// The witness reported us lost to another member: every export we lead is fenced now
    /// (the returned effects), before anything else.
    pub fn witness_lost_us(&mut self, role: &dyn Fn(ExportId) -> Option<RoleView>) -> Vec<Effect> {
        self.witness_backed = None;
        self.members
            .keys()
            .filter(|e| matches!(role(**e), Some(RoleView::Primary { .. })))
            .map(|e| Effect::Fence {
                export: *e,
                why: "the witness reported this member lost: another may have taken over".into(),
            })
            .collect()
    }

    /// The decision state of one export.
    pub fn member(&mut self, export: ExportId) -> Option<&mut Member> {
        self.members.get_mut(&export)
    }

    /// The mirrored exports, lowest id first.
    pub fn exports(&self) -> Vec<ExportId> {
        self.members.keys().copied().collect()
    }

    /// Decides everything due at `now`. `role` tells each export's role as the data path
    /// sees it (`None`: not mirrored here). The effects are in the order they must be carried
    /// out (see the module docs).
    pub fn handle_timeout(
        &mut self,
        now: Millis,
        role: &dyn Fn(ExportId) -> Option<RoleView>,
        facts: &dyn Facts,
    ) -> Vec<Effect> {
        let started = *self.started.get_or_insert(now);
        // Called at least every heartbeat: a longer gap means this process was frozen
        // (SIGSTOP, a stalled host). What it learnt of the others before is stale — a member
        // resumed with a 2 s old probe answer started as a second primary in the simulation —
        // so negotiation starts over.
        let stalled = self
            .last_timeout
            .is_some_and(|t| now.since(t) > 3 * self.settings.failover.heartbeat_ms);
        self.last_timeout = Some(now);
        if stalled {
            for m in self.members.values_mut() {
                m.resumed_at = Some(now);
                m.probes.clear();
                m.probed_at = None;
                if m.negotiating_since.is_some() {
                    m.negotiating_since = Some(now);
                }
            }
        }
        let beat = now >= self.next_beat;
        if beat {
            self.next_beat = Millis(now.0 + self.settings.failover.heartbeat_ms);
        }
        let mut out = Vec::new();
        if beat && self.witness.is_some_and(|w| facts.linked(w)) {
            out.push(Effect::WitnessPing);
        }
        for m in self.members.values_mut() {
            if let Some(view) = role(m.export) {
                m.on_timeout(
                    now,
                    beat,
                    started,
                    &view,
                    &self.evidence,
                    &self.settings,
                    self.witness,
                    facts,
                    &mut out,
                );
            }
        }
        out
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next: the next heartbeat, or
    /// earlier when a peer's silence runs out before it.
    pub fn poll_timeout(&self, role: &dyn Fn(ExportId) -> Option<RoleView>) -> Millis {
        let mut d = self.next_beat;
        for m in self.members.values() {
            if let Some(view) = role(m.export) {
                if let Some(t) = m.deadline(&view, &self.evidence, &self.settings, self.witness) {
                    d = d.min(t);
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::resync::Candidate;

    struct World {
        linked: MemberSet,
        me: Candidate,
    }
    impl Facts for World {
        fn linked(&self, m: MemberId) -> bool {
            self.linked.contains(m)
        }
        fn candidate(&self, _: ExportId, seen: Epoch) -> Candidate {
            Candidate {
                epoch: self.me.epoch.max(seen.0),
                ..self.me
            }
        }
        fn name(&self, m: MemberId) -> String {
            format!("m{}", m.0)
        }
    }

    const E: ExportId = ExportId(1);
    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);
    const W: MemberId = MemberId(9);

    fn world(linked: &[MemberId]) -> World {
        World {
            linked: linked.iter().copied().collect(),
            me: Candidate {
                complete: true,
                epoch: 1,
                history: 5,
                seq: 10,
                position: 1,
            },
        }
    }

    fn secondary(joined: bool) -> RoleView {
        RoleView::Secondary {
            primary: A,
            joined,
            in_step: joined,
            incoming: false,
            led_at: None,
            epoch: Epoch(1),
        }
    }

    /// A primary with these live secondaries, serving.
    fn primary(live: MemberSet) -> RoleView {
        primary_followed(live, &[])
    }

    /// A primary with these live secondaries, serving, each confirmed our epoch at a time.
    fn primary_followed(live: MemberSet, followed: &[(MemberId, u64)]) -> RoleView {
        RoleView::Primary {
            live,
            stepping_down: false,
            closed: false,
            resyncing: MemberSet::EMPTY,
            followed: followed.iter().map(|(m, t)| (*m, Millis(*t))).collect(),
        }
    }

    /// Runs the machine every heartbeat from `from` (exclusive) up to `to` (a longer gap
    /// would be a freeze of this process); the effects of the call at `to`.
    fn tick_to(
        n: &mut Node,
        from: u64,
        to: u64,
        view: &dyn Fn(ExportId) -> Option<RoleView>,
        w: &dyn Facts,
    ) -> Vec<Effect> {
        let mut t = from + 100;
        while t < to {
            n.handle_timeout(Millis(t), view, w);
            t += 100;
        }
        n.handle_timeout(Millis(to), view, w)
    }

    fn kinds(e: &[Effect]) -> Vec<&'static str> {
        e.iter()
            .map(|e| match e {
                Effect::WitnessPing => "ping",
                Effect::WitnessQuery { .. } => "query",
                Effect::Heartbeat { .. } => "beat",
                Effect::FailOut { .. } => "failout",
                Effect::AskToRejoin { .. } => "ask",
                Effect::FinishStepDown { .. } => "finish",
                Effect::Fence { .. } => "fence",
                Effect::Promote { .. } => "promote",
                Effect::StartPrimary { .. } => "start",
                Effect::AskRoleBack { .. } => "askback",
                Effect::Probe { .. } => "probe",
                Effect::LeaveStream { .. } => "leave",
                Effect::Event { .. } => "event",
            })
            .collect()
    }

    /// A vouching answer is a vote: the member that says it lost its own primary for long
    /// enough to let the asker take over leaves that primary's stream (seed 138537); an
    /// answer that does not let anyone take over, or about another member, binds nothing.
    #[test]
    fn a_vouching_answer_leaves_the_stream() {
        let mut n = Node::new(
            Settings::default(),
            None,
            vec![Member::new(E, 2, vec![A, B])],
        );
        n.heard(A, Millis(1000));
        let view = |_| Some(secondary(true)); // follows A, joined
        let (ago, e) = n.answer_query(A, Millis(1500), &view);
        assert_eq!((ago, kinds(&e)), (500, vec![]));
        let (ago, e) = n.answer_query(B, Millis(1900), &view);
        assert_eq!((ago, kinds(&e)), (u64::MAX, vec![]), "not our primary");
        let (ago, e) = n.answer_query(A, Millis(1800), &view);
        assert_eq!((ago, kinds(&e)), (800, vec!["leave"]));
        let not_joined = |_| Some(secondary(false));
        let (_, e) = n.answer_query(A, Millis(1800), &not_joined);
        assert!(e.is_empty(), "nothing to leave");
    }

    /// A secondary whose primary's process is gone takes over; a merely silent one is held
    /// off and says so once (patent pp. 25–30).
    #[test]
    fn takeover_needs_evidence() {
        let mut n = Node::new(Settings::default(), None, vec![Member::new(E, 1, vec![A])]);
        let w = world(&[A]);
        n.heard(A, Millis(1000));
        let view = |_| Some(secondary(true));
        assert!(kinds(&n.handle_timeout(Millis(1100), &view, &w)).is_empty());
        // the deadline is the end of the primary's silence
        assert_eq!(n.poll_timeout(&view), Millis(1200));
        // held off (said once), and the silent primary is told we are here (a probe, once a
        // probe interval: it may have failed us out and asks back only members it hears)
        let e = n.handle_timeout(Millis(1401), &view, &w);
        assert_eq!(kinds(&e), ["probe", "event"]);
        assert!(kinds(&n.handle_timeout(Millis(1501), &view, &w)).is_empty());
        n.refused(A, Millis(1600));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(1601), &view, &w)),
            ["promote"]
        );
    }

    /// A joined secondary whose silent primary answers its probe that it follows another
    /// member leaves that stream (and negotiates, so the real primary hears it and asks it
    /// back); an answer as primary or as a candidate, or one older than the primary's last
    /// lead, leaves nothing (sim_group seed 3001070).
    #[test]
    fn a_primary_that_follows_another_is_left() {
        let mut n = Node::new(
            Settings::default(),
            None,
            vec![Member::new(E, 2, vec![A, B])],
        );
        let w = world(&[A, B]);
        n.heard(A, Millis(1000));
        let led = |at: u64| {
            move |_| {
                Some(RoleView::Secondary {
                    primary: A,
                    joined: true,
                    in_step: true,
                    incoming: false,
                    led_at: Some(Millis(at)),
                    epoch: Epoch(1),
                })
            }
        };
        let answer = |n: &mut Node, state: ProbeState, at: u64| {
            let c = Candidate {
                complete: true,
                epoch: 2,
                history: 7,
                seq: 20,
                position: 0,
            };
            n.member(E).unwrap().probe_answered(A, state, c, Millis(at));
        };
        // every effect of the ticks from `from` (exclusive) to `to`
        let all = |n: &mut Node, from: u64, to: u64, at: u64| -> Vec<&'static str> {
            let mut out = Vec::new();
            let mut t = from + 100;
            while t <= to {
                out.extend(kinds(&n.handle_timeout(Millis(t), &led(at), &w)));
                t += 100;
            }
            out
        };
        let leaves = |k: Vec<&'static str>| k.iter().filter(|k| **k == "leave").count();
        // silent (probed meanwhile); answers as primary or candidate change nothing
        assert_eq!(leaves(all(&mut n, 1000, 1400, 1000)), 0);
        answer(&mut n, ProbeState::Primary, 1410);
        answer(&mut n, ProbeState::Candidate, 1420);
        assert_eq!(leaves(all(&mut n, 1400, 1600, 1000)), 0);
        // an answer from before the primary led us last binds nothing
        answer(&mut n, ProbeState::Following, 1650);
        assert_eq!(leaves(all(&mut n, 1600, 1800, 1700)), 0);
        // following another: left, once
        answer(&mut n, ProbeState::Following, 1850);
        assert_eq!(leaves(all(&mut n, 1800, 2200, 1700)), 1);
    }

    /// A primary of a witnessed group that hears nobody fences itself, and sends nothing else
    /// for that export in the same batch (module docs, effect order).
    #[test]
    fn isolated_primary_fences_first_and_only() {
        let mut n = Node::new(
            Settings::default(),
            Some(W),
            vec![Member::new(E, 0, vec![B])],
        );
        let w = world(&[B, W]);
        n.heard(W, Millis(1000));
        n.heard(B, Millis(1000));
        let live: MemberSet = [B].into_iter().collect();
        let view = |_| Some(primary(live));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(1000), &view, &w)),
            ["ping", "beat"]
        );
        let e = n.handle_timeout(Millis(1401), &view, &w);
        assert_eq!(kinds(&e), ["ping", "fence"]);
    }

    /// A silent secondary is failed out; a linked listed member that is out is asked to join,
    /// then not again before `rejoin_every_ms`.
    #[test]
    fn a_live_secondary_that_only_talks_is_failed_out() {
        // seed 117335: B never got our Join (or left our stream); it probes and queries us
        // every 100 ms but confirms nothing of our epoch: it is failed out (and asked again)
        let mut n = Node::new(Settings::default(), None, vec![Member::new(E, 0, vec![B])]);
        let w = world(&[B]);
        n.heard(B, Millis(1000));
        let live: MemberSet = [B].into_iter().collect();
        let view = |_| Some(primary_followed(live, &[(B, 100)]));
        let e = n.handle_timeout(Millis(1000), &view, &w);
        assert_eq!(kinds(&e), ["beat", "failout"]);
        // confirmed recently: kept
        let view = |_| Some(primary_followed(live, &[(B, 900)]));
        let e = n.handle_timeout(Millis(1100), &view, &w);
        assert_eq!(kinds(&e), ["beat"]);
    }

    /// seed 175651: a lost connection is no evidence, a refused one is — but only if it came
    /// after everything the secondary said and after its last confirmation.
    #[test]
    fn a_refused_connection_fails_a_secondary_out_a_lost_one_does_not() {
        let mut n = Node::new(Settings::default(), None, vec![Member::new(E, 0, vec![B])]);
        let w = world(&[B]);
        let live: MemberSet = [B].into_iter().collect();
        let view = |_| Some(primary_followed(live, &[(B, 1000)]));
        n.heard(B, Millis(1000));
        n.refused(B, Millis(900)); // an old refusal: before B said anything
        assert_eq!(kinds(&n.handle_timeout(Millis(1100), &view, &w)), ["beat"]);
        n.refused(B, Millis(1150));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(1200), &view, &w)),
            ["beat", "failout"]
        );
        n.heard(B, Millis(1250)); // a new process answered
        assert_eq!(kinds(&n.handle_timeout(Millis(1300), &view, &w)), ["beat"]);
    }

    /// seed 135622: a primary frozen for 800 ms must not fail its secondaries out at once
    /// on resuming — the silence was its own.
    #[test]
    fn a_resumed_primary_gives_its_secondaries_a_fresh_silence() {
        let mut n = Node::new(Settings::default(), None, vec![Member::new(E, 0, vec![B])]);
        let w = world(&[B]);
        let live: MemberSet = [B].into_iter().collect();
        let view = |_| Some(primary_followed(live, &[(B, 1000)]));
        n.heard(B, Millis(1000));
        assert_eq!(kinds(&n.handle_timeout(Millis(1000), &view, &w)), ["beat"]);
        // frozen from 1000 to 2000: at 2000 the machine sees the gap
        assert_eq!(kinds(&n.handle_timeout(Millis(2000), &view, &w)), ["beat"]);
        assert_eq!(kinds(&n.handle_timeout(Millis(2100), &view, &w)), ["beat"]);
        // B still confirms nothing 800 ms after the resume: now it is failed out
        assert!(!kinds(&tick_to(&mut n, 2100, 2800, &view, &w)).contains(&"failout"));
        assert!(kinds(&tick_to(&mut n, 2800, 2801, &view, &w)).contains(&"failout"));
    }

    #[test]
    fn primary_fails_out_the_silent_and_asks_the_out() {
        let mut n = Node::new(
            Settings::default(),
            None,
            vec![Member::new(E, 0, vec![A, B])],
        );
        let w = world(&[A, B]);
        n.heard(A, Millis(0));
        n.heard(B, Millis(1000));
        let live: MemberSet = [A].into_iter().collect();
        let view = |_| Some(primary(live));
        let e = n.handle_timeout(Millis(1000), &view, &w);
        assert_eq!(kinds(&e), ["beat", "failout", "ask"]);
        let e = n.handle_timeout(Millis(1100), &view, &w);
        assert_eq!(kinds(&e), ["beat", "failout"]);
        // silent, but not yet for twice the silence time: kept
        n.heard(A, Millis(1000));
        let e = tick_to(&mut n, 1100, 1800, &view, &w);
        assert_eq!(kinds(&e), ["beat"]);
        let e = tick_to(&mut n, 1800, 4000, &view, &w);
        // B, out and silent since 1000, is not asked again (it would hold client updates)
        assert_eq!(kinds(&e), ["beat", "failout"]);
        n.heard(B, Millis(4000));
        let e = n.handle_timeout(Millis(4001), &view, &w);
        assert!(kinds(&e).contains(&"ask"), "{:?}", kinds(&e));
    }

    /// A secondary failed out for its silence is asked back only once it is heard again: on a
    /// cut link that TCP has not given up on, the ask would put it back in the stream at
    /// once, and client updates would wait for it for another fail-out time (tests/chaos.sh:
    /// a 1.6 s client stall for a 1 s cut).
    #[test]
    fn a_secondary_failed_out_for_silence_is_asked_back_only_when_heard() {
        let s = Settings::default();
        let mut n = Node::new(s, None, vec![Member::new(E, 0, vec![A])]);
        let w = world(&[A]);
        n.heard(A, Millis(0));
        let out = |_| Some(primary(MemberSet::default()));
        // failed out at 800 ms of silence; still linked (the cut has not ended the link)
        let fail_out = s.failover.fail_out_ms();
        let e = tick_to(
            &mut n,
            fail_out + 1,
            fail_out + 3 * s.rejoin_every_ms,
            &out,
            &w,
        );
        assert!(!kinds(&e).contains(&"ask"), "{:?}", kinds(&e));
        // the cut heals: it says something (a probe of the primary it no longer hears)
        let t = fail_out + 3 * s.rejoin_every_ms;
        n.heard(A, Millis(t));
        assert!(kinds(&n.handle_timeout(Millis(t + 1), &out, &w)).contains(&"ask"));
    }

    /// A member that stood by (silent) and was just asked to join is not failed out before
    /// it could answer: its silence counts from the join (planned switch, tests/failover.sh 4).
    #[test]
    fn a_newly_joined_member_is_not_failed_out_for_its_silence_before() {
        let mut n = Node::new(Settings::default(), None, vec![Member::new(E, 1, vec![A])]);
        let w = world(&[A]);
        n.heard(A, Millis(0));
        n.member(E).expect("mirrored").asked(A, Millis(5000));
        let live: MemberSet = [A].into_iter().collect();
        let view = |_| Some(primary(live));
        assert_eq!(kinds(&n.handle_timeout(Millis(5001), &view, &w)), ["beat"]);
        assert!(!kinds(&tick_to(&mut n, 5001, 5800, &view, &w)).contains(&"failout"));
        assert!(kinds(&n.handle_timeout(Millis(5801), &view, &w)).contains(&"failout"));
    }

    /// A member frozen while it negotiated forgets what it heard before: it decides only on
    /// answers to probes sent after it resumed.
    #[test]
    fn a_resumed_member_negotiates_afresh() {
        let s = Settings::default();
        let mut n = Node::new(s, None, vec![Member::new(E, 1, vec![A])]);
        let w = world(&[A]);
        let view = |_| Some(secondary(false));
        let weaker = Candidate {
            complete: true,
            epoch: 1,
            history: 5,
            seq: 9,
            position: 0,
        };
        for t in (0..=3000).step_by(100) {
            n.handle_timeout(Millis(t), &view, &w);
        }
        n.member(E).expect("mirrored").probe_answered(
            A,
            ProbeState::Candidate,
            weaker,
            Millis(3000),
        );
        // frozen from 3000 to 4500: the answer is 1.5 s old, within the freshness window
        let e = n.handle_timeout(Millis(4500), &view, &w);
        assert_eq!(
            kinds(&e),
            ["probe"],
            "no decision on what it knew before the stall"
        );
    }

    /// Startup: probes first; nothing decided during the grace time; then a member that heard
    /// every other member as a weaker candidate starts; one that hears a primary does not.
    #[test]
    fn negotiation_waits_for_everyone() {
        let s = Settings::default();
        let mut n = Node::new(s, None, vec![Member::new(E, 1, vec![A])]);
        let w = world(&[A]);
        let view = |_| Some(secondary(false));
        // the driver runs at least every heartbeat (a longer gap is a stall)
        let run_to = |n: &mut Node, to: u64| {
            let mut last = Vec::new();
            let from = n.last_timeout.map(|t| t.0 + 100).unwrap_or(0);
            for t in (from..=to).step_by(100) {
                last = n.handle_timeout(Millis(t), &view, &w);
            }
            last
        };
        assert_eq!(kinds(&run_to(&mut n, 0)), ["probe"]);
        // not heard: waits and says why (once)
        let e = run_to(&mut n, s.startup_grace_ms);
        assert_eq!(kinds(&e), ["probe", "event"]);
        let weaker = Candidate {
            complete: true,
            epoch: 1,
            history: 5,
            seq: 9,
            position: 0,
        };
        let t = s.startup_grace_ms + s.probe_every_ms;
        run_to(&mut n, t - 100);
        n.member(E).expect("mirrored").probe_answered(
            A,
            ProbeState::Candidate,
            weaker,
            Millis(t - 50),
        );
        assert_eq!(kinds(&run_to(&mut n, t)), ["probe", "start"]);
        let t = t + s.probe_every_ms;
        run_to(&mut n, t - 100);
        n.member(E).expect("mirrored").probe_answered(
            A,
            ProbeState::Primary,
            weaker,
            Millis(t - 50),
        );
        assert_eq!(kinds(&run_to(&mut n, t)), ["probe", "event"]);
    }

    /// The view of a secondary joined and in step under B, in `epoch`.
    fn in_step_under_b(epoch: u64) -> impl Fn(ExportId) -> Option<RoleView> {
        move |_| {
            Some(RoleView::Secondary {
                primary: B,
                joined: true,
                in_step: true,
                incoming: false,
                led_at: None,
                epoch: Epoch(epoch),
            })
        }
    }

    /// The listed primary, in step after a resync, asks for its role back every
    /// `ask_back_every_ms`; told to take over, it promotes at once.
    #[test]
    fn hand_back() {
        let s = Settings::default();
        let mut n = Node::new(s, None, vec![Member::new(E, 0, vec![B])]);
        let w = world(&[B]);
        let view = in_step_under_b(1);
        n.heard(B, Millis(0));
        n.member(E).expect("mirrored").resynced();
        assert_eq!(kinds(&n.handle_timeout(Millis(10), &view, &w)), ["askback"]);
        assert!(kinds(&n.handle_timeout(Millis(20), &view, &w)).is_empty());
        n.heard(B, Millis(2000));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(2010), &view, &w)),
            ["askback"]
        );
        let ev = n.member(E).expect("mirrored").take_over_asked("b");
        assert!(matches!(ev, Effect::Event { .. }));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(2020), &view, &w)),
            ["promote"]
        );
        n.member(E).expect("mirrored").took_over();
        assert!(kinds(&n.handle_timeout(Millis(2030), &view, &w)).is_empty());
    }

    /// A listed primary the operator demoted never asks for its role back, also when it
    /// comes back in step through a resync; once it took a role over again, the rule of
    /// `hand_back` holds again.
    #[test]
    fn a_demoted_listed_primary_stays_down() {
        let s = Settings::default();
        let mut n = Node::new(s, None, vec![Member::new(E, 0, vec![B])]);
        let w = world(&[B]);
        let view = in_step_under_b(2);
        n.member(E).expect("mirrored").demoted();
        n.member(E).expect("mirrored").resynced();
        for t in (10..10_000).step_by(100) {
            n.heard(B, Millis(t));
            let e = n.handle_timeout(Millis(t), &view, &w);
            assert!(!kinds(&e).contains(&"askback"), "asked back at {t}: {e:?}");
        }
        // taken over since (a failure, the operator's promote): the next resync asks again
        n.member(E).expect("mirrored").took_over();
        n.member(E).expect("mirrored").resynced();
        n.heard(B, Millis(10_000));
        assert_eq!(
            kinds(&n.handle_timeout(Millis(10_010), &view, &w)),
            ["askback"]
        );
    }
}
