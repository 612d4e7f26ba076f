//! The identity table of one export (DESIGN.md decision 2): file id ⇄ local object.
//!
//! Kept in a redb database under the state directory, outside the exported tree, so clients
//! never see it and an administrator still sees a plain directory tree.
//!
//! ```text
//!  objects : file id            → (generation, local inode)
//!  links   : (file id, parent file id, name) → ()      every name of the object
//!  inodes  : local inode        → file id              to name what READDIR/LOOKUP find
//!  lives   : file id            → life of its inode    which object had that inode number
//!  adopted : file id            → ()                   found here, made outside ftnfs
//!  meta    : "next_id", "generation"
//! ```
//! A *life* ([`super::life`]) tells two objects that had the same inode number apart: an
//! object removed and another created outside ftnfs often get the same number. An inode
//! number found with another life than recorded is a new object: it gets a new id and the
//! old id is forgotten (its handles are STALE). A record without a life (made before lives
//! were kept) takes the first one it is seen with.
//! Every change is durable before the client's reply is built: a handle we hand out is on
//! disk, so it survives a crash of the server. Each change commits without a sync
//! (`Durability::None`). A client's CREATE, REMOVE, RENAME, LINK is also written to the
//! intent log ([`super::idlog`]) and is durable once the log is synced past it — one small
//! write and `fdatasync`, shared by concurrent changes — instead of a durable redb commit;
//! checkpoints make the table itself durable and empty the log, and opening the table after
//! a crash applies what the log holds beyond the table. The rarer changes (adoption, a
//! resync's records, clearing) wait for a durable commit made after theirs, also shared
//! ([`GroupSync`], `Documentation/11-durable-metadata.md`).
//!
//! File ids are never reused. The generation is the table's incarnation: if the state
//! directory is lost and the table is rebuilt, handles from before carry an old generation
//! and are answered with NFS3ERR_STALE instead of reaching whatever object got their id.
//! The root is the exception: its generation is always [`ROOT_GEN`], so that the root handle
//! is the same on every member of a group and across rebuilds (the root cannot be replaced).
//! On a secondary, objects get the id and generation the primary dictated.
//!
//! New ids come from an in-memory counter (loaded from `next_id` at open) so that a primary
//! can decide a new object's id *before* creating it and send that decision to the
//! secondaries at the same moment; each commit persists the counter's high mark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use super::idlog::{Change, IdLog};
use super::life;
use ftnfs_core::ids::{FileId, Generation};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const OBJECTS: TableDefinition<u64, (u32, u64)> = TableDefinition::new("objects");
const LINKS: TableDefinition<(u64, u64, &[u8]), ()> = TableDefinition::new("links");
const INODES: TableDefinition<u64, u64> = TableDefinition::new("inodes");
const LIVES: TableDefinition<u64, u64> = TableDefinition::new("lives");
const ADOPTED: TableDefinition<u64, ()> = TableDefinition::new("adopted");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Deepest directory nesting we resolve; deeper trees give NFS3ERR_NAMETOOLONG.
pub const MAX_DEPTH: usize = 1024;

/// Most names of one object that [`IdTable::links`] returns.
pub const MAX_LINKS: usize = 64;

