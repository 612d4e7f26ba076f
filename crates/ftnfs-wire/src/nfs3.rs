//! NFS version 3 (RFC 1813) arguments and results.
//!
//! Arguments decode from and encode to XDR (encode is used by tests, fuzz round-trips and,
//! later, the peer channel). Results encode; [`Res`] carries the single place where a status
//! is written in front of the ok or fail body.

use crate::xdr::{XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};

/// Program number of NFS.
pub const PROGRAM: u32 = 100003;
/// The version we serve.
pub const VERSION: u32 = 3;
/// NFS3_FHSIZE: largest file handle.
pub const FHSIZE: u32 = 64;
/// Longest name we decode; names over 255 bytes get NFS3ERR_NAMETOOLONG from the handler.
pub const MAX_NAME_DECODE: u32 = 1024;
/// Longest symlink target / path.
pub const MAX_PATH: u32 = 4096;
/// Largest READ/WRITE transfer we advertise and accept (FSINFO rtmax/wtmax).
pub const MAX_IO: u32 = 1024 * 1024;
/// NFS3_WRITEVERFSIZE, NFS3_CREATEVERFSIZE, NFS3_COOKIEVERFSIZE.
pub const VERF_SIZE: usize = 8;

/// An 8-byte verifier (write, create, cookie).
pub type Verf = [u8; VERF_SIZE];

/// nfsstat3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum NfsStat3 {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Nxio = 6,
    Acces = 13,
    Exist = 17,
    Xdev = 18,
    NoDev = 19,
    NotDir = 20,
    IsDir = 21,
    Inval = 22,
    FBig = 27,
    NoSpc = 28,
    Rofs = 30,
    MLink = 31,
    NameTooLong = 63,
    NotEmpty = 66,
    DQuot = 69,
    Stale = 70,
    Remote = 71,
    BadHandle = 10001,
    NotSync = 10002,
    BadCookie = 10003,
    NotSupp = 10004,
    TooSmall = 10005,
    ServerFault = 10006,
    BadType = 10007,
    Jukebox = 10008,
}

/// ftype3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum FType3 {
    Reg = 1,
    Dir = 2,
    Blk = 3,
    Chr = 4,
    Lnk = 5,
    Sock = 6,
    Fifo = 7,
}

impl FType3 {
    fn from_u32(v: u32) -> Result<Self, XdrError> {
        Ok(match v {
            1 => Self::Reg,
            2 => Self::Dir,
            3 => Self::Blk,
            4 => Self::Chr,
            5 => Self::Lnk,
            6 => Self::Sock,
            7 => Self::Fifo,
            value => {
                return Err(XdrError::BadDiscriminant {
                    what: "ftype3",
                    value,
                })
            }
        })
    }
}

/// nfstime3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct NfsTime3 {
    /// Seconds since the epoch.
    pub seconds: u32,
    /// Nanoseconds.
    pub nseconds: u32,
}

impl<'a> XdrDecode<'a> for NfsTime3 {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self {
            seconds: r.u32()?,
            nseconds: r.u32()?,
        })
    }
}
impl XdrEncode for NfsTime3 {
    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.seconds).u32(self.nseconds);
    }
}

/// fattr3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Fattr3 {
    pub ftype: FType3,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub rdev: (u32, u32),
    pub fsid: u64,
    pub fileid: u64,
    pub atime: NfsTime3,
    pub mtime: NfsTime3,
    pub ctime: NfsTime3,
}

impl XdrEncode for Fattr3 {
    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.ftype as u32)
            .u32(self.mode)
            .u32(self.nlink)
            .u32(self.uid)
            .u32(self.gid)
            .u64(self.size)
            .u64(self.used)
            .u32(self.rdev.0)
            .u32(self.rdev.1)
            .u64(self.fsid)
            .u64(self.fileid);
        self.atime.encode(w);
        self.mtime.encode(w);
        self.ctime.encode(w);
    }
}

