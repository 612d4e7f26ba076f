//! Multicast delivery of a virtual IP (the patent's second mode, issue 16;
//! Documentation/15-virtual-servers.md): every member receives every client datagram sent to
//! the address. What the network needs, as `tests/multicast-delivery.sh` found it:
//! - every live member holds the address on `lo` (its kernel accepts datagrams to it), and
//!   answers no ARP for it (`arp_ignore=1`, `arp_announce=2` on its interface);
//! - the primary answers ARP requests for it with its IPv4 multicast MAC ([`crate::arp::multicast_mac`]), from
//!   user space ([`responder`]); neighbours send to that MAC, which the bridge or switch
//!   floods to every member. A failover changes no neighbour's cache: the MAC stays.
//! - every member joins the MAC on its interface (`PACKET_ADD_MEMBERSHIP`, held as long as
//!   the responder's socket: a real NIC filters multicast MACs nobody joined).
//!
//! Delivery only, so far: a member that is not the address's primary drops what it receives
//! (transport.rs; counted in [`crate::vip::Vip::foreign`]) and updates still reach the
//! secondaries by relay. Proxy-mode secondaries come next (15-virtual-servers.md).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{recv, send, setsockopt, sockopt, MsgFlags};
use nix::sys::time::TimeVal;

use crate::arp::multicast_mac;
use crate::vip::Vip;

/// Sets what makes every member's kernel keep quiet about the address: it answers ARP only
/// for addresses of the interface asked on (`arp_ignore=1`; the address is on `lo`), and
/// never names it as an ARP sender (`arp_announce=2`). Host-wide for `all` and for `dev`;
/// logged, not undone at exit.
pub fn quiet_arp(dev: &str) {
    for scope in ["all", dev] {
        for (knob, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            let path = format!("/proc/sys/net/ipv4/conf/{scope}/{knob}");
            if let Err(e) = std::fs::write(&path, value) {
                tracing::warn!(%path, error = %e, "cannot set it: this host's kernel may answer ARP for the multicast virtual IP with its own MAC");
            }
        }
    }
    tracing::info!(
        dev,
        "multicast virtual IP: arp_ignore=1 and arp_announce=2 set (all, {dev})"
    );
}

/// An ARP packet socket bound to interface `idx` (whole frames, a receive timeout of
/// 0.5 s), joined to `mac`.
fn arp_socket(idx: u32, mac: [u8; 6]) -> std::io::Result<OwnedFd> {
    let (fd, sll) = crate::arp::socket(libc::SOCK_RAW, idx, None)?;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: packet_mreq is plain old data; all-zero is valid and then filled in.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = idx as i32;
    mr.mr_type = libc::PACKET_MR_MULTICAST as u16;
    mr.mr_alen = 6;
    mr.mr_address[..6].copy_from_slice(&mac);
    // SAFETY: `mr` is a valid packet_mreq and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 500_000))?;
    Ok(fd)
}

