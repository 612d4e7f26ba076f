//! What a resync asks of the mirror (`resync::Host`, `resync::Lead`): resync.rs sits below
//! the driver and reaches it only through these.

use super::*;

/// A primary side, as a resync from it sees it (made only of `Role::Primary`).
struct LeadRef(Arc<Role>);

impl LeadRef {
    fn ps(&self) -> &PrimarySide {
        match &*self.0 {
            Role::Primary(ps) => ps,
            _ => unreachable!("a LeadRef is made of a primary role only"),
        }
    }
}

impl crate::resync::Lead for LeadRef {
    fn epoch(&self) -> Epoch {
        // (0 once the role moved on: no member follows epoch 0, so the resync ends)
        self.ps().epoch().unwrap_or(Epoch(0))
    }
    fn hold(&self, member: MemberId, on: bool) {
        self.ps().hold(member, on)
    }
    fn pending(&self) -> usize {
        self.ps().pending()
    }
    fn released(&self) -> SeqNo {
        self.ps().released()
    }
}

impl crate::resync::Host for Mirror {
    fn local(&self) -> &Local {
        &self.local
    }
    fn resync_settings(&self) -> &crate::resync::Settings {
        &self.resync
    }
    fn failover(&self) -> ftnfs_core::member::settings::FailoverConfig {
        self.group.failover
    }
    fn event(&self, at: Millis, export: ExportId, what: String) {
        Mirror::event(self, at, export, what)
    }
    fn last_heard(&self, m: MemberId) -> Option<Millis> {
        Mirror::last_heard(self, m)
    }
    fn log(&self, export: ExportId) -> Option<&ChangeLog> {
        Mirror::log(self, export)
    }
    fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }
    fn lead(&self, export: ExportId, history: u64) -> Option<Box<dyn crate::resync::Lead>> {
        let role = self.role(export)?;
        match &*role {
            Role::Primary(ps) if ps.history == history => Some(Box::new(LeadRef(role.clone()))),
            _ => None,
        }
    }
    fn join_resynced(&self, export: ExportId, history: u64, member: MemberId, now: Millis) -> bool {
        match self.role(export).as_deref() {
            Some(Role::Primary(ps)) if ps.history == history => ps.join_resynced(self, member, now),
            _ => false,
        }
    }
}
