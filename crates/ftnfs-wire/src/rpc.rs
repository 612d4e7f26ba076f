//! ONC RPC version 2 messages (RFC 5531 §9) and the AUTH_SYS credential (§A).

use crate::xdr::{XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};

/// RPC protocol version we speak.
pub const RPC_VERSION: u32 = 2;
/// Largest opaque_auth body (RFC 5531 §8.2).
pub const MAX_AUTH_BYTES: u32 = 400;
/// Largest AUTH_SYS machine name (RFC 5531 §A).
pub const MAX_MACHINE_NAME: u32 = 255;
/// Largest AUTH_SYS group list (RFC 5531 §A).
pub const MAX_AUTH_GIDS: u32 = 16;

/// auth_flavor values.
pub mod flavor {
    /// AUTH_NONE
    pub const NONE: u32 = 0;
    /// AUTH_SYS (AUTH_UNIX)
    pub const SYS: u32 = 1;
}

/// A transaction id chosen by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Xid(pub u32);

/// `opaque_auth`: a flavor and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueAuth<'a> {
    /// auth_flavor
    pub flavor: u32,
    /// Flavor-specific body, at most 400 bytes.
    pub body: &'a [u8],
}

impl<'a> XdrDecode<'a> for OpaqueAuth<'a> {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        Ok(Self {
            flavor: r.u32()?,
            body: r.opaque(MAX_AUTH_BYTES)?,
        })
    }
}

impl XdrEncode for OpaqueAuth<'_> {
    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.flavor).opaque(self.body);
    }
}

/// AUTH_NONE with an empty body.
pub const AUTH_NONE: OpaqueAuth<'static> = OpaqueAuth {
    flavor: flavor::NONE,
    body: &[],
};

/// The header of a CALL message; the procedure's arguments follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader<'a> {
    /// Transaction id.
    pub xid: Xid,
    /// RPC version; anything but 2 gets RPC_MISMATCH.
    pub rpcvers: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// Credential.
    pub cred: OpaqueAuth<'a>,
    /// Verifier.
    pub verf: OpaqueAuth<'a>,
}

/// What the start of a message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not even an xid and a message type could be read: drop silently.
    Unreadable,
    /// The message is a REPLY, not a CALL: drop it.
    NotACall(Xid),
    /// The call header is malformed after the xid: reply GARBAGE_ARGS is not possible for an
    /// undecodable header, RFC 5531 says nothing better than dropping; we reply GARBAGE_ARGS
    /// when the header up to the procedure number was readable.
    Garbage(Xid),
}

impl CallHeader<'static> {
    /// An RPC v2 call of `(prog, vers, proc_)` with AUTH_NONE credential and verifier (what
    /// a server sends as a client: portmapper registration, NLM callbacks, SM_NOTIFY).
    pub fn auth_none(xid: Xid, prog: u32, vers: u32, proc_: u32) -> Self {
        CallHeader {
            xid,
            rpcvers: 2,
            prog,
            vers,
            proc_,
            cred: AUTH_NONE,
            verf: AUTH_NONE,
        }
    }
}

impl<'a> CallHeader<'a> {
    /// Decodes a call header from the start of a record. On success the reader is positioned
    /// at the procedure's arguments.
    pub fn decode(r: &mut XdrReader<'a>) -> Result<Self, MessageError> {
        let xid = Xid(r.u32().map_err(|_| MessageError::Unreadable)?);
        let mtype = r.u32().map_err(|_| MessageError::Unreadable)?;
        if mtype != 0 {
            return Err(MessageError::NotACall(xid));
        }
        let g = |_| MessageError::Garbage(xid);
        Ok(Self {
            xid,
            rpcvers: r.u32().map_err(g)?,
            prog: r.u32().map_err(g)?,
            vers: r.u32().map_err(g)?,
            proc_: r.u32().map_err(g)?,
            cred: OpaqueAuth::decode(r).map_err(g)?,
            verf: OpaqueAuth::decode(r).map_err(g)?,
        })
    }

