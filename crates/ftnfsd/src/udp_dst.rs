//! UDP replies from the address the request came to, as knfsd sends them
//! (`svc_udp_recvfrom` keeps the destination, `svc_sendto` replies from it): a member has its
//! own addresses and the virtual IPs it holds, and the kernel would otherwise pick the source
//! of a reply by its routes — the member's own address, to a client that sent to the virtual
//! IP. The Linux client matches UDP replies by xid alone and takes that; a client whose UDP
//! socket is connected to the server's address drops it.
//!
//! The socket is asked for each datagram's destination (`IP_PKTINFO`, and `IPV6_RECVPKTINFO`
//! on a dual-stack socket, whose IPv4 datagrams carry the IPv4 one); a reply carries it back
//! as its source (`IPV6_PKTINFO` with the IPv4-mapped address on a dual-stack socket, which
//! Linux applies to the IPv4 reply; `IP_PKTINFO`'s `ipi_spec_dst` on an IPv4 one).

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use tokio::net::UdpSocket;

/// Asks the kernel to report each datagram's destination address. Best effort: without it
/// replies go out from whatever source the routes give (logged once).
pub fn ask_destinations(sock: &UdpSocket) {
    let v6 = sock.local_addr().is_ok_and(|a| a.is_ipv6());
    // IPv4 datagrams (also those a dual-stack socket takes) report IP_PKTINFO
    let mut r = setsockopt(sock, sockopt::Ipv4PacketInfo, &true);
    if v6 {
        r = r.and(setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true));
    }
    if let Err(e) = r {
        tracing::warn!(error = %e, "UDP: cannot learn datagrams' destinations; replies go out from the routes' source address");
    }
}

/// One datagram without blocking (call from `UdpSocket::try_io`/`async_io`): its length, its
/// sender, and the local address it was sent to, if the kernel said.
pub fn recv(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::in_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let from = msg.address.as_ref().and_then(|a| {
        if let Some(s) = a.as_sockaddr_in6() {
            Some(SocketAddr::V6(std::net::SocketAddrV6::from(*s)))
        } else {
            a.as_sockaddr_in()
                .map(|s| SocketAddr::V4(std::net::SocketAddrV4::from(*s)))
        }
    });
    let mut to = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    to = Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                        i.ipi_addr.s_addr,
                    ))))
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    to = Some(IpAddr::V6(std::net::Ipv6Addr::from(i.ipi6_addr.s6_addr)))
                }
                _ => {}
            }
        }
    }
    let n = msg.bytes;
    let from = from.ok_or_else(|| std::io::Error::other("datagram without a sender"))?;
    Ok((n, from, to))
}

/// Sends `data` to `peer` from local address `from` (the destination of the request it
/// answers) without blocking; `None`: from what the routes give. `peer` is the sender as
/// [`recv`] gave it, so it is of the socket's family (a dual-stack socket names an IPv4
/// client by its IPv4-mapped address).
pub fn send(
    sock: &UdpSocket,
    data: &[u8],
    peer: SocketAddr,
    from: Option<IpAddr>,
) -> std::io::Result<usize> {
    let iov = [std::io::IoSlice::new(data)];
    let fd = sock.as_raw_fd();
    let flags = MsgFlags::MSG_DONTWAIT;
    match peer {
        SocketAddr::V6(p) => {
            let to = SockaddrIn6::from(p);
            let info = from.map(|f| nix::libc::in6_pktinfo {
                ipi6_addr: nix::libc::in6_addr {
                    s6_addr: match f {
                        IpAddr::V6(a) => a.octets(),
                        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    },
                },
                ipi6_ifindex: 0,
            });
            let cmsg: Vec<ControlMessage> =
                info.iter().map(ControlMessage::Ipv6PacketInfo).collect();
            Ok(sendmsg(fd, &iov, &cmsg, flags, Some(&to))?)
        }
        SocketAddr::V4(p) => {
            let to = SockaddrIn::from(p);
            let info = match from {
                Some(IpAddr::V4(a)) => Some(nix::libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: nix::libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: nix::libc::in_addr { s_addr: 0 },
                }),
                _ => None,
            };
            let cmsg: Vec<ControlMessage> =
                info.iter().map(ControlMessage::Ipv4PacketInfo).collect();
            Ok(sendmsg(fd, &iov, &cmsg, flags, Some(&to))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reply_comes_from_the_address_the_request_went_to() {
        // an IPv4 socket; a dual-stack one taking an IPv4 datagram; the same taking IPv6
        for (bind, to) in [
            ("0.0.0.0:0", "127.0.0.2"),
            ("[::]:0", "127.0.0.3"),
            ("[::]:0", "::1"),
        ] {
            let server = UdpSocket::bind(bind).await.expect("bind server");
            ask_destinations(&server);
            let port = server.local_addr().expect("addr").port();
            let dst: IpAddr = to.parse().expect("ip");
            let client = UdpSocket::bind(if dst.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            })
            .await
            .expect("bind client");
            client.send_to(b"call", (dst, port)).await.expect("send");
            let mut buf = [0u8; 16];
            let bound = std::time::Duration::from_secs(10);
            let (n, peer, got) = tokio::time::timeout(
                bound,
                server.async_io(tokio::io::Interest::READABLE, || recv(&server, &mut buf)),
            )
            .await
            .expect("a datagram within 10 s")
            .expect("recv");
            assert_eq!(&buf[..n], b"call");
            let got = got.map(ftnfs_core::exports::client_ip);
            assert_eq!(got, Some(dst), "{bind} {to}");
            server
                .async_io(tokio::io::Interest::WRITABLE, || {
                    send(&server, b"reply", peer, got)
                })
                .await
                .expect("reply");
            let (n, from) = tokio::time::timeout(bound, client.recv_from(&mut buf))
                .await
                .expect("a reply within 10 s")
                .expect("client recv");
            assert_eq!(&buf[..n], b"reply");
            assert_eq!(
                from.ip(),
                dst,
                "the reply's source is the request's destination ({bind})"
            );
        }
    }
}
