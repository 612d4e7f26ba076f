//! Where a member stands in its update stream, from its change log: the highest update
//! `upto` such that every update of the stream up to it is in the log. That, not the highest
//! update logged, is what a member claims when a group comes up without a primary
//! ([`super::resync::Candidate`]) and where a stream it starts continues from.
//!
//! Updates are logged in *apply* order, not number order: a secondary applies independent
//! updates concurrently, so a process killed mid-way can leave a log holding 99 and 100 but
//! not 98. Claiming 100 would let that member win the startup negotiation against one that
//! holds all of 98..=100 (say, a member that acknowledged 98 while this one was failed out
//! stalled inside it) and the group would restart from the mirror without 98, erasing it
//! from the others with their resync (`Documentation/09-member-machine.md` item 22).
//!
//! The window rule: a secondary refuses an update more than `window` past its contiguous
//! applied watermark, and the primary logs in number order, so a logged update `s` means
//! every update up to `s - window` was logged before it. A log whose start was cut (the size
//! cap, or a reader that keeps only the newest records) is therefore trusted up to
//! `top - window` without seeing those records, and holes are looked for only above that.
//!
//! ```text
//!  log (apply order):  Start(h, 90) 91 92 93 95 96 98        window 4
//!  upto: 93 (94 missing)      top: 98      claim: (h, 93)
//! ```

use std::collections::BTreeSet;

use super::resync::LogEntry;

/// Streams remembered at once (only the newest is claimed; a few older ones keep a record of
/// a late apply from being taken for a new stream).
const STREAMS: usize = 4;

/// The contiguous prefix of one stream in a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Prefix {
    history: u64,
    /// Every update up to here is logged.
    upto: u64,
    /// The highest update logged.
    top: u64,
    /// Logged updates above `upto` (at most `window` of them: see the window rule).
    above: BTreeSet<u64>,
}

impl Prefix {
    fn settle(&mut self, window: u64) {
        self.upto = self.upto.max(self.top.saturating_sub(window));
        self.above = self.above.split_off(&(self.upto + 1));
        while self.above.first() == Some(&(self.upto + 1)) {
            self.above.pop_first();
            self.upto += 1;
        }
    }
}

/// Where a member stands, fed with its change log's records in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    window: u64,
    /// Newest-noted last.
    streams: Vec<Prefix>,
}

impl Standing {
    /// Nothing logged yet; `window` is the most updates a member holds beyond its watermark.
    pub fn new(window: u64) -> Standing {
        Standing {
            window: window.max(1),
            streams: Vec::new(),
        }
    }

    /// The stream `history`, made the newest (created with `floor` as its prefix when new).
    fn stream(&mut self, history: u64, floor: u64) -> &mut Prefix {
        match self.streams.iter().position(|p| p.history == history) {
            Some(i) => {
                let p = self.streams.remove(i);
                self.streams.push(p);
            }
            None => {
                if self.streams.len() == STREAMS {
                    self.streams.remove(0);
                }
                self.streams.push(Prefix {
                    history,
                    upto: floor,
                    top: floor,
                    above: BTreeSet::new(),
                });
            }
        }
        self.streams.last_mut().expect("just pushed")
    }

    /// A `Start` record: the mirror holds `history` up to `base`, and every later update is
    /// logged from here on.
    pub fn start(&mut self, history: u64, base: u64) {
        let p = self.stream(history, base);
        p.upto = base;
        p.top = base;
        p.above.clear();
    }

    /// An `Update` record. Of a stream whose `Start` this log does not hold (cut), the
    /// updates before the first one seen are taken as logged.
    pub fn update(&mut self, history: u64, seq: u64) {
        let window = self.window;
        let p = self.stream(history, seq.saturating_sub(1));
        if seq <= p.upto {
            return;
        }
        p.above.insert(seq);
        p.top = p.top.max(seq);
        p.settle(window);
    }

