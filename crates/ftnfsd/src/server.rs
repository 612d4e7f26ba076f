//! RPC dispatch: one call record in, at most one reply record out.
//!
//! The reply is returned as bytes, not written to a socket, so the caller decides when it
//! leaves (mirroring will hold it until the secondaries acknowledge). Order of checks follows
//! RFC 5531 §9: RPC version, program, version, procedure, credentials, then arguments.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ftnfs_core::access::Cred;
use ftnfs_core::drc::{Drc, DrcKey, DrcLimits, Verdict};
use ftnfs_core::ids::Millis;
use ftnfs_core::proc_table;
use ftnfs_wire::mount::{self, ExportList, ExportNode, MntRes, MountList, MountStat3};
use ftnfs_wire::nfs3::{self, Args, ArgsError};
use ftnfs_wire::rpc::{
    flavor, AcceptStat, AuthStat, AuthSys, CallHeader, MessageError, ReplyHeader, Xid,
};
use ftnfs_wire::xdr::{XdrDecode, XdrEncode, XdrReader, XdrWriter};

use crate::fs::ExportFs;
use crate::nfs3_procs::Caller;

/// Most remembered mounts (MOUNT DUMP list).
pub const MAX_MOUNTS: usize = 4096;

/// Per-procedure call counters.
#[derive(Default)]
pub struct Counters {
    /// NFSv3 calls by procedure.
    pub nfs: [AtomicU64; 22],
    /// MOUNT calls by procedure.
    pub mount: [AtomicU64; 6],
    /// Calls refused at the RPC level (bad version, program, procedure, auth, garbage).
    pub rpc_errors: AtomicU64,
}

/// Everything one member serves.
pub struct Server {
    /// Exports.
    pub exports: Vec<ExportFs>,
    /// Duplicate request cache.
    pub drc: Mutex<Drc>,
    /// Counters.
    pub counters: Counters,
    /// (client, path) of MNT calls not yet UMNTed.
    pub mounts: Mutex<Vec<(IpAddr, String)>>,
    /// Write verifier of this incarnation: changes on every start, so clients resend UNSTABLE
    /// writes that may have been lost with the page cache (RFC 1813 §3.3.7).
    pub write_verf: [u8; 8],
    started: Instant,
}

impl Server {
    /// A server for these exports.
    pub fn new(exports: Vec<ExportFs>, drc: DrcLimits, write_verf: [u8; 8]) -> Server {
        Server {
            exports,
            drc: Mutex::new(Drc::new(drc)),
            counters: Counters::default(),
            mounts: Mutex::new(Vec::new()),
            write_verf,
            started: Instant::now(),
        }
    }

