//! NLM, the Network Lock Manager protocol (RFC 1813 Appendix II; X/Open XNFS chapters 9
//! and 10): the byte-range locks of NFS clients (issue 14). Program 100021. Version 4 is
//! NFSv3's and the one the Linux client speaks; versions 1 and 3 (NFSv2's: 32-bit unsigned
//! ranges, five statuses; 3 adds SHARE, UNSHARE, NM_LOCK and FREE_ALL) are decoded into
//! the same types ([`Args::decode_version`]) and their results encoded back in their own
//! form (the `encode_version` methods), so everything above the wire sees version 4 only.
//!
//! Every call's arguments and every result, bounded: strings and `netobj`s at
//! `LM_MAXSTRLEN` (1024) bytes. The asynchronous `_MSG` procedures carry the same arguments
//! as their synchronous forms and the `_RES` procedures carry a result as their argument
//! (the server calls back `GRANTED`/`GRANTED_MSG` with [`TestArgs`]).

use crate::xdr::{XdrEncode, XdrError, XdrReader, XdrWriter};

/// Program number of NLM.
pub const PROGRAM: u32 = 100021;
/// The version of NFSv3 clients (64-bit ranges), the one everything above the wire speaks.
pub const VERSION: u32 = 4;
/// Every version served: 1 and 3 (NFSv2's, 32-bit ranges) and 4.
pub const VERSIONS: [u32; 3] = [1, 3, VERSION];

/// Longest `caller_name`, `netobj` (cookie, handle, owner) accepted.
pub const LM_MAXSTRLEN: u32 = 1024;

/// A version's ranges are 32-bit (1 and 3) rather than 64-bit (4).
fn narrow(vers: u32) -> bool {
    vers < VERSION
}

/// A 64-bit range as versions 1 and 3 carry it (unsigned 32-bit offset and length, 0: to
/// the end of the file): an offset past 32 bits is cut to the largest, a range reaching past
/// 32 bits runs to the end.
pub fn range32(offset: u64, len: u64) -> (u32, u32) {
    let off = u32::try_from(offset).unwrap_or(u32::MAX);
    let fits = len != 0 && offset.checked_add(len).is_some_and(|end| end <= 1 << 32);
    (off, if fits { len as u32 } else { 0 })
}

/// Procedure numbers (version 4).
pub mod procs {
    #![allow(missing_docs)]
    pub const NULL: u32 = 0;
    pub const TEST: u32 = 1;
    pub const LOCK: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const UNLOCK: u32 = 4;
    pub const GRANTED: u32 = 5;
    pub const TEST_MSG: u32 = 6;
    pub const LOCK_MSG: u32 = 7;
    pub const CANCEL_MSG: u32 = 8;
    pub const UNLOCK_MSG: u32 = 9;
    pub const GRANTED_MSG: u32 = 10;
    pub const TEST_RES: u32 = 11;
    pub const LOCK_RES: u32 = 12;
    pub const CANCEL_RES: u32 = 13;
    pub const UNLOCK_RES: u32 = 14;
    pub const GRANTED_RES: u32 = 15;
    pub const SHARE: u32 = 20;
    pub const UNSHARE: u32 = 21;
    pub const NM_LOCK: u32 = 22;
    pub const FREE_ALL: u32 = 23;
}

/// nlm4_stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum Stat {
    Granted = 0,
    Denied = 1,
    DeniedNoLocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    Deadlck = 5,
    Rofs = 6,
    StaleFh = 7,
    Fbig = 8,
    Failed = 9,
}

impl Stat {
    /// The status as version `vers` carries it: versions 1 and 3 know only the first five
    /// (as lockd does: a deadlock is a denial, any other failure "no locks").
    pub fn for_version(self, vers: u32) -> u32 {
        match self {
            _ if !narrow(vers) => self as u32,
            Stat::Granted
            | Stat::Denied
            | Stat::DeniedNoLocks
            | Stat::Blocked
            | Stat::DeniedGracePeriod => self as u32,
            Stat::Deadlck => Stat::Denied as u32,
            Stat::Rofs | Stat::StaleFh | Stat::Fbig | Stat::Failed => Stat::DeniedNoLocks as u32,
        }
    }

