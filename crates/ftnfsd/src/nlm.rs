//! The NLM v4 service (program 100021, issue 14): byte-range locks for NFSv3 clients, so a
//! client needs no `nolock`. Decisions are the core's lock manager
//! (`ftnfs_core::lock_manager`); here: decoding the calls, naming the file, answering, and the
//! GRANTED callbacks to clients whose blocked lock became free ([`callbacks`]).
//!
//! Served on the NFS port (registered with the portmapper there, `portmap::mappings`), over
//! TCP and UDP, synchronous procedures: NULL, TEST, LOCK (blocking or not), CANCEL, UNLOCK,
//! NM_LOCK, FREE_ALL, SHARE/UNSHARE (DOS share reservations), and the asynchronous `_MSG`
//! forms (their results sent back as `_RES` calls). Not yet (Documentation/12-locks.md):
//! the replication of the lock table
//! to the other members — on a mirrored export only the primary grants locks, and a
//! takeover loses them.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use ftnfs_core::handle::FileHandle;
use ftnfs_core::ids::{ExportId, FileId};
use ftnfs_core::lock_manager::{LockManager, LockOutcome, ShareRefused, Waiter};
use ftnfs_core::locks::{range, Lock, Owner};
use ftnfs_wire::nlm::{self, Args, Holder, Res, Stat, TestArgs, TestRes};
use ftnfs_wire::portmap;
use ftnfs_wire::rpc::{AcceptStat, CallHeader, OpaqueAuth, ReplyHeader, Xid, AUTH_NONE};
use ftnfs_wire::xdr::{XdrEncode, XdrReader, XdrWriter};

use crate::fs::ExportFs;

/// A lock's file.
pub type FileKey = (ExportId, FileId);

/// What a blocked caller needs to be told when its lock is granted: where, and the
/// arguments of the GRANTED callback (its own lock, as it asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The client host.
    pub addr: IpAddr,
    /// The callback's arguments.
    pub args: TestArgs,
}

/// How often the locks of removed files are dropped ([`Nlm::purge_removed`]).
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A call this service makes to a client's lock manager.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// GRANTED: a blocked lock is the client's now.
    Granted(Pending),
    /// The result of a `_MSG` call, as its `_RES` call (`body`: the result's XDR).
    Result {
        /// The client host.
        addr: IpAddr,
        /// TEST_RES, LOCK_RES, CANCEL_RES or UNLOCK_RES.
        proc_: u32,
        /// The result.
        body: Vec<u8>,
    },
}

/// Most GRANTED callbacks queued for sending.
pub const MAX_CALLBACKS: usize = 1024;

/// The NLM service of one member.
pub struct Nlm {
    mgr: Mutex<LockManager<FileKey, Pending>>,
    grants: tokio::sync::mpsc::Sender<Outgoing>,
}

/// The body of a reply.
enum Reply {
    Void,
    Res(Res),
    Test(TestRes),
    Share(nlm::ShareRes),
}

/// Why a call names no lockable file.
enum NoFile {
    Stale,
    NotHere,
}

impl Nlm {
    /// A service whose granted waiters go to `grants` ([`callbacks`] sends them).
    pub fn new(grants: tokio::sync::mpsc::Sender<Outgoing>) -> Nlm {
        Nlm {
            mgr: Mutex::new(LockManager::default()),
            grants,
        }
    }

