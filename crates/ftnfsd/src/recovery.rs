//! Clients reclaim their locks after a start that lost the lock tables (issue 14,
//! Documentation/12-locks.md "Cold start").
//!
//! A lock table outlives a crash of the process (its log is in the page cache) and a clean
//! stop (the log is synced), and a member whose host restarted gets the table of a survivor
//! with its resync. What none of that covers is a *cold start*: this member's host restarted
//! without a clean stop, so its lock log may have lost its tail. Then, as knfsd and statd
//! do after a reboot:
//! - every export's table starts empty (a log that lost an UNLOCK would keep a lock its
//!   client let go of, for ever);
//! - when this member starts serving an export's locks — at once for an export it serves
//!   alone, when it becomes primary of a mirrored one — a **grace period** begins: new
//!   locks, share reservations and TESTs are answered NLM4_DENIED_GRACE_PERIOD (the client
//!   retries), reclaims are executed (mirrored like any lock call);
//! - every monitored host (`monitor.rs`) is sent SM_NOTIFY with this run's state number, as
//!   the address it locked through (the virtual IP, once held): its status monitor tells its
//!   lock manager, which reclaims every lock it holds.
//!
//! A mirrored export whose table a resync replaced (from a survivor) is not cold any more.
//! A member that never serves the export while cold never starts a grace for it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ftnfs_core::ids::ExportId;

use crate::monitor::Monitor;

/// Cold-start state of this member.
pub struct Recovery {
    monitor: Monitor,
    grace: Duration,
    /// Exports whose table was lost and whose clients were not told yet.
    cold: Mutex<HashSet<ExportId>>,
    /// Exports in their grace period, until when.
    until: Mutex<HashMap<ExportId, Instant>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recovery {
    /// `cold`: the exports whose tables this start lost; `grace`: how long clients have to
    /// reclaim once told.
    pub fn new(monitor: Monitor, cold: HashSet<ExportId>, grace: Duration) -> Recovery {
        Recovery {
            monitor,
            grace,
            cold: Mutex::new(cold),
            until: Mutex::new(HashMap::new()),
        }
    }

    /// The monitored hosts and the state number.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Whether `export`'s grace period runs now.
    pub fn in_grace(&self, export: ExportId) -> bool {
        let mut u = locked(&self.until);
        match u.get(&export) {
            Some(t) if Instant::now() < *t => true,
            Some(_) => {
                u.remove(&export);
                tracing::info!(export = export.0, "NLM grace period over");
                false
            }
            None => false,
        }
    }

    /// Whether `export`'s table is lost and not yet served, or in its grace period: its
    /// clients may still reclaim.
    pub fn may_recover(&self, export: ExportId) -> bool {
        locked(&self.cold).contains(&export) || self.in_grace(export)
    }

    /// Seconds left of `export`'s grace period (status).
    pub fn grace_left(&self, export: ExportId) -> Option<u64> {
        locked(&self.until)
            .get(&export)
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .map(|d| d.as_secs() + 1)
    }

    /// `export`'s table was replaced by a survivor's (a resync): nothing of it was lost.
    pub fn table_restored(&self, export: ExportId) {
        if locked(&self.cold).remove(&export) {
            tracing::info!(
                export = export.0,
                "lock table copied from the group: no grace period needed"
            );
        }
    }

    /// This member starts serving `export`'s locks. `true`: its table was lost — the grace
    /// period begins now and the monitored hosts must be told (once).
    pub fn start_serving(&self, export: ExportId) -> bool {
        if !locked(&self.cold).remove(&export) {
            return false;
        }
        locked(&self.until).insert(export, Instant::now() + self.grace);
        tracing::warn!(
            export = export.0,
            grace_s = self.grace.as_secs(),
            hosts = self.monitor.hosts().len(),
            state = self.monitor.state(),
            "lock table lost with a restart of the host: grace period, clients told to reclaim"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovery(cold: &[u32], grace: Duration) -> (tempfile::TempDir, Recovery) {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = Monitor::open(d.path()).unwrap();
        let cold = cold.iter().map(|e| ExportId(*e)).collect();
        (d, Recovery::new(m, cold, grace))
    }

    #[test]
    fn a_cold_export_has_one_grace_period_from_when_it_is_served() {
        let (_d, r) = recovery(&[1], Duration::from_secs(60));
        assert!(!r.in_grace(ExportId(1)), "not served yet: no grace");
        assert!(!r.start_serving(ExportId(2)), "a warm export");
        assert!(r.start_serving(ExportId(1)));
        assert!(r.in_grace(ExportId(1)) && !r.in_grace(ExportId(2)));
        assert!(!r.start_serving(ExportId(1)), "told once");
        assert!(r.grace_left(ExportId(1)).is_some_and(|s| s <= 60));
    }

    #[test]
    fn the_grace_period_ends() {
        let (_d, r) = recovery(&[1], Duration::from_millis(1));
        assert!(r.start_serving(ExportId(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!r.in_grace(ExportId(1)));
        assert_eq!(r.grace_left(ExportId(1)), None);
    }

    #[test]
    fn a_table_copied_from_a_survivor_is_not_cold() {
        let (_d, r) = recovery(&[1], Duration::from_secs(60));
        r.table_restored(ExportId(1));
        assert!(!r.start_serving(ExportId(1)));
        assert!(!r.in_grace(ExportId(1)));
    }
}
