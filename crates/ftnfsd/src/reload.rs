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
    /// The peer channel's certificate, key and CA were read again and are in force for
    /// every peer connection from now on (`--tls-*`).
    pub peer_tls_reloaded: bool,
}

/// Reloads `file` into `local`'s exports, and the peer channel's TLS files; one reload at a
/// time.
pub struct Reloader {
    file: Option<PathBuf>,
    state_dir: PathBuf,
    local: Arc<Local>,
    tls: Option<Arc<crate::peer_tls::PeerTls>>,
    busy: Mutex<()>,
}

impl Reloader {
    /// Reloads of `file` (if any; new exports keep their identity tables in `state_dir`)
    /// and of `tls`'s files (if any).
    pub fn new(
        file: Option<PathBuf>,
        state_dir: PathBuf,
        local: Arc<Local>,
        tls: Option<Arc<crate::peer_tls::PeerTls>>,
    ) -> Reloader {
        Reloader {
            file,
            state_dir,
            local,
            tls,
            busy: Mutex::new(()),
        }
    }

    /// Reads the files again and applies them, or refuses them whole (`FILE:LINE: reason`,
    /// why an added export cannot be opened, or why the TLS files do not make keys) leaving
    /// everything as it was. Blocking: it opens directories and identity tables.
    pub fn reload(&self) -> anyhow::Result<Outcome> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        // everything that can fail first: the peer channel's new keys, the exports file,
        // the added exports
        let keys = match &self.tls {
            Some(t) => t
                .prepare()
                .context("peer TLS files (--tls-cert/--tls-key/--tls-ca)")?,
            None => None,
        };
        let exports = match &self.file {
            Some(file) => Some((file, self.prepare_exports(file)?)),
            None => None,
        };
        let mut out = match exports {
            Some((file, (plan, opened))) => self.apply_exports(file, plan, opened)?,
            None => Outcome::default(),
        };
        if let (Some(t), Some(k)) = (&self.tls, keys) {
            t.install(k);
            out.peer_tls_reloaded = true;
            tracing::info!("peer TLS keys reloaded: new peer connections use them");
        }
        Ok(out)
    }

    /// The reload plan of `file` and the added exports, opened.
    fn prepare_exports(&self, file: &Path) -> anyhow::Result<(Vec<Reload>, Vec<ExportFs>)> {
        let new = read_exports(file)?;
        let exports = &self.local.exports;
        let held: Vec<Held<'_>> = exports
            .iter()
            .map(|e| Held {
                cfg: &e.cfg,
                served: e.served(),
            })
            .collect();
        let plan = exports::plan_reload(&file.display().to_string(), &held, new)?;
        let generation = crate::fs::generation_now();
        let mut opened = Vec::new();
        for step in &plan {
            if let Reload::Add(e) = step {
                let line = e.line;
                let fs = ExportFs::open(e.clone(), &self.state_dir, generation)
                    .with_context(|| format!("{}:{line}", file.display()))?;
                opened.push(fs);
            }
        }
        if exports.len() + opened.len() > crate::fs::set::MAX_EXPORTS {
            anyhow::bail!(
                "{}: {} exports held and {} more would pass the limit of {} (restart to drop removed ones)",
                file.display(),
                exports.len(),
                opened.len(),
                crate::fs::set::MAX_EXPORTS
            );
        }
        Ok((plan, opened))
    }

    /// Carries out `plan` with the `opened` exports it adds.
    fn apply_exports(
        &self,
        file: &Path,
        plan: Vec<Reload>,
        opened: Vec<ExportFs>,
    ) -> anyhow::Result<Outcome> {
        let exports = &self.local.exports;
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
            file = %file.display(),
            added = ?out.added,
            removed = ?out.removed,
            changed = ?out.changed,
            unchanged = out.unchanged,
            "exports reloaded"
        );
        Ok(out)
    }
}