    fn decode(v: u32) -> Result<Stat, XdrError> {
        Ok(match v {
            0 => Stat::Granted,
            1 => Stat::Denied,
            2 => Stat::DeniedNoLocks,
            3 => Stat::Blocked,
            4 => Stat::DeniedGracePeriod,
            5 => Stat::Deadlck,
            6 => Stat::Rofs,
            7 => Stat::StaleFh,
            8 => Stat::Fbig,
            9 => Stat::Failed,
            value => {
                return Err(XdrError::BadDiscriminant {
                    what: "nlm4_stats",
                    value,
                })
            }
        })
    }
}

/// nlm4_lock: who locks which range of which file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The client host's name.
    pub caller_name: Vec<u8>,
    /// The file's NFSv3 handle.
    pub fh: Vec<u8>,
    /// The owner handle.
    pub oh: Vec<u8>,
    /// The owner's process id.
    pub svid: i32,
    /// First byte.
    pub offset: u64,
    /// Length (0: to the end of the file).
    pub len: u64,
}

/// An offset and a length in version `vers`'s width.
fn range(r: &mut XdrReader<'_>, vers: u32) -> Result<(u64, u64), XdrError> {
    if narrow(vers) {
        Ok((r.u32()?.into(), r.u32()?.into()))
    } else {
        Ok((r.u64()?, r.u64()?))
    }
}

fn put_range(w: &mut XdrWriter, vers: u32, offset: u64, len: u64) {
    if narrow(vers) {
        let (o, l) = range32(offset, len);
        w.u32(o).u32(l);
    } else {
        w.u64(offset).u64(len);
    }
}

impl Lock {
    fn decode(r: &mut XdrReader<'_>, vers: u32) -> Result<Lock, XdrError> {
        let caller_name = r.opaque(LM_MAXSTRLEN)?.to_vec();
        let fh = r.opaque(LM_MAXSTRLEN)?.to_vec();
        let oh = r.opaque(LM_MAXSTRLEN)?.to_vec();
        let svid = r.i32()?;
        let (offset, len) = range(r, vers)?;
        Ok(Lock {
            caller_name,
            fh,
            oh,
            svid,
            offset,
            len,
        })
    }

    /// Appends its XDR in version `vers`.
    pub fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.opaque(&self.caller_name)
            .opaque(&self.fh)
            .opaque(&self.oh)
            .i32(self.svid);
        put_range(w, vers, self.offset, self.len);
    }
}

impl XdrEncode for Lock {
    fn encode(&self, w: &mut XdrWriter) {
        self.encode_version(VERSION, w)
    }
}

/// nlm4_holder: the lock a TEST found in the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Exclusive or shared.
    pub exclusive: bool,
    /// Its owner's process id.
    pub svid: i32,
    /// Its owner handle.
    pub oh: Vec<u8>,
    /// First byte.
    pub offset: u64,
    /// Length (0: to the end of the file).
    pub len: u64,
}

impl Holder {
    fn decode(r: &mut XdrReader<'_>, vers: u32) -> Result<Holder, XdrError> {
        let exclusive = r.bool()?;
        let svid = r.i32()?;
        let oh = r.opaque(LM_MAXSTRLEN)?.to_vec();
        let (offset, len) = range(r, vers)?;
        Ok(Holder {
            exclusive,
            svid,
            oh,
            offset,
            len,
        })
    }

    fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.bool(self.exclusive).i32(self.svid).opaque(&self.oh);
        put_range(w, vers, self.offset, self.len);
    }
}

