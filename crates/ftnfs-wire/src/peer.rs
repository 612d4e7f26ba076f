//! The peer channel between members (DESIGN.md decision 8, relay mode): framing and messages.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of XDR: a `u32` kind and
//! the kind's fields. Lengths are checked against [`MAX_FRAME`] before anything is allocated
//! ([`FrameDecoder`] is incremental: "not enough bytes yet" is `Ok(None)`).
//!
//! ```text
//!  dialer                                   listener
//!    ── Hello{version, name, nonce} ──▶
//!    ◀── Hello{version, name, nonce} ──
//!    ── Proof{hmac(secret, their nonce…)} ▶
//!    ◀── Proof{hmac(secret, their nonce…)} ─
//!    ── Join / Update ──────────────────▶   (primary → secondary)
//!    ◀── JoinReply / Ack / Refuse ───────   (secondary → primary)
//! ```
//! Both sides prove knowledge of the group's shared secret over the other's fresh nonce
//! before anything else is accepted; the HMAC itself is computed by the daemon.

use bytes::{Buf, BytesMut};

use crate::nfs3::MAX_IO;
use crate::xdr::{XdrError, XdrReader, XdrWriter};

/// Version of this protocol; a peer speaking another is refused.
pub const VERSION: u32 = 3;
/// Largest frame: a maximal WRITE's arguments plus room for the update's envelope.
pub const MAX_FRAME: usize = MAX_IO as usize + 64 * 1024;
/// Longest member name.
pub const MAX_NAME: u32 = 64;
/// Most dependencies of one update.
pub const MAX_DEPS: u32 = 256;
/// Most supplementary groups in a forwarded credential (AUTH_SYS allows 16).
pub const MAX_GIDS: u32 = 16;
/// Most touches a rejoining member reports from its own change log.
pub const MAX_WANT_IDS: u32 = 32768;
/// `first` of a reported touch that names the whole object, not blocks of its data.
pub const WHOLE: u64 = u64::MAX;
/// Most directory entries in one resync frame (a directory can span several).
pub const MAX_SYNC_ENTRIES: u32 = 4096;
/// Most objects one `SyncNeed` asks for.
pub const MAX_SYNC_NEEDS: u32 = 4096;
/// Longest entry name on the peer channel.
pub const MAX_ENTRY_NAME: u32 = 255;
/// Most cached replies in one `SyncReplies`.
pub const MAX_SYNC_REPLIES: u32 = 1024;
/// Longest cached reply handed over (a non-idempotent reply is a few hundred bytes).
pub const MAX_CACHED_REPLY: u32 = 4096;
/// Most lock table entries in one `SyncLocks` (an entry is at most ~6 KiB: its names,
/// owner handle and callback arguments are bounded by NLM's own limits).
pub const MAX_SYNC_LOCKS: u32 = 128;
/// Longest client name or owner handle of a lock table entry (NLM's `LM_MAXSTRLEN`).
pub const MAX_LOCK_FIELD: u32 = crate::nlm::LM_MAXSTRLEN;
/// Longest GRANTED callback argument of a waiter (nlm4_testargs: a cookie and a lock, each
/// string at most `LM_MAXSTRLEN`).
pub const MAX_LOCK_CALLBACK: u32 = 6 * crate::nlm::LM_MAXSTRLEN;
// the largest `SyncLocks` fits in a frame
const _: () = assert!(
    (MAX_SYNC_LOCKS as usize) * (2 * MAX_LOCK_FIELD as usize + MAX_LOCK_CALLBACK as usize + 96)
        < MAX_FRAME
);
/// Arguments at least this long are shared with the buffer they arrived in, not copied
/// ([`PeerMsg::decode_shared`]; the daemon does the same with a client's record).
pub const SHARE_FROM: usize = 64 * 1024;
/// `UpdatePayload::proc_` of an NLM call (issue 14): this plus the NLM v4 procedure. The
/// NFSv3 procedures are below it.
pub const NLM_UPDATE: u32 = 0x1000;

/// A client address as the peer channel carries it (`Origin::ip`, `CachedReply::client`):
/// 4 bytes for IPv4, 16 for IPv6.
pub fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The address in [`ip_bytes`]' form, or `None` if it is neither 4 nor 16 bytes.
pub fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// One entry of a duplicate request cache on the peer channel: the request's key and the
/// reply it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedReply {
    /// Client address: 4 or 16 bytes.
    pub client: Vec<u8>,
    /// Transaction id.
    pub xid: u32,
    /// Program.
    pub prog: u32,
    /// Version.
    pub vers: u32,
    /// Procedure.
    pub proc_: u32,
    /// Checksum of the arguments.
    pub args_sum: u64,
    /// The whole reply record.
    pub reply: Vec<u8>,
}

/// Whose lock: the client host's name, the process id and the owner handle (NLM's owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    /// The client host's `caller_name`.
    pub host: Vec<u8>,
    /// The owner's process id.
    pub svid: u32,
    /// The owner handle.
    pub oh: Vec<u8>,
}

/// One entry of an export's lock table on the peer channel (a resync's last pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRecord {
    /// A lock held on bytes `start..=end` of a file.
    Held {
        /// File id.
        file: u64,
        /// Whose.
        owner: LockOwner,
        /// Exclusive or shared.
        exclusive: bool,
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
    },
    /// A blocked LOCK waiting for one (in the order they came, per file).
    Waiting {
        /// File id.
        file: u64,
        /// Who waits.
        owner: LockOwner,
        /// Exclusive or shared.
        exclusive: bool,
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
        /// The client's address (4 or 16 bytes): where its GRANTED callback goes.
        client: Vec<u8>,
        /// The GRANTED callback's arguments (nlm4_testargs, XDR).
        callback: Vec<u8>,
    },
    /// A DOS share reservation.
    Share {
        /// File id.
        file: u64,
        /// Whose.
        owner: LockOwner,
        /// What it does (1 read, 2 write).
        access: u32,
        /// What it denies the others.
        deny: u32,
    },
}

fn encode_owner(w: &mut XdrWriter, o: &LockOwner) {
    w.opaque(&o.host).u32(o.svid).opaque(&o.oh);
}

fn decode_owner(r: &mut XdrReader<'_>) -> Result<LockOwner, XdrError> {
    Ok(LockOwner {
        host: r.opaque(MAX_LOCK_FIELD)?.to_vec(),
        svid: r.u32()?,
        oh: r.opaque(MAX_LOCK_FIELD)?.to_vec(),
    })
}

