//! Who may do what. ftnfsd runs as root and acts on the local tree with root's rights, so every
//! permission decision a kernel would make for the caller is made here, explicitly, from the
//! caller's squashed AUTH_SYS credential and the object's owner and mode bits (POSIX.1 §4.5
//! file access permissions; knfsd's `nfsd_permission` for the NFS-specific owner override).
//!
//! POSIX ACLs are not consulted (documented limitation, Documentation/03-access.md).

/// Set-user-id bit.
pub const S_ISUID: u32 = 0o4000;
/// Set-group-id bit.
pub const S_ISGID: u32 = 0o2000;
/// Sticky bit.
pub const S_ISVTX: u32 = 0o1000;

/// Read permission bit (per class).
pub const R: u32 = 4;
/// Write permission bit (per class).
pub const W: u32 = 2;
/// Execute/search permission bit (per class).
pub const X: u32 = 1;

/// The identity a request acts as, after squashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Cred {
    /// Superuser (after squashing; a squashed root is not root).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Member of `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// The anonymous identity.
    pub fn anonymous(s: &Squash) -> Cred {
        Cred {
            uid: s.anonuid,
            gid: s.anongid,
            groups: Vec::new(),
        }
    }
}

/// The export's identity mapping (exports(5) "User ID Mapping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squash {
    /// Map uid/gid 0 to the anonymous ids (default on).
    pub root_squash: bool,
    /// Map every uid/gid to the anonymous ids.
    pub all_squash: bool,
    /// Anonymous uid (default 65534).
    pub anonuid: u32,
    /// Anonymous gid (default 65534).
    pub anongid: u32,
}

impl Default for Squash {
    fn default() -> Self {
        Self {
            root_squash: true,
            all_squash: false,
            anonuid: 65534,
            anongid: 65534,
        }
    }
}

impl Squash {
    /// Applies the mapping to a credential.
    pub fn apply(&self, c: Cred) -> Cred {
        if self.all_squash {
            return Cred::anonymous(self);
        }
        if !self.root_squash {
            return c;
        }
        let map = |id: u32, anon: u32| if id == 0 { anon } else { id };
        Cred {
            uid: map(c.uid, self.anonuid),
            gid: map(c.gid, self.anongid),
            groups: c.groups.into_iter().map(|g| map(g, self.anongid)).collect(),
        }
    }
}

/// The owner and mode of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits including S_ISUID/S_ISGID/S_ISVTX.
    pub mode: u32,
    /// The object is a directory.
    pub is_dir: bool,
}

/// Why an operation is refused, mapped to NFS3ERR_PERM or NFS3ERR_ACCES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Not the owner (or not root) where ownership is required: NFS3ERR_PERM.
    NotOwner,
    /// Mode bits forbid it: NFS3ERR_ACCES.
    Mode,
}

/// The POSIX permission check of `want` (a mask of [`R`], [`W`], [`X`]).
pub fn permits(c: &Cred, o: &Owner, want: u32) -> bool {
    if c.is_root() {
        // root may read and write anything; execute only if someone may (or a directory)
        return want & X == 0 || o.is_dir || o.mode & 0o111 != 0;
    }
    let class = if c.uid == o.uid {
        (o.mode >> 6) & 7
    } else if c.in_group(o.gid) {
        (o.mode >> 3) & 7
    } else {
        o.mode & 7
    };
    class & want == want
}

/// READ of file data. NFS checks at each READ what a local client checked once at open(2), so
/// the owner may always read, and execute permission suffices (the client needs the bytes to
/// run the program) — knfsd's NFSD_MAY_OWNER_OVERRIDE and NFSD_MAY_READ_IF_EXEC.
pub fn may_read(c: &Cred, o: &Owner) -> bool {
    c.uid == o.uid || permits(c, o, R) || (!o.is_dir && permits(c, o, X))
}

/// WRITE of file data or truncation; the owner may always (open(O_CREAT, 0444) then write).
pub fn may_write(c: &Cred, o: &Owner) -> bool {
    c.uid == o.uid || permits(c, o, W)
}