    fn mgr(&self) -> std::sync::MutexGuard<'_, LockManager<FileKey, Pending>> {
        self.mgr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (files with locks, locks, blocked waiters).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.mgr().counts()
    }

    /// Drops the locks and waiters of files that no longer exist (`exists` asks the
    /// identity table). Run every [`PURGE_EVERY`] and before a listing.
    pub fn purge_removed(&self, exists: impl Fn(&FileKey) -> bool) {
        let gone = self.mgr().retain_files(exists);
        if gone > 0 {
            tracing::info!(gone, "NLM: locks and waits of removed files dropped");
        }
    }

    /// Every lock held and every blocked waiter, as JSON (`ftnfsctl locks`).
    pub fn list(&self) -> serde_json::Value {
        let m = self.mgr();
        let (held, waiting) = (m.all_held(), m.all_waiting());
        let one = |k: &FileKey, o: &Owner, exclusive: bool, start: u64, end: u64| {
            serde_json::json!({
                "export": k.0 .0,
                "file": k.1 .0,
                "client": o.host,
                "svid": o.svid,
                "exclusive": exclusive,
                "start": start,
                "end": if end == u64::MAX { serde_json::Value::Null } else { end.into() },
            })
        };
        serde_json::json!({
            "held": held.iter().map(|(k, l)| one(k, &l.owner, l.exclusive, l.start, l.end)).collect::<Vec<_>>(),
            "waiting": waiting.iter().map(|(k, w)| one(k, &w.owner, w.exclusive, w.start, w.end)).collect::<Vec<_>>(),
        })
    }

    /// Answers one NLM v4 call. `file` finds the export a handle belongs to, if this member
    /// may grant locks on it (it serves it, and is its primary when it is mirrored).
    pub fn handle<'e>(
        &self,
        xid: Xid,
        proc_: u32,
        args: &[u8],
        peer: SocketAddr,
        file: impl Fn(&FileHandle) -> Option<&'e ExportFs>,
    ) -> Vec<u8> {
        let mut w = XdrWriter::new();
        // the asynchronous forms: answered as their synchronous procedure, the result sent
        // back as a call of the matching `_RES` procedure; the call's own reply is void
        let (proc_, res_proc) = match proc_ {
            nlm::procs::TEST_MSG..=nlm::procs::UNLOCK_MSG => (proc_ - 5, Some(proc_ + 5)),
            // results of calls we make with `_MSG` (we make none): nothing to do
            nlm::procs::TEST_RES..=nlm::procs::GRANTED_RES => {
                ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
                return w.into_inner();
            }
            p => (p, None),
        };
        let decoded = match Args::decode(proc_, args) {
            Ok(Some(a)) => a,
            Ok(None) => {
                ReplyHeader::Accepted(AcceptStat::ProcUnavail).encode(xid, &mut w);
                return w.into_inner();
            }
            Err(_) => {
                ReplyHeader::Accepted(AcceptStat::GarbageArgs).encode(xid, &mut w);
                return w.into_inner();
            }
        };
        let key = |fh: &[u8]| -> Result<FileKey, NoFile> {
            let h = FileHandle::decode(fh).map_err(|_| NoFile::Stale)?;
            let ex = file(&h).ok_or(NoFile::NotHere)?;
            match ex.ids.get(h.file) {
                Ok(Some(r)) if r.gen == h.gen => Ok((h.export, h.file)),
                _ => Err(NoFile::Stale),
            }
        };
        let no_file = |e: NoFile| match e {
            NoFile::Stale => Stat::StaleFh,
            // not ours to grant now (a mirror that is not primary): the client retries
            NoFile::NotHere => Stat::DeniedGracePeriod,
        };
        let body: Reply = match (proc_, decoded) {
            (nlm::procs::NULL, _) => Reply::Void,
            (nlm::procs::TEST, Args::Test(a)) => {
                let r = match (key(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
                    (Err(e), _) => test_res(&a.cookie, no_file(e), None),
                    (_, None) => test_res(&a.cookie, Stat::Fbig, None),
                    (Ok(k), Some((start, end))) => {
                        match self
                            .mgr()
                            .test(&k, &owner(&a.alock), a.exclusive, start, end)
                        {
                            Some(l) => test_res(&a.cookie, Stat::Denied, Some(holder(&l))),
                            None => test_res(&a.cookie, Stat::Granted, None),
                        }
                    }
                };
                Reply::Test(r)
            }
            (nlm::procs::LOCK | nlm::procs::NM_LOCK, Args::Lock(a) | Args::NmLock(a)) => {
                let stat = match (key(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
                    (Err(e), _) => no_file(e),
                    (_, None) => Stat::Fbig,
                    (Ok(k), Some((start, end))) => {
                        // NM_LOCK is never monitored and never blocks
                        let block = (a.block && proc_ == nlm::procs::LOCK).then(|| Pending {
                            addr: peer.ip(),
                            args: TestArgs {
                                cookie: a.cookie.clone(),
                                exclusive: a.exclusive,
                                alock: a.alock.clone(),
                            },
                        });
                        let o = owner(&a.alock);
                        match self.mgr().lock(&k, &o, a.exclusive, start, end, block) {
                            LockOutcome::Granted => Stat::Granted,
                            LockOutcome::Denied(_) => Stat::Denied,
                            LockOutcome::Blocked => Stat::Blocked,
                            LockOutcome::NoLocks => Stat::DeniedNoLocks,
                        }
                    }
                };
                Reply::Res(res(&a.cookie, stat))
            }
            (nlm::procs::CANCEL, Args::Cancel(a)) => {
                if let (Ok(k), Some((start, end))) =
                    (key(&a.alock.fh), range(a.alock.offset, a.alock.len))
                {
                    self.mgr()
                        .cancel(&k, &owner(&a.alock), a.exclusive, start, end);
                }
                Reply::Res(res(&a.cookie, Stat::Granted))
            }
            (nlm::procs::UNLOCK, Args::Unlock(a)) => {
                let stat = match (key(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
                    (Err(e), _) => no_file(e),
                    (_, None) => Stat::Fbig,
                    (Ok(k), Some((start, end))) => {
                        let r = self.mgr().unlock(&k, &owner(&a.alock), start, end);
                        match r {
                            Ok(granted) => {
                                self.tell(granted);
                                Stat::Granted
                            }
                            Err(_) => Stat::DeniedNoLocks,
                        }
                    }
                };
                Reply::Res(res(&a.cookie, stat))
            }
            (nlm::procs::FREE_ALL, Args::FreeAll(n)) => {
                self.host_restarted(&String::from_utf8_lossy(&n.name));
                Reply::Void
            }
            (nlm::procs::SHARE | nlm::procs::UNSHARE, Args::Share(a)) => {
                let o = Owner {
                    host: String::from_utf8_lossy(&a.caller_name).into_owned(),
                    svid: 0,
                    oh: a.oh.clone(),
                };
                let stat = match key(&a.fh) {
                    Err(e) => no_file(e),
                    Ok(k) if proc_ == nlm::procs::UNSHARE => {
                        self.mgr().unshare(&k, &o);
                        Stat::Granted
                    }
                    Ok(k) => match self.mgr().share(&k, &o, a.access, a.mode) {
                        Ok(()) => Stat::Granted,
                        Err(ShareRefused::Conflict) => Stat::Denied,
                        Err(ShareRefused::NoRoom) => Stat::DeniedNoLocks,
                    },
                };
                Reply::Share(nlm::ShareRes {
                    cookie: a.cookie,
                    stat,
                    sequence: 0,
                })
            }
            (nlm::procs::GRANTED, Args::Test(a)) => {
                // we are no client: nothing of ours waits
                Reply::Res(res(&a.cookie, Stat::Denied))
            }
            _ => {
                ReplyHeader::Accepted(AcceptStat::ProcUnavail).encode(xid, &mut w);
                return w.into_inner();
            }
        };
        let mut out = XdrWriter::new();
        match body {
            Reply::Void => {}
            Reply::Res(r) => r.encode(&mut out),
            Reply::Test(r) => r.encode(&mut out),
            Reply::Share(r) => r.encode(&mut out),
        }
        ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
        match res_proc {
            Some(res) => {
                let o = Outgoing::Result {
                    addr: peer.ip(),
                    proc_: res,
                    body: out.into_inner(),
                };
                if self.grants.try_send(o).is_err() {
                    tracing::warn!("NLM callback queue full: a _MSG result is not sent");
                }
            }
            None => {
                w.fixed(out.as_slice());
            }
        }
        w.into_inner()
    }

    /// Queues the GRANTED callbacks of `granted` (dropped past [`MAX_CALLBACKS`]: the
    /// client's own retransmitted LOCK then finds the lock held by it and is granted).
    fn tell(&self, granted: Vec<Waiter<Pending>>) {
        for w in granted {
            if self.grants.try_send(Outgoing::Granted(w.token)).is_err() {
                tracing::warn!(
                    "NLM callback queue full: a granted client learns it at its next LOCK"
                );
            }
        }
    }

    /// `host` restarted (its SM_NOTIFY, or FREE_ALL): every lock and wait of it goes, and
    /// the waiters that fit now are told. How many locks and waits it had.
    pub fn host_restarted(&self, host: &str) -> usize {
        let (granted, freed) = {
            let mut m = self.mgr();
            let (_, before_held, before_waiting) = m.counts();
            let granted = m.free_host(host);
            let (_, held, waiting) = m.counts();
            // the waiters granted now moved from waiting to held
            let freed = (before_held + before_waiting) - (held + waiting);
            (granted, freed)
        };
        self.tell(granted.into_iter().map(|(_, w)| w).collect());
        freed
    }

    /// A client answered our GRANTED with something else than granted (it stopped
    /// waiting): the lock it no longer wants is released.
    fn refused(&self, p: &Pending, file: FileKey) {
        if let Some((start, end)) = range(p.args.alock.offset, p.args.alock.len) {
            if let Ok(granted) = self.mgr().unlock(&file, &owner(&p.args.alock), start, end) {
                self.tell(granted);
            }
        }
    }
}

fn owner(l: &nlm::Lock) -> Owner {
    Owner {
        host: String::from_utf8_lossy(&l.caller_name).into_owned(),
        svid: l.svid as u32,
        oh: l.oh.clone(),
    }
}

fn holder(l: &Lock) -> Holder {
    Holder {
        exclusive: l.exclusive,
        svid: l.owner.svid as i32,
        oh: l.owner.oh.clone(),
        offset: l.start,
        len: if l.end == u64::MAX {
            0
        } else {
            l.end - l.start + 1
        },
    }
}

fn res(cookie: &[u8], stat: Stat) -> Res {
    Res {
        cookie: cookie.to_vec(),
        stat,
    }
}

fn test_res(cookie: &[u8], stat: Stat, holder: Option<Holder>) -> TestRes {
    TestRes {
        cookie: cookie.to_vec(),
        stat,
        holder,
    }
}

/// Sends each granted waiter its NLM GRANTED callback: the client's NLM port from its
/// portmapper, then the call over UDP, a few tries ([`CALLBACK_TRIES`], 1 s apart). A
/// client that answers anything but granted no longer waits, and the lock is released.
pub async fn callbacks(nlm: std::sync::Arc<Nlm>, mut rx: tokio::sync::mpsc::Receiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
        let p = match o {
            Outgoing::Granted(p) => p,
            Outgoing::Result { addr, proc_, body } => {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = call_client(addr, proc_, &body) {
                        tracing::warn!(client = %addr, proc_, error = %e, "NLM _RES not delivered");
                    }
                });
                continue;
            }
        };
        let n = nlm.clone();
        tokio::task::spawn_blocking(move || match grant(&p) {
            Ok(Stat::Granted) => tracing::debug!(client = %p.addr, "NLM GRANTED delivered"),
            Ok(stat) => {
                tracing::info!(client = %p.addr, ?stat, "NLM GRANTED refused: lock released");
                if let Ok(h) = FileHandle::decode(&p.args.alock.fh) {
                    n.refused(&p, (h.export, h.file));
                }
            }
            Err(e) => {
                tracing::warn!(client = %p.addr, error = %e, "NLM GRANTED not delivered; the client's next LOCK finds it held")
            }
        });
    }
}

