//! The virtual IP (DESIGN.md: the group is one virtual server, one address): added to the
//! primary's interface through rtnetlink and announced with gratuitous ARP, so that clients'
//! next packets reach the new primary after a failover.
//!
//! The address is added with a short valid lifetime (`LIFETIME_S`) and refreshed every
//! `REFRESH` while this member is primary. If the process dies (kill -9), nobody removes the
//! address — the kernel does, when the lifetime runs out. That bounds the time two hosts
//! answer ARP for the virtual IP after a crash without any supervisor.
//!
//! Until then, a host whose ftnfsd is gone must not *refuse* the clients: the Linux client
//! reconnects at once when its connection closes, and a refused attempt makes it wait at
//! least 3 s (`XS_TCP_INIT_REEST_TO`) before the next — the stalls of ~3.2 s after a killed
//! primary in tests/chaos.sh. [`guard`] installs an nftables rule that drops what reaches
//! the virtual IP's NFS port with no socket to take it (a SYN with no listener, a segment of
//! a connection that died with its process): the client's SYN is retransmitted 1 s later,
//! by when the address is on the new primary (Documentation/07-failover.md).
//!
//! A client whose connection went to a primary that is *frozen* or cut off (not dead) sees
//! no close at all: the old host's kernel took its request, and the client waits for an
//! answer until its RPC timeout or a TCP retransmission reaches the new host. So the new
//! primary, right after each gratuitous ARP, *tickles* the clients it knows from the updates
//! it applied as a secondary (each update carries the client's address and port): a bare ACK
//! from the virtual IP, outside the connection's window, which the client's TCP answers with
//! an ACK of its own — now to the new host, which has no such connection and resets it — so
//! the client reconnects and resends at once ([`tickle`]; CTDB does the same).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, CacheInfo};

/// Lifetime of the address in the kernel; refreshed well before it ends.
pub const LIFETIME_S: u32 = 3;
const REFRESH: Duration = Duration::from_millis(500);

/// Why the virtual IP could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// `--vip` is malformed.
    #[error("--vip {0}: expected [MEMBERS=]ADDR/PREFIX[,multicast], ADDR IPv4 or IPv6 (MEMBERS as in -ftnfs=, e.g. a:b)")]
    Syntax(String),
    /// The interface does not exist.
    #[error("interface {0}: {1}")]
    Dev(String, nix::errno::Errno),
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The virtual IP of one group of exports: the virtual server its clients mount.
#[derive(Debug)]
pub struct Vip {
    /// The group: the member list of its exports as written in `-ftnfs=` (`None`: the group
    /// of the first mirrored export).
    pub group: Option<Vec<String>>,
    /// Delivered by multicast (`,multicast`): on every member's `lo`, ARP (IPv4) or Neighbor
    /// Solicitations (IPv6) answered by the primary with the address's multicast MAC
    /// (multicast.rs).
    pub multicast: bool,
    /// Datagrams to a multicast address that reached this member while another held it
    /// (dropped: every member gets every datagram; only the primary answers).
    pub foreign: std::sync::atomic::AtomicU64,
    /// The address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The interface it goes on.
    pub dev: String,
    held: AtomicBool,
    /// Wakes the keeper at once on a change (a takeover must not wait for the next refresh).
    changed: tokio::sync::Notify,
    /// The NFS port clients reach on the address.
    port: std::sync::atomic::AtomicU16,
    /// Clients to tickle when this member takes the address ([`Vip::take_for`]).
    clients: std::sync::Mutex<Vec<SocketAddr>>,
}

