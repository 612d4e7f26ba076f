//! Rejoin rules (DESIGN.md "Recovery"; patent pp. 36–38), pure: which objects a resync must
//! carry to a rejoining member, when its passes are short enough to hold writes for the last
//! one, and which member starts as primary when a group comes up without one.
//!
//! A resync carries *state*, not updates: for every object an update touched since the point
//! the rejoining member surely holds, the survivor sends the object as it is now (a file's
//! data and attributes, a directory's entries). Sending an object again is harmless, so a
//! lower bound of the member's position is enough, and a resync cut by a crash is simply run
//! again. Replaying the updates themselves would need the exact position, which a member
//! killed between applying an update and recording it cannot know.
//!
//! ```text
//!  change log (every member): Start{history, base} | Update{history, seq, ids}
//!  rejoining member: "stream H, surely applied up to F, my own log shows ids X after F"
//!  survivor: dirty = X ∪ ids of its log after (H, F) ∪ ids of every later stream
//!            (or Full when its log does not reach back to F, or H is unknown to it)
//! ```

use std::collections::{BTreeMap, BTreeSet};

/// Granularity of a file's data in the change log (the replication order's WRITE block).
pub const BLOCK: u64 = 1 << 20;
/// Most blocks kept per object in a dirty set; past that the whole object is sent.
pub const MAX_BLOCKS: usize = 4096;

/// What an update touched of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Touched {
    /// File id.
    pub id: u64,
    /// Blocks `first..=last` of its data only (a WRITE), or the whole object (`None`).
    pub blocks: Option<(u64, u64)>,
}

impl Touched {
    /// The whole object.
    pub fn whole(id: u64) -> Touched {
        Touched { id, blocks: None }
    }
    /// Blocks `first..=last` of a file's data.
    pub fn blocks(id: u64, first: u64, last: u64) -> Touched {
        Touched {
            id,
            blocks: Some((first.min(last), first.max(last))),
        }
    }
}

/// How much of an object a resync sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    /// All of it.
    Whole,
    /// These blocks of its data (and its attributes).
    Blocks(BTreeSet<u64>),
}

/// The objects a resync sends, each whole or by block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirtySet(pub BTreeMap<u64, Dirty>);

impl DirtySet {
    /// Adds what one update touched (a whole object absorbs any blocks).
    pub fn add(&mut self, t: Touched) {
        let e = self
            .0
            .entry(t.id)
            .or_insert_with(|| Dirty::Blocks(BTreeSet::new()));
        match (t.blocks, &mut *e) {
            (_, Dirty::Whole) => {}
            (None, _) => *e = Dirty::Whole,
            (Some((a, b)), Dirty::Blocks(set)) => {
                if b - a >= MAX_BLOCKS as u64 || set.len() >= MAX_BLOCKS {
                    *e = Dirty::Whole;
                } else {
                    set.extend(a..=b);
                }
            }
        }
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No object.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a list of touches (one per whole object or per block).
    pub fn touched(&self) -> Vec<Touched> {
        let mut out = Vec::new();
        for (id, d) in &self.0 {
            match d {
                Dirty::Whole => out.push(Touched::whole(*id)),
                Dirty::Blocks(b) => out.extend(b.iter().map(|b| Touched::blocks(*id, *b, *b))),
            }
        }
        out
    }
}

impl FromIterator<Touched> for DirtySet {
    fn from_iter<I: IntoIterator<Item = Touched>>(it: I) -> Self {
        let mut d = DirtySet::default();
        for t in it {
            d.add(t);
        }
        d
    }
}

/// One record of a member's change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// From here on, every update of stream `history` after `base` is logged.
    Start {
        /// The stream.
        history: u64,
        /// Updates up to here are not in this log.
        base: u64,
    },
    /// Update `seq` of stream `history` touched these file ids.
    Update {
        /// The stream.
        history: u64,
        /// Its number.
        seq: u64,
        /// What it touched (the objects and directories named, the object created; a
        /// WRITE only the blocks it covers).
        ids: Vec<Touched>,
    },
}

/// Where the survivor's own update stream came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The stream the survivor leads now.
    pub history: u64,
    /// The stream it was a secondary of before it took over (0: none).
    pub prev: u64,
    /// The update of `prev` at which it took over (where `history` starts).
    pub base: u64,
}

