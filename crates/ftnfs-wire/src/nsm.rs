//! NSM, the network status monitor (program 100024, version 1; X/Open XNFS chapter 11):
//! a rebooted client's status monitor sends `SM_NOTIFY` to every server it held locks with,
//! and the server frees that client's locks; a local lock manager asks its monitor to watch
//! a host (`SM_MON`, `SM_UNMON`, `SM_UNMON_ALL`) and to call it back when that host
//! restarts; `SM_STAT` asks for the monitor's state number.

use crate::xdr::{XdrEncode, XdrError, XdrReader, XdrWriter};

/// Program number.
pub const PROGRAM: u32 = 100_024;
/// The only version.
pub const VERSION: u32 = 1;
/// Longest host name (`SM_MAXSTRLEN`).
pub const SM_MAXSTRLEN: u32 = 1024;

/// Procedure numbers.
pub mod procs {
    #![allow(missing_docs)]
    pub const NULL: u32 = 0;
    pub const STAT: u32 = 1;
    pub const MON: u32 = 2;
    pub const UNMON: u32 = 3;
    pub const UNMON_ALL: u32 = 4;
    pub const SIMU_CRASH: u32 = 5;
    pub const NOTIFY: u32 = 6;
}

/// `stat_chge`: the arguments of SM_NOTIFY — a host that restarted and its new state number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatChange {
    /// The host that restarted (its `mon_name`).
    pub mon_name: Vec<u8>,
    /// Its new state number (odd: up).
    pub state: i32,
}

impl StatChange {
    /// Decodes SM_NOTIFY's arguments; the whole of `buf` must be used.
    pub fn decode(buf: &[u8]) -> Result<StatChange, XdrError> {
        XdrReader::whole(buf, |r| {
            Ok(StatChange {
                mon_name: r.opaque(SM_MAXSTRLEN)?.to_vec(),
                state: r.i32()?,
            })
        })
    }
}

impl XdrEncode for StatChange {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.mon_name).i32(self.state);
    }
}

/// `my_id`: the local lock manager that asked, and the procedure it wants called back with
/// a [`Status`] when a monitored host restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyId {
    /// The caller's host name (statd calls back on the local host whatever it says).
    pub my_name: Vec<u8>,
    /// Program to call back.
    pub my_prog: u32,
    /// Its version.
    pub my_vers: u32,
    /// Its procedure.
    pub my_proc: u32,
}

impl MyId {
    fn decode(r: &mut XdrReader<'_>) -> Result<MyId, XdrError> {
        Ok(MyId {
            my_name: r.opaque(SM_MAXSTRLEN)?.to_vec(),
            my_prog: r.u32()?,
            my_vers: r.u32()?,
            my_proc: r.u32()?,
        })
    }

    /// Decodes SM_UNMON_ALL's arguments.
    pub fn decode_all(buf: &[u8]) -> Result<MyId, XdrError> {
        XdrReader::whole(buf, MyId::decode)
    }
}

impl XdrEncode for MyId {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.my_name)
            .u32(self.my_prog)
            .u32(self.my_vers)
            .u32(self.my_proc);
    }
}

/// `mon_id`: a host to watch, and who asked (SM_UNMON's arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonId {
    /// The host to watch.
    pub mon_name: Vec<u8>,
    /// Who asked.
    pub my_id: MyId,
}

impl MonId {
    fn decode(r: &mut XdrReader<'_>) -> Result<MonId, XdrError> {
        Ok(MonId {
            mon_name: r.opaque(SM_MAXSTRLEN)?.to_vec(),
            my_id: MyId::decode(r)?,
        })
    }

    /// Decodes SM_UNMON's arguments.
    pub fn decode_unmon(buf: &[u8]) -> Result<MonId, XdrError> {
        XdrReader::whole(buf, MonId::decode)
    }
}

impl XdrEncode for MonId {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.mon_name);
        self.my_id.encode(w);
    }
}

/// `mon`: SM_MON's arguments — [`MonId`] and 16 bytes handed back in the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mon {
    /// The host and the caller.
    pub mon_id: MonId,
    /// The caller's own bytes.
    pub priv_: [u8; 16],
}