impl LockRecord {
    fn encode(&self, w: &mut XdrWriter) {
        match self {
            LockRecord::Held {
                file,
                owner,
                exclusive,
                start,
                end,
            } => {
                w.u32(0).u64(*file);
                encode_owner(w, owner);
                w.bool(*exclusive).u64(*start).u64(*end);
            }
            LockRecord::Waiting {
                file,
                owner,
                exclusive,
                start,
                end,
                client,
                callback,
            } => {
                w.u32(1).u64(*file);
                encode_owner(w, owner);
                w.bool(*exclusive)
                    .u64(*start)
                    .u64(*end)
                    .opaque(client)
                    .opaque(callback);
            }
            LockRecord::Share {
                file,
                owner,
                access,
                deny,
            } => {
                w.u32(2).u64(*file);
                encode_owner(w, owner);
                w.u32(*access).u32(*deny);
            }
        }
    }

    fn decode(r: &mut XdrReader<'_>) -> Result<LockRecord, XdrError> {
        let kind = r.u32()?;
        let file = r.u64()?;
        let owner = decode_owner(r)?;
        Ok(match kind {
            0 => LockRecord::Held {
                file,
                owner,
                exclusive: r.bool()?,
                start: r.u64()?,
                end: r.u64()?,
            },
            1 => LockRecord::Waiting {
                file,
                owner,
                exclusive: r.bool()?,
                start: r.u64()?,
                end: r.u64()?,
                client: r.opaque(16)?.to_vec(),
                callback: r.opaque(MAX_LOCK_CALLBACK)?.to_vec(),
            },
            2 => LockRecord::Share {
                file,
                owner,
                access: r.u32()?,
                deny: r.u32()?,
            },
            value => {
                return Err(XdrError::BadDiscriminant {
                    what: "lock record",
                    value,
                })
            }
        })
    }

    /// Bytes it takes on the wire, about.
    fn size(&self) -> usize {
        let o = |o: &LockOwner| o.host.len() + o.oh.len() + 16;
        match self {
            LockRecord::Held { owner, .. } | LockRecord::Share { owner, .. } => o(owner) + 40,
            LockRecord::Waiting {
                owner,
                client,
                callback,
                ..
            } => o(owner) + client.len() + callback.len() + 56,
        }
    }
}

/// Why a frame cannot be decoded; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerWireError {
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// The body is not a valid message.
    #[error("bad message: {0}")]
    Xdr(#[from] XdrError),
    /// Unknown message kind.
    #[error("unknown message kind {0}")]
    Kind(u32),
}

/// Incremental frame decoder.
#[derive(Debug, Default)]
pub struct FrameDecoder;

impl FrameDecoder {
    /// Takes one whole frame body off the front of `buf`, or `Ok(None)` if it is not all
    /// there yet.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, PeerWireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(PeerWireError::TooLong(len));
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(len)))
    }
}

/// The credential and origin of a forwarded client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Client address: 4 or 16 bytes.
    pub ip: Vec<u8>,
    /// Client source port.
    pub port: u16,
    /// RPC transaction id.
    pub xid: u32,
    /// AUTH_NONE (the export's anonymous user).
    pub anonymous: bool,
    /// AUTH_SYS uid.
    pub uid: u32,
    /// AUTH_SYS gid.
    pub gid: u32,
    /// AUTH_SYS groups.
    pub gids: Vec<u32>,
}

/// What a secondary needs to apply one client update exactly as the primary did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePayload {
    /// Where the request came from (for the DRC and the permission checks).
    pub origin: Origin,
    /// NFSv3 procedure.
    pub proc_: u32,
    /// Identity of a created object: file id and generation.
    pub new_id: Option<(u64, u32)>,
    /// Server time of the update (seconds, nanoseconds).
    pub time: (i64, u32),
    /// The procedure's arguments, as the client sent them (shared, not copied: a 1 MiB
    /// WRITE's data stays in the client's record on the primary and in the peer frame on a
    /// secondary).
    pub args: bytes::Bytes,
}

/// What a member that refuses a `Join` needs before it can be a mirror again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Nothing (the refusal has another cause: an older epoch, not a listed primary…).
    Nothing,
    /// A partial resync: this mirror holds every update of stream `history` up to `from`;
    /// beyond that it may have applied some updates, all of which touched only `ids`.
    Partial {
        /// The stream it last applied.
        history: u64,
        /// Everything up to here is applied.
        from: u64,
        /// What its own change log shows touched after `from`: (file id, first block, last
        /// block) of file data, or (file id, [`WHOLE`], 0) for the whole object.
        ids: Vec<(u64, u64, u64)>,
    },
    /// A full resync: the state of this mirror is unknown (never synced, damaged, an
    /// interrupted resync, a crash of its host).
    Full,
}

/// One directory entry as a resync sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// Name.
    pub name: Vec<u8>,
    /// File id.
    pub id: u64,
    /// Generation.
    pub gen: u32,
}