/// GRANTED callbacks sent before giving up.
pub const CALLBACK_TRIES: u32 = 5;

fn grant(p: &Pending) -> std::io::Result<Stat> {
    let mut args = XdrWriter::new();
    p.args.encode(&mut args);
    let body = call_client(p.addr, nlm::procs::GRANTED, args.as_slice())?;
    let mut r = XdrReader::new(&body);
    let _cookie = r
        .opaque(nlm::LM_MAXSTRLEN)
        .map_err(|_| std::io::Error::other("bad GRANTED reply"))?;
    Ok(match r.u32() {
        Ok(0) => Stat::Granted,
        _ => Stat::Denied,
    })
}

/// Calls procedure `proc_` of the NLM of the client at `addr` (its port from its
/// portmapper) with `args`: the reply's body.
fn call_client(addr: IpAddr, proc_: u32, args: &[u8]) -> std::io::Result<Vec<u8>> {
    let sock = UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let port = rpc_call(&sock, addr, 111, 0x4e4c_0000, |xid, w| {
        let m = portmap::Mapping {
            prog: nlm::PROGRAM,
            vers: nlm::VERSION,
            prot: portmap::IPPROTO_UDP,
            port: 0,
        };
        w.extend_from_slice(&portmap::encode_call(xid, 3, m));
    })
    .and_then(|body| {
        XdrReader::new(&body)
            .u32()
            .map_err(|_| std::io::Error::other("bad portmap reply"))
    })?;
    if port == 0 || port > u16::MAX as u32 {
        return Err(std::io::Error::other("the client's NLM is not registered"));
    }
    rpc_call(&sock, addr, port as u16, 0x4e4d_0000, |xid, w| {
        let mut x = XdrWriter::new();
        CallHeader {
            xid,
            rpcvers: 2,
            prog: nlm::PROGRAM,
            vers: nlm::VERSION,
            proc_,
            cred: OpaqueAuth {
                flavor: 0,
                body: &[],
            },
            verf: AUTH_NONE,
        }
        .encode(&mut x);
        x.fixed(args);
        w.extend_from_slice(x.as_slice());
    })
}

/// One RPC call over UDP with retries: the accepted reply's body.
fn rpc_call(
    sock: &UdpSocket,
    addr: IpAddr,
    port: u16,
    xid_base: u32,
    call: impl Fn(Xid, &mut Vec<u8>),
) -> std::io::Result<Vec<u8>> {
    let xid = Xid(xid_base | (rand_u16() as u32));
    let mut msg = Vec::new();
    call(xid, &mut msg);
    let mut buf = vec![0u8; 2048];
    for _ in 0..CALLBACK_TRIES {
        sock.send_to(&msg, (addr, port))?;
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let mut r = XdrReader::new(&buf[..n]);
                    match ReplyHeader::decode(&mut r) {
                        Ok((x, ReplyHeader::Accepted(AcceptStat::Success))) if x == xid => {
                            return Ok(r.rest().to_vec())
                        }
                        Ok((x, h)) if x == xid => {
                            return Err(std::io::Error::other(format!("refused: {h:?}")))
                        }
                        _ => continue, // someone else's, or garbage
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(std::io::Error::other("no answer"))
}

fn rand_u16() -> u16 {
    let b = crate::mirror::random_bytes::<2>();
    u16::from_be_bytes(b)
}