impl Vip {
    /// Parses `[MEMBERS=]ADDR/PREFIX` for interface `dev` (MEMBERS: `a:b`, the group's
    /// member list as its exports give it in `-ftnfs=`).
    pub fn parse(spec: &str, dev: &str) -> Result<Vip, VipError> {
        let (spec_net, multicast) = match spec.strip_suffix(",multicast") {
            Some(rest) => (rest, true),
            None => (spec, false),
        };
        let (group, net) = match spec_net.split_once('=') {
            Some((g, n)) => {
                let members: Vec<String> = g.split(':').map(str::to_string).collect();
                if members.len() < 2 || members.iter().any(|m| m.is_empty()) {
                    return Err(VipError::Syntax(spec.into()));
                }
                (Some(members), n)
            }
            None => (None, spec_net),
        };
        let (a, p) = net
            .split_once('/')
            .ok_or_else(|| VipError::Syntax(spec.into()))?;
        let addr: IpAddr = a.parse().map_err(|_| VipError::Syntax(spec.into()))?;
        let prefix: u8 = p.parse().map_err(|_| VipError::Syntax(spec.into()))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits || addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(VipError::Syntax(spec.into()));
        }
        nix::net::if_::if_nametoindex(dev).map_err(|e| VipError::Dev(dev.into(), e))?;
        Ok(Vip {
            multicast,
            foreign: std::sync::atomic::AtomicU64::new(0),
            group,
            addr,
            prefix,
            dev: dev.into(),
            held: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            port: std::sync::atomic::AtomicU16::new(2049),
            clients: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// This member is (`true`) or is not the primary that holds the address.
    pub fn take(&self, mine: bool) {
        if mine {
            self.held.store(true, Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// Takes the address (this member became primary) and tickles `clients` once it is up.
    pub fn take_for(&self, clients: Vec<SocketAddr>) {
        *self.clients.lock().unwrap_or_else(|p| p.into_inner()) = clients;
        self.take(true);
    }

    /// Stop holding the address (stepping down).
    pub fn give_up(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Whether this member holds it now.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

/// Makes this host drop, instead of refusing or resetting, TCP and UDP packets to the
/// virtual IP's `port` that no socket takes (nftables table `ftnfs_vip`, one chain per
/// address and port; installing it again replaces it). Kept after exit: the address may
/// outlive this process by its lifetime, and a host without ftnfsd must stay silent, not
/// refuse. Without `nft`, a warning: clients may wait ~3 s more after a killed primary.
pub fn guard(vip: &Vip, port: u16) {
    vip.port.store(port, Ordering::Relaxed);
    let chain = format!("a{}_{port}", vip.addr.to_string().replace(['.', ':'], "_"));
    let family = if vip.addr.is_ipv4() { "ip" } else { "ip6" };
    let m = format!(
        "{family} daddr {} meta l4proto {{ tcp, udp }} th dport {port}",
        vip.addr
    );
    // a multicast address serves UDP: TCP sent to its multicast MAC would reach every
    // member's listener at once
    let tcp_off = if vip.multicast {
        format!(
            "add rule inet ftnfs_vip {chain} {family} daddr {} tcp dport {port} meta pkttype multicast counter drop\n",
            vip.addr
        )
    } else {
        String::new()
    };
    let script = format!(
        "add table inet ftnfs_vip\n\
         add chain inet ftnfs_vip {chain} {{ type filter hook input priority -10; policy accept; }}\n\
         flush chain inet ftnfs_vip {chain}\n\
         {tcp_off}\
         add rule inet ftnfs_vip {chain} {m} socket transparent 0 accept\n\
         add rule inet ftnfs_vip {chain} {m} socket transparent 1 accept\n\
         add rule inet ftnfs_vip {chain} {m} counter drop\n"
    );
    let run = || -> std::io::Result<std::process::Output> {
        use std::io::Write;
        let mut c = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        c.stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())?;
        c.wait_with_output()
    };
    match run() {
        Ok(o) if o.status.success() => {
            tracing::info!(vip = %vip.addr, port, "packets to the virtual IP that no socket takes are dropped, not refused (nftables ftnfs_vip)")
        }
        Ok(o) => tracing::warn!(
            vip = %vip.addr,
            error = %String::from_utf8_lossy(&o.stderr).trim(),
            "nft failed: a host whose ftnfsd died refuses clients until the address expires (they may wait ~3 s more after a failover)"
        ),
        Err(e) => tracing::warn!(
            vip = %vip.addr,
            error = %e,
            "no nft (install nftables): a host whose ftnfsd died refuses clients until the address expires (they may wait ~3 s more after a failover)"
        ),
    }
}

/// Keeps the kernel in line with [`Vip::held`] forever: adds/refreshes the address and
/// announces it when taken, deletes it when given up.
pub async fn keeper(vip: Arc<Vip>) {
    let (conn, handle, _) = match rtnetlink::new_connection() {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "no rtnetlink socket: the virtual IP is not managed");
            return;
        }
    };
    tokio::spawn(conn);
    // As if held: a member that does not start as primary removes the address at once — a
    // previous incarnation of this member (killed) may have left it, with up to its lifetime
    // to run, and this member's kernel would take the clients' connections to it (the
    // campaign's ~3 s stalls after a killed primary was restarted, tests/chaos.sh).
    let mut had = true;
    // Announced (gratuitous ARP) since this member last took the address. Apart from `had`:
    // a member that starts as primary finds `had` already true and announced nothing, so
    // neighbours kept the previous holder's MAC until their caches expired (found with
    // scripts/bench: after a first kill, later runs' clients reached neither member).
    let mut announced = false;
    loop {
        let want = vip.held();
        // a multicast address is on every live member's lo, held or not (multicast.rs)
        let r = if want || vip.multicast {
            refresh(&handle, &vip).await
        } else if had {
            remove(&handle, &vip).await
        } else {
            Ok(())
        };
        match r {
            Ok(()) => {
                if want && !announced {
                    announced = true;
                    tracing::info!(vip = %vip.addr, dev = vip.dev, "virtual IP taken");
                    let v = vip.clone();
                    let clients =
                        std::mem::take(&mut *v.clients.lock().unwrap_or_else(|p| p.into_inner()));
                    tokio::task::spawn_blocking(move || {
                        // a few announcements: one may be lost, caches may be refreshed late;
                        // each followed by the tickles (a client answers one every 0.5 s)
                        for d in [0u64, 200, 1000] {
                            std::thread::sleep(Duration::from_millis(d));
                            // not once the address was given up meanwhile (a quick hand-over):
                            // a late announcement would pull the clients back here, to a
                            // member that drops them (tests/chaos.sh seed 6 caught one 0.9 s
                            // after the other member took the address)
                            if !v.held() {
                                return;
                            }
                            if let Err(e) = announce(&v) {
                                tracing::warn!(error = %e, "announcing the virtual IP failed");
                            }
                            // (a multicast address serves UDP clients: nothing to tickle)
                            if v.multicast {
                                continue;
                            }
                            if let Err(e) = tickle(&v, &clients) {
                                tracing::warn!(error = %e, "tickle ACK failed");
                            }
                        }
                        if !clients.is_empty() {
                            tracing::info!(clients = clients.len(), "clients tickled to reconnect");
                        }
                    });
                }
                if !want && had {
                    tracing::info!(vip = %vip.addr, "virtual IP released");
                }
                if !want {
                    announced = false;
                }
                had = want;
            }
            Err(e) => tracing::warn!(vip = %vip.addr, error = %e, "virtual IP update failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = vip.changed.notified() => {}
        }
    }
}

impl Vip {
    /// The interface and prefix the address goes on: `lo`/32 (/128) for a multicast one.
    fn placed(&self) -> (&str, u8) {
        if self.multicast {
            ("lo", if self.addr.is_ipv4() { 32 } else { 128 })
        } else {
            (self.dev.as_str(), self.prefix)
        }
    }
}

async fn refresh(h: &rtnetlink::Handle, vip: &Vip) -> Result<(), VipError> {
    let (dev, prefix) = vip.placed();
    let idx = nix::net::if_::if_nametoindex(dev).map_err(|e| VipError::Dev(dev.into(), e))?;
    let mut req = h.address().add(idx, vip.addr, prefix).replace();
    let mut ci = CacheInfo::default();
    ci.ifa_valid = LIFETIME_S;
    ci.ifa_preferred = LIFETIME_S;
    let attrs = &mut req.message_mut().attributes;
    attrs.push(AddressAttribute::CacheInfo(ci));
    if vip.addr.is_ipv6() {
        // usable at once: duplicate address detection would keep it tentative (unusable)
        // for a second or more after every takeover, and the group decides who holds it
        attrs.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await?;
    Ok(())
}

async fn remove(h: &rtnetlink::Handle, vip: &Vip) -> Result<(), VipError> {
    let (dev, _) = vip.placed();
    let idx = nix::net::if_::if_nametoindex(dev).map_err(|e| VipError::Dev(dev.into(), e))?;
    let mut list = h.address().get().set_link_index_filter(idx).execute();
    while let Some(m) = list.try_next().await? {
        let ours = m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(x) if *x == vip.addr));
        if ours {
            h.address().del(m).execute().await?;
        }
    }
    Ok(())
}

/// Tells the neighbours that the virtual IP is now at this interface's MAC: a gratuitous ARP
/// for an IPv4 address, an unsolicited Neighbor Advertisement for an IPv6 one.
fn announce(vip: &Vip) -> Result<(), VipError> {
    let idx = nix::net::if_::if_nametoindex(vip.dev.as_str())
        .map_err(|e| VipError::Dev(vip.dev.clone(), e))?;
    let mac = crate::arp::mac_of_dev(&vip.dev)?;
    match vip.addr {
        // a multicast address is at its multicast MAC, whoever holds it
        IpAddr::V4(a) if vip.multicast => gratuitous_arp(idx, crate::arp::multicast_mac(a), a),
        IpAddr::V4(a) => gratuitous_arp(idx, mac, a),
        IpAddr::V6(a) if vip.multicast => unsolicited_na(idx, crate::arp::multicast_mac_v6(a), a),
        IpAddr::V6(a) => unsolicited_na(idx, mac, a),
    }
}

/// Broadcasts a gratuitous ARP request for `ip` from `mac` on interface `idx`, so that
/// neighbours update their caches at once.
fn gratuitous_arp(idx: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), VipError> {
    let ip = ip.octets();
    // a request whose sender and target are both the address
    let pkt = crate::arp::packet(1, &mac, &ip, &[0; 6], &ip);
    let (fd, sll) = crate::arp::socket(libc::SOCK_DGRAM, idx, Some([0xff; 6]))?;
    // SAFETY: `pkt` is a live buffer of the given length; `sll` is a valid sockaddr_ll and
    // its exact size is passed; `fd` is an open packet socket.
    let n = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Sends an unsolicited Neighbor Advertisement (RFC 4861 §7.2.6) for `ip` with `mac` to all
/// nodes (ff02::1) on interface `idx`, from the virtual IP itself, hop limit 255: Override
/// set, Solicited clear. A neighbour that has an entry for the address takes the new MAC
/// (one that has none ignores it, and asks when it next needs to). The kernel fills in the
/// ICMPv6 checksum of a raw ICMPv6 socket.
fn unsolicited_na(idx: u32, mac: [u8; 6], ip: Ipv6Addr) -> Result<(), VipError> {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV6),
    )?;
    sock.set_multicast_hops_v6(255)?;
    sock.set_multicast_if_v6(idx)?;
    sock.bind(&SocketAddr::new(ip.into(), 0).into())?;
    let all_nodes =
        std::net::SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, idx);
    sock.send_to(&neighbor_advert(mac, ip), &SocketAddr::V6(all_nodes).into())?;
    Ok(())
}

/// The ICMPv6 Neighbor Advertisement body for [`unsolicited_na`] (checksum left 0).
fn neighbor_advert(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    neighbor_advert_flags(mac, ip, 0x20) // Override; not Router, not Solicited
}

/// A Neighbor Advertisement body (RFC 4861 §4.4) for `ip` at `mac` with `flags` (R 0x80,
/// S 0x40, O 0x20), checksum left 0 (the kernel fills it in on a raw ICMPv6 socket).
pub fn neighbor_advert_flags(mac: [u8; 6], ip: Ipv6Addr, flags: u8) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // Neighbor Advertisement, code 0
    m[4] = flags;
    m[8..24].copy_from_slice(&ip.octets());
    m[24] = 2; // option: target link-layer address
    m[25] = 1; // its length in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// Sends each client a bare TCP ACK from the virtual IP's NFS port, outside any window (see
/// the module text): its TCP answers to this host, which resets the connection. Only the
/// clients of the address's family can have reached it.
pub fn tickle(vip: &Vip, clients: &[SocketAddr]) -> Result<(), VipError> {
    let clients: Vec<&SocketAddr> = clients
        .iter()
        .filter(|c| c.is_ipv4() == vip.addr.is_ipv4())
        .collect();
    if clients.is_empty() {
        return Ok(());
    }
    let port = vip.port.load(Ordering::Relaxed);
    let domain = if vip.addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::RAW, Some(socket2::Protocol::TCP))?;
    sock.bind(&SocketAddr::new(vip.addr, 0).into())?;
    for c in clients {
        let seg = tickle_segment(vip.addr, port, *c);
        // a raw socket's "port" must be 0 for IPv6 (it is the protocol there)
        sock.send_to(&seg, &SocketAddr::new(c.ip(), 0).into())?;
    }
    Ok(())
}

/// A 20-byte TCP header: `from_port` → `to`, ACK only, sequence and acknowledgment numbers 0
/// (out of every real window), with its checksum over the pseudo-header of `to`'s family.
fn tickle_segment(from: IpAddr, from_port: u16, to: SocketAddr) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&from_port.to_be_bytes());
    h[2..4].copy_from_slice(&to.port().to_be_bytes());
    // seq 4..8 and ack 8..12 stay 0
    h[12] = 5 << 4; // data offset: 5 words, no options
    h[13] = 0x10; // ACK
    h[14..16].copy_from_slice(&1024u16.to_be_bytes()); // window
    let sum = tcp_checksum(from, to.ip(), &h);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// The TCP checksum (RFC 793; RFC 8200 §8.1 for IPv6): one's complement of the one's
