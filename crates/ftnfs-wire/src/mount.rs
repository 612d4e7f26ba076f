//! MOUNT protocol version 3 (RFC 1813 Appendix I). Versions 1 and 2 share EXPORT, DUMP, UMNT
//! and UMNTALL, which is what `showmount` uses.

use crate::xdr::{XdrEncode, XdrError, XdrReader, XdrWriter};

/// Program number of MOUNT.
pub const PROGRAM: u32 = 100005;
/// MNTPATHLEN.
pub const MNTPATHLEN: u32 = 1024;
/// MNTNAMLEN.
pub const MNTNAMLEN: u32 = 255;

/// Procedure numbers.
pub mod procs {
    #![allow(missing_docs)]
    pub const NULL: u32 = 0;
    pub const MNT: u32 = 1;
    pub const DUMP: u32 = 2;
    pub const UMNT: u32 = 3;
    pub const UMNTALL: u32 = 4;
    pub const EXPORT: u32 = 5;
}

/// mountstat3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum MountStat3 {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Acces = 13,
    NotDir = 20,
    Inval = 22,
    NameTooLong = 63,
    NotSupp = 10004,
    ServerFault = 10006,
}

/// Decodes a `dirpath` argument (MNT, UMNT).
pub fn decode_dirpath(buf: &[u8]) -> Result<Vec<u8>, XdrError> {
    let mut r = XdrReader::new(buf);
    let p = r.opaque(MNTPATHLEN)?.to_vec();
    r.finish()?;
    Ok(p)
}

/// The MNT result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MntRes {
    /// Mounted: the root handle and the auth flavors accepted.
    Ok {
        /// fhandle3 of the export root.
        fh: Vec<u8>,
        /// Accepted flavors, preferred first.
        flavors: Vec<u32>,
    },
    /// Refused.
    Err(MountStat3),
}

impl XdrEncode for MntRes {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            MntRes::Ok { fh, flavors } => {
                w.u32(0).opaque(fh).u32(flavors.len() as u32);
                for f in flavors {
                    w.u32(*f);
                }
            }
            MntRes::Err(s) => {
                w.u32(*s as u32);
            }
        }
    }
}

/// One exported directory and the groups allowed to mount it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportNode {
    /// The export path.
    pub dir: Vec<u8>,
    /// Client specs as written in the exports file.
    pub groups: Vec<Vec<u8>>,
}

/// The EXPORT result (a linked list on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportList(pub Vec<ExportNode>);

impl XdrEncode for ExportList {
    fn encode(&self, w: &mut XdrWriter) {
        for e in &self.0 {
            w.bool(true).opaque(&e.dir);
            for g in &e.groups {
                w.bool(true).opaque(g);
            }
            w.bool(false);
        }
        w.bool(false);
    }
}

/// The DUMP result: (hostname, directory) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountList(pub Vec<(Vec<u8>, Vec<u8>)>);

impl XdrEncode for MountList {
    fn encode(&self, w: &mut XdrWriter) {
        for (h, d) in &self.0 {
            w.bool(true).opaque(h).opaque(d);
        }
        w.bool(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirpath_limits() {
        let mut w = XdrWriter::new();
        w.opaque(&vec![b'a'; 1025]);
        assert!(decode_dirpath(w.as_slice()).is_err());
        let mut w = XdrWriter::new();
        w.opaque(b"/srv/x");
        assert_eq!(decode_dirpath(w.as_slice()).unwrap(), b"/srv/x");
    }

    #[test]
    fn export_list_shape() {
        let l = ExportList(vec![ExportNode {
            dir: b"/a".to_vec(),
            groups: vec![b"*".to_vec()],
        }]);
        // true, "/a", true, "*", false, false
        assert_eq!(l.to_bytes().len(), 4 + 8 + 4 + 8 + 4 + 4);
    }
}
