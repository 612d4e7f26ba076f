//! What a member keeps on disk about its role in each export: the epoch it last led or
//! followed (persisted before any message of it is sent: a member never leads an epoch it
//! might forget) and the seal of a clean stop (where its mirror stands in the primary's
//! stream, consumed at the next start).

use super::*;

/// Where a cleanly stopped mirror stood in its primary's update stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seal {
    pub(super) history: u64,
    pub(super) seq: u64,
    pub(super) epoch: u64,
}

pub(super) fn seal_path(dir: &std::path::Path, id: ExportId) -> std::path::PathBuf {
    dir.join(format!("export-{}.seal", id.0))
}

pub(super) fn write_seal(dir: &std::path::Path, id: ExportId, s: Seal) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("export-{}.seal.tmp", id.0));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{:016x} {} {}", s.history, s.seq, s.epoch)?;
    f.sync_all()?;
    std::fs::rename(&tmp, seal_path(dir, id))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads and removes (durably) the seal of an export, if any.
pub(super) fn take_seal(dir: &std::path::Path, id: ExportId) -> anyhow::Result<Option<Seal>> {
    let p = seal_path(dir, id);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    std::fs::remove_file(&p)?;
    std::fs::File::open(dir)?.sync_all()?;
    let mut it = text.split_whitespace();
    let seal = (|| {
        Some(Seal {
            history: u64::from_str_radix(it.next()?, 16).ok()?,
            seq: it.next()?.parse().ok()?,
            epoch: it.next().and_then(|e| e.parse().ok()).unwrap_or(1),
        })
    })();
    if seal.is_none() {
        tracing::warn!(path = %p.display(), "unreadable seal ignored");
    }
    Ok(seal)
}

/// The highest epoch this member has followed or led for an export (1 if none): a primary of
/// an older epoch is refused (fencing).
pub fn read_epoch(dir: &std::path::Path, id: ExportId) -> u64 {
    std::fs::read_to_string(dir.join(format!("export-{}.epoch", id.0)))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1)
}

pub(super) fn write_epoch(dir: &std::path::Path, id: ExportId, epoch: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("export-{}.epoch.tmp", id.0));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{epoch}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("export-{}.epoch", id.0)))?;
    std::fs::File::open(dir)?.sync_all()
}