/// complement sum of the pseudo-header (source, destination, length, protocol 6) and the
/// segment.
fn tcp_checksum(src: IpAddr, dst: IpAddr, seg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |x| u32::from(*x));
            sum += hi | lo;
        }
    };
    let octets = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    add(&octets(src));
    add(&octets(dst));
    if src.is_ipv4() {
        add(&[0, 6]);
        add(&(seg.len() as u16).to_be_bytes());
    } else {
        add(&(seg.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 6]);
    }
    add(seg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickle_is_a_bare_ack_whose_checksum_verifies() {
        let from: IpAddr = Ipv4Addr::new(10, 99, 0, 50).into();
        let to = SocketAddr::new(Ipv4Addr::new(10, 99, 0, 100).into(), 871);
        let seg = tickle_segment(from, 2049, to);
        assert_eq!(&seg[0..4], &[0x08, 0x01, 0x03, 0x67]);
        assert_eq!(seg[13], 0x10, "ACK only");
        assert_eq!(seg[12] >> 4, 5);
        // summing again over the segment with its checksum gives 0
        assert_eq!(tcp_checksum(from, to.ip(), &seg), 0);
        // the checksum changes with any byte
        let other = tickle_segment(from, 2049, SocketAddr::new(to.ip(), 872));
        assert_ne!(seg[16..18], other[16..18]);
    }

    #[test]
    fn an_ipv6_tickle_sums_the_ipv6_pseudo_header() {
        let from: IpAddr = "fd99::50".parse().unwrap();
        let to: SocketAddr = "[fd99::100]:871".parse().unwrap();
        let seg = tickle_segment(from, 2049, to);
        assert_eq!(tcp_checksum(from, to.ip(), &seg), 0);
        // a known vector, summed by hand: pseudo-header fd99::50, fd99::100, length 20,
        // next header 6, then the segment 0801 0367 0 0 0 0 5010 0400 ---- 0000
        let words: u32 =
            0xfd99 + 0x50 + 0xfd99 + 0x100 + 20 + 6 + 0x0801 + 0x0367 + 0x5010 + 0x0400;
        let folded = (words & 0xffff) + (words >> 16);
        assert_eq!(u16::from_be_bytes([seg[16], seg[17]]), !(folded as u16));
    }

    #[test]
    fn a_neighbor_advertisement_overrides_and_carries_the_mac() {
        let mac = [0x02, 0, 0, 0, 0, 0x0a];
        let ip: Ipv6Addr = "fd99::100".parse().unwrap();
        let m = neighbor_advert(mac, ip);
        assert_eq!((m[0], m[1]), (136, 0), "type 136, code 0");
        assert_eq!(m[4], 0x20, "Override only: unsolicited, not a router");
        assert_eq!(&m[8..24], &ip.octets());
        assert_eq!((m[24], m[25]), (2, 1), "target link-layer address, 8 bytes");
        assert_eq!(&m[26..32], &mac);
    }

    #[test]
    fn either_family_parses_and_nonsense_is_refused() {
        let dev = "lo";
        assert!(Vip::parse("10.99.0.100/24", dev).is_ok());
        assert!(Vip::parse("fd99::100/64", dev).unwrap().addr.is_ipv6());
        let m = Vip::parse("b:a=10.99.0.51/24,multicast", dev).unwrap();
        assert!(m.multicast && m.group.is_some());
        assert!(!Vip::parse("10.99.0.51/24", dev).unwrap().multicast);
        let m6 = Vip::parse("fd99::100/64,multicast", dev).unwrap();
        assert!(m6.multicast && m6.addr.is_ipv6());
        assert_eq!(m6.placed(), ("lo", 128), "on lo alone");
        let g = Vip::parse("b:a=10.99.0.51/24", dev).unwrap();
        assert_eq!(g.group, Some(vec!["b".to_string(), "a".to_string()]));
        assert_eq!(g.addr.to_string(), "10.99.0.51");
        assert_eq!(Vip::parse("10.99.0.51/24", dev).unwrap().group, None);
        for bad in [
            "a=10.99.0.51/24",
            "a:=10.99.0.51/24",
            "=10.99.0.51/24",
            "a:b=10.99.0.51",
            "10.99.0.100/33",
            "fd99::100/129",
            "::/0",
            "ff02::1/64",
            "::1/128",
            "10.0.0.1",
        ] {
            assert!(Vip::parse(bad, dev).is_err(), "{bad}");
        }
    }
}
