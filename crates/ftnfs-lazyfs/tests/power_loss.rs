//! Power loss of one member: its export lives on ftnfs-lazyfs (file data kept in memory until
//! synced), and the member's ftnfsd is killed with `kill -9` at the instant its unsynced data
//! is dropped. Every update that was acknowledged as stable must still be there, under the
//! same handles; the write verifier changes so clients resend what was UNSTABLE.
//!
//! Needs root and /dev/fuse (skipped otherwise, unless FTNFS_REQUIRE_TOOLS is set). The
//! state directory stays on the real disk: it is synced explicitly (redb, markers) and a real
//! power loss is told by the boot id, which a test cannot change.

#[path = "../../ftnfsd/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ftnfs_wire::nfs3::{self, procs, Args, CreateHow3, DirOpArgs3, NfsFh3, Sattr3, StableHow};
use ftnfs_wire::{XdrEncode, XdrReader};

/// The ftnfsd built beside this test's lazyfs binary (same target directory).
fn ftnfsd() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_ftnfs-lazyfs")).with_file_name("ftnfsd");
    assert!(p.exists(), "{} missing: build ftnfsd first", p.display());
    p
}

fn runnable() -> bool {
    let ok = nix::unistd::Uid::effective().is_root() && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var("FTNFS_REQUIRE_TOOLS").is_err(),
            "power-loss tests need root and /dev/fuse (FTNFS_REQUIRE_TOOLS is set)"
        );
        eprintln!("SKIP power loss: needs root and /dev/fuse");
    }
    ok
}

/// A mounted ftnfs-lazyfs.
struct Lazy {
    child: Child,
    mnt: PathBuf,
    disk: PathBuf,
    ctl: PathBuf,
}

impl Lazy {
    fn mount(dir: &Path) -> Lazy {
        let (disk, mnt, ctl) = (dir.join("disk"), dir.join("mnt"), dir.join("lazy.sock"));
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ftnfs-lazyfs"))
            .arg(&disk)
            .arg(&mnt)
            .arg("--control")
            .arg(&ctl)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let l = Lazy {
            child,
            mnt,
            disk,
            ctl,
        };
        let t = Instant::now();
        while !mounted(&l.mnt) {
            assert!(t.elapsed() < PATIENCE, "lazyfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        l
    }

    fn command(&self, c: &str) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.ctl).unwrap();
        s.write_all(format!("{c}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.starts_with("ok"), "{line}");
        line
    }

    /// Drops everything not synced: a power cut.
    fn crash(&self) -> String {
        self.command("crash")
    }
}

impl Drop for Lazy {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        if mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(p.to_str().unwrap()))
}

struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(dir: &Path, port: u16, extra: &[&str]) -> Daemon {
        Daemon::start_with_state(dir, &dir.join("state"), port, extra)
    }

