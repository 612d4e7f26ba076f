//! What each procedure is — one row per procedure, read by everyone who needs a
//! per-procedure fact (Ganesha's `nfs3_func_desc[]`): the dispatcher (is it known, may this
//! member answer it), the DRC (cache its reply?), the mirroring (must it be mirrored, which
//! handle names its export, what it orders against, does the primary dictate a new file id),
//! the change log (what a resync must send again), the error path (the failure body's shape)
//! and the counters (its name).
//!
//! The handler itself is chosen by the decoded [`Args`] variant in the daemon's
//! `nfs3_procs::Caller::execute`: an exhaustive match the compiler checks against
//! [`Args`], so a procedure cannot have a row and no handler (or the reverse) — the one
//! column of Ganesha's table that Rust's type system holds better than a function pointer.

use ftnfs_wire::nfs3::{Args, NfsFh3};
use ftnfs_wire::{mount, nfs3};

use crate::handle::FileHandle;
use crate::mirror::resync::{Touched, BLOCK};
use crate::mirror::{Key, Touch};

/// Properties of one procedure.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    /// Upper-case name, as in RFC 1813.
    pub name: &'static str,
    /// Executing it twice gives the same result as once. Non-idempotent replies are cached in
    /// the DRC and replayed to retransmissions.
    pub idempotent: bool,
    /// It changes the export (must be mirrored; refused on read-only exports).
    pub updates: bool,
    /// Running it twice gives another result (the namespace updates, a guarded SETATTR): its
    /// cached reply must also outlive a restart of the process (the daemon's reply log). A
    /// WRITE is cached but not logged: written again, the data is the same.
    pub once: bool,
    /// It creates a name that carries an identity decided by the primary.
    pub creates: bool,
    /// It makes a new object whose file id the primary reserves and dictates to the
    /// secondaries (every creating procedure but LINK, whose object exists).
    pub new_id: bool,
    /// A READ: mirrored (as an atime update) in the acknowledged and serialized read modes.
    pub mirrored_read: bool,
    /// Cheap, changes nothing and waits for nothing but a stat of a (most often cached)
    /// inode: the daemon runs it on the connection's network task instead of handing it to
    /// a blocking thread and back — two thread switches fewer on the most frequent call.
    pub inline: bool,
    /// What follows the status in its failure reply (RFC 1813 §3.3, the `resfail` arms).
    pub fail_body: FailBody,
    /// The handle whose export the call belongs to (the one whose role decides who may
    /// answer it and which mirror it updates); `None` for NULL and MOUNT.
    pub handle: fn(&Args) -> Option<&NfsFh3>,
    /// A second object an update changes besides its handle's (RENAME's target directory,
    /// LINK's directory), for the change log.
    pub second: fn(&Args) -> Option<&NfsFh3>,
    /// How the update is ordered against others (Documentation/04-replication-order.md).
    pub order: Order,
    /// What the change log records of it (Documentation/08-rejoin.md).
    pub log: Log,
}

/// How an update is ordered against concurrent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The 1 MiB blocks of its handle's file that its range covers: writes to disjoint blocks
    /// of one file run in parallel (their mtime and atime stamps commute: the daemon keeps
    /// the latest).
    Blocks,
    /// Its handle's whole object.
    Object,
    /// It makes a new name in its handle's directory (CREATE, MKDIR, SYMLINK, MKNOD): the
    /// entry — that directory's part named by a hash of the name — and the whole new object.
    /// Makes of other names in one directory run in parallel; anything else on the same
    /// name, the directory as a whole (SETATTR, a RMDIR of it) or the new object (a WRITE
    /// to it) runs in number order. The directory's mtime stamps commute: the daemon keeps
    /// the latest (Documentation/04-replication-order.md).
    Entry,
    /// It removes a name from its handle's directory (REMOVE, RMDIR): the entry, as
    /// [`Entry`](Order::Entry), and the whole object the name denotes — which only the
    /// primary's shell can look up, at the instant it numbers the update
    /// (`Primary::settled`). [`touch`](ProcInfo::touch) alone gives a barrier (the safe
    /// superset); [`entry_key`](ProcInfo::entry_key) gives the entry.
    Unlink,
    /// It adds a name for its handle's object (LINK): the new entry, as
    /// [`Entry`](Order::Entry), and the whole object (its link count).
    Link,
    /// It moves a name (RENAME): both entries, the object moved and the one it replaces —
    /// which only the primary's shell can look up (as for [`Unlink`](Order::Unlink)), and
    /// only a non-directory (a directory's move changes a subtree's paths, and two moves can
    /// make a cycle). [`touch`](ProcInfo::touch) alone gives a barrier.
    Rename,
    /// It changes the namespace: after and before everything (also every non-update, which
    /// is never ordered).
    Barrier,
}