/// What a resync must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send these objects (and, through the member's requests, whatever they name that it
    /// lacks).
    Partial(DirtySet),
    /// Wipe the member's mirror and copy everything.
    Full(String),
}

/// How far a stream is covered by a log: every update after the returned number is in it.
/// A log whose start was cut (the size cap) is trusted only `window` updates after its first
/// record, because updates are logged in apply order, which may differ from number order by
/// up to the window.
fn covered_from(log: &[LogEntry], history: u64, window: u64) -> Option<u64> {
    for e in log {
        match e {
            LogEntry::Start { history: h, base } if *h == history => return Some(*base),
            LogEntry::Update {
                history: h, seq, ..
            } if *h == history => return Some(seq.saturating_sub(1).saturating_add(window)),
            _ => {}
        }
    }
    None
}

/// The survivor's plan for a member that reports stream `history`, surely applied up to
/// `from`, and `its_ids` touched after that by its own log. `log` is the survivor's change
/// log, oldest first; `now` its current stream; `window` the most updates a member holds
/// beyond its watermark.
pub fn plan(
    log: &[LogEntry],
    now: Stream,
    history: u64,
    from: u64,
    its_ids: &[Touched],
    window: u64,
) -> Plan {
    let mut dirty: DirtySet = its_ids.iter().copied().collect();
    let later_streams: &[u64] = if history == now.history {
        &[]
    } else if history == now.prev && now.prev != 0 {
        if from > now.base {
            return Plan::Full(format!(
                "the member applied updates up to {from} of a stream this member left at {}",
                now.base
            ));
        }
        std::slice::from_ref(&now.history)
    } else {
        return Plan::Full("the member's last stream is not this member's".into());
    };
    match covered_from(log, history, window) {
        Some(c) if c <= from => {}
        Some(c) => {
            return Plan::Full(format!(
                "the change log reaches back to update {c}, the member stands at {from}"
            ))
        }
        None => return Plan::Full("the change log does not cover the member's stream".into()),
    }
    if let Some(h) = later_streams.first() {
        if covered_from(log, *h, window) != Some(now.base) {
            return Plan::Full("the change log does not cover this member's stream".into());
        }
    }
    for e in log {
        if let LogEntry::Update {
            history: h,
            seq,
            ids,
        } = e
        {
            if (*h == history && *seq > from) || later_streams.contains(h) {
                for t in ids {
                    dirty.add(*t);
                }
            }
        }
    }
    Plan::Partial(dirty)
}