/// The arguments of one NLM v4 call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// NULL.
    Null,
    /// TEST, TEST_MSG; also what GRANTED and GRANTED_MSG carry.
    Test(TestArgs),
    /// LOCK, LOCK_MSG.
    Lock(LockArgs),
    /// CANCEL, CANCEL_MSG.
    Cancel(CancArgs),
    /// UNLOCK, UNLOCK_MSG.
    Unlock(UnlockArgs),
    /// A `_RES` call: the result of an earlier `_MSG` (LOCK_RES, CANCEL_RES, UNLOCK_RES,
    /// GRANTED_RES).
    Res(Res),
    /// TEST_RES.
    TestRes(TestRes),
    /// SHARE, UNSHARE.
    Share(ShareArgs),
    /// NM_LOCK (a lock from a client that does not monitor: the same arguments as LOCK).
    NmLock(LockArgs),
    /// FREE_ALL: drop every lock of a host.
    FreeAll(Notify),
}

/// nlm4_testargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestArgs {
    /// Echoed in the result.
    pub cookie: Vec<u8>,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// The lock.
    pub alock: Lock,
}

impl TestArgs {
    /// Appends its XDR in version `vers` (a GRANTED callback to a version 1 or 3 client).
    pub fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.opaque(&self.cookie).bool(self.exclusive);
        self.alock.encode_version(vers, w);
    }
}

impl XdrEncode for TestArgs {
    fn encode(&self, w: &mut XdrWriter) {
        self.encode_version(VERSION, w)
    }
}

/// nlm4_lockargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockArgs {
    /// Echoed in the result.
    pub cookie: Vec<u8>,
    /// Wait for a conflicting lock to go (the server answers BLOCKED and calls GRANTED).
    pub block: bool,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// The lock.
    pub alock: Lock,
    /// A reclaim during the grace period.
    pub reclaim: bool,
    /// The client's NSM state.
    pub state: i32,
}

/// nlm4_cancargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancArgs {
    /// Echoed in the result.
    pub cookie: Vec<u8>,
    /// As in the LOCK it cancels.
    pub block: bool,
    /// As in the LOCK it cancels.
    pub exclusive: bool,
    /// The lock.
    pub alock: Lock,
}

/// nlm4_unlockargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockArgs {
    /// Echoed in the result.
    pub cookie: Vec<u8>,
    /// The range to unlock.
    pub alock: Lock,
}

impl XdrEncode for UnlockArgs {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.cookie);
        self.alock.encode(w);
    }
}

/// nlm4_share + nlm4_shareargs (DOS share reservations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareArgs {
    /// Echoed in the result.
    pub cookie: Vec<u8>,
    /// The client host's name.
    pub caller_name: Vec<u8>,
    /// The file's handle.
    pub fh: Vec<u8>,
    /// The owner handle.
    pub oh: Vec<u8>,
    /// fsh4_mode: what others may not do (0 none, 1 read, 2 write, 3 both).
    pub mode: u32,
    /// fsh4_access: what this owner does (0 none, 1 read, 2 write, 3 both).
    pub access: u32,
    /// A reclaim during the grace period.
    pub reclaim: bool,
}

/// nlm4_notify (FREE_ALL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The host whose locks go.
    pub name: Vec<u8>,
    /// Its NSM state.
    pub state: i32,
}

impl XdrEncode for Notify {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.name).i32(self.state);
    }
}

/// nlm4_res: a cookie and a status (LOCK, CANCEL, UNLOCK, GRANTED results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Res {
    /// The call's cookie.
    pub cookie: Vec<u8>,
    /// What happened.
    pub stat: Stat,
}

impl Res {
    /// Appends its XDR in version `vers`.
    pub fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.opaque(&self.cookie).u32(self.stat.for_version(vers));
    }
}

impl XdrEncode for Res {
    fn encode(&self, w: &mut XdrWriter) {
        self.encode_version(VERSION, w)
    }
}