    fn start_with_state(dir: &Path, state: &Path, port: u16, extra: &[&str]) -> Daemon {
        let child = Command::new(ftnfsd())
            .arg("--exports")
            .arg(dir.join("exports"))
            .arg("--state-dir")
            .arg(state)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--admin-socket")
            .arg(dir.join("adm.sock"))
            .arg("--no-portmap")
            .args(extra)
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        wait_listening(port);
        Daemon { child, port }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn dirop(dir: &NfsFh3, name: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: name.into(),
    }
}

fn ok(c: &mut Raw, xid: u32, a: &Args) -> Vec<u8> {
    let (st, body) = nfs_status(&c.call(xid, nfs3::PROGRAM, a.proc_num(), &a.to_bytes()));
    assert_eq!(st, 0, "{a:?}");
    body
}

fn new_file(c: &mut Raw, xid: u32, dir: &NfsFh3, name: &str) -> NfsFh3 {
    let (st, body) = create(c, xid, dir, name, CreateHow3::Guarded(Sattr3::default()));
    assert_eq!(st, 0, "CREATE {name}");
    fh_of_create(&body)
}

/// WRITE; the verifier of the reply.
fn write(c: &mut Raw, xid: u32, f: &NfsFh3, off: u64, data: &[u8], stable: StableHow) -> [u8; 8] {
    let body = ok(
        c,
        xid,
        &Args::Write {
            file: f.clone(),
            offset: off,
            count: data.len() as u32,
            stable,
            data: data.to_vec().into(),
        },
    );
    let mut r = XdrReader::new(&body);
    // wcc_data: pre_op_attr, post_op_attr
    if r.bool().unwrap() {
        r.fixed::<24>().unwrap();
    }
    if r.bool().unwrap() {
        r.fixed::<84>().unwrap();
    }
    let _count = r.u32().unwrap();
    let _committed = r.u32().unwrap();
    r.fixed::<8>().unwrap()
}

fn set_size(c: &mut Raw, xid: u32, f: &NfsFh3, size: u64) {
    ok(
        c,
        xid,
        &Args::SetAttr {
            obj: f.clone(),
            attr: Sattr3 {
                size: Some(size),
                ..Sattr3::default()
            },
            guard: None,
        },
    );
}

/// (status, size, first bytes) of a file by handle.
fn read_all(c: &mut Raw, xid: u32, f: &NfsFh3) -> (u32, u64, Vec<u8>) {
    let (st, body) = nfs_status(&c.call(
        xid,
        nfs3::PROGRAM,
        procs::GETATTR,
        &Args::GetAttr(f.clone()).to_bytes(),
    ));
    if st != 0 {
        return (st, 0, vec![]);
    }
    let size = u64::from_be_bytes(body[20..28].try_into().unwrap());
    let (st, body) = nfs_status(
        &c.call(
            xid + 1,
            nfs3::PROGRAM,
            procs::READ,
            &Args::Read {
                file: f.clone(),
                offset: 0,
                count: 65536,
            }
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    let mut r = XdrReader::new(&body);
    if r.bool().unwrap() {
        r.fixed::<84>().unwrap();
    }
    let _ = r.u32().unwrap();
    let _ = r.bool().unwrap();
    (0, size, r.opaque(1 << 20).unwrap().to_vec())
}

/// lazyfs mounted under `dir`, with one export on it (`export`, rw) in `dir/exports`.
fn lazy_export(dir: &Path) -> (Lazy, PathBuf) {
    let lazy = Lazy::mount(dir);
    let export = lazy.mnt.join("export");
    std::fs::create_dir(&export).unwrap();
    std::fs::write(
        dir.join("exports"),
        format!("{} *(rw,insecure,no_root_squash)\n", export.display()),
    )
    .unwrap();
    (lazy, export)
}

/// One member on lazyfs: every kind of acknowledged stable update survives a power loss of
/// the member (kill -9 of ftnfsd and the loss of everything not synced, at once).
#[test]
fn acknowledged_updates_survive_a_power_loss() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (lazy, export) = lazy_export(t.path());
    let port = free_port();
    let mut d = Daemon::start(t.path(), port, &[]);
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &export);
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    // WRITE FILE_SYNC and DATA_SYNC
    let f1 = new_file(&mut c, 1, &root, "filesync");
    let v1 = write(&mut c, 2, &f1, 0, b"file sync", StableHow::FileSync);
    let f2 = new_file(&mut c, 3, &root, "datasync");
    write(&mut c, 4, &f2, 0, b"data sync", StableHow::DataSync);
    // UNSTABLE + COMMIT
    let f3 = new_file(&mut c, 5, &root, "committed");
    write(&mut c, 6, &f3, 0, &big, StableHow::Unstable);
    ok(
        &mut c,
        7,
        &Args::Commit {
            file: f3.clone(),
            offset: 0,
            count: 0,
        },
    );
    // SETATTR size: shrink, to zero, extend
    let f4 = new_file(&mut c, 8, &root, "shrunk");
    write(&mut c, 9, &f4, 0, &big, StableHow::FileSync);
    set_size(&mut c, 10, &f4, 1000);
    let f5 = new_file(&mut c, 11, &root, "emptied");
    write(&mut c, 12, &f5, 0, &big, StableHow::FileSync);
    set_size(&mut c, 13, &f5, 0);
    let f6 = new_file(&mut c, 14, &root, "extended");
    write(&mut c, 15, &f6, 0, b"0123456789", StableHow::FileSync);
    set_size(&mut c, 16, &f6, 500_000);
    // namespace: MKDIR, RENAME, LINK, SYMLINK, REMOVE
    ok(
        &mut c,
        17,
        &Args::Mkdir {
            where_: dirop(&root, "dir"),
            attr: Sattr3::default(),
        },
    );
    let dir = lookup(&mut c, &root, "dir").1.unwrap();
    ok(
        &mut c,
        19,
        &Args::Rename {
            from: dirop(&root, "filesync"),
            to: dirop(&dir, "moved"),
        },
    );
    ok(
        &mut c,
        20,
        &Args::Link {
            file: f2.clone(),
            link: dirop(&dir, "second-name"),
        },
    );
    ok(
        &mut c,
        21,
        &Args::Symlink {
            where_: dirop(&root, "link"),
            attr: Sattr3::default(),
            target: b"dir/moved".to_vec(),
        },
    );
    let gone = new_file(&mut c, 22, &root, "gone");
    ok(&mut c, 23, &Args::Remove(dirop(&root, "gone")));
    // an UNSTABLE write never committed may be lost: the verifier tells the client
    let f7 = new_file(&mut c, 24, &root, "uncommitted");
    write(&mut c, 25, &f7, 0, b"maybe", StableHow::Unstable);

    // power loss
    drop(c);
    d.kill9();
    let dropped = lazy.crash();
    eprintln!("lazyfs: {dropped}");
    let mut d = Daemon::start(t.path(), port, &[]);
    let mut c = Raw::connect(d.port);
    let root2 = mount_root(&mut c, &export);
    assert_eq!(root2, root);
    assert_eq!(read_all(&mut c, 100, &f1), (0, 9, b"file sync".to_vec()));
    assert_eq!(read_all(&mut c, 102, &f2), (0, 9, b"data sync".to_vec()));
    let (st, size, data) = read_all(&mut c, 104, &f3);
    assert_eq!((st, size), (0, big.len() as u64), "UNSTABLE + COMMIT");
    assert_eq!(data, big);
    let (st, size, data) = read_all(&mut c, 106, &f4);
    assert_eq!((st, size), (0, 1000), "SETATTR shrink");
    assert_eq!(data, big[..1000]);
    assert_eq!(read_all(&mut c, 108, &f5), (0, 0, vec![]), "SETATTR to 0");
    let (st, size, data) = read_all(&mut c, 110, &f6);
    assert_eq!((st, size), (0, 500_000), "SETATTR extend");
    assert_eq!(&data[..10], b"0123456789");
    assert!(data[10..].iter().all(|b| *b == 0));
    let dir2 = lookup(&mut c, &root, "dir").1.unwrap();
    assert_eq!(lookup(&mut c, &dir2, "moved").1, Some(f1.clone()));
    assert_eq!(lookup(&mut c, &dir2, "second-name").1, Some(f2.clone()));
    assert!(lookup(&mut c, &root, "link").1.is_some());
    assert!(lookup(&mut c, &root, "gone").1.is_none());
    assert_eq!(read_all(&mut c, 117, &gone).0, 70, "removed: STALE");
    // a new verifier: the client resends its UNSTABLE writes
    let v2 = write(&mut c, 118, &f7, 0, b"maybe", StableHow::Unstable);
    assert_ne!(v1, v2, "the write verifier changes on every start");
    drop(c);
    d.kill9();
}

/// The identity table (state directory) on lazyfs too: files created by four clients at
/// once — their table changes share syncs (group commit) — all keep their handles through a
/// power loss. With the table's sync left out, this test fails (every handle STALE).
#[test]
fn handles_made_at_once_survive_a_power_loss_of_the_identity_table() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (lazy, export) = lazy_export(t.path());
    let state = lazy.mnt.join("state");
    let port = free_port();
    let mut d = Daemon::start_with_state(t.path(), &state, port, &[]);
    let made: Vec<(String, NfsFh3)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let export = export.clone();
                sc.spawn(move || {
                    let mut c = Raw::connect(port);
                    let root = mount_root(&mut c, &export);
                    (0..40u32)
                        .map(|i| {
                            let name = format!("w{w}-{i}");
                            let fh = new_file(&mut c, 10 + i, &root, &name);
                            (name, fh)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    d.kill9();
    let dropped = lazy.crash();
    eprintln!("lazyfs: {dropped}");
    let d = Daemon::start_with_state(t.path(), &state, port, &[]);
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &export);
    for (i, (name, fh)) in made.iter().enumerate() {
        assert_eq!(
            read_all(&mut c, 1000 + 2 * i as u32, fh).0,
            0,
            "{name}: handle lost"
        );
        assert_eq!(lookup(&mut c, &root, name).1.as_ref(), Some(fh), "{name}");
    }
}

/// A REMOVE does not wait for the identity table's log (`Change::may_be_lost`): the
/// directory's fsync made the removal durable, and a table that lost it keeps only a link
/// whose name is gone. After a power loss that takes the table's record of the last removes
/// (the export and the state directory on lazyfs): each removed file's handle is STALE and
/// its name NOENT, the kept files keep their handles, and a file created again under a
/// removed name gets a new handle while the old one stays STALE — never the new file.
#[test]
fn removes_whose_table_records_were_lost_leave_stale_handles() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (lazy, export) = lazy_export(t.path());
    let state = lazy.mnt.join("state");
    let port = free_port();
    let mut d = Daemon::start_with_state(t.path(), &state, port, &[]);
    let mut c = Raw::connect(port);
    let root = mount_root(&mut c, &export);
    let made: Vec<(String, NfsFh3)> = (0..20u32)
        .map(|i| {
            let name = format!("f{i}");
            let fh = new_file(&mut c, 10 + i, &root, &name);
            (name, fh)
        })
        .collect();
    // the last changes before the loss: removes only, whose table records nobody synced
    for (i, (name, _)) in made.iter().enumerate().skip(10) {
        ok(&mut c, 100 + i as u32, &Args::Remove(dirop(&root, name)));
    }
    drop(c);
    d.kill9();
    eprintln!("lazyfs: {}", lazy.crash());
    let d = Daemon::start_with_state(t.path(), &state, port, &[]);
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &export);
    const STALE: u32 = 70;
    const NOENT: u32 = 2;
    for (i, (name, fh)) in made.iter().enumerate() {
        let xid = 1000 + 4 * i as u32;
        if i < 10 {
            assert_eq!(read_all(&mut c, xid, fh).0, 0, "{name}: handle lost");
            assert_eq!(lookup(&mut c, &root, name).1.as_ref(), Some(fh), "{name}");
        } else {
            assert_eq!(read_all(&mut c, xid, fh).0, STALE, "{name}: removed");
            assert_eq!(lookup(&mut c, &root, name).0, NOENT, "{name}: removed");
        }
    }
    for (i, (name, old)) in made.iter().enumerate().skip(10) {
        let fresh = new_file(&mut c, 2000 + 4 * i as u32, &root, name);
        assert_ne!(
            &fresh, old,
            "{name}: a new file got the removed one's handle"
        );
        write(
            &mut c,
            2001 + 4 * i as u32,
            &fresh,
            0,
            b"new",
            StableHow::FileSync,
        );
        assert_eq!(
            read_all(&mut c, 2002 + 4 * i as u32, old).0,
            STALE,
            "{name}: old handle"
        );
    }
}

/// exports(5) `async` means what it means for knfsd: the reply does not wait for stable
/// storage. A FILE_SYNC write to an `async` export is answered, and a power loss right after
/// loses it (lazyfs never writes anything back by itself); the same write to a `sync` export
/// survives.
#[test]
fn an_async_export_replies_before_stable_storage() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let lazy = Lazy::mount(t.path());
    let (fast, safe) = (lazy.mnt.join("fast"), lazy.mnt.join("safe"));
    std::fs::create_dir(&fast).unwrap();
    std::fs::create_dir(&safe).unwrap();
    std::fs::write(
        t.path().join("exports"),
        format!(
            "{} *(rw,async,insecure,no_root_squash)\n{} *(rw,insecure,no_root_squash)\n",
            fast.display(),
            safe.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut d = Daemon::start(t.path(), port, &[]);
    let mut c = Raw::connect(d.port);
    let (rf, rs) = (mount_root(&mut c, &fast), mount_root(&mut c, &safe));
    let f = new_file(&mut c, 1, &rf, "f");
    write(&mut c, 2, &f, 0, b"told it was stable", StableHow::FileSync);
    let s = new_file(&mut c, 3, &rs, "s");
    write(&mut c, 4, &s, 0, b"stable indeed", StableHow::FileSync);
    drop(c);
    d.kill9();
    eprintln!("lazyfs: {}", lazy.crash());
    let d = Daemon::start(t.path(), port, &[]);
    let mut c = Raw::connect(d.port);
    mount_root(&mut c, &fast);
    mount_root(&mut c, &safe);
    assert_eq!(read_all(&mut c, 10, &s), (0, 13, b"stable indeed".to_vec()));
    let (st, size, _) = read_all(&mut c, 12, &f);
    assert!(
        st != 0 || size == 0,
        "the async export's write survived without a sync: status {st}, size {size}"
    );
}

/// Two members of export 4711 on loopback; `lazy_member` ("a" or "b") has its export on
/// lazyfs, the other on the real disk.
struct Pair {
    t: tempfile::TempDir,
    lazy: Lazy,
    ports: [(u16, u16); 2],
    members: [Option<Daemon>; 2],
}

impl Pair {
    fn new(lazy_member: usize) -> Pair {
        Self::with_options(lazy_member, "")
    }

    /// `opts`: more of the `-ftnfs=a:b` option list (",InMemory").
    fn with_options(lazy_member: usize, opts: &str) -> Pair {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("secret"), "a-long-enough-shared-secret\n").unwrap();
        let lazy_dir = t.path().join(["a", "b"][lazy_member]);
        std::fs::create_dir_all(&lazy_dir).unwrap();
        let lazy = Lazy::mount(&lazy_dir);
        let p = Pair {
            t,
            lazy,
            ports: [(free_port(), free_port()), (free_port(), free_port())],
            members: [None, None],
        };
        for (i, name) in ["a", "b"].iter().enumerate() {
            let d = p.t.path().join(name);
            let e = p.export(i);
            std::fs::create_dir_all(&e).unwrap();
            std::fs::write(
                d.join("exports"),
                format!(
                    "{} -ftnfs=a:b{opts},fsid=4711 *(rw,insecure,no_root_squash)\n",
                    e.display()
                ),
            )
            .unwrap();
        }
        p
    }

    /// Both members started (a with `a_extra`), a primary with b live.
    fn formed(lazy_member: usize, a_extra: &[&str]) -> Pair {
        let mut p = Pair::new(lazy_member);
        p.start(0, a_extra);
        p.start(1, &[]);
        wait("the group did not form", || p.whole(0));
        p
    }

    /// Both members started, a primary with b live, on an export with `opts`.
    fn formed_with(lazy_member: usize, opts: &str) -> Pair {
        let mut p = Pair::with_options(lazy_member, opts);
        p.start(0, &[]);
        p.start(1, &[]);
        wait("the group did not form", || p.whole(0));
        p
    }

    /// b is killed and a goes on alone (b will need a resync).
    fn lose_b(&mut self) {
        self.kill9(1);
        wait("b never failed out", || !self.whole(0));
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.t.path().join(["a", "b"][i])
    }

    fn export(&self, i: usize) -> PathBuf {
        if self.lazy.mnt.starts_with(self.dir(i)) {
            self.lazy.mnt.join("export")
        } else {
            self.dir(i).join("export")
        }
    }

    fn start(&mut self, i: usize, extra: &[&str]) {
        let (me, other) = (["a", "b"][i], ["a", "b"][1 - i]);
        let mut args = vec![
            "--name".to_string(),
            me.into(),
            "--peer".into(),
            format!("{other}=127.0.0.1:{}", self.ports[1 - i].1),
            "--peer-listen".into(),
            format!("127.0.0.1:{}", self.ports[i].1),
            "--secret-file".into(),
            self.t.path().join("secret").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.members[i] = Some(Daemon::start(&self.dir(i), self.ports[i].0, &refs));
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut d) = self.members[i].take() {
            d.kill9();
        }
    }

    fn status(&self, i: usize) -> serde_json::Value {
        admin_call(&self.dir(i).join("adm.sock"), r#"{"cmd":"status"}"#)["status"]["mirror"]
            ["exports"][0]
            .clone()
    }

    /// Member `i` is primary with its secondary joined (it accepted the Join; "live" alone is
    /// also true while a returning member is still deciding whether it needs a resync).
    fn whole(&self, i: usize) -> bool {
        let s = self.status(i);
        s["role"] == "primary" && s["secondaries"][0]["joined"] == true
    }

    /// Member `i`'s events, as text.
    fn events(&self, i: usize) -> String {
        admin_call(&self.dir(i).join("adm.sock"), r#"{"cmd":"status"}"#)["status"]["mirror"]
            ["events"]
            .to_string()
    }

    /// The phase of a running resync from member `i` ("" if none).
    fn resync_phase(&self, i: usize) -> String {
        let v = admin_call(&self.dir(i).join("adm.sock"), r#"{"cmd":"resync"}"#);
        v["resync"]["resyncs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["progress"]["done"] == false)
            .filter_map(|r| r["progress"]["phase"].as_str().map(str::to_string))
            .next()
            .unwrap_or_default()
    }

    /// Bytes sent so far by a running resync from member `i`.
    fn resync_bytes(&self, i: usize) -> u64 {
        let v = admin_call(&self.dir(i).join("adm.sock"), r#"{"cmd":"resync"}"#);
        v["resync"]["resyncs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["progress"]["done"] == false)
            .filter_map(|r| r["progress"]["bytes"].as_u64())
            .max()
            .unwrap_or(0)
    }

    fn manifest(&self, i: usize) -> serde_json::Value {
        let v = admin_call(
            &self.dir(i).join("adm.sock"),
            r#"{"cmd":"manifest","export":4711}"#,
        );
        v["entries"].clone()
    }

    /// Every file (name, data) is on the lazy member's disk, as it is.
    fn assert_on_lazy_disk(&self, files: &[(String, Vec<u8>)]) {
        for (name, data) in files {
            let on_disk = std::fs::read(self.lazy.disk.join("export").join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                on_disk.len(),
                data.len(),
                "{name}: size on the lazy member's disk"
            );
            assert!(on_disk == *data, "{name}: data on the lazy member's disk");
        }
    }

    fn client(&self, i: usize) -> (Raw, NfsFh3) {
        let mut c = Raw::connect(self.ports[i].0);
        let root = mount_root(&mut c, &self.export(i));
        (c, root)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..2 {
                let log = std::fs::read_to_string(self.dir(i).join("log")).unwrap_or_default();
                eprintln!("=== log of {} ===\n{log}", ["a", "b"][i]);
            }
        }
    }
}

fn wait(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < PATIENCE, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files written FILE_SYNC: (name, data).
fn write_files(c: &mut Raw, root: &NfsFh3, xid: u32, n: u32, size: u32) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let name = format!("x{xid}-{i}");
            let f = new_file(c, xid + 10 * i, root, &name);
            let data: Vec<u8> = (0..size + i * 97).map(|k| (k ^ i ^ xid) as u8).collect();
            write(c, xid + 10 * i + 1, &f, 0, &data, StableHow::FileSync);
            (name, data)
        })
        .collect()
}

/// The primary loses power: the other member takes over with every acknowledged update, and
/// the old primary comes back, is resynced and the mirrors are identical.
#[test]
fn a_primary_that_lost_power_is_replaced_and_rejoins() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed(0, &[]);
    let (mut c, root) = p.client(0);
    let mut files = write_files(&mut c, &root, 1000, 20, 5000);
    let f0 = lookup(&mut c, &root, &files[0].0).1.unwrap();
    set_size(&mut c, 5001, &f0, 7);
    files[0].1.truncate(7);
    // an UNSTABLE write nobody committed: may be lost, but the mirrors must agree after
    let u = new_file(&mut c, 5002, &root, "uncommitted");
    write(&mut c, 5003, &u, 0, b"maybe", StableHow::Unstable);
    drop(c);
    p.kill9(0);
    eprintln!("lazyfs: {}", p.lazy.crash());
    wait("b never took over", || p.status(1)["role"] == "primary");
    let (mut c, root) = p.client(1);
    for (i, (name, data)) in files.iter().enumerate() {
        let f = lookup(&mut c, &root, name).1.expect(name);
        let (st, size, got) = read_all(&mut c, 6001 + 3 * i as u32, &f);
        assert_eq!((st, size), (0, data.len() as u64), "{name} on b");
        assert!(got == data[..got.len()], "{name} on b");
    }
    files.extend(write_files(&mut c, &root, 7000, 5, 3000));
    drop(c);
    // a comes back: resynced, takes its role back; the mirrors match
    p.start(0, &[]);
    wait("a never took its role back", || p.whole(0));
    assert_eq!(p.manifest(0), p.manifest(1), "mirrors identical");
}

/// `InMemory`: the primary replies once the update is in both members' memory, without
/// syncing — its power loss right after loses the updates on its own disk (syncfs does not
/// reach a FUSE filesystem, so nothing was flushed there), yet the secondary, which has
/// every acknowledged one in memory, takes over with all of them.
#[test]
fn an_in_memory_export_survives_the_primary_losing_power() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed_with(0, ",InMemory");
    let (mut c, root) = p.client(0);
    let files = write_files(&mut c, &root, 1000, 20, 5000);
    drop(c);
    p.kill9(0);
    eprintln!("lazyfs: {}", p.lazy.crash());
    let lost_on_a = files
        .iter()
        .filter(|(name, data)| {
            std::fs::read(p.lazy.disk.join("export").join(name))
                .ok()
                .as_ref()
                != Some(data)
        })
        .count();
    assert!(
        lost_on_a > 0,
        "the primary synced every update before its reply: not in-memory durability"
    );
    wait("b never took over", || p.status(1)["role"] == "primary");
    let (mut c, root) = p.client(1);
    for (i, (name, data)) in files.iter().enumerate() {
        let f = lookup(&mut c, &root, name).1.expect(name);
        let (st, size, got) = read_all(&mut c, 6001 + 3 * i as u32, &f);
        assert_eq!((st, size), (0, data.len() as u64), "{name} on b");
        assert!(got == data[..got.len()], "{name} on b");
    }
    eprintln!(
        "{lost_on_a} of {} files were only in memory on a",
        files.len()
    );
}

/// `InMemory` with no live secondary: nobody else's memory holds an update, so the primary
/// makes it stable before its reply, as without the option.
#[test]
fn an_in_memory_export_alone_syncs_before_its_replies() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed_with(0, ",InMemory");
    p.lose_b();
    let (mut c, root) = p.client(0);
    let files = write_files(&mut c, &root, 1000, 10, 5000);
    drop(c);
    p.kill9(0);
    eprintln!("lazyfs: {}", p.lazy.crash());
    p.assert_on_lazy_disk(&files);
}

/// The member being resynced loses power in the middle of the resync: it comes back, is
/// copied again, and then holds everything, also on its disk.
#[test]
fn a_power_loss_during_a_resync_is_repaired_by_the_next_one() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed(1, &["--resync-rate-mb", "2"]);
    let (mut c, root) = p.client(0);
    p.lose_b();
    let files = write_files(&mut c, &root, 1000, 24, 400_000);
    // b comes back; the resync (about 10 MB at 2 MB/s) is cut by a power loss
    p.start(1, &[]);
    wait("the resync never started sending", || {
        p.resync_bytes(0) > 1_000_000 || p.whole(0)
    });
    p.kill9(1);
    eprintln!("lazyfs: {}", p.lazy.crash());
    p.start(1, &[]);
    wait("b was never resynced", || p.whole(0));
    assert_eq!(p.manifest(0), p.manifest(1), "mirrors identical");
    p.kill9(1);
    eprintln!("lazyfs: {}", p.lazy.crash());
    p.assert_on_lazy_disk(&files);
}