/// Search a directory (LOOKUP).
pub fn may_search(c: &Cred, dir: &Owner) -> bool {
    permits(c, dir, X)
}

/// Add or remove entries of a directory.
pub fn may_modify_dir(c: &Cred, dir: &Owner) -> bool {
    permits(c, dir, W | X)
}

/// Remove or rename away `victim` from `dir`, honouring the sticky bit.
pub fn may_delete(c: &Cred, dir: &Owner, victim: &Owner) -> Result<(), Denied> {
    if !may_modify_dir(c, dir) {
        return Err(Denied::Mode);
    }
    if dir.mode & S_ISVTX != 0 && !c.is_root() && c.uid != dir.uid && c.uid != victim.uid {
        return Err(Denied::NotOwner);
    }
    Ok(())
}

/// What a SETATTR asks for, reduced to what permission depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// New mode.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: bool,
    /// A time set to a value the client chose.
    pub client_time: bool,
    /// A time set to the server's clock.
    pub server_time: bool,
}

/// chmod/chown/truncate/utimes rules (POSIX chown with _POSIX_CHOWN_RESTRICTED; utimensat(2)).
pub fn may_setattr(c: &Cred, o: &Owner, ch: &AttrChange) -> Result<(), Denied> {
    if c.is_root() {
        return Ok(());
    }
    let owner = c.uid == o.uid;
    if ch.mode.is_some() && !owner {
        return Err(Denied::NotOwner);
    }
    if ch.uid.is_some_and(|u| u != o.uid) {
        return Err(Denied::NotOwner);
    }
    if let Some(g) = ch.gid {
        if g != o.gid && !(owner && c.in_group(g)) {
            return Err(Denied::NotOwner);
        }
    }
    if ch.client_time && !owner {
        return Err(Denied::NotOwner);
    }
    if ch.server_time && !owner && !permits(c, o, W) {
        return Err(Denied::Mode);
    }
    if ch.size && !may_write(c, o) {
        return Err(Denied::Mode);
    }
    Ok(())
}

/// The mode a chmod really sets: a non-root caller outside the file's group cannot set
/// S_ISGID (chmod(2), EPERM is not returned; the bit is cleared).
pub fn effective_chmod(c: &Cred, o: &Owner, mode: u32) -> u32 {
    let mode = mode & 0o7777;
    if !c.is_root() && !o.is_dir && !c.in_group(o.gid) {
        mode & !S_ISGID
    } else {
        mode
    }
}

/// Owner and group of a new object created by `c` in `parent` (BSD group semantics when the
/// parent is set-group-id), and whether a new directory inherits S_ISGID.
pub fn new_owner(c: &Cred, parent: &Owner) -> (u32, u32, bool) {
    if parent.mode & S_ISGID != 0 {
        (c.uid, parent.gid, true)
    } else {
        (c.uid, c.gid, false)
    }
}