/// nlm4_testres: a TEST's result (`holder` only with `Denied`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRes {
    /// The call's cookie.
    pub cookie: Vec<u8>,
    /// What happened.
    pub stat: Stat,
    /// The conflicting lock, with `Stat::Denied`.
    pub holder: Option<Holder>,
}

impl TestRes {
    /// Appends its XDR in version `vers`.
    pub fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.opaque(&self.cookie).u32(self.stat.for_version(vers));
        if self.stat == Stat::Denied {
            match &self.holder {
                Some(h) => h.encode_version(vers, w),
                None => Holder {
                    exclusive: true,
                    svid: 0,
                    oh: vec![],
                    offset: 0,
                    len: 0,
                }
                .encode_version(vers, w),
            }
        }
    }
}

impl XdrEncode for TestRes {
    fn encode(&self, w: &mut XdrWriter) {
        self.encode_version(VERSION, w)
    }
}

/// nlm4_shareres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRes {
    /// The call's cookie.
    pub cookie: Vec<u8>,
    /// What happened.
    pub stat: Stat,
    /// Unused (0).
    pub sequence: i32,
}

impl ShareRes {
    /// Appends its XDR in version `vers`.
    pub fn encode_version(&self, vers: u32, w: &mut XdrWriter) {
        w.opaque(&self.cookie)
            .u32(self.stat.for_version(vers))
            .i32(self.sequence);
    }
}

impl XdrEncode for ShareRes {
    fn encode(&self, w: &mut XdrWriter) {
        self.encode_version(VERSION, w)
    }
}

fn cookie(r: &mut XdrReader<'_>) -> Result<Vec<u8>, XdrError> {
    Ok(r.opaque(LM_MAXSTRLEN)?.to_vec())
}

fn lock_args(r: &mut XdrReader<'_>, vers: u32) -> Result<LockArgs, XdrError> {
    Ok(LockArgs {
        cookie: cookie(r)?,
        block: r.bool()?,
        exclusive: r.bool()?,
        alock: Lock::decode(r, vers)?,
        reclaim: r.bool()?,
        state: r.i32()?,
    })
}

fn test_args(r: &mut XdrReader<'_>, vers: u32) -> Result<TestArgs, XdrError> {
    Ok(TestArgs {
        cookie: cookie(r)?,
        exclusive: r.bool()?,
        alock: Lock::decode(r, vers)?,
    })
}

/// Whether version `vers` has procedure `proc_` (SHARE, UNSHARE, NM_LOCK and FREE_ALL came
/// with version 3; 2 is no version of the protocol).
fn has_procedure(vers: u32, proc_: u32) -> bool {
    match vers {
        1 => proc_ <= procs::GRANTED_RES,
        3 | 4 => proc_ <= procs::GRANTED_RES || (procs::SHARE..=procs::FREE_ALL).contains(&proc_),
        _ => false,
    }
}

impl Args {
    /// Decodes the arguments of procedure `proc_` (version 4); `None` for a procedure that
    /// does not exist.
    pub fn decode(proc_: u32, buf: &[u8]) -> Result<Option<Args>, XdrError> {
        Args::decode_version(VERSION, proc_, buf)
    }