    /// Encodes a call header (used by our clients: portmap registration, tests, peers).
    pub fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.xid.0)
            .u32(0)
            .u32(self.rpcvers)
            .u32(self.prog)
            .u32(self.vers)
            .u32(self.proc_);
        self.cred.encode(w);
        self.verf.encode(w);
    }
}

/// A whole call (no record mark) with an AUTH_SYS credential of `cred` and no verifier,
/// followed by `args`: what our clients send (tests, benchmarks).
pub fn sys_call(
    xid: Xid,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: &AuthSys,
    args: &[u8],
) -> Vec<u8> {
    let body = cred.to_bytes();
    let mut w = XdrWriter::new();
    CallHeader {
        cred: OpaqueAuth {
            flavor: flavor::SYS,
            body: &body,
        },
        ..CallHeader::auth_none(xid, prog, vers, proc_)
    }
    .encode(&mut w);
    w.fixed(args);
    w.into_inner()
}

/// accept_stat of an accepted reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    /// Executed; results follow.
    Success,
    /// Program not served here.
    ProgUnavail,
    /// Program served, but not this version: the supported range.
    ProgMismatch {
        /// Lowest version served.
        low: u32,
        /// Highest version served.
        high: u32,
    },
    /// No such procedure.
    ProcUnavail,
    /// Arguments could not be decoded.
    GarbageArgs,
    /// Server-side failure (e.g. out of resources).
    SystemErr,
}

/// auth_stat values (RFC 5531 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AuthStat {
    /// Bad credential (seal broken or unsupported form).
    BadCred = 1,
    /// Client must begin a new session.
    RejectedCred = 2,
    /// Bad verifier.
    BadVerf = 3,
    /// Verifier expired or replayed.
    RejectedVerf = 4,
    /// Rejected for security reasons (e.g. unprivileged source port on a `secure` export).
    TooWeak = 5,
}

/// A REPLY message header; for `Accepted(Success)` the results follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// MSG_ACCEPTED with the given status (verifier AUTH_NONE).
    Accepted(AcceptStat),
    /// MSG_DENIED / RPC_MISMATCH: we speak version 2 only.
    RpcMismatch,
    /// MSG_DENIED / AUTH_ERROR.
    AuthError(AuthStat),
}

impl ReplyHeader {
    /// Writes xid, REPLY and this header.
    pub fn encode(&self, xid: Xid, w: &mut XdrWriter) {
        w.u32(xid.0).u32(1);
        match *self {
            ReplyHeader::Accepted(stat) => {
                w.u32(0);
                AUTH_NONE.encode(w);
                match stat {
                    AcceptStat::Success => w.u32(0),
                    AcceptStat::ProgUnavail => w.u32(1),
                    AcceptStat::ProgMismatch { low, high } => w.u32(2).u32(low).u32(high),
                    AcceptStat::ProcUnavail => w.u32(3),
                    AcceptStat::GarbageArgs => w.u32(4),
                    AcceptStat::SystemErr => w.u32(5),
                };
            }
            ReplyHeader::RpcMismatch => {
                w.u32(1).u32(0).u32(RPC_VERSION).u32(RPC_VERSION);
            }
            ReplyHeader::AuthError(stat) => {
                w.u32(1).u32(1).u32(stat as u32);
            }
        }
    }

