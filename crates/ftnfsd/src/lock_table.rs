//! One export's lock table (issue 14) and the NLM calls that read or change it, executed the
//! same way on every member: the primary executes a client's call here, and each secondary
//! executes the same call, in the primary's order, when it applies the update that carries
//! it (`Local::apply_update`). Nothing here sends anything: a call's outcome names the
//! waiters it granted, and only the primary tells them (`nlm.rs`).
//!
//! The decisions are the core's lock manager (`ftnfs_core::lock_manager`); here: which
//! procedure does what, the NLM results, and the table as records for a resync's last pass
//! ([`LockTable::records`], [`LockTable::restore`]).

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use ftnfs_core::ids::FileId;
use ftnfs_core::lock_manager::{LockManager, LockOutcome, Share, ShareRefused, Waiter};
use ftnfs_core::locks::{range, Lock, Owner};
use ftnfs_wire::nlm::{self, Args, Holder, Res, ShareRes, Stat, TestArgs, TestRes};
use ftnfs_wire::peer::{ip_bytes, ip_from_bytes, LockOwner, LockRecord};
use ftnfs_wire::rpc::AcceptStat;
use ftnfs_wire::xdr::{XdrEncode, XdrWriter};

use crate::lock_log::{Entry, LockLog};

/// What a blocked caller needs to be told when its lock is granted: where, and the
/// arguments of the GRANTED callback (its own lock, as it asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The client host.
    pub addr: IpAddr,
    /// The callback's arguments.
    pub args: TestArgs,
}

/// One NLM call, decoded; an asynchronous `_MSG` call as its synchronous procedure; a
/// version 1 or 3 call as the version 4 call it is (only its result is encoded back in its
/// version).
#[derive(Debug, Clone)]
pub struct Call {
    /// The version the client called (its result is encoded in it).
    pub vers: u32,
    /// The (synchronous) procedure.
    pub proc_: u32,
    /// For a `_MSG` call: the `_RES` procedure its result is sent back with.
    pub res_proc: Option<u32>,
    /// Its arguments.
    pub args: Args,
    /// Its arguments in version 4 (what a secondary and the lock log get): as sent, or
    /// re-encoded from version 1 or 3.
    pub raw: Vec<u8>,
}

impl Call {
    /// Decodes a call of procedure `proc_` of version `vers`. `Err`: the RPC answer instead
    /// (`Success` with no body for a `_RES` call, the result of a `_MSG` call we never make).
    pub fn decode(vers: u32, proc_: u32, args_bytes: &[u8]) -> Result<Call, AcceptStat> {
        let (proc_, res_proc) = match proc_ {
            nlm::procs::TEST_MSG..=nlm::procs::UNLOCK_MSG => (proc_ - 5, Some(proc_ + 5)),
            nlm::procs::TEST_RES..=nlm::procs::GRANTED_RES => return Err(AcceptStat::Success),
            p => (p, None),
        };
        match Args::decode_version(vers, proc_, args_bytes) {
            Ok(Some(args)) => Ok(Call {
                vers,
                proc_,
                res_proc,
                raw: if vers == nlm::VERSION {
                    args_bytes.to_vec()
                } else {
                    args.to_bytes()
                },
                args,
            }),
            Ok(None) => Err(AcceptStat::ProcUnavail),
            Err(_) => Err(AcceptStat::GarbageArgs),
        }
    }

    /// A call of ours (not a client's): procedure `proc_` of version 4 with `args`.
    pub fn made(proc_: u32, args: Args) -> Call {
        Call {
            vers: nlm::VERSION,
            proc_,
            res_proc: None,
            raw: args.to_bytes(),
            args,
        }
    }

    /// An UNLOCK of `alock` (a lock given back for its client).
    pub fn unlock(cookie: Vec<u8>, alock: nlm::Lock) -> Call {
        Call::made(
            nlm::procs::UNLOCK,
            Args::Unlock(nlm::UnlockArgs { cookie, alock }),
        )
    }

    /// A FREE_ALL of `host` (its SM_NOTIFY: it restarted).
    pub fn free_all(host: &str) -> Call {
        let n = nlm::Notify {
            name: host.as_bytes().to_vec(),
            state: 0,
        };
        Call::made(nlm::procs::FREE_ALL, Args::FreeAll(n))
    }