/// A member resynced onto lazyfs, then a power loss of it right after the resync: everything
/// the resync copied is on its disk (the member counted as a mirror once it was done).
#[test]
fn what_a_resync_copied_survives_a_power_loss_of_the_member() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    // a on the real disk, b on lazyfs
    let mut p = Pair::formed(1, &[]);
    let (mut c, root) = p.client(0);
    // b goes away; a goes on alone: b must be resynced
    p.lose_b();
    let mut files = write_files(&mut c, &root, 1000, 40, 3000);
    let f0 = lookup(&mut c, &root, &files[0].0).1.unwrap();
    set_size(&mut c, 2000, &f0, 10);
    files[0].1.truncate(10);
    // b comes back and is resynced
    p.start(1, &[]);
    wait("b was never resynced", || p.whole(0));
    // power loss of b right after: its disk holds every file the resync copied
    p.kill9(1);
    eprintln!("lazyfs: {}", p.lazy.crash());
    p.assert_on_lazy_disk(&files);
}

/// The secondary loses power in steady state: every update acknowledged to a client is on its
/// disk (a secondary syncs what it applies before it acknowledges), and it rejoins.
#[test]
fn a_secondary_that_lost_power_holds_every_acknowledged_update() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed(1, &[]);
    let (mut c, root) = p.client(0);
    let mut files = write_files(&mut c, &root, 1000, 10, 20_000);
    // UNSTABLE + COMMIT, SETATTR size, RENAME
    let u = new_file(&mut c, 2000, &root, "committed");
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    write(&mut c, 2001, &u, 0, &data, StableHow::Unstable);
    ok(
        &mut c,
        2002,
        &Args::Commit {
            file: u,
            offset: 0,
            count: 0,
        },
    );
    files.push(("committed".into(), data));
    let f0 = lookup(&mut c, &root, &files[0].0).1.unwrap();
    set_size(&mut c, 2004, &f0, 33);
    files[0].1.truncate(33);
    ok(
        &mut c,
        2005,
        &Args::Rename {
            from: dirop(&root, &files[1].0),
            to: dirop(&root, "renamed"),
        },
    );
    files[1].0 = "renamed".into();
    p.kill9(1);
    eprintln!("lazyfs: {}", p.lazy.crash());
    p.assert_on_lazy_disk(&files);
    p.start(1, &[]);
    wait("b never rejoined", || p.whole(0));
    assert_eq!(p.manifest(0), p.manifest(1), "mirrors identical");
}

