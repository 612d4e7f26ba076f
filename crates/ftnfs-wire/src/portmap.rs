//! Portmapper version 2 (RFC 1833 §3) and rpcbind version 3 (§2, for IPv6 netids): just what
//! a server needs to register itself, and to find a client's program (NLM callbacks, NSM
//! notifications) — by GETPORT over IPv4, by GETADDR with the `udp6` netid over IPv6 (a
//! host's IPv4 and IPv6 listeners of one program may have different ports).

use crate::rpc::{CallHeader, Xid};
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

/// A call to the portmapper (`vers` 2 or 3) with AUTH_NONE, ready for its arguments.
fn call_header(xid: Xid, vers: u32, proc_: u32) -> XdrWriter {
    let mut w = XdrWriter::new();
    CallHeader::auth_none(xid, PROGRAM, vers, proc_).encode(&mut w);
    w
}

/// Encodes a SET or UNSET call.
pub fn encode_call(xid: Xid, proc_: u32, m: Mapping) -> Vec<u8> {
    let mut w = call_header(xid, VERSION, proc_);
    w.u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port);
    w.into_inner()
}

/// rpcbind version 3: SET and UNSET by netid and universal address (IPv6 needs them).
pub const RPCB_VERSION: u32 = 3;
/// PMAPPROC_GETPORT (version 2).
pub const PROC_GETPORT: u32 = 3;
/// RPCBPROC_GETADDR (version 3): the universal address of a program for a netid.
pub const RPCBPROC_GETADDR: u32 = 3;

/// Encodes an rpcbind v3 SET or UNSET call (`rpcb`: program, version, netid such as
/// `tcp6`, universal address, owner). UNSET ignores the address.
pub fn encode_rpcb_call(
    xid: Xid,
    proc_: u32,
    (prog, vers): (u32, u32),
    netid: &str,
    uaddr: &str,
    owner: &str,
) -> Vec<u8> {
    let mut w = call_header(xid, RPCB_VERSION, proc_);
    w.u32(prog).u32(vers);
    w.opaque(netid.as_bytes())
        .opaque(uaddr.as_bytes())
        .opaque(owner.as_bytes());
    w.into_inner()
}

/// The universal address of `ip` and `port` (RFC 5665 §5.2.3.3): `::.8.1` is port 2049 of
/// every IPv6 address.
pub fn universal_address(ip: std::net::IpAddr, port: u16) -> String {
    format!("{ip}.{}.{}", port >> 8, port & 0xff)
}

/// The address and port of a universal address (`fd99::100.3.235`, `10.0.0.1.0.111`); `None`
/// for an empty one (not registered) or one that does not parse.
pub fn parse_universal_address(u: &str) -> Option<(std::net::IpAddr, u16)> {
    let (rest, lo) = u.rsplit_once('.')?;
    let (ip, hi) = rest.rsplit_once('.')?;
    let (hi, lo): (u8, u8) = (hi.parse().ok()?, lo.parse().ok()?);
    Some((ip.parse().ok()?, u16::from(hi) << 8 | u16::from(lo)))
}

/// The port in a GETADDR reply's body (a universal address; 0: the program is not
/// registered for that netid).
pub fn decode_getaddr_reply(body: &[u8]) -> Result<u16, crate::xdr::XdrError> {
    let u = crate::xdr::XdrReader::new(body).opaque(256)?;
    Ok(std::str::from_utf8(u)
        .ok()
        .and_then(parse_universal_address)
        .map_or(0, |(_, p)| p))
}

/// The port in a GETPORT reply's body (0: not registered); a port past 65535 is none.
pub fn decode_getport_reply(body: &[u8]) -> Result<u16, crate::xdr::XdrError> {
    let p = crate::xdr::XdrReader::new(body).u32()?;
    Ok(u16::try_from(p).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getaddr_and_getport_replies_name_the_port() {
        let mut w = crate::xdr::XdrWriter::new();
        w.opaque(b"fd99::7.3.235");
        assert_eq!(decode_getaddr_reply(w.as_slice()).unwrap(), 1003);
        let mut w = crate::xdr::XdrWriter::new();
        w.opaque(b"");
        assert_eq!(
            decode_getaddr_reply(w.as_slice()).unwrap(),
            0,
            "not registered"
        );
        assert!(decode_getaddr_reply(&[0, 0, 1]).is_err());
        assert_eq!(decode_getport_reply(&[0, 0, 8, 1]).unwrap(), 2049);
        assert_eq!(
            decode_getport_reply(&[0, 1, 0, 0]).unwrap(),
            0,
            "past 65535"
        );
        assert!(decode_getport_reply(&[0]).is_err());
    }

    #[test]
    fn universal_addresses_parse_back() {
        for (ip, port) in [("fd99::100", 1003u16), ("10.0.0.1", 111), ("::", 2049)] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let u = universal_address(ip, port);
            assert_eq!(parse_universal_address(&u), Some((ip, port)), "{u}");
        }
        for bad in ["", "fd99::100", "fd99::100.3", "10.0.0.1.256.1", "x.1.2"] {
            assert_eq!(parse_universal_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn universal_addresses_and_an_rpcb_call() {
        assert_eq!(universal_address("::".parse().unwrap(), 2049), "::.8.1");
        assert_eq!(
            universal_address("10.0.0.1".parse().unwrap(), 111),
            "10.0.0.1.0.111"
        );
        let c = encode_rpcb_call(Xid(7), PROC_SET, (100003, 3), "tcp6", "::.8.1", "superuser");
        // after the 40-byte call header: prog, vers, then three strings
        assert_eq!(&c[40..48], &[0, 1, 0x86, 0xa3, 0, 0, 0, 3]);
        assert_eq!(&c[48..56], &[0, 0, 0, 4, b't', b'c', b'p', b'6']);
        assert_eq!(&c[12..16], &PROGRAM.to_be_bytes());
        assert_eq!(&c[16..20], &RPCB_VERSION.to_be_bytes());
    }
}
