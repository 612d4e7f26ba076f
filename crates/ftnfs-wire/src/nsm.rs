//! NSM, the network status monitor (program 100024, version 1; X/Open XNFS): what a lock
//! server needs of it — a rebooted client's status monitor sends `SM_NOTIFY` to every server
//! it held locks with, and the server frees that client's locks.

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
        let mut r = XdrReader::new(buf);
        let s = StatChange {
            mon_name: r.opaque(SM_MAXSTRLEN)?.to_vec(),
            state: r.i32()?,
        };
        r.finish()?;
        Ok(s)
    }
}

impl XdrEncode for StatChange {
    fn encode(&self, w: &mut XdrWriter) {
        w.opaque(&self.mon_name).i32(self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
