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
    /// What follows the status in its failure reply (RFC 1813 §3.3, the `resfail` arms).
    pub fail_body: FailBody,
}

/// The shape of a procedure's failure body: what a reply that carries only an error status
/// must still hold after it. Every attribute in it may be absent, so the shortest valid body
/// is a run of FALSE discriminants: [`FailBody::absent_words`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailBody {
    /// Nothing (GETATTR; NULL has no status at all).
    Empty,
    /// One `post_op_attr` (LOOKUP, ACCESS, READLINK, READ, READDIR, READDIRPLUS, FSSTAT,
    /// FSINFO, PATHCONF).
    PostOp,
    /// One `wcc_data` (SETATTR, WRITE, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, COMMIT).
    Wcc,
    /// `post_op_attr` then `wcc_data` (LINK).
    PostOpWcc,
    /// Two `wcc_data` (RENAME).
    TwoWcc,
}

impl FailBody {
    /// Words of a failure body whose attributes are all absent: one FALSE per `post_op_attr`,
    /// two per `wcc_data` (its `pre_op_attr` and `post_op_attr`).
    pub const fn absent_words(self) -> usize {
        match self {
            FailBody::Empty => 0,
            FailBody::PostOp => 1,
            FailBody::Wcc => 2,
            FailBody::PostOpWcc => 3,
            FailBody::TwoWcc => 4,
        }
    }
}

const fn p(
    name: &'static str,
    idempotent: bool,
    updates: bool,
    creates: bool,
    fail_body: FailBody,
) -> ProcInfo {
    ProcInfo {
        name,
        idempotent,
        updates,
        creates,
        fail_body,
    }
}

use FailBody::{Empty, PostOp, PostOpWcc, TwoWcc, Wcc};

/// NFSv3, indexed by procedure number. SETATTR and WRITE are idempotent in effect but their
/// wcc replies are not, and a replayed SETATTR with a guard could fail: we cache them too.
pub static NFS3: [ProcInfo; 22] = [
    p("NULL", true, false, false, Empty),
    p("GETATTR", true, false, false, Empty),
    p("SETATTR", false, true, false, Wcc),
    p("LOOKUP", true, false, false, PostOp),
    p("ACCESS", true, false, false, PostOp),
    p("READLINK", true, false, false, PostOp),
    p("READ", true, false, false, PostOp),
    p("WRITE", false, true, false, Wcc),
    p("CREATE", false, true, true, Wcc),
    p("MKDIR", false, true, true, Wcc),
    p("SYMLINK", false, true, true, Wcc),
    p("MKNOD", false, true, true, Wcc),
    p("REMOVE", false, true, false, Wcc),
    p("RMDIR", false, true, false, Wcc),
    p("RENAME", false, true, false, TwoWcc),
    p("LINK", false, true, true, PostOpWcc),
    p("READDIR", true, false, false, PostOp),
    p("READDIRPLUS", true, false, false, PostOp),
    p("FSSTAT", true, false, false, PostOp),
    p("FSINFO", true, false, false, PostOp),
    p("PATHCONF", true, false, false, PostOp),
    p("COMMIT", true, true, false, Wcc),
];

/// MOUNT v3, indexed by procedure number.
pub static MOUNT3: [ProcInfo; 6] = [
    p("NULL", true, false, false, Empty),
    p("MNT", true, false, false, Empty),
    p("DUMP", true, false, false, Empty),
    p("UMNT", true, false, false, Empty),
    p("UMNTALL", true, false, false, Empty),
    p("EXPORT", true, false, false, Empty),
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