    /// The handle of the file it is about (none for NULL, FREE_ALL).
    pub fn file(&self) -> Option<&[u8]> {
        match &self.args {
            Args::Test(a) => Some(&a.alock.fh),
            Args::Lock(a) | Args::NmLock(a) => Some(&a.alock.fh),
            Args::Cancel(a) => Some(&a.alock.fh),
            Args::Unlock(a) => Some(&a.alock.fh),
            Args::Share(a) => Some(&a.fh),
            _ => None,
        }
    }

    /// Refused during a grace period (`recovery.rs`): a new lock or share reservation, or a
    /// TEST — a reclaim of what a client held before the restart is what the grace is for,
    /// and letting go (UNLOCK, CANCEL, UNSHARE) is always allowed.
    pub fn waits_for_grace(&self) -> bool {
        match &self.args {
            Args::Test(_) => true,
            Args::Lock(a) | Args::NmLock(a) => !a.reclaim,
            Args::Share(a) => !a.reclaim && self.proc_ == nlm::procs::SHARE,
            _ => false,
        }
    }

    /// The host a LOCK makes us monitor (its caller name): a lock holder is told when this
    /// member restarted without its table (NM_LOCK is the lock of a host that asks not to
    /// be monitored).
    pub fn monitored_host(&self) -> Option<String> {
        match &self.args {
            Args::Lock(a) => Some(String::from_utf8_lossy(&a.alock.caller_name).into_owned()),
            _ => None,
        }
    }

    /// It changes the table: every member must execute it, in the primary's order.
    pub fn changes(&self) -> bool {
        matches!(
            self.proc_,
            nlm::procs::LOCK
                | nlm::procs::NM_LOCK
                | nlm::procs::CANCEL
                | nlm::procs::UNLOCK
                | nlm::procs::SHARE
                | nlm::procs::UNSHARE
                | nlm::procs::FREE_ALL
        )
    }

    /// The cookie its result echoes.
    fn cookie(&self) -> &[u8] {
        match &self.args {
            Args::Test(a) => &a.cookie,
            Args::Lock(a) | Args::NmLock(a) => &a.cookie,
            Args::Cancel(a) => &a.cookie,
            Args::Unlock(a) => &a.cookie,
            Args::Share(a) => &a.cookie,
            _ => &[],
        }
    }

    /// Its result with status `stat` and nothing else (a stale handle, not ours to grant…).
    pub fn refused(&self, stat: Stat) -> Body {
        let cookie = self.cookie().to_vec();
        match &self.args {
            Args::Test(_) if self.proc_ == nlm::procs::TEST => Body::Test(TestRes {
                cookie,
                stat,
                holder: None,
            }),
            Args::Share(_) => Body::Share(ShareRes {
                cookie,
                stat,
                sequence: 0,
            }),
            Args::Null | Args::FreeAll(_) => Body::Void,
            _ => Body::Res(Res { cookie, stat }),
        }
    }
}

/// The result of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// None (NULL, FREE_ALL).
    Void,
    /// nlm4_res.
    Res(Res),
    /// nlm4_testres.
    Test(TestRes),
    /// nlm4_shareres.
    Share(ShareRes),
}

impl Body {
    /// Its status, as the members compare it (a secondary that gets another is failed out).
    pub fn stat(&self) -> u32 {
        match self {
            Body::Void => 0,
            Body::Res(r) => r.stat as u32,
            Body::Test(r) => r.stat as u32,
            Body::Share(r) => r.stat as u32,
        }
    }

    /// Appends its XDR in version `vers`.
    pub fn encode(&self, vers: u32, w: &mut XdrWriter) {
        match self {
            Body::Void => {}
            Body::Res(r) => r.encode_version(vers, w),
            Body::Test(r) => r.encode_version(vers, w),
            Body::Share(r) => r.encode_version(vers, w),
        }
    }
}

/// What executing a call did: its result, and the waiters it granted (to be told by the
/// primary alone).
#[derive(Debug)]
pub struct Outcome {
    /// The result.
    pub body: Body,
    /// Blocked callers that hold their lock now, in the order they came.
    pub granted: Vec<Pending>,
}

