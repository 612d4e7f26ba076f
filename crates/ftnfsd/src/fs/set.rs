//! The exports this member holds: a list that only grows while the daemon runs, so that a
//! request thread may hold `&ExportFs` without a lock while a reload adds an export
//! (`reload.rs`). A removed export stays in the list, no longer served
//! ([`ExportFs::served`]); put back by a later reload, its handles work again.

use ftnfs_core::ids::ExportId;

use super::ExportFs;

/// Most exports one daemon holds over its life (served or removed by a reload): each keeps
/// its directory, identity table and lock log open.
pub const MAX_EXPORTS: usize = 256;

/// The exports, in the order they were first loaded.
#[derive(Default)]
pub struct ExportSet {
    list: boxcar::Vec<ExportFs>,
    /// Held by the one adding, so that no two adds of one id race.
    adding: std::sync::Mutex<()>,
}

impl ExportSet {
    /// These exports.
    pub fn new(exports: Vec<ExportFs>) -> ExportSet {
        let set = ExportSet::default();
        for e in exports {
            set.list.push(e);
        }
        set
    }

    /// Every export, served or not.
    pub fn iter(&self) -> impl Iterator<Item = &ExportFs> {
        self.list.iter().map(|(_, e)| e)
    }

    /// The exports served to clients.
    pub fn served(&self) -> impl Iterator<Item = &ExportFs> {
        self.iter().filter(|e| e.served())
    }

    /// The export with this id, served or not.
    pub fn get(&self, id: ExportId) -> Option<&ExportFs> {
        self.iter().find(|e| e.cfg.id == id)
    }

    /// How many (served or not).
    pub fn len(&self) -> usize {
        self.list.count()
    }

    /// None at all?
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds an export opened by a reload. Refused when one of its id is already held or
    /// when [`MAX_EXPORTS`] are.
    pub fn add(&self, e: ExportFs) -> Result<(), String> {
        let _g = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(e.cfg.id).is_some() {
            return Err(format!("export {} is already held", e.cfg.path));
        }
        if self.len() >= MAX_EXPORTS {
            return Err(format!(
                "export {}: this daemon already holds {MAX_EXPORTS} exports (restart it to drop removed ones)",
                e.cfg.path
            ));
        }
        self.list.push(e);
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ExportSet {
    type Item = &'a ExportFs;
    type IntoIter = Box<dyn Iterator<Item = &'a ExportFs> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