/// What `open` makes on the address's interface (by its index), tried again every second
/// until it works (the interface may come up after the daemon).
fn open_on_dev<T>(vip: &Vip, what: &str, open: impl Fn(u32) -> std::io::Result<T>) -> T {
    loop {
        match nix::net::if_::if_nametoindex(vip.dev.as_str())
            .map_err(std::io::Error::from)
            .and_then(&open)
        {
            Ok(x) => return x,
            Err(e) => {
                tracing::warn!(vip = %vip.addr, error = %e, "multicast virtual IP: no {what} yet; again in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// The ARP reply to `frame` (an Ethernet frame) if it asks who has `ip`: from `own` (the
/// interface's MAC), naming `mac` (the multicast MAC) as the address's.
pub fn answer(frame: &[u8], ip: Ipv4Addr, mac: [u8; 6], own: [u8; 6]) -> Option<Vec<u8>> {
    let arp = frame.get(14..42)?;
    // Ethernet, IPv4, 6, 4, request, target IP ours
    if arp[..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] || arp[24..28] != ip.octets() {
        return None;
    }
    let (sha, spa) = (&arp[8..14], &arp[14..18]);
    // Ethernet header (to the asker, from this interface, ARP), then the reply
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(sha);
    f.extend_from_slice(&own);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&crate::arp::packet(2, &mac, &ip.octets(), sha, spa));
    Some(f)
}

/// Runs forever on a thread of its own: holds the interface's membership of the address's
/// multicast MAC, and while this member holds the address answers ARP requests for it with
/// that MAC.
pub fn responder(vip: Arc<Vip>) {
    let ip = match vip.addr {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(ip) => return responder_v6(&vip, ip),
    };
    let mac = multicast_mac(ip);
    let own = crate::arp::mac_of_dev(&vip.dev).unwrap_or([0; 6]);
    let fd = open_on_dev(&vip, "ARP socket", |idx| arp_socket(idx, mac));
    tracing::info!(vip = %vip.addr, mac = %fmt_mac(mac), "multicast virtual IP: joined its MAC; ARP answered while primary");
    let mut buf = [0u8; 128];
    loop {
        // (a timeout every 0.5 s: nothing else to do, the loop goes on)
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        if n == 0 || !vip.held() {
            continue;
        }
        if let Some(reply) = answer(&buf[..n], ip, mac, own) {
            // the socket is bound to the interface: the frame goes out there as is
            let _ = send(fd.as_raw_fd(), &reply, MsgFlags::empty());
        }
    }
}

/// The Neighbor Advertisement answering `icmp` (an ICMPv6 message, as a raw socket reads
/// it) when it is a Neighbor Solicitation for `ip` (RFC 4861 §7.2.4): Solicited and Override
/// set, the target at `mac`, the multicast MAC.
pub fn ns_answer(icmp: &[u8], ip: Ipv6Addr, mac: [u8; 6]) -> Option<[u8; 32]> {
    if icmp.len() < 24 || icmp[0] != 135 || icmp[1] != 0 || icmp[8..24] != ip.octets() {
        return None;
    }
    Some(crate::vip::neighbor_advert_flags(mac, ip, 0x40 | 0x20))
}

/// A raw ICMPv6 socket that hears the Neighbor Solicitations for `ip` on interface `idx`
/// (joined to its solicited-node group, ff02::1:ffXX:XXXX) and sends answers with hop
/// limit 255, as RFC 4861 requires; a receive timeout of 0.5 s.
fn nd_socket(idx: u32, ip: Ipv6Addr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_if_v6(idx)?;
    let o = ip.octets();
    let solicited = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    s.join_multicast_v6(&solicited, idx)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(s)
}

/// [`responder`] for an IPv6 address: holds the interface's membership of its multicast
/// MAC (`33:33` and its low 32 bits) and, while this member holds the address, answers
/// Neighbor Solicitations for it with that MAC. (The kernel itself answers none: the address
/// is on `lo`, and Linux answers a solicitation only for the addresses of the interface it
/// came on.)
fn responder_v6(vip: &Vip, ip: Ipv6Addr) {
    let mac = crate::arp::multicast_mac_v6(ip);
    let (_member, sock) = open_on_dev(vip, "neighbour discovery socket", |idx| {
        Ok((arp_socket(idx, mac)?, nd_socket(idx, ip)?))
    });
    tracing::info!(vip = %vip.addr, mac = %fmt_mac(mac), "multicast virtual IP: joined its MAC; Neighbor Solicitations answered while primary");
    let mut buf = [0u8; 256];
    loop {
        // (a timeout every 0.5 s: nothing else to do, the loop goes on)
        let Ok((n, Some(from))) =
            nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrIn6>(sock.as_raw_fd(), &mut buf)
        else {
            continue;
        };
        if n == 0 || !vip.held() {
            continue;
        }
        if from.ip().is_unspecified() {
            continue; // duplicate address detection of the address itself: not a question
        }
        if let Some(na) = ns_answer(&buf[..n], ip, mac) {
            let to = std::net::SocketAddrV6::new(from.ip(), 0, 0, from.scope_id());
            let _ = sock.send_to(&na, &std::net::SocketAddr::V6(to).into());
        }
    }
}

/// `aa:bb:…` of a MAC.
pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multicast_mac_carries_the_low_23_bits() {
        assert_eq!(
            multicast_mac("10.99.0.60".parse().unwrap()),
            [1, 0, 0x5e, 0x63, 0, 0x3c]
        );
        assert_eq!(
            multicast_mac("192.200.1.2".parse().unwrap()),
            [1, 0, 0x5e, 0x48, 1, 2]
        );
    }

    #[test]
    fn a_solicitation_for_the_ipv6_address_is_answered_with_its_multicast_mac() {
        let ip: Ipv6Addr = "fd99::60".parse().unwrap();
        let mac = crate::arp::multicast_mac_v6(ip);
        assert_eq!(mac, [0x33, 0x33, 0, 0, 0, 0x60]);
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&ip.octets());
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 9]); // source link-layer address
        let na = ns_answer(&ns, ip, mac).expect("answered");
        assert_eq!(na[0], 136, "an advertisement");
        assert_eq!(na[4], 0x60, "solicited, override");
        assert_eq!(&na[8..24], &ip.octets());
        assert_eq!(&na[24..26], &[2, 1], "target link-layer address");
        assert_eq!(&na[26..32], &mac);
        let other: Ipv6Addr = "fd99::61".parse().unwrap();
        assert!(ns_answer(&ns, other, mac).is_none(), "not ours");
        let mut na_in = ns.clone();
        na_in[0] = 136;
        assert!(ns_answer(&na_in, ip, mac).is_none(), "not a solicitation");
        assert!(ns_answer(&ns[..20], ip, mac).is_none(), "truncated");
    }

    #[test]
    fn only_a_request_for_the_address_is_answered_with_the_multicast_mac() {
        let ip: Ipv4Addr = "10.99.0.60".parse().unwrap();
        let asker = [2, 0, 0, 0, 0, 9];
        let mut req = vec![0xff; 6];
        req.extend_from_slice(&asker);
        req.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        req.extend_from_slice(&asker);
        req.extend_from_slice(&[10, 99, 0, 254]);
        req.extend_from_slice(&[0; 6]);
        req.extend_from_slice(&ip.octets());
        let own = [2, 0, 0, 0, 0, 1];
        let r = answer(&req, ip, multicast_mac(ip), own).expect("answered");
        assert_eq!(&r[..6], &asker, "to the asker");
        assert_eq!(&r[6..12], &own, "from this interface");
        assert_eq!(&r[20..22], &[0, 2], "a reply");
        assert_eq!(
            &r[22..28],
            &multicast_mac(ip),
            "the address is at the multicast MAC"
        );
        assert_eq!(&r[28..32], &ip.octets());
        assert_eq!(&r[32..38], &asker);
        assert_eq!(&r[38..42], &[10, 99, 0, 254]);
        let other: Ipv4Addr = "10.99.0.61".parse().unwrap();
        assert!(
            answer(&req, other, multicast_mac(other), own).is_none(),
            "not ours"
        );
        let mut reply = req.clone();
        reply[21] = 2;
        assert!(
            answer(&reply, ip, multicast_mac(ip), own).is_none(),
            "a reply is not a question"
        );
        assert!(
            answer(&req[..30], ip, multicast_mac(ip), own).is_none(),
            "truncated"
        );
    }
}