    /// Decodes the arguments of procedure `proc_` of version `vers` (1, 3 or 4) into the
    /// version 4 types; `None` for a procedure that version does not have.
    pub fn decode_version(vers: u32, proc_: u32, buf: &[u8]) -> Result<Option<Args>, XdrError> {
        use procs::*;
        if !has_procedure(vers, proc_) {
            return Ok(None);
        }
        let mut r = XdrReader::new(buf);
        let a = match proc_ {
            NULL => Args::Null,
            TEST | TEST_MSG | GRANTED | GRANTED_MSG => Args::Test(test_args(&mut r, vers)?),
            LOCK | LOCK_MSG => Args::Lock(lock_args(&mut r, vers)?),
            NM_LOCK => Args::NmLock(lock_args(&mut r, vers)?),
            CANCEL | CANCEL_MSG => Args::Cancel(CancArgs {
                cookie: cookie(&mut r)?,
                block: r.bool()?,
                exclusive: r.bool()?,
                alock: Lock::decode(&mut r, vers)?,
            }),
            UNLOCK | UNLOCK_MSG => Args::Unlock(UnlockArgs {
                cookie: cookie(&mut r)?,
                alock: Lock::decode(&mut r, vers)?,
            }),
            LOCK_RES | CANCEL_RES | UNLOCK_RES | GRANTED_RES => Args::Res(Res {
                cookie: cookie(&mut r)?,
                stat: Stat::decode(r.u32()?)?,
            }),
            TEST_RES => {
                let cookie = cookie(&mut r)?;
                let stat = Stat::decode(r.u32()?)?;
                let holder = if stat == Stat::Denied {
                    Some(Holder::decode(&mut r, vers)?)
                } else {
                    None
                };
                Args::TestRes(TestRes {
                    cookie,
                    stat,
                    holder,
                })
            }
            SHARE | UNSHARE => Args::Share(ShareArgs {
                cookie: cookie(&mut r)?,
                caller_name: r.opaque(LM_MAXSTRLEN)?.to_vec(),
                fh: r.opaque(LM_MAXSTRLEN)?.to_vec(),
                oh: r.opaque(LM_MAXSTRLEN)?.to_vec(),
                mode: r.u32()?,
                access: r.u32()?,
                reclaim: r.bool()?,
            }),
            FREE_ALL => Args::FreeAll(Notify {
                name: r.opaque(LM_MAXSTRLEN)?.to_vec(),
                state: r.i32()?,
            }),
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(a))
    }
}

/// A call's arguments in version 4 (what a version 1 or 3 call is carried on as: to the
/// secondaries and into the lock log).
impl XdrEncode for Args {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Args::Null => {}
            Args::Test(a) => a.encode(w),
            Args::Lock(a) | Args::NmLock(a) => {
                w.opaque(&a.cookie).bool(a.block).bool(a.exclusive);
                a.alock.encode(w);
                w.bool(a.reclaim).i32(a.state);
            }
            Args::Cancel(a) => {
                w.opaque(&a.cookie).bool(a.block).bool(a.exclusive);
                a.alock.encode(w);
            }
            Args::Unlock(a) => a.encode(w),
            Args::Res(a) => a.encode(w),
            Args::TestRes(a) => a.encode(w),
            Args::Share(a) => {
                w.opaque(&a.cookie)
                    .opaque(&a.caller_name)
                    .opaque(&a.fh)
                    .opaque(&a.oh)
                    .u32(a.mode)
                    .u32(a.access)
                    .bool(a.reclaim);
            }
            Args::FreeAll(a) => a.encode(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock {
            caller_name: b"guest".to_vec(),
            fh: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            oh: b"1234@guest".to_vec(),
            svid: 1234,
            offset: 10,
            len: 0,
        }
    }

