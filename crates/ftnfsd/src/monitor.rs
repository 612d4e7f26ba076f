//! The durable part of our status monitor (NSM, issue 14), as `rpc.statd` keeps it in
//! `/var/lib/nfs`: this member's state number, and the client hosts it monitors — each host
//! that asked for a lock — so that after a start that lost the lock tables it can tell every
//! one of them to reclaim (`recovery.rs`).
//!
//! `STATE_DIR/nsm/state` holds the state number (odd while up, two higher at every start,
//! written and synced before anything is served); `STATE_DIR/nsm/sm/ADDRESS` holds the
//! `caller_name` of each monitored host, written and synced (file and directory) before
//! the host's first lock is answered (on a secondary: before it acknowledges the call), so
//! a host that holds a lock is never forgotten by a power loss. Forgetting is lazy: a host
//! that holds nothing any more is unlinked unsynced (a lost unlink costs one needless
//! notification). `STATE_DIR/nsm/clean` marks a clean stop after every lock log was synced.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Most client hosts monitored; a new host past it is refused its lock (NLM4_DENIED_NOLOCKS,
/// as knfsd answers when its statd cannot monitor).
pub const MAX_MONITORED: usize = 4096;

/// This member's monitor.
pub struct Monitor {
    dir: PathBuf,
    state: u32,
    hosts: Mutex<HashMap<IpAddr, String>>,
}

/// Why a host could not be monitored.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// [`MAX_MONITORED`] hosts are monitored already.
    #[error("{MAX_MONITORED} client hosts are monitored already")]
    Full,
    /// Its record could not be made durable.
    #[error("cannot record the client host: {0}")]
    Io(#[from] std::io::Error),
}

fn sync_dir(d: &Path) -> std::io::Result<()> {
    std::fs::File::open(d)?.sync_all()
}

/// Writes `data` to `path` durably (a temporary file, synced, renamed, the directory synced).
fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

impl Monitor {
    /// Opens the monitor in `state_dir`: the next state number (persisted before this
    /// returns), the monitored hosts, and whether the last run ended with a clean stop (the
    /// mark is consumed: a crash of this run finds none).
    pub fn open(state_dir: &Path) -> std::io::Result<(Monitor, bool)> {
        let dir = state_dir.join("nsm");
        std::fs::create_dir_all(dir.join("sm"))?;
        let before: u32 = std::fs::read_to_string(dir.join("state"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // odd while up (RFC-less convention of NSM: even means down); never reused
        let state = if before.is_multiple_of(2) {
            before.wrapping_add(1)
        } else {
            before.wrapping_add(2)
        };
        write_durably(&dir.join("state"), format!("{state}\n").as_bytes())?;
        let clean = dir.join("clean");
        let was_clean = clean.exists();
        if was_clean {
            std::fs::remove_file(&clean)?;
            sync_dir(&dir)?;
        }
        let mut hosts = HashMap::new();
        for e in std::fs::read_dir(dir.join("sm"))? {
            let e = e?;
            let Some(addr) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue; // a temporary file of an interrupted write
            };
            if hosts.len() >= MAX_MONITORED {
                break;
            }
            let name = std::fs::read_to_string(e.path()).unwrap_or_default();
            hosts.insert(addr, name.trim_end().to_string());
        }
        Ok((
            Monitor {
                dir,
                state,
                hosts: Mutex::new(hosts),
            },
            was_clean,
        ))
    }

    fn hosts_locked(&self) -> MutexGuard<'_, HashMap<IpAddr, String>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This run's state number.
    pub fn state(&self) -> u32 {
        self.state
    }

    /// Monitors the host at `addr` that calls itself `caller`: durable when this returns.
    /// A host known under that name costs nothing.
    pub fn monitor(&self, addr: IpAddr, caller: &str) -> Result<(), MonitorError> {
        let mut h = self.hosts_locked();
        if h.get(&addr).is_some_and(|n| n == caller) {
            return Ok(());
        }
        if !h.contains_key(&addr) && h.len() >= MAX_MONITORED {
            return Err(MonitorError::Full);
        }
        // (held across the write: concurrent first locks of hosts are rare, and a second
        // caller for the same host must not answer before the first record is durable)
        write_durably(
            &self.dir.join("sm").join(addr.to_string()),
            caller.as_bytes(),
        )?;
        h.insert(addr, caller.to_string());
        Ok(())
    }

    /// Every monitored host: address and name.
    pub fn hosts(&self) -> Vec<(IpAddr, String)> {
        let mut v: Vec<_> = self
            .hosts_locked()
            .iter()
            .map(|(a, n)| (*a, n.clone()))
            .collect();
        v.sort();
        v
    }

    /// Stops monitoring the hosts for which `holds` says they hold nothing (unsynced). How
    /// many.
    pub fn forget_idle(&self, holds: impl Fn(IpAddr, &str) -> bool) -> usize {
        let mut h = self.hosts_locked();
        let idle: Vec<IpAddr> = h
            .iter()
            .filter(|(a, n)| !holds(**a, n))
            .map(|(a, _)| *a)
            .collect();
        for a in &idle {
            let _ = std::fs::remove_file(self.dir.join("sm").join(a.to_string()));
            h.remove(a);
        }
        idle.len()
    }

    /// Marks a clean stop: call after every lock log was synced.
    pub fn mark_clean_stop(&self) -> std::io::Result<()> {
        write_durably(&self.dir.join("clean"), b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_grows_by_two_and_stays_odd_and_hosts_outlive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let (m, clean) = Monitor::open(d.path()).unwrap();
        assert_eq!((m.state(), clean), (1, false));
        let a: IpAddr = "10.0.0.7".parse().unwrap();
        m.monitor(a, "client7").unwrap();
        m.monitor(a, "client7").unwrap();
        m.mark_clean_stop().unwrap();
        drop(m);
        let (m, clean) = Monitor::open(d.path()).unwrap();
        assert_eq!((m.state(), clean), (3, true));
        assert_eq!(m.hosts(), vec![(a, "client7".to_string())]);
        drop(m);
        let (m, clean) = Monitor::open(d.path()).unwrap();
        assert_eq!((m.state(), clean), (5, false), "the clean mark is consumed");
        assert_eq!(m.forget_idle(|_, _| false), 1);
        drop(m);
        let (m, _) = Monitor::open(d.path()).unwrap();
        assert!(m.hosts().is_empty());
    }

    #[test]
    fn monitoring_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = Monitor::open(d.path()).unwrap();
        for i in 0..MAX_MONITORED as u32 {
            m.hosts_locked()
                .insert(IpAddr::from(i.to_be_bytes()), String::new());
        }
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(m.monitor(a, "x"), Err(MonitorError::Full)));
        let known = IpAddr::from(7u32.to_be_bytes());
        assert!(
            m.monitor(known, "renamed").is_ok(),
            "a known host may change its name"
        );
    }
}