/// One object of a resync (or one piece of it): identity, where it lives, attributes, and a
/// piece of its content (file data at `offset`, a symlink's target, or directory entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncObj {
    /// File id of the directory holding the name below.
    pub parent: u64,
    /// Its name there (empty for the root).
    pub name: Vec<u8>,
    /// File id.
    pub id: u64,
    /// Generation.
    pub gen: u32,
    /// NFS type (ftype3).
    pub ftype: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Device numbers (character and block devices).
    pub rdev: (u32, u32),
    /// Access time.
    pub atime: (i64, u32),
    /// Modification time.
    pub mtime: (i64, u32),
    /// Where `data` goes in the file.
    pub offset: u64,
    /// File data, or a symlink's target.
    pub data: Vec<u8>,
    /// Directory entries (a directory spans several frames when it is big).
    pub entries: Vec<SyncEntry>,
    /// The last piece of this object.
    pub last: bool,
    /// Only some blocks of a file's data are sent (the member has the rest): a member that
    /// lacks the object asks for all of it instead.
    pub partial: bool,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// First message of each side.
    Hello {
        /// Protocol version.
        version: u32,
        /// Sender's member name.
        name: String,
        /// Fresh random bytes the other side must sign.
        nonce: [u8; 16],
    },
    /// HMAC-SHA256 over the other side's nonce (see the daemon's `peer.rs`).
    Proof {
        /// The MAC.
        mac: [u8; 32],
    },
    /// Primary → secondary: become (or stay) my secondary for `export`.
    Join {
        /// Export id.
        export: u32,
        /// The primary's epoch.
        epoch: u64,
        /// The update number after which the stream continues.
        base: u64,
        /// Identifies the primary's incarnation of this export's update stream.
        history: u64,
        /// The primary's mirror holds nothing but an empty root.
        pristine: bool,
        /// After a takeover: the stream the new primary was a secondary of (0 if none); a
        /// secondary of that stream at exactly `base` may follow without a copy.
        prev: u64,
    },
    /// Member → witness: when did you last hear from member `about`?
    WitnessQuery {
        /// The member asked about.
        about: String,
        /// The export whose primary it is (0: none); a member answers its epoch of it.
        export: u32,
    },
    /// Witness → member: the answer (`u64::MAX`: never).
    WitnessSeen {
        /// The member asked about.
        about: String,
        /// Milliseconds since the witness last heard from it.
        ms_ago: u64,
        /// The export of the query.
        export: u32,
        /// The highest epoch of the export asked about that the answering member knows (0:
        /// the witness, which knows none): an asker that follows an older epoch has missed a
        /// takeover and must not take over itself.
        epoch: u64,
    },
    /// Primary → secondary, every heartbeat interval on an idle link.
    Heartbeat {
        /// Export id.
        export: u32,
        /// The primary's epoch.
        epoch: u64,
        /// Its last update number.
        seq: u64,
    },
    /// Secondary → primary: answer to `Join`.
    JoinReply {
        /// Export id.
        export: u32,
        /// Accepted.
        ok: bool,
        /// Why not.
        reason: String,
        /// What the member needs to join.
        want: Want,
    },
    /// Survivor → rejoining member: a resync starts (`full`: wipe the mirror first).
    SyncBegin {
        /// Export id.
        export: u32,
        /// The survivor's epoch.
        epoch: u64,
        /// Wipe the mirror and copy everything.
        full: bool,
    },
    /// Survivor → rejoining member: one object (or piece of one).
    SyncObject {
        /// Export id.
        export: u32,
        /// The object.
        obj: SyncObj,
    },
    /// Survivor → rejoining member: the end of a pass. `at` on the last pass: the mirror is
    /// now exactly the survivor's at update `seq` of stream `history` (writes are held).
    SyncRoundEnd {
        /// Export id.
        export: u32,
        /// Pass number.
        round: u64,
        /// (history, seq) the mirror stands at after the last pass.
        at: Option<(u64, u64)>,
    },
    /// Survivor → rejoining member, before the last pass end (writes held): the replies of
    /// the non-idempotent requests in its duplicate request cache, so a retransmission that
    /// reaches the member later gets its original reply (exactly once across roles).
    SyncReplies {
        /// Export id (of the resync; the replies may be of any export).
        export: u32,
        /// The cached replies.
        replies: Vec<CachedReply>,
    },
    /// Survivor → rejoining member, in the last pass (writes held, lock calls too): the
    /// export's lock table, in pieces; `first` empties the member's table before its records
    /// go in (a table with nothing in it is one empty `first` piece).
    SyncLocks {
        /// Export id.
        export: u32,
        /// The first piece.
        first: bool,
        /// Entries: held locks, waiters in their order, share reservations.
        records: Vec<LockRecord>,
    },
    /// Rejoining member → survivor: objects named in a directory that this mirror lacks.
    SyncNeed {
        /// Export id.
        export: u32,
        /// (directory id, name, file id) of each.
        needs: Vec<(u64, Vec<u8>, u64)>,
    },
    /// Rejoining member → survivor: everything of pass `round` is applied (or it failed).
    SyncRoundDone {
        /// Export id.
        export: u32,
        /// Pass number.
        round: u64,
        /// Applied.
        ok: bool,
        /// Why not.
        reason: String,
    },
    /// Listed primary (a secondary again after its resync) → primary: give the role back.
    Handoff {
        /// Export id.
        export: u32,
    },
    /// Primary (stood down) → the member that asked for the role: take over now.
    TakeOver {
        /// Export id.
        export: u32,
    },
    /// Witness → a member whose primary role it reported lost to another member (that one
    /// may have taken over): stop serving as primary now.
    WitnessLost,
    /// Primary → a secondary it failed out of its stream: replies go without it from now on,
    /// so it no longer follows (and may never take over from) this stream.
    FailedOut {
        /// Export id.
        export: u32,
        /// The primary's epoch.
        epoch: u64,
    },
    /// A member without a primary asks another what it is (startup negotiation).
    Probe {
        /// Export id.
        export: u32,
    },
    /// The answer to `Probe`.
    ProbeReply {
        /// Export id.
        export: u32,
        /// 1 primary, 2 secondary in step, 3 waiting secondary, 4 standby.
        state: u32,
        /// Highest epoch known.
        epoch: u64,
        /// The mirror is complete (no resync interrupted, no crash of its host).
        complete: bool,
        /// The stream it last applied or led, and the last update of it in its log.
        history: u64,
        /// See `history`.
        seq: u64,
    },
    /// Primary → secondary: one update.
    Update {
        /// Export id.
        export: u32,
        /// Epoch.
        epoch: u64,
        /// Number.
        seq: u64,
        /// Updates it waits for.
        deps: Vec<u64>,
        /// Waits for everything before it.
        barrier: bool,
        /// What to apply.
        payload: UpdatePayload,
    },
    /// Primary → proxy-mode secondary: update `seq` is the client request the secondary
    /// received itself (multicast delivery): everything an `Update` carries except the
    /// arguments (`payload.args` is empty), and their fingerprint (length, CRC-32).
    Order {
        /// Export id.
        export: u32,
        /// Epoch.
        epoch: u64,
        /// Number.
        seq: u64,
        /// Updates it waits for.
        deps: Vec<u64>,
        /// Waits for everything before it.
        barrier: bool,
        /// What to apply, without its arguments.
        payload: UpdatePayload,
        /// Length of the arguments the primary executed.
        args_len: u32,
        /// Their CRC-32.
        args_sum: u32,
    },
    /// Proxy-mode secondary → primary: send update `seq` whole (its datagram did not reach
    /// this member, or not as the primary executed it).
    Fetch {
        /// Export id.
        export: u32,
        /// Epoch.
        epoch: u64,
        /// Number.
        seq: u64,
    },
    /// Proxy-mode secondary → primary: `count` more client update datagrams reached this
    /// member and no order of the primary claimed them in time (patent pp. 28–30: requests
    /// the primary never executed — it may not receive the group's datagrams).
    Unknown {
        /// Export id.
        export: u32,
        /// The secondary's epoch.
        epoch: u64,
        /// Datagrams expired since the last report.
        count: u32,
    },
    /// Primary → its read server (split read/write exports, `member::read_lease`): a read
    /// lease on the echo of the heartbeat sent at `at` (the primary's clock it carried); the
    /// lease runs from when that heartbeat came.
    ReadLease {
        /// Export id.
        export: u32,
        /// The primary's epoch.
        epoch: u64,
        /// The heartbeat's clock value.
        at: u64,
    },
    /// Secondary → primary: `seq` applied with `status`.
    Ack {
        /// Export id.
        export: u32,
        /// Epoch.
        epoch: u64,
        /// Number.
        seq: u64,
        /// NFS status computed.
        status: u32,
    },
    /// Secondary → primary: update refused, the secondary is at another epoch.
    Refuse {
        /// Export id.
        export: u32,
        /// The secondary's epoch.
        epoch: u64,
        /// Number.
        seq: u64,
    },
}

