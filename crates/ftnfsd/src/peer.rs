//! The peer channel: TCP connections between members, authenticated with the group's shared
//! secret (frames and messages in `ftnfs_wire::peer`).
//!
//! Every member listens on its peer address and dials every configured peer. The connection
//! a member *dials* carries what it sends as a primary (Join, Update) and the answers
//! (JoinReply, Ack, Refuse); the connection it *accepts* carries what it receives as a
//! secondary. So each pair of members has two connections, one per direction of authority.
//!
//! Authentication (both directions, before anything else is read): each side sends a fresh
//! 16-byte nonce and must answer the other's with
//! `HMAC-SHA256(secret, "ftnfs-peer-1" ‖ other's nonce ‖ own name)`. A peer that does not
//! know the secret, speaks another version or is not configured is refused and logged; a
//! stranger on the LAN cannot inject updates. Frames after the handshake are not MACed by
//! the secret alone; with `--tls-cert/--tls-key/--tls-ca` every connection is mutual TLS 1.3
//! first (`peer_tls.rs`), so every frame is encrypted and authenticated and a member's name
//! is its certificate's.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ftnfs_core::ids::{Epoch, ExportId, MemberId, SeqNo};
use ftnfs_core::mirror::Update;
use ftnfs_wire::peer::{FrameDecoder, PeerMsg, VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::link::{Link, PeerWriter};
use crate::mirror::{random_bytes, Forwarded, Mirror, Role};
use crate::peer_tls::{PeerTls, TlsKeys};

/// The reading half of a peer connection (plain TCP or TLS).
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// A connection we dialed, as TLS when the group uses it (the answering member must hold a
/// certificate naming `name`).
async fn dialed(
    tls: Option<&TlsKeys>,
    sock: TcpStream,
    name: &str,
) -> Result<(ReadHalf, PeerWriter), PeerError> {
    let Some(t) = tls else {
        let (r, w) = sock.into_split();
        return Ok((Box::new(r), PeerWriter::Plain(w)));
    };
    let server_name = PeerTls::name_of(name).map_err(|e| PeerError::Refused(e.to_string()))?;
    let s = tokio::time::timeout(HANDSHAKE, t.connector.connect(server_name, sock))
        .await
        .map_err(|_| PeerError::Timeout)?
        .map_err(|e| PeerError::Refused(format!("TLS with {name}: {e}")))?;
    let (r, w) = tokio::io::split(s);
    Ok((Box::new(r), PeerWriter::Stream(Box::new(w))))
}

/// A connection we accepted, as TLS when the group uses it: its halves and the client
/// certificate chain the session verified against the group's CA.
async fn accepted(
    tls: Option<&TlsKeys>,
    sock: TcpStream,
) -> Result<
    (
        ReadHalf,
        PeerWriter,
        Vec<rustls_pki_types::CertificateDer<'static>>,
    ),
    PeerError,
> {
    let Some(t) = tls else {
        let (r, w) = sock.into_split();
        return Ok((Box::new(r), PeerWriter::Plain(w), Vec::new()));
    };
    let s = tokio::time::timeout(HANDSHAKE, t.acceptor.accept(sock))
        .await
        .map_err(|_| PeerError::Timeout)?
        .map_err(|e| PeerError::Refused(format!("TLS: {e}")))?;
    let chain = s
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let (r, w) = tokio::io::split(s);
    Ok((Box::new(r), PeerWriter::Stream(Box::new(w)), chain))
}

/// Time allowed for connecting and for the handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// Most peer connections accepted at once.
const MAX_INBOUND: usize = 64;

/// Why a peer connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid frame or message.
    #[error("{0}")]
    Wire(#[from] ftnfs_wire::peer::PeerWireError),
    /// The peer closed the connection.
    #[error("closed by peer")]
    Closed,
    /// The handshake failed: wrong secret, version, name or message.
    #[error("refused: {0}")]
    Refused(String),
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
}

fn mac(secret: &[u8], nonce: &[u8; 16], name: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"ftnfs-peer-1");
    m.update(nonce);
    m.update(name.as_bytes());
    m
}