/// One export's locks, waiters and share reservations, and their log.
#[derive(Default)]
pub struct LockTable {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    mgr: LockManager<FileId, Pending>,
    /// Where every change goes before it is answered (none: not kept, a test's table).
    log: Option<LockLog>,
    /// Waiters granted lately, with when (every member: they execute the same calls). A
    /// member that takes over tells them again ([`LockTable::recent_grants`]): the old
    /// primary may have died before its GRANTED went out.
    recent: std::collections::VecDeque<(std::time::Instant, FileId, Pending)>,
}

/// How long a granted waiter counts as maybe not told: the Linux client asks again itself
/// every 30 s.
pub const RECENT_GRANTS: std::time::Duration = std::time::Duration::from_secs(35);
/// Most granted waiters remembered.
pub const MAX_RECENT_GRANTS: usize = 1024;

impl Inner {
    fn log(&mut self, e: Entry) {
        let Some(log) = &mut self.log else {
            return;
        };
        let r = if log.wants_compaction() {
            let records = records_of(&self.mgr);
            log.rewrite(&records)
        } else {
            log.append(&e)
        };
        if let Err(err) = r {
            // the call is done in memory; only a crash of this process would lose it now
            tracing::error!(error = %err, "lock log: cannot write; the lock table is not kept");
            self.log = None;
        }
    }
}

impl LockTable {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding it is a bug; keep serving the table as it is
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the table's log at `path` and replays it (`file` names a handle's file as
    /// [`execute`](Self::execute) does): the table as the last run left it.
    pub fn open_log(
        &self,
        path: &std::path::Path,
        file: impl Fn(&[u8]) -> Option<FileId>,
    ) -> std::io::Result<()> {
        let (mut log, entries) = LockLog::open(path)?;
        let mut g = self.inner();
        for e in entries {
            match e {
                Entry::Call {
                    proc_,
                    client,
                    args,
                } => {
                    if let Ok(call) = Call::decode(nlm::VERSION, proc_, &args) {
                        apply(&mut g.mgr, &call, client, &file);
                    }
                }
                Entry::Snapshot { first, records } => {
                    restore_into(&mut g.mgr, first, &records);
                }
            }
        }
        // start from a snapshot: the replayed calls are not needed again
        log.rewrite(&records_of(&g.mgr))?;
        g.log = Some(log);
        Ok(())
    }

    /// Makes the log durable (a clean stop, before the seal).
    pub fn sync(&self) -> std::io::Result<()> {
        match &self.inner().log {
            Some(l) => l.sync(),
            None => Ok(()),
        }
    }

    /// Executes `call` from the client at `client`, logged before this returns if it
    /// changes the table. `file` names the file of a handle, or `None` for a stale one.
    /// Deterministic: the same calls in the same order leave the same table and give the
    /// same results on every member.
    pub fn execute(
        &self,
        call: &Call,
        client: IpAddr,
        file: impl Fn(&[u8]) -> Option<FileId>,
    ) -> Outcome {
        let mut g = self.inner();
        let o = apply(&mut g.mgr, call, client, &file);
        if !o.granted.is_empty() {
            let now = std::time::Instant::now();
            for p in &o.granted {
                if let Some(k) = file(&p.args.alock.fh) {
                    g.recent.push_back((now, k, p.clone()));
                }
            }
            while g.recent.len() > MAX_RECENT_GRANTS
                || g.recent
                    .front()
                    .is_some_and(|(t, ..)| t.elapsed() > RECENT_GRANTS)
            {
                g.recent.pop_front();
            }
        }
        if call.changes() {
            g.log(Entry::Call {
                proc_: call.proc_,
                client,
                args: call.raw.clone(),
            });
        }
        o
    }

    /// The waiters granted within [`RECENT_GRANTS`] whose owner still holds a lock of that
    /// file: a member that just took over tells them again (the old primary may not have).
    pub fn recent_grants(&self) -> Vec<Pending> {
        let g = self.inner();
        g.recent
            .iter()
            .filter(|(t, k, p)| {
                let o = owner(&p.args.alock);
                t.elapsed() <= RECENT_GRANTS && g.mgr.held(k).iter().any(|l| l.owner == o)
            })
            .map(|(_, _, p)| p.clone())
            .collect()
    }

