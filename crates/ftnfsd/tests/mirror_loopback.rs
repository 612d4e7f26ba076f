//! Two real ftnfsd members mirroring one export on loopback (each member exports its own
//! directory under the same `fsid`, so handles are the same), driven by a raw RPC client:
//!
//! - a handle from the primary works on the secondary with the same attributes, and a
//!   retransmission of a REMOVE that reaches the secondary (as after a failover) gets the
//!   primary's original reply from the secondary's DRC (DESIGN.md decision 7), not NOENT;
//! - a client update sent to the secondary directly is answered NFS3ERR_JUKEBOX;
//! - a secondary whose mirror was changed behind ftnfs's back computes another result for a
//!   CREATE and is failed out of the export, while the client still gets its reply
//!   (decision 5: never silently diverge).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ftnfs_wire::nfs3::{self, procs, Args, CreateHow3, DirOpArgs3, NfsFh3, Sattr3};
use ftnfs_wire::XdrEncode;

struct Member {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    fn export(&self) -> PathBuf {
        self.dir.join("export")
    }
    fn admin(&self, cmd: &str) -> serde_json::Value {
        admin_call(
            &self.dir.join("adm.sock"),
            &format!("{{\"cmd\":\"{cmd}\"}}"),
        )
    }
}

fn member(
    root: &Path,
    name: &str,
    other: &str,
    peer_port: u16,
    other_peer_port: u16,
    opts: &str,
) -> Member {
    member_with(root, name, other, peer_port, other_peer_port, opts, &[])
}

fn member_with(
    root: &Path,
    name: &str,
    other: &str,
    peer_port: u16,
    other_peer_port: u16,
    opts: &str,
    extra: &[&str],
) -> Member {
    let mirroring = format!("-ftnfs=a:b{opts}");
    member_mirrored(
        root,
        name,
        other,
        peer_port,
        other_peer_port,
        &mirroring,
        extra,
    )
}

/// [`member_with`] whose export 4711 is mirrored by `mirroring` (its ftnfs options, given
/// whole: `-ftnfs=a:b…` or `-ftnfsr=…,ftnfsw=…`); export 4712 is `-ftnfs=b:a`.
fn member_mirrored(
    root: &Path,
    name: &str,
    other: &str,
    peer_port: u16,
    other_peer_port: u16,
    mirroring: &str,
    extra: &[&str],
) -> Member {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("export")).unwrap();
    std::fs::create_dir_all(dir.join("export2")).unwrap();
    std::fs::write(
        dir.join("exports"),
        format!(
            "{} {mirroring},fsid=4711 *(rw,insecure,no_root_squash)\n\
             {} -ftnfs=b:a,fsid=4712 *(rw,insecure,no_root_squash)\n",
            dir.join("export").display(),
            dir.join("export2").display()
        ),
    )
    .unwrap();
    std::fs::write(root.join("secret"), "a-long-enough-shared-secret\n").unwrap();
    let mut args = vec!["--secret-file".into(), root.join("secret").into_os_string()];
    args.extend(extra.iter().map(Into::into));
    spawn_member(&dir, name, other, peer_port, other_peer_port, &args)
}