const HELLO: u32 = 1;
const PROOF: u32 = 2;
const JOIN: u32 = 3;
const JOIN_REPLY: u32 = 4;
const UPDATE: u32 = 5;
const ACK: u32 = 6;
const REFUSE: u32 = 7;
const HEARTBEAT: u32 = 8;
const WITNESS_QUERY: u32 = 9;
const WITNESS_SEEN: u32 = 10;
const SYNC_BEGIN: u32 = 11;
const SYNC_OBJECT: u32 = 12;
const SYNC_ROUND_END: u32 = 13;
const SYNC_NEED: u32 = 14;
const SYNC_ROUND_DONE: u32 = 15;
const HANDOFF: u32 = 16;
const TAKE_OVER: u32 = 17;
const PROBE: u32 = 18;
const PROBE_REPLY: u32 = 19;
const SYNC_REPLIES: u32 = 20;
const FAILED_OUT: u32 = 21;
const WITNESS_LOST: u32 = 22;
const SYNC_LOCKS: u32 = 23;
const ORDER: u32 = 24;
const FETCH: u32 = 25;
const UNKNOWN: u32 = 26;
const READ_LEASE: u32 = 27;

impl PeerMsg {
    /// A liveness ping (a heartbeat of no export), which any member and the witness answer
    /// with another.
    pub fn ping() -> PeerMsg {
        PeerMsg::ping_at(0)
    }

    /// A liveness ping carrying `at` (the sender's clock), which the answer echoes: the
    /// sender learns when the ping it got an answer to was sent.
    pub fn ping_at(at: u64) -> PeerMsg {
        PeerMsg::Heartbeat {
            export: 0,
            epoch: 0,
            seq: at,
        }
    }
}

/// The frame of an `Update` built from borrowed parts (no copy of the payload's arguments
/// into a message first: they can be a 1 MiB WRITE).
pub fn update_frame(
    export: u32,
    epoch: u64,
    seq: u64,
    deps: &[u64],
    barrier: bool,
    payload: &UpdatePayload,
) -> Vec<u8> {
    ordered_frame(UPDATE, export, epoch, seq, deps, barrier, payload, |w| {
        w.opaque(&payload.args);
    })
}

/// The frame of an `Order`: an update's frame without its arguments, with their
/// fingerprint (`args_len`, `args_sum`) instead.
#[allow(clippy::too_many_arguments)]
pub fn order_frame(
    export: u32,
    epoch: u64,
    seq: u64,
    deps: &[u64],
    barrier: bool,
    payload: &UpdatePayload,
    args_len: u32,
    args_sum: u32,
) -> Vec<u8> {
    ordered_frame(ORDER, export, epoch, seq, deps, barrier, payload, |w| {
        w.u32(args_len).u32(args_sum);
    })
}

/// An `Update` or `Order` frame: everything but the tail (`tail`: the arguments or their
/// fingerprint).
#[allow(clippy::too_many_arguments)]
fn ordered_frame(
    tag: u32,
    export: u32,
    epoch: u64,
    seq: u64,
    deps: &[u64],
    barrier: bool,
    payload: &UpdatePayload,
    tail: impl FnOnce(&mut XdrWriter),
) -> Vec<u8> {
    let mut w = XdrWriter::with_capacity(payload.args.len() + 256);
    w.u32(0);
    w.u32(tag).u32(export).u64(epoch).u64(seq);
    w.u32(deps.len() as u32);
    for d in deps {
        w.u64(*d);
    }
    w.bool(barrier);
    let o = &payload.origin;
    w.opaque(&o.ip)
        .u32(o.port as u32)
        .u32(o.xid)
        .bool(o.anonymous)
        .u32(o.uid)
        .u32(o.gid)
        .u32(o.gids.len() as u32);
    for g in &o.gids {
        w.u32(*g);
    }
    w.u32(payload.proc_);
    match payload.new_id {
        Some((f, g)) => w.bool(true).u64(f).u32(g),
        None => w.bool(false),
    };
    w.u64(payload.time.0 as u64).u32(payload.time.1);
    tail(&mut w);
    let len = (w.len() - 4) as u32;
    w.patch(0, &len.to_be_bytes());
    w.into_inner()
}

