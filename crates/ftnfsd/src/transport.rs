//! TCP (record marking) and UDP listeners on one port for NFS and MOUNT.
//!
//! Bounded everywhere: connections, requests in flight (globally and per connection), replies
//! queued per connection, record size. A connection that sends an unframeable stream is
//! closed; a datagram that is not a call is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use ftnfs_core::exports::client_of;
use ftnfs_wire::nfs3::MAX_IO;
use ftnfs_wire::record::RecordDecoder;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::reply_sink::ReplySink;
use crate::server::{Server, Via};

/// Largest call record: a full WRITE plus headers.
pub const MAX_RECORD: usize = MAX_IO as usize + 64 * 1024;
/// Largest UDP datagram.
pub const MAX_DATAGRAM: usize = 65_507;

/// Transport limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open TCP connections.
    pub max_connections: usize,
    /// Requests executing at once, all transports.
    pub max_inflight: usize,
    /// Requests executing at once per TCP connection.
    pub per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_inflight: 128,
            per_connection: 32,
        }
    }
}

/// Shared state of the listeners.
pub struct Transport {
    server: Arc<Server>,
    limits: Limits,
    inflight: Arc<Semaphore>,
    conns: Arc<Semaphore>,
    /// Open TCP connections (for status).
    pub open_connections: AtomicUsize,
    /// The threads requests that may wait run on.
    pool: crate::request_pool::RequestPool,
}

