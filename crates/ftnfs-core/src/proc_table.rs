//! What each procedure is: the DRC, the dispatcher and (later) the mirroring read this table
//! instead of scattering `match proc` lists (Ganesha's `nfs_worker_thread.c` keeps the same).

use ftnfs_wire::{mount, nfs3};

/// Properties of one procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Upper-case name, as in RFC 1813.
    pub name: &'static str,
    /// Executing it twice gives the same result as once. Non-idempotent replies are cached in
    /// the DRC and replayed to retransmissions.
    pub idempotent: bool,
    /// It changes the export (must be mirrored; refused on read-only exports).
    pub updates: bool,
    /// It creates a name that carries an identity decided by the primary.
    pub creates: bool,
}

const fn p(name: &'static str, idempotent: bool, updates: bool, creates: bool) -> ProcInfo {
    ProcInfo {
        name,
        idempotent,
        updates,
        creates,
    }
}

/// NFSv3, indexed by procedure number. SETATTR and WRITE are idempotent in effect but their
/// wcc replies are not, and a replayed SETATTR with a guard could fail: we cache them too.
pub static NFS3: [ProcInfo; 22] = [
    p("NULL", true, false, false),
    p("GETATTR", true, false, false),
    p("SETATTR", false, true, false),
    p("LOOKUP", true, false, false),
    p("ACCESS", true, false, false),
    p("READLINK", true, false, false),
    p("READ", true, false, false),
    p("WRITE", false, true, false),
    p("CREATE", false, true, true),
    p("MKDIR", false, true, true),
    p("SYMLINK", false, true, true),
    p("MKNOD", false, true, true),
    p("REMOVE", false, true, false),
    p("RMDIR", false, true, false),
    p("RENAME", false, true, false),
    p("LINK", false, true, true),
    p("READDIR", true, false, false),
    p("READDIRPLUS", true, false, false),
    p("FSSTAT", true, false, false),
    p("FSINFO", true, false, false),
    p("PATHCONF", true, false, false),
    p("COMMIT", true, true, false),
];

/// MOUNT v3, indexed by procedure number.
pub static MOUNT3: [ProcInfo; 6] = [
    p("NULL", true, false, false),
    p("MNT", true, false, false),
    p("DUMP", true, false, false),
    p("UMNT", true, false, false),
    p("UMNTALL", true, false, false),
    p("EXPORT", true, false, false),
];

/// Looks up a procedure of a program we serve.
pub fn lookup(prog: u32, proc_: u32) -> Option<&'static ProcInfo> {
    match prog {
        nfs3::PROGRAM => NFS3.get(proc_ as usize),
        mount::PROGRAM => MOUNT3.get(proc_ as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftnfs_wire::nfs3::procs;

    #[test]
    fn table_matches_procedure_numbers() {
        assert_eq!(NFS3[procs::REMOVE as usize].name, "REMOVE");
        assert_eq!(NFS3[procs::COMMIT as usize].name, "COMMIT");
        assert_eq!(NFS3[procs::READDIRPLUS as usize].name, "READDIRPLUS");
        assert!(lookup(nfs3::PROGRAM, 22).is_none());
        // RFC 1813 §3.3: every namespace-changing procedure is non-idempotent.
        for n in [
            procs::CREATE,
            procs::REMOVE,
            procs::RENAME,
            procs::LINK,
            procs::RMDIR,
        ] {
            assert!(!NFS3[n as usize].idempotent);
        }
    }
}
