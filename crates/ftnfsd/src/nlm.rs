//! The NLM service (program 100021, versions 4, 3 and 1; issue 14): byte-range locks for
//! NFS clients, so a client needs no `nolock`. Which member executes a call, and how a call
//! that changes a mirrored export's table reaches every member, is decided in `server.rs`
//! (`Server::nlm`); the table and what each procedure does to it is `lock_table.rs`. Here:
//! the replies, the `_RES` calls that answer the asynchronous `_MSG` forms, and the GRANTED
//! callbacks to clients whose blocked lock became free ([`callbacks`]) — sent by the member
//! that serves the export (its primary) and by nobody else.
//!
//! Served on the NFS port (registered with the portmapper there, `portmap::SERVED`), over
//! TCP and UDP: NULL, TEST, LOCK (blocking or not), CANCEL, UNLOCK, NM_LOCK, FREE_ALL,
//! SHARE/UNSHARE (DOS share reservations), and the `_MSG` forms.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use ftnfs_core::ids::ExportId;
use ftnfs_wire::nlm::{self, Stat};
use ftnfs_wire::portmap;
use ftnfs_wire::rpc::{AcceptStat, CallHeader, ReplyHeader, Xid};
use ftnfs_wire::xdr::{XdrReader, XdrWriter};

use crate::lock_table::{Body, Call, Pending};

/// How often the locks of removed files are dropped (`Server::purge_removed_locks`).
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A call this service makes to a client's lock manager.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// GRANTED: a blocked lock is the client's now. `again`: told before, perhaps, by a
    /// primary that died (a member that took over tells its recent grants again); a
    /// refusal then never releases the lock.
    Granted {
        /// The waiter.
        waiter: Pending,
        /// A repeat.
        again: bool,
    },
    /// The result of a `_MSG` call, as its `_RES` call (`body`: the result's XDR).
    Result {
        /// The client host.
        addr: IpAddr,
        /// The version of the `_MSG` call (and of `body`).
        vers: u32,
        /// TEST_RES, LOCK_RES, CANCEL_RES or UNLOCK_RES.
        proc_: u32,
        /// The result.
        body: Vec<u8>,
    },
}

/// Most GRANTED callbacks queued for sending.
pub const MAX_CALLBACKS: usize = 1024;

/// The NLM service's way out to clients.
pub struct Nlm {
    grants: tokio::sync::mpsc::Sender<Outgoing>,
}

/// An RPC reply with no body: `stat` (a `_RES` call acknowledged, a procedure we do not
/// have, arguments we cannot read).
pub fn answer(xid: Xid, stat: AcceptStat) -> Vec<u8> {
    let mut w = XdrWriter::new();
    ReplyHeader::Accepted(stat).encode(xid, &mut w);
    w.into_inner()
}

impl Nlm {
    /// A service whose callbacks go to `grants` ([`callbacks`] sends them).
    pub fn new(grants: tokio::sync::mpsc::Sender<Outgoing>) -> Nlm {
        Nlm { grants }
    }

    /// The reply to `call` from `client` whose result is `body`: the result itself, or for
    /// a `_MSG` call a void reply, the result going back as its `_RES` call.
    pub fn reply(&self, xid: Xid, call: &Call, body: &Body, client: IpAddr) -> Vec<u8> {
        let mut w = XdrWriter::new();
        ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
        match call.res_proc {
            Some(proc_) => {
                let mut out = XdrWriter::new();
                body.encode(call.vers, &mut out);
                let o = Outgoing::Result {
                    addr: client,
                    vers: call.vers,
                    proc_,
                    body: out.into_inner(),
                };
                if self.grants.try_send(o).is_err() {
                    tracing::warn!("NLM callback queue full: a _MSG result is not sent");
                }
            }
            None => body.encode(call.vers, &mut w),
        }
        w.into_inner()
    }

    /// Queues the GRANTED callbacks of `granted` (dropped past [`MAX_CALLBACKS`]: the
    /// client's own retransmitted LOCK then finds the lock held by it and is granted).
    pub fn tell(&self, granted: Vec<Pending>) {
        self.send_grants(granted, false)
    }

