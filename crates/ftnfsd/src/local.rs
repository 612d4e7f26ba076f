//! This member's own copy of the exports: the file trees, the duplicate request cache and the
//! clock — what the NFS dispatch (`server.rs`), the mirror driver (`mirror/`) and the
//! resync streams (`resync.rs`) all act on. It knows nothing of roles or peers, so every
//! layer above can hold it without a cycle: server → mirror → resync → local.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use ftnfs_core::access::Cred;
use ftnfs_core::drc::{Drc, DrcKey, DrcLimits};
use ftnfs_core::exports::{Mirroring, ReadMode};
use ftnfs_core::ids::{ExportId, Millis, SeqNo};
use ftnfs_core::proc_table::{self, ProcInfo};
use ftnfs_wire::nfs3::{self, Args};
use ftnfs_wire::peer::UpdatePayload;
use ftnfs_wire::rpc::{AcceptStat, ReplyHeader, Xid};
use ftnfs_wire::xdr::{XdrReader, XdrWriter};

use crate::changelog::ChangeLog;
use crate::fs::set::ExportSet;
use crate::fs::ExportFs;
use crate::nfs3_procs::{Caller, Dictation};
use crate::replylog::ReplyLog;

/// The exports as this member holds them.
pub struct Local {
    /// Exports (a reload adds to them, never takes one away: `fs/set.rs`).
    pub exports: ExportSet,
    /// Duplicate request cache.
    pub drc: Mutex<Drc>,
    /// Write verifier of this incarnation: changes on every start, so clients resend UNSTABLE
    /// writes that may have been lost with the page cache (RFC 1813 §3.3.7).
    pub write_verf: [u8; 8],
    /// The cached replies of procedures that must run once, kept across a restart.
    replies: Option<ReplyLog>,
    started: Instant,
    /// What the service above does when this member takes an export over (it tells lock
    /// waiters granted lately again: `Server::tell_recent_grants`). Set once at start.
    takeover_hook: std::sync::OnceLock<Box<dyn Fn(ExportId) + Send + Sync>>,
    /// The monitored client hosts, and the grace period after a start that lost the lock
    /// tables (`recovery.rs`).
    pub recovery: crate::recovery::Recovery,
}

impl Local {
    /// These exports, the clock starting now, and a DRC holding what the reply log in
    /// `state_dir` kept from the previous run (none without one). A reply read back is
    /// tagged not released: a resync into its export drops it with the others.
    pub fn new(
        exports: Vec<ExportFs>,
        drc: DrcLimits,
        write_verf: [u8; 8],
        state_dir: Option<&std::path::Path>,
        recovery: crate::recovery::Recovery,
    ) -> std::io::Result<Local> {
        let mut cache = Drc::new(drc);
        let replies = match state_dir {
            Some(d) => {
                let (log, held) = ReplyLog::open(d, crate::replylog::DEFAULT_CAP)?;
                if !held.is_empty() {
                    tracing::info!(
                        replies = held.len(),
                        "cached replies read back from the reply log"
                    );
                }
                for (key, export, reply) in held {
                    cache.record(key, &reply, Millis(0));
                    if let Some(e) = export {
                        cache.tag(&key, e.0, false);
                    }
                }
                Some(log)
            }
            None => None,
        };
        Ok(Local {
            exports: ExportSet::new(exports),
            drc: Mutex::new(cache),
            write_verf,
            replies,
            started: Instant::now(),
            takeover_hook: std::sync::OnceLock::new(),
            recovery,
        })
    }

    /// Sets what happens when this member takes an export over (once; later calls are
    /// ignored).
    pub fn on_takeover(&self, hook: Box<dyn Fn(ExportId) + Send + Sync>) {
        let _ = self.takeover_hook.set(hook);
    }

    /// This member just became `export`'s primary.
    pub fn took_over(&self, export: ExportId) {
        if let Some(h) = self.takeover_hook.get() {
            h(export);
        }
    }

    /// Logs a cached reply of a procedure that must run once (`ProcInfo::once`), so that it
    /// outlives a restart; call before the reply leaves.
    pub fn log_reply(&self, key: &DrcKey, export: Option<ExportId>, reply: &[u8]) {
        if let Some(l) = &self.replies {
            l.append(key, export, reply);
        }
    }

    /// Bytes in the reply log.
    pub fn reply_log_size(&self) -> u64 {
        self.replies.as_ref().map_or(0, ReplyLog::size)
    }

