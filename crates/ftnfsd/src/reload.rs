//! Reloading the exports file without dropping a client (SIGHUP, `ftnfsctl reload`): the
//! file is read and checked whole (`exports::plan_reload` in the core says what changes and
//! what needs a restart); a refused file changes nothing. Client lists and options apply to
//! the next call; added exports are opened before anything changes; removed ones stay held,
//! unserved (their handles answer STALE, a MNT of them NOENT) — `fs/set.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use ftnfs_core::exports::{self, ClientSpec, Export, Held, Reload};

use crate::fs::ExportFs;
use crate::local::Local;

/// Reads and parses an exports file, resolving client host names (once, here: the core
/// stays pure).
pub fn read_exports(path: &Path) -> anyhow::Result<Vec<Export>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read exports file {}", path.display()))?;
    let mut list = exports::parse(&path.display().to_string(), &text)?;
    for e in &mut list {
        for c in &mut e.clients {
            if let ClientSpec::Host { name, addrs } = &mut c.spec {
                if name.contains(['*', '?']) {
                    tracing::warn!(export = e.path, name, "wildcard host names need reverse DNS, which ftnfsd does not do; this entry matches nothing");
                    continue;
                }
                use std::net::ToSocketAddrs;
                match (name.as_str(), 0).to_socket_addrs() {
                    Ok(a) => addrs.extend(a.map(|s| s.ip())),
                    Err(err) => {
                        tracing::warn!(export = e.path, name, error = %err, "cannot resolve client host name")
                    }
                }
            }
        }
    }
    Ok(list)
}

/// What a reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    /// Exports now served for the first time (paths).
    pub added: Vec<String>,
    /// Exports no longer served.
    pub removed: Vec<String>,
    /// Held exports whose client list or options changed.
    pub changed: Vec<String>,
    /// Held exports served as before.
    pub unchanged: usize,
}

/// Reloads `file` into `local`'s exports; one reload at a time.
pub struct Reloader {
    file: PathBuf,
    state_dir: PathBuf,
    local: Arc<Local>,
    busy: Mutex<()>,
}

impl Reloader {
    /// Reloads of `file`; new exports keep their identity tables in `state_dir`.
    pub fn new(file: PathBuf, state_dir: PathBuf, local: Arc<Local>) -> Reloader {
        Reloader {
            file,
            state_dir,
            local,
            busy: Mutex::new(()),
        }
    }

    /// Reads the file again and applies it, or refuses it whole (`FILE:LINE: reason`, or
    /// why an added export cannot be opened) leaving everything as it was. Blocking: it
    /// opens directories and identity tables.
    pub fn reload(&self) -> anyhow::Result<Outcome> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let new = read_exports(&self.file)?;
        let exports = &self.local.exports;
        let held: Vec<Held<'_>> = exports
            .iter()
            .map(|e| Held {
                cfg: &e.cfg,
                served: e.served(),
            })
            .collect();
        let plan = exports::plan_reload(&self.file.display().to_string(), &held, new)?;
        // everything that can fail first: open the added exports
        let generation = crate::fs::generation_now();
        let mut opened = Vec::new();
        for step in &plan {
            if let Reload::Add(e) = step {
                let line = e.line;
                let fs = ExportFs::open(e.clone(), &self.state_dir, generation)
                    .with_context(|| format!("{}:{line}", self.file.display()))?;
                opened.push(fs);
            }
        }
        if exports.len() + opened.len() > crate::fs::set::MAX_EXPORTS {
            anyhow::bail!(
                "{}: {} exports held and {} more would pass the limit of {} (restart to drop removed ones)",
                self.file.display(),
                exports.len(),
                opened.len(),
                crate::fs::set::MAX_EXPORTS
            );
        }
        let mut out = Outcome::default();
        for step in plan {
            match step {
                Reload::Keep { id, clients } => {
                    let Some(ex) = exports.get(id) else { continue };
                    if ex.clients().as_deref() == Some(&clients) {
                        out.unchanged += 1;
                    } else {
                        out.changed.push(ex.cfg.path.clone());
                        ex.set_clients(Some(clients));
                    }
                }
                Reload::Remove(id) => {
                    if let Some(ex) = exports.get(id) {
                        out.removed.push(ex.cfg.path.clone());
                        ex.set_clients(None);
                    }
                }
                Reload::Add(_) => {}
            }
        }
        for fs in opened {
            let path = fs.cfg.path.clone();
            let id = fs.cfg.id.0;
            // checked above, and only reloads add (one at a time)
            exports.add(fs).map_err(anyhow::Error::msg)?;
            tracing::info!(export = path, id, "exporting (reload)");
            out.added.push(path);
        }
        tracing::info!(
            file = %self.file.display(),
            added = ?out.added,
            removed = ?out.removed,
            changed = ?out.changed,
            unchanged = out.unchanged,
            "exports reloaded"
        );
        Ok(out)
    }
}