impl Mon {
    /// Decodes SM_MON's arguments.
    pub fn decode(buf: &[u8]) -> Result<Mon, XdrError> {
        XdrReader::whole(buf, |r| {
            Ok(Mon {
                mon_id: MonId::decode(r)?,
                priv_: r.fixed::<16>()?,
            })
        })
    }
}

impl XdrEncode for Mon {
    fn encode(&self, w: &mut XdrWriter) {
        self.mon_id.encode(w);
        w.fixed(&self.priv_);
    }
}

/// Decodes SM_STAT's argument (`sm_name`: a host name).
pub fn decode_sm_name(buf: &[u8]) -> Result<Vec<u8>, XdrError> {
    XdrReader::whole(buf, |r| Ok(r.opaque(SM_MAXSTRLEN)?.to_vec()))
}

/// `res`: whether the monitor will watch the host.
pub const STAT_SUCC: u32 = 0;
/// See [`STAT_SUCC`].
pub const STAT_FAIL: u32 = 1;

/// `sm_stat_res`: SM_STAT's and SM_MON's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatRes {
    /// [`STAT_SUCC`] or [`STAT_FAIL`].
    pub res_stat: u32,
    /// The monitor's state number.
    pub state: i32,
}

impl XdrEncode for StatRes {
    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.res_stat).i32(self.state);
    }
}

/// `status`: the callback to a lock manager that asked to watch `mon_name`, which restarted
/// and is now in `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The host that restarted.
    pub mon_name: Vec<u8>,
    /// Its new state number.
    pub state: i32,
    /// The caller's bytes from its SM_MON.
    pub priv_: [u8; 16],
}

impl Status {
    /// Decodes a callback's arguments.
    pub fn decode(buf: &[u8]) -> Result<Status, XdrError> {
        XdrReader::whole(buf, |r| {
            Ok(Status {
                mon_name: r.opaque(SM_MAXSTRLEN)?.to_vec(),
                state: r.i32()?,
                priv_: r.fixed::<16>()?,
            })
        })
    }
}

impl XdrEncode for Status {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.mon_name).i32(self.state).fixed(&self.priv_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_calls_round_trip_and_bad_ones_are_refused() {
        let m = Mon {
            mon_id: MonId {
                mon_name: b"10.0.0.7".to_vec(),
                my_id: MyId {
                    my_name: b"localhost".to_vec(),
                    my_prog: 100021,
                    my_vers: 4,
                    my_proc: 16,
                },
            },
            priv_: [5; 16],
        };
        let b = m.to_bytes();
        assert_eq!(b.len(), 4 + 8 + 4 + 12 + 12 + 16);
        assert_eq!(Mon::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Mon::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let u = m.mon_id.to_bytes();
        assert_eq!(MonId::decode_unmon(&u).unwrap(), m.mon_id);
        assert!(MonId::decode_unmon(&b).is_err(), "trailing bytes");
        let a = m.mon_id.my_id.to_bytes();
        assert_eq!(MyId::decode_all(&a).unwrap(), m.mon_id.my_id);
        let s = Status {
            mon_name: b"h".to_vec(),
            state: 5,
            priv_: [1; 16],
        };
        assert_eq!(Status::decode(&s.to_bytes()).unwrap(), s);
        let mut w = XdrWriter::new();
        w.opaque(b"host");
        assert_eq!(decode_sm_name(w.as_slice()).unwrap(), b"host");
        assert_eq!(
            StatRes {
                res_stat: STAT_SUCC,
                state: 3
            }
            .to_bytes(),
            [0, 0, 0, 0, 0, 0, 0, 3]
        );
    }

    #[test]
    fn notify_arguments_round_trip_and_bad_ones_are_refused() {
        let s = StatChange {
            mon_name: b"client7".to_vec(),
            state: 3,
        };
        let mut w = XdrWriter::new();
        s.encode(&mut w);
        let b = w.into_inner();
        assert_eq!(StatChange::decode(&b).unwrap(), s);
        for cut in 0..b.len() {
            assert!(StatChange::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(StatChange::decode(&long).is_err(), "trailing bytes");
        let mut w = XdrWriter::new();
        w.opaque(&vec![b'a'; SM_MAXSTRLEN as usize + 1]).i32(1);
        assert!(
            StatChange::decode(&w.into_inner()).is_err(),
            "overlong name"
        );
    }
}