struct Reader {
    rd: ReadHalf,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Reader {
    async fn next(&mut self) -> Result<PeerMsg, PeerError> {
        loop {
            if let Some(body) = self.dec.decode(&mut self.buf)? {
                // an update's arguments stay in the frame's memory
                return Ok(PeerMsg::decode_shared(&body.freeze())?);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(PeerError::Closed);
            }
        }
    }
}

/// Runs the handshake; returns the authenticated peer's name. `expect` is the name of the
/// peer we dialed; an accepted connection may be any configured peer.
async fn handshake(
    mirror: &Mirror,
    rd: &mut Reader,
    wr: &mut PeerWriter,
    expect: Option<&str>,
) -> Result<String, PeerError> {
    let g = &mirror.group;
    let wr = wr.as_async();
    let mine: [u8; 16] = random_bytes();
    wr.write_all(
        &PeerMsg::Hello {
            version: VERSION,
            name: g.me.clone(),
            nonce: mine,
        }
        .to_frame(),
    )
    .await?;
    let (name, theirs) = match rd.next().await? {
        PeerMsg::Hello {
            version,
            name,
            nonce,
        } => {
            if version != VERSION {
                return Err(PeerError::Refused(format!(
                    "{name} speaks peer protocol {version}, we speak {VERSION}"
                )));
            }
            (name, nonce)
        }
        other => return Err(PeerError::Refused(format!("expected Hello, got {other:?}"))),
    };
    if let Some(e) = expect {
        if name != e {
            return Err(PeerError::Refused(format!(
                "dialed {e} but {name} answered"
            )));
        }
    } else if g.peer(&name).is_none() {
        return Err(PeerError::Refused(format!(
            "{name} is not a configured peer"
        )));
    }
    let proof = mac(&g.secret, &theirs, &g.me).finalize().into_bytes();
    let mut p = [0u8; 32];
    p.copy_from_slice(&proof);
    wr.write_all(&PeerMsg::Proof { mac: p }.to_frame()).await?;
    match rd.next().await? {
        PeerMsg::Proof { mac: got } => mac(&g.secret, &mine, &name)
            .verify_slice(&got)
            .map_err(|_| PeerError::Refused(format!("{name} does not know the group secret")))?,
        other => return Err(PeerError::Refused(format!("expected Proof, got {other:?}"))),
    }
    Ok(name)
}

/// Wait between two dials of a peer that is down.
const REDIAL: Duration = Duration::from_millis(200);
/// Wait between the first redials after a link that was up ended ([`REDIALS_QUICK`] of them).
const REDIAL_QUICK: Duration = Duration::from_millis(10);
const REDIALS_QUICK: u32 = 10;

/// Dials every peer forever, reconnecting with a short backoff.
pub fn spawn_dialers(mirror: Arc<Mirror>) {
    for p in mirror.group.peers.clone() {
        let mirror = mirror.clone();
        tokio::spawn(async move {
            let mut logged = false;
            // redials left at the short interval since a link that was up ended
            let mut quick = 0u32;
            loop {
                let mut linked = false;
                match dial_once(&mirror, p.id, &p.name, p.addr, &mut logged, &mut linked).await {
                    Ok(()) => {}
                    Err(e) => {
                        if !logged {
                            tracing::info!(peer = p.name, addr = %p.addr, error = %e, "peer link down");
                            logged = true;
                        }
                    }
                }
                // A link that was up just ended: redial at once — a refusal proves the
                // peer's process gone (the primary fails it out then, not on the lost link,
                // and a secondary takes over on it). A process that is still dying (kill -9)
                // may accept the redial and reset it before it closes its listener: redial
                // again after REDIAL_QUICK, a few times, before the usual REDIAL — the
                // single-kill stall was 200 ms longer whenever the first redial came too
                // early (scripts/bench ONLY=failover, session 15).
                if linked {
                    quick = REDIALS_QUICK;
                } else if quick > 0 {
                    quick -= 1;
                    tokio::time::sleep(REDIAL_QUICK).await;
                } else {
                    tokio::time::sleep(REDIAL).await;
                }
            }
        });
    }
}

async fn dial_once(
    mirror: &Arc<Mirror>,
    id: MemberId,
    name: &str,
    addr: std::net::SocketAddr,
    logged: &mut bool,
    linked: &mut bool,
) -> Result<(), PeerError> {
    let sock = match tokio::time::timeout(HANDSHAKE, TcpStream::connect(addr)).await {
        Err(_) => return Err(PeerError::Timeout),
        Ok(Err(e)) => {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                // the host answered, nothing listens: the member's process is gone
                mirror.refused(id, mirror.local.now());
            }
            return Err(e.into());
        }
        Ok(Ok(s)) => s,
    };
    let _ = sock.set_nodelay(true);
    // the keys in force when the connection starts (a reload may rotate them later)
    let keys = mirror.group.tls.as_ref().map(|t| t.keys());
    let (rd, mut wr) = dialed(keys.as_deref(), sock, name).await?;
    let mut rd = Reader {
        rd,
        buf: BytesMut::with_capacity(64 * 1024),
        dec: FrameDecoder,
    };
    tokio::time::timeout(HANDSHAKE, handshake(mirror, &mut rd, &mut wr, Some(name)))
        .await
        .map_err(|_| PeerError::Timeout)??;
    tracing::info!(peer = name, %addr, "peer link up (we send)");
    *logged = false;
    *linked = true;
    let link = Link::spawn(wr);
    let m = &mirror;
    m.link_up(id, link, mirror.local.now());
    let r = loop {
        match rd.next().await {
            Ok(msg) => m.on_primary_link_msg(id, msg, mirror.local.now()),
            Err(e) => break e,
        }
    };
    m.link_down(id, mirror.local.now());
    Err(r)
}