    /// Either record.
    pub fn note(&mut self, e: &LogEntry) {
        match e {
            LogEntry::Start { history, base } => self.start(*history, *base),
            LogEntry::Update { history, seq, .. } => self.update(*history, *seq),
        }
    }

    /// The stream of the newest record and the update up to which it is logged without a
    /// gap ((0, 0): nothing logged).
    pub fn claim(&self) -> (u64, u64) {
        self.streams
            .last()
            .map(|p| (p.history, p.upto))
            .unwrap_or((0, 0))
    }

    /// The highest update logged of the newest stream (status: how far the log reaches).
    pub fn top(&self) -> u64 {
        self.streams.last().map_or(0, |p| p.top)
    }

    /// Forgets everything (the log was cleared).
    pub fn clear(&mut self) {
        self.streams.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(window: u64, recs: &[(u64, u64, bool)]) -> Standing {
        let mut s = Standing::new(window);
        for &(h, n, start) in recs {
            if start {
                s.start(h, n);
            } else {
                s.update(h, n);
            }
        }
        s
    }

    #[test]
    fn a_hole_holds_the_claim_below_it_until_filled() {
        let mut s = fed(
            4,
            &[
                (7, 90, true),
                (7, 91, false),
                (7, 92, false),
                (7, 93, false),
                (7, 95, false),
                (7, 96, false),
            ],
        );
        assert_eq!(s.claim(), (7, 93));
        assert_eq!(s.top(), 96);
        s.update(7, 94);
        assert_eq!(s.claim(), (7, 96));
    }

    #[test]
    fn the_window_rule_trusts_what_lies_a_window_below_the_top() {
        // 94 never shows up: a log cut below it, or a record lost to nothing we can see;
        // once the top is a window past it, it was logged before (the secondary's rule)
        let mut s = fed(4, &[(7, 90, true), (7, 91, false), (7, 95, false)]);
        assert_eq!(s.claim(), (7, 91));
        for n in [96, 97, 98] {
            s.update(7, n);
        }
        assert_eq!(s.claim(), (7, 98));
        // and the set above the prefix never holds more than a window
        let mut s = fed(4, &[(7, 0, true)]);
        for n in (2..1000).step_by(2) {
            s.update(7, n);
            assert!(s.streams[0].above.len() <= 4);
        }
    }

    #[test]
    fn a_cut_log_starts_from_its_first_record_and_a_start_resets() {
        // the tail of a log in apply order: 1001 was logged before the cut
        let s = fed(
            1024,
            &[(7, 1000, false), (7, 1002, false), (7, 1003, false)],
        );
        assert_eq!(s.claim(), (7, 1000), "1001 is above the first record seen");
        let s = fed(
            1024,
            &[(7, 1002, false), (7, 1000, false), (7, 1003, false)],
        );
        assert_eq!(
            s.claim(),
            (7, 1003),
            "below the first record seen counts as logged"
        );
        // a new stream: its Start is the claim, the old stream's gaps do not matter
        let s = fed(4, &[(7, 10, true), (7, 12, false), (8, 11, true)]);
        assert_eq!(s.claim(), (8, 11));
        // a rejoin of the same stream after a resync starts over at the new base
        let s = fed(
            4,
            &[(7, 10, true), (7, 12, false), (7, 20, true), (7, 21, false)],
        );
        assert_eq!(s.claim(), (7, 21));
        assert_eq!(Standing::new(4).claim(), (0, 0));
    }

    #[test]
    fn a_late_record_of_an_older_stream_makes_it_newest_but_keeps_the_newer_one() {
        let mut s = fed(
            4,
            &[(7, 10, true), (8, 11, true), (8, 12, false), (7, 11, false)],
        );
        assert_eq!(s.claim(), (7, 11));
        s.update(8, 13);
        assert_eq!(s.claim(), (8, 13), "stream 8 was remembered");
        // at most STREAMS streams are kept
        for h in 100..110 {
            s.start(h, 0);
        }
        assert_eq!(s.streams.len(), STREAMS);
    }
}