/// The ACCESS procedure's answer (RFC 1813 §3.3.4): the subset of `requested` granted.
pub fn access_mask(c: &Cred, o: &Owner, requested: u32, read_only: bool) -> u32 {
    use ftnfs_wire::nfs3::access::*;
    let mut g = 0;
    if permits(c, o, R) {
        g |= READ;
    }
    if o.is_dir {
        if permits(c, o, X) {
            g |= LOOKUP;
        }
        if !read_only && may_modify_dir(c, o) {
            g |= MODIFY | EXTEND | DELETE;
        }
    } else {
        if !read_only && permits(c, o, W) {
            g |= MODIFY | EXTEND;
        }
        if permits(c, o, X) {
            g |= EXECUTE;
        }
    }
    g & requested
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> Cred {
        Cred {
            uid,
            gid,
            groups: vec![],
        }
    }
    fn file(uid: u32, gid: u32, mode: u32) -> Owner {
        Owner {
            uid,
            gid,
            mode,
            is_dir: false,
        }
    }
    fn dir(uid: u32, gid: u32, mode: u32) -> Owner {
        Owner {
            uid,
            gid,
            mode,
            is_dir: true,
        }
    }

    #[test]
    fn classes_are_exclusive() {
        // POSIX: the owner class applies to the owner even if the group class is wider.
        let o = file(1000, 100, 0o070);
        assert!(!permits(&cred(1000, 100), &o, R));
        assert!(permits(&cred(1001, 100), &o, R));
        assert!(!permits(&cred(1002, 200), &o, R));
    }

    #[test]
    fn root_squash_maps_root_and_its_groups() {
        let s = Squash::default();
        let c = s.apply(Cred {
            uid: 0,
            gid: 0,
            groups: vec![0, 5],
        });
        assert_eq!(
            c,
            Cred {
                uid: 65534,
                gid: 65534,
                groups: vec![65534, 5]
            }
        );
        let all = Squash {
            all_squash: true,
            anonuid: 7,
            anongid: 8,
            ..Squash::default()
        };
        assert_eq!(all.apply(cred(1000, 100)), cred(7, 8));
    }

    #[test]
    fn squashed_root_cannot_read_private_files() {
        let c = Squash::default().apply(cred(0, 0));
        assert!(!may_read(&c, &file(0, 0, 0o600)));
        assert!(may_read(&cred(0, 0), &file(0, 0, 0o000)));
    }

    #[test]
    fn sticky_directory() {
        let d = dir(0, 0, 0o1777);
        let mine = file(1000, 100, 0o644);
        assert_eq!(may_delete(&cred(1000, 100), &d, &mine), Ok(()));
        assert_eq!(
            may_delete(&cred(1001, 100), &d, &mine),
            Err(Denied::NotOwner)
        );
        assert_eq!(
            may_delete(&cred(1001, 100), &dir(0, 0, 0o755), &mine),
            Err(Denied::Mode)
        );
    }

    #[test]
    fn chown_is_restricted() {
        let o = file(1000, 100, 0o644);
        let me = Cred {
            uid: 1000,
            gid: 100,
            groups: vec![200],
        };
        let to_user = AttrChange {
            uid: Some(1001),
            ..Default::default()
        };
        assert_eq!(may_setattr(&me, &o, &to_user), Err(Denied::NotOwner));
        let to_my_group = AttrChange {
            gid: Some(200),
            ..Default::default()
        };
        assert_eq!(may_setattr(&me, &o, &to_my_group), Ok(()));
        let to_other_group = AttrChange {
            gid: Some(300),
            ..Default::default()
        };
        assert_eq!(may_setattr(&me, &o, &to_other_group), Err(Denied::NotOwner));
        let chmod_by_other = AttrChange {
            mode: Some(0o777),
            ..Default::default()
        };
        assert_eq!(
            may_setattr(&cred(1001, 100), &o, &chmod_by_other),
            Err(Denied::NotOwner)
        );
    }

    #[test]
    fn owner_override_for_data() {
        let o = file(1000, 100, 0o444);
        assert!(may_write(&cred(1000, 100), &o));
        assert!(!may_write(&cred(1001, 100), &o));
    }

    #[test]
    fn setgid_directory_inherits_group() {
        let d = dir(0, 50, 0o2775);
        assert_eq!(new_owner(&cred(1000, 100), &d), (1000, 50, true));
        assert_eq!(
            effective_chmod(&cred(1000, 100), &file(1000, 50, 0), 0o2755),
            0o755
        );
    }

    #[test]
    fn access_procedure_mask() {
        use ftnfs_wire::nfs3::access::*;
        let d = dir(1000, 100, 0o755);
        assert_eq!(
            access_mask(&cred(1001, 100), &d, 0x3f, false),
            READ | LOOKUP
        );
        assert_eq!(access_mask(&cred(1000, 100), &d, 0x3f, true), READ | LOOKUP);
        assert_eq!(
            access_mask(&cred(1000, 100), &d, 0x3f, false),
            READ | LOOKUP | MODIFY | EXTEND | DELETE
        );
    }
}
