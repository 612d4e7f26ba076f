//! A secondary in proxy mode (`ftnfs_core::mirror::proxy`, DESIGN.md decision 8): every
//! member received the client's update datagram, so the primary sends an order without the
//! arguments; this member keeps the datagram, joins it with the order and applies the update
//! as if the primary had forwarded it — or fetches it whole when it lacks the datagram.

use super::*;
use ftnfs_core::member::states::Heard;
use ftnfs_core::mirror::proxy::{Fingerprint, ProxyConfig, ProxyEffect, ProxyHold, RequestKey};
use ftnfs_core::mirror::Update;

/// What an order carries besides the arguments: the update's place and the primary's
/// decisions.
pub(super) struct Order {
    epoch: Epoch,
    deps: Vec<SeqNo>,
    barrier: bool,
    payload: UpdatePayload,
}

/// The held datagrams of one secondary.
pub(super) type Held = ProxyHold<Order, bytes::Bytes>;

/// A table for a secondary that starts following a stream.
pub(super) fn held() -> Held {
    ProxyHold::new(ProxyConfig::default())
}

/// The fingerprint of a request's arguments: their length and CRC-32.
pub fn fingerprint(args: &[u8]) -> (u32, u32) {
    (args.len() as u32, crc32fast::hash(args))
}

fn print_of(args: &[u8]) -> Fingerprint {
    let (len, sum) = fingerprint(args);
    Fingerprint { len, sum }
}

/// Which client request an origin is (its address as 16 bytes, IPv4 mapped).
pub(super) fn key_of(ip: std::net::IpAddr, port: u16, xid: u32) -> RequestKey {
    let ip = match ip {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    };
    RequestKey { ip, port, xid }
}

fn key_of_origin(o: &ftnfs_wire::peer::Origin) -> Option<RequestKey> {
    let ip = ftnfs_wire::peer::ip_from_bytes(&o.ip)?;
    Some(key_of(ip, o.port, o.xid))
}

impl Mirror {
    /// `from` reports `count` client update datagrams of `export` that we (its primary) never
    /// ordered: past `--unknown-alert` within the window, an event; past `--unknown-exclude`
    /// while this primary received fewer itself, a step-down for `from`, which hears the
    /// clients (`ftnfs_core::member::exclusion`), as on the operator's demote.
    pub(super) fn unknown_reported(
        &self,
        ps: &PrimarySide,
        from: MemberId,
        count: u64,
        now: Millis,
    ) {
        let export = ps.export;
        let received = ps.datagrams.load(std::sync::atomic::Ordering::Relaxed);
        let heard = match ps.lead() {
            Some(mut c) => c.unknown_reported(
                from,
                count,
                received,
                &ps.secondaries,
                now,
                self.group.hearing,
            ),
            None => return,
        };
        let window = super::UNKNOWN_WINDOW_MS / 1000;
        match heard {
            Heard::Nothing => {}
            Heard::Alert { unknown } => self.event(
                now,
                export,
                format!(
                    "{unknown} client updates reached {} in {window} s that this primary never \
                     ordered: it may not receive the group's datagrams (multicast membership, \
                     switch)",
                    self.group.name_of(from),
                ),
            ),
            Heard::HandingOver {
                to,
                unknown,
                received,
            } => {
                // as on the operator's word: it does not take the role back by itself
                if let Some(m) = lock(&self.node).member(export) {
                    m.demoted();
                }
                self.stepping_down(
                    ps,
                    now,
                    format!(
                        "{unknown} client updates reached {} in {window} s unordered, {received} \
                         reached this primary: it does not hear the group's datagrams; \
                         stepping down for {}",
                        self.group.name_of(from),
                        self.group.name_of(to),
                    ),
                );
            }
        }
    }
}

impl SecondarySide {
    /// A client's update datagram that every member received: kept for the primary's order.
    /// Not joined to a stream: dropped (the new primary's window is sent whole).
    pub fn hold(
        &self,
        m: &Arc<Mirror>,
        client: std::net::SocketAddr,
        xid: u32,
        args: bytes::Bytes,
        now: Millis,
    ) {
        let mut c = lock(&self.core);
        let Some(sc) = c.as_mut() else { return };
        let key = key_of(client.ip(), client.port(), xid);
        sc.proxy.hold(key, print_of(&args), args, now);
        self.drain_proxy(sc, m);
    }

