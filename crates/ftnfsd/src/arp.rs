//! ARP and link-layer addresses, for the virtual IP's announcements (`vip.rs`) and the
//! multicast delivery's ARP responder (`multicast.rs`).

use std::net::Ipv4Addr;

/// The IPv4 multicast MAC of `ip`: 01:00:5e and the low 23 bits of the address (RFC 1112 §6.4).
pub fn multicast_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The MAC an IPv6 multicast virtual IP resolves to: `33:33` and its low 32 bits, the
/// Ethernet mapping of IPv6 multicast (RFC 2464 §7) applied to the address.
pub fn multicast_mac_v6(ip: std::net::Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The MAC of interface `dev`.
pub fn mac_of_dev(dev: &str) -> std::io::Result<[u8; 6]> {
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.trim().split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    Ok(mac)
}

/// An ARP packet for Ethernet and IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4): operation
/// `op` (1 request, 2 reply), sender hardware and protocol address, target's.
pub fn packet(op: u8, sha: &[u8], spa: &[u8], tha: &[u8], tpa: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(28);
    pkt.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, op]);
    for part in [sha, spa, tha, tpa] {
        pkt.extend_from_slice(part);
    }
    pkt
}

/// An ARP packet socket (`ty`: `SOCK_DGRAM`, the kernel adds the Ethernet header, or
/// `SOCK_RAW`, whole frames) and the link address of interface `idx` to send to (`dest`, a
/// MAC) or bind to (`None`).
pub fn socket(
    ty: libc::c_int,
    idx: u32,
    dest: Option<[u8; 6]>,
) -> std::io::Result<(std::os::fd::OwnedFd, libc::sockaddr_ll)> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the returned descriptor is checked and
    // owned by `fd` (closed on drop).
    let raw = unsafe { libc::socket(libc::AF_PACKET, ty, i32::from(proto)) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value we then fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = idx as i32;
    if let Some(mac) = dest {
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
    }
    Ok((fd, sll))
}