    /// The export with this id.
    pub fn export(&self, id: ExportId) -> Option<&ExportFs> {
        self.exports.get(id)
    }

    /// Whether `id` is an `InMemory` export (an update is durable in the members' memory;
    /// nothing of it is synced before the reply).
    pub fn in_memory(&self, id: ExportId) -> bool {
        self.export(id).is_some_and(|e| e.cfg.in_memory)
    }

    /// How READs of an export are mirrored.
    pub fn read_mode(&self, id: ExportId) -> ReadMode {
        match self.export(id).map(|e| &e.cfg.mirroring) {
            Some(Mirroring::Group { read_mode, .. }) => *read_mode,
            _ => ReadMode::Async,
        }
    }

    /// Milliseconds since start: the core's notion of time.
    pub fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    pub fn execute(
        &self,
        xid: Xid,
        a: Args,
        peer: SocketAddr,
        cred: Cred,
        anonymous: bool,
        dictate: Option<Dictation>,
    ) -> Vec<u8> {
        let mut w = XdrWriter::with_capacity(256);
        ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
        Caller {
            exports: &self.exports,
            ip: peer.ip(),
            port: peer.port(),
            cred,
            anonymous,
            write_verf: self.write_verf,
            dictate,
        }
        .execute(a, &mut w);
        w.into_inner()
    }

    /// Applies an update the primary sent (we are a secondary of its export): executes it
    /// with the primary's decisions, records what it touched in `log` and the reply in the
    /// DRC, returns its NFS status.
    pub fn apply_update(
        &self,
        export: ExportId,
        p: &UpdatePayload,
        at: (u64, SeqNo),
        log: Option<&ChangeLog>,
    ) -> u32 {
        let Some(ip) = ftnfs_wire::peer::ip_from_bytes(&p.origin.ip) else {
            return u32::MAX - 1;
        };
        if let Some(nlm_proc) = p.proc_.checked_sub(ftnfs_wire::peer::NLM_UPDATE) {
            return self.apply_lock_call(export, nlm_proc, p, ip, at, log);
        }
        let peer = SocketAddr::new(ip, p.origin.port);
        let (Some(info), Ok(a)) = (
            proc_table::NFS3.get(p.proc_ as usize),
            Args::decode_shared(p.proc_, &p.args),
        ) else {
            tracing::error!(export = export.0, "undecodable update from the primary");
            return u32::MAX - 1;
        };
        if let Some(log) = log {
            log.update(at.0, at.1 .0, &info.logged(&a, p.new_id.map(|(f, _)| f)));
        }
        let cred = if p.origin.anonymous {
            Cred::anonymous(&Default::default())
        } else {
            Cred {
                uid: p.origin.uid,
                gid: p.origin.gid,
                groups: p.origin.gids.clone(),
            }
        };
        let memory_export = self.export(export).filter(|e| e.cfg.in_memory);
        let dictate = Dictation {
            new_id: p
                .new_id
                .map(|(f, g)| (ftnfs_core::ids::FileId(f), ftnfs_core::ids::Generation(g))),
            time: nix::sys::time::TimeSpec::new(p.time.0, p.time.1 as i64),
            atime: info.mirrored_read && self.read_mode(export) == ReadMode::Serialized,
            // a secondary's copy is never the only one: the primary executed it first
            in_memory: memory_export.is_some(),
        };
        let xid = Xid(p.origin.xid);
        let reply = self.execute(xid, a, peer, cred, p.origin.anonymous, Some(dictate));
        if let Some(ex) = memory_export {
            ex.memory_update();
        }
        let key = DrcKey::new(ip, xid, nfs3::PROGRAM, 3, p.proc_, &p.args);
        if !info.idempotent {
            let mut drc = self.drc();
            drc.record(key, &reply, self.now());
            drc.tag(&key, export.0, false);
            drop(drc);
            if info.once {
                self.log_reply(&key, Some(export), &reply);
            }
        }
        reply_status(&reply)
    }