/// The position a member reports from its own log: its last stream, an update it surely
/// applied, and every id touched after that. Surely applied: everything up to `window`
/// before the last update it logged (nothing further back can still have been in flight),
/// and everything up to the latest `Start` of that stream (it was in step there).
pub fn position(log: &[LogEntry], window: u64) -> Option<(u64, u64, DirtySet)> {
    let history = match log.last()? {
        LogEntry::Update { history, .. } | LogEntry::Start { history, .. } => *history,
    };
    let mut last = None;
    let mut start = None;
    for e in log {
        match e {
            LogEntry::Update {
                history: h, seq, ..
            } if *h == history => last = Some(last.map_or(*seq, |l: u64| l.max(*seq))),
            LogEntry::Start { history: h, base } if *h == history => {
                last = Some(last.map_or(*base, |l: u64| l.max(*base)));
                start = Some(*base);
            }
            _ => {}
        }
    }
    let last = last?;
    let from = last.saturating_sub(window).max(start.unwrap_or(0));
    // the log must reach back to `from` for the ids to be complete
    if covered_from(log, history, window)? > from {
        return None;
    }
    let ids = log
        .iter()
        .filter_map(|e| match e {
            LogEntry::Update {
                history: h,
                seq,
                ids,
            } if *h == history && *seq > from => Some(ids.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    Some((history, from, ids))
}

/// Passes after which the next one holds writes regardless of its size.
pub const MAX_PASSES: u64 = 8;
/// A pass with at most this many objects is short enough to hold writes for.
pub const FINAL_OBJECTS: usize = 128;

/// Whether the next pass (number `pass`, carrying `objects`) is the last one, with writes
/// held.
pub fn final_pass(pass: u64, objects: usize) -> bool {
    objects <= FINAL_OBJECTS || pass >= MAX_PASSES
}

/// What another member said when asked at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// It is primary of the export.
    Primary,
    /// It answered: not primary.
    Member(Candidate),
    /// Its host refused the connection: its process is not running.
    Down,
    /// Nothing heard: it may be running somewhere with newer updates.
    Unknown,
}

/// A member's claim to start as primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its mirror is complete (no interrupted resync, no crash of its host).
    pub complete: bool,
    /// Highest epoch it knows.
    pub epoch: u64,
    /// The stream it last applied, and the last update of it.
    pub history: u64,
    /// See `history`.
    pub seq: u64,
    /// Its place in the export's member list (0: the listed primary).
    pub position: usize,
}

impl Candidate {
    /// Whether `self` holds newer updates than `o` (or is preferred when that is unknown).
    fn beats(&self, o: &Candidate) -> bool {
        if self.complete != o.complete {
            return self.complete;
        }
        if self.epoch != o.epoch {
            return self.epoch > o.epoch;
        }
        if self.history == o.history && self.seq != o.seq {
            return self.seq > o.seq;
        }
        self.position < o.position
    }
}

/// Startup negotiation of a member that finds no primary: it starts as primary only when it
/// heard every other member, none is primary, and its own mirror is the best; otherwise it
/// waits (for a primary to ask it to join, for the others to come back, or for the
/// operator).
pub fn startup(me: &Candidate, others: &[(String, Peer)]) -> Result<(), String> {
    if !me.complete {
        return Err("this mirror is incomplete (an interrupted resync or a host crash)".into());
    }
    for (name, p) in others {
        match p {
            Peer::Primary => return Err(format!("{name} is primary")),
            Peer::Unknown => {
                return Err(format!(
                "{name} is not heard and may hold newer updates (ftnfsctl promote to start anyway)"
            ))
            }
            // A member whose process is down may hold newer updates too: a member that
            // follows nobody is here because it is not in step (restarted, failed out,
            // resynced), and starting from its mirror would lose what the other one
            // acknowledged (tests/sim_group.rs found exactly that).
            Peer::Down => {
                return Err(format!(
                "{name}'s process is down and it may hold newer updates (ftnfsctl promote to start anyway)"
            ))
            }
            Peer::Member(c) if c.beats(me) => {
                return Err(format!("{name} holds a newer or preferred mirror"))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(history: u64, seq: u64, ids: &[u64]) -> LogEntry {
        LogEntry::Update {
            history,
            seq,
            ids: ids.iter().map(|i| Touched::whole(*i)).collect(),
        }
    }

    fn whole(ids: &[u64]) -> DirtySet {
        ids.iter().map(|i| Touched::whole(*i)).collect()
    }

    const NOW: Stream = Stream {
        history: 9,
        prev: 0,
        base: 0,
    };

    #[test]
    fn a_failed_out_secondary_gets_what_was_touched_after_its_point() {
        let log = vec![
            LogEntry::Start {
                history: 9,
                base: 0,
            },
            up(9, 1, &[10]),
            up(9, 2, &[11]),
            up(9, 3, &[12, 1]),
        ];
        assert_eq!(
            plan(&log, NOW, 9, 1, &[Touched::whole(50)], 1024),
            Plan::Partial(whole(&[1, 11, 12, 50]))
        );
        assert_eq!(plan(&log, NOW, 9, 3, &[], 1024), Plan::Partial(whole(&[])));
    }

    #[test]
    fn a_log_cut_by_its_cap_forces_a_full_copy() {
        let log = vec![up(9, 5000, &[10]), up(9, 5001, &[11])];
        assert!(matches!(plan(&log, NOW, 9, 100, &[], 1024), Plan::Full(_)));
        // far enough past the cut, the log is trusted again
        assert!(matches!(
            plan(&log, NOW, 9, 7000, &[], 1024),
            Plan::Partial(_)
        ));
    }

    #[test]
    fn another_stream_is_a_full_copy() {
        let log = vec![LogEntry::Start {
            history: 9,
            base: 0,
        }];
        assert!(matches!(plan(&log, NOW, 4, 0, &[], 1024), Plan::Full(_)));
    }

    #[test]
    fn the_old_primary_gets_the_rest_of_its_stream_and_all_of_the_new_one() {
        // survivor was secondary of 4 from update 0, took over at 100 with stream 9
        let log = vec![
            LogEntry::Start {
                history: 4,
                base: 0,
            },
            up(4, 99, &[1]),
            up(4, 100, &[2]),
            LogEntry::Start {
                history: 9,
                base: 100,
            },
            up(9, 101, &[3]),
        ];
        let now = Stream {
            history: 9,
            prev: 4,
            base: 100,
        };
        // the old primary surely applied 98, its own log shows 7 touched after that
        assert_eq!(
            plan(&log, now, 4, 98, &[Touched::whole(7)], 1024),
            Plan::Partial(whole(&[1, 2, 3, 7]))
        );
        // it claims more of the old stream than the survivor had: unknown territory
        assert!(matches!(plan(&log, now, 4, 150, &[], 1024), Plan::Full(_)));
    }

    #[test]
    fn position_is_a_window_before_the_last_logged_update() {
        let mut log = vec![LogEntry::Start {
            history: 9,
            base: 0,
        }];
        for s in 1..=10 {
            log.push(up(9, s, &[s * 100]));
        }
        let (h, from, ids) = position(&log, 3).unwrap();
        assert_eq!((h, from), (9, 7));
        assert_eq!(ids, whole(&[800, 900, 1000]));
        assert_eq!(position(&[], 3), None);
        // a log cut short of the window: the position is unknown
        assert_eq!(position(&log[8..], 3), None);
        // a member that joined a stream at 5000 and applied two updates: it surely has
        // everything up to 5000, not just up to 5002 - window
        let joined = vec![
            LogEntry::Start {
                history: 4,
                base: 5000,
            },
            up(4, 5001, &[1]),
            up(4, 5002, &[2]),
        ];
        let (h, from, ids) = position(&joined, 1024).unwrap();
        assert_eq!((h, from), (4, 5000));
        assert_eq!(ids, whole(&[1, 2]));
    }

    #[test]
    fn writes_dirty_blocks_and_anything_else_the_whole_object() {
        let mut d = DirtySet::default();
        d.add(Touched::blocks(5, 3, 4));
        d.add(Touched::blocks(5, 10, 10));
        assert_eq!(d.0[&5], Dirty::Blocks([3, 4, 10].into()));
        d.add(Touched::whole(5));
        d.add(Touched::blocks(5, 1, 1));
        assert_eq!(d.0[&5], Dirty::Whole, "a whole object absorbs blocks");
        d.add(Touched::blocks(6, 0, MAX_BLOCKS as u64 + 5));
        assert_eq!(d.0[&6], Dirty::Whole, "too many blocks: the whole file");
        let back: DirtySet = d.touched().into_iter().collect();
        assert_eq!(back, d);
    }

    #[test]
    fn passes_end_when_small_or_too_many() {
        assert!(final_pass(1, 10));
        assert!(!final_pass(1, 100_000));
        assert!(final_pass(MAX_PASSES, 100_000));
    }

    fn cand(complete: bool, epoch: u64, seq: u64, position: usize) -> Candidate {
        Candidate {
            complete,
            epoch,
            history: 1,
            seq,
            position,
        }
    }

    #[test]
    fn startup_waits_for_every_member_and_picks_the_newest() {
        let me = cand(true, 2, 10, 0);
        assert!(startup(&me, &[("b".into(), Peer::Down)]).is_err());
        assert!(startup(&me, &[("b".into(), Peer::Unknown)]).is_err());
        assert!(startup(&me, &[("b".into(), Peer::Primary)]).is_err());
        assert!(startup(&me, &[("b".into(), Peer::Member(cand(false, 3, 99, 1)))]).is_ok());
        assert!(startup(&me, &[("b".into(), Peer::Member(cand(true, 3, 1, 1)))]).is_err());
        assert!(startup(&me, &[("b".into(), Peer::Member(cand(true, 2, 11, 1)))]).is_err());
        assert!(startup(&me, &[("b".into(), Peer::Member(cand(true, 2, 10, 1)))]).is_ok());
        assert!(startup(&cand(false, 9, 9, 0), &[("b".into(), Peer::Down)]).is_err());
    }
}