impl<'a> XdrDecode<'a> for Fattr3 {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self {
            ftype: FType3::from_u32(r.u32()?)?,
            mode: r.u32()?,
            nlink: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            size: r.u64()?,
            used: r.u64()?,
            rdev: (r.u32()?, r.u32()?),
            fsid: r.u64()?,
            fileid: r.u64()?,
            atime: NfsTime3::decode(r)?,
            mtime: NfsTime3::decode(r)?,
            ctime: NfsTime3::decode(r)?,
        })
    }
}

/// post_op_attr.
pub type PostOpAttr = Option<Fattr3>;

/// wcc_attr: the pre-operation attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WccAttr {
    /// Size before.
    pub size: u64,
    /// mtime before.
    pub mtime: NfsTime3,
    /// ctime before.
    pub ctime: NfsTime3,
}

/// wcc_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WccData {
    /// pre_op_attr.
    pub before: Option<WccAttr>,
    /// post_op_attr.
    pub after: PostOpAttr,
}

fn encode_post_op(a: &PostOpAttr, w: &mut XdrWriter) {
    match a {
        Some(f) => {
            w.bool(true);
            f.encode(w);
        }
        None => {
            w.bool(false);
        }
    }
}

impl XdrEncode for PostOpAttr {
    fn encode(&self, w: &mut XdrWriter) {
        encode_post_op(self, w)
    }
}

impl XdrEncode for WccData {
    fn encode(&self, w: &mut XdrWriter) {
        match &self.before {
            Some(b) => {
                w.bool(true).u64(b.size);
                b.mtime.encode(w);
                b.ctime.encode(w);
            }
            None => {
                w.bool(false);
            }
        }
        encode_post_op(&self.after, w);
    }
}

/// nfs_fh3: an opaque handle of at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NfsFh3(pub Vec<u8>);

impl<'a> XdrDecode<'a> for NfsFh3 {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self(r.opaque(FHSIZE)?.to_vec()))
    }
}
impl XdrEncode for NfsFh3 {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.0);
    }
}

impl XdrEncode for Option<NfsFh3> {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Some(fh) => {
                w.bool(true);
                fh.encode(w);
            }
            None => {
                w.bool(false);
            }
        }
    }
}

/// set_atime / set_mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTime {
    /// DONT_CHANGE
    #[default]
    DontChange,
    /// SET_TO_SERVER_TIME
    ServerTime,
    /// SET_TO_CLIENT_TIME
    ClientTime(NfsTime3),
}

/// sattr3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Sattr3 {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime,
    pub mtime: SetTime,
}

fn dec_opt_u32(r: &mut XdrReader<'_>) -> Result<Option<u32>, XdrError> {
    Ok(if r.bool()? { Some(r.u32()?) } else { None })
}

fn enc_opt_u32(v: Option<u32>, w: &mut XdrWriter) {
    match v {
        Some(x) => w.bool(true).u32(x),
        None => w.bool(false),
    };
}

impl<'a> XdrDecode<'a> for SetTime {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(match r.u32()? {
            0 => SetTime::DontChange,
            1 => SetTime::ServerTime,
            2 => SetTime::ClientTime(NfsTime3::decode(r)?),
            value => {
                return Err(XdrError::BadDiscriminant {
                    what: "time_how",
                    value,
                })
            }
        })
    }
}
impl XdrEncode for SetTime {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            SetTime::DontChange => {
                w.u32(0);
            }
            SetTime::ServerTime => {
                w.u32(1);
            }
            SetTime::ClientTime(t) => {
                w.u32(2);
                t.encode(w);
            }
        }
    }
}

impl<'a> XdrDecode<'a> for Sattr3 {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self {
            mode: dec_opt_u32(r)?,
            uid: dec_opt_u32(r)?,
            gid: dec_opt_u32(r)?,
            size: if r.bool()? { Some(r.u64()?) } else { None },
            atime: SetTime::decode(r)?,
            mtime: SetTime::decode(r)?,
        })
    }
}
impl XdrEncode for Sattr3 {
    fn encode(&self, w: &mut XdrWriter) {
        enc_opt_u32(self.mode, w);
        enc_opt_u32(self.uid, w);
        enc_opt_u32(self.gid, w);
        match self.size {
            Some(s) => w.bool(true).u64(s),
            None => w.bool(false),
        };
        self.atime.encode(w);
        self.mtime.encode(w);
    }
}