    /// Tells these waiters again that they hold their lock (this member took the export
    /// over; the old primary may have died before telling them).
    pub fn tell_again(&self, granted: Vec<Pending>) {
        self.send_grants(granted, true)
    }

    fn send_grants(&self, granted: Vec<Pending>, again: bool) {
        for waiter in granted {
            if self
                .grants
                .try_send(Outgoing::Granted { waiter, again })
                .is_err()
            {
                tracing::warn!(
                    "NLM callback queue full: a granted client learns it at its next LOCK"
                );
            }
        }
    }
}

/// Sends each granted waiter its NLM GRANTED callback: the client's NLM port from its
/// portmapper, then the call over UDP, a few tries ([`CALLBACK_TRIES`], 1 s apart). A
/// client that answers anything but granted no longer waits: `release` gives its lock back
/// (as an UNLOCK of it, which on a mirrored export every member executes).
///
/// `source`: the virtual IP of the export a callback is about (of any held one for a
/// `_RES`, which names no file); calls come from it while this member holds it — the Linux
/// client takes a GRANTED only from the address it sent its LOCK to.
pub async fn callbacks(
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    release: Arc<dyn Fn(Pending) + Send + Sync>,
    source: Arc<dyn Fn(Option<ExportId>) -> Option<Arc<crate::vip::Vip>> + Send + Sync>,
) {
    while let Some(o) = rx.recv().await {
        let (p, again) = match o {
            Outgoing::Granted { waiter, again } => (waiter, again),
            Outgoing::Result {
                addr,
                vers,
                proc_,
                body,
            } => {
                let from = from_address(&source(None));
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = call_program(from, addr, (nlm::PROGRAM, vers, proc_), &body) {
                        tracing::warn!(client = %addr, proc_, error = %e, "NLM _RES not delivered");
                    }
                });
                continue;
            }
        };
        let release = release.clone();
        let export = ftnfs_core::handle::FileHandle::decode(&p.args.alock.fh)
            .ok()
            .map(|h| h.export);
        let from = from_address(&source(export));
        tokio::task::spawn_blocking(move || match grant(from, &p) {
            Ok((Stat::Granted, _)) => tracing::debug!(client = %p.addr, "NLM GRANTED delivered"),
            Ok((stat, 1)) if !again => {
                tracing::info!(client = %p.addr, ?stat, "NLM GRANTED refused: lock released");
                release(p);
            }
            // a resent GRANTED refused (or one told again after a takeover): the client may
            // have taken the first one (its answer lost) and no longer waits *because* it
            // holds the lock — never release that; a client that gave up unlocks or cancels
            // itself
            Ok((stat, tries)) => tracing::info!(
                client = %p.addr,
                ?stat,
                tries,
                "NLM GRANTED refused only when resent: the lock stays the client's"
            ),
            Err(e) => {
                tracing::warn!(client = %p.addr, error = %e, "NLM GRANTED not delivered; the client's next LOCK finds it held")
            }
        });
    }
}

/// GRANTED callbacks sent before giving up.
pub const CALLBACK_TRIES: u32 = 5;