/// Starts ftnfsd as member `name` of a group with `other` on loopback, serving
/// `dir/exports` (state and admin socket in `dir`), with `auth` and any other arguments.
fn spawn_member(
    dir: &Path,
    name: &str,
    other: &str,
    peer_port: u16,
    other_peer_port: u16,
    auth: &[std::ffi::OsString],
) -> Member {
    let port = free_port();
    // its log, shown if it exits before it listens (a port taken meanwhile, a bad state)
    let log = dir.join(format!("{name}-{port}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftnfsd"))
        .arg("--exports")
        .arg(dir.join("exports"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--admin-socket")
        .arg(dir.join("adm.sock"))
        .args(["--no-portmap", "--name", name])
        .args(["--peer", &format!("{other}=127.0.0.1:{other_peer_port}")])
        .args(["--peer-listen", &format!("127.0.0.1:{peer_port}")])
        .args(auth)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "ftnfsd {name} exited before listening on {port} ({st}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < PATIENCE,
            "ftnfsd {name} did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Member {
        child,
        port,
        dir: dir.to_path_buf(),
    }
}

/// The member is primary of an export whose secondary is live.
fn secondary_live(a: &Member) -> bool {
    a.admin("status")["status"]["mirror"]["exports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["role"] == "primary" && e["secondaries"][0]["joined"] == true)
}

fn primary_status(m: &Member) -> serde_json::Value {
    m.admin("status")["status"]["mirror"]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["role"] == "primary")
        .unwrap()
        .clone()
}

/// Polls `done` every 20 ms; fails with `what` after `secs` seconds.
fn wait_for(secs: u64, what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Export 4711 (listed a first) as `m` sees it: its role here, and whether it is primary with
/// its secondary live. (Export 4712, listed b first, has its own story.)
fn export_4711(m: &Member) -> (String, bool) {
    m.admin("status")["status"]["mirror"]["exports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["export"] == 4711)
        .map(|e| {
            (
                e["role"].as_str().unwrap_or("").to_string(),
                e["secondaries"][0]["joined"] == true,
            )
        })
        .unwrap_or_default()
}

fn pair() -> (tempfile::TempDir, Member, Member) {
    pair_with("")
}

fn pair_with(opts: &str) -> (tempfile::TempDir, Member, Member) {
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = member(t.path(), "a", "b", pa, pb, opts);
    let b = member(t.path(), "b", "a", pb, pa, opts);
    wait_for(
        120,
        || "the group did not form".into(),
        || secondary_live(&a) && secondary_live(&b),
    );
    (t, a, b)
}

fn dirop(dir: &NfsFh3, name: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: name.into(),
    }
}

/// fattr3 of a GETATTR reply, minus what may differ between members (used, atime, ctime).
fn stable_attrs(c: &mut Raw, xid: u32, fh: &NfsFh3) -> Vec<u8> {
    let (st, body) = nfs_status(&c.call(
        xid,
        nfs3::PROGRAM,
        procs::GETATTR,
        &Args::GetAttr(fh.clone()).to_bytes(),
    ));
    assert_eq!(st, 0, "GETATTR");
    let mut v = body[0..28].to_vec(); // type, mode, nlink, uid, gid, size
    v.extend_from_slice(&body[44..60]); // rdev, fsid, fileid
    v.extend_from_slice(&body[68..76]); // mtime
    v
}

#[test]
fn secondary_answers_with_the_same_handles_and_the_original_reply() {
    let _serial = serial();
    let (_t, a, b) = pair();
    let mut ca = Raw::connect(a.port);
    let mut cb = Raw::connect(b.port);
    let ra = mount_root(&mut ca, &a.export());
    let rb = mount_root(&mut cb, &b.export());
    assert_eq!(ra, rb, "root handles differ between members");

    let (st, body) = create(
        &mut ca,
        100,
        &ra,
        "f",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    let w = Args::Write {
        file: f.clone(),
        offset: 0,
        count: 5,
        stable: nfs3::StableHow::FileSync,
        data: b"hello".to_vec().into(),
    };
    assert_eq!(
        nfs_status(&ca.call(101, nfs3::PROGRAM, procs::WRITE, &w.to_bytes())).0,
        0
    );
    // The reply came after b had it: b answers the same handle with the same attributes.
    assert_eq!(
        stable_attrs(&mut ca, 102, &f),
        stable_attrs(&mut cb, 103, &f)
    );
    assert_eq!(std::fs::read(b.export().join("f")).unwrap(), b"hello");

    // REMOVE through the primary, then the same call (same client, xid and arguments)
    // reaches the secondary, as a retransmission would after a failover.
    let rm = Args::Remove(dirop(&ra, "f")).to_bytes();
    let first = ca.call(200, nfs3::PROGRAM, procs::REMOVE, &rm);
    assert_eq!(nfs_status(&first).0, 0);
    let again = cb.call(200, nfs3::PROGRAM, procs::REMOVE, &rm);
    // The secondary recorded the reply it computed itself when it applied the REMOVE: same
    // status and shape (its wcc times are its own: ctime cannot be set on Linux).
    assert_eq!(nfs_status(&again).0, 0, "a replay, not NOENT");
    assert_eq!(again.len(), first.len());
    assert_eq!(
        b.admin("status")["status"]["drc"]["replays"],
        serde_json::json!(1),
        "answered from the secondary's DRC"
    );

    // A fresh update sent to the secondary directly: try later (it is not the primary).
    let (st, _) = create(
        &mut cb,
        300,
        &rb,
        "g",
        CreateHow3::Unchecked(Sattr3::default()),
    );
    assert_eq!(st, 10008, "NFS3ERR_JUKEBOX");
    assert!(!b.export().join("g").exists());
}

/// A member that is not in step answers every procedure NFS3ERR_JUKEBOX, and each of those
/// replies is exactly the procedure's failure body (RFC 1813 §3.3): here a member started
/// alone with --manual-start, standing by.
#[test]
fn a_standby_answers_jukebox_with_each_procedures_failure_body() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let b = member_with(t.path(), "b", "a", pb, pa, "", &["--manual-start"]);
    wait_for(
        120,
        || format!("b never held back: {}", b.admin("status")),
        || {
            // (its partner's process is down: it waits for it, or for the operator)
            b.admin("status")["status"]["mirror"]["events"]
                .to_string()
                .contains("not starting as primary")
        },
    );
    assert_ne!(export_4711(&b).0, "primary");
    let mut c = Raw::connect(b.port);
    let root = mount_root(&mut c, &b.export());
    for (i, (p, args)) in every_procedure(&root).into_iter().enumerate() {
        let (st, body) = nfs_status(&c.call(i as u32 + 1, nfs3::PROGRAM, p, &args));
        assert_eq!(st, 10008, "procedure {p}: NFS3ERR_JUKEBOX");
        if let Err(e) = check_fail_body(p, &body) {
            panic!("procedure {p}: {e}");
        }
    }
}

#[test]
fn divergent_secondary_is_failed_out_and_the_client_is_answered() {
    let _serial = serial();
    let (_t, a, b) = pair();
    // Someone writes into b's mirror behind ftnfs's back.
    std::fs::write(b.export().join("x"), b"not through ftnfs").unwrap();
    let mut ca = Raw::connect(a.port);
    let ra = mount_root(&mut ca, &a.export());
    let (st, _) = create(&mut ca, 1, &ra, "x", CreateHow3::Guarded(Sattr3::default()));
    assert_eq!(st, 0, "the primary's result is the client's");
    let s = a.admin("status");
    let e = primary_status(&a);
    assert_eq!(e["secondaries"][0]["live"], serde_json::Value::Bool(false));
    let events = s["status"]["mirror"]["events"].to_string();
    assert!(events.contains("diverged"), "{events}");
    // The primary goes on alone (b is out: asserted above). Whether "y" is on b right now
    // depends on how far b's full copy, which starts at once, got meanwhile — a loaded CI
    // machine saw it there — so it is checked below, once b is back.
    let (st, _) = create(&mut ca, 2, &ra, "y", CreateHow3::Guarded(Sattr3::default()));
    assert_eq!(st, 0);
    // and the primary gives it a full copy (it would accept a plain Join), then it is back
    wait_for(120, || "b never came back".into(), || secondary_live(&a));
    assert_eq!(manifest(&a), manifest(&b), "b is a copy of a again");
    assert!(
        b.export().join("y").exists(),
        "what the primary did alone reached b"
    );
    let events = a.admin("status")["status"]["mirror"]["events"].to_string();
    assert!(
        events.contains("full copy: it computed another result"),
        "{events}"
    );
}

#[test]
fn high_read_gives_every_member_the_primarys_atime() {
    let _serial = serial();
    // DESIGN.md decision 10, serialized reads: the primary dictates atime.
    use std::os::unix::fs::MetadataExt;
    let (_t, a, b) = pair_with(",HighRead");
    let mut ca = Raw::connect(a.port);
    let ra = mount_root(&mut ca, &a.export());
    let (st, body) = create(&mut ca, 1, &ra, "r", CreateHow3::Guarded(Sattr3::default()));
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    let w = Args::Write {
        file: f.clone(),
        offset: 0,
        count: 3,
        stable: nfs3::StableHow::FileSync,
        data: b"abc".to_vec().into(),
    };
    assert_eq!(
        nfs_status(&ca.call(2, nfs3::PROGRAM, procs::WRITE, &w.to_bytes())).0,
        0
    );
    std::thread::sleep(Duration::from_millis(20));
    let r = Args::Read {
        file: f,
        offset: 0,
        count: 3,
    };
    assert_eq!(
        nfs_status(&ca.call(3, nfs3::PROGRAM, procs::READ, &r.to_bytes())).0,
        0
    );
    let (ma, mb) = (
        std::fs::metadata(a.export().join("r")).unwrap(),
        std::fs::metadata(b.export().join("r")).unwrap(),
    );
    assert_eq!((ma.atime(), ma.atime_nsec()), (mb.atime(), mb.atime_nsec()));
    assert!(
        (ma.atime(), ma.atime_nsec()) > (ma.mtime(), ma.mtime_nsec()),
        "the read moved atime past the write's mtime"
    );
}

#[test]
fn one_member_is_primary_of_one_export_and_secondary_of_another() {
    let _serial = serial();
    // export2 lists b first: b is its primary and a its secondary, while a is primary of
    // export (DESIGN.md: several active groups on one host).
    let (_t, a, b) = pair();
    let mut cb = Raw::connect(b.port);
    let rb = mount_root(&mut cb, &b.dir.join("export2"));
    let (st, _) = create(
        &mut cb,
        1,
        &rb,
        "from-b",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    assert!(a.dir.join("export2/from-b").exists(), "b's update is on a");
    let mut ca = Raw::connect(a.port);
    let ra = mount_root(&mut ca, &a.export());
    let (st, _) = create(
        &mut ca,
        2,
        &ra,
        "from-a",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    assert!(b.export().join("from-a").exists(), "a's update is on b");
    // and each refuses client updates of the export it is secondary of
    let ra2 = mount_root(&mut ca, &a.dir.join("export2"));
    let (st, _) = create(
        &mut ca,
        3,
        &ra2,
        "nope",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 10008);
}

/// One NFS call that must succeed; the reply body after the status.
fn ok(c: &mut Raw, xid: u32, proc_: u32, a: Args) -> Vec<u8> {
    let (st, body) = nfs_status(&c.call(xid, nfs3::PROGRAM, proc_, &a.to_bytes()));
    assert_eq!(st, 0, "procedure {proc_} (xid {xid})");
    body
}

fn write_at(c: &mut Raw, xid: u32, f: &NfsFh3, offset: u64, data: Vec<u8>) {
    ok(
        c,
        xid,
        procs::WRITE,
        Args::Write {
            file: f.clone(),
            offset,
            count: data.len() as u32,
            stable: nfs3::StableHow::FileSync,
            data: data.into(),
        },
    );
}

fn manifest(m: &Member) -> serde_json::Value {
    let v = admin_call(
        &m.dir.join("adm.sock"),
        "{\"cmd\":\"manifest\",\"export\":4711}",
    );
    assert_eq!(v["ok"], true, "{v}");
    v["entries"].clone()
}

#[test]
fn a_secondary_back_from_a_crash_is_resynced_from_the_change_log() {
    let _serial = serial();
    // Issue 6: b is killed, the primary goes on (data, a directory moved to another one,
    // hard links, symlinks, removals, a mode change); b comes back, refuses the Join with
    // what it needs, gets a partial resync and joins; then both mirrors list the same
    // objects, ids, generations, modes, sizes, mtimes and contents.
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = member(t.path(), "a", "b", pa, pb, "");
    let mut b = member(t.path(), "b", "a", pb, pa, "");
    let live = |a: &Member| wait_for(120, || "b never joined".into(), || export_4711(a).1);
    live(&a);
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    let sattr = Sattr3::default();
    let mkdir = |c: &mut Raw, xid, dir: &NfsFh3, name: &str| {
        fh_of_create(&ok(
            c,
            xid,
            procs::MKDIR,
            Args::Mkdir {
                where_: dirop(dir, name),
                attr: Sattr3::default(),
            },
        ))
    };
    let d1 = mkdir(&mut c, 10, &root, "d1");
    let d2 = mkdir(&mut c, 11, &root, "d2");
    let (st, body) = create(&mut c, 12, &d1, "f", CreateHow3::Guarded(sattr));
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    write_at(&mut c, 13, &f, 0, vec![7u8; 300_000]);
    let (st, _) = create(&mut c, 14, &d1, "g", CreateHow3::Guarded(sattr));
    assert_eq!(st, 0);
    ok(
        &mut c,
        15,
        procs::LINK,
        Args::Link {
            file: f.clone(),
            link: dirop(&d2, "hard"),
        },
    );
    ok(
        &mut c,
        16,
        procs::SYMLINK,
        Args::Symlink {
            where_: dirop(&d2, "s"),
            attr: sattr,
            target: b"hard".to_vec(),
        },
    );
    let (st, body) = create(&mut c, 17, &root, "big", CreateHow3::Guarded(sattr));
    assert_eq!(st, 0);
    let big = fh_of_create(&body);
    for i in 0..8u64 {
        write_at(
            &mut c,
            18 + i as u32 * 100,
            &big,
            i << 20,
            vec![i as u8; 1 << 20],
        );
    }
    // more than a window (1024) of updates: what b did before them is surely applied there,
    // so its own log's uncertain part no longer covers the big file
    for i in 0..1100u32 {
        write_at(&mut c, 2000 + i, &f, 0, vec![i as u8; 16]);
    }
    assert_eq!(manifest(&a), manifest(&b), "in step before the crash");

    // b dies; a goes on alone
    let _ = b.child.kill();
    let _ = b.child.wait();
    wait_for(120, || "b never failed out".into(), || !export_4711(&a).1);
    write_at(&mut c, 20, &f, 100_000, vec![9u8; 50_000]);
    ok(
        &mut c,
        21,
        procs::RENAME,
        Args::Rename {
            from: dirop(&root, "d1"),
            to: dirop(&d2, "moved"),
        },
    );
    ok(&mut c, 22, procs::REMOVE, Args::Remove(dirop(&d1, "g")));
    let (st, body) = create(&mut c, 23, &d2, "new", CreateHow3::Guarded(sattr));
    assert_eq!(st, 0);
    let new = fh_of_create(&body);
    write_at(&mut c, 24, &new, 0, b"fresh".to_vec());
    ok(
        &mut c,
        25,
        procs::SETATTR,
        Args::SetAttr {
            obj: new.clone(),
            attr: Sattr3 {
                mode: Some(0o600),
                ..Sattr3::default()
            },
            guard: None,
        },
    );
    // the big file written in one block while b was away: only that block goes
    write_at(&mut c, 31, &big, 5 << 20, vec![3u8; 4096]);
    let d3 = mkdir(&mut c, 26, &root, "d3");
    let (st, _) = create(&mut c, 27, &d3, "x", CreateHow3::Guarded(sattr));
    assert_eq!(st, 0);
    ok(
        &mut c,
        28,
        procs::RENAME,
        Args::Rename {
            from: dirop(&d2, "hard"),
            to: dirop(&d2, "hard2"),
        },
    );
    for i in 0..200u32 {
        // a storm of short-lived names, so the change log holds more than the survivors
        let name = format!("t{i}");
        let (st, _) = create(
            &mut c,
            100 + 2 * i,
            &d3,
            &name,
            CreateHow3::Unchecked(sattr),
        );
        assert_eq!(st, 0);
        if i % 2 == 0 {
            ok(
                &mut c,
                101 + 2 * i,
                procs::REMOVE,
                Args::Remove(dirop(&d3, &name)),
            );
        }
    }
    assert!(!b.export().join("d3").exists(), "b missed all of that");

    // b comes back
    b = member(t.path(), "b", "a", pb, pa, "");
    live(&a);
    let (ma, mb) = (manifest(&a), manifest(&b));
    if ma != mb {
        for m in [&a, &b] {
            for e in m.admin("status")["status"]["mirror"]["events"]
                .as_array()
                .unwrap()
            {
                eprintln!("{}: {} {}", m.dir.display(), e["at_ms"], e["what"]);
            }
        }
    }
    assert!(ma == mb, "identical after the resync");
    let events = a.admin("status")["status"]["mirror"]["events"].to_string();
    assert!(events.contains("resync of b started (partial"), "{events}");
    assert!(events.contains("resync of b done"), "{events}");
    // of the 8 MiB file only the block written while b was away went over (1 MiB, plus the
    // small files)
    let done = events
        .split("resync of b done: ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mib: u64 = done
        .split(" MiB")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    assert!(mib <= 2, "sent {mib} MiB: {done}");
    assert!(
        !b.dir.join("state/export-4711.resync").exists(),
        "the marker is gone once b joined"
    );

    // and b follows the stream from there
    write_at(&mut c, 900, &new, 5, b" and more".to_vec());
    assert_eq!(manifest(&a), manifest(&b), "in step after the rejoin");
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` random updates of every kind through `c` on a tree that starts at `root`; failures
/// (a name already gone, a directory not empty) are part of the mix and ignored.
fn random_updates(c: &mut Raw, rng: &mut Rng, root: &NfsFh3, xid: &mut u32, n: usize) {
    let mut dirs = vec![root.clone()];
    let mut files: Vec<NfsFh3> = Vec::new();
    let name = |rng: &mut Rng| format!("n{}", rng.below(12));
    for _ in 0..n {
        *xid += 1;
        let d = dirs[rng.below(dirs.len())].clone();
        let call = |c: &mut Raw, proc_: u32, a: Args| {
            nfs_status(&c.call(*xid, nfs3::PROGRAM, proc_, &a.to_bytes()))
        };
        match rng.below(10) {
            0 => {
                let (st, body) = call(
                    c,
                    procs::MKDIR,
                    Args::Mkdir {
                        where_: dirop(&d, &name(rng)),
                        attr: Sattr3::default(),
                    },
                );
                if st == 0 {
                    dirs.push(fh_of_create(&body));
                }
            }
            1 | 2 => {
                let (st, body) = call(
                    c,
                    procs::CREATE,
                    Args::Create {
                        where_: dirop(&d, &name(rng)),
                        how: CreateHow3::Unchecked(Sattr3::default()),
                    },
                );
                if st == 0 {
                    files.push(fh_of_create(&body));
                }
            }
            3 | 4 if !files.is_empty() => {
                let f = files[rng.below(files.len())].clone();
                let len = 1 + rng.below(200_000);
                let byte = rng.next() as u8;
                call(
                    c,
                    procs::WRITE,
                    Args::Write {
                        file: f,
                        // spread over several 1 MiB blocks: resync sends written blocks only
                        offset: rng.below(4 << 20) as u64,
                        count: len as u32,
                        stable: nfs3::StableHow::Unstable,
                        data: vec![byte; len].into(),
                    },
                );
            }
            5 => {
                let to = dirs[rng.below(dirs.len())].clone();
                call(
                    c,
                    procs::RENAME,
                    Args::Rename {
                        from: dirop(&d, &name(rng)),
                        to: dirop(&to, &name(rng)),
                    },
                );
            }
            6 => {
                call(c, procs::REMOVE, Args::Remove(dirop(&d, &name(rng))));
            }
            7 => {
                call(c, procs::RMDIR, Args::Rmdir(dirop(&d, &name(rng))));
            }
            8 if !files.is_empty() => {
                let f = files[rng.below(files.len())].clone();
                call(
                    c,
                    procs::LINK,
                    Args::Link {
                        file: f,
                        link: dirop(&d, &name(rng)),
                    },
                );
            }
            8 => {}
            _ if !files.is_empty() && rng.below(2) == 0 => {
                let f = files[rng.below(files.len())].clone();
                call(
                    c,
                    procs::SETATTR,
                    Args::SetAttr {
                        obj: f,
                        attr: Sattr3 {
                            mode: Some(0o600 + rng.below(0o100) as u32),
                            size: (rng.below(3) == 0).then(|| rng.below(50_000) as u64),
                            ..Sattr3::default()
                        },
                        guard: None,
                    },
                );
            }
            _ => {
                call(
                    c,
                    procs::SYMLINK,
                    Args::Symlink {
                        where_: dirop(&d, &name(rng)),
                        attr: Sattr3::default(),
                        target: name(rng).into_bytes(),
                    },
                );
            }
        }
    }
}

#[test]
fn random_histories_converge_after_a_resync() {
    let _serial = serial();
    // Seeded: b is killed after a random prefix of random updates, the primary applies more,
    // b comes back; whatever the history, both mirrors end identical. FTNFS_RESYNC_SEEDS
    // runs more seeds (default 4).
    let seeds: u64 = std::env::var("FTNFS_RESYNC_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let t = tempfile::tempdir().unwrap();
        let (pa, pb) = (free_port(), free_port());
        let a = member(t.path(), "a", "b", pa, pb, "");
        let mut b = member(t.path(), "b", "a", pb, pa, "");
        let live = |a: &Member, want: bool| {
            wait_for(
                120,
                || format!("seed {seed}: live != {want}"),
                || export_4711(a).1 == want,
            )
        };
        live(&a, true);
        let mut c = Raw::connect(a.port);
        let root = mount_root(&mut c, &a.export());
        let mut xid = 1000;
        let before = rng.below(150);
        random_updates(&mut c, &mut rng, &root, &mut xid, before);
        if seed % 2 == 0 {
            // more than a window of updates: b's own uncertain part no longer covers the
            // files above, so what is written to them later goes by block
            let (st, body) = create(
                &mut c,
                1,
                &root,
                "filler",
                CreateHow3::Unchecked(Sattr3::default()),
            );
            assert_eq!(st, 0);
            let filler = fh_of_create(&body);
            for i in 0..1100u32 {
                xid += 1;
                write_at(
                    &mut c,
                    xid,
                    &filler,
                    u64::from(i % 7) << 20,
                    vec![i as u8; 64],
                );
            }
        }
        let _ = b.child.kill();
        let _ = b.child.wait();
        live(&a, false);
        let after = 50 + rng.below(300);
        random_updates(&mut c, &mut rng, &root, &mut xid, after);
        b = member(t.path(), "b", "a", pb, pa, "");
        live(&a, true);
        let (ma, mb) = (manifest(&a), manifest(&b));
        if ma != mb {
            let (la, lb) = (ma.as_array().unwrap(), mb.as_array().unwrap());
            let only_a: Vec<_> = la.iter().filter(|e| !lb.contains(e)).collect();
            let only_b: Vec<_> = lb.iter().filter(|e| !la.contains(e)).collect();
            panic!("seed {seed} ({before} + {after} updates): a has {only_a:?}, b has {only_b:?}");
        }
        // and b is a working mirror again
        random_updates(&mut c, &mut rng, &root, &mut xid, 30);
        assert_eq!(
            manifest(&a),
            manifest(&b),
            "seed {seed}: in step after the rejoin"
        );

        // now the primary dies: b takes over (a's process is gone), more updates through b;
        // a comes back, is resynced from b (the stream it led and b's new one) and takes
        // its role back
        drop(c);
        let mut a = a;
        let _ = a.child.kill();
        let _ = a.child.wait();
        let role_of = |m: &Member| export_4711(m).0;
        wait_for(
            120,
            || format!("seed {seed}: b never took over"),
            || role_of(&b) == "primary",
        );
        let mut cb = Raw::connect(b.port);
        let rootb = mount_root(&mut cb, &b.export());
        let more = 50 + rng.below(200);
        random_updates(&mut cb, &mut rng, &rootb, &mut xid, more);
        drop(cb);
        a = member(t.path(), "a", "b", pa, pb, "");
        wait_for(
            120,
            || {
                format!(
                    "seed {seed}: a never took its role back ({} / {})",
                    role_of(&a),
                    role_of(&b)
                )
            },
            || role_of(&a) == "primary" && role_of(&b) == "secondary",
        );
        live(&a, true);
        let (ma, mb) = (manifest(&a), manifest(&b));
        if ma != mb {
            let (la, lb) = (ma.as_array().unwrap(), mb.as_array().unwrap());
            let only_a: Vec<_> = la.iter().filter(|e| !lb.contains(e)).collect();
            let only_b: Vec<_> = lb.iter().filter(|e| !la.contains(e)).collect();
            panic!("seed {seed}, after the primary's rejoin: a has {only_a:?}, b has {only_b:?}");
        }
        let events = a.admin("status")["status"]["mirror"]["events"].to_string();
        assert!(
            events.contains("resync from b started (partial)"),
            "seed {seed}: {events}"
        );
    }
}

/// On a group, an object removed and created again outside ftnfs on the primary (often
/// under the old inode number): the new object gets a new id, old handles are STALE, and the
/// manifest (`ftnfsctl verify`) marks it as a local change that was not mirrored.
#[test]
fn objects_recreated_outside_ftnfs_on_a_member_are_named_by_verify() {
    let _serial = serial();
    let (_t, a, _b) = pair();
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    let ex = a.export();
    let lookup = |c: &mut Raw, name: &str| lookup(c, &root, name).1.expect(name);
    // made through ftnfs (mirrored): a file, a directory, a symlink
    let (st, _) = create(
        &mut c,
        1,
        &root,
        "f",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let mk = Args::Mkdir {
        where_: dirop(&root, "d"),
        attr: Sattr3::default(),
    };
    assert_eq!(
        nfs_status(&c.call(2, nfs3::PROGRAM, procs::MKDIR, &mk.to_bytes())).0,
        0
    );
    let sl = Args::Symlink {
        where_: dirop(&root, "s"),
        attr: Sattr3::default(),
        target: b"t".to_vec(),
    };
    assert_eq!(
        nfs_status(&c.call(3, nfs3::PROGRAM, procs::SYMLINK, &sl.to_bytes())).0,
        0
    );
    let old: Vec<NfsFh3> = ["f", "d", "s"].iter().map(|n| lookup(&mut c, n)).collect();
    // replaced behind ftnfs's back on the primary only
    std::fs::remove_file(ex.join("f")).unwrap();
    std::fs::write(ex.join("f2"), b"local").unwrap();
    std::fs::remove_dir(ex.join("d")).unwrap();
    std::fs::create_dir(ex.join("d2")).unwrap();
    std::fs::remove_file(ex.join("s")).unwrap();
    std::os::unix::fs::symlink("t2", ex.join("s2")).unwrap();
    for (o, n) in old.iter().zip(["f2", "d2", "s2"]) {
        let new = lookup(&mut c, n);
        assert_ne!(&new, o, "{n}: a new identity");
        assert_eq!(getattr(&mut c, &new), 0, "{n}: the new handle works");
        assert_eq!(getattr(&mut c, o), 70, "{n}: the old handle is STALE");
    }
    let m = manifest(&a);
    for n in ["f2", "d2", "s2"] {
        let e = m
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == n)
            .unwrap_or_else(|| panic!("{n} not in {m}"));
        assert_eq!(e["outside_ftnfs"], true, "{e}");
    }
    assert!(m
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["outside_ftnfs"] == false || e["path"].as_str().unwrap().ends_with('2')));
}

/// Exactly once across roles (issue 12): a non-idempotent request executed by b while a was
/// down, retransmitted to a after a rejoined through a resync and took its role back, gets
/// its original reply from a — not a second execution (MKDIR would answer EXIST, RMDIR
/// NOENT).
#[test]
fn a_retransmission_after_a_hand_back_gets_its_original_reply() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = member(t.path(), "a", "b", pa, pb, "");
    let b = member(t.path(), "b", "a", pb, pa, "");
    wait_for(
        120,
        || "the group did not form".into(),
        || export_4711(&a).1,
    );
    let _ = a.child.kill();
    let _ = a.child.wait();
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
    let mut cb = Raw::connect(b.port);
    let root = mount_root(&mut cb, &b.export());
    let mk = Args::Mkdir {
        where_: dirop(&root, "once"),
        attr: Sattr3::default(),
    }
    .to_bytes();
    let rm = Args::Rmdir(dirop(&root, "gone")).to_bytes();
    let mk_gone = Args::Mkdir {
        where_: dirop(&root, "gone"),
        attr: Sattr3::default(),
    }
    .to_bytes();
    assert_eq!(
        nfs_status(&cb.call(500, nfs3::PROGRAM, procs::MKDIR, &mk_gone)).0,
        0
    );
    let first_mk = cb.call(501, nfs3::PROGRAM, procs::MKDIR, &mk);
    assert_eq!(nfs_status(&first_mk).0, 0);
    let first_rm = cb.call(502, nfs3::PROGRAM, procs::RMDIR, &rm);
    assert_eq!(nfs_status(&first_rm).0, 0);
    drop(cb);
    // a comes back, is resynced from b and takes its role back
    a = member(t.path(), "a", "b", pa, pb, "");
    wait_for(
        120,
        || {
            format!(
                "a never took its role back: {:?} {:?}",
                export_4711(&a),
                export_4711(&b)
            )
        },
        || export_4711(&a) == ("primary".to_string(), true),
    );
    // the client retransmits both to a (the virtual IP moved back)
    let mut ca = Raw::connect(a.port);
    let again_mk = ca.call(501, nfs3::PROGRAM, procs::MKDIR, &mk);
    assert_eq!(nfs_status(&again_mk).0, 0, "MKDIR replayed, not EXIST");
    let again_rm = ca.call(502, nfs3::PROGRAM, procs::RMDIR, &rm);
    assert_eq!(nfs_status(&again_rm).0, 0, "RMDIR replayed, not NOENT");
    assert!(
        a.admin("status")["status"]["drc"]["replays"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "answered from a's cache"
    );
}

/// Liveness after a stall (issue 12 item 2): the secondary and the witness freeze, the primary
/// finds itself isolated and stands down; once they resume, the group must converge to one
/// primary with its secondary — the old primary must not take its own joined secondary for
/// another primary.
#[test]
fn a_group_converges_after_its_primary_fenced_itself() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (w, a, b) = witnessed_pair(t.path());
    signal(b.child.id(), "-STOP");
    signal(w.0.id(), "-STOP");
    wait_for(
        120,
        || "a never found itself isolated".into(),
        || {
            a.admin("status")["status"]["mirror"]["events"]
                .to_string()
                .contains("isolated")
        },
    );
    signal(w.0.id(), "-CONT");
    signal(b.child.id(), "-CONT");
    wait_for(
        120,
        || {
            format!(
                "no single primary with its secondary: a {:?}, b {:?}\na: {}\nb: {}",
                export_4711(&a),
                export_4711(&b),
                a.admin("status")["status"]["mirror"]["events"],
                b.admin("status")["status"]["mirror"]["events"]
            )
        },
        || {
            let (ra, la) = export_4711(&a);
            let (rb, lb) = export_4711(&b);
            (ra == "primary" && la && rb != "primary") || (rb == "primary" && lb && ra != "primary")
        },
    );
    drop(w);
}

/// A process killed when the test ends, also when it fails (continued first if stopped).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A witness for members a and b (peer ports `pa`, `pb`) listening on `pw`.
fn witness(root: &Path, pa: u16, pb: u16, pw: u16) -> Reaped {
    std::fs::write(root.join("secret"), "a-long-enough-shared-secret\n").unwrap();
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_ftnfsd"))
            .args(["--witness-mode", "--name", "w"])
            .args(["--peer", &format!("a=127.0.0.1:{pa}")])
            .args(["--peer", &format!("b=127.0.0.1:{pb}")])
            .args(["--peer-listen", &format!("127.0.0.1:{pw}")])
            .arg("--secret-file")
            .arg(root.join("secret"))
            .arg("--state-dir")
            .arg(root.join("w"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A witness and members a and b that know it, formed (a primary, b its live secondary).
fn witnessed_pair(root: &Path) -> (Reaped, Member, Member) {
    let (pa, pb, pw) = (free_port(), free_port(), free_port());
    let w = witness(root, pa, pb, pw);
    let wit = format!("w=127.0.0.1:{pw}");
    let a = member_with(root, "a", "b", pa, pb, "", &["--witness", &wit]);
    let b = member_with(root, "b", "a", pb, pa, "", &["--witness", &wit]);
    wait_for(
        120,
        || "the group did not form".into(),
        || export_4711(&a).1,
    );
    (w, a, b)
}

/// The lease of an idle primary is kept by its secondary's heartbeat echoes: a read long
/// after the last update is answered at once (07-failover.md "Fencing"). The echoes were
/// dropped before, so an idle group with a witness answered every read JUKEBOX
/// (tests/chaos.sh: a guest could not mount after the faults).
#[test]
fn an_idle_primary_keeps_its_lease() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (_w, a, _b) = witnessed_pair(t.path());
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    // idle for many lease times (200 ms each)
    std::thread::sleep(Duration::from_secs(2));
    let rep = c.call(
        7,
        nfs3::PROGRAM,
        procs::GETATTR,
        &Args::GetAttr(root).to_bytes(),
    );
    let (st, _) = nfs_status(&rep);
    assert_eq!(
        st, 0,
        "GETATTR of the root on an idle primary (10008: JUKEBOX)"
    );
}

/// Never two primaries answering (issue 12 item 4): a primary frozen while the other member
/// took over resumes with requests already queued on its client connections; it must answer
/// none of them from its own (stale) mirror: its read lease expired while it was frozen
/// (07-failover.md), so the queued calls wait for a confirmation that never comes.
#[test]
fn a_primary_resumed_after_a_freeze_answers_no_client() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (_w, a, b) = witnessed_pair(t.path());
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    signal(a.child.id(), "-STOP");
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
    // queued while a is frozen: GETATTRs of the root
    let getattr = Args::GetAttr(root.clone()).to_bytes();
    let mut w = ftnfs_wire::XdrWriter::new();
    for xid in 900..910u32 {
        let call = call_record(xid, 0, 0, nfs3::PROGRAM, procs::GETATTR, &getattr);
        w.fixed(&ftnfs_wire::record::encode_record(&call));
    }
    c.send_bytes(w.as_slice());
    signal(a.child.id(), "-CONT");
    // whatever comes back must not be a successful answer from a's own mirror
    while let Some(rep) = c.recv_for(Duration::from_secs(5)) {
        let (st, _) = nfs_status(&rep);
        assert_ne!(
            st, 0,
            "the resumed old primary answered a client from its mirror"
        );
    }
    // then one primary with its secondary (a takes its role back through a resync)
    wait_for(
        120,
        || format!("a {:?} b {:?}", export_4711(&a), export_4711(&b)),
        || {
            let (ra, la) = export_4711(&a);
            let (rb, lb) = export_4711(&b);
            (ra == "primary" && la && rb != "primary") || (rb == "primary" && lb && ra != "primary")
        },
    );
}

/// Makes of other names in one directory are not serialized (`Order::Entry`): a secondary
/// may apply them in another order than the primary executed them. Four clients at once
/// make files and directories in one directory, and files in those; each new file is
/// written at once. Then, twenty times, the four make one file each in a fresh directory at
/// the same instant, so that the directory's last stamp comes from concurrent makes. Then
/// they remove files and directories at once (removals are ordered by their entry and
/// their victim when the primary can be sure of the victim), and in the twenty directories
/// at the same instant. The mirrors must be identical — also every directory's mtime, which
/// is the latest dictated stamp whatever the order (with each change setting its own
/// stamp, as a serial order would, tried by hand, the burst directories' mtimes differ).
#[test]
fn makes_in_one_directory_at_once_leave_identical_mirrors() {
    let _serial = serial();
    let (_t, a, b) = pair();
    let export = a.export();
    const BURSTS: u32 = 20;
    let bursts: Vec<NfsFh3> = {
        let mut c = Raw::connect(a.port);
        let root = mount_root(&mut c, &export);
        (0..BURSTS)
            .map(|k| {
                let body = ok(
                    &mut c,
                    10 + k,
                    procs::MKDIR,
                    Args::Mkdir {
                        where_: dirop(&root, &format!("burst{k}")),
                        attr: Sattr3::default(),
                    },
                );
                fh_of_create(&body)
            })
            .collect()
    };
    let together = std::sync::Barrier::new(4);
    std::thread::scope(|sc| {
        for w in 0..4u32 {
            let export = export.clone();
            let (bursts, together) = (&bursts, &together);
            sc.spawn(move || {
                let mut c = Raw::connect(a.port);
                let root = mount_root(&mut c, &export);
                let mut xid = 1000 * (w + 1);
                let mut next = || {
                    xid += 1;
                    xid
                };
                for i in 0..30u32 {
                    let (st, body) = create(
                        &mut c,
                        next(),
                        &root,
                        &format!("f{w}-{i}"),
                        CreateHow3::Guarded(Sattr3::default()),
                    );
                    assert_eq!(st, 0, "CREATE f{w}-{i}");
                    let f = fh_of_create(&body);
                    write_at(&mut c, next(), &f, 0, vec![w as u8; 100]);
                    if i % 10 == 0 {
                        let body = ok(
                            &mut c,
                            next(),
                            procs::MKDIR,
                            Args::Mkdir {
                                where_: dirop(&root, &format!("d{w}-{i}")),
                                attr: Sattr3::default(),
                            },
                        );
                        let d = fh_of_create(&body);
                        for j in 0..3 {
                            let (st, _) = create(
                                &mut c,
                                next(),
                                &d,
                                &format!("g{j}"),
                                CreateHow3::Unchecked(Sattr3::default()),
                            );
                            assert_eq!(st, 0);
                        }
                    }
                }
                for d in bursts {
                    together.wait();
                    let (st, _) = create(
                        &mut c,
                        next(),
                        d,
                        &format!("b{w}"),
                        CreateHow3::Guarded(Sattr3::default()),
                    );
                    assert_eq!(st, 0);
                    // a second file each, removed by all four at the same instant below
                    let (st, _) = create(
                        &mut c,
                        next(),
                        d,
                        &format!("r{w}"),
                        CreateHow3::Guarded(Sattr3::default()),
                    );
                    assert_eq!(st, 0);
                }
                // removals at once: other names in one directory (each ordered by its entry
                // and its victim), and each directory emptied, then removed
                for i in (0..30u32).filter(|i| i % 3 == 0) {
                    ok(
                        &mut c,
                        next(),
                        procs::REMOVE,
                        Args::Remove(dirop(&root, &format!("f{w}-{i}"))),
                    );
                }
                for i in (0..30u32).filter(|i| i % 10 == 0) {
                    let (_, d) = lookup(&mut c, &root, &format!("d{w}-{i}"));
                    let d = d.unwrap();
                    for j in 0..3 {
                        ok(
                            &mut c,
                            next(),
                            procs::REMOVE,
                            Args::Remove(dirop(&d, &format!("g{j}"))),
                        );
                    }
                    ok(
                        &mut c,
                        next(),
                        procs::RMDIR,
                        Args::Rmdir(dirop(&root, &format!("d{w}-{i}"))),
                    );
                }
                for d in bursts {
                    together.wait();
                    ok(
                        &mut c,
                        next(),
                        procs::REMOVE,
                        Args::Remove(dirop(d, &format!("r{w}"))),
                    );
                }
                // renames and links at once: files renamed in one directory (each ordered
                // by its two entries and its object), new names for others
                for i in (0..30u32).filter(|i| i % 3 == 1) {
                    ok(
                        &mut c,
                        next(),
                        procs::RENAME,
                        Args::Rename {
                            from: dirop(&root, &format!("f{w}-{i}")),
                            to: dirop(&root, &format!("m{w}-{i}")),
                        },
                    );
                }
                for i in (0..30u32).filter(|i| i % 3 == 2) {
                    let (_, f) = lookup(&mut c, &root, &format!("f{w}-{i}"));
                    ok(
                        &mut c,
                        next(),
                        procs::LINK,
                        Args::Link {
                            file: f.unwrap(),
                            link: dirop(&root, &format!("l{w}-{i}")),
                        },
                    );
                }
                for (k, d) in bursts.iter().enumerate() {
                    together.wait();
                    // a rename into the burst directory of the next, replacing nothing
                    let to = &bursts[(k + 1) % bursts.len()];
                    ok(
                        &mut c,
                        next(),
                        procs::RENAME,
                        Args::Rename {
                            from: dirop(d, &format!("b{w}")),
                            to: dirop(to, &format!("c{w}-{k}")),
                        },
                    );
                }
            });
        }
    });
    // every reply came after the secondary applied its update
    let (ma, mb) = (manifest(&a), manifest(&b));
    let n = 1 + BURSTS * 5 + 120 - 40 + 40;
    assert_eq!(ma.as_array().map(|v| v.len()), Some(n as usize));
    if ma != mb {
        let (va, vb) = (ma.as_array().unwrap(), mb.as_array().unwrap());
        let differ: Vec<String> = va
            .iter()
            .zip(vb)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("{x} / {y}"))
            .collect();
        panic!(
            "the mirrors differ in {} entries: {differ:#?}",
            differ.len()
        );
    }
}

/// A formed pair on peer ports `pa`, `pb` (a primary of export 4711, b its secondary), a
/// client that mounted it through a, and a file it made there: where the lock tests start.
fn pair_with_a_file(root: &Path, pa: u16, pb: u16) -> (Member, Member, Raw, NfsFh3) {
    let a = member(root, "a", "b", pa, pb, "");
    let b = member(root, "b", "a", pb, pa, "");
    wait_for(
        120,
        || "the group did not form".into(),
        || export_4711(&a).1,
    );
    let mut c = Raw::connect(a.port);
    let mnt = mount_root(&mut c, &a.export());
    let (st, body) = create(&mut c, 2, &mnt, "f", CreateHow3::Guarded(Sattr3::default()));
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    (a, b, c, f)
}

/// An NLM v4 LOCK (`unlock`: UNLOCK) of all of `fh` by `host`'s process `svid`: its status.
fn nlm_lock(c: &mut Raw, xid: u32, host: &str, svid: i32, fh: &NfsFh3, how: &str) -> u32 {
    use ftnfs_wire::nlm::procs;
    let l = alock(host, fh, svid, 0, 0);
    let (proc_, args) = match how {
        "unlock" => (procs::UNLOCK, unlock_args(l)),
        "test" => (procs::TEST, test_args(true, l)),
        _ => (procs::LOCK, lock_args(how == "block", true, l)),
    };
    nlm_call(c, xid, proc_, &args).0
}

/// (holder of each held lock, holder of each waiter) in `m`'s lock table.
fn lock_table(m: &Member) -> (Vec<String>, Vec<String>) {
    let l = m.admin("locks")["locks"].clone();
    let names = |k: &str| {
        let mut v: Vec<String> = l[k]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| format!("{}/{}", x["client"].as_str().unwrap_or("?"), x["svid"]))
            .collect();
        v.sort();
        v
    };
    (names("held"), names("waiting"))
}

/// Issue 14: the lock table is mirrored. A lock and a blocked waiter taken on the primary are
/// on the secondary too; the primary is killed and the secondary that takes over still
/// refuses the lock to another owner (no grace period, nothing reclaimed); the holder's
/// UNLOCK there grants the waiter; the old primary comes back, gets the table in its resync,
/// takes its role back and still refuses; a clean stop and start of the whole group keeps it,
/// and so does a crash of both processes (each member's lock log).
#[test]
fn locks_survive_a_takeover_a_resync_a_restart_and_a_crash_of_the_group() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (mut a, mut b, mut c, f) = pair_with_a_file(t.path(), pa, pb);
    let w_host = std::net::Ipv4Addr::new(127, 0, 0, 9);
    const GRANTED: u32 = 0;
    const DENIED: u32 = 1;
    const BLOCKED: u32 = 3;
    assert_eq!(nlm_lock(&mut c, 3, "x", 1, &f, "lock"), GRANTED);
    let mut cw = connect_from(w_host, a.port);
    assert_eq!(nlm_lock(&mut cw, 4, "w", 2, &f, "block"), BLOCKED);
    let both = (vec!["x/1".to_string()], vec!["w/2".to_string()]);
    assert_eq!(lock_table(&a), both);
    assert_eq!(lock_table(&b), both, "the secondary holds the same table");

    // the primary dies; b takes over holding every lock and waiter
    let _ = a.child.kill();
    let _ = a.child.wait();
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
    let mut cb = Raw::connect(b.port);
    assert_eq!(
        nlm_lock(&mut cb, 5, "z", 3, &f, "lock"),
        DENIED,
        "x's lock held across the takeover, with no grace period"
    );
    assert_eq!(nlm_lock(&mut cb, 6, "z", 3, &f, "test"), DENIED);
    assert_eq!(lock_table(&b), both);
    assert_eq!(nlm_lock(&mut cb, 7, "x", 1, &f, "unlock"), GRANTED);
    let granted = (vec!["w/2".to_string()], vec![]);
    assert_eq!(lock_table(&b), granted, "the waiter holds it now");

    // a comes back: resynced from b (the table in the last pass), it takes its role back
    a = member(t.path(), "a", "b", pa, pb, "");
    wait_for(
        120,
        || {
            format!(
                "a never took its role back: {:?} {:?}",
                export_4711(&a),
                export_4711(&b)
            )
        },
        || export_4711(&a) == ("primary".to_string(), true),
    );
    assert_eq!(lock_table(&a), granted, "the resync copied the table");
    let mut ca = Raw::connect(a.port);
    assert_eq!(nlm_lock(&mut ca, 8, "z", 3, &f, "lock"), DENIED);

    // a clean stop of the whole group, and a start: the seal keeps the table
    for m in [&a, &b] {
        signal(m.child.id(), "-TERM");
    }
    for m in [&mut a, &mut b] {
        let _ = m.child.wait();
    }
    a = member(t.path(), "a", "b", pa, pb, "");
    b = member(t.path(), "b", "a", pb, pa, "");
    wait_for(
        120,
        || "the group did not form again".into(),
        || export_4711(&a).1,
    );
    assert_eq!(lock_table(&a), granted, "kept across a clean restart");
    assert_eq!(lock_table(&b), granted);
    let mut ca = Raw::connect(a.port);
    assert_eq!(nlm_lock(&mut ca, 9, "z", 3, &f, "lock"), DENIED);
    assert_eq!(nlm_lock(&mut ca, 10, "w", 2, &f, "unlock"), GRANTED);
    assert_eq!(nlm_lock(&mut ca, 11, "z", 3, &f, "lock"), GRANTED);
    let z = (vec!["z/3".to_string()], vec![]);
    assert_eq!(lock_table(&b), z);

    // both processes killed (no seal) and started again: each reads its table back from
    // its log (the page cache kept it); the group forms with the lock still z's
    for m in [&mut a, &mut b] {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
    a = member(t.path(), "a", "b", pa, pb, "");
    b = member(t.path(), "b", "a", pb, pa, "");
    assert_eq!(lock_table(&a), z, "a read its table back after a crash");
    assert_eq!(lock_table(&b), z, "b read its table back after a crash");
    wait_for(
        120,
        || "the group did not form after the crash".into(),
        || export_4711(&a).1,
    );
    let mut ca = Raw::connect(a.port);
    assert_eq!(nlm_lock(&mut ca, 12, "x", 1, &f, "lock"), DENIED);
}

/// Issue 14: a waiter granted just before the primary died may never have been told. Here
/// the old primary's GRANTED cannot be delivered (nothing answers at the waiter's host yet);
/// then the waiter's lock manager comes up and the primary is killed: the member that takes
/// over tells the waiter again, at once, not after the client's own 30 s retry.
#[test]
fn a_member_that_takes_over_tells_lately_granted_waiters_again() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b, mut c, f) = pair_with_a_file(t.path(), pa, pb);
    let w_host = std::net::Ipv4Addr::new(127, 0, 0, 11);
    assert_eq!(nlm_lock(&mut c, 3, "x", 1, &f, "lock"), 0);
    let mut cw = connect_from(w_host, a.port);
    assert_eq!(nlm_lock(&mut cw, 4, "w", 2, &f, "block"), 3, "blocked");
    // the holder lets go: w holds it now, but a's callback finds nobody at w's host
    assert_eq!(nlm_lock(&mut c, 5, "x", 1, &f, "unlock"), 0);
    let held_by_w = (vec!["w/2".to_string()], vec![]);
    wait_for(
        60,
        || "b never applied the unlock".into(),
        || lock_table(&b) == held_by_w,
    );
    let told = client_host(w_host, ftnfs_wire::nlm::Stat::Granted);
    let mut a = a;
    let _ = a.child.kill();
    let _ = a.child.wait();
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
    let (p, args) = told
        .recv_timeout(Duration::from_secs(30))
        .expect("the new primary's GRANTED");
    assert_eq!(p, ftnfs_wire::nlm::procs::GRANTED);
    let Ok(Some(ftnfs_wire::nlm::Args::Test(g))) = ftnfs_wire::nlm::Args::decode(p, &args) else {
        panic!("GRANTED arguments")
    };
    assert_eq!(g.alock.caller_name, b"w");
    assert_eq!(lock_table(&b), held_by_w);
}

/// `GET /metrics` of a member started with `--metrics` (plain HTTP/1.1 on loopback).
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of one sample (`name{labels}` exactly as encoded), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Metrics during a failover: the secondary's role, epoch and role-change counter change
/// when it takes over; calls, errors and bytes count what a client did; `promtool check
/// metrics` (Debian's prometheus) accepts the output.
#[test]
fn metrics_show_a_failover_and_the_calls() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (ma, mb) = (free_port(), free_port());
    let a = member_with(
        t.path(),
        "a",
        "b",
        pa,
        pb,
        "",
        &["--metrics", &format!("127.0.0.1:{ma}")],
    );
    let b = member_with(
        t.path(),
        "b",
        "a",
        pb,
        pa,
        "",
        &["--metrics", &format!("127.0.0.1:{mb}")],
    );
    wait_for(
        120,
        || "the group did not form".into(),
        || export_4711(&a).1,
    );
    let ex_b = b.export().display().to_string();
    let role = |text: &str, r: &str| {
        sample(
            text,
            &format!("ftnfs_role{{export=\"{ex_b}\",role=\"{r}\"}}"),
        )
    };
    let epoch = |text: &str| sample(text, &format!("ftnfs_epoch{{export=\"{ex_b}\"}}"));
    let took_over = |text: &str| {
        sample(
            text,
            &format!("ftnfs_role_changes_total{{export=\"{ex_b}\",to=\"primary\"}}"),
        )
    };
    let before = scrape(mb);
    assert_eq!(role(&before, "secondary"), Some(1.0), "{before}");
    assert_eq!(role(&before, "primary"), Some(0.0));
    let took_before = took_over(&before).expect("a role-change counter");
    let e1 = epoch(&before).expect("an epoch");

    // a client's calls on the primary: a WRITE of 1000 bytes, a READ of them, a failed LOOKUP
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    let (st, body) = create(
        &mut c,
        2,
        &root,
        "m",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    write_at(&mut c, 3, &f, 0, vec![7u8; 1000]);
    let read = Args::Read {
        file: f.clone(),
        offset: 0,
        count: 4096,
    };
    ok(&mut c, 4, procs::READ, read);
    assert_eq!(lookup(&mut c, &root, "missing").0, 2, "NOENT");
    let m = scrape(ma);
    let calls = |p: &str| {
        sample(
            &m,
            &format!("ftnfs_calls_total{{program=\"nfs3\",procedure=\"{p}\"}}"),
        )
    };
    assert_eq!(calls("CREATE"), Some(1.0), "{m}");
    assert_eq!(calls("WRITE"), Some(1.0));
    assert_eq!(sample(&m, "ftnfs_written_bytes_total"), Some(1000.0));
    assert_eq!(sample(&m, "ftnfs_read_bytes_total"), Some(1000.0));
    assert_eq!(
        sample(&m, "ftnfs_call_errors_total{procedure=\"LOOKUP\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "ftnfs_call_errors_total{procedure=\"CREATE\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "ftnfs_call_duration_seconds_count{procedure=\"WRITE\"}"),
        Some(1.0)
    );
    let ex_a = a.export().display().to_string();
    assert_eq!(
        sample(
            &m,
            &format!("ftnfs_mirror_secondaries{{export=\"{ex_a}\",state=\"joined\"}}")
        ),
        Some(1.0),
        "{m}"
    );

    // the primary dies: b takes over, and says so
    drop(a);
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
    let after = scrape(mb);
    assert_eq!(role(&after, "primary"), Some(1.0), "{after}");
    assert_eq!(role(&after, "secondary"), Some(0.0));
    assert_eq!(
        took_over(&after),
        Some(took_before + 1.0),
        "one takeover counted"
    );
    assert!(epoch(&after).unwrap() > e1, "a new epoch");
    for text in [&before, &m, &after] {
        if !have_tool("promtool") {
            break;
        }
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "promtool: {out:?}");
    }
}

/// A member of a group whose peer channel is mutual TLS only (no shared secret), with the
/// certificates of `ftnfsctl certs` in `certs`.
fn tls_member(root: &Path, certs: &Path, name: &str, other: &str, pp: u16, opp: u16) -> Member {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("export")).unwrap();
    std::fs::write(
        dir.join("exports"),
        format!(
            "{} -ftnfs=a:b,fsid=4711 *(rw,insecure,no_root_squash)\n",
            dir.join("export").display()
        ),
    )
    .unwrap();
    let tls = |f: String| certs.join(f).into_os_string();
    let auth = [
        "--tls-cert".into(),
        tls(format!("{name}.pem")),
        "--tls-key".into(),
        tls(format!("{name}.key")),
        "--tls-ca".into(),
        tls("ca.pem".into()),
    ];
    spawn_member(&dir, name, other, pp, opp, &auth)
}

/// The ftnfsctl built beside this ftnfsd; `None` (the test skips) when it was not built,
/// which CI (`FTNFS_REQUIRE_TOOLS`) does not allow.
fn ftnfsctl() -> Option<PathBuf> {
    let ctl = Path::new(env!("CARGO_BIN_EXE_ftnfsd")).with_file_name("ftnfsctl");
    if !ctl.exists() {
        assert!(
            std::env::var("FTNFS_REQUIRE_TOOLS").is_err(),
            "{} not built (cargo build -p ftnfsctl)",
            ctl.display()
        );
        eprintln!("SKIP: ftnfsctl not built");
        return None;
    }
    Some(ctl)
}

/// A CA and the certificates of members a and b in `dir` (`ftnfsctl certs`).
fn make_certs(ctl: &Path, dir: &Path) {
    let out = Command::new(ctl)
        .args(["certs", "--member", "a", "--member", "b", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "ftnfsctl certs: {out:?}");
}

/// Members a (primary) and b over mutual TLS with the certificates in `certs`, once b
/// joined; their peer ports.
fn tls_group(root: &Path, certs: &Path) -> (Member, Member, (u16, u16)) {
    let (pa, pb) = (free_port(), free_port());
    let a = tls_member(root, certs, "a", "b", pa, pb);
    let b = tls_member(root, certs, "b", "a", pb, pa);
    wait_for(
        120,
        || "the TLS group did not form".into(),
        || export_4711(&a).1,
    );
    (a, b, (pa, pb))
}

/// A client's CREATE of `name` on primary `a` succeeds and is on secondary `b` by its reply.
fn created_and_mirrored(a: &Member, b: &Member, name: &str) {
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    let (st, _) = create(
        &mut c,
        2,
        &root,
        name,
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    assert!(
        b.export().join(name).exists(),
        "{name}: mirrored before the reply"
    );
}

/// A group over mutual TLS (certificates by `ftnfsctl certs`, no shared secret) forms,
/// mirrors an update before its reply and fails over (strangers and false names are refused:
/// `peer_tls.rs` tests).
#[test]
fn a_group_over_mutual_tls_mirrors_and_fails_over() {
    let _serial = serial();
    let Some(ctl) = ftnfsctl() else { return };
    let t = tempfile::tempdir().unwrap();
    let certs = t.path().join("certs");
    make_certs(&ctl, &certs);
    let (a, b, _) = tls_group(t.path(), &certs);
    created_and_mirrored(&a, &b, "over-tls");
    drop(a);
    wait_for(
        120,
        || "b never took over".into(),
        || export_4711(&b).0 == "primary",
    );
}

/// Certificates rotate without a restart: a running TLS group's member reads its `--tls-*`
/// files again on `ftnfsctl reload` (SIGHUP alike). The whole CA is replaced: a's files are
/// rewritten with a new CA's, a reloads, and b — killed and started again with the new CA's
/// certificate — rejoins a, which now trusts only the new CA (a's old keys would refuse
/// it, and b would refuse a's old certificate). A reload of unreadable files is refused
/// with its reason and changes nothing.
#[test]
fn peer_certificates_rotate_on_reload() {
    let _serial = serial();
    let Some(ctl) = ftnfsctl() else { return };
    let t = tempfile::tempdir().unwrap();
    let (old, new, live) = (
        t.path().join("old"),
        t.path().join("new"),
        t.path().join("live"),
    );
    make_certs(&ctl, &old);
    make_certs(&ctl, &new);
    std::fs::create_dir_all(&live).unwrap();
    let install = |from: &Path| {
        for f in ["a.pem", "a.key", "b.pem", "b.key", "ca.pem"] {
            std::fs::copy(from.join(f), live.join(f)).unwrap();
        }
    };
    install(&old);
    let (a, b, (pa, pb)) = tls_group(t.path(), &live);
    // unreadable files: refused whole, the old keys stay in force
    std::fs::write(live.join("a.pem"), "not a certificate").unwrap();
    let r = a.admin("reload");
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("TLS"), "{r}");
    // the new CA's files, read by a
    install(&new);
    let r = a.admin("reload");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["reload"]["peer_tls_reloaded"], true, "{r}");
    // b comes back with the new CA's certificate: a accepts it, b accepts a's
    drop(b);
    wait_for(
        120,
        || "a never noticed b gone".into(),
        || !export_4711(&a).1,
    );
    let b = tls_member(t.path(), &live, "b", "a", pb, pa);
    wait_for(
        120,
        || "b (new CA) never rejoined a (reloaded)".into(),
        || export_4711(&a).1,
    );
    created_and_mirrored(&a, &b, "after-rotation");
}

/// A UDP client whose every datagram reaches both members, as a multicast virtual IP
/// delivers it (DESIGN.md decision 8): the same datagram, from the same port, to each.
struct Everyone {
    s: std::net::UdpSocket,
    to: Vec<u16>,
}

impl Everyone {
    fn new(to: &[u16]) -> Everyone {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Everyone { s, to: to.to_vec() }
    }

    /// Sends `a` as call `xid` to the members at `ports` (in that order); returns the reply
    /// and the port it came from, retransmitting to the same members (as a UDP client does)
    /// until one comes.
    fn call(&self, ports: &[u16], xid: u32, proc_: u32, a: &Args) -> (u16, Vec<u8>) {
        let rec = call_record(xid, 0, 0, nfs3::PROGRAM, proc_, &a.to_bytes());
        let start = Instant::now();
        loop {
            for p in ports {
                self.s.send_to(&rec, ("127.0.0.1", *p)).unwrap();
            }
            let mut b = vec![0u8; 65536];
            while let Ok((n, from)) = self.s.recv_from(&mut b) {
                let r = b[..n].to_vec();
                if u32::from_be_bytes(r[0..4].try_into().unwrap()) == xid {
                    return (from.port(), r);
                }
            }
            assert!(start.elapsed() < PATIENCE, "no reply to xid {xid}");
        }
    }

    fn both(&self, xid: u32, proc_: u32, a: &Args) -> (u16, Vec<u8>) {
        // the secondary's copy first: the order then finds it (the other way round is
        // covered by the ones sent to the primary alone and by the grace)
        let mut ports = self.to.clone();
        ports.reverse();
        self.call(&ports, xid, proc_, a)
    }
}

fn proxy_of(m: &Member) -> serde_json::Value {
    m.admin("status")["status"]["mirror"]["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["export"] == 4711)
        .unwrap()["proxy"]
        .clone()
}

#[test]
fn proxy_mode_secondaries_apply_the_datagrams_they_hold_on_the_primarys_order() {
    let _serial = serial();
    // Issue 16: every member receives each UDP update; the primary sends orders without
    // the arguments; the secondary applies the datagram it holds in the order's place, and
    // fetches an update whose datagram it lacks. Only the primary answers. The mirrors end
    // identical.
    let (_t, a, b) = pair_with(",Proxy");
    let mut ca = Raw::connect(a.port);
    let root = mount_root(&mut ca, &a.export());
    let c = Everyone::new(&[a.port, b.port]);
    let mut xid = 7000;
    let mut files = Vec::new();
    for i in 0..20 {
        xid += 1;
        let (from, r) = c.both(
            xid,
            procs::CREATE,
            &Args::Create {
                where_: dirop(&root, &format!("p{i}")),
                how: CreateHow3::Guarded(Sattr3::default()),
            },
        );
        assert_eq!(from, a.port, "only the primary answers");
        let (st, body) = nfs_status(&r);
        assert_eq!(st, 0, "CREATE p{i}");
        files.push(fh_of_create(&body));
    }
    for (i, f) in files.iter().enumerate() {
        xid += 1;
        let data: Vec<u8> = (0..3000).map(|j| (i * 7 + j) as u8).collect();
        let (from, r) = c.both(
            xid,
            procs::WRITE,
            &Args::Write {
                file: f.clone(),
                offset: 0,
                count: data.len() as u32,
                stable: nfs3::StableHow::FileSync,
                data: data.into(),
            },
        );
        assert_eq!(from, a.port);
        assert_eq!(nfs_status(&r).0, 0, "WRITE p{i}");
    }
    let px = proxy_of(&b);
    assert!(
        px["claimed"].as_u64().unwrap() >= 40,
        "the secondary applied the datagrams it held: {px}"
    );
    // sent to the primary alone: the secondary has no datagram and fetches the update
    let fetched = px["fetched"].as_u64().unwrap();
    xid += 1;
    let (from, r) = c.call(
        &[a.port],
        xid,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "only-a"),
            attr: Sattr3::default(),
        },
    );
    assert_eq!((from, nfs_status(&r).0), (a.port, 0));
    assert!(
        proxy_of(&b)["fetched"].as_u64().unwrap() > fetched,
        "fetched"
    );
    // a retransmission the primary answers from its cache: no new update anywhere
    let (_, again) = c.both(
        xid,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "only-a"),
            attr: Sattr3::default(),
        },
    );
    assert_eq!(again, r, "the original reply");
    // sent to the secondary alone: never answered, never applied (the primary did not
    // execute it); it waits in the table until it expires
    xid += 1;
    let rec = call_record(
        xid,
        0,
        0,
        nfs3::PROGRAM,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "only-b"),
            attr: Sattr3::default(),
        }
        .to_bytes(),
    );
    c.s.send_to(&rec, ("127.0.0.1", b.port)).unwrap();
    wait_for(
        30,
        || format!("the datagram is held: {}", proxy_of(&b)),
        || proxy_of(&b)["held_now"].as_u64().unwrap_or(0) >= 1,
    );
    let mut buf = [0u8; 1024];
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.s.recv_from(&mut buf).is_err(),
        "the secondary answers nothing"
    );
    assert!(!b.export().join("only-b").exists());
    // no order claims it: it expires (5 s) and the primary hears of a request it never
    // executed (patent pp. 28–30), counted in its status — beside the retransmission above
    // of a request b had applied (the primary answered it)
    wait_for(
        60,
        || format!("expired: {}", proxy_of(&b)),
        || proxy_of(&b)["expired"] == 1,
    );
    assert!(
        proxy_of(&b)["repeated"].as_u64().unwrap_or(0) >= 1,
        "{}",
        proxy_of(&b)
    );
    wait_for(
        60,
        || format!("unknown requests reported: {}", primary_status(&a)),
        || primary_status(&a)["unknown_requests"].as_u64().unwrap_or(0) >= 2,
    );
    // it heard the clients: it stays primary
    assert_eq!(export_4711(&a).0, "primary");
    // every update acknowledged: the mirrors are the same
    wait_for(
        30,
        || "the secondary did not catch up".into(),
        || primary_status(&a)["pending"] == 0,
    );
    assert_eq!(manifest(&a), manifest(&b), "mirrors differ");
    assert!(b.export().join("only-a").is_dir());
    let st = primary_status(&a);
    assert_eq!(st["failures"], 0, "{st}");
}