/// diropargs3: a directory handle and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirOpArgs3 {
    /// The directory.
    pub dir: NfsFh3,
    /// The entry name (raw bytes; not necessarily UTF-8).
    pub name: Vec<u8>,
}
impl<'a> XdrDecode<'a> for DirOpArgs3 {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self {
            dir: NfsFh3::decode(r)?,
            name: r.opaque(MAX_NAME_DECODE)?.to_vec(),
        })
    }
}
impl XdrEncode for DirOpArgs3 {
    fn encode(&self, w: &mut XdrWriter) {
        self.dir.encode(w);
        w.opaque(&self.name);
    }
}

/// stable_how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum StableHow {
    /// UNSTABLE: may be cached until COMMIT.
    Unstable = 0,
    /// DATA_SYNC: data and the metadata needed to read it are durable.
    DataSync = 1,
    /// FILE_SYNC: data and all metadata are durable.
    FileSync = 2,
}

/// createhow3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHow3 {
    /// UNCHECKED: create or truncate-and-reuse.
    Unchecked(Sattr3),
    /// GUARDED: fail with EXIST if the name exists.
    Guarded(Sattr3),
    /// EXCLUSIVE: idempotent create keyed by the verifier.
    Exclusive(Verf),
}

/// mknoddata3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MknodData3 {
    /// Character or block device.
    Device {
        /// NF3CHR or NF3BLK.
        ftype: FType3,
        /// Attributes.
        attr: Sattr3,
        /// Major and minor.
        spec: (u32, u32),
    },
    /// Socket or FIFO.
    Special {
        /// NF3SOCK or NF3FIFO.
        ftype: FType3,
        /// Attributes.
        attr: Sattr3,
    },
    /// Any other type: the server answers NFS3ERR_BADTYPE.
    Other(FType3),
}

/// The arguments of each procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Args {
    Null,
    GetAttr(NfsFh3),
    SetAttr {
        obj: NfsFh3,
        attr: Sattr3,
        guard: Option<NfsTime3>,
    },
    Lookup(DirOpArgs3),
    Access {
        obj: NfsFh3,
        access: u32,
    },
    ReadLink(NfsFh3),
    Read {
        file: NfsFh3,
        offset: u64,
        count: u32,
    },
    Write {
        file: NfsFh3,
        offset: u64,
        count: u32,
        stable: StableHow,
        data: bytes::Bytes,
    },
    Create {
        where_: DirOpArgs3,
        how: CreateHow3,
    },
    Mkdir {
        where_: DirOpArgs3,
        attr: Sattr3,
    },
    Symlink {
        where_: DirOpArgs3,
        attr: Sattr3,
        target: Vec<u8>,
    },
    Mknod {
        where_: DirOpArgs3,
        what: MknodData3,
    },
    Remove(DirOpArgs3),
    Rmdir(DirOpArgs3),
    Rename {
        from: DirOpArgs3,
        to: DirOpArgs3,
    },
    Link {
        file: NfsFh3,
        link: DirOpArgs3,
    },
    ReadDir {
        dir: NfsFh3,
        cookie: u64,
        verf: Verf,
        count: u32,
    },
    ReadDirPlus {
        dir: NfsFh3,
        cookie: u64,
        verf: Verf,
        dircount: u32,
        maxcount: u32,
    },
    FsStat(NfsFh3),
    FsInfo(NfsFh3),
    PathConf(NfsFh3),
    Commit {
        file: NfsFh3,
        offset: u64,
        count: u32,
    },
}