/// What the change log records of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// Nothing (COMMIT changes no data and no attribute: the WRITEs it makes durable are
    /// logged; every non-update).
    Nothing,
    /// The blocks of its handle's file that its range covers.
    Blocks,
    /// Its handle's object, the [`second`](ProcInfo::second) one, and the object it created:
    /// whole. (A removed or renamed entry is covered by its directory: a resync sends that
    /// directory's entries.)
    Named,
}

impl ProcInfo {
    /// What an update touches for the replication order; `new_id`: the file id the
    /// primary reserved for the object it makes.
    pub fn touch(&self, a: &Args, new_id: Option<u64>) -> Touch {
        let file = (self.handle)(a).and_then(file_of);
        match (self.order, file) {
            (Order::Entry, Some(dir)) => match (entry_name(a), new_id) {
                (Some(name), Some(new)) => Touch {
                    keys: vec![Key::part(dir, name_key(name)), Key::whole(new)],
                    barrier: false,
                },
                _ => Touch {
                    keys: vec![],
                    barrier: true,
                },
            },
            (Order::Blocks, Some(id)) => {
                let (first, last) = blocks_of(a);
                Touch {
                    keys: (first..=last).map(|b| Key::part(id, b)).collect(),
                    barrier: false,
                }
            }
            (Order::Object, Some(id)) => Touch {
                keys: vec![Key::whole(id)],
                barrier: false,
            },
            // a handle that does not decode orders like nothing (it fails everywhere alike)
            (Order::Link, Some(file)) => match self.entry_key(a) {
                Some(e) => Touch {
                    keys: vec![e, Key::whole(file)],
                    barrier: false,
                },
                None => Touch {
                    keys: vec![],
                    barrier: true,
                },
            },
            (Order::Blocks | Order::Object | Order::Entry | Order::Unlink | Order::Link, None) => {
                Touch::default()
            }
            (Order::Barrier | Order::Unlink | Order::Rename, _) => Touch {
                keys: vec![],
                barrier: true,
            },
        }
    }

    /// The key of the directory entry a make or a removal touches (`None` for any other
    /// procedure, or a handle that does not decode).
    pub fn entry_key(&self, a: &Args) -> Option<Key> {
        let (dir, name) = *self.entries(a).first()?;
        entry_key_of(dir, name)
    }

    /// The directory entries (directory, name) an update makes, removes or moves: one for
    /// a make, a removal or a LINK, the source and the target for a RENAME, none for
    /// anything else.
    pub fn entries<'a>(&self, a: &'a Args) -> Vec<(&'a NfsFh3, &'a [u8])> {
        match (self.order, a) {
            (Order::Entry | Order::Unlink, _) => match ((self.handle)(a), entry_name(a)) {
                (Some(d), Some(n)) => vec![(d, n)],
                _ => vec![],
            },
            (Order::Link, Args::Link { link, .. }) => vec![(&link.dir, link.name.as_slice())],
            (Order::Rename, Args::Rename { from, to }) => vec![
                (&from.dir, from.name.as_slice()),
                (&to.dir, to.name.as_slice()),
            ],
            _ => vec![],
        }
    }

    /// The file ids an update touched, for the change log (`new_id`: the object it made).
    pub fn logged(&self, a: &Args, new_id: Option<u64>) -> Vec<Touched> {
        let mut out: Vec<Touched> = match self.log {
            Log::Nothing => Vec::new(),
            Log::Blocks => {
                let (first, last) = blocks_of(a);
                (self.handle)(a)
                    .and_then(file_of)
                    .map(|id| Touched::blocks(id, first, last))
                    .into_iter()
                    .collect()
            }
            Log::Named => [(self.handle)(a), (self.second)(a)]
                .into_iter()
                .flatten()
                .filter_map(file_of)
                .map(Touched::whole)
                .collect(),
        };
        out.extend(new_id.map(Touched::whole));
        out
    }
}