/// A member that goes silent (frozen, or its power lost) while the survivor waits for the end
/// of a resync pass is given up as fast as a silent secondary anywhere else — not after the
/// 60 s pass timeout — and a member that is merely slow at its pass end (its disk syncing)
/// is not: it answers the survivor's pings meanwhile.
#[test]
fn a_member_silent_at_a_pass_end_is_given_up_quickly() {
    if !runnable() {
        return;
    }
    let _serial = serial();
    let mut p = Pair::formed(1, &[]);
    let (mut c, root) = p.client(0);
    p.lose_b();
    write_files(&mut c, &root, 1000, 12, 10_000);
    // b's disk syncs slowly: each file fsync takes 1.5 s, so its pass end takes ~18 s
    p.lazy.command("slow-fsync 1500");
    p.start(1, &[]);
    wait("the survivor never waited for a pass end", || {
        p.resync_phase(0).contains("waiting for pass end")
    });
    // slow but alive: for two seconds (five silence times) the survivor keeps waiting
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert!(
            !p.events(0).contains("went silent"),
            "a slow member was given up: {}",
            p.events(0)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // now b freezes, as a member whose power is cut (its link stays open)
    let pid = p.members[1].as_ref().unwrap().child.id();
    signal(pid, "-STOP");
    let t = Instant::now();
    wait("the survivor never gave up the silent member", || {
        p.events(0).contains("went silent at a pass end")
    });
    let took = t.elapsed();
    eprintln!("silent member given up after {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "given up only after {took:?} (the pass timeout is 60 s)"
    );
    signal(pid, "-CONT");
    p.lazy.command("slow-fsync 0");
    wait("b never rejoined", || p.whole(0));
}
