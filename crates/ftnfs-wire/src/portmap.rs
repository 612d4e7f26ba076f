//! Portmapper version 2 (RFC 1833 §3): just what a server needs to register itself.

use crate::rpc::{CallHeader, OpaqueAuth, Xid, AUTH_NONE};
use crate::xdr::XdrWriter;

/// Program number of the portmapper.
pub const PROGRAM: u32 = 100000;
/// Version 2.
pub const VERSION: u32 = 2;
/// PMAPPROC_SET.
pub const PROC_SET: u32 = 1;
/// PMAPPROC_UNSET.
pub const PROC_UNSET: u32 = 2;
/// IPPROTO_TCP.
pub const IPPROTO_TCP: u32 = 6;
/// IPPROTO_UDP.
pub const IPPROTO_UDP: u32 = 17;

/// A `mapping` (prog, vers, prot, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Program.
    pub prog: u32,
    /// Version.
    pub vers: u32,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub prot: u32,
    /// Port (ignored by UNSET).
    pub port: u32,
}

/// Encodes a SET or UNSET call.
pub fn encode_call(xid: Xid, proc_: u32, m: Mapping) -> Vec<u8> {
    let mut w = XdrWriter::new();
    CallHeader {
        xid,
        rpcvers: 2,
        prog: PROGRAM,
        vers: VERSION,
        proc_,
        cred: OpaqueAuth {
            flavor: 0,
            body: &[],
        },
        verf: AUTH_NONE,
    }
    .encode(&mut w);
    w.u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port);
    w.into_inner()
}