    /// (files with locks, locks, blocked waiters).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.inner().mgr.counts()
    }

    /// Drops the locks, waiters and shares of files `keep` refuses (removed files). How many.
    pub fn retain(&self, keep: impl Fn(FileId) -> bool) -> usize {
        // not logged: a replay drops the calls of removed files the same way (their handles
        // are stale then)
        self.inner().mgr.retain_files(|k| keep(*k))
    }

    /// Every lock held and every blocked waiter, as JSON (`ftnfsctl locks`).
    pub fn list(&self, export: u32) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let g = self.inner();
        let m = &g.mgr;
        let one = |k: &FileId, o: &Owner, exclusive: bool, start: u64, end: u64| {
            serde_json::json!({
                "export": export,
                "file": k.0,
                "client": o.host,
                "svid": o.svid,
                "exclusive": exclusive,
                "start": start,
                "end": if end == u64::MAX { serde_json::Value::Null } else { end.into() },
            })
        };
        let held = m
            .all_held()
            .into_iter()
            .map(|(k, l)| one(k, &l.owner, l.exclusive, l.start, l.end))
            .collect();
        let waiting = m
            .all_waiting()
            .into_iter()
            .map(|(k, w)| one(k, &w.owner, w.exclusive, w.start, w.end))
            .collect();
        (held, waiting)
    }

    /// The client hosts (caller names) that hold or wait for a lock, or hold a share.
    pub fn hosts(&self) -> std::collections::HashSet<String> {
        let g = self.inner();
        let mut h: std::collections::HashSet<String> = g
            .mgr
            .all_held()
            .into_iter()
            .map(|(_, l)| l.owner.host.clone())
            .collect();
        h.extend(
            g.mgr
                .all_waiting()
                .into_iter()
                .map(|(_, w)| w.owner.host.clone()),
        );
        h.extend(
            g.mgr
                .all_shares()
                .into_iter()
                .map(|(_, s)| s.owner.host.clone()),
        );
        h
    }

    /// The whole table as records (a resync's last pass sends them): held locks, then the
    /// waiters of each file in queue order, then share reservations.
    pub fn records(&self) -> Vec<LockRecord> {
        records_of(&self.inner().mgr)
    }

    /// Takes in a piece of another member's table ([`records`](Self::records)), logged
    /// (the first piece replaces the log); `first` empties this one first. How many records
    /// could not go in (they conflict with what came before, or a bound was reached: never
    /// for a table that came whole from a member with the same bounds).
    pub fn restore(&self, first: bool, records: &[LockRecord]) -> usize {
        let mut g = self.inner();
        let refused = restore_into(&mut g.mgr, first, records);
        if first {
            if let Some(log) = &mut g.log {
                if let Err(e) = log.rewrite(records) {
                    tracing::error!(error = %e, "lock log: cannot write; the lock table is not kept");
                    g.log = None;
                }
            }
        } else {
            g.log(Entry::Snapshot {
                first,
                records: records.to_vec(),
            });
        }
        refused
    }
}