/// Procedure numbers (RFC 1813 §3.3).
pub mod procs {
    #![allow(missing_docs)]
    pub const NULL: u32 = 0;
    pub const GETATTR: u32 = 1;
    pub const SETATTR: u32 = 2;
    pub const LOOKUP: u32 = 3;
    pub const ACCESS: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const READ: u32 = 6;
    pub const WRITE: u32 = 7;
    pub const CREATE: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const SYMLINK: u32 = 10;
    pub const MKNOD: u32 = 11;
    pub const REMOVE: u32 = 12;
    pub const RMDIR: u32 = 13;
    pub const RENAME: u32 = 14;
    pub const LINK: u32 = 15;
    pub const READDIR: u32 = 16;
    pub const READDIRPLUS: u32 = 17;
    pub const FSSTAT: u32 = 18;
    pub const FSINFO: u32 = 19;
    pub const PATHCONF: u32 = 20;
    pub const COMMIT: u32 = 21;
}

/// Why arguments could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// The procedure number is not one of NFSv3's: PROC_UNAVAIL.
    NoSuchProc(u32),
    /// The bytes do not decode: GARBAGE_ARGS.
    Garbage(XdrError),
}

impl From<XdrError> for ArgsError {
    fn from(e: XdrError) -> Self {
        ArgsError::Garbage(e)
    }
}

fn attr_or_type(ftype: FType3, r: &mut XdrReader<'_>) -> Result<MknodData3, XdrError> {
    Ok(match ftype {
        FType3::Chr | FType3::Blk => MknodData3::Device {
            ftype,
            attr: Sattr3::decode(r)?,
            spec: (r.u32()?, r.u32()?),
        },
        FType3::Sock | FType3::Fifo => MknodData3::Special {
            ftype,
            attr: Sattr3::decode(r)?,
        },
        other => MknodData3::Other(other),
    })
}

impl Args {
    /// Decodes the arguments of procedure `proc_`; the whole buffer must be consumed. A
    /// WRITE's data is copied out of `buf`.
    pub fn decode(proc_: u32, buf: &[u8]) -> Result<Args, ArgsError> {
        Self::decode_with(proc_, buf, bytes::Bytes::copy_from_slice)
    }

    /// [`decode`](Self::decode) of arguments held in shared bytes: a WRITE's data is a slice
    /// of `buf`, not a copy (a 1 MiB WRITE is not copied again after the record arrived).
    pub fn decode_shared(proc_: u32, buf: &bytes::Bytes) -> Result<Args, ArgsError> {
        Self::decode_with(proc_, buf, |data| buf.slice_ref(data))
    }

