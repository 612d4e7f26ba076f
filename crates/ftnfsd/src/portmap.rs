//! Registration with a local portmapper (rpcbind), so `rpcinfo -p` and `showmount -e` work.
//! Without a portmapper we serve all the same: clients then give the port explicitly.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ftnfs_wire::portmap::{encode_call, Mapping, IPPROTO_TCP, IPPROTO_UDP, PROC_SET, PROC_UNSET};
use ftnfs_wire::rpc::{AcceptStat, ReplyHeader, Xid};
use ftnfs_wire::{mount, nfs3, XdrReader};

/// We registered NSM (no other status monitor on this host had).
static NSM_SET: AtomicBool = AtomicBool::new(false);

/// Every program served on the NFS port and its versions, ascending: what dispatch accepts
/// (`Server::handle`; another version is answered PROG_MISMATCH with the list's ends) and
/// what is registered with the portmapper. NLM has no version 2. NSM takes SM_NOTIFY of
/// clients that restarted (a host that also runs its own rpc.statd keeps that one's
/// registration: ours then fails, logged).
pub const SERVED: [(u32, &[u32]); 4] = [
    (nfs3::PROGRAM, &[3]),
    (mount::PROGRAM, &[1, 2, 3]),
    (ftnfs_wire::nlm::PROGRAM, &ftnfs_wire::nlm::VERSIONS),
    (ftnfs_wire::nsm::PROGRAM, &[ftnfs_wire::nsm::VERSION]),
];

/// The versions of `prog` we serve ([`SERVED`]), `None` for a program we do not serve.
pub fn versions_of(prog: u32) -> Option<&'static [u32]> {
    SERVED.iter().find(|(p, _)| *p == prog).map(|(_, v)| *v)
}

/// Everything we serve on `port`.
pub fn mappings(port: u16) -> Vec<Mapping> {
    let mut v = Vec::new();
    for prot in [IPPROTO_TCP, IPPROTO_UDP] {
        for (prog, versions) in SERVED {
            for &vers in versions {
                v.push(Mapping {
                    prog,
                    vers,
                    prot,
                    port: port as u32,
                });
            }
        }
    }
    v
}

fn call(sock: &UdpSocket, xid: u32, proc_: u32, m: Mapping) -> std::io::Result<bool> {
    exchange(sock, xid, &encode_call(Xid(xid), proc_, m))
}

/// Sends a SET or UNSET call and waits for its reply: whether the portmapper did it.
fn exchange(sock: &UdpSocket, xid: u32, call: &[u8]) -> std::io::Result<bool> {
    sock.send(call)?;
    let mut buf = [0u8; 512];
    loop {
        let n = sock.recv(&mut buf)?;
        let mut r = XdrReader::new(&buf[..n]);
        match ReplyHeader::decode(&mut r) {
            Ok((x, ReplyHeader::Accepted(AcceptStat::Success))) if x.0 == xid => {
                return Ok(r.bool().unwrap_or(false))
            }
            Ok((x, _)) if x.0 == xid => return Ok(false),
            _ => continue,
        }
    }
}

/// An rpcbind v3 SET or UNSET of `m` on the IPv6 netid of its protocol (`tcp6`, `udp6`),
/// every address.
fn call6(sock: &UdpSocket, xid: u32, proc_: u32, m: Mapping) -> std::io::Result<bool> {
    let netid = if m.prot == IPPROTO_TCP {
        "tcp6"
    } else {
        "udp6"
    };
    let uaddr = ftnfs_wire::portmap::universal_address(
        std::net::Ipv6Addr::UNSPECIFIED.into(),
        m.port as u16,
    );
    let call = ftnfs_wire::portmap::encode_rpcb_call(
        Xid(xid),
        proc_,
        (m.prog, m.vers),
        netid,
        &uaddr,
        "superuser",
    );
    exchange(sock, xid, &call)
}

/// Registers (or, with `set == false`, unregisters) our programs — with `ipv6` also on the
/// `tcp6`/`udp6` netids (rpcbind v3), for a listener that takes IPv6 clients (NSM stays
/// IPv4). Returns how many mappings the portmapper accepted; 0 when none answers.
pub fn register(port: u16, set: bool, ipv6: bool) -> usize {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return 0;
    };
    if sock.connect("127.0.0.1:111").is_err() {
        return 0;
    }
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    // UNSET first (it removes every protocol of a program version): a stale registration
    // from a previous run would make SET fail. Then SET each mapping. NSM is the host's own
    // status monitor's if it runs one: never unset unless we set it.
    for (i, m) in mappings(port).into_iter().enumerate() {
        if m.prog == ftnfs_wire::nsm::PROGRAM && !NSM_SET.load(Ordering::Relaxed) {
            continue;
        }
        if call(&sock, 0x7f00_1000 + i as u32, PROC_UNSET, m).is_err() {
            return 0;
        }
        if ipv6 && m.prog != ftnfs_wire::nsm::PROGRAM {
            let _ = call6(&sock, 0x7f00_3000 + i as u32, PROC_UNSET, m);
        }
    }
    let mut ok = 0;
    if !set {
        return ok;
    }
    for (i, m) in mappings(port).into_iter().enumerate() {
        match call(&sock, 0x7f00_0000 + i as u32, PROC_SET, m) {
            Ok(true) => {
                if m.prog == ftnfs_wire::nsm::PROGRAM {
                    NSM_SET.store(true, Ordering::Relaxed);
                }
                ok += 1
            }
            Ok(false) => tracing::warn!(?m, "portmapper refused registration"),
            Err(_) => return ok,
        }
        if ipv6 && m.prog != ftnfs_wire::nsm::PROGRAM {
            match call6(&sock, 0x7f00_2000 + i as u32, PROC_SET, m) {
                Ok(true) => ok += 1,
                Ok(false) => tracing::warn!(?m, "rpcbind refused the IPv6 registration"),
                Err(_) => return ok,
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_version_is_registered_on_both_protocols() {
        let m = mappings(2049);
        let nlm = ftnfs_wire::nlm::PROGRAM;
        let got: Vec<(u32, u32, u32)> = m.iter().map(|m| (m.prot, m.prog, m.vers)).collect();
        let mut want = Vec::new();
        for prot in [IPPROTO_TCP, IPPROTO_UDP] {
            want.push((prot, nfs3::PROGRAM, 3));
            want.extend((1..=3).map(|v| (prot, mount::PROGRAM, v)));
            want.extend([1, 3, 4].map(|v| (prot, nlm, v)));
            want.push((prot, ftnfs_wire::nsm::PROGRAM, 1));
        }
        assert_eq!(got, want);
        assert!(m.iter().all(|m| m.port == 2049));
        assert_eq!(versions_of(nlm), Some(&[1, 3, 4][..]));
        assert_eq!(versions_of(100_003), Some(&[3][..]));
        assert_eq!(versions_of(100_000), None, "the portmapper is not ours");
    }
}