/// Accepts peer connections forever.
pub async fn serve(mirror: Arc<Mirror>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND));
    loop {
        let Ok((sock, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many peer connections; refused");
            continue;
        };
        let mirror = mirror.clone();
        tokio::spawn(async move {
            if let Err(e) = inbound(&mirror, sock).await {
                match e {
                    PeerError::Refused(why) => {
                        tracing::warn!(%addr, "peer refused: {why}")
                    }
                    e => tracing::info!(%addr, error = %e, "peer connection ended"),
                }
            }
            drop(permit);
        });
    }
}

async fn inbound(mirror: &Arc<Mirror>, sock: TcpStream) -> Result<(), PeerError> {
    let _ = sock.set_nodelay(true);
    // the keys in force when the connection starts, for the handshake and the name check
    let keys = mirror.group.tls.as_ref().map(|t| t.keys());
    let tls = keys.as_deref();
    let (rd, mut wr, chain) = accepted(tls, sock).await?;
    let mut rd = Reader {
        rd,
        buf: BytesMut::with_capacity(64 * 1024),
        dec: FrameDecoder,
    };
    let name = tokio::time::timeout(HANDSHAKE, handshake(mirror, &mut rd, &mut wr, None))
        .await
        .map_err(|_| PeerError::Timeout)??;
    if let Some(t) = tls {
        if !t.certifies(&chain, &name) {
            return Err(PeerError::Refused(format!(
                "the peer calls itself {name} but its certificate does not name it"
            )));
        }
    }
    let m = &mirror;
    let from = m
        .group
        .peer(&name)
        .map(|p| p.id)
        .ok_or_else(|| PeerError::Refused(format!("{name} is not a configured peer")))?;
    tracing::info!(peer = name, "peer link up (we receive)");
    let out = Link::spawn(wr);
    let r = inbound_loop(mirror, &mut rd, from, &name, out).await;
    m.sync_end(from);
    r
}