    fn decode_with(
        proc_: u32,
        buf: &[u8],
        share: impl FnOnce(&[u8]) -> bytes::Bytes,
    ) -> Result<Args, ArgsError> {
        use procs::*;
        let r = &mut XdrReader::new(buf);
        let fh = |r: &mut XdrReader<'_>| NfsFh3::decode(r);
        let a = match proc_ {
            NULL => Args::Null,
            GETATTR => Args::GetAttr(fh(r)?),
            SETATTR => Args::SetAttr {
                obj: fh(r)?,
                attr: Sattr3::decode(r)?,
                guard: if r.bool()? {
                    Some(NfsTime3::decode(r)?)
                } else {
                    None
                },
            },
            LOOKUP => Args::Lookup(DirOpArgs3::decode(r)?),
            ACCESS => Args::Access {
                obj: fh(r)?,
                access: r.u32()?,
            },
            READLINK => Args::ReadLink(fh(r)?),
            READ => Args::Read {
                file: fh(r)?,
                offset: r.u64()?,
                count: r.u32()?,
            },
            WRITE => {
                let file = fh(r)?;
                let offset = r.u64()?;
                let count = r.u32()?;
                let stable = match r.u32()? {
                    0 => StableHow::Unstable,
                    1 => StableHow::DataSync,
                    2 => StableHow::FileSync,
                    value => {
                        return Err(XdrError::BadDiscriminant {
                            what: "stable_how",
                            value,
                        }
                        .into())
                    }
                };
                let data = share(r.opaque(MAX_IO)?);
                Args::Write {
                    file,
                    offset,
                    count,
                    stable,
                    data,
                }
            }
            CREATE => {
                let where_ = DirOpArgs3::decode(r)?;
                let how = match r.u32()? {
                    0 => CreateHow3::Unchecked(Sattr3::decode(r)?),
                    1 => CreateHow3::Guarded(Sattr3::decode(r)?),
                    2 => CreateHow3::Exclusive(r.fixed::<VERF_SIZE>()?),
                    value => {
                        return Err(XdrError::BadDiscriminant {
                            what: "createmode3",
                            value,
                        }
                        .into())
                    }
                };
                Args::Create { where_, how }
            }
            MKDIR => Args::Mkdir {
                where_: DirOpArgs3::decode(r)?,
                attr: Sattr3::decode(r)?,
            },
            SYMLINK => Args::Symlink {
                where_: DirOpArgs3::decode(r)?,
                attr: Sattr3::decode(r)?,
                target: r.opaque(MAX_PATH)?.to_vec(),
            },
            MKNOD => {
                let where_ = DirOpArgs3::decode(r)?;
                let ftype = FType3::from_u32(r.u32()?)?;
                Args::Mknod {
                    where_,
                    what: attr_or_type(ftype, r)?,
                }
            }
            REMOVE => Args::Remove(DirOpArgs3::decode(r)?),
            RMDIR => Args::Rmdir(DirOpArgs3::decode(r)?),
            RENAME => Args::Rename {
                from: DirOpArgs3::decode(r)?,
                to: DirOpArgs3::decode(r)?,
            },
            LINK => Args::Link {
                file: fh(r)?,
                link: DirOpArgs3::decode(r)?,
            },
            READDIR => Args::ReadDir {
                dir: fh(r)?,
                cookie: r.u64()?,
                verf: r.fixed::<VERF_SIZE>()?,
                count: r.u32()?,
            },
            READDIRPLUS => Args::ReadDirPlus {
                dir: fh(r)?,
                cookie: r.u64()?,
                verf: r.fixed::<VERF_SIZE>()?,
                dircount: r.u32()?,
                maxcount: r.u32()?,
            },
            FSSTAT => Args::FsStat(fh(r)?),
            FSINFO => Args::FsInfo(fh(r)?),
            PATHCONF => Args::PathConf(fh(r)?),
            COMMIT => Args::Commit {
                file: fh(r)?,
                offset: r.u64()?,
                count: r.u32()?,
            },
            other => return Err(ArgsError::NoSuchProc(other)),
        };
        r.finish()?;
        Ok(a)
    }

    /// The procedure number of these arguments.
    pub fn proc_num(&self) -> u32 {
        use procs::*;
        match self {
            Args::Null => NULL,
            Args::GetAttr(_) => GETATTR,
            Args::SetAttr { .. } => SETATTR,
            Args::Lookup(_) => LOOKUP,
            Args::Access { .. } => ACCESS,
            Args::ReadLink(_) => READLINK,
            Args::Read { .. } => READ,
            Args::Write { .. } => WRITE,
            Args::Create { .. } => CREATE,
            Args::Mkdir { .. } => MKDIR,
            Args::Symlink { .. } => SYMLINK,
            Args::Mknod { .. } => MKNOD,
            Args::Remove(_) => REMOVE,
            Args::Rmdir(_) => RMDIR,
            Args::Rename { .. } => RENAME,
            Args::Link { .. } => LINK,
            Args::ReadDir { .. } => READDIR,
            Args::ReadDirPlus { .. } => READDIRPLUS,
            Args::FsStat(_) => FSSTAT,
            Args::FsInfo(_) => FSINFO,
            Args::PathConf(_) => PATHCONF,
            Args::Commit { .. } => COMMIT,
        }
    }
}