/// The file id a handle names, if it decodes.
/// The name a CREATE, MKDIR, SYMLINK or MKNOD makes, or a REMOVE or RMDIR removes.
pub fn entry_name(a: &Args) -> Option<&[u8]> {
    match a {
        Args::Create { where_, .. }
        | Args::Mkdir { where_, .. }
        | Args::Symlink { where_, .. }
        | Args::Mknod { where_, .. } => Some(where_.name.as_slice()),
        Args::Remove(d) | Args::Rmdir(d) => Some(d.name.as_slice()),
        _ => None,
    }
}

/// The part of a directory that stands for one name (FNV-1a of the name: two names that
/// collide are only ordered, never reordered).
fn name_key(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The key of entry `name` in directory `dir` (`None`: a handle that does not decode).
pub fn entry_key_of(dir: &NfsFh3, name: &[u8]) -> Option<Key> {
    Some(Key::part(file_of(dir)?, name_key(name)))
}

fn file_of(fh: &NfsFh3) -> Option<u64> {
    FileHandle::decode(&fh.0).map(|h| h.file.0).ok()
}

/// The first and last block of a file's data that a READ's or WRITE's range covers (block 0
/// for anything else).
fn blocks_of(a: &Args) -> (u64, u64) {
    let (offset, count) = match a {
        Args::Read { offset, count, .. } | Args::Write { offset, count, .. } => (*offset, *count),
        _ => (0, 0),
    };
    let last = offset.saturating_add(u64::from(count).max(1) - 1) / BLOCK;
    (offset / BLOCK, last)
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

type HandleOf = fn(&Args) -> Option<&NfsFh3>;

fn none(_: &Args) -> Option<&NfsFh3> {
    None
}

/// An idempotent procedure that changes nothing.
const fn read(name: &'static str, fail_body: FailBody, handle: HandleOf) -> ProcInfo {
    ProcInfo {
        name,
        idempotent: true,
        updates: false,
        once: false,
        creates: false,
        new_id: false,
        mirrored_read: false,
        inline: false,
        fail_body,
        handle,
        second: none,
        order: Order::Barrier,
        log: Log::Nothing,
    }
}

/// A [`read`] cheap enough to run on the network task ([`ProcInfo::inline`]).
const fn quick(name: &'static str, fail_body: FailBody, handle: HandleOf) -> ProcInfo {
    ProcInfo {
        inline: true,
        ..read(name, fail_body, handle)
    }
}

/// A non-idempotent namespace update (a barrier, logged by the objects it names).
const fn names(name: &'static str, fail_body: FailBody, handle: HandleOf) -> ProcInfo {
    ProcInfo {
        name,
        idempotent: false,
        updates: true,
        once: true,
        creates: false,
        new_id: false,
        mirrored_read: false,
        inline: false,
        fail_body,
        handle,
        second: none,
        order: Order::Barrier,
        log: Log::Named,
    }
}

/// A namespace update that makes a new object with a file id the primary dictates.
const fn makes(name: &'static str, handle: HandleOf) -> ProcInfo {
    ProcInfo {
        creates: true,
        new_id: true,
        order: Order::Entry,
        ..names(name, FailBody::Wcc, handle)
    }
}

use FailBody::{Empty, PostOp, PostOpWcc, TwoWcc, Wcc};

/// NFSv3, indexed by procedure number. SETATTR and WRITE are idempotent in effect but their
/// wcc replies are not, and a replayed SETATTR with a guard could fail: we cache them too.
pub static NFS3: [ProcInfo; 22] = [
    quick("NULL", Empty, none),
    quick("GETATTR", Empty, |a| match a {
        Args::GetAttr(f) => Some(f),
        _ => None,
    }),
    ProcInfo {
        order: Order::Object,
        ..names("SETATTR", Wcc, |a| match a {
            Args::SetAttr { obj, .. } => Some(obj),
            _ => None,
        })
    },
    read("LOOKUP", PostOp, |a| match a {
        Args::Lookup(d) => Some(&d.dir),
        _ => None,
    }),
    quick("ACCESS", PostOp, |a| match a {
        Args::Access { obj, .. } => Some(obj),
        _ => None,
    }),
    read("READLINK", PostOp, |a| match a {
        Args::ReadLink(f) => Some(f),
        _ => None,
    }),
    ProcInfo {
        mirrored_read: true,
        order: Order::Blocks,
        log: Log::Blocks,
        ..read("READ", PostOp, |a| match a {
            Args::Read { file, .. } => Some(file),
            _ => None,
        })
    },
    ProcInfo {
        once: false,
        order: Order::Blocks,
        log: Log::Blocks,
        ..names("WRITE", Wcc, |a| match a {
            Args::Write { file, .. } => Some(file),
            _ => None,
        })
    },
    makes("CREATE", |a| match a {
        Args::Create { where_, .. } => Some(&where_.dir),
        _ => None,
    }),
    makes("MKDIR", |a| match a {
        Args::Mkdir { where_, .. } => Some(&where_.dir),
        _ => None,
    }),
    makes("SYMLINK", |a| match a {
        Args::Symlink { where_, .. } => Some(&where_.dir),
        _ => None,
    }),
    makes("MKNOD", |a| match a {
        Args::Mknod { where_, .. } => Some(&where_.dir),
        _ => None,
    }),
    ProcInfo {
        order: Order::Unlink,
        ..names("REMOVE", Wcc, |a| match a {
            Args::Remove(d) => Some(&d.dir),
            _ => None,
        })
    },
    ProcInfo {
        order: Order::Unlink,
        ..names("RMDIR", Wcc, |a| match a {
            Args::Rmdir(d) => Some(&d.dir),
            _ => None,
        })
    },
    ProcInfo {
        order: Order::Rename,
        second: |a| match a {
            Args::Rename { to, .. } => Some(&to.dir),
            _ => None,
        },
        ..names("RENAME", TwoWcc, |a| match a {
            Args::Rename { from, .. } => Some(&from.dir),
            _ => None,
        })
    },
    ProcInfo {
        creates: true,
        order: Order::Link,
        second: |a| match a {
            Args::Link { link, .. } => Some(&link.dir),
            _ => None,
        },
        ..names("LINK", PostOpWcc, |a| match a {
            Args::Link { file, .. } => Some(file),
            _ => None,
        })
    },
    read("READDIR", PostOp, |a| match a {
        Args::ReadDir { dir, .. } => Some(dir),
        _ => None,
    }),
    read("READDIRPLUS", PostOp, |a| match a {
        Args::ReadDirPlus { dir, .. } => Some(dir),
        _ => None,
    }),
    read("FSSTAT", PostOp, |a| match a {
        Args::FsStat(f) => Some(f),
        _ => None,
    }),
    quick("FSINFO", PostOp, |a| match a {
        Args::FsInfo(f) => Some(f),
        _ => None,
    }),
    quick("PATHCONF", PostOp, |a| match a {
        Args::PathConf(f) => Some(f),
        _ => None,
    }),
    // COMMIT changes nothing a resync would send (the WRITEs it makes durable are logged),
    // but it is mirrored: each member makes its own copy durable before the client hears
    ProcInfo {
        idempotent: true,
        once: false,
        order: Order::Object,
        log: Log::Nothing,
        ..names("COMMIT", Wcc, |a| match a {
            Args::Commit { file, .. } => Some(file),
            _ => None,
        })
    },
];

/// MOUNT v3, indexed by procedure number (its arguments are not NFS [`Args`]: no handle).
pub static MOUNT3: [ProcInfo; 6] = [
    read("NULL", Empty, none),
    read("MNT", Empty, none),
    read("DUMP", Empty, none),
    read("UMNT", Empty, none),
    read("UMNTALL", Empty, none),
    read("EXPORT", Empty, none),
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
    use crate::ids::{ExportId, FileId, Generation};
    use ftnfs_wire::nfs3::{procs, CreateHow3, DirOpArgs3, StableHow};

    fn fh(file: u64) -> NfsFh3 {
        NfsFh3(
            FileHandle {
                export: ExportId(7),
                file: FileId(file),
                gen: Generation(1),
            }
            .encode(),
        )
    }

    fn dir(file: u64) -> DirOpArgs3 {
        DirOpArgs3 {
            dir: fh(file),
            name: b"x".to_vec(),
        }
    }

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
        // only creating procedures dictate a new id, and LINK does not
        for (i, p) in NFS3.iter().enumerate() {
            assert!(!p.new_id || p.creates, "{}", p.name);
            assert!(!p.new_id || p.updates, "{}", p.name);
            assert_eq!(p.mirrored_read, i == procs::READ as usize, "{}", p.name);
        }
        assert!(NFS3[procs::LINK as usize].creates && !NFS3[procs::LINK as usize].new_id);
        // what must run once is cached (its reply is replayed), and it is an update
        for p in NFS3.iter() {
            assert!(!p.once || (!p.idempotent && p.updates), "{}", p.name);
        }
        assert!(!NFS3[procs::WRITE as usize].once && NFS3[procs::RENAME as usize].once);
    }

    #[test]
    fn every_row_finds_the_handle_of_its_own_arguments_only() {
        let calls: Vec<(u32, Args)> = vec![
            (procs::GETATTR, Args::GetAttr(fh(1))),
            (procs::LOOKUP, Args::Lookup(dir(1))),
            (procs::REMOVE, Args::Remove(dir(1))),
            (
                procs::RENAME,
                Args::Rename {
                    from: dir(1),
                    to: dir(2),
                },
            ),
            (
                procs::LINK,
                Args::Link {
                    file: fh(1),
                    link: dir(2),
                },
            ),
            (
                procs::COMMIT,
                Args::Commit {
                    file: fh(1),
                    offset: 0,
                    count: 0,
                },
            ),
        ];
        for (n, a) in &calls {
            let row = &NFS3[*n as usize];
            assert_eq!((row.handle)(a), Some(&fh(1)), "{}", row.name);
            // another procedure's row does not read these arguments
            let other = &NFS3[(*n as usize + 1) % 22];
            assert_eq!((other.handle)(a), None, "{} on {}", other.name, row.name);
        }
        assert_eq!((NFS3[0].handle)(&Args::Null), None);
    }

    #[test]
    fn updates_order_and_log_what_they_touch() {
        let write = Args::Write {
            file: fh(5),
            offset: BLOCK - 1,
            count: 2,
            stable: StableHow::Unstable,
            data: vec![0, 0].into(),
        };
        let w = &NFS3[procs::WRITE as usize];
        assert_eq!(
            w.touch(&write, None),
            Touch {
                keys: vec![Key::part(5, 0), Key::part(5, 1)],
                barrier: false
            }
        );
        assert_eq!(w.logged(&write, None), vec![Touched::blocks(5, 0, 1)]);
        let rename = Args::Rename {
            from: dir(1),
            to: dir(2),
        };
        let r = &NFS3[procs::RENAME as usize];
        assert!(r.touch(&rename, None).barrier);
        assert_eq!(
            r.logged(&rename, None),
            vec![Touched::whole(1), Touched::whole(2)]
        );
        let mkdir = &NFS3[procs::MKDIR as usize];
        assert_eq!(
            mkdir.logged(&Args::Remove(dir(3)), Some(9)),
            vec![Touched::whole(9)],
            "a row reads only its own procedure's arguments"
        );
        let commit = Args::Commit {
            file: fh(4),
            offset: 0,
            count: 0,
        };
        let c = &NFS3[procs::COMMIT as usize];
        assert_eq!(c.touch(&commit, None).keys, vec![Key::whole(4)]);
        assert!(c.logged(&commit, None).is_empty());
        // a handle that does not decode: no keys, no barrier, nothing logged
        let bad = Args::SetAttr {
            obj: NfsFh3(vec![1, 2, 3]),
            attr: Default::default(),
            guard: None,
        };
        let s = &NFS3[procs::SETATTR as usize];
        assert_eq!(s.touch(&bad, None), Touch::default());
        assert!(s.logged(&bad, None).is_empty());
    }

    /// Makes of other names in one directory share no key; the same name, the directory as a
    /// whole and the new object do.
    #[test]
    fn makes_are_ordered_by_their_entry_and_their_new_object() {
        let create = |d: u64, name: &[u8]| Args::Create {
            where_: DirOpArgs3 {
                dir: fh(d),
                name: name.to_vec(),
            },
            how: CreateHow3::Unchecked(Default::default()),
        };
        let c = &NFS3[procs::CREATE as usize];
        let a = c.touch(&create(1, b"a"), Some(20));
        let b = c.touch(&create(1, b"b"), Some(21));
        assert!(!a.barrier && !b.barrier);
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.keys[0].object, 1, "the directory's part");
        assert!(a.keys[0].part.is_some());
        assert_eq!(a.keys[1], Key::whole(20), "the new object");
        assert!(a.keys.iter().all(|k| !b.keys.contains(k)), "{a:?} {b:?}");
        let again = c.touch(&create(1, b"a"), Some(22));
        assert_eq!(again.keys[0], a.keys[0], "the same name, the same key");
        let elsewhere = c.touch(&create(2, b"a"), Some(23));
        assert_ne!(elsewhere.keys[0], a.keys[0]);
        let mkdir = Args::Mkdir {
            where_: DirOpArgs3 {
                dir: fh(1),
                name: b"a".to_vec(),
            },
            attr: Default::default(),
        };
        let m = NFS3[procs::MKDIR as usize].touch(&mkdir, Some(24));
        assert_eq!(m.keys[0], a.keys[0], "every make of a name shares its key");
        // a removal of the name: the same entry; alone (without its victim) a barrier
        let remove = Args::Remove(DirOpArgs3 {
            dir: fh(1),
            name: b"a".to_vec(),
        });
        let r = &NFS3[procs::REMOVE as usize];
        assert_eq!(r.entry_key(&remove), Some(a.keys[0]));
        assert!(r.touch(&remove, None).barrier);
        let rmdir = Args::Rmdir(DirOpArgs3 {
            dir: fh(1),
            name: b"a".to_vec(),
        });
        assert_eq!(
            NFS3[procs::RMDIR as usize].entry_key(&rmdir),
            Some(a.keys[0])
        );
        assert_eq!(c.entry_key(&create(1, b"a")), Some(a.keys[0]));
        assert_eq!(NFS3[procs::RENAME as usize].entry_key(&remove), None);
        // LINK: the new name and the whole object; RENAME alone: a barrier, its two entries
        let link = Args::Link {
            file: fh(30),
            link: DirOpArgs3 {
                dir: fh(1),
                name: b"a".to_vec(),
            },
        };
        let l = NFS3[procs::LINK as usize].touch(&link, None);
        assert_eq!(l.keys, vec![a.keys[0], Key::whole(30)]);
        assert!(!l.barrier);
        let rename = Args::Rename {
            from: DirOpArgs3 {
                dir: fh(2),
                name: b"x".to_vec(),
            },
            to: DirOpArgs3 {
                dir: fh(1),
                name: b"a".to_vec(),
            },
        };
        let rn = &NFS3[procs::RENAME as usize];
        assert!(rn.touch(&rename, None).barrier);
        let e: Vec<Option<Key>> = rn
            .entries(&rename)
            .into_iter()
            .map(|(d, n)| entry_key_of(d, n))
            .collect();
        let x = c.touch(&create(2, b"x"), Some(99)).keys[0];
        assert_eq!(e, vec![Some(x), Some(a.keys[0])]);
        // without a reserved id it cannot name its object: a barrier
        assert!(c.touch(&create(1, b"a"), None).barrier);
        // the directory's own SETATTR takes it whole, which every part conflicts with
        let setattr = Args::SetAttr {
            obj: fh(1),
            attr: Default::default(),
            guard: None,
        };
        assert_eq!(
            NFS3[procs::SETATTR as usize].touch(&setattr, None).keys,
            vec![Key::whole(1)]
        );
    }
}
