//! Synchronous mirroring of one export (DESIGN.md decisions 3–5, 10; patent pp. 12–25,
//! Figures 2, 3, 6, 7): the primary's and the secondaries' state machines.
//!
//! ```text
//!  client update ─▶ Primary::submit ──Send(update)──▶ peers ──▶ Secondary::on_update
//!                        │ Run(seq) when order allows                 │ Apply when order allows
//!                        ▼                                            ▼
//!                 (shell executes locally)                 (shell executes, records DRC)
//!                        │ local_done(seq, status)                    │ applied(seq, status)
//!                        ▼                                            ▼
//!                 Release(seq) once local is done  ◀──Ack(seq,status)──┘
//!                 and every live secondary acked
//! ```
//!
//! The core never touches the filesystem or the network: the payload `P` of an update is
//! opaque to it (the shell's encoded request with the primary's decisions). It decides order
//! ([`order`]), who must still acknowledge, when to resend, when a secondary is out, and when
//! the client's reply may go. The status each member computed is compared: a secondary that
//! got a different result has diverged and is failed out of the export, never kept silently
//! (decision 5).

pub mod order;
pub mod primary;
pub mod proxy;
pub mod resync;
pub mod secondary;
pub mod standing;

use crate::ids::{Epoch, ExportId, FileId, Generation, MemberId, SeqNo};

/// A set of members (ids below 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct MemberSet(u64);

impl MemberSet {
    /// No member.
    pub const EMPTY: MemberSet = MemberSet(0);

    /// Adds a member.
    pub fn insert(&mut self, m: MemberId) {
        self.0 |= 1 << (m.0 & 63);
    }
    /// Removes a member.
    pub fn remove(&mut self, m: MemberId) {
        self.0 &= !(1 << (m.0 & 63));
    }
    /// Whether `m` is in the set.
    pub fn contains(self, m: MemberId) -> bool {
        self.0 & (1 << (m.0 & 63)) != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Number of members.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
    /// The members, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = MemberId> {
        (0..64u8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(MemberId)
    }
    /// The raw bitmap (for status output).
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl FromIterator<MemberId> for MemberSet {
    fn from_iter<I: IntoIterator<Item = MemberId>>(it: I) -> Self {
        let mut s = MemberSet::EMPTY;
        for m in it {
            s.insert(m);
        }
        s
    }
}

/// One update of an export as it travels from the primary to the secondaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<P> {
    /// The export.
    pub export: ExportId,
    /// The primary's epoch.
    pub epoch: Epoch,
    /// Its number in the export's order.
    pub seq: SeqNo,
    /// Updates that must be applied before this one ([`order`]).
    pub deps: Vec<SeqNo>,
    /// A namespace update: waits for every earlier update.
    pub barrier: bool,
    /// What to apply (opaque to the core).
    pub payload: P,
}

/// What the primary decided for a creating update, so that every member gives the new object
/// the same identity and times (decisions 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dictated {
    /// File id of the new object (unused for updates that create nothing).
    pub file: FileId,
    /// Its generation.
    pub gen: Generation,
    /// Server time of the update, nanoseconds since the epoch: the mtime/ctime every member
    /// sets on what the update changed (and the atime of a new object).
    pub time_ns: i64,
}

/// One object an update touches: the whole object, or one part of it (a block of a file's
/// data). Two keys conflict when they name the same object and either is whole or both name
/// the same part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The object (a file id).
    pub object: u64,
    /// The part (a block number), or `None` for the whole object.
    pub part: Option<u64>,
}

impl Key {
    /// The whole object.
    pub fn whole(object: u64) -> Key {
        Key { object, part: None }
    }
    /// One part of the object.
    pub fn part(object: u64, part: u64) -> Key {
        Key {
            object,
            part: Some(part),
        }
    }
}

/// What an update touches, as the primary's shell sees it before executing it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Touch {
    /// What it changes; updates with conflicting keys are applied in order everywhere.
    pub keys: Vec<Key>,
    /// It changes the namespace: ordered after and before everything.
    pub barrier: bool,
}

/// Why a secondary was failed out of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// It computed another result for an update than the primary did.
    Diverged {
        /// The update.
        seq: SeqNo,
        /// The primary's status.
        ours: u32,
        /// The secondary's status.
        theirs: u32,
    },
    /// It did not acknowledge an update after every retry.
    Silent {
        /// The oldest unacknowledged update.
        seq: SeqNo,
        /// Sends made.
        sends: u32,
    },
    /// The shell lost the connection to it.
    Lost,
    /// It refused our updates (another epoch).
    Refused {
        /// Its epoch.
        theirs: Epoch,
    },
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::Diverged { seq, ours, theirs } => write!(
                f,
                "diverged at update {seq}: primary status {ours}, secondary status {theirs}"
            ),
            FailReason::Silent { seq, sends } => {
                write!(f, "no acknowledgement of update {seq} after {sends} sends")
            }
            FailReason::Lost => write!(f, "peer connection lost"),
            FailReason::Refused { theirs } => write!(f, "refused our epoch (theirs {theirs})"),
        }
    }
}
