//! The one place where local failures become `nfsstat3` (Ganesha's `nfs_convert.c`).

use ftnfs_wire::nfs3::NfsStat3;
use nix::errno::Errno;

use crate::fs::idtable::IdError;

/// A procedure failed with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail(pub NfsStat3);

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        use NfsStat3::*;
        Fail(match e {
            Errno::EPERM => Perm,
            Errno::ENOENT => NoEnt,
            Errno::ENXIO => Nxio,
            Errno::EACCES => Acces,
            Errno::EEXIST => Exist,
            Errno::EXDEV => Xdev,
            Errno::ENODEV => NoDev,
            Errno::ENOTDIR => NotDir,
            Errno::EISDIR => IsDir,
            Errno::EINVAL => Inval,
            Errno::EFBIG => FBig,
            Errno::ENOSPC => NoSpc,
            Errno::EROFS => Rofs,
            Errno::EMLINK => MLink,
            Errno::ENAMETOOLONG => NameTooLong,
            Errno::ENOTEMPTY => NotEmpty,
            Errno::EDQUOT => DQuot,
            Errno::ESTALE => Stale,
            Errno::ELOOP => Acces,
            Errno::EOPNOTSUPP => NotSupp,
            Errno::EAGAIN | Errno::ENOMEM => Jukebox,
            _ => Io,
        })
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => Errno::from_raw(n).into(),
            None => Fail(NfsStat3::Io),
        }
    }
}

impl From<IdError> for Fail {
    fn from(e: IdError) -> Self {
        match e {
            IdError::Orphan(_) => Fail(NfsStat3::Stale),
            IdError::Io(_) => Fail(NfsStat3::Io),
            // Only a secondary applying a create gets this: its status then differs from the
            // primary's and the primary fails it out of the export (DESIGN.md decision 5).
            IdError::Taken(id) => {
                tracing::error!(file = %id, "dictated file id already in use: this mirror diverged");
                Fail(NfsStat3::ServerFault)
            }
            IdError::Db(err) => {
                tracing::error!(error = %err, "identity table failure");
                Fail(NfsStat3::ServerFault)
            }
        }
    }
}

impl From<ftnfs_core::access::Denied> for Fail {
    fn from(d: ftnfs_core::access::Denied) -> Self {
        match d {
            ftnfs_core::access::Denied::NotOwner => Fail(NfsStat3::Perm),
            ftnfs_core::access::Denied::Mode => Fail(NfsStat3::Acces),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(Fail::from(Errno::ENOTEMPTY).0, NfsStat3::NotEmpty);
        assert_eq!(Fail::from(Errno::EEXIST).0, NfsStat3::Exist);
        assert_eq!(Fail::from(Errno::EIO).0, NfsStat3::Io);
        assert_eq!(
            Fail::from(std::io::Error::from_raw_os_error(libc_enospc())).0,
            NfsStat3::NoSpc
        );
    }

    fn libc_enospc() -> i32 {
        Errno::ENOSPC as i32
    }
}