/// The NFS listeners: TCP and UDP on `addr` (the same port; `0` picks one). `::` takes both
/// families on one socket (IPV6_V6ONLY off, whatever the sysctl says); a host without IPv6
/// gets `0.0.0.0` instead, with a warning.
pub fn listen(addr: SocketAddr) -> anyhow::Result<(TcpListener, UdpSocket, SocketAddr)> {
    use anyhow::Context;
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |addr: SocketAddr| -> std::io::Result<(TcpListener, UdpSocket, SocketAddr)> {
        let domain = Domain::for_address(addr);
        let dual = addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        let t = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if dual {
            t.set_only_v6(false)?;
        }
        t.set_reuse_address(true)?;
        t.bind(&addr.into())?;
        t.listen(1024)?;
        t.set_nonblocking(true)?;
        let bound = t.local_addr()?.as_socket().unwrap_or(addr);
        let u = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if dual {
            u.set_only_v6(false)?;
        }
        u.bind(&bound.into())?;
        u.set_nonblocking(true)?;
        let tcp = TcpListener::from_std(std::net::TcpListener::from(t))?;
        let udp = UdpSocket::from_std(std::net::UdpSocket::from(u))?;
        Ok((tcp, udp, bound))
    };
    match open(addr) {
        Ok(x) => Ok(x),
        Err(e)
            if addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                && e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) =>
        {
            tracing::warn!("no IPv6 on this host: listening on 0.0.0.0 (IPv4) only");
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port());
            open(v4).with_context(|| format!("cannot listen on {v4}"))
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

impl Transport {
    /// Client requests taken in and not yet answered (or dropped).
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_inflight
            .saturating_sub(self.inflight.available_permits())
    }

    /// Listeners for `server`.
    pub fn new(server: Arc<Server>, limits: Limits) -> Arc<Transport> {
        Arc::new(Transport {
            server,
            limits,
            inflight: Arc::new(Semaphore::new(limits.max_inflight)),
            conns: Arc::new(Semaphore::new(limits.max_connections)),
            open_connections: AtomicUsize::new(0),
            // a thread per request in flight at most; idle ones end after 10 s
            pool: crate::request_pool::RequestPool::new(
                tokio::runtime::Handle::current(),
                limits.max_inflight,
                std::time::Duration::from_secs(10),
            ),
        })
    }

    /// Accepts TCP connections forever.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let permit = match self.conns.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            // Abortive close (RST, no FIN-WAIT orphan), also when the process is killed: the
            // Linux client reconnects to the virtual IP from the same port, and an orphan of
            // ours holding an unacknowledged reply would answer it with bare ACKs when the
            // address comes back here (LAB.md "Learned under faults").
            let _ = sock.set_zero_linger();
            let me = self.clone();
            let peer = client_of(peer);
            tokio::spawn(async move {
                me.open_connections.fetch_add(1, Ordering::Relaxed);
                me.connection(sock, peer).await;
                me.open_connections.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    }

    async fn connection(self: &Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        tracing::debug!(client = %peer, "connected");
        // the virtual server it came to: its connections close when its primary moves
        let mut close = match sock.local_addr() {
            Ok(a) => self.server.mirror.close_signal(a.ip()),
            Err(_) => self.server.mirror.close_clients.subscribe(),
        };
        let (mut rd, wr) = sock.into_split();
        // replies are written by whoever made them (reply_sink.rs); the writer task only
        // finishes what the socket did not take at once
        let sink = Arc::new(ReplySink::new(wr));
        let writer = tokio::spawn({
            let sink = sink.clone();
            async move { sink.drain().await }
        });
        let per_conn = Arc::new(Semaphore::new(self.limits.per_connection));
        let mut dec = RecordDecoder::new(MAX_RECORD);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        'read: loop {
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = close.changed() => {
                    tracing::info!(client = %peer, "closing connection: the primary role moved");
                    break;
                }
            }
            loop {
                let rec = match dec.decode(&mut buf) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(client = %peer, error = %e, "closing connection: bad record");
                        break 'read;
                    }
                };
                // Backpressure: stop reading while this connection has its share in flight
                // (a reply holds its share until it is written).
                let Ok(local) = per_conn.clone().acquire_owned().await else {
                    break 'read;
                };
                let Ok(global) = self.inflight.clone().acquire_owned().await else {
                    break 'read;
                };
                // a cheap call (GETATTR, ACCESS…) is answered here, on the network task
                if let Ok(reply) = self.server.handle_inline(&rec, peer, Via::Stream) {
                    drop(global);
                    if let Some(reply) = reply {
                        sink.send(reply, local);
                    }
                    continue;
                }
                let server = self.server.clone();
                let sink = sink.clone();
                // the reply is written by whoever has it (reply_sink.rs): this thread, or
                // the one that released a mirrored update (PrimarySide::defer)
                let respond: crate::server::Respond = Box::new(move |reply| {
                    drop(global);
                    if let Some(reply) = reply {
                        sink.send(reply, local);
                    }
                });
                self.pool.spawn(move || {
                    server.handle(&rec, peer, Via::Stream, respond);
                });
            }
        }
        // every reply still owed is written (or the socket failed) once all shares are back
        let _ = per_conn
            .acquire_many(self.limits.per_connection as u32)
            .await;
        writer.abort();
        let _ = writer.await;
        tracing::debug!(client = %peer, "disconnected");
    }

    /// Serves UDP datagrams forever.
    pub async fn serve_udp(self: Arc<Self>, sock: UdpSocket) {
        use tokio::io::Interest;
        // replies go out from the address each request came to (udp_dst.rs)
        crate::udp_dst::ask_destinations(&sock);
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer, to) = match sock
                .async_io(Interest::READABLE, || crate::udp_dst::recv(&sock, &mut buf))
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "udp receive failed");
                    continue;
                }
            };
            // a datagram to a multicast virtual IP reaches every member: only its holder
            // answers; a secondary in proxy mode keeps an update for the primary's order
            // (proxy_side.rs), the others drop it (multicast.rs)
            let mut via = Via::Datagram {
                everyone: false,
                answer: true,
            };
            if let Some(v) = to.and_then(|t| self.server.mirror.multicast_vip(t)) {
                via = Via::Datagram {
                    everyone: true,
                    answer: v.held(),
                };
                if !v.held() {
                    v.foreign.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Ok(permit) = self.inflight.clone().acquire_owned().await else {
                return;
            };
            let rec = bytes::Bytes::copy_from_slice(&buf[..n]);
            let client = client_of(peer);
            if let Ok(reply) = self.server.handle_inline(&rec, client, via) {
                drop(permit);
                if let Some(reply) = reply {
                    let _ = sock
                        .async_io(Interest::WRITABLE, || {
                            crate::udp_dst::send(&sock, &reply, peer, to)
                        })
                        .await;
                }
                continue;
            }
            let server = self.server.clone();
            let sock = sock.clone();
            let rt = tokio::runtime::Handle::current();
            // the blocking thread sends its reply itself (no hop back to a task: see
            // reply_sink.rs); only a full socket buffer hands it to a task that waits
            // the request's share is held until its reply is sent (or dropped): replies
            // waiting for a full socket are bounded like requests
            let respond: crate::server::Respond = Box::new(move |reply| {
                let Some(reply) = reply else { return };
                if reply.len() > MAX_DATAGRAM {
                    tracing::warn!(client = %peer, len = reply.len(), "reply too large for UDP; dropped");
                    return;
                }
                match crate::udp_dst::send(&sock, &reply, peer, to) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        rt.spawn(async move {
                            let _ = sock
                                .async_io(Interest::WRITABLE, || {
                                    crate::udp_dst::send(&sock, &reply, peer, to)
                                })
                                .await;
                            drop(permit);
                        });
                    }
                    _ => {}
                }
            });
            self.pool
                .spawn(move || server.handle(&rec, client, via, respond));
        }
    }
}
