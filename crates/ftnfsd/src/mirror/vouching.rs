//! Vouching: this member's answers about a silent member (as the witness, or as a fellow
//! member, which binds it: `Node::answer_query`), and the answers it gets.

use super::*;

impl Mirror {
    /// `voucher` (the witness or another member) answered when it last heard `about`, and
    /// the highest epoch of `export` it knows.
    pub fn vouched(
        &self,
        voucher: MemberId,
        about: &str,
        export: ExportId,
        ms_ago: u64,
        epoch: Epoch,
        now: Millis,
    ) {
        if let Some(p) = self.group.peer(about) {
            lock(&self.node).says(voucher, p.id, export, ms_ago, epoch, now);
            self.wake.notify_one();
        }
    }

    /// (The witness:) it answered a query about `about` with `ms_ago`: if that lets the
    /// asker take over (twice the silence), `about` is told so when it is heard again.
    pub fn reported_lost(&self, about: &str, ms_ago: u64) {
        // only a witness (no export of its own) backs primaries with its pings
        if self.roles.is_empty() && ms_ago >= 2 * self.settings.silence_ms() {
            if let Some(p) = self.group.peer(about) {
                lock(&self.lost_reported).insert(p.id);
            }
        }
    }

    /// (The witness:) whether `m` was reported lost since it was last told (and forgets it).
    pub fn take_reported_lost(&self, m: MemberId) -> bool {
        lock(&self.lost_reported).remove(&m)
    }

    /// What we can tell about member `about` (the answer to a vouching query): ms since we
    /// heard it. An answer that lets the asker take over binds us: we leave the stream of
    /// every export `about` leads for us first ([`Node::answer_query`]).
    pub fn answer_query(self: &Arc<Self>, about: &str, now: Millis) -> u64 {
        let Some(p) = self.group.peer(about) else {
            return u64::MAX;
        };
        let views = self.views();
        let role = |e: ExportId| views.get(&e).cloned();
        let (ago, effects) = lock(&self.node).answer_query(p.id, now, &role);
        for e in effects {
            self.carry_out(e, now);
        }
        ago
    }
}