    /// Milliseconds since start: the core's notion of time.
    pub fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    /// Handles one call record from `peer`; `None` means send nothing.
    pub fn handle(&self, record: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
        let mut r = XdrReader::new(record);
        let h = match CallHeader::decode(&mut r) {
            Ok(h) => h,
            Err(MessageError::Unreadable) | Err(MessageError::NotACall(_)) => return None,
            Err(MessageError::Garbage(xid)) => {
                return Some(self.reject(xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs)))
            }
        };
        let args = r.rest();
        if h.rpcvers != 2 {
            return Some(self.reject(h.xid, ReplyHeader::RpcMismatch));
        }
        let (lo, hi) = match h.prog {
            nfs3::PROGRAM => (3, 3),
            mount::PROGRAM => (1, 3),
            _ => return Some(self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProgUnavail))),
        };
        if h.vers < lo || h.vers > hi {
            return Some(self.reject(
                h.xid,
                ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: lo, high: hi }),
            ));
        }
        let Some(info) = proc_table::lookup(h.prog, h.proc_) else {
            return Some(self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail)));
        };
        let cred = match h.cred.flavor {
            flavor::SYS => match AuthSys::from_bytes(h.cred.body) {
                Ok(a) => Cred {
                    uid: a.uid,
                    gid: a.gid,
                    groups: a.gids,
                },
                Err(_) => {
                    return Some(self.reject(h.xid, ReplyHeader::AuthError(AuthStat::BadCred)))
                }
            },
            // AUTH_NONE: the export's anonymous identity, chosen once the export is known.
            flavor::NONE => Cred::anonymous(&Default::default()),
            _ => return Some(self.reject(h.xid, ReplyHeader::AuthError(AuthStat::BadCred))),
        };
        let anonymous = h.cred.flavor == flavor::NONE;

        if h.prog == mount::PROGRAM {
            self.counters.mount[h.proc_ as usize].fetch_add(1, Ordering::Relaxed);
            return Some(self.mount(h.xid, h.vers, h.proc_, args, peer));
        }
        self.counters.nfs[h.proc_ as usize].fetch_add(1, Ordering::Relaxed);

        let key = DrcKey::new(peer.ip(), h.xid, h.prog, h.vers, h.proc_, args);
        let now = self.now();
        match self.drc().begin(key, now) {
            Verdict::Execute => {}
            Verdict::InProgress => return None,
            Verdict::Replay(r) => {
                tracing::debug!(xid = h.xid.0, proc_ = info.name, client = %peer, "DRC replay");
                return Some(r.to_vec());
            }
        }
        let reply = match Args::decode(h.proc_, args) {
            Ok(a) => {
                let mut w = XdrWriter::with_capacity(256);
                ReplyHeader::Accepted(AcceptStat::Success).encode(h.xid, &mut w);
                Caller {
                    exports: &self.exports,
                    ip: peer.ip(),
                    port: peer.port(),
                    cred,
                    anonymous,
                    write_verf: self.write_verf,
                }
                .execute(a, &mut w);
                w.into_inner()
            }
            Err(ArgsError::NoSuchProc(_)) => {
                self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail))
            }
            Err(ArgsError::Garbage(e)) => {
                tracing::debug!(xid = h.xid.0, proc_ = info.name, client = %peer, error = %e, "garbage args");
                self.reject(h.xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs))
            }
        };
        self.drc().finish(key, &reply, !info.idempotent, self.now());
        Some(reply)
    }

    fn drc(&self) -> std::sync::MutexGuard<'_, Drc> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters more than losing service: keep going with its contents.
        self.drc.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reject(&self, xid: Xid, h: ReplyHeader) -> Vec<u8> {
        self.counters.rpc_errors.fetch_add(1, Ordering::Relaxed);
        let mut w = XdrWriter::new();
        h.encode(xid, &mut w);
        w.into_inner()
    }

    fn mount(&self, xid: Xid, vers: u32, proc_: u32, args: &[u8], peer: SocketAddr) -> Vec<u8> {
        let mut w = XdrWriter::new();
        let garbage = |s: &Self| s.reject(xid, ReplyHeader::Accepted(AcceptStat::GarbageArgs));
        let ok = |w: &mut XdrWriter| ReplyHeader::Accepted(AcceptStat::Success).encode(xid, w);
        match proc_ {
            mount::procs::NULL => ok(&mut w),
            mount::procs::MNT => {
                if vers != 3 {
                    // MOUNT v1/v2 hand out NFSv2 handles; we serve NFSv3 only.
                    return self.reject(xid, ReplyHeader::Accepted(AcceptStat::ProcUnavail));
                }
                let Ok(path) = mount::decode_dirpath(args) else {
                    return garbage(self);
                };
                ok(&mut w);
                self.mnt(&path, peer).encode(&mut w);
            }
            mount::procs::DUMP => {
                ok(&mut w);
                let m = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
                MountList(
                    m.iter()
                        .map(|(ip, p)| (ip.to_string().into_bytes(), p.clone().into_bytes()))
                        .collect(),
                )
                .encode(&mut w);
            }
            mount::procs::UMNT => {
                let Ok(path) = mount::decode_dirpath(args) else {
                    return garbage(self);
                };
                let path = String::from_utf8_lossy(&path).into_owned();
                self.mounts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(ip, p)| !(*ip == peer.ip() && *p == path));
                ok(&mut w);
            }
            mount::procs::UMNTALL => {
                self.mounts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(ip, _)| *ip != peer.ip());
                ok(&mut w);
            }
            _ => {
                // EXPORT
                ok(&mut w);
                ExportList(
                    self.exports
                        .iter()
                        .map(|e| ExportNode {
                            dir: e.cfg.path.clone().into_bytes(),
                            groups: e
                                .cfg
                                .clients
                                .iter()
                                .map(|c| c.spec.describe().into_bytes())
                                .collect(),
                        })
                        .collect(),
                )
                .encode(&mut w);
            }
        }
        w.into_inner()
    }

    fn mnt(&self, path: &[u8], peer: SocketAddr) -> MntRes {
        let path = String::from_utf8_lossy(path);
        let p = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            &path
        };
        let Some(ex) = self.exports.iter().find(|e| e.cfg.path == p) else {
            return MntRes::Err(MountStat3::NoEnt);
        };
        let Some(opts) = ex.cfg.options_for(peer.ip()) else {
            tracing::info!(client = %peer, path = p, "mount refused: client not in export list");
            return MntRes::Err(MountStat3::Acces);
        };
        if opts.secure && peer.port() >= 1024 {
            tracing::info!(client = %peer, path = p, "mount refused: unprivileged port on a secure export");
            return MntRes::Err(MountStat3::Acces);
        }
        let fh = ftnfs_core::handle::FileHandle {
            export: ex.cfg.id,
            file: ftnfs_core::ids::FileId::ROOT,
            gen: crate::fs::idtable::ROOT_GEN,
        };
        let mut m = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = (peer.ip(), p.to_string());
        if !m.contains(&entry) {
            if m.len() >= MAX_MOUNTS {
                m.remove(0);
            }
            m.push(entry);
        }
        tracing::info!(client = %peer, path = p, "mounted");
        MntRes::Ok {
            fh: fh.encode(),
            flavors: vec![flavor::SYS, flavor::NONE],
        }
    }
}
