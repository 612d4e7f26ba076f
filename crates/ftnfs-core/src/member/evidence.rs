//! What a member knows of its peers' liveness: the evidence every role decision rests on
//! (DESIGN.md "Failure handling"; patent pp. 25–30).
//!
//! Evidence is per *peer*, not per export: a peer that is heard on any link is alive for every
//! export. The shell reports what it saw ([`Evidence::heard`], [`Evidence::refused`],
//! [`Evidence::says`]); the rules read it.

use std::collections::BTreeMap;

use crate::ids::{Epoch, ExportId, MemberId, Millis};

/// What this member knows of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watch {
    /// Last message (heartbeat, update, answer) from it.
    pub last_heard: Option<Millis>,
    /// Last time its host refused a connection to its peer port (TCP RST: nothing listens).
    pub refused_at: Option<Millis>,
}

/// The evidence about every peer (bounded by the group's member count).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    peers: BTreeMap<MemberId, Watch>,
    /// What others said about a member: (about, who said it) → (when we got the answer, ms
    /// since they heard it). The witness and the other members vouch for a silent primary.
    says: BTreeMap<(MemberId, MemberId), (Millis, u64)>,
    /// The highest epoch of an export a voucher said it knows: (voucher, export) → (when we
    /// got the answer, the epoch). A member that vouches knowing a newer epoch than the one
    /// we follow tells us we missed a takeover (tests/sim_group.rs seed 154793).
    epochs: BTreeMap<(MemberId, ExportId), (Millis, Epoch)>,
}

impl Evidence {
    /// Something came from `peer`: it is alive.
    pub fn heard(&mut self, peer: MemberId, now: Millis) {
        self.peers.entry(peer).or_default().last_heard = Some(now);
    }

    /// `peer`'s host refused a connection to its peer port: its process is gone.
    pub fn refused(&mut self, peer: MemberId, now: Millis) {
        self.peers.entry(peer).or_default().refused_at = Some(now);
    }

    /// `voucher` (the witness, or another member) answered that it last heard `about`
    /// `ms_ago` milliseconds ago.
    pub fn says(&mut self, voucher: MemberId, about: MemberId, ms_ago: u64, now: Millis) {
        self.says.insert((about, voucher), (now, ms_ago));
    }

    /// `voucher` answered, for `export`, that the highest epoch of it it knows is `epoch`.
    pub fn knows_epoch(&mut self, voucher: MemberId, export: ExportId, epoch: Epoch, now: Millis) {
        self.epochs.insert((voucher, export), (now, epoch));
    }

    /// What `voucher` last said of its epoch of `export`: (when we got it, the epoch).
    pub fn epoch_of(&self, voucher: MemberId, export: ExportId) -> Option<(Millis, Epoch)> {
        self.epochs.get(&(voucher, export)).copied()
    }

    /// What `voucher` last said about `about`: (when we got it, ms since it heard `about`).
    pub fn said(&self, voucher: MemberId, about: MemberId) -> Option<(Millis, u64)> {
        self.says.get(&(about, voucher)).copied()
    }

    /// What we know of `peer`.
    pub fn of(&self, peer: MemberId) -> Watch {
        self.peers.get(&peer).copied().unwrap_or_default()
    }

    /// When anything last came from `peer`.
    pub fn last_heard(&self, peer: MemberId) -> Option<Millis> {
        self.of(peer).last_heard
    }

    /// Milliseconds since `peer` was heard (`u64::MAX`: never) — what a witness answers.
    pub fn ms_since_heard(&self, peer: MemberId, now: Millis) -> u64 {
        self.last_heard(peer)
            .map(|h| now.since(h))
            .unwrap_or(u64::MAX)
    }

    /// Whether `peer` was heard within `ms`.
    pub fn heard_within(&self, peer: MemberId, ms: u64, now: Millis) -> bool {
        self.last_heard(peer).is_some_and(|h| now.since(h) < ms)
    }
}