impl XdrEncode for Args {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Args::Null => {}
            Args::GetAttr(f)
            | Args::ReadLink(f)
            | Args::FsStat(f)
            | Args::FsInfo(f)
            | Args::PathConf(f) => f.encode(w),
            Args::SetAttr { obj, attr, guard } => {
                obj.encode(w);
                attr.encode(w);
                match guard {
                    Some(t) => {
                        w.bool(true);
                        t.encode(w);
                    }
                    None => {
                        w.bool(false);
                    }
                }
            }
            Args::Lookup(d) | Args::Remove(d) | Args::Rmdir(d) => d.encode(w),
            Args::Access { obj, access } => {
                obj.encode(w);
                w.u32(*access);
            }
            Args::Read {
                file,
                offset,
                count,
            }
            | Args::Commit {
                file,
                offset,
                count,
            } => {
                file.encode(w);
                w.u64(*offset).u32(*count);
            }
            Args::Write {
                file,
                offset,
                count,
                stable,
                data,
            } => {
                file.encode(w);
                w.u64(*offset).u32(*count).u32(*stable as u32).opaque(data);
            }
            Args::Create { where_, how } => {
                where_.encode(w);
                match how {
                    CreateHow3::Unchecked(a) => {
                        w.u32(0);
                        a.encode(w);
                    }
                    CreateHow3::Guarded(a) => {
                        w.u32(1);
                        a.encode(w);
                    }
                    CreateHow3::Exclusive(v) => {
                        w.u32(2).fixed(v);
                    }
                }
            }
            Args::Mkdir { where_, attr } => {
                where_.encode(w);
                attr.encode(w);
            }
            Args::Symlink {
                where_,
                attr,
                target,
            } => {
                where_.encode(w);
                attr.encode(w);
                w.opaque(target);
            }
            Args::Mknod { where_, what } => {
                where_.encode(w);
                match what {
                    MknodData3::Device { ftype, attr, spec } => {
                        w.u32(*ftype as u32);
                        attr.encode(w);
                        w.u32(spec.0).u32(spec.1);
                    }
                    MknodData3::Special { ftype, attr } => {
                        w.u32(*ftype as u32);
                        attr.encode(w);
                    }
                    MknodData3::Other(t) => {
                        w.u32(*t as u32);
                    }
                }
            }
            Args::Rename { from, to } => {
                from.encode(w);
                to.encode(w);
            }
            Args::Link { file, link } => {
                file.encode(w);
                link.encode(w);
            }
            Args::ReadDir {
                dir,
                cookie,
                verf,
                count,
            } => {
                dir.encode(w);
                w.u64(*cookie).fixed(verf).u32(*count);
            }
            Args::ReadDirPlus {
                dir,
                cookie,
                verf,
                dircount,
                maxcount,
            } => {
                dir.encode(w);
                w.u64(*cookie).fixed(verf).u32(*dircount).u32(*maxcount);
            }
        }
    }
}

/// A procedure result: `nfsstat3` followed by the ok or the fail body. Handlers produce one of
/// these; nothing else writes a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Res<O, F> {
    /// NFS3_OK and the ok body.
    Ok(O),
    /// An error status and the fail body.
    Fail(NfsStat3, F),
}

impl<O: XdrEncode, F: XdrEncode> XdrEncode for Res<O, F> {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Res::Ok(o) => {
                w.u32(NfsStat3::Ok as u32);
                o.encode(w);
            }
            Res::Fail(s, f) => {
                w.u32(*s as u32);
                f.encode(w);
            }
        }
    }
}

/// An encoder for the unit body.
impl XdrEncode for () {
    fn encode(&self, _w: &mut XdrWriter) {}
}

/// A result body given as already-encoded XDR (handlers with many fields build it inline).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw(pub Vec<u8>);
impl XdrEncode for Raw {
    fn encode(&self, w: &mut XdrWriter) {
        w.fixed(&self.0);
    }
}

/// ACCESS3 bits (RFC 1813 §3.3.4).
pub mod access {
    #![allow(missing_docs)]
    pub const READ: u32 = 0x0001;
    pub const LOOKUP: u32 = 0x0002;
    pub const MODIFY: u32 = 0x0004;
    pub const EXTEND: u32 = 0x0008;
    pub const DELETE: u32 = 0x0010;
    pub const EXECUTE: u32 = 0x0020;
}

