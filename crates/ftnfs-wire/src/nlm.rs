//! NLM, the Network Lock Manager protocol, version 4 (RFC 1813 Appendix II; X/Open XNFS
//! chapter 10): the byte-range locks of NFSv3 clients (issue 14). Program 100021; the Linux
//! client speaks version 4 with NFSv3 (versions 1 and 3, for NFSv2, carry 32-bit ranges and
//! are not decoded here).
//!
//! Every call's arguments and every result, bounded: strings and `netobj`s at
//! `LM_MAXSTRLEN` (1024) bytes. The asynchronous `_MSG` procedures carry the same arguments
//! as their synchronous forms and the `_RES` procedures carry a result as their argument
//! (the server calls back `GRANTED`/`GRANTED_MSG` with [`TestArgs`]).

use crate::xdr::{XdrEncode, XdrError, XdrReader, XdrWriter};

/// Program number of NLM.
pub const PROGRAM: u32 = 100021;
/// The version decoded here.
pub const VERSION: u32 = 4;
/// Longest `caller_name`, `netobj` (cookie, handle, owner) accepted.
pub const LM_MAXSTRLEN: u32 = 1024;

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

impl Lock {
    fn decode(r: &mut XdrReader<'_>) -> Result<Lock, XdrError> {
        Ok(Lock {
            caller_name: r.opaque(LM_MAXSTRLEN)?.to_vec(),
            fh: r.opaque(LM_MAXSTRLEN)?.to_vec(),
            oh: r.opaque(LM_MAXSTRLEN)?.to_vec(),
            svid: r.i32()?,
            offset: r.u64()?,
            len: r.u64()?,
        })
    }
}

impl XdrEncode for Lock {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.caller_name)
            .opaque(&self.fh)
            .opaque(&self.oh)
            .i32(self.svid)
            .u64(self.offset)
            .u64(self.len);
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

impl XdrEncode for Holder {
    fn encode(&self, w: &mut XdrWriter) {
        w.bool(self.exclusive)
            .i32(self.svid)
            .opaque(&self.oh)
            .u64(self.offset)
            .u64(self.len);
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

impl XdrEncode for TestArgs {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.cookie).bool(self.exclusive);
        self.alock.encode(w);
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

impl XdrEncode for Res {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.cookie).u32(self.stat as u32);
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

impl XdrEncode for TestRes {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.cookie).u32(self.stat as u32);
        if self.stat == Stat::Denied {
            match &self.holder {
                Some(h) => h.encode(w),
                None => Holder {
                    exclusive: true,
                    svid: 0,
                    oh: vec![],
                    offset: 0,
                    len: 0,
                }
                .encode(w),
            }
        }
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

impl XdrEncode for ShareRes {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.cookie)
            .u32(self.stat as u32)
            .i32(self.sequence);
    }
}

fn cookie(r: &mut XdrReader<'_>) -> Result<Vec<u8>, XdrError> {
    Ok(r.opaque(LM_MAXSTRLEN)?.to_vec())
}

fn lock_args(r: &mut XdrReader<'_>) -> Result<LockArgs, XdrError> {
    Ok(LockArgs {
        cookie: cookie(r)?,
        block: r.bool()?,
        exclusive: r.bool()?,
        alock: Lock::decode(r)?,
        reclaim: r.bool()?,
        state: r.i32()?,
    })
}

fn test_args(r: &mut XdrReader<'_>) -> Result<TestArgs, XdrError> {
    Ok(TestArgs {
        cookie: cookie(r)?,
        exclusive: r.bool()?,
        alock: Lock::decode(r)?,
    })
}

impl Args {
    /// Decodes the arguments of procedure `proc_` (version 4); `None` for a procedure that
    /// does not exist.
    pub fn decode(proc_: u32, buf: &[u8]) -> Result<Option<Args>, XdrError> {
        use procs::*;
        let mut r = XdrReader::new(buf);
        let a = match proc_ {
            NULL => Args::Null,
            TEST | TEST_MSG | GRANTED | GRANTED_MSG => Args::Test(test_args(&mut r)?),
            LOCK | LOCK_MSG => Args::Lock(lock_args(&mut r)?),
            NM_LOCK => Args::NmLock(lock_args(&mut r)?),
            CANCEL | CANCEL_MSG => Args::Cancel(CancArgs {
                cookie: cookie(&mut r)?,
                block: r.bool()?,
                exclusive: r.bool()?,
                alock: Lock::decode(&mut r)?,
            }),
            UNLOCK | UNLOCK_MSG => Args::Unlock(UnlockArgs {
                cookie: cookie(&mut r)?,
                alock: Lock::decode(&mut r)?,
            }),
            LOCK_RES | CANCEL_RES | UNLOCK_RES | GRANTED_RES => Args::Res(Res {
                cookie: cookie(&mut r)?,
                stat: Stat::decode(r.u32()?)?,
            }),
            TEST_RES => {
                let cookie = cookie(&mut r)?;
                let stat = Stat::decode(r.u32()?)?;
                let holder = if stat == Stat::Denied {
                    Some(Holder {
                        exclusive: r.bool()?,
                        svid: r.i32()?,
                        oh: r.opaque(LM_MAXSTRLEN)?.to_vec(),
                        offset: r.u64()?,
                        len: r.u64()?,
                    })
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

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
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