/// Errors of the identity table.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The database failed (I/O, corruption).
    #[error("identity table: {0}")]
    Db(#[from] redb::Error),
    /// An object's chain of parents does not lead to the root (table damaged or too deep).
    #[error("file id {0} has no path to the export root")]
    Orphan(FileId),
    /// The export directory could not be read.
    #[error("export directory: {0}")]
    Io(String),
    /// A dictated file id is already used by another object here: this mirror has diverged.
    #[error("dictated file id {0} is already in use")]
    Taken(FileId),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for IdError {
            fn from(e: $t) -> Self {
                IdError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the table knows of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjRec {
    /// Its generation.
    pub gen: Generation,
    /// Its local inode number on this member.
    pub ino: u64,
    /// Which life of that inode number it is ([`super::life::UNKNOWN`] if not recorded).
    pub life: u64,
}

/// What [`IdTable::adopt`] found for a list of directory entries.
#[derive(Debug, Default)]
pub struct Adoption {
    /// The identity of each entry, in input order.
    pub ids: Vec<(FileId, Generation)>,
    /// Known objects found under a name not recorded for them (a hard link or a rename made
    /// outside ftnfs): their other recorded names may no longer lead to them.
    pub renamed: Vec<FileId>,
    /// Entries that got a new identity here: (index in the input, whether their inode number
    /// belonged to another object before — that object was removed outside ftnfs).
    pub adopted: Vec<(usize, bool)>,
}

/// A new object with a dictated identity: (parent, name, (inode, life), id, generation).
pub type NewRecord = (FileId, Vec<u8>, (u64, u64), FileId, Generation);

/// Generation of every export's root.
pub const ROOT_GEN: Generation = Generation(1);

/// Group commit: how many changes were committed (without a sync) and how many of those are
/// known durable, and whether a durable commit is under way.
#[derive(Default)]
struct SyncState {
    committed: u64,
    durable: u64,
    syncing: bool,
}

/// The group commit of one table: changes wait for a durable commit made after theirs; the
/// first waiter makes it, the others wait for it (and the next one makes the next).
#[derive(Default)]
struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

fn lock_state(m: &Mutex<SyncState>) -> std::sync::MutexGuard<'_, SyncState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// The call this thread executes is for an `async` client: its table changes need not
    /// be durable before the reply ([`reply_before_sync`]).
    static ASYNC_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the call this thread executes as one whose table changes are not waited for
/// (exports(5) `async`); each call starts unmarked. Such changes are flushed within seconds
/// by [`IdTable::flush_if_unsynced`], or with the next durable change.
pub fn reply_before_sync(on: bool) {
    ASYNC_CALL.with(|c| c.set(on));
}

/// How often the daemon flushes the changes of `async` clients' calls.
pub const ASYNC_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Most objects [`Recent`] keeps.
const RECENT_CAP: usize = 65_536;

/// The logged changes not yet applied, held: no other change is logged meanwhile.
type PendingGuard<'a> = std::sync::MutexGuard<'a, Vec<(u64, Change)>>;

/// Most logged changes waiting to be applied to the table ([`IdTable::settle`]): they are
/// applied in one write transaction once this many wait, or before anything reads the table.
const BATCH: usize = 64;

/// What a lookup by file id needs: its record and its first name (`None` for the root).
#[derive(Clone)]
struct Known {
    rec: ObjRec,
    first: Option<(FileId, Vec<u8>)>,
}

/// The objects looked up lately, so that the hot path (every call resolves its handle:
/// record, then the names up to the root) reads no table. Bounded. Every change of an
/// object's record or names forgets it (before and after the commit) and bumps `epoch`; a
/// lookup that read the table inserts what it read only if no change happened meanwhile, so
/// the cache never holds something older than the table.
#[derive(Default)]
struct Recent {
    epoch: u64,
    map: std::collections::HashMap<u64, Known>,
    /// Inode number → the id last cached with it, so that naming an entry (LOOKUP, and the
    /// child a REMOVE or RENAME acts on) reads no table either. A hint only: the entry of
    /// `map` it leads to must still carry that inode.
    by_ino: std::collections::HashMap<u64, u64>,
}

impl Recent {
    /// Keeps what is known of `id` (bounded: full, it forgets an arbitrary eighth first).
    fn learn(&mut self, id: FileId, k: Known) {
        if self.map.len() >= RECENT_CAP {
            let drop: Vec<u64> = self.map.keys().take(RECENT_CAP / 8).copied().collect();
            for d in drop {
                self.forget(d);
            }
        }
        self.by_ino.insert(k.rec.ino, id.0);
        self.map.insert(id.0, k);
    }

    fn forget(&mut self, id: u64) {
        if let Some(k) = self.map.remove(&id) {
            if self.by_ino.get(&k.rec.ino) == Some(&id) {
                self.by_ino.remove(&k.rec.ino);
            }
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.by_ino.clear();
    }

    /// The cached object with inode `ino` in life `life`, if any.
    fn by_life(&self, ino: u64, life: u64) -> Option<FileId> {
        let id = *self.by_ino.get(&ino)?;
        let k = self.map.get(&id)?;
        (k.rec.ino == ino && life::same(k.rec.life, life)).then_some(FileId(id))
    }

    /// The identities of `entries` (name, inode, life) of directory `parent` when every one
    /// is cached as an object of that inode, in the same life, whose first name is that
    /// entry: what [`IdTable::adopt`]'s fast path would read from the table.
    fn named(
        &self,
        parent: FileId,
        entries: &[(&[u8], u64, u64)],
    ) -> Option<Vec<(FileId, Generation)>> {
        entries
            .iter()
            .map(|(name, ino, life)| {
                let id = *self.by_ino.get(ino)?;
                let k = self.map.get(&id)?;
                let first = k.first.as_ref()?;
                (k.rec.ino == *ino
                    && !(k.rec.life == life::UNKNOWN && *life != life::UNKNOWN)
                    && life::same(k.rec.life, *life)
                    && first.0 == parent
                    && first.1 == *name)
                    .then_some((FileId(id), k.rec.gen))
            })
            .collect()
    }
}

/// How far the intent log is synced, and whether a sync is under way.
#[derive(Default)]
struct LogSync {
    durable: u64,
    syncing: bool,
    /// The highest change whose sync a deferring call asked the helper for.
    wanted: u64,
    stop: bool,
}

/// The intent log's syncs: a group sync (every change written before a sync starts is
/// covered by it), and a helper thread that starts one as soon as a call that defers its
/// wait ([`IdTable::defer_log_sync`]) has written its change.
struct LogSyncer {
    /// The log file, for syncing without holding the log.
    file: std::fs::File,
    /// Number of the last change written to the log.
    seq: AtomicU64,
    state: Mutex<LogSync>,
    synced: Condvar,
    kick: Condvar,
}

impl LogSyncer {
    fn state(&self) -> std::sync::MutexGuard<'_, LogSync> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the log is synced past change `seq`, syncing it if nobody is.
    fn sync_to(&self, seq: u64) -> Result<(), IdError> {
        let mut s = self.state();
        loop {
            if s.durable >= seq {
                return Ok(());
            }
            if s.syncing {
                s = self.synced.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // every change numbered up to here is written (its number is stored after)
            let target = self.seq.load(Ordering::Acquire);
            s.syncing = true;
            drop(s);
            let r = self.file.sync_data();
            s = self.state();
            s.syncing = false;
            if r.is_ok() {
                s.durable = s.durable.max(target);
            }
            self.synced.notify_all();
            r.map_err(|e| IdError::Io(format!("intent log: {e}")))?;
        }
    }

    /// Asks the helper to sync past `seq` now.
    fn ask(&self, seq: u64) {
        let mut s = self.state();
        if seq > s.wanted {
            s.wanted = seq;
            self.kick.notify_one();
        }
    }

    /// The helper: syncs whenever a deferring call asked for a change not yet durable. A
    /// failed sync is seen again by the caller's own wait ([`LogWait::finish`]).
    fn run(self: std::sync::Arc<Self>) {
        // the highest change whose sync failed here: not tried again until asked anew (a
        // failing disk is not hammered; callers' own waits try, and report, again)
        let mut failed = 0;
        let mut s = self.state();
        loop {
            if s.stop {
                return;
            }
            if s.wanted > s.durable && s.wanted > failed {
                if s.syncing {
                    // a caller syncs; what it does not cover is ours after it
                    s = self.synced.wait(s).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
                let want = s.wanted;
                drop(s);
                if self.sync_to(want).is_err() {
                    failed = want;
                }
                s = self.state();
                continue;
            }
            s = self.kick.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

thread_local! {
    /// The call this thread executes defers its wait for the log's sync: the table it
    /// defers on (its address) and the highest change it logged there (0: none yet).
    static DEFERRED: std::cell::Cell<Option<(usize, u64)>> = const { std::cell::Cell::new(None) };
}

/// While it lives, this thread's logged changes to one table do not wait for the log's
/// sync in [`IdTable`]'s methods: the helper thread starts that sync at once, and
/// [`finish`](Self::finish) waits for it — so a procedure's own fsyncs (the new object, its
/// directory) run while the log syncs. Dropped unfinished (an error path), it waits too:
/// nothing returns to the client before its changes are durable either way.
pub struct LogWait<'a> {
    table: &'a IdTable,
    done: bool,
}

impl LogWait<'_> {
    /// Waits until every change this call logged is durable.
    pub fn finish(mut self) -> Result<(), IdError> {
        self.done = true;
        self.wait()
    }

    fn wait(&self) -> Result<(), IdError> {
        match DEFERRED.with(|d| d.take()) {
            Some((_, seq)) if seq > 0 => self.table.syncer.sync_to(seq),
            _ => Ok(()),
        }
    }
}

impl Drop for LogWait<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.wait();
        }
    }
}

/// One export's table.
pub struct IdTable {
    /// The intent log of clients' changes ([`super::idlog`]).
    log: Mutex<IdLog>,
    /// Its syncs (shared with their helper thread).
    syncer: std::sync::Arc<LogSyncer>,
    /// Logged changes and checkpoints take turns: a checkpoint sees no change half done.
    gate: Mutex<()>,
    db: Database,
    gen: Generation,
    next: AtomicU64,
    /// A resync is writing: commits are not synced one by one; [`IdTable::flush`] syncs them.
    bulk: std::sync::atomic::AtomicBool,
    sync: GroupSync,
    recent: Mutex<Recent>,
    /// Changes of `async` calls not yet made durable.
    unsynced: std::sync::atomic::AtomicBool,
    /// Logged changes not yet applied to the table, in log order ([`IdTable::settle`]).
    pending: Mutex<Vec<(u64, Change)>>,
    /// How many there are (read without the lock).
    pending_n: std::sync::atomic::AtomicUsize,
}

impl IdTable {
    /// Opens (or creates) the table and makes sure the root is recorded with `root_ino`.
    /// `new_generation` is used only when the table is created.
    pub fn open(path: &Path, root_ino: u64, new_generation: u32) -> Result<IdTable, IdError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        let gen;
        {
            let mut meta = tx.open_table(META)?;
            let g = meta.get("generation")?.map(|v| v.value());
            gen = match g {
                Some(g) => g as u32,
                None => {
                    let g = new_generation.max(1);
                    meta.insert("generation", g as u64)?;
                    meta.insert("next_id", FileId::FIRST_FREE.0)?;
                    g
                }
            };
            let mut objects = tx.open_table(OBJECTS)?;
            let old = objects.get(FileId::ROOT.0)?.map(|v| v.value());
            let old_root = old.map(|v| v.1);
            if old != Some((ROOT_GEN.0, root_ino)) {
                objects.insert(FileId::ROOT.0, (ROOT_GEN.0, root_ino))?;
                let mut inodes = tx.open_table(INODES)?;
                if let Some(old) = old_root {
                    inodes.remove(old)?;
                }
                inodes.insert(root_ino, FileId::ROOT.0)?;
            }
            tx.open_table(LINKS)?;
            tx.open_table(LIVES)?;
            tx.open_table(ADOPTED)?;
        }
        tx.commit()?;
        let (log, records) =
            IdLog::open(&log_path(path)).map_err(|e| IdError::Io(e.to_string()))?;
        let log_file = log.file_handle().map_err(|e| IdError::Io(e.to_string()))?;
        let durable_seq = {
            let r = db.begin_read()?;
            let meta = r.open_table(META)?;
            let v = meta.get("log_seq")?.map(|v| v.value());
            v.unwrap_or(0)
        };
        let next = {
            let r = db.begin_read()?;
            let meta = r.open_table(META)?;
            let n = meta.get("next_id")?.map(|v| v.value());
            AtomicU64::new(n.unwrap_or(FileId::FIRST_FREE.0))
        };
        // after a crash: the changes the log holds beyond the table, in order, applied as
        // the first time; then a checkpoint
        let mut seq = durable_seq;
        let mut tx = db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| IdError::Io(e.to_string()))?;
        let mut replayed = 0usize;
        for (n, c) in records.iter().filter(|(n, _)| *n > durable_seq) {
            apply(&tx, c, true, &next)?;
            seq = *n;
            replayed += 1;
        }
        {
            let mut meta = tx.open_table(META)?;
            meta.insert("log_seq", seq)?;
            let want = next.load(Ordering::Relaxed);
            if meta.get("next_id")?.map(|v| v.value()).unwrap_or(0) < want {
                meta.insert("next_id", want)?;
            }
        }
        tx.commit()?;
        if replayed > 0 {
            tracing::info!(path = %path.display(), replayed, "identity table: changes from its intent log applied");
        }
        let mut log = log;
        log.reset().map_err(|e| IdError::Io(e.to_string()))?;
        let syncer = std::sync::Arc::new(LogSyncer {
            file: log_file,
            seq: AtomicU64::new(seq),
            state: Mutex::new(LogSync {
                durable: seq,
                syncing: false,
                wanted: seq,
                stop: false,
            }),
            synced: Condvar::new(),
            kick: Condvar::new(),
        });
        {
            let h = syncer.clone();
            std::thread::Builder::new()
                .name("ftnfs-idlog".into())
                .spawn(move || h.run())
                .map_err(|e| IdError::Io(format!("intent log helper: {e}")))?;
        }
        Ok(IdTable {
            log: Mutex::new(log),
            syncer,
            gate: Mutex::new(()),
            db,
            gen: Generation(gen),
            next,
            bulk: std::sync::atomic::AtomicBool::new(false),
            sync: GroupSync::default(),
            recent: Mutex::new(Recent::default()),
            unsynced: std::sync::atomic::AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            pending_n: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A write transaction for a change that is not logged (adopting, a resync's records,
    /// clearing, forgetting): the logged changes still pending are applied first, and no
    /// other is logged until the caller drops the guard it gets with the transaction — so
    /// the table takes every change in the order it was made.
    fn write(&self) -> Result<(PendingGuard<'_>, redb::WriteTransaction), IdError> {
        let mut p = self.pending();
        self.settle_locked(&mut p)?;
        Ok((p, self.write_tx()?))
    }

    fn write_tx(&self) -> Result<redb::WriteTransaction, IdError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| IdError::Io(e.to_string()))?;
        Ok(tx)
    }

    fn pending(&self) -> PendingGuard<'_> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read transaction that sees every change logged so far.
    fn read(&self) -> Result<redb::ReadTransaction, IdError> {
        self.settle()?;
        Ok(self.db.begin_read()?)
    }

    /// Applies the logged changes still pending to the table, in one write transaction.
    ///
    /// A logged change is durable once the intent log is synced past it; the table only has
    /// to show it to readers. So changes are applied in batches ([`BATCH`]), or before a read
    /// of the table, or before a change that is not logged ([`write`](Self::write)), or at a
    /// checkpoint. The table's `log_seq` says which logged change it holds last, so a crash
    /// replays the rest from the log, as before. The cache of lookups ([`Recent`]) forgot
    /// what each change touched when it was logged, and learnt a new object's record then.
    fn settle(&self) -> Result<(), IdError> {
        if self.pending_n.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut p = self.pending();
        self.settle_locked(&mut p)
    }

    fn settle_locked(&self, p: &mut Vec<(u64, Change)>) -> Result<(), IdError> {
        let Some(&(last, _)) = p.last() else {
            return Ok(());
        };
        let tx = self.write_tx()?;
        for (_, c) in p.iter() {
            apply(&tx, c, true, &self.next)?;
        }
        self.persist_next(&tx)?;
        tx.open_table(META)?.insert("log_seq", last)?;
        tx.commit()?;
        p.clear();
        self.pending_n.store(0, Ordering::Release);
        Ok(())
    }

    /// Is a dictated id in use, counting the changes still pending?
    fn taken(&self, id: FileId, p: &[(u64, Change)]) -> Result<bool, IdError> {
        let tx = self.db.begin_read()?;
        let mut used = tx.open_table(OBJECTS)?.get(id.0)?.is_some();
        for (_, c) in p {
            match c {
                Change::New { id: n, .. } if *n == id => used = true,
                Change::Unlink {
                    id: n, last: true, ..
                } if *n == id => used = false,
                Change::Rename {
                    replaced: Some((n, true)),
                    ..
                } if *n == id => used = false,
                _ => {}
            }
        }
        Ok(used)
    }

    /// Commits `tx` and returns once it is durable (in bulk mode: at once; [`flush`] makes
    /// it durable). The sync is shared: a change committed while another's sync runs waits
    /// for the next one, which covers every change committed before it.
    ///
    /// [`flush`]: Self::flush
    /// `touched`: the objects whose record or names the change altered (`None`: any), which
    /// the cache forgets once the change is visible.
    fn commit(
        &self,
        tx: redb::WriteTransaction,
        touched: Option<&[FileId]>,
    ) -> Result<(), IdError> {
        tx.commit()?;
        self.changed(touched);
        if self.bulk.load(Ordering::Relaxed) {
            return Ok(());
        }
        if ASYNC_CALL.with(|c| c.get()) {
            self.unsynced.store(true, Ordering::Release);
            return Ok(());
        }
        let mine = {
            let mut s = lock_state(&self.sync.state);
            s.committed += 1;
            s.committed
        };
        self.sync_to(mine)
    }

    /// Waits until the first `n` commits are durable, making a durable commit if nobody is.
    fn sync_to(&self, n: u64) -> Result<(), IdError> {
        let mut s = lock_state(&self.sync.state);
        loop {
            if s.durable >= n {
                return Ok(());
            }
            if s.syncing {
                s = self.sync.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // every commit counted so far happened before the durable commit below starts:
            // it makes them all durable (redb: a None commit persists with the next durable one)
            let target = s.committed;
            s.syncing = true;
            drop(s);
            let r = self.durable_commit();
            s = lock_state(&self.sync.state);
            s.syncing = false;
            if r.is_ok() {
                s.durable = s.durable.max(target);
            }
            self.sync.done.notify_all();
            r?;
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what is cached of `ids` (`None`: of every object) — called before a change
    /// commits and again after.
    fn changed(&self, ids: Option<&[FileId]>) {
        self.changed_learning(ids, None);
    }

    /// [`changed`](Self::changed), and what the change made known (a new object's record
    /// and first name) is cached at once.
    fn changed_learning(&self, ids: Option<&[FileId]>, learnt: Option<(FileId, Known)>) {
        let mut r = self.recent();
        r.epoch += 1;
        match ids {
            Some(ids) => {
                for id in ids {
                    r.forget(id.0);
                }
            }
            None => r.clear(),
        }
        if let Some((id, k)) = learnt {
            r.learn(id, k);
        }
    }

    /// The record and first name of `id`: from the cache, or read (and cached).
    fn known(&self, id: FileId) -> Result<Option<Known>, IdError> {
        let epoch = {
            let r = self.recent();
            if let Some(k) = r.map.get(&id.0) {
                return Ok(Some(k.clone()));
            }
            r.epoch
        };
        let tx = self.read()?;
        let Some((g, ino)) = tx.open_table(OBJECTS)?.get(id.0)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let life = tx
            .open_table(LIVES)?
            .get(id.0)?
            .map(|v| v.value())
            .unwrap_or(life::UNKNOWN);
        let first = first_link_in(&tx.open_table(LINKS)?, id)?;
        let k = Known {
            rec: ObjRec {
                gen: Generation(g),
                ino,
                life,
            },
            first,
        };
        let mut r = self.recent();
        if r.epoch == epoch {
            r.learn(id, k.clone());
        }
        Ok(Some(k))
    }

    /// An empty commit with `Durability::Immediate`: every commit before it is on disk.
    fn durable_commit(&self) -> Result<(), IdError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| IdError::Io(e.to_string()))?;
        tx.commit()?;
        Ok(())
    }

    /// Commits `change` (a client's CREATE, REMOVE, RENAME, LINK) and writes it to the
    /// intent log; returns once the log is synced past it (in bulk mode, for an `async`
    /// call, or for a change that may be lost ([`Change::may_be_lost`]): at once). `touched`:
    /// the objects the cache forgets.
    fn logged(&self, change: Change, touched: &[FileId]) -> Result<(), IdError> {
        self.logged_as(change, touched, false)
    }

    /// [`logged`](Self::logged); `dictated`: a new object's id was decided elsewhere (the
    /// primary's), so it is checked not to be in use here ([`IdError::Taken`]).
    fn logged_as(&self, change: Change, touched: &[FileId], dictated: bool) -> Result<(), IdError> {
        let io = |e: std::io::Error| IdError::Io(format!("intent log: {e}"));
        let lossy = change.may_be_lost();
        let seq = {
            let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            if !self.log().has_room() {
                self.checkpoint_gated()?;
            }
            let mut p = self.pending();
            let new = match &change {
                Change::New {
                    id,
                    gen,
                    ino: (ino, life),
                    parent,
                    name,
                } => {
                    if dictated && self.taken(*id, &p)? {
                        return Err(IdError::Taken(*id));
                    }
                    self.next.fetch_max(id.0 + 1, Ordering::Relaxed);
                    Some((
                        *id,
                        Known {
                            rec: ObjRec {
                                gen: *gen,
                                ino: *ino,
                                life: *life,
                            },
                            first: Some((*parent, name.clone())),
                        },
                    ))
                }
                _ => None,
            };
            let seq = self.syncer.seq.load(Ordering::Acquire) + 1;
            match self.log().append(seq, &change) {
                Ok(r) => r.map_err(io)?,
                Err(_full) => return Err(IdError::Io("intent log full".into())),
            }
            self.syncer.seq.store(seq, Ordering::Release);
            // forgotten, and a new object known at once (its first lookup reads nothing)
            self.changed_learning(Some(touched), new);
            p.push((seq, change));
            self.pending_n.store(p.len(), Ordering::Release);
            if p.len() >= BATCH {
                // the change is logged: a table that cannot take it now takes it at the
                // next settle, or from the log at the next start
                if let Err(e) = self.settle_locked(&mut p) {
                    tracing::warn!(error = %e, "identity table: logged changes not applied yet");
                }
            }
            seq
        };
        if self.bulk.load(Ordering::Relaxed) || lossy {
            return Ok(());
        }
        if ASYNC_CALL.with(|c| c.get()) {
            self.unsynced.store(true, Ordering::Release);
            return Ok(());
        }
        let me = self as *const IdTable as usize;
        if let Some((t, pending)) = DEFERRED.with(|d| d.get()) {
            if t == me {
                DEFERRED.with(|d| d.set(Some((t, pending.max(seq)))));
                self.syncer.ask(seq);
                return Ok(());
            }
        }
        self.syncer.sync_to(seq)
    }

    /// Defers this thread's waits for the intent log's sync until [`LogWait::finish`] (see
    /// there). One table at a time: a change to another table waits as usual.
    pub fn defer_log_sync(&self) -> LogWait<'_> {
        DEFERRED.with(|d| d.set(Some((self as *const IdTable as usize, 0))));
        LogWait {
            table: self,
            done: false,
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, IdLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A checkpoint (the caller holds `gate`: no logged change is half done): the table is
    /// made durable — with it every logged change — and the log starts over.
    fn checkpoint_gated(&self) -> Result<(), IdError> {
        self.settle()?;
        self.durable_commit()?;
        self.log()
            .reset()
            .map_err(|e| IdError::Io(format!("intent log: {e}")))?;
        let mut s = self.syncer.state();
        s.durable = s.durable.max(self.syncer.seq.load(Ordering::Acquire));
        self.syncer.synced.notify_all();
        Ok(())
    }

    /// Makes the table durable and empties the intent log.
    fn checkpoint(&self) -> Result<(), IdError> {
        let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_gated()
    }

    /// Bulk mode (a resync writing into this mirror): commits skip their sync until
    /// [`flush`](Self::flush). A crash meanwhile loses them, and the resync marker makes the
    /// next start copy everything again.
    pub fn set_bulk(&self, on: bool) {
        self.bulk.store(on, Ordering::Relaxed);
    }

    /// Makes the changes of `async` calls durable, if there are any.
    pub fn flush_if_unsynced(&self) -> Result<(), IdError> {
        if self.unsynced.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.checkpoint() {
                self.unsynced.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Makes every commit so far durable (a checkpoint: the intent log starts over).
    pub fn flush(&self) -> Result<(), IdError> {
        self.checkpoint()
    }

    /// Forgets every object but the root (a full resync starts from an empty mirror).
    pub fn clear(&self) -> Result<(), IdError> {
        let (_p, tx) = self.write()?;
        {
            let mut objects = tx.open_table(OBJECTS)?;
            let root = objects.get(FileId::ROOT.0)?.map(|v| v.value());
            objects.retain(|k, _| k == FileId::ROOT.0)?;
            let mut inodes = tx.open_table(INODES)?;
            inodes.retain(|_, v| v == FileId::ROOT.0)?;
            if let Some((_, ino)) = root {
                inodes.insert(ino, FileId::ROOT.0)?;
            }
            tx.open_table(LINKS)?.retain(|_, _| false)?;
            tx.open_table(LIVES)?.retain(|k, _| k == FileId::ROOT.0)?;
            tx.open_table(ADOPTED)?.retain(|_, _| false)?;
        }
        self.commit(tx, None)?;
        Ok(())
    }

    /// Forgets object `id` and every name recorded for it (the object itself is gone or is
    /// about to be replaced).
    pub fn forget(&self, id: FileId) -> Result<(), IdError> {
        let (_p, tx) = self.write()?;
        unlink_in(&tx, id, FileId(0), &[], true)?;
        self.commit(tx, Some(&[id]))?;
        Ok(())
    }

    pub fn reserve(&self) -> FileId {
        FileId(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Only the root is recorded: nothing was ever created or seen through ftnfs.
    pub fn pristine(&self) -> Result<bool, IdError> {
        let tx = self.read()?;
        let t = tx.open_table(OBJECTS)?;
        Ok(t.len()? <= 1)
    }

    /// The generation given to objects of this table.
    pub fn generation(&self) -> Generation {
        self.gen
    }

    /// The record of a file id.
    pub fn get(&self, id: FileId) -> Result<Option<ObjRec>, IdError> {
        Ok(self.known(id)?.map(|k| k.rec))
    }

    /// The object was found here, made outside ftnfs, and adopted (not created through
    /// ftnfs, so on a mirrored export the other members may not have it).
    pub fn was_adopted(&self, id: FileId) -> Result<bool, IdError> {
        let tx = self.read()?;
        let t = tx.open_table(ADOPTED)?;
        Ok(t.get(id.0)?.is_some())
    }

    /// The file id of the object that has local inode `ino` in life `life`: `None` if the
    /// number is unknown or belonged to another object (one removed outside ftnfs).
    pub fn by_ino_life(&self, ino: u64, life: u64) -> Result<Option<FileId>, IdError> {
        if let Some(id) = self.recent().by_life(ino, life) {
            return Ok(Some(id));
        }
        let Some(id) = self.by_ino(ino)? else {
            return Ok(None);
        };
        let rec = self.get(id)?;
        Ok(rec.filter(|r| life::same(r.life, life)).map(|_| id))
    }

    /// The file id of a local inode.
    pub fn by_ino(&self, ino: u64) -> Result<Option<FileId>, IdError> {
        let tx = self.read()?;
        let t = tx.open_table(INODES)?;
        Ok(t.get(ino)?.map(|v| FileId(v.value())))
    }

    /// One name of an object: (parent, name). `None` for the root or an unknown id.
    pub fn first_link(&self, id: FileId) -> Result<Option<(FileId, Vec<u8>)>, IdError> {
        Ok(self.known(id)?.and_then(|k| k.first))
    }

    /// The object's path relative to the export root ("." for the root), following recorded
    /// names up to the root.
    pub fn path_of(&self, id: FileId) -> Result<PathBuf, IdError> {
        use std::os::unix::ffi::OsStrExt;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur = id;
        while cur != FileId::ROOT {
            if parts.len() >= MAX_DEPTH {
                return Err(IdError::Orphan(id));
            }
            let Some((parent, name)) = self.first_link(cur)? else {
                return Err(IdError::Orphan(id));
            };
            parts.push(name);
            cur = parent;
        }
        if parts.is_empty() {
            return Ok(PathBuf::from("."));
        }
        let mut p = PathBuf::new();
        for n in parts.iter().rev() {
            p.push(std::ffi::OsStr::from_bytes(n));
        }
        Ok(p)
    }

    /// Records a new object created at (parent, name) with local inode `ino`, with the given
    /// identity (a secondary applying the primary's decision) or a fresh one.
    pub fn record_new(
        &self,
        parent: FileId,
        name: &[u8],
        (ino, life): (u64, u64),
        dictated: Option<(FileId, Generation)>,
    ) -> Result<(FileId, Generation), IdError> {
        let (id, gen) = dictated.unwrap_or_else(|| (self.reserve(), self.gen));
        self.logged_as(
            Change::New {
                id,
                gen,
                ino: (ino, life),
                parent,
                name: name.to_vec(),
            },
            &[id],
            dictated.is_some(),
        )?;
        Ok((id, gen))
    }

    /// Records many new objects with dictated ids in one commit (a resync).
    pub fn record_many(&self, objs: &[NewRecord]) -> Result<(), IdError> {
        if objs.is_empty() {
            return Ok(());
        }
        let (_p, tx) = self.write()?;
        for (parent, name, ino, id, gen) in objs {
            // the same change a client's create makes (`apply`), all in one commit
            let new = Change::New {
                id: *id,
                gen: *gen,
                ino: *ino,
                parent: *parent,
                name: name.clone(),
            };
            apply(&tx, &new, false, &self.next)?;
        }
        self.persist_next(&tx)?;
        let ids: Vec<FileId> = objs.iter().map(|o| o.3).collect();
        self.commit(tx, Some(&ids))?;
        Ok(())
    }

    /// Finds or assigns the identities of entries found in directory `parent`: (name,
    /// inode, life) each. Objects created outside ftnfs are adopted with a fresh id; an inode
    /// number met in another life than recorded is such an object too (the old one was
    /// removed outside ftnfs and is forgotten). One transaction.
    pub fn adopt(
        &self,
        parent: FileId,
        entries: &[(&[u8], u64, u64)],
    ) -> Result<Adoption, IdError> {
        // Fast path: everything known, in the same life, and linked under this name — from
        // the cache (no batch of pending changes is applied for it), else from the table.
        if let Some(ids) = self.recent().named(parent, entries) {
            return Ok(Adoption {
                ids,
                ..Adoption::default()
            });
        }
        {
            let tx = self.read()?;
            let inodes = tx.open_table(INODES)?;
            let links = tx.open_table(LINKS)?;
            let objects = tx.open_table(OBJECTS)?;
            let lives = tx.open_table(LIVES)?;
            let mut out = Vec::with_capacity(entries.len());
            for (name, ino, life) in entries {
                let Some(id) = inodes.get(*ino)?.map(|v| v.value()) else {
                    break;
                };
                let had = lives.get(id)?.map(|v| v.value());
                // a record without a life takes its first one (slow path)
                if had.is_none() && *life != life::UNKNOWN
                    || !life::same(had.unwrap_or(life::UNKNOWN), *life)
                    || links.get((id, parent.0, *name))?.is_none()
                {
                    break;
                }
                match objects.get(id)?.map(|v| v.value().0) {
                    Some(g) => out.push((FileId(id), Generation(g))),
                    None => break,
                }
            }
            if out.len() == entries.len() {
                return Ok(Adoption {
                    ids: out,
                    ..Adoption::default()
                });
            }
        }
        let (_p, tx) = self.write()?;
        let mut out = Adoption::default();
        for (i, (name, ino, life)) in entries.iter().enumerate() {
            let known = tx.open_table(INODES)?.get(*ino)?.map(|v| v.value());
            let mut reborn = false;
            let known = match known {
                Some(id) => {
                    let rec = tx.open_table(OBJECTS)?.get(id)?.map(|v| v.value().0);
                    let had = tx.open_table(LIVES)?.get(id)?.map(|v| v.value());
                    match (rec, had) {
                        (Some(g), Some(h)) if life::same(h, *life) => {
                            Some((FileId(id), Generation(g)))
                        }
                        (Some(g), None) => {
                            if *life != life::UNKNOWN {
                                tx.open_table(LIVES)?.insert(id, *life)?;
                            }
                            Some((FileId(id), Generation(g)))
                        }
                        (Some(_), Some(_)) => {
                            // the number's old object is gone: so are its id and names
                            reborn = true;
                            unlink_in(&tx, FileId(id), FileId(0), &[], true)?;
                            None
                        }
                        (None, _) => None,
                    }
                }
                None => None,
            };
            let (id, gen) = match known {
                Some(k) => {
                    if tx
                        .open_table(LINKS)?
                        .get((k.0 .0, parent.0, *name))?
                        .is_none()
                    {
                        out.renamed.push(k.0);
                    }
                    k
                }
                None => {
                    let id = self.reserve();
                    insert_object(&tx, id, self.gen, *ino, *life)?;
                    tx.open_table(ADOPTED)?.insert(id.0, ())?;
                    out.adopted.push((i, reborn));
                    (id, self.gen)
                }
            };
            tx.open_table(LINKS)?.insert((id.0, parent.0, *name), ())?;
            out.ids.push((id, gen));
        }
        self.persist_next(&tx)?;
        self.commit(tx, None)?;
        Ok(out)
    }

    /// Every recorded name of an object: (parent, name). Bounded.
    pub fn links(&self, id: FileId) -> Result<Vec<(FileId, Vec<u8>)>, IdError> {
        let tx = self.read()?;
        let t = tx.open_table(LINKS)?;
        let mut out = Vec::new();
        for e in t.range((id.0, 0, &[][..])..)? {
            let (k, _) = e?;
            let (fid, p, n) = k.value();
            if fid != id.0 || out.len() >= MAX_LINKS {
                break;
            }
            out.push((FileId(p), n.to_vec()));
        }
        Ok(out)
    }

    fn persist_next(&self, tx: &redb::WriteTransaction) -> Result<(), IdError> {
        let mut meta = tx.open_table(META)?;
        let want = self.next.load(Ordering::Relaxed);
        let have = meta.get("next_id")?.map(|v| v.value()).unwrap_or(0);
        if want > have {
            meta.insert("next_id", want)?;
        }
        Ok(())
    }

    /// Adds a name for an existing object (LINK).
    pub fn add_link(&self, id: FileId, parent: FileId, name: &[u8]) -> Result<(), IdError> {
        self.logged(
            Change::Link {
                id,
                parent,
                name: name.to_vec(),
            },
            &[id],
        )
    }

    /// Removes a name; with `last` the object itself is gone (its id becomes stale).
    pub fn remove_link(
        &self,
        id: FileId,
        parent: FileId,
        name: &[u8],
        last: bool,
    ) -> Result<(), IdError> {
        self.logged(
            Change::Unlink {
                id,
                parent,
                name: name.to_vec(),
                last,
            },
            &[id],
        )
    }

    /// Moves a name (RENAME); `replaced` is the object that the target name used to denote and
    /// whether that was its last name.
    pub fn rename(
        &self,
        id: FileId,
        from: (FileId, &[u8]),
        to: (FileId, &[u8]),
        replaced: Option<(FileId, bool)>,
    ) -> Result<(), IdError> {
        let touched: Vec<FileId> = std::iter::once(id).chain(replaced.map(|r| r.0)).collect();
        self.logged(
            Change::Rename {
                id,
                from: (from.0, from.1.to_vec()),
                to: (to.0, to.1.to_vec()),
                replaced,
            },
            &touched,
        )
    }
}

impl Drop for IdTable {
    fn drop(&mut self) {
        self.syncer.state().stop = true;
        self.syncer.kick.notify_one();
    }
}

/// Where the intent log of the table at `path` lives: beside it.
fn log_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

/// Applies a logged change to the table: the first time (`replay` false: a dictated id
/// already in use is refused) and again after a crash, from the log, identically.
fn apply(
    tx: &redb::WriteTransaction,
    c: &Change,
    replay: bool,
    next: &AtomicU64,
) -> Result<(), IdError> {
    match c {
        Change::New {
            id,
            gen,
            ino: (ino, life),
            parent,
            name,
        } => {
            if !replay && tx.open_table(OBJECTS)?.get(id.0)?.is_some() {
                return Err(IdError::Taken(*id));
            }
            next.fetch_max(id.0 + 1, Ordering::Relaxed);
            insert_object(tx, *id, *gen, *ino, *life)?;
            tx.open_table(LINKS)?
                .insert((id.0, parent.0, name.as_slice()), ())?;
        }
        Change::Link { id, parent, name } => {
            tx.open_table(LINKS)?
                .insert((id.0, parent.0, name.as_slice()), ())?;
        }
        Change::Unlink {
            id,
            parent,
            name,
            last,
        } => unlink_in(tx, *id, *parent, name, *last)?,
        Change::Rename {
            id,
            from,
            to,
            replaced,
        } => {
            if let Some((victim, last)) = replaced {
                unlink_in(tx, *victim, to.0, &to.1, *last)?;
            }
            let mut links = tx.open_table(LINKS)?;
            links.remove((id.0, from.0 .0, from.1.as_slice()))?;
            links.insert((id.0, to.0 .0, to.1.as_slice()), ())?;
        }
    }
    Ok(())
}

fn first_link_in(
    t: &impl ReadableTable<(u64, u64, &'static [u8]), ()>,
    id: FileId,
) -> Result<Option<(FileId, Vec<u8>)>, IdError> {
    let lo: (u64, u64, &[u8]) = (id.0, 0, &[]);
    let mut r = t.range(lo..)?;
    match r.next() {
        Some(e) => {
            let (k, _) = e?;
            let (fid, parent, name) = k.value();
            if fid == id.0 {
                Ok(Some((FileId(parent), name.to_vec())))
            } else {
                Ok(None)
            }
        }
        None => Ok(None),
    }
}

fn insert_object(
    tx: &redb::WriteTransaction,
    id: FileId,
    gen: Generation,
    ino: u64,
    life: u64,
) -> Result<(), IdError> {
    // A reused local inode: the previous object is gone (removed outside ftnfs), with its
    // names.
    let old = tx.open_table(INODES)?.get(ino)?.map(|v| v.value());
    if let Some(old) = old {
        if old != id.0 && old != FileId::ROOT.0 {
            unlink_in(tx, FileId(old), FileId(0), &[], true)?;
        }
    }
    tx.open_table(OBJECTS)?.insert(id.0, (gen.0, ino))?;
    tx.open_table(INODES)?.insert(ino, id.0)?;
    let mut lives = tx.open_table(LIVES)?;
    if life == life::UNKNOWN {
        lives.remove(id.0)?;
    } else {
        lives.insert(id.0, life)?;
    }
    Ok(())
}

fn unlink_in(
    tx: &redb::WriteTransaction,
    id: FileId,
    parent: FileId,
    name: &[u8],
    last: bool,
) -> Result<(), IdError> {
    tx.open_table(LINKS)?.remove((id.0, parent.0, name))?;
    if last {
        let mut objects = tx.open_table(OBJECTS)?;
        if let Some((_, ino)) = objects.remove(id.0)?.map(|v| v.value()) {
            let mut inodes = tx.open_table(INODES)?;
            if inodes.get(ino)?.map(|v| v.value()) == Some(id.0) {
                inodes.remove(ino)?;
            }
        }
        tx.open_table(LIVES)?.remove(id.0)?;
        tx.open_table(ADOPTED)?.remove(id.0)?;
        // drop any other names we still had for it
        let mut links = tx.open_table(LINKS)?;
        let stale: Vec<(u64, Vec<u8>)> = links
            .range((id.0, 0, &[][..])..)?
            .map_while(|e| {
                let (k, _) = e.ok()?;
                let (fid, p, n) = k.value();
                (fid == id.0).then(|| (p, n.to_vec()))
            })
            .collect();
        for (p, n) in stale {
            links.remove((id.0, p, n.as_slice()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash loses the table's commits after its last checkpoint; the intent log brings
    /// them back on open — creates, links, renames (one replacing a name), removes — in
    /// order, and new ids continue after the replayed ones.
    #[test]
    fn the_intent_log_restores_what_the_table_lost() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = IdTable::open(&p, 100, 7).unwrap();
        let (d, _) = t.record_new(FileId::ROOT, b"d", (101, 0), None).unwrap();
        t.flush().unwrap(); // checkpoint: the table as the crash will leave it
        std::fs::copy(&p, dir.path().join("durable")).unwrap();
        let (a, ga) = t.record_new(d, b"a", (102, 0), None).unwrap();
        let (b, _) = t.record_new(d, b"b", (103, 0), None).unwrap();
        t.add_link(a, FileId::ROOT, b"a2").unwrap();
        t.rename(a, (d, b"a"), (d, b"b"), Some((b, true))).unwrap();
        let (c, _) = t.record_new(FileId::ROOT, b"c", (104, 0), None).unwrap();
        t.remove_link(c, FileId::ROOT, b"c", true).unwrap();
        drop(t);
        // the crash: redb's commits since the checkpoint are gone, the synced log is not
        std::fs::copy(dir.path().join("durable"), &p).unwrap();
        let t = IdTable::open(&p, 100, 7).unwrap();
        assert_eq!(t.get(a).unwrap().map(|r| (r.gen, r.ino)), Some((ga, 102)));
        let mut names = t.links(a).unwrap();
        names.sort();
        assert_eq!(
            names,
            vec![(FileId::ROOT, b"a2".to_vec()), (d, b"b".to_vec())]
        );
        assert_eq!(t.get(b).unwrap(), None, "replaced by the rename");
        assert_eq!(t.get(c).unwrap(), None, "removed");
        assert_eq!(t.path_of(a).unwrap(), std::path::PathBuf::from("a2"));
        let (n, _) = t.record_new(FileId::ROOT, b"n", (105, 0), None).unwrap();
        assert!(n.0 > c.0, "ids are never reused: {n:?} after {c:?}");
        drop(t);
        // and once replayed, a second open finds nothing more to do
        let t = IdTable::open(&p, 100, 7).unwrap();
        assert!(t.get(n).unwrap().is_some());
    }

    /// A call that defers its wait for the log (`defer_log_sync`) gets it at `finish`, or
    /// when its guard is dropped on an error path: either way the log is synced past its
    /// changes before it goes on, and the thread defers nothing afterwards.
    #[test]
    fn a_deferred_wait_ends_only_once_the_log_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 100, 7).unwrap();
        let durable = |t: &IdTable| t.syncer.state().durable;
        let w = t.defer_log_sync();
        t.record_new(FileId::ROOT, b"a", (101, 0), None).unwrap();
        t.record_new(FileId::ROOT, b"b", (102, 0), None).unwrap();
        let seq = t.syncer.seq.load(Ordering::Acquire);
        assert_eq!(seq, 2);
        w.finish().unwrap();
        assert!(durable(&t) >= seq, "finish returned before the sync");
        {
            let _w = t.defer_log_sync();
            t.record_new(FileId::ROOT, b"c", (103, 0), None).unwrap();
        }
        assert!(durable(&t) >= 3, "a dropped guard returned before the sync");
        assert!(DEFERRED.with(|d| d.get()).is_none());
        // another table's changes are not deferred by this one's guard
        let u = IdTable::open(&dir.path().join("u.redb"), 100, 7).unwrap();
        let w = t.defer_log_sync();
        u.record_new(FileId::ROOT, b"x", (104, 0), None).unwrap();
        assert!(durable(&u) >= 1, "a change to another table was deferred");
        w.finish().unwrap();
    }

    /// The cache of recent lookups never answers with what a change replaced: a directory
    /// renamed moves its children's paths, a last name removed makes the id unknown, a
    /// cleared table forgets everything — each looked up (cached) just before.
    #[test]
    fn lookups_after_changes_see_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 100, 7).unwrap();
        let (d, _) = t.record_new(FileId::ROOT, b"d", (101, 0), None).unwrap();
        let (f, _) = t.record_new(d, b"f", (102, 0), None).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("d/f"));
        t.rename(d, (FileId::ROOT, b"d"), (FileId::ROOT, b"e"), None)
            .unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("e/f"));
        t.add_link(f, FileId::ROOT, b"a").unwrap(); // sorts before (d, "f")
        assert_eq!(
            t.first_link(f).unwrap(),
            Some((FileId::ROOT, b"a".to_vec()))
        );
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("a"));
        t.remove_link(f, FileId::ROOT, b"a", false).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("e/f"));
        assert!(t.get(f).unwrap().is_some());
        t.remove_link(f, d, b"f", true).unwrap();
        assert_eq!(t.get(f).unwrap(), None);
        assert!(t.get(d).unwrap().is_some());
        t.clear().unwrap();
        assert_eq!(t.get(d).unwrap(), None);
    }

    /// Concurrent changes share syncs and every one is durable when it returns: all of
    /// them are there after the table is opened again.
    #[test]
    fn concurrent_changes_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = std::sync::Arc::new(IdTable::open(&p, 100, 7).unwrap());
        let hs: Vec<_> = (0..4u64)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..25u64)
                        .map(|i| {
                            let name = format!("f{w}-{i}");
                            let ino = 1000 + w * 100 + i;
                            t.record_new(FileId::ROOT, name.as_bytes(), (ino, 0), None)
                                .unwrap()
                                .0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<FileId> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        drop(t);
        let t = IdTable::open(&p, 100, 7).unwrap();
        for id in ids {
            assert!(t.get(id).unwrap().is_some(), "{id:?} lost");
        }
    }

    #[test]
    fn ids_survive_reopen_and_removed_ids_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = IdTable::open(&p, 100, 7).unwrap();
        let (d, g) = t.record_new(FileId::ROOT, b"d", (101, 0), None).unwrap();
        assert_eq!(g, Generation(7));
        let (f, _) = t.record_new(d, b"f", (102, 0), None).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("d/f"));
        drop(t);
        let t = IdTable::open(&p, 100, 99).unwrap();
        assert_eq!(t.generation(), Generation(7), "generation kept on reopen");
        assert_eq!(t.by_ino(102).unwrap(), Some(f));
        t.rename(f, (d, b"f"), (FileId::ROOT, b"g"), None).unwrap();
        assert_eq!(t.path_of(f).unwrap(), PathBuf::from("g"));
        t.remove_link(f, FileId::ROOT, b"g", true).unwrap();
        assert_eq!(t.get(f).unwrap(), None);
        assert_eq!(t.by_ino(102).unwrap(), None);
        let (f2, _) = t.record_new(d, b"f", (102, 0), None).unwrap();
        assert!(f2.0 > f.0, "ids are never reused");
    }

    #[test]
    fn adopt_is_idempotent_and_links_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 1, 1).unwrap();
        let a = t
            .adopt(FileId::ROOT, &[(b"x", 50, 7), (b"y", 51, 8)])
            .unwrap()
            .ids;
        assert_eq!(
            t.adopt(FileId::ROOT, &[(b"x", 50, 7), (b"y", 51, 8)])
                .unwrap()
                .ids,
            a
        );
        // a second name of inode 50
        let b = t.adopt(FileId::ROOT, &[(b"x2", 50, 7)]).unwrap();
        assert_eq!(b.ids[0], a[0]);
        assert_eq!(b.renamed, vec![a[0].0], "a known object under a new name");
        t.remove_link(a[0].0, FileId::ROOT, b"x", false).unwrap();
        assert_eq!(t.path_of(a[0].0).unwrap(), PathBuf::from("x2"));
    }

    #[test]
    fn an_inode_number_in_another_life_is_another_object() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 1, 1).unwrap();
        let (f, _) = t.record_new(FileId::ROOT, b"f", (60, 100), None).unwrap();
        assert_eq!(t.get(f).unwrap().unwrap().life, 100);
        // same inode number, same life: the same object, also under a new name
        let a = t.adopt(FileId::ROOT, &[(b"f", 60, 100)]).unwrap();
        assert_eq!(a.ids[0].0, f);
        assert!(a.adopted.is_empty());
        // same number, another life, another name: a new object; the old id is gone
        let a = t.adopt(FileId::ROOT, &[(b"g", 60, 200)]).unwrap();
        let g = a.ids[0].0;
        assert_ne!(g, f);
        assert_eq!(a.adopted, vec![(0, true)]);
        assert_eq!(t.get(f).unwrap(), None, "the old id is stale");
        assert!(t.links(f).unwrap().is_empty());
        assert_eq!(t.by_ino_life(60, 200).unwrap(), Some(g));
        assert_eq!(t.by_ino_life(60, 100).unwrap(), None);
        // same name again, another life: new again
        let h = t.adopt(FileId::ROOT, &[(b"g", 60, 300)]).unwrap().ids[0].0;
        assert!(h.0 > g.0);
        // a record without a life (an older table) takes the first one it is seen with
        let (k, _) = t.record_new(FileId::ROOT, b"k", (61, 0), None).unwrap();
        assert_eq!(t.adopt(FileId::ROOT, &[(b"k", 61, 5)]).unwrap().ids[0].0, k);
        assert_eq!(t.get(k).unwrap().unwrap().life, 5);
    }

    /// Logged changes reach the table in batches (`settle`): until then every reader sees
    /// them, a change that is not logged (here an adoption) comes after them, and a
    /// dictated id still pending is taken.
    #[test]
    fn pending_changes_are_seen_by_readers_and_come_first_for_writers() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 1, 1).unwrap();
        let (f, _) = t.record_new(FileId::ROOT, b"f", (60, 100), None).unwrap();
        t.remove_link(f, FileId::ROOT, b"f", true).unwrap();
        assert_eq!(t.pending_n.load(Ordering::Acquire), 2, "the changes wait");
        // inode 60 in another life, met by a listing: adopted after the removal, never
        // undone by it
        let a = t.adopt(FileId::ROOT, &[(b"g", 60, 200)]).unwrap();
        let g = a.ids[0].0;
        assert_ne!(g, f);
        assert_eq!(t.by_ino(60).unwrap(), Some(g));
        assert_eq!(t.get(f).unwrap(), None);
        // readers see what waits
        let (h, gh) = t.record_new(FileId::ROOT, b"h", (61, 5), None).unwrap();
        t.add_link(h, FileId::ROOT, b"h2").unwrap();
        assert!(t.pending_n.load(Ordering::Acquire) > 0);
        assert_eq!(t.by_ino_life(61, 5).unwrap(), Some(h));
        assert_eq!(t.links(h).unwrap().len(), 2);
        assert_eq!(
            t.pending_n.load(Ordering::Acquire),
            0,
            "a read applied them"
        );
        // a new object is known at once: its first lookup reads nothing
        let (k, gk) = t.record_new(FileId::ROOT, b"k", (62, 6), None).unwrap();
        assert_eq!(t.get(k).unwrap().map(|r| (r.gen, r.ino)), Some((gk, 62)));
        assert_eq!(t.pending_n.load(Ordering::Acquire), 1);
        assert_eq!(t.get(h).unwrap().map(|r| r.gen), Some(gh));
        // a dictated id that waits is in use
        let x = FileId(10_000);
        t.record_new(FileId::ROOT, b"x", (63, 7), Some((x, Generation(1))))
            .unwrap();
        assert!(matches!(
            t.record_new(FileId::ROOT, b"y", (64, 8), Some((x, Generation(1)))),
            Err(IdError::Taken(_))
        ));
        // a change that is not logged comes after the pending ones: forgetting an object
        // whose creation waits forgets it for good
        let (z, _) = t.record_new(FileId::ROOT, b"z", (65, 9), None).unwrap();
        assert!(t.pending_n.load(Ordering::Acquire) > 0);
        t.forget(z).unwrap();
        assert_eq!(t.get(z).unwrap(), None);
        assert_eq!(t.by_ino(65).unwrap(), None);
        // bounded: a batch is applied once full
        for i in 0..(BATCH as u64 * 2) {
            t.record_new(
                FileId::ROOT,
                format!("n{i}").as_bytes(),
                (1000 + i, 1),
                None,
            )
            .unwrap();
            assert!(t.pending_n.load(Ordering::Acquire) < BATCH);
        }
        assert_eq!(t.path_of(k).unwrap(), std::path::PathBuf::from("k"));
    }

    /// Naming an entry that the cache knows (LOOKUP, a REMOVE's child) reads no table and
    /// applies no batch; anything the cache cannot vouch for — another life, another name,
    /// a record without a life — still goes to the table and gets its answer there.
    #[test]
    fn a_cached_entry_is_named_without_the_table_and_only_when_it_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let t = IdTable::open(&dir.path().join("t.redb"), 1, 1).unwrap();
        let waiting = || t.pending_n.load(Ordering::Acquire);
        let (f, gf) = t.record_new(FileId::ROOT, b"f", (70, 100), None).unwrap();
        let (d, _) = t.record_new(FileId::ROOT, b"d", (71, 101), None).unwrap();
        assert_eq!(waiting(), 2);
        let a = t
            .adopt(FileId::ROOT, &[(b"f", 70, 100), (b"d", 71, 101)])
            .unwrap();
        assert_eq!(a.ids, vec![(f, gf), (d, t.get(d).unwrap().unwrap().gen)]);
        assert!(a.adopted.is_empty() && a.renamed.is_empty());
        // (`get` of a cached object reads nothing either, nor does finding it by inode)
        assert_eq!(t.by_ino_life(70, 100).unwrap(), Some(f));
        assert_eq!(waiting(), 2, "named from the cache: nothing applied");
        // the same name and inode in another life (removed and recreated outside ftnfs):
        // the table's answer, a new object
        let a = t.adopt(FileId::ROOT, &[(b"f", 70, 200)]).unwrap();
        assert_ne!(a.ids[0].0, f);
        assert_eq!(a.adopted, vec![(0, true)]);
        assert_eq!(waiting(), 0, "the table was read");
        // a known object under a name the cache does not hold for it (a rename outside
        // ftnfs): the table's answer, the same object renamed
        let a = t.adopt(FileId::ROOT, &[(b"d2", 71, 101)]).unwrap();
        assert_eq!(a.ids[0].0, d);
        assert_eq!(a.renamed, vec![d]);
        // under another directory: not the cached name either
        let (sub, _) = t.record_new(FileId::ROOT, b"sub", (72, 102), None).unwrap();
        t.get(d).unwrap(); // cached again, first name (root, "d")
        let a = t.adopt(sub, &[(b"d", 71, 101)]).unwrap();
        assert_eq!(a.ids[0].0, d);
        assert!(
            t.links(d).unwrap().contains(&(sub, b"d".to_vec())),
            "the table learnt the name"
        );
        // a removed object is forgotten: its inode met again is a new object
        let (r, _) = t.record_new(FileId::ROOT, b"r", (73, 103), None).unwrap();
        t.remove_link(r, FileId::ROOT, b"r", true).unwrap();
        let a = t.adopt(FileId::ROOT, &[(b"r", 73, 103)]).unwrap();
        assert_ne!(a.ids[0].0, r);
        // a record without a life takes its first one from the table, not from the cache
        let (k, _) = t.record_new(FileId::ROOT, b"k", (74, 0), None).unwrap();
        assert_eq!(t.adopt(FileId::ROOT, &[(b"k", 74, 9)]).unwrap().ids[0].0, k);
        assert_eq!(t.get(k).unwrap().unwrap().life, 9);
    }

    #[test]
    fn dictated_ids_are_kept_and_a_taken_one_is_refused() {
        // DESIGN.md decision 5: a secondary that cannot use the dictated id must say so.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let t = IdTable::open(&p, 1, 3).unwrap();
        assert!(t.pristine().unwrap());
        let got = t
            .record_new(
                FileId::ROOT,
                b"a",
                (10, 0),
                Some((FileId(500), Generation(9))),
            )
            .unwrap();
        assert_eq!(got, (FileId(500), Generation(9)));
        assert!(!t.pristine().unwrap());
        assert!(matches!(
            t.record_new(
                FileId::ROOT,
                b"b",
                (11, 0),
                Some((FileId(500), Generation(9)))
            ),
            Err(IdError::Taken(FileId(500)))
        ));
        // the counter moved past the dictated id, also across a reopen
        assert!(t.reserve().0 > 500);
        drop(t);
        let t = IdTable::open(&p, 1, 3).unwrap();
        assert!(t.reserve().0 > 500);
        assert_eq!(t.get(FileId::ROOT).unwrap().unwrap().gen, ROOT_GEN);
    }
}