/// FSINFO properties bits.
pub mod fsf {
    #![allow(missing_docs)]
    pub const LINK: u32 = 0x0001;
    pub const SYMLINK: u32 = 0x0002;
    pub const HOMOGENEOUS: u32 = 0x0008;
    pub const CANSETTIME: u32 = 0x0010;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh() -> NfsFh3 {
        NfsFh3(vec![1; 20])
    }
    fn dir(n: &str) -> DirOpArgs3 {
        DirOpArgs3 {
            dir: fh(),
            name: n.as_bytes().to_vec(),
        }
    }

    #[test]
    fn every_procedure_round_trips() {
        let attr = Sattr3 {
            mode: Some(0o644),
            uid: None,
            gid: Some(5),
            size: Some(9),
            atime: SetTime::ServerTime,
            mtime: SetTime::ClientTime(NfsTime3 {
                seconds: 1,
                nseconds: 2,
            }),
        };
        let all = vec![
            Args::Null,
            Args::GetAttr(fh()),
            Args::SetAttr {
                obj: fh(),
                attr,
                guard: Some(NfsTime3::default()),
            },
            Args::Lookup(dir("a")),
            Args::Access {
                obj: fh(),
                access: 0x3f,
            },
            Args::ReadLink(fh()),
            Args::Read {
                file: fh(),
                offset: 1 << 40,
                count: 4096,
            },
            Args::Write {
                file: fh(),
                offset: 3,
                count: 3,
                stable: StableHow::DataSync,
                data: b"abc".to_vec().into(),
            },
            Args::Create {
                where_: dir("c"),
                how: CreateHow3::Exclusive(*b"12345678"),
            },
            Args::Create {
                where_: dir("c"),
                how: CreateHow3::Guarded(attr),
            },
            Args::Mkdir {
                where_: dir("d"),
                attr,
            },
            Args::Symlink {
                where_: dir("l"),
                attr,
                target: b"../x".to_vec(),
            },
            Args::Mknod {
                where_: dir("n"),
                what: MknodData3::Device {
                    ftype: FType3::Chr,
                    attr,
                    spec: (1, 3),
                },
            },
            Args::Mknod {
                where_: dir("f"),
                what: MknodData3::Special {
                    ftype: FType3::Fifo,
                    attr,
                },
            },
            Args::Remove(dir("r")),
            Args::Rmdir(dir("r")),
            Args::Rename {
                from: dir("a"),
                to: dir("b"),
            },
            Args::Link {
                file: fh(),
                link: dir("h"),
            },
            Args::ReadDir {
                dir: fh(),
                cookie: 5,
                verf: [0; 8],
                count: 4096,
            },
            Args::ReadDirPlus {
                dir: fh(),
                cookie: 5,
                verf: [1; 8],
                dircount: 512,
                maxcount: 8192,
            },
            Args::FsStat(fh()),
            Args::FsInfo(fh()),
            Args::PathConf(fh()),
            Args::Commit {
                file: fh(),
                offset: 0,
                count: 0,
            },
        ];
        for a in all {
            let b = a.to_bytes();
            assert_eq!(Args::decode(a.proc_num(), &b).unwrap(), a, "{a:?}");
            // Every strict prefix is refused (RFC 1813 args have no optional tail).
            if !b.is_empty() {
                assert!(Args::decode(a.proc_num(), &b[..b.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn unknown_procedure_and_oversized_handle() {
        assert_eq!(Args::decode(22, &[]), Err(ArgsError::NoSuchProc(22)));
        let mut w = XdrWriter::new();
        w.opaque(&[0u8; 65]);
        assert!(matches!(
            Args::decode(procs::GETATTR, w.as_slice()),
            Err(ArgsError::Garbage(XdrError::TooLong { len: 65, max: 64 }))
        ));
    }
}