/// The address callbacks go out from: the virtual IP while this member holds it (clients
/// locked through it), else whichever the kernel picks.
pub fn from_address(vip: &Option<Arc<crate::vip::Vip>>) -> IpAddr {
    match vip {
        Some(v) if v.held() => v.addr,
        _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// The client's answer to GRANTED, and in which try it came. In the newest version the
/// client's portmapper has (a waiter is kept as version 4; a client that speaks only
/// version 1 or 3 gets the lock in its own 32-bit form).
fn grant(from: IpAddr, p: &Pending) -> std::io::Result<(Stat, u32)> {
    let mut versions = nlm::VERSIONS.iter().rev().peekable();
    let (body, tries) = loop {
        let Some(&vers) = versions.next() else {
            return Err(std::io::Error::other(
                "no NLM version registered at the client",
            ));
        };
        let mut args = XdrWriter::new();
        p.args.encode_version(vers, &mut args);
        let prog = (nlm::PROGRAM, vers, nlm::procs::GRANTED);
        match call_program(from, p.addr, prog, args.as_slice()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && versions.peek().is_some() => {}
            r => break r?,
        }
    };
    let mut r = XdrReader::new(&body);
    let _cookie = r
        .opaque(nlm::LM_MAXSTRLEN)
        .map_err(|_| std::io::Error::other("bad GRANTED reply"))?;
    let stat = match r.u32() {
        Ok(0) => Stat::Granted,
        _ => Stat::Denied,
    };
    Ok((stat, tries))
}

/// Calls `(program, version, procedure)` at the client host `addr` over UDP from `from`
/// (its port from the host's portmapper) with `args`: the reply's body, and in which try
/// of the call it came. `ErrorKind::NotFound`: the host's portmapper has no such program
/// and version.
pub fn call_program(
    from: IpAddr,
    addr: IpAddr,
    (prog, vers, proc_): (u32, u32, u32),
    args: &[u8],
) -> std::io::Result<(Vec<u8>, u32)> {
    // the virtual IP may have gone since it was chosen: then from any address (of the
    // client's family: an IPv6 client is called from an IPv6 address)
    let any: IpAddr = match addr {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let from = if from.is_ipv4() == addr.is_ipv4() {
        from
    } else {
        any
    };
    let sock = UdpSocket::bind((from, 0)).or_else(|_| UdpSocket::bind((any, 0)))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    // where the program listens: over IPv6 by rpcbind v3 GETADDR for `udp6` (a host's
    // IPv4 and IPv6 listeners of one program may have different ports: the kernel's lockd
    // has one of each; GETPORT answers the IPv4 one), over IPv4 by portmap GETPORT
    let port = match addr {
        IpAddr::V6(_) => rpc_call(&sock, addr, 111, 0x4e4c_0000, |xid, w| {
            w.extend_from_slice(&portmap::encode_rpcb_call(
                xid,
                portmap::RPCBPROC_GETADDR,
                (prog, vers),
                "udp6",
                "",
                "",
            ));
        })
        .and_then(|(body, _)| {
            portmap::decode_getaddr_reply(&body)
                .map_err(|_| std::io::Error::other("bad rpcbind reply"))
        })?,
        IpAddr::V4(_) => rpc_call(&sock, addr, 111, 0x4e4c_0000, |xid, w| {
            let m = portmap::Mapping {
                prog,
                vers,
                prot: portmap::IPPROTO_UDP,
                port: 0,
            };
            w.extend_from_slice(&portmap::encode_call(xid, portmap::PROC_GETPORT, m));
        })
        .and_then(|(body, _)| {
            portmap::decode_getport_reply(&body)
                .map_err(|_| std::io::Error::other("bad portmap reply"))
        })?,
    };
    if port == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("program {prog} version {vers} is not registered at the client"),
        ));
    }
    rpc_call(&sock, addr, port, 0x4e4d_0000, |xid, w| {
        let mut x = XdrWriter::new();
        CallHeader::auth_none(xid, prog, vers, proc_).encode(&mut x);
        x.fixed(args);
        w.extend_from_slice(x.as_slice());
    })
}

/// One RPC call over UDP with retries (the same xid): the accepted reply's body, and the
/// number of sends when it came (1: the first was answered).
fn rpc_call(
    sock: &UdpSocket,
    addr: IpAddr,
    port: u16,
    xid_base: u32,
    call: impl Fn(Xid, &mut Vec<u8>),
) -> std::io::Result<(Vec<u8>, u32)> {
    let xid = Xid(xid_base | (rand_u16() as u32));
    let mut msg = Vec::new();
    call(xid, &mut msg);
    let mut buf = vec![0u8; 2048];
    for tries in 1..=CALLBACK_TRIES {
        sock.send_to(&msg, (addr, port))?;
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let mut r = XdrReader::new(&buf[..n]);
                    match ReplyHeader::decode(&mut r) {
                        Ok((x, ReplyHeader::Accepted(AcceptStat::Success))) if x == xid => {
                            return Ok((r.rest().to_vec(), tries))
                        }
                        Ok((x, h)) if x == xid => {
                            return Err(std::io::Error::other(format!("refused: {h:?}")))
                        }
                        _ => continue, // someone else's, or garbage
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(std::io::Error::other("no answer"))
}

fn rand_u16() -> u16 {
    let b = crate::mirror::random_bytes::<2>();
    u16::from_be_bytes(b)
}