#[test]
fn a_primary_deaf_to_the_groups_datagrams_hands_its_role_to_a_member_that_hears_them() {
    let _serial = serial();
    // Issue 16, patent pp. 28–30: the client's datagrams reach the secondary only (the
    // primary lost its multicast membership). The secondary holds them; no order claims
    // them; they expire and it reports them unknown, and also each retransmission of a
    // request it applied; the primary received none itself: it steps down for the member
    // that hears them, which then answers (`member::exclusion`).
    let (_t, a, b) = pair_with(",Proxy");
    let mut ca = Raw::connect(a.port);
    let root = mount_root(&mut ca, &a.export());
    let c = Everyone::new(&[a.port, b.port]);
    // two requests the primary never hears; a UDP client retransmits until it is answered
    let (from, r) = c.call(
        &[b.port],
        8101,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "deaf-1"),
            attr: Sattr3::default(),
        },
    );
    assert_eq!(
        from, b.port,
        "answered by the member that hears the clients"
    );
    assert_eq!(nfs_status(&r).0, 0);
    assert_eq!(export_4711(&b).0, "primary", "b took the role over");
    wait_for(60, || "a did not follow b".into(), || export_4711(&b).1);
    let events = a.admin("status")["status"]["mirror"]["events"].to_string();
    assert!(
        events.contains("does not hear the group's datagrams"),
        "a says why it stepped down: {events}"
    );
    // held down, as after an operator's demote: it does not take its listed role back
    let st = a.admin("status")["status"]["mirror"]["exports"].clone();
    let e = st
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["export"] == 4711)
        .unwrap();
    assert_eq!(
        (&e["role"], &e["demoted"]),
        (&"secondary".into(), &true.into()),
        "{e}"
    );
    let (from, r) = c.call(
        &[b.port],
        8102,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "deaf-2"),
            attr: Sattr3::default(),
        },
    );
    assert_eq!((from, nfs_status(&r).0), (b.port, 0));
    wait_for(
        30,
        || "a did not catch up".into(),
        || a.export().join("deaf-1").is_dir() && a.export().join("deaf-2").is_dir(),
    );
}