async fn inbound_loop(
    mirror: &Arc<Mirror>,
    rd: &mut Reader,
    from: MemberId,
    name: &str,
    out: Link,
) -> Result<(), PeerError> {
    let m = &mirror;
    loop {
        let msg = rd.next().await?;
        m.heard(from, mirror.local.now());
        match msg {
            PeerMsg::Join {
                export,
                epoch,
                base,
                history,
                pristine,
                prev,
            } => {
                if let Some(reply) = m.join_after_resync(
                    from,
                    ExportId(export),
                    epoch,
                    base,
                    history,
                    out.clone(),
                    mirror.local.now(),
                ) {
                    let _ = out.try_send(reply.to_frame().into());
                    continue;
                }
                let role = m.role(ExportId(export));
                let reply = match (role.as_deref(), mirror.local.export(ExportId(export))) {
                    (Some(Role::Secondary(ss)), Some(ex)) => ss.on_join(
                        m,
                        ex,
                        from,
                        epoch,
                        base,
                        history,
                        pristine,
                        prev,
                        out.clone(),
                        mirror.local.now(),
                    ),
                    (Some(Role::Standby(sb)), Some(_)) => m.standby_join(
                        sb,
                        from,
                        epoch,
                        base,
                        history,
                        prev,
                        out.clone(),
                        mirror.local.now(),
                    ),
                    (Some(Role::Primary(_)), _)
                        if m.yields(
                            ExportId(export),
                            Epoch(crate::mirror::read_epoch(&m.state_dir, ExportId(export))),
                            from,
                            Epoch(epoch),
                        ) =>
                    {
                        // someone took over in a newer epoch while we were away: step down
                        m.deposed(
                            ExportId(export),
                            mirror.local.now(),
                            format!("{name} leads epoch {epoch}"),
                        );
                        PeerMsg::JoinReply {
                            export,
                            ok: false,
                            reason: "was primary; stepped down; needs resync".into(),
                            want: m.want(ExportId(export)),
                        }
                    }
                    _ => PeerMsg::JoinReply {
                        export,
                        ok: false,
                        reason: format!(
                            "{} is not a secondary of export {export} (or needs resync)",
                            m.group.me
                        ),
                        want: ftnfs_wire::peer::Want::Nothing,
                    },
                };
                let joined = matches!(reply, PeerMsg::JoinReply { ok: true, .. });
                let known = m.known_epoch(ExportId(export));
                if !joined && known > epoch {
                    // a Join of an older epoch than one known here: someone took over since
                    // the asker led. `Refuse` goes first, so the asker is deposed before it
                    // reads the refusal — which alone would only put us out of its stream
                    // and let it release updates without us (a restarted, sealed primary
                    // resumed while the member that took over from it lived on)
                    let _ = out.try_send(
                        PeerMsg::Refuse {
                            export,
                            epoch: known,
                            seq: 0,
                        }
                        .to_frame()
                        .into(),
                    );
                }
                let _ = out.try_send(reply.to_frame().into());
                if joined {
                    // our cached replies go to the primary we now follow: it may have lost its
                    // own (a restart), and a retransmission reaching it must be answered, not
                    // executed again (tests/sim_group.rs)
                    send_replies(mirror, &out, export);
                }
            }
            PeerMsg::WitnessQuery { about, export } => {
                let ms_ago = m.answer_query(&about, mirror.local.now());
                // an answer that lets the asker take over: the member asked about must not
                // serve alone any more once it is heard again (WitnessLost)
                m.reported_lost(&about, ms_ago);
                let epoch = m.known_epoch(ExportId(export));
                let reply = PeerMsg::WitnessSeen {
                    about,
                    ms_ago,
                    export,
                    epoch,
                };
                let _ = out.try_send(reply.to_frame().into());
            }
            PeerMsg::Heartbeat { export: 0, seq, .. } => {
                // a member's liveness ping (to a witness, or any member): answer it with its
                // own time, or, if this witness reported it lost since, with WitnessLost
                let answer = if m.take_reported_lost(from) {
                    PeerMsg::WitnessLost
                } else {
                    PeerMsg::ping_at(seq)
                };
                let _ = out.try_send(answer.to_frame().into());
            }
            PeerMsg::Heartbeat { export, epoch, seq } => {
                if let Some(role) = m.role(ExportId(export)) {
                    match &*role {
                        Role::Secondary(ss) => {
                            if ss.primary == from || ss.others.contains(&from) {
                                ss.on_heartbeat(from, epoch, seq, mirror.local.now());
                            }
                        }
                        // an older primary's heartbeat: it has not noticed the takeover
                        // (strictly older only: a heartbeat of our own epoch is an echo)
                        Role::Primary(ps)
                            if ps.epoch().is_some_and(|ours| {
                                ftnfs_core::member::fencing::deposed_by(Epoch(epoch), ours)
                            }) =>
                        {
                            if let Some(ours) = ps.epoch() {
                                refuse_older(&out, export, ours, seq)
                            }
                        }
                        // a secondary's echo of our heartbeat: it follows our epoch
                        Role::Primary(_) => m.echoed(ExportId(export), from, epoch, seq),
                        Role::Standby(_) => {}
                    }
                }
            }
            PeerMsg::ReadLease { export, epoch, at } => {
                if let Some(role) = m.role(ExportId(export)) {
                    if let Role::Secondary(ss) = &*role {
                        ss.on_read_lease(from, epoch, at, m.group.failover.lease_ms());
                    }
                }
            }
            PeerMsg::Update {
                export,
                epoch,
                seq,
                deps,
                barrier,
                payload,
            } => {
                if let Some(role) = m.role(ExportId(export)) {
                    refuse_if_deposed(m, &role, &out, from, export, epoch, seq);
                    if let Role::Secondary(ss) = &*role {
                        ss.on_update(
                            mirror,
                            from,
                            Update {
                                export: ExportId(export),
                                epoch: ftnfs_core::ids::Epoch(epoch),
                                seq: SeqNo(seq),
                                deps: deps.into_iter().map(SeqNo).collect(),
                                barrier,
                                payload: Arc::new(Forwarded {
                                    payload,
                                    proxied: None,
                                }),
                            },
                        );
                    }
                }
            }
            PeerMsg::Order {
                export,
                epoch,
                seq,
                deps,
                barrier,
                payload,
                args_len,
                args_sum,
            } => {
                if let Some(role) = m.role(ExportId(export)) {
                    refuse_if_deposed(m, &role, &out, from, export, epoch, seq);
                    if let Role::Secondary(ss) = &*role {
                        ss.on_order(
                            mirror,
                            from,
                            Epoch(epoch),
                            SeqNo(seq),
                            deps.into_iter().map(SeqNo).collect(),
                            barrier,
                            payload,
                            ftnfs_core::mirror::proxy::Fingerprint {
                                len: args_len,
                                sum: args_sum,
                            },
                            m.local.now(),
                        );
                    }
                }
            }
            PeerMsg::SyncBegin {
                export,
                epoch,
                full,
            } => {
                if let Err(why) = m.sync_begin(
                    from,
                    ExportId(export),
                    epoch,
                    full,
                    out.clone(),
                    mirror.local.now(),
                ) {
                    m.event(
                        mirror.local.now(),
                        ExportId(export),
                        format!("refused a resync from {name}: {why}"),
                    );
                    let _ = out.try_send(
                        PeerMsg::SyncRoundDone {
                            export,
                            round: 0,
                            ok: false,
                            reason: why,
                        }
                        .to_frame()
                        .into(),
                    );
                }
            }
            msg @ (PeerMsg::SyncObject { .. }
            | PeerMsg::SyncRoundEnd { .. }
            | PeerMsg::SyncReplies { .. }
            | PeerMsg::SyncLocks { .. }) => {
                let export = match &msg {
                    PeerMsg::SyncObject { export, .. }
                    | PeerMsg::SyncRoundEnd { export, .. }
                    | PeerMsg::SyncReplies { export, .. }
                    | PeerMsg::SyncLocks { export, .. } => ExportId(*export),
                    _ => unreachable!("matched above"),
                };
                // waits while the applying thread is behind: the survivor slows down
                if let Some(tx) = m.sync_tx(export, from) {
                    let _ = tx.send(msg).await;
                }
            }
            PeerMsg::TakeOver { export } => {
                m.take_over_asked(ExportId(export), from, mirror.local.now());
            }
            PeerMsg::FailedOut { export, epoch } => {
                if let Some(role) = m.role(ExportId(export)) {
                    if let Role::Secondary(ss) = &*role {
                        ss.failed_out(m, from, epoch, mirror.local.now());
                    }
                }
            }
            PeerMsg::Probe { export } => {
                let reply = m.probe_reply(ExportId(export), from, mirror.local.now());
                let _ = out.try_send(reply.to_frame().into());
            }
            other => {
                return Err(PeerError::Refused(format!(
                    "unexpected message on a secondary link: {other:?}"
                )))
            }
        }
    }
}