    /// Applies an NLM call the primary executed on `export`'s lock table: the same call on
    /// ours, in its order; its status is compared with the primary's. The waiters it grants
    /// are told by the primary, not from here.
    fn apply_lock_call(
        &self,
        export: ExportId,
        proc_: u32,
        p: &UpdatePayload,
        client: std::net::IpAddr,
        at: (u64, SeqNo),
        log: Option<&ChangeLog>,
    ) -> u32 {
        let (Some(ex), Ok(call)) = (
            self.export(export),
            crate::lock_table::Call::decode(ftnfs_wire::nlm::VERSION, proc_, &p.args),
        ) else {
            tracing::error!(export = export.0, "undecodable lock call from the primary");
            return u32::MAX - 1;
        };
        if let Some(log) = log {
            log.update(at.0, at.1 .0, &[]);
        }
        // monitored here too: any member may be the one that restarts without the table
        if let Some(host) = call.monitored_host() {
            if let Err(e) = self.recovery.monitor().monitor(client, &host) {
                tracing::error!(export = export.0, error = %e, "lock call refused here");
                return ftnfs_wire::nlm::Stat::DeniedNoLocks as u32;
            }
        }
        ex.locks
            .execute(&call, client, |fh| ex.lock_file(fh))
            .body
            .stat()
    }

    /// Every finished reply in the DRC small enough to hand to another member (a resync's
    /// last pass, a join).
    pub fn cached_replies(&self) -> Vec<ftnfs_wire::peer::CachedReply> {
        self.drc()
            .replies()
            .into_iter()
            .filter(|(_, r)| r.len() <= ftnfs_wire::peer::MAX_CACHED_REPLY as usize)
            .map(|(k, r)| ftnfs_wire::peer::CachedReply {
                client: ftnfs_wire::peer::ip_bytes(k.client),
                xid: k.xid.0,
                prog: k.prog,
                vers: k.vers,
                proc_: k.proc_,
                args_sum: k.args_sum,
                reply: r.to_vec(),
            })
            .collect()
    }

    /// Takes another member's cached replies of `export`'s updates into the DRC: `replace`
    /// (a resync makes this mirror the survivor's) or only where this member has no entry (a
    /// joining member's).
    pub fn adopt_replies(
        &self,
        export: ExportId,
        replies: &[ftnfs_wire::peer::CachedReply],
        replace: bool,
    ) {
        let now = self.now();
        let mut drc = self.drc();
        for r in replies {
            let Some(client) = ftnfs_wire::peer::ip_from_bytes(&r.client) else {
                continue;
            };
            let key = ftnfs_core::drc::DrcKey {
                client,
                xid: ftnfs_core::ids::Xid(r.xid),
                prog: r.prog,
                vers: r.vers,
                proc_: r.proc_,
                args_sum: r.args_sum,
            };
            let had = !replace && drc.contains(&key);
            if replace {
                drc.record(key, &r.reply, now);
            } else {
                drc.record_if_absent(key, &r.reply, now);
            }
            drc.tag(&key, export.0, false);
            let once = r.prog == nfs3::PROGRAM
                && proc_table::NFS3
                    .get(r.proc_ as usize)
                    .is_some_and(|i| i.once);
            if once && !had {
                self.log_reply(&key, Some(export), &r.reply);
            }
        }
    }

    /// Caches the reply of a mirrored update executed here but not sent (deposed, or the
    /// lease ran out): tagged with its export, not released.
    pub fn keep_unsent(&self, key: DrcKey, reply: &[u8], info: &ProcInfo, export: ExportId) {
        let mut drc = self.drc();
        drc.finish(key, reply, !info.idempotent, self.now());
        drc.tag(&key, export.0, false);
        drop(drc);
        if info.once {
            self.log_reply(&key, Some(export), reply);
        }
    }

    /// Forgets the cached replies of `export`'s updates (a resync is about to replace its
    /// mirror).
    pub fn clear_replies(&self, export: ExportId) {
        self.drc().clear_export(export.0);
        if let Some(l) = &self.replies {
            l.clear(export);
        }
    }

    pub fn drc(&self) -> std::sync::MutexGuard<'_, Drc> {
        // A panic while holding the lock cannot leave the cache inconsistent in a way that
        // matters more than losing service: keep going with its contents.
        self.drc.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The NFS status of an accepted reply (the first word after the RPC reply header), or
/// `u32::MAX` if the reply is not an accepted success.
pub fn reply_status(reply: &[u8]) -> u32 {
    let mut r = XdrReader::new(reply);
    let ok = (|| -> Result<u32, ftnfs_wire::xdr::XdrError> {
        let _xid = r.u32()?;
        let _mtype = r.u32()?;
        if r.u32()? != 0 {
            return Ok(u32::MAX); // MSG_DENIED
        }
        let _flavor = r.u32()?;
        let _verf = r.opaque(400)?;
        if r.u32()? != 0 {
            return Ok(u32::MAX); // not SUCCESS
        }
        r.u32()
    })();
    ok.unwrap_or(u32::MAX)
}