#[test]
fn an_in_memory_group_mirrors_random_updates_identically() {
    let _serial = serial();
    // `InMemory` (11-durable-metadata.md): nothing is synced before the reply, and the
    // secondary applies each update on the thread that receives it (13-request-path.md).
    // Seeded random updates from one client; both mirrors end identical, and b holds every
    // update the primary released.
    let (_t, a, b) = pair_with(",InMemory");
    let mut c = Raw::connect(a.port);
    let root = mount_root(&mut c, &a.export());
    let mut rng = Rng(0x5eed_1e55);
    let mut xid = 100;
    random_updates(&mut c, &mut rng, &root, &mut xid, 400);
    wait_for(
        30,
        || "the secondary did not catch up".into(),
        || primary_status(&a)["pending"] == 0,
    );
    let st = primary_status(&a);
    assert_eq!(st["failures"], 0, "{st}");
    assert!(st["submitted"].as_u64().unwrap_or(0) > 100, "{st}");
    assert_eq!(manifest(&a), manifest(&b), "mirrors differ");
}

/// Member `name` of a group whose export 4711 splits reads from writes (patent Table II:
/// `-ftnfsr=b:a,ftnfsw=a:b`): a orders updates, b answers reads; `Proxy`: every datagram
/// reaches both, as a multicast virtual IP delivers it.
fn split_member(
    root: &Path,
    name: &str,
    other: &str,
    peer_port: u16,
    other_peer_port: u16,
) -> Member {
    let split = "-ftnfsr=b:a,ftnfsw=a:b,Proxy";
    member_mirrored(root, name, other, peer_port, other_peer_port, split, &[])
}

