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

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, CacheInfo};

/// Lifetime of the address in the kernel; refreshed well before it ends.
pub const LIFETIME_S: u32 = 3;
const REFRESH: Duration = Duration::from_millis(500);

/// Why the virtual IP could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// `--vip` is malformed.
    #[error("--vip {0}: expected IPV4/PREFIX")]
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

/// The virtual IP of this member's group.
#[derive(Debug)]
pub struct Vip {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The interface it goes on.
    pub dev: String,
    held: AtomicBool,
    /// Wakes the keeper at once on a change (a takeover must not wait for the next refresh).
    changed: tokio::sync::Notify,
}

impl Vip {
    /// Parses `ADDR/PREFIX` for interface `dev`.
    pub fn parse(spec: &str, dev: &str) -> Result<Vip, VipError> {
        let (a, p) = spec
            .split_once('/')
            .ok_or_else(|| VipError::Syntax(spec.into()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| VipError::Syntax(spec.into()))?;
        let prefix: u8 = p.parse().map_err(|_| VipError::Syntax(spec.into()))?;
        if prefix > 32 {
            return Err(VipError::Syntax(spec.into()));
        }
        nix::net::if_::if_nametoindex(dev).map_err(|e| VipError::Dev(dev.into(), e))?;
        Ok(Vip {
            addr,
            prefix,
            dev: dev.into(),
            held: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// This member is (`true`) or is not the primary that holds the address.
    pub fn take(&self, mine: bool) {
        if mine {
            self.held.store(true, Ordering::SeqCst);
            self.changed.notify_one();
        }
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
    let chain = format!("a{}_{port}", vip.addr.to_string().replace('.', "_"));
    let m = format!(
        "ip daddr {} meta l4proto {{ tcp, udp }} th dport {port}",
        vip.addr
    );
    let script = format!(
        "add table inet ftnfs_vip\n\
         add chain inet ftnfs_vip {chain} {{ type filter hook input priority -10; policy accept; }}\n\
         flush chain inet ftnfs_vip {chain}\n\
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
    loop {
        let want = vip.held();
        let r = if want {
            refresh(&handle, &vip).await
        } else if had {
            remove(&handle, &vip).await
        } else {
            Ok(())
        };
        match r {
            Ok(()) => {
                if want && !had {
                    tracing::info!(vip = %vip.addr, dev = vip.dev, "virtual IP taken");
                    let v = vip.clone();
                    tokio::task::spawn_blocking(move || {
                        // a few announcements: one may be lost, caches may be refreshed late
                        for d in [0u64, 200, 1000] {
                            std::thread::sleep(Duration::from_millis(d));
                            if let Err(e) = gratuitous_arp(&v) {
                                tracing::warn!(error = %e, "gratuitous ARP failed");
                            }
                        }
                    });
                }
                if !want && had {
                    tracing::info!(vip = %vip.addr, "virtual IP released");
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

async fn refresh(h: &rtnetlink::Handle, vip: &Vip) -> Result<(), VipError> {
    let idx = nix::net::if_::if_nametoindex(vip.dev.as_str())
        .map_err(|e| VipError::Dev(vip.dev.clone(), e))?;
    let mut req = h
        .address()
        .add(idx, IpAddr::V4(vip.addr), vip.prefix)
        .replace();
    let mut ci = CacheInfo::default();
    ci.ifa_valid = LIFETIME_S;
    ci.ifa_preferred = LIFETIME_S;
    req.message_mut()
        .attributes
        .push(AddressAttribute::CacheInfo(ci));
    req.execute().await?;
    Ok(())
}

async fn remove(h: &rtnetlink::Handle, vip: &Vip) -> Result<(), VipError> {
    let idx = nix::net::if_::if_nametoindex(vip.dev.as_str())
        .map_err(|e| VipError::Dev(vip.dev.clone(), e))?;
    let mut list = h.address().get().set_link_index_filter(idx).execute();
    while let Some(m) = list.try_next().await? {
        let ours = m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(x)) if *x == vip.addr));
        if ours {
            h.address().del(m).execute().await?;
        }
    }
    Ok(())
}

/// Broadcasts a gratuitous ARP request for the virtual IP from the interface's MAC, so that
/// neighbours update their caches at once.
fn gratuitous_arp(vip: &Vip) -> Result<(), VipError> {
    let idx = nix::net::if_::if_nametoindex(vip.dev.as_str())
        .map_err(|e| VipError::Dev(vip.dev.clone(), e))?;
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{}/address", vip.dev))?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.trim().split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    let ip = vip.addr.octets();
    // ARP request: htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1; sender = target = VIP
    let mut pkt = Vec::with_capacity(28);
    pkt.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    pkt.extend_from_slice(&mac);
    pkt.extend_from_slice(&ip);
    pkt.extend_from_slice(&[0; 6]);
    pkt.extend_from_slice(&ip);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the returned descriptor is checked and
    // owned by `fd` (closed on drop).
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value we then fill in.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = idx as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
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
