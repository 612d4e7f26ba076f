//! The manifest of one export's mirror, for `ftnfsctl verify`: every object below the root
//! with what must be identical on every member — path, file id, generation, type, mode,
//! owner, size, mtime and a SHA-256 of the content (of the target, for a symlink). atime is
//! left out: in the default read mode each member keeps its own (DESIGN.md decision 10).
//! ctime is left out because Linux offers no way to set it (Documentation/06-mirroring.md).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fs::ExportFs;

/// Most objects listed; a bigger tree is refused rather than exhaust memory.
pub const MAX_ENTRIES: usize = 2_000_000;
/// Deepest directory walked.
const MAX_DEPTH: usize = 256;

/// Why no manifest could be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A system call failed.
    #[error("{path}: {err}")]
    Sys {
        /// Where.
        path: String,
        /// What.
        err: nix::errno::Errno,
    },
    /// The identity table failed.
    #[error("identity table: {0}")]
    Ids(#[from] crate::fs::idtable::IdError),
    /// Too many objects or too deep.
    #[error("tree too large to list (more than {MAX_ENTRIES} objects or {MAX_DEPTH} levels)")]
    TooLarge,
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "dir",
        SFlag::S_IFREG => "file",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFCHR => "chr",
        SFlag::S_IFBLK => "blk",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFSOCK => "sock",
        _ => "?",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lists the export, sorted by path.
pub fn manifest(ex: &ExportFs) -> Result<Vec<Value>, VerifyError> {
    let mut out = Vec::new();
    // a descriptor of its own: the root's is shared, and a listing moves its offset
    let root = crate::fs::reopen(ex.root_fd()).map_err(|err| VerifyError::Sys {
        path: ".".into(),
        err,
    })?;
    let st = fstatat(root.as_fd(), ".", AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|err| {
        VerifyError::Sys {
            path: ".".into(),
            err,
        }
    })?;
    out.push(entry(ex, &root, b".", ".", &st)?);
    walk(ex, &root, "", 0, &mut out)?;
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(out)
}

fn walk(
    ex: &ExportFs,
    dir: &OwnedFd,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Value>,
) -> Result<(), VerifyError> {
    if depth > MAX_DEPTH {
        return Err(VerifyError::TooLarge);
    }
    let sys = |path: &str| {
        let path = path.to_string();
        move |err| VerifyError::Sys { path, err }
    };
    let mut names: Vec<Vec<u8>> = Vec::new();
    {
        let mut d = nix::dir::Dir::from_fd(dir.try_clone().map_err(|e| VerifyError::Sys {
            path: prefix.into(),
            err: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(5)),
        })?)
        .map_err(sys(prefix))?;
        for e in d.iter() {
            let e = e.map_err(sys(prefix))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
    }
    names.sort();
    for n in names {
        if out.len() >= MAX_ENTRIES {
            return Err(VerifyError::TooLarge);
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(&n));
        let os = std::ffi::OsStr::from_bytes(&n);
        let st = fstatat(dir.as_fd(), os, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys(&path))?;
        out.push(entry(ex, dir, &n, &path, &st)?);
        if kind(&st) == "dir" {
            let sub = openat(
                dir.as_fd(),
                os,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys(&path))?;
            walk(ex, &sub, &format!("{path}/"), depth + 1, out)?;
        }
    }
    Ok(())
}

fn entry(
    ex: &ExportFs,
    dir: &OwnedFd,
    name: &[u8],
    path: &str,
    st: &FileStat,
) -> Result<Value, VerifyError> {
    // an object with no identity here (or whose inode number had another life when it got
    // one) was created outside ftnfs on this member: a local change, not mirrored
    let life = crate::fs::life::of(dir.as_fd(), std::ffi::OsStr::from_bytes(name));
    let id = ex.ids.by_ino_life(st.st_ino, life)?;
    let gen = match id {
        Some(i) => ex.ids.get(i)?.map(|r| r.gen.0),
        None => None,
    };
    let outside = match id {
        Some(i) => ex.ids.was_adopted(i)?,
        None => true,
    };
    let os = std::ffi::OsStr::from_bytes(name);
    let sum = match kind(st) {
        "file" => {
            let fd = openat(
                dir.as_fd(),
                os,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| VerifyError::Sys {
                path: path.into(),
                err,
            })?;
            let mut f = std::fs::File::from(fd);
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(|e| VerifyError::Sys {
                path: path.into(),
                err: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(5)),
            })?;
            Some(hex(&h.finalize()))
        }
        "symlink" => {
            let t = nix::fcntl::readlinkat(dir.as_fd(), os).map_err(|err| VerifyError::Sys {
                path: path.into(),
                err,
            })?;
            Some(hex(&Sha256::digest(t.as_bytes())))
        }
        _ => None,
    };
    Ok(json!({
        "path": path,
        "id": id.map(|i| i.0),
        "gen": gen,
        "type": kind(st),
        "mode": format!("{:o}", st.st_mode & 0o7777),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": if kind(st) == "dir" { json!(null) } else { json!(st.st_size) },
        "mtime": format!("{}.{:09}", st.st_mtime, st.st_mtime_nsec),
        "sha256": sum,
        "outside_ftnfs": outside,
    }))
}