    /// Decodes a reply; returns the xid and header, leaving `r` at the results.
    pub fn decode(r: &mut XdrReader<'_>) -> Result<(Xid, ReplyHeader), XdrError> {
        let xid = Xid(r.u32()?);
        let mtype = r.u32()?;
        if mtype != 1 {
            return Err(XdrError::BadDiscriminant {
                what: "msg_type",
                value: mtype,
            });
        }
        let h = match r.u32()? {
            0 => {
                OpaqueAuth::decode(r)?;
                ReplyHeader::Accepted(match r.u32()? {
                    0 => AcceptStat::Success,
                    1 => AcceptStat::ProgUnavail,
                    2 => AcceptStat::ProgMismatch {
                        low: r.u32()?,
                        high: r.u32()?,
                    },
                    3 => AcceptStat::ProcUnavail,
                    4 => AcceptStat::GarbageArgs,
                    5 => AcceptStat::SystemErr,
                    v => {
                        return Err(XdrError::BadDiscriminant {
                            what: "accept_stat",
                            value: v,
                        })
                    }
                })
            }
            1 => match r.u32()? {
                0 => {
                    r.u32()?;
                    r.u32()?;
                    ReplyHeader::RpcMismatch
                }
                1 => ReplyHeader::AuthError(match r.u32()? {
                    1 => AuthStat::BadCred,
                    2 => AuthStat::RejectedCred,
                    3 => AuthStat::BadVerf,
                    4 => AuthStat::RejectedVerf,
                    _ => AuthStat::TooWeak,
                }),
                v => {
                    return Err(XdrError::BadDiscriminant {
                        what: "reject_stat",
                        value: v,
                    })
                }
            },
            v => {
                return Err(XdrError::BadDiscriminant {
                    what: "reply_stat",
                    value: v,
                })
            }
        };
        Ok((xid, h))
    }
}

/// The AUTH_SYS credential body (RFC 5531 §A).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    /// Arbitrary stamp.
    pub stamp: u32,
    /// Client's host name (not trusted for anything).
    pub machine_name: Vec<u8>,
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups, at most 16.
    pub gids: Vec<u32>,
}

impl<'a> XdrDecode<'a> for AuthSys {
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError> {
        let stamp = r.u32()?;
        let machine_name = r.opaque(MAX_MACHINE_NAME)?.to_vec();
        let uid = r.u32()?;
        let gid = r.u32()?;
        let n = r.array_len(MAX_AUTH_GIDS, 4)?;
        let mut gids = Vec::with_capacity(n);
        for _ in 0..n {
            gids.push(r.u32()?);
        }
        Ok(Self {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        })
    }
}

impl XdrEncode for AuthSys {
    fn encode(&self, w: &mut XdrWriter) {
        w.u32(self.stamp)
            .opaque(&self.machine_name)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.gids.len() as u32);
        for g in &self.gids {
            w.u32(*g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_header_round_trip() {
        let sys = AuthSys {
            stamp: 7,
            machine_name: b"client".to_vec(),
            uid: 1000,
            gid: 100,
            gids: vec![100, 27],
        }
        .to_bytes();
        let h = CallHeader {
            xid: Xid(42),
            rpcvers: 2,
            prog: 100003,
            vers: 3,
            proc_: 1,
            cred: OpaqueAuth {
                flavor: flavor::SYS,
                body: &sys,
            },
            verf: AUTH_NONE,
        };
        let mut w = XdrWriter::new();
        h.encode(&mut w);
        let bytes = w.into_inner();
        let mut r = XdrReader::new(&bytes);
        let d = CallHeader::decode(&mut r).unwrap();
        assert_eq!(d, h);
        assert_eq!(
            AuthSys::from_bytes(d.cred.body).unwrap().gids,
            vec![100, 27]
        );
    }

    #[test]
    fn reply_header_round_trip() {
        for h in [
            ReplyHeader::Accepted(AcceptStat::Success),
            ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 }),
            ReplyHeader::Accepted(AcceptStat::GarbageArgs),
            ReplyHeader::RpcMismatch,
            ReplyHeader::AuthError(AuthStat::TooWeak),
        ] {
            let mut w = XdrWriter::new();
            h.encode(Xid(9), &mut w);
            let b = w.into_inner();
            let mut r = XdrReader::new(&b);
            assert_eq!(ReplyHeader::decode(&mut r).unwrap(), (Xid(9), h));
            r.finish().unwrap();
        }
    }

    #[test]
    fn a_reply_is_not_a_call() {
        let mut w = XdrWriter::new();
        ReplyHeader::Accepted(AcceptStat::Success).encode(Xid(1), &mut w);
        let b = w.into_inner();
        assert_eq!(
            CallHeader::decode(&mut XdrReader::new(&b)),
            Err(MessageError::NotACall(Xid(1)))
        );
    }
}