/// Answers a message of an older epoch with a `Refuse` of ours (it deposes the sender).
/// An update or order reached us as primary from `from` in `epoch`: if that is an older
/// primary that missed the takeover, tell it at once (a Refuse of a newer epoch deposes it)
/// instead of letting it wait for an acknowledgement, fail us out and release alone.
fn refuse_if_deposed(
    m: &Mirror,
    role: &Role,
    out: &Link,
    from: MemberId,
    export: u32,
    epoch: u64,
    seq: u64,
) {
    if let Role::Primary(ps) = role {
        if let Some(ours) = ps.epoch() {
            if m.outranks(ExportId(export), ours, from, Epoch(epoch)) {
                refuse_older(out, export, ours, seq);
            }
        }
    }
}

fn refuse_older(out: &Link, export: u32, ours: Epoch, seq: u64) {
    let _ = out.try_send(
        PeerMsg::Refuse {
            export,
            epoch: ours.0,
            seq,
        }
        .to_frame()
        .into(),
    );
}

/// Hands every cached reply of this member to the peer on `out` (bounded chunks; best effort:
/// a full queue drops the rest).
fn send_replies(mirror: &Arc<Mirror>, out: &Link, export: u32) {
    let replies = mirror.local.cached_replies();
    for chunk in replies.chunks(ftnfs_wire::peer::MAX_SYNC_REPLIES as usize) {
        let msg = PeerMsg::SyncReplies {
            export,
            replies: chunk.to_vec(),
        };
        if out.try_send(msg.to_frame().into()).is_err() {
            break;
        }
    }
}