/// The frame of a `SyncObject` carrying a piece of file data produced in place by `fill` (at
/// most `max` bytes; no copy of the data). Unless `last` says otherwise, the piece is the
/// last one when `fill` returns fewer than `max` bytes; then `size` is set to `obj.offset`
/// plus that. `obj.data` and `obj.entries` are ignored. Returns the frame and the byte count.
pub fn sync_data_frame<E>(
    export: u32,
    o: &SyncObj,
    max: usize,
    last: Option<bool>,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(Vec<u8>, usize), E> {
    let max = max.min(MAX_IO as usize);
    let mut w = XdrWriter::with_capacity(max + 256 + o.name.len());
    w.u32(0);
    let size_at = sync_object_head(&mut w, export, o);
    let n = w.opaque_fill(max, fill)?;
    let at_end = n < max;
    let last = last.unwrap_or(at_end);
    w.u32(0).bool(last).bool(o.partial);
    if last && at_end {
        w.patch(size_at, &(o.offset + n as u64).to_be_bytes());
    }
    let len = (w.len() - 4) as u32;
    w.patch(0, &len.to_be_bytes());
    Ok((w.into_inner(), n))
}

/// A `SyncObject`'s fields up to its data; returns where `size` was written.
fn sync_object_head(w: &mut XdrWriter, export: u32, o: &SyncObj) -> usize {
    w.u32(SYNC_OBJECT)
        .u32(export)
        .u64(o.parent)
        .opaque(&o.name)
        .u64(o.id)
        .u32(o.gen)
        .u32(o.ftype)
        .u32(o.mode)
        .u32(o.uid)
        .u32(o.gid);
    let size_at = w.len();
    w.u64(o.size)
        .u32(o.rdev.0)
        .u32(o.rdev.1)
        .u64(o.atime.0 as u64)
        .u32(o.atime.1)
        .u64(o.mtime.0 as u64)
        .u32(o.mtime.1)
        .u64(o.offset);
    size_at
}

fn string(r: &mut XdrReader<'_>, max: u32) -> Result<String, XdrError> {
    let b = r.opaque(max)?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

impl PeerMsg {
    /// Encodes the message as a whole frame (length prefix included).
    pub fn to_frame(&self) -> Vec<u8> {
        let mut w = XdrWriter::with_capacity(match self {
            PeerMsg::Update { payload, .. } => payload.args.len() + 256,
            PeerMsg::SyncObject { obj, .. } => obj.data.len() + obj.entries.len() * 280 + 512,
            PeerMsg::SyncNeed { needs, .. } => needs.len() * 280 + 64,
            PeerMsg::SyncReplies { replies, .. } => {
                replies.iter().map(|r| r.reply.len() + 64).sum::<usize>() + 64
            }
            PeerMsg::SyncLocks { records, .. } => {
                records.iter().map(LockRecord::size).sum::<usize>() + 64
            }
            PeerMsg::JoinReply {
                want: Want::Partial { ids, .. },
                ..
            } => ids.len() * 24 + 1200,
            _ => 128,
        });
        w.u32(0); // length, patched below
        match self {
            PeerMsg::Hello {
                version,
                name,
                nonce,
            } => {
                w.u32(HELLO)
                    .u32(*version)
                    .opaque(name.as_bytes())
                    .fixed(nonce);
            }
            PeerMsg::Proof { mac } => {
                w.u32(PROOF).fixed(mac);
            }
            PeerMsg::Join {
                export,
                epoch,
                base,
                history,
                pristine,
                prev,
            } => {
                w.u32(JOIN)
                    .u32(*export)
                    .u64(*epoch)
                    .u64(*base)
                    .u64(*history)
                    .bool(*pristine)
                    .u64(*prev);
            }
            PeerMsg::Heartbeat { export, epoch, seq } => {
                w.u32(HEARTBEAT).u32(*export).u64(*epoch).u64(*seq);
            }
            PeerMsg::WitnessQuery { about, export } => {
                w.u32(WITNESS_QUERY).opaque(about.as_bytes()).u32(*export);
            }
            PeerMsg::WitnessSeen {
                about,
                ms_ago,
                export,
                epoch,
            } => {
                w.u32(WITNESS_SEEN)
                    .opaque(about.as_bytes())
                    .u64(*ms_ago)
                    .u32(*export)
                    .u64(*epoch);
            }
            PeerMsg::JoinReply {
                export,
                ok,
                reason,
                want,
            } => {
                w.u32(JOIN_REPLY)
                    .u32(*export)
                    .bool(*ok)
                    .opaque(reason.as_bytes());
                match want {
                    Want::Nothing => {
                        w.u32(0);
                    }
                    Want::Partial { history, from, ids } => {
                        w.u32(1).u64(*history).u64(*from).u32(ids.len() as u32);
                        for (i, a, b) in ids {
                            w.u64(*i).u64(*a).u64(*b);
                        }
                    }
                    Want::Full => {
                        w.u32(2);
                    }
                }
            }
            PeerMsg::SyncBegin {
                export,
                epoch,
                full,
            } => {
                w.u32(SYNC_BEGIN).u32(*export).u64(*epoch).bool(*full);
            }
            PeerMsg::SyncObject { export, obj: o } => {
                sync_object_head(&mut w, *export, o);
                w.opaque(&o.data).u32(o.entries.len() as u32);
                for e in &o.entries {
                    w.opaque(&e.name).u64(e.id).u32(e.gen);
                }
                w.bool(o.last).bool(o.partial);
            }
            PeerMsg::SyncRoundEnd { export, round, at } => {
                w.u32(SYNC_ROUND_END).u32(*export).u64(*round);
                match at {
                    Some((h, s)) => w.bool(true).u64(*h).u64(*s),
                    None => w.bool(false),
                };
            }
            PeerMsg::SyncReplies { export, replies } => {
                w.u32(SYNC_REPLIES).u32(*export).u32(replies.len() as u32);
                for r in replies {
                    w.opaque(&r.client)
                        .u32(r.xid)
                        .u32(r.prog)
                        .u32(r.vers)
                        .u32(r.proc_)
                        .u64(r.args_sum)
                        .opaque(&r.reply);
                }
            }
            PeerMsg::SyncLocks {
                export,
                first,
                records,
            } => {
                w.u32(SYNC_LOCKS)
                    .u32(*export)
                    .bool(*first)
                    .u32(records.len() as u32);
                for rec in records {
                    rec.encode(&mut w);
                }
            }
            PeerMsg::SyncNeed { export, needs } => {
                w.u32(SYNC_NEED).u32(*export).u32(needs.len() as u32);
                for (p, n, i) in needs {
                    w.u64(*p).opaque(n).u64(*i);
                }
            }
            PeerMsg::SyncRoundDone {
                export,
                round,
                ok,
                reason,
            } => {
                w.u32(SYNC_ROUND_DONE)
                    .u32(*export)
                    .u64(*round)
                    .bool(*ok)
                    .opaque(reason.as_bytes());
            }
            PeerMsg::Handoff { export } => {
                w.u32(HANDOFF).u32(*export);
            }
            PeerMsg::TakeOver { export } => {
                w.u32(TAKE_OVER).u32(*export);
            }
            PeerMsg::FailedOut { export, epoch } => {
                w.u32(FAILED_OUT).u32(*export).u64(*epoch);
            }
            PeerMsg::WitnessLost => {
                w.u32(WITNESS_LOST);
            }
            PeerMsg::Probe { export } => {
                w.u32(PROBE).u32(*export);
            }
            PeerMsg::ProbeReply {
                export,
                state,
                epoch,
                complete,
                history,
                seq,
            } => {
                w.u32(PROBE_REPLY)
                    .u32(*export)
                    .u32(*state)
                    .u64(*epoch)
                    .bool(*complete)
                    .u64(*history)
                    .u64(*seq);
            }
            PeerMsg::Update {
                export,
                epoch,
                seq,
                deps,
                barrier,
                payload,
            } => return update_frame(*export, *epoch, *seq, deps, *barrier, payload),
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
                return order_frame(
                    *export, *epoch, *seq, deps, *barrier, payload, *args_len, *args_sum,
                )
            }
            PeerMsg::Fetch { export, epoch, seq } => {
                w.u32(FETCH).u32(*export).u64(*epoch).u64(*seq);
            }
            PeerMsg::Unknown {
                export,
                epoch,
                count,
            } => {
                w.u32(UNKNOWN).u32(*export).u64(*epoch).u32(*count);
            }
            PeerMsg::ReadLease { export, epoch, at } => {
                w.u32(READ_LEASE).u32(*export).u64(*epoch).u64(*at);
            }
            PeerMsg::Ack {
                export,
                epoch,
                seq,
                status,
            } => {
                w.u32(ACK).u32(*export).u64(*epoch).u64(*seq).u32(*status);
            }
            PeerMsg::Refuse { export, epoch, seq } => {
                w.u32(REFUSE).u32(*export).u64(*epoch).u64(*seq);
            }
        }
        let len = (w.len() - 4) as u32;
        w.patch(0, &len.to_be_bytes());
        w.into_inner()
    }

    /// Decodes a frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Result<PeerMsg, PeerWireError> {
        Self::decode_with(body, &bytes::Bytes::copy_from_slice)
    }

    /// [`decode`](Self::decode) of a frame body held in shared bytes: an update's large
    /// arguments (a WRITE's data) are a slice of it, not a copy. Small ones are copied, so
    /// that an update waiting in the window does not keep a whole receive buffer alive.
    pub fn decode_shared(body: &bytes::Bytes) -> Result<PeerMsg, PeerWireError> {
        Self::decode_with(body, &|a| {
            if a.len() >= SHARE_FROM {
                body.slice_ref(a)
            } else {
                bytes::Bytes::copy_from_slice(a)
            }
        })
    }

    fn decode_with(
        body: &[u8],
        share: &dyn Fn(&[u8]) -> bytes::Bytes,
    ) -> Result<PeerMsg, PeerWireError> {
        let mut r = XdrReader::new(body);
        let kind = r.u32()?;
        let m = match kind {
            HELLO => PeerMsg::Hello {
                version: r.u32()?,
                name: string(&mut r, MAX_NAME)?,
                nonce: r.fixed::<16>()?,
            },
            PROOF => PeerMsg::Proof {
                mac: r.fixed::<32>()?,
            },
            JOIN => PeerMsg::Join {
                export: r.u32()?,
                epoch: r.u64()?,
                base: r.u64()?,
                history: r.u64()?,
                pristine: r.bool()?,
                prev: r.u64()?,
            },
            WITNESS_QUERY => PeerMsg::WitnessQuery {
                about: string(&mut r, MAX_NAME)?,
                export: r.u32()?,
            },
            WITNESS_SEEN => PeerMsg::WitnessSeen {
                about: string(&mut r, MAX_NAME)?,
                ms_ago: r.u64()?,
                export: r.u32()?,
                epoch: r.u64()?,
            },
            HEARTBEAT => PeerMsg::Heartbeat {
                export: r.u32()?,
                epoch: r.u64()?,
                seq: r.u64()?,
            },
            JOIN_REPLY => PeerMsg::JoinReply {
                export: r.u32()?,
                ok: r.bool()?,
                reason: string(&mut r, 1024)?,
                want: match r.u32()? {
                    0 => Want::Nothing,
                    1 => {
                        let history = r.u64()?;
                        let from = r.u64()?;
                        let ids =
                            r.array(MAX_WANT_IDS, 24, |r| Ok((r.u64()?, r.u64()?, r.u64()?)))?;
                        Want::Partial { history, from, ids }
                    }
                    2 => Want::Full,
                    k => return Err(PeerWireError::Kind(k)),
                },
            },
            SYNC_BEGIN => PeerMsg::SyncBegin {
                export: r.u32()?,
                epoch: r.u64()?,
                full: r.bool()?,
            },
            SYNC_OBJECT => {
                let export = r.u32()?;
                let mut o = SyncObj {
                    parent: r.u64()?,
                    name: r.opaque(MAX_ENTRY_NAME)?.to_vec(),
                    id: r.u64()?,
                    gen: r.u32()?,
                    ftype: r.u32()?,
                    mode: r.u32()?,
                    uid: r.u32()?,
                    gid: r.u32()?,
                    size: r.u64()?,
                    rdev: (r.u32()?, r.u32()?),
                    atime: (r.u64()? as i64, r.u32()?),
                    mtime: (r.u64()? as i64, r.u32()?),
                    offset: r.u64()?,
                    data: r.opaque(MAX_IO)?.to_vec(),
                    ..SyncObj::default()
                };
                o.entries = r.array(MAX_SYNC_ENTRIES, 16, |r| {
                    Ok(SyncEntry {
                        name: r.opaque(MAX_ENTRY_NAME)?.to_vec(),
                        id: r.u64()?,
                        gen: r.u32()?,
                    })
                })?;
                o.last = r.bool()?;
                o.partial = r.bool()?;
                PeerMsg::SyncObject { export, obj: o }
            }
            SYNC_ROUND_END => PeerMsg::SyncRoundEnd {
                export: r.u32()?,
                round: r.u64()?,
                at: if r.bool()? {
                    Some((r.u64()?, r.u64()?))
                } else {
                    None
                },
            },
            SYNC_NEED => {
                let export = r.u32()?;
                let needs = r.array(MAX_SYNC_NEEDS, 20, |r| {
                    Ok((r.u64()?, r.opaque(MAX_ENTRY_NAME)?.to_vec(), r.u64()?))
                })?;
                PeerMsg::SyncNeed { export, needs }
            }
            SYNC_ROUND_DONE => PeerMsg::SyncRoundDone {
                export: r.u32()?,
                round: r.u64()?,
                ok: r.bool()?,
                reason: string(&mut r, 1024)?,
            },
            HANDOFF => PeerMsg::Handoff { export: r.u32()? },
            TAKE_OVER => PeerMsg::TakeOver { export: r.u32()? },
            WITNESS_LOST => PeerMsg::WitnessLost,
            FAILED_OUT => PeerMsg::FailedOut {
                export: r.u32()?,
                epoch: r.u64()?,
            },
            PROBE => PeerMsg::Probe { export: r.u32()? },
            SYNC_REPLIES => {
                let export = r.u32()?;
                let replies = r.array(MAX_SYNC_REPLIES, 36, |r| {
                    Ok(CachedReply {
                        client: r.opaque(16)?.to_vec(),
                        xid: r.u32()?,
                        prog: r.u32()?,
                        vers: r.u32()?,
                        proc_: r.u32()?,
                        args_sum: r.u64()?,
                        reply: r.opaque(MAX_CACHED_REPLY)?.to_vec(),
                    })
                })?;
                PeerMsg::SyncReplies { export, replies }
            }
            SYNC_LOCKS => PeerMsg::SyncLocks {
                export: r.u32()?,
                first: r.bool()?,
                records: r.array(MAX_SYNC_LOCKS, 40, LockRecord::decode)?,
            },
            PROBE_REPLY => PeerMsg::ProbeReply {
                export: r.u32()?,
                state: r.u32()?,
                epoch: r.u64()?,
                complete: r.bool()?,
                history: r.u64()?,
                seq: r.u64()?,
            },
            UPDATE | ORDER => {
                let export = r.u32()?;
                let epoch = r.u64()?;
                let seq = r.u64()?;
                let deps = r.array(MAX_DEPS, 8, |r| r.u64())?;
                let barrier = r.bool()?;
                let ip = r.opaque(16)?.to_vec();
                let port = r.u32()? as u16;
                let xid = r.u32()?;
                let anonymous = r.bool()?;
                let uid = r.u32()?;
                let gid = r.u32()?;
                let gids = r.array(MAX_GIDS, 4, |r| r.u32())?;
                let proc_ = r.u32()?;
                let new_id = if r.bool()? {
                    Some((r.u64()?, r.u32()?))
                } else {
                    None
                };
                let time = (r.u64()? as i64, r.u32()?);
                let mut payload = UpdatePayload {
                    origin: Origin {
                        ip,
                        port,
                        xid,
                        anonymous,
                        uid,
                        gid,
                        gids,
                    },
                    proc_,
                    new_id,
                    time,
                    args: bytes::Bytes::new(),
                };
                if kind == ORDER {
                    PeerMsg::Order {
                        export,
                        epoch,
                        seq,
                        deps,
                        barrier,
                        payload,
                        args_len: r.u32()?,
                        args_sum: r.u32()?,
                    }
                } else {
                    payload.args = share(r.opaque(MAX_FRAME as u32)?);
                    PeerMsg::Update {
                        export,
                        epoch,
                        seq,
                        deps,
                        barrier,
                        payload,
                    }
                }
            }
            FETCH => PeerMsg::Fetch {
                export: r.u32()?,
                epoch: r.u64()?,
                seq: r.u64()?,
            },
            UNKNOWN => PeerMsg::Unknown {
                export: r.u32()?,
                epoch: r.u64()?,
                count: r.u32()?,
            },
            READ_LEASE => PeerMsg::ReadLease {
                export: r.u32()?,
                epoch: r.u64()?,
                at: r.u64()?,
            },
            ACK => PeerMsg::Ack {
                export: r.u32()?,
                epoch: r.u64()?,
                seq: r.u64()?,
                status: r.u32()?,
            },
            REFUSE => PeerMsg::Refuse {
                export: r.u32()?,
                epoch: r.u64()?,
                seq: r.u64()?,
            },
            k => return Err(PeerWireError::Kind(k)),
        };
        r.finish()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_addresses_round_trip_in_4_or_16_bytes() {
        for ip in ["192.0.2.7", "2001:db8::1"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_from_bytes(&ip_bytes(ip)), Some(ip));
        }
        assert_eq!(ip_bytes("192.0.2.7".parse().unwrap()).len(), 4);
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
        assert_eq!(ip_from_bytes(&[]), None);
    }

    use super::*;

    #[test]
    fn large_update_arguments_are_shared_small_ones_copied() {
        let update = |n: usize| PeerMsg::Update {
            export: 1,
            epoch: 2,
            seq: 3,
            deps: vec![],
            barrier: false,
            payload: UpdatePayload {
                origin: Origin {
                    ip: vec![10, 0, 0, 1],
                    port: 700,
                    xid: 9,
                    anonymous: false,
                    uid: 0,
                    gid: 0,
                    gids: vec![],
                },
                proc_: 7,
                new_id: None,
                time: (1, 2),
                args: vec![7u8; n].into(),
            },
        };
        for (n, shared) in [(SHARE_FROM, true), (100, false)] {
            let frame = update(n).to_frame();
            let body = bytes::Bytes::copy_from_slice(&frame[4..]);
            let PeerMsg::Update { payload, .. } = PeerMsg::decode_shared(&body).unwrap() else {
                panic!("an update")
            };
            assert_eq!(payload.args.len(), n);
            let inside = body.as_ptr_range().contains(&payload.args.as_ptr());
            assert_eq!(inside, shared, "{n} bytes");
            assert_eq!(PeerMsg::decode(&body).unwrap(), update(n));
        }
    }

    fn roundtrip(m: PeerMsg) {
        let f = m.to_frame();
        let mut buf = BytesMut::from(&f[..]);
        let mut d = FrameDecoder;
        // byte by byte: never a frame before the last byte
        let mut partial = BytesMut::new();
        for (i, b) in f.iter().enumerate() {
            partial.extend_from_slice(&[*b]);
            let got = d.decode(&mut partial).unwrap();
            assert_eq!(got.is_some(), i == f.len() - 1);
            if let Some(body) = got {
                assert_eq!(PeerMsg::decode(&body).unwrap(), m);
            }
        }
        let body = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(PeerMsg::decode(&body).unwrap(), m);
        assert!(buf.is_empty());
    }

    #[test]
    fn every_message_round_trips() {
        roundtrip(PeerMsg::Hello {
            version: VERSION,
            name: "SvrA".into(),
            nonce: [7; 16],
        });
        roundtrip(PeerMsg::Proof { mac: [9; 32] });
        roundtrip(PeerMsg::Join {
            export: 3,
            epoch: 1,
            base: 77,
            history: 0xdead_beef,
            pristine: true,
            prev: 7,
        });
        roundtrip(PeerMsg::Heartbeat {
            export: 3,
            epoch: 2,
            seq: 1234,
        });
        roundtrip(PeerMsg::WitnessQuery {
            about: "a".into(),
            export: 4,
        });
        roundtrip(PeerMsg::WitnessSeen {
            about: "a".into(),
            ms_ago: u64::MAX,
            export: 4,
            epoch: 9,
        });
        roundtrip(PeerMsg::JoinReply {
            export: 3,
            ok: false,
            reason: "needs resync".into(),
            want: Want::Partial {
                history: 9,
                from: 100,
                ids: vec![(5, WHOLE, 0), (6, 3, 4), (700, WHOLE, 0)],
            },
        });
        for want in [Want::Nothing, Want::Full] {
            roundtrip(PeerMsg::JoinReply {
                export: 3,
                ok: true,
                reason: String::new(),
                want,
            });
        }
        roundtrip(PeerMsg::SyncBegin {
            export: 1,
            epoch: 4,
            full: true,
        });
        roundtrip(PeerMsg::SyncObject {
            export: 1,
            obj: SyncObj {
                parent: 1,
                name: b"dir".to_vec(),
                id: 40,
                gen: 2,
                ftype: 2,
                mode: 0o755,
                uid: 1000,
                gid: 100,
                size: 4096,
                rdev: (0, 0),
                atime: (1_700_000_000, 5),
                mtime: (-3, 6),
                offset: 0,
                data: vec![],
                entries: vec![SyncEntry {
                    name: b"f".to_vec(),
                    id: 41,
                    gen: 2,
                }],
                last: true,
                partial: true,
            },
        });
        roundtrip(PeerMsg::SyncRoundEnd {
            export: 1,
            round: 3,
            at: Some((77, 1000)),
        });
        roundtrip(PeerMsg::SyncRoundEnd {
            export: 1,
            round: 4,
            at: None,
        });
        roundtrip(PeerMsg::SyncNeed {
            export: 1,
            needs: vec![(1, b"a".to_vec(), 9)],
        });
        roundtrip(PeerMsg::SyncReplies {
            export: 1,
            replies: vec![CachedReply {
                client: vec![10, 0, 0, 1],
                xid: 7,
                prog: 100003,
                vers: 3,
                proc_: 9,
                args_sum: 0xdead_beef,
                reply: vec![1, 2, 3, 4],
            }],
        });
        let owner = LockOwner {
            host: b"guest".to_vec(),
            svid: 42,
            oh: vec![7; 9],
        };
        roundtrip(PeerMsg::SyncLocks {
            export: 1,
            first: true,
            records: vec![
                LockRecord::Held {
                    file: 5,
                    owner: owner.clone(),
                    exclusive: true,
                    start: 0,
                    end: u64::MAX,
                },
                LockRecord::Waiting {
                    file: 5,
                    owner: owner.clone(),
                    exclusive: false,
                    start: 10,
                    end: 19,
                    client: vec![10, 0, 0, 2],
                    callback: vec![1, 2, 3, 4],
                },
                LockRecord::Share {
                    file: 6,
                    owner,
                    access: 1,
                    deny: 2,
                },
            ],
        });
        roundtrip(PeerMsg::SyncLocks {
            export: 2,
            first: false,
            records: vec![],
        });
        roundtrip(PeerMsg::SyncRoundDone {
            export: 1,
            round: 3,
            ok: false,
            reason: "disk full".into(),
        });
        roundtrip(PeerMsg::Handoff { export: 2 });
        roundtrip(PeerMsg::TakeOver { export: 2 });
        roundtrip(PeerMsg::WitnessLost);
        roundtrip(PeerMsg::FailedOut {
            export: 2,
            epoch: 9,
        });
        roundtrip(PeerMsg::Probe { export: 2 });
        roundtrip(PeerMsg::ProbeReply {
            export: 2,
            state: 4,
            epoch: 3,
            complete: false,
            history: 8,
            seq: 9,
        });
        roundtrip(PeerMsg::Update {
            export: 3,
            epoch: 2,
            seq: 99,
            deps: vec![97, 98],
            barrier: false,
            payload: UpdatePayload {
                origin: Origin {
                    ip: vec![10, 0, 0, 1],
                    port: 801,
                    xid: 42,
                    anonymous: false,
                    uid: 1000,
                    gid: 100,
                    gids: vec![4, 24],
                },
                proc_: 7,
                new_id: Some((12, 5)),
                time: (1_700_000_000, 123),
                args: vec![1, 2, 3, 4, 5].into(),
            },
        });
        roundtrip(PeerMsg::Order {
            export: 3,
            epoch: 2,
            seq: 100,
            deps: vec![99],
            barrier: true,
            payload: UpdatePayload {
                origin: Origin {
                    ip: vec![0; 16],
                    port: 802,
                    xid: 43,
                    anonymous: true,
                    uid: 65534,
                    gid: 65534,
                    gids: vec![],
                },
                proc_: 8,
                new_id: Some((13, 5)),
                time: (1_700_000_001, 7),
                args: bytes::Bytes::new(),
            },
            args_len: 1 << 20,
            args_sum: 0xdead_beef,
        });
        roundtrip(PeerMsg::Fetch {
            export: 3,
            epoch: 2,
            seq: 100,
        });
        roundtrip(PeerMsg::Unknown {
            export: 3,
            epoch: 2,
            count: 17,
        });
        roundtrip(PeerMsg::Ack {
            export: 3,
            epoch: 2,
            seq: 99,
            status: 0,
        });
        roundtrip(PeerMsg::ReadLease {
            export: 3,
            epoch: 2,
            at: 1_234_567,
        });
        roundtrip(PeerMsg::Refuse {
            export: 3,
            epoch: 4,
            seq: 99,
        });
    }

    #[test]
    fn a_data_frame_filled_in_place_decodes_as_the_object() {
        let o = SyncObj {
            parent: 1,
            name: b"f".to_vec(),
            id: 9,
            gen: 2,
            ftype: 1,
            mode: 0o644,
            offset: 4096,
            ..SyncObj::default()
        };
        let (f, n) = sync_data_frame::<()>(7, &o, 8, None, |b| {
            b[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        let want = SyncObj {
            data: b"abc".to_vec(),
            size: 4099,
            last: true,
            ..o.clone()
        };
        assert_eq!(
            PeerMsg::decode(&f[4..]).unwrap(),
            PeerMsg::SyncObject {
                export: 7,
                obj: want
            }
        );
        // a full piece is not the last, and its size stays as given
        let (f, _) = sync_data_frame::<()>(7, &o, 2, None, |b| {
            b.copy_from_slice(b"ab");
            Ok(2)
        })
        .unwrap();
        let PeerMsg::SyncObject { obj, .. } = PeerMsg::decode(&f[4..]).unwrap() else {
            panic!("not a SyncObject")
        };
        assert!(!obj.last);
        assert_eq!(obj.size, 0);
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            FrameDecoder.decode(&mut buf),
            Err(PeerWireError::TooLong(0x7fff_ffff))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(PeerMsg::decode(&[0, 0, 0, 99]).is_err());
        assert!(PeerMsg::decode(&[0, 0, 0, 5, 0, 0]).is_err());
        let mut f = PeerMsg::Ack {
            export: 1,
            epoch: 1,
            seq: 1,
            status: 0,
        }
        .to_frame();
        f.push(0);
        assert!(PeerMsg::decode(&f[4..]).is_err());
    }
}