    fn lock_call(block: bool) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.opaque(b"ck").bool(block).bool(true);
        lock().encode(&mut w);
        w.bool(false).i32(3);
        w.into_inner()
    }

    #[test]
    fn a_lock_call_decodes() {
        let a = Args::decode(procs::LOCK, &lock_call(true))
            .unwrap()
            .unwrap();
        assert_eq!(
            a,
            Args::Lock(LockArgs {
                cookie: b"ck".to_vec(),
                block: true,
                exclusive: true,
                alock: lock(),
                reclaim: false,
                state: 3,
            })
        );
        // the _MSG form carries the same
        assert_eq!(
            Args::decode(procs::LOCK_MSG, &lock_call(true)).unwrap(),
            Some(a)
        );
    }

    #[test]
    fn test_args_round_trip_as_granted_callbacks_send_them() {
        let t = TestArgs {
            cookie: vec![9; 8],
            exclusive: false,
            alock: lock(),
        };
        let b = t.to_bytes();
        assert_eq!(
            Args::decode(procs::GRANTED, &b).unwrap(),
            Some(Args::Test(t))
        );
    }

    #[test]
    fn results_encode_as_the_xdr_says() {
        let r = Res {
            cookie: vec![7],
            stat: Stat::Blocked,
        };
        assert_eq!(r.to_bytes(), [0, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 3]);
        let denied = TestRes {
            cookie: vec![],
            stat: Stat::Denied,
            holder: Some(Holder {
                exclusive: true,
                svid: 5,
                oh: vec![],
                offset: 1,
                len: 2,
            }),
        };
        let b = denied.to_bytes();
        assert_eq!(b.len(), 4 + 4 + 4 + 4 + 4 + 8 + 8);
        assert_eq!(
            Args::decode(procs::TEST_RES, &b).unwrap(),
            Some(Args::TestRes(denied))
        );
    }

    /// A LOCK of version 1 or 3: 32-bit offset and length.
    fn lock_call_v3(block: bool, offset: u32, len: u32) -> Vec<u8> {
        let l = lock();
        let mut w = XdrWriter::new();
        w.opaque(b"ck").bool(block).bool(true);
        w.opaque(&l.caller_name)
            .opaque(&l.fh)
            .opaque(&l.oh)
            .i32(l.svid)
            .u32(offset)
            .u32(len);
        w.bool(false).i32(3);
        w.into_inner()
    }

    #[test]
    fn a_version_3_lock_reads_as_version_4_and_goes_on_as_version_4() {
        for vers in [1, 3] {
            let a = Args::decode_version(vers, procs::LOCK, &lock_call_v3(true, 10, 0))
                .unwrap()
                .unwrap();
            // the same lock as version 4's, 32 bits widened
            assert_eq!(
                a,
                Args::decode(procs::LOCK, &lock_call(true))
                    .unwrap()
                    .unwrap()
            );
            // carried on in version 4: the same call again
            assert_eq!(Args::decode(procs::LOCK, &a.to_bytes()).unwrap(), Some(a));
        }
        let big = Args::decode_version(3, procs::TEST, &{
            let mut w = XdrWriter::new();
            w.opaque(b"").bool(false);
            let l = lock();
            w.opaque(&l.caller_name).opaque(&l.fh).opaque(&l.oh).i32(1);
            w.u32(u32::MAX).u32(u32::MAX);
            w.into_inner()
        })
        .unwrap()
        .unwrap();
        match big {
            Args::Test(t) => assert_eq!((t.alock.offset, t.alock.len), (0xffff_ffff, 0xffff_ffff)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_version_has_its_own_procedures() {
        let share = {
            let mut w = XdrWriter::new();
            w.opaque(b"c")
                .opaque(b"h")
                .opaque(b"fh")
                .opaque(b"o")
                .u32(1)
                .u32(2)
                .bool(false);
            w.into_inner()
        };
        // SHARE came with version 3; version 2 is no NLM version
        assert_eq!(Args::decode_version(1, procs::SHARE, &share).unwrap(), None);
        assert!(Args::decode_version(3, procs::SHARE, &share)
            .unwrap()
            .is_some());
        assert_eq!(Args::decode_version(2, procs::NULL, &[]).unwrap(), None);
        assert_eq!(Args::decode_version(5, procs::NULL, &[]).unwrap(), None);
        assert_eq!(
            Args::decode_version(1, procs::NULL, &[]).unwrap(),
            Some(Args::Null)
        );
        // every call survives its version 4 form
        let calls = [
            (procs::LOCK, lock_call(false)),
            (procs::NM_LOCK, lock_call(true)),
            (procs::SHARE, share),
            (
                procs::FREE_ALL,
                Notify {
                    name: b"h".to_vec(),
                    state: 7,
                }
                .to_bytes(),
            ),
            (
                procs::UNLOCK,
                UnlockArgs {
                    cookie: vec![1],
                    alock: lock(),
                }
                .to_bytes(),
            ),
            (
                procs::TEST,
                TestArgs {
                    cookie: vec![],
                    exclusive: true,
                    alock: lock(),
                }
                .to_bytes(),
            ),
        ];
        for (p, bytes) in calls {
            let a = Args::decode(p, &bytes).unwrap().unwrap();
            assert_eq!(a.to_bytes(), bytes, "procedure {p}");
        }
        let mut cancel = XdrWriter::new();
        cancel.opaque(b"x").bool(true).bool(false);
        lock().encode(&mut cancel);
        let c = cancel.into_inner();
        assert_eq!(
            Args::decode(procs::CANCEL, &c).unwrap().unwrap().to_bytes(),
            c
        );
    }

    #[test]
    fn version_3_results_carry_five_statuses_and_32_bit_ranges() {
        let w = |r: &dyn Fn(&mut XdrWriter)| {
            let mut w = XdrWriter::new();
            r(&mut w);
            w.into_inner()
        };
        let res = |stat| Res {
            cookie: vec![],
            stat,
        };
        // a deadlock is a denial; what version 3 cannot say is "no locks"
        assert_eq!(
            w(&|x| res(Stat::Deadlck).encode_version(3, x)),
            [0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            w(&|x| res(Stat::StaleFh).encode_version(1, x)),
            [0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            w(&|x| res(Stat::StaleFh).encode_version(4, x)),
            [0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(
            w(&|x| res(Stat::DeniedGracePeriod).encode_version(3, x))[7],
            4
        );
        let denied = TestRes {
            cookie: vec![],
            stat: Stat::Denied,
            holder: Some(Holder {
                exclusive: false,
                svid: 5,
                oh: vec![],
                offset: 100,
                len: 20,
            }),
        };
        let b = w(&|x| denied.encode_version(3, x));
        assert_eq!(b.len(), 4 + 4 + 4 + 4 + 4 + 4 + 4);
        assert_eq!(
            Args::decode_version(3, procs::TEST_RES, &b).unwrap(),
            Some(Args::TestRes(denied))
        );
    }

    #[test]
    fn ranges_past_32_bits_narrow_to_what_covers_them() {
        assert_eq!(range32(10, 20), (10, 20));
        assert_eq!(range32(10, 0), (10, 0));
        // reaches past 4 GiB: to the end of the file
        assert_eq!(range32(10, u64::MAX), (10, 0));
        assert_eq!(range32(0, 1 << 32), (0, 0));
        assert_eq!(range32(0, (1 << 32) - 1), (0, u32::MAX));
        // starts past 4 GiB: the largest offset, to the end
        assert_eq!(range32(1 << 40, 5), (u32::MAX, 0));
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let v3 = lock_call_v3(false, 1, 2);
        for cut in 0..v3.len() {
            assert!(Args::decode_version(3, procs::LOCK, &v3[..cut]).is_err());
        }
        // a version 4 call read as version 3 leaves bytes over
        assert!(Args::decode_version(3, procs::LOCK, &lock_call(false)).is_err());
        let good = lock_call(false);
        for cut in 0..good.len() {
            assert!(
                Args::decode(procs::LOCK, &good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            Args::decode(procs::LOCK, &long),
            Err(XdrError::Trailing(4))
        ));
        let mut huge = XdrWriter::new();
        huge.u32(LM_MAXSTRLEN + 1);
        assert!(matches!(
            Args::decode(procs::LOCK, huge.as_slice()),
            Err(XdrError::TooLong { .. })
        ));
        let mut bad_stat = XdrWriter::new();
        bad_stat.opaque(b"").u32(77);
        assert!(Args::decode(procs::LOCK_RES, bad_stat.as_slice()).is_err());
        assert_eq!(Args::decode(99, &[]).unwrap(), None);
    }
}