    /// A client's update datagram for a request applied here already: counted for the
    /// primary (`ProxyHold::repeated`).
    pub fn repeated(&self, client: std::net::SocketAddr, xid: u32, now: Millis) {
        if let Some(sc) = lock(&self.core).as_mut() {
            sc.proxy
                .repeated(key_of(client.ip(), client.port(), xid), now);
        }
    }

    /// A client's read datagram, which only the primary answers: noted, so that a
    /// retransmission long after it counts as unknown (`ProxyHold::read`).
    pub fn read_seen(&self, client: std::net::SocketAddr, xid: u32, now: Millis) {
        if let Some(sc) = lock(&self.core).as_mut() {
            sc.proxy.read(key_of(client.ip(), client.port(), xid), now);
        }
    }

    /// The primary's order `seq`: applied with the datagram held here, or fetched whole.
    /// Until its update is here it counts in the backlog (`Secondary::on_order`): a member
    /// with that hole is not in step at its watermark.
    #[allow(clippy::too_many_arguments)]
    pub fn on_order(
        &self,
        m: &Arc<Mirror>,
        from: MemberId,
        epoch: Epoch,
        seq: SeqNo,
        deps: Vec<SeqNo>,
        barrier: bool,
        payload: UpdatePayload,
        print: Fingerprint,
        now: Millis,
    ) {
        let mut c = lock(&self.core);
        let Some(sc) = c.as_mut() else { return };
        if !sc.accepts_from(from) {
            return;
        }
        let Some(key) = key_of_origin(&payload.origin) else {
            return;
        };
        if !sc.s.on_order(epoch, seq) {
            // another epoch (refused), or applied or under way already (a second copy):
            // answered as the update would be
            self.drain(sc, m);
            return;
        }
        let order = Order {
            epoch,
            deps,
            barrier,
            payload,
        };
        sc.proxy.on_order(seq, key, print, order, now);
        self.drain_proxy(sc, m);
    }

    /// The held table's timers: orders whose datagram did not come are fetched, datagrams
    /// no order claimed expire — and are reported to the primary as unknown requests.
    /// Returns when to run again.
    pub fn tick_proxy(&self, m: &Arc<Mirror>, now: Millis) -> Option<Millis> {
        let mut c = lock(&self.core);
        let sc = c.as_mut()?;
        sc.proxy.tick(now);
        self.drain_proxy(sc, m);
        let expired = sc.proxy.stats().unknown();
        if expired > sc.unknown_sent {
            // only to a primary that leads us now (member::exclusion::reports)
            let leads =
                ftnfs_core::member::exclusion::reports(sc.led_at(), now, m.settings.silence_ms());
            if sc.acks_to().is_some() && leads {
                let _ = sc.out.try_send(
                    PeerMsg::Unknown {
                        export: self.export.0,
                        epoch: sc.s.epoch().0,
                        count: (expired - sc.unknown_sent).min(u64::from(u32::MAX)) as u32,
                    }
                    .to_frame()
                    .into(),
                );
            }
            sc.unknown_sent = expired;
        }
        sc.proxy.poll_timeout()
    }

    /// A whole update arrived: an order waiting for the same number is done with.
    pub(super) fn delivered(sc: &mut SecondaryCore, update: &Update<Arc<Forwarded>>) {
        sc.proxy
            .delivered(update.seq, key_of_origin(&update.payload.payload.origin));
    }

    fn drain_proxy(&self, sc: &mut SecondaryCore, m: &Arc<Mirror>) {
        let mut any = false;
        while let Some(e) = sc.proxy.poll_effect() {
            match e {
                ProxyEffect::Apply { seq, order, args } => {
                    let mut payload = order.payload;
                    payload.args = args;
                    m.note_client(&payload.origin, m.local.now());
                    sc.s.on_update(Update {
                        export: self.export,
                        epoch: order.epoch,
                        seq,
                        deps: order.deps,
                        barrier: order.barrier,
                        payload: Arc::new(Forwarded {
                            payload,
                            proxied: None,
                        }),
                    });
                    any = true;
                }
                ProxyEffect::Fetch { seq } => {
                    let _ = sc.out.try_send(
                        PeerMsg::Fetch {
                            export: self.export.0,
                            epoch: sc.s.epoch().0,
                            seq: seq.0,
                        }
                        .to_frame()
                        .into(),
                    );
                }
            }
        }
        if any {
            self.drain(sc, m);
        }
        if sc.proxy.waiting() > 0 {
            m.wake.notify_one(); // a fetch deadline now exists
        }
    }
}