/// The secondary status of export 4711 at `m`.
fn secondary_4711(m: &Member) -> serde_json::Value {
    m.admin("status")["status"]["mirror"]["exports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["export"] == 4711 && e["role"] == "secondary")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_split_exports_reads_are_answered_by_its_read_server_under_a_lease() {
    let _serial = serial();
    // Issue 16 (member::read_lease): every datagram reaches both members. Updates are
    // ordered by the write primary a; reads are answered by b, a secondary, only while it
    // holds the read lease a grants on its heartbeat echoes; a keeps quiet. Once b is gone,
    // a answers reads itself (after failing b out, and after b's lease ran out).
    let t = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = split_member(t.path(), "a", "b", pa, pb);
    let mut b = split_member(t.path(), "b", "a", pb, pa);
    wait_for(
        120,
        || "the group did not form".into(),
        || export_4711(&a).1,
    );
    let mut ca = Raw::connect(a.port);
    let root = mount_root(&mut ca, &a.export());
    wait_for(
        60,
        || format!("b holds no read lease: {}", secondary_4711(&b)),
        || secondary_4711(&b)["reads"] == true,
    );
    let st = primary_status(&a);
    assert_eq!(st["read_server"], "b", "{st}");
    let c = Everyone::new(&[a.port, b.port]);
    // an update through both: the write primary orders it, b applies it, a answers
    let (from, r) = c.both(
        9001,
        procs::MKDIR,
        &Args::Mkdir {
            where_: dirop(&root, "split-1"),
            attr: Sattr3::default(),
        },
    );
    assert_eq!((from, nfs_status(&r).0), (a.port, 0), "a orders updates");
    // reads through both: b answers them, and shows the acknowledged update
    for (i, name) in ["split-1", "split-1", "."].iter().enumerate() {
        let (from, r) = c.both(
            9010 + i as u32,
            procs::LOOKUP,
            &Args::Lookup(dirop(&root, name)),
        );
        assert_eq!(
            (from, nfs_status(&r).0),
            (b.port, 0),
            "b, the read server, answers LOOKUP {name}"
        );
    }
    let (from, r) = c.both(9020, procs::GETATTR, &Args::GetAttr(root.clone()));
    assert_eq!((from, nfs_status(&r).0), (b.port, 0), "and GETATTR");
    // a never answered one of them (a negative check: a late reply from a would show here)
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while let Ok((_, from)) = c.s.recv_from(&mut buf) {
        assert_ne!(
            from.port(),
            a.port,
            "the write primary answered a read of b's"
        );
    }
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // b is gone: a fails it out and, once b's lease is over, answers reads itself
    let _ = b.child.kill();
    let _ = b.child.wait();
    let (from, r) = c.call(
        &[a.port, b.port],
        9030,
        procs::LOOKUP,
        &Args::Lookup(dirop(&root, "split-1")),
    );
    assert_eq!((from, nfs_status(&r).0), (a.port, 0), "a reads now");
    assert_eq!(primary_status(&a)["read_server"], "a");
}