/// What `call` does to the table `mgr` (the rules of each procedure; nothing logged).
fn apply(
    mgr: &mut LockManager<FileId, Pending>,
    call: &Call,
    client: IpAddr,
    file: &impl Fn(&[u8]) -> Option<FileId>,
) -> Outcome {
    let mut granted = Vec::new();
    let stale = || call.refused(Stat::StaleFh);
    let body = match &call.args {
        Args::Null => Body::Void,
        // we are no client: nothing of ours waits
        Args::Test(_) if call.proc_ == nlm::procs::GRANTED => call.refused(Stat::Denied),
        Args::Test(a) => match (file(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
            (None, _) => stale(),
            (_, None) => call.refused(Stat::Fbig),
            (Some(k), Some((start, end))) => {
                let found = mgr.test(&k, &owner(&a.alock), a.exclusive, start, end);
                Body::Test(TestRes {
                    cookie: a.cookie.clone(),
                    stat: if found.is_some() {
                        Stat::Denied
                    } else {
                        Stat::Granted
                    },
                    holder: found.as_ref().map(holder),
                })
            }
        },
        Args::Lock(a) | Args::NmLock(a) => {
            match (file(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
                (None, _) => stale(),
                (_, None) => call.refused(Stat::Fbig),
                (Some(k), Some((start, end))) => {
                    // NM_LOCK is never monitored and never blocks
                    let block = (a.block && call.proc_ == nlm::procs::LOCK).then(|| Pending {
                        addr: client,
                        args: TestArgs {
                            cookie: a.cookie.clone(),
                            exclusive: a.exclusive,
                            alock: a.alock.clone(),
                        },
                    });
                    let o = owner(&a.alock);
                    call.refused(match mgr.lock(&k, &o, a.exclusive, start, end, block) {
                        LockOutcome::Granted => Stat::Granted,
                        LockOutcome::Denied(_) => Stat::Denied,
                        LockOutcome::Blocked => Stat::Blocked,
                        LockOutcome::NoLocks => Stat::DeniedNoLocks,
                    })
                }
            }
        }
        Args::Cancel(a) => {
            if let (Some(k), Some((start, end))) =
                (file(&a.alock.fh), range(a.alock.offset, a.alock.len))
            {
                mgr.cancel(&k, &owner(&a.alock), a.exclusive, start, end);
            }
            call.refused(Stat::Granted)
        }
        Args::Unlock(a) => match (file(&a.alock.fh), range(a.alock.offset, a.alock.len)) {
            (None, _) => stale(),
            (_, None) => call.refused(Stat::Fbig),
            (Some(k), Some((start, end))) => match mgr.unlock(&k, &owner(&a.alock), start, end) {
                Ok(g) => {
                    granted.extend(g.into_iter().map(|w| w.token));
                    call.refused(Stat::Granted)
                }
                Err(_) => call.refused(Stat::DeniedNoLocks),
            },
        },
        Args::FreeAll(n) => {
            let host = String::from_utf8_lossy(&n.name);
            let g = mgr.free_host(&host);
            granted.extend(g.into_iter().map(|(_, w)| w.token));
            Body::Void
        }
        Args::Share(a) => {
            let o = Owner {
                host: String::from_utf8_lossy(&a.caller_name).into_owned(),
                svid: 0,
                oh: a.oh.clone(),
            };
            match file(&a.fh) {
                None => stale(),
                Some(k) if call.proc_ == nlm::procs::UNSHARE => {
                    mgr.unshare(&k, &o);
                    call.refused(Stat::Granted)
                }
                Some(k) => call.refused(match mgr.share(&k, &o, a.access, a.mode) {
                    Ok(()) => Stat::Granted,
                    Err(ShareRefused::Conflict) => Stat::Denied,
                    Err(ShareRefused::NoRoom) => Stat::DeniedNoLocks,
                }),
            }
        }
        Args::Res(_) | Args::TestRes(_) => Body::Void,
    };
    Outcome { body, granted }
}

/// The whole table as records (a resync's last pass sends them): held locks, then the
/// waiters of each file in queue order, then share reservations.
fn records_of(m: &LockManager<FileId, Pending>) -> Vec<LockRecord> {
    let mut out = Vec::new();
    for (k, l) in m.all_held() {
        out.push(LockRecord::Held {
            file: k.0,
            owner: wire_owner(&l.owner),
            exclusive: l.exclusive,
            start: l.start,
            end: l.end,
        });
    }
    for (k, w) in m.all_waiting() {
        let mut cb = XdrWriter::new();
        w.token.args.encode(&mut cb);
        out.push(LockRecord::Waiting {
            file: k.0,
            owner: wire_owner(&w.owner),
            exclusive: w.exclusive,
            start: w.start,
            end: w.end,
            client: ip_bytes(w.token.addr),
            callback: cb.into_inner(),
        });
    }
    for (k, s) in m.all_shares() {
        out.push(LockRecord::Share {
            file: k.0,
            owner: wire_owner(&s.owner),
            access: s.access,
            deny: s.deny,
        });
    }
    out
}

/// Takes in a piece of another member's table ([`records`](Self::records)); `first`
/// empties this one first. How many records could not go in (they conflict with what
/// came before, or a bound was reached: never for a table that came whole from a member
/// with the same bounds).
fn restore_into(
    m: &mut LockManager<FileId, Pending>,
    first: bool,
    records: &[LockRecord],
) -> usize {
    if first {
        m.clear();
    }
    let mut refused = 0;
    for r in records {
        let ok = match r {
            LockRecord::Held {
                file,
                owner,
                exclusive,
                start,
                end,
            } => m.restore_held(
                &FileId(*file),
                &Lock {
                    owner: core_owner(owner),
                    exclusive: *exclusive,
                    start: *start,
                    end: *end,
                },
            ),
            LockRecord::Waiting {
                file,
                owner,
                exclusive,
                start,
                end,
                client,
                callback,
            } => {
                let args = Args::decode(nlm::procs::GRANTED, callback);
                match (ip_from_bytes(client), args) {
                    (Some(addr), Ok(Some(Args::Test(args)))) => m.restore_waiter(
                        &FileId(*file),
                        Waiter {
                            owner: core_owner(owner),
                            exclusive: *exclusive,
                            start: *start,
                            end: *end,
                            token: Pending { addr, args },
                        },
                    ),
                    _ => false,
                }
            }
            LockRecord::Share {
                file,
                owner,
                access,
                deny,
            } => m.restore_share(
                &FileId(*file),
                &Share {
                    owner: core_owner(owner),
                    access: *access,
                    deny: *deny,
                },
            ),
        };
        if !ok {
            refused += 1;
        }
    }
    refused
}

fn wire_owner(o: &Owner) -> LockOwner {
    LockOwner {
        host: o.host.clone().into_bytes(),
        svid: o.svid,
        oh: o.oh.clone(),
    }
}

fn core_owner(o: &LockOwner) -> Owner {
    Owner {
        host: String::from_utf8_lossy(&o.host).into_owned(),
        svid: o.svid,
        oh: o.oh.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_call(proc_: u32, who: &str, svid: i32, exclusive: bool, block: bool) -> Call {
        let alock = nlm::Lock {
            caller_name: who.as_bytes().to_vec(),
            fh: vec![1],
            oh: who.as_bytes().to_vec(),
            svid,
            offset: 0,
            len: 10,
        };
        let args = match proc_ {
            nlm::procs::UNLOCK => Args::Unlock(nlm::UnlockArgs {
                cookie: vec![9],
                alock,
            }),
            _ => Args::Lock(nlm::LockArgs {
                cookie: vec![9],
                block,
                exclusive,
                alock,
                reclaim: false,
                state: 1,
            }),
        };
        Call::made(proc_, args)
    }

    #[test]
    fn the_same_calls_leave_the_same_table_and_a_copy_grants_alike() {
        let client: IpAddr = "10.0.0.9".parse().unwrap();
        let file = |_: &[u8]| Some(FileId(7));
        let calls = [
            lock_call(nlm::procs::LOCK, "a", 1, true, false),
            lock_call(nlm::procs::LOCK, "b", 2, true, true),
            lock_call(nlm::procs::LOCK, "c", 3, false, true),
            lock_call(nlm::procs::NM_LOCK, "d", 4, false, true),
        ];
        let (p, s) = (LockTable::default(), LockTable::default());
        for c in &calls {
            let (x, y) = (p.execute(c, client, file), s.execute(c, client, file));
            assert_eq!(x.body, y.body);
        }
        assert_eq!(p.records(), s.records());
        assert_eq!(
            p.counts(),
            (1, 1, 2),
            "a holds; b and c wait; d (NM_LOCK) never waits"
        );
        // a third member copied from the primary's records
        let copy = LockTable::default();
        copy.execute(
            &lock_call(nlm::procs::LOCK, "z", 9, true, false),
            client,
            |_| Some(FileId(8)),
        );
        assert_eq!(copy.restore(true, &p.records()), 0);
        assert_eq!(copy.records(), p.records());
        let unlock = lock_call(nlm::procs::UNLOCK, "a", 1, true, false);
        let (gp, gc) = (
            p.execute(&unlock, client, file),
            copy.execute(&unlock, client, file),
        );
        assert_eq!(gp.granted, gc.granted);
        assert_eq!(gp.granted.len(), 1, "b, the first waiter, holds it now");
        assert_eq!(gp.granted[0].args.alock.caller_name, b"b");
        assert_eq!(gp.granted[0].addr, client);
        assert_eq!(p.records(), copy.records());
    }

    #[test]
    fn a_stale_handle_and_a_range_past_the_end_are_refused_without_a_change() {
        let t = LockTable::default();
        let c = lock_call(nlm::procs::LOCK, "a", 1, true, false);
        let o = t.execute(&c, "10.0.0.9".parse().unwrap(), |_| None);
        assert_eq!(o.body.stat(), Stat::StaleFh as u32);
        assert_eq!(t.counts(), (0, 0, 0));
    }
}
