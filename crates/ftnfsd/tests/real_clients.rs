//! Whole-daemon tests: the real ftnfsd binary on loopback against the libnfs tools (a client
//! nobody here wrote) and a raw RPC client for what no client lets us force (xid reuse,
//! garbage). Traffic stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::*;
use ftnfs_wire::nfs3::{self, procs, Args, CreateHow3, DirOpArgs3, NfsFh3, Sattr3};
use ftnfs_wire::rpc::{CallHeader, OpaqueAuth, ReplyHeader, Xid, AUTH_NONE};
use ftnfs_wire::{XdrEncode, XdrReader, XdrWriter};

struct Daemon {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// ftnfsd serving `dir/exports` on `port` (state and admin socket in `dir`, no portmapper),
/// on the default listen address unless the caller adds `--bind`.
fn command(dir: &Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ftnfsd"));
    c.arg("--exports")
        .arg(dir.join("exports"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--no-portmap")
        .stderr(Stdio::null());
    c
}

impl Daemon {
    fn start(dir: &Path, port: u16) -> Daemon {
        let child = command(dir, port)
            .args(["--bind", "127.0.0.1"])
            .spawn()
            .unwrap();
        wait_listening(port);
        Daemon {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }
    fn export(&self) -> PathBuf {
        self.dir.join("export")
    }
    fn url(&self, file: &str, extra: &str) -> String {
        format!(
            "nfs://127.0.0.1{}/{}?nfsport={}&mountport={}&version=3{}",
            self.export().display(),
            file,
            self.port,
            self.port,
            extra
        )
    }
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(opts: &str) -> (tempfile::TempDir, Daemon) {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("export")).unwrap();
    std::fs::write(
        t.path().join("exports"),
        format!("{} *({opts})\n", t.path().join("export").display()),
    )
    .unwrap();
    let d = Daemon::start(t.path(), free_port());
    (t, d)
}

/// The export of `setup` served again read-only: the daemon, a client and the root handle.
fn read_only(dir: &Path) -> (Daemon, Raw, NfsFh3) {
    std::fs::write(
        dir.join("exports"),
        format!("{} *(ro,insecure)\n", dir.join("export").display()),
    )
    .unwrap();
    let d = Daemon::start(dir, free_port());
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    (d, c, root)
}

#[test]
fn libnfs_put_get_ls_and_refused_uid() {
    let _serial = serial();
    if !have_tool("nfs-cp") {
        eprintln!("SKIP: libnfs-utils not installed");
        return;
    }
    let (t, d) = setup("rw,insecure,no_root_squash");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    let src = t.path().join("in.bin");
    std::fs::write(&src, &data).unwrap();
    let out = Command::new("nfs-cp")
        .arg(&src)
        .arg(d.url("big.bin", ""))
        .output()
        .unwrap();
    assert!(out.status.success(), "nfs-cp put: {out:?}");
    assert_eq!(std::fs::read(d.export().join("big.bin")).unwrap(), data);
    let back = t.path().join("back.bin");
    let out = Command::new("nfs-cp")
        .arg(d.url("big.bin", ""))
        .arg(&back)
        .output()
        .unwrap();
    assert!(out.status.success(), "nfs-cp get: {out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let ls = Command::new("nfs-ls").arg(d.url("", "")).output().unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("big.bin"));

    // A private root-owned file: uid 1000 is refused, root (no_root_squash) is not.
    std::fs::write(d.export().join("secret"), b"top secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.export().join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let as_user = Command::new("nfs-cat")
        .arg(d.url("secret", "&uid=1000&gid=1000"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&as_user.stdout).contains("top secret"),
        "uid 1000 read a 0600 root file"
    );
    let as_root = Command::new("nfs-cat")
        .arg(d.url("secret", ""))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&as_root.stdout).contains("top secret"));
    // uid 1000 cannot create in a root-owned 0755 directory
    let out = Command::new("nfs-cp")
        .arg(&src)
        .arg(d.url("user.bin", "&uid=1000&gid=1000"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!d.export().join("user.bin").exists());
}

#[test]
fn retransmitted_non_idempotent_calls_get_the_original_reply() {
    let _serial = serial();
    let (_t, d) = setup("rw,insecure,no_root_squash");
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    // CREATE EXCLUSIVE, retransmitted with the same xid: same bytes, one file.
    let how = CreateHow3::Exclusive(*b"verf0001");
    let first = create(&mut c, 100, &root, "x", how);
    assert_eq!(first.0, 0);
    let again = create(&mut c, 100, &root, "x", how);
    assert_eq!(again, first);
    // A different xid with the same verifier: RFC 1813 §3.3.8, still success.
    assert_eq!(create(&mut c, 101, &root, "x", how).0, 0);
    // Another verifier: EXIST.
    assert_eq!(
        create(&mut c, 102, &root, "x", CreateHow3::Exclusive(*b"other000")).0,
        17
    );

    // RENAME x -> y, retransmitted: the original NFS3_OK, not NOENT.
    let ren = Args::Rename {
        from: DirOpArgs3 {
            dir: root.clone(),
            name: b"x".to_vec(),
        },
        to: DirOpArgs3 {
            dir: root.clone(),
            name: b"y".to_vec(),
        },
    };
    let r1 = c.call(200, nfs3::PROGRAM, procs::RENAME, &ren.to_bytes());
    assert_eq!(nfs_status(&r1).0, 0);
    // retransmission on a new connection (new source port), as after a reconnect
    let mut c2 = Raw::connect(d.port);
    let r2 = c2.call(200, nfs3::PROGRAM, procs::RENAME, &ren.to_bytes());
    assert_eq!(r1, r2);
    // REMOVE y twice with one xid
    let rm = Args::Remove(DirOpArgs3 {
        dir: root.clone(),
        name: b"y".to_vec(),
    });
    let a = c.call(300, nfs3::PROGRAM, procs::REMOVE, &rm.to_bytes());
    let b = c.call(300, nfs3::PROGRAM, procs::REMOVE, &rm.to_bytes());
    assert_eq!(nfs_status(&a).0, 0);
    assert_eq!(a, b);
    // a new xid really executes again: NOENT
    assert_eq!(
        nfs_status(&c.call(301, nfs3::PROGRAM, procs::REMOVE, &rm.to_bytes())).0,
        2
    );
    assert!(!d.export().join("y").exists());
}

#[test]
fn handles_survive_a_restart_and_removed_files_are_stale() {
    let _serial = serial();
    let (t, d) = setup("rw,insecure,no_root_squash");
    let port = d.port;
    let mut c = Raw::connect(port);
    let root = mount_root(&mut c, &d.export());
    let (st, body) = create(
        &mut c,
        1,
        &root,
        "keep",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let keep = fh_of_create(&body);
    let (st, body) = create(
        &mut c,
        2,
        &root,
        "gone",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let gone = fh_of_create(&body);
    // GUARDED on an existing name: EXIST
    assert_eq!(
        create(
            &mut c,
            3,
            &root,
            "keep",
            CreateHow3::Guarded(Sattr3::default())
        )
        .0,
        17
    );
    let ga = |c: &mut Raw, xid, fh: &NfsFh3| {
        nfs_status(&c.call(
            xid,
            nfs3::PROGRAM,
            procs::GETATTR,
            &Args::GetAttr(fh.clone()).to_bytes(),
        ))
    };
    let before = ga(&mut c, 4, &keep);
    assert_eq!(before.0, 0);
    drop(c);
    d.stop();
    let d = Daemon::start(t.path(), port);
    let mut c = Raw::connect(port);
    let after = ga(&mut c, 5, &keep);
    assert_eq!(
        after, before,
        "same handle, same attributes (fileid included) after restart"
    );
    std::fs::remove_file(d.export().join("gone")).unwrap();
    assert_eq!(ga(&mut c, 6, &gone).0, 70, "NFS3ERR_STALE");
    // garbage handle: BADHANDLE
    assert_eq!(ga(&mut c, 7, &NfsFh3(vec![9; 7])).0, 10001);
    // a LOOKUP of ".." at the root stays at the root
    let lk = Args::Lookup(DirOpArgs3 {
        dir: root.clone(),
        name: b"..".to_vec(),
    });
    let (st, body) = nfs_status(&c.call(8, nfs3::PROGRAM, procs::LOOKUP, &lk.to_bytes()));
    assert_eq!(st, 0);
    assert_eq!(XdrReader::new(&body).opaque(64).unwrap(), &root.0[..]);
}

#[test]
fn bad_input_gets_rpc_errors_and_the_server_lives() {
    let _serial = serial();
    let (_t, d) = setup("rw,insecure");
    let mut c = Raw::connect(d.port);
    let accept = |rep: &[u8]| ReplyHeader::decode(&mut XdrReader::new(rep)).unwrap().1;
    use ftnfs_wire::rpc::{AcceptStat::*, ReplyHeader::*};
    // unknown program, wrong version, unknown procedure, garbage args
    assert_eq!(accept(&c.call(1, 200_000, 0, &[])), Accepted(ProgUnavail));
    assert_eq!(
        accept(&c.call(2, nfs3::PROGRAM, 99, &[])),
        Accepted(ProcUnavail)
    );
    assert_eq!(
        accept(&c.call(3, nfs3::PROGRAM, procs::GETATTR, &[0, 0, 1])),
        Accepted(GarbageArgs)
    );
    let mut w = XdrWriter::new();
    CallHeader {
        xid: Xid(4),
        rpcvers: 2,
        prog: nfs3::PROGRAM,
        vers: 2,
        proc_: 0,
        cred: AUTH_NONE,
        verf: AUTH_NONE,
    }
    .encode(&mut w);
    c.send_raw(w.as_slice());
    assert_eq!(
        accept(&c.recv().unwrap()),
        Accepted(ProgMismatch { low: 3, high: 3 })
    );
    // unknown auth flavor
    let mut w = XdrWriter::new();
    CallHeader {
        xid: Xid(5),
        rpcvers: 2,
        prog: nfs3::PROGRAM,
        vers: 3,
        proc_: 0,
        cred: OpaqueAuth {
            flavor: 6,
            body: b"",
        },
        verf: AUTH_NONE,
    }
    .encode(&mut w);
    c.send_raw(w.as_slice());
    assert!(matches!(accept(&c.recv().unwrap()), AuthError(_)));
    // RPC version 3
    let mut w = XdrWriter::new();
    CallHeader {
        xid: Xid(6),
        rpcvers: 3,
        prog: nfs3::PROGRAM,
        vers: 3,
        proc_: 0,
        cred: AUTH_NONE,
        verf: AUTH_NONE,
    }
    .encode(&mut w);
    c.send_raw(w.as_slice());
    assert_eq!(accept(&c.recv().unwrap()), RpcMismatch);
    // a record header announcing 2 GiB: the connection is closed, nothing allocated
    let mut evil = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    evil.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    evil.write_all(&0xffff_fff0u32.to_be_bytes()).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(evil.read(&mut b).unwrap_or(0), 0, "connection closed");
    // still serving
    let mut c = Raw::connect(d.port);
    assert_eq!(accept(&c.call(7, nfs3::PROGRAM, 0, &[])), Accepted(Success));
}

fn call_as(c: &mut Raw, xid: u32, uid: u32, proc_: u32, a: &Args) -> u32 {
    nfs_status(&c.call_as(xid, uid, uid, nfs3::PROGRAM, proc_, &a.to_bytes())).0
}

/// RFC 1813 error statuses of the namespace procedures, through the whole daemon.
#[test]
fn error_paths_of_the_procedures() {
    let _serial = serial();
    let (t, d) = setup("rw,insecure,no_root_squash");
    std::fs::create_dir(d.export().join("full")).unwrap();
    std::fs::write(d.export().join("full/f"), b"x").unwrap();
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    let dop = |n: &str| DirOpArgs3 {
        dir: root.clone(),
        name: n.into(),
    };
    const NOENT: u32 = 2;
    const ACCES: u32 = 13;
    const EXIST: u32 = 17;
    const NOTDIR: u32 = 20;
    const NOTEMPTY: u32 = 66;
    const NAMETOOLONG: u32 = 63;
    assert_eq!(
        call_as(&mut c, 1, 0, procs::LOOKUP, &Args::Lookup(dop("nope"))),
        NOENT
    );
    assert_eq!(
        call_as(&mut c, 2, 0, procs::RMDIR, &Args::Rmdir(dop("full"))),
        NOTEMPTY
    );
    assert_eq!(
        call_as(&mut c, 3, 0, procs::REMOVE, &Args::Remove(dop("nope"))),
        NOENT
    );
    assert_eq!(
        call_as(
            &mut c,
            4,
            0,
            procs::MKDIR,
            &Args::Mkdir {
                where_: dop("full"),
                attr: Sattr3::default()
            }
        ),
        EXIST
    );
    assert_eq!(
        call_as(
            &mut c,
            5,
            0,
            procs::LOOKUP,
            &Args::Lookup(dop(&"n".repeat(300)))
        ),
        NAMETOOLONG
    );
    // uid 1000 may not create in the root-owned 0755 directory, nor remove from it
    assert_eq!(
        call_as(
            &mut c,
            6,
            1000,
            procs::MKDIR,
            &Args::Mkdir {
                where_: dop("u"),
                attr: Sattr3::default()
            }
        ),
        ACCES
    );
    assert_eq!(
        call_as(
            &mut c,
            7,
            1000,
            procs::REMOVE,
            &Args::Remove(DirOpArgs3 {
                dir: root.clone(),
                name: b"full".to_vec()
            })
        ),
        ACCES
    );
    // a file is not a directory
    let (st, body) = nfs_status(&c.call(
        8,
        nfs3::PROGRAM,
        procs::LOOKUP,
        &Args::Lookup(dop("full")).to_bytes(),
    ));
    assert_eq!(st, 0);
    let full = NfsFh3(XdrReader::new(&body).opaque(64).unwrap().to_vec());
    let (st, body) = nfs_status(
        &c.call(
            9,
            nfs3::PROGRAM,
            procs::LOOKUP,
            &Args::Lookup(DirOpArgs3 {
                dir: full,
                name: b"f".to_vec(),
            })
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    let f = NfsFh3(XdrReader::new(&body).opaque(64).unwrap().to_vec());
    assert_eq!(
        call_as(
            &mut c,
            10,
            0,
            procs::LOOKUP,
            &Args::Lookup(DirOpArgs3 {
                dir: f,
                name: b"x".to_vec()
            })
        ),
        NOTDIR
    );
    drop(c);
    d.stop();

    // The same export read-only: ROFS for updates.
    let (d, mut c, root) = read_only(t.path());
    let dop = |n: &str| DirOpArgs3 {
        dir: root.clone(),
        name: n.into(),
    };
    assert_eq!(
        call_as(
            &mut c,
            11,
            0,
            procs::MKDIR,
            &Args::Mkdir {
                where_: dop("x"),
                attr: Sattr3::default()
            }
        ),
        30 /* ROFS */
    );

    // UDP on the same port answers too.
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = XdrWriter::new();
    CallHeader {
        xid: Xid(77),
        rpcvers: 2,
        prog: nfs3::PROGRAM,
        vers: 3,
        proc_: 0,
        cred: AUTH_NONE,
        verf: AUTH_NONE,
    }
    .encode(&mut w);
    u.send_to(w.as_slice(), ("127.0.0.1", d.port)).unwrap();
    let mut b = [0u8; 512];
    let n = u.recv(&mut b).unwrap();
    let (xid, h) = ReplyHeader::decode(&mut XdrReader::new(&b[..n])).unwrap();
    assert_eq!(
        (xid, h),
        (
            Xid(77),
            ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success)
        )
    );
}

/// Every error reply of every procedure is exactly that procedure's failure body (RFC 1813
/// §3.3), decoded by a decoder that rejects trailing bytes: for a handle that names nothing
/// (STALE), a handle that is not ours (BADHANDLE), the root directory given where a file is
/// meant (ISDIR, INVAL, …) and a read-only export (ROFS).
#[test]
fn every_error_reply_has_its_procedures_failure_body() {
    let _serial = serial();
    let (t, d) = setup("rw,insecure,no_root_squash");
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    let export = u32::from_be_bytes(root.0[4..8].try_into().unwrap());
    // each round its own xids: the same call again would be a retransmission, answered from
    // the DRC — also after a restart (the reply log)
    fn check(
        c: &mut Raw,
        fh: &NfsFh3,
        what: &str,
        seen: &mut std::collections::BTreeSet<(u32, u32)>,
    ) {
        static ROUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = 1000 + 100 * ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, (p, args)) in every_procedure(fh).into_iter().enumerate() {
            let (st, body) = nfs_status(&c.call(base + i as u32, nfs3::PROGRAM, p, &args));
            if st != 0 {
                seen.insert((p, st));
                if let Err(e) = check_fail_body(p, &body) {
                    panic!("{what}: procedure {p} status {st}: {e}");
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    check(&mut c, &unknown_handle(export), "unknown handle", &mut seen);
    check(&mut c, &NfsFh3(vec![9; 12]), "foreign handle", &mut seen);
    check(&mut c, &root, "root directory", &mut seen);
    // every procedure failed at least once (GETATTR fails only on the bad handles)
    for p in 1..=21u32 {
        assert!(
            seen.iter().any(|(q, _)| *q == p),
            "procedure {p} never failed"
        );
    }
    assert!(
        seen.contains(&(procs::READ, 21)),
        "READ of a directory: ISDIR"
    );
    drop(c);
    d.stop();
    let (_d, mut c, root) = read_only(t.path());
    seen.clear();
    check(&mut c, &root, "read-only export", &mut seen);
    assert!(seen.contains(&(procs::CREATE, 30)), "{seen:?}");
}

fn mnt(c: &mut Raw, xid: u32, path: &str) -> (u32, Option<NfsFh3>) {
    let mut w = XdrWriter::new();
    w.opaque(path.as_bytes());
    let (st, body) = nfs_status(&c.call(xid, ftnfs_wire::mount::PROGRAM, 1, w.as_slice()));
    let fh = (st == 0).then(|| NfsFh3(XdrReader::new(&body).opaque(64).unwrap().to_vec()));
    (st, fh)
}

/// MNT of a directory below an export hands out that directory's handle (the same LOOKUP
/// gives), with the export's options; never a path outside it: `..` and symlinks on the way
/// are refused; DUMP and `ftnfsctl status` list the mount; libnfs mounts such a URL.
#[test]
fn mount_a_directory_below_the_export() {
    let _serial = serial();
    let (_t, d) = setup("rw,insecure,no_root_squash");
    let ex = d.export();
    std::fs::create_dir_all(ex.join("sub/deeper")).unwrap();
    std::fs::write(ex.join("sub/deeper/file"), b"below").unwrap();
    std::fs::write(ex.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("sub", ex.join("ln")).unwrap();
    std::os::unix::fs::symlink("/", ex.join("out")).unwrap();
    let e = ex.display().to_string();
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &ex);
    let (st, sub) = mnt(&mut c, 2, &format!("{e}/sub"));
    assert_eq!(st, 0);
    let sub = sub.unwrap();
    let (st, body) = nfs_status(
        &c.call(
            3,
            nfs3::PROGRAM,
            procs::LOOKUP,
            &Args::Lookup(DirOpArgs3 {
                dir: root.clone(),
                name: b"sub".to_vec(),
            })
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    assert_eq!(
        NfsFh3(XdrReader::new(&body).opaque(64).unwrap().to_vec()),
        sub
    );
    assert_eq!(mnt(&mut c, 4, &format!("{e}//sub/./")).1, Some(sub.clone()));
    let (st, deeper) = mnt(&mut c, 5, &format!("{e}/sub/deeper"));
    assert_eq!(st, 0);
    // the handle works: READDIR lists the file
    let (st, body) = nfs_status(
        &c.call(
            6,
            nfs3::PROGRAM,
            procs::READDIR,
            &Args::ReadDir {
                dir: deeper.unwrap(),
                cookie: 0,
                verf: [0; 8],
                count: 4096,
            }
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    assert!(body.windows(4).any(|w| w == b"file"));
    const NOENT: u32 = 2;
    const NOTDIR: u32 = 20;
    for (path, want) in [
        (format!("{e}/f"), NOTDIR),
        (format!("{e}/nope"), NOENT),
        (format!("{e}/ln"), NOTDIR),
        (format!("{e}/ln/deeper"), NOTDIR),
        (format!("{e}/out"), NOTDIR),
        (format!("{e}/sub/../sub"), NOENT),
        (format!("{e}/.."), NOENT),
        (format!("{e}x"), NOENT),
        ("relative".to_string(), NOENT),
    ] {
        assert_eq!(mnt(&mut c, 7, &path).0, want, "MNT {path}");
    }
    // DUMP lists the subdirectory's mount
    let rep = c.call(8, ftnfs_wire::mount::PROGRAM, 2, &[]);
    assert!(
        rep.windows(e.len() + 11)
            .any(|w| w == format!("{e}/sub/deeper").as_bytes()),
        "DUMP"
    );
    let status = admin_call(&d.dir.join("admin.sock"), r#"{"cmd":"status"}"#);
    assert!(
        status.to_string().contains(&format!("{e}/sub/deeper")),
        "{status}"
    );
    // libnfs mounts a URL that names the subdirectory
    if have_tool("nfs-cat") {
        let url = format!(
            "nfs://127.0.0.1{e}/sub/deeper/file?nfsport={p}&mountport={p}&version=3",
            p = d.port
        );
        let out = Command::new("nfs-cat").arg(&url).output().unwrap();
        assert_eq!(
            out.stdout,
            b"below",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// READ of the first bytes: (status, data).
fn read(c: &mut Raw, fh: &NfsFh3) -> (u32, Vec<u8>) {
    let (st, body) = nfs_status(
        &c.call(
            42,
            nfs3::PROGRAM,
            procs::READ,
            &Args::Read {
                file: fh.clone(),
                offset: 0,
                count: 100,
            }
            .to_bytes(),
        ),
    );
    if st != 0 {
        return (st, vec![]);
    }
    let mut r = XdrReader::new(&body);
    if r.bool().unwrap() {
        r.fixed::<84>().unwrap();
    }
    let _count = r.u32().unwrap();
    let _eof = r.bool().unwrap();
    (st, r.opaque(100).unwrap().to_vec())
}

/// NFS3ERR_STALE.
const STALE: u32 = 70;

fn ino(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(p).unwrap())
}

/// Objects removed and created again outside ftnfs, often under the inode number of the old
/// one: a new object gets a new id (a new LOOKUP always works), an old handle gets STALE and
/// never another object's data; a hard link or rename made outside ftnfs keeps the handle.
#[test]
fn objects_recreated_outside_ftnfs_get_a_new_identity() {
    let _serial = serial();
    let (_t, d) = setup("rw,insecure,no_root_squash");
    let ex = d.export();
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &ex);
    let mut reused = 0;
    // 1. a file removed, another created under another name (the same inode number)
    std::fs::write(ex.join("a"), b"old").unwrap();
    let old = lookup(&mut c, &root, "a").1.unwrap();
    let n = ino(&ex.join("a"));
    std::fs::remove_file(ex.join("a")).unwrap();
    std::fs::write(ex.join("b"), b"new").unwrap();
    reused += (ino(&ex.join("b")) == n) as u32;
    let (st, new) = lookup(&mut c, &root, "b");
    assert_eq!(st, 0);
    let new = new.unwrap();
    assert_ne!(new, old, "a new object, a new handle");
    assert_eq!(getattr(&mut c, &new), 0, "the new handle works");
    assert_eq!(read(&mut c, &new), (0, b"new".to_vec()));
    assert_eq!(getattr(&mut c, &old), STALE);
    // READDIRPLUS hands out the new handle too
    let (st, body) = nfs_status(
        &c.call(
            43,
            nfs3::PROGRAM,
            procs::READDIRPLUS,
            &Args::ReadDirPlus {
                dir: root.clone(),
                cookie: 0,
                verf: [0; 8],
                dircount: 4096,
                maxcount: 8192,
            }
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    assert!(body.windows(new.0.len()).any(|w| w == new.0.as_slice()));
    assert!(!body.windows(old.0.len()).any(|w| w == old.0.as_slice()));

    // 2. the same name: the old handle must not serve the new contents
    std::fs::write(ex.join("c"), b"first").unwrap();
    let old = lookup(&mut c, &root, "c").1.unwrap();
    assert_eq!(read(&mut c, &old), (0, b"first".to_vec()));
    let n = ino(&ex.join("c"));
    std::fs::remove_file(ex.join("c")).unwrap();
    std::fs::write(ex.join("c"), b"second").unwrap();
    reused += (ino(&ex.join("c")) == n) as u32;
    assert_eq!(read(&mut c, &old).0, STALE, "never another file's data");
    let new = lookup(&mut c, &root, "c").1.unwrap();
    assert_ne!(new, old);
    assert_eq!(read(&mut c, &new), (0, b"second".to_vec()));

    // 3. a directory
    std::fs::create_dir(ex.join("d")).unwrap();
    let old = lookup(&mut c, &root, "d").1.unwrap();
    let n = ino(&ex.join("d"));
    std::fs::remove_dir(ex.join("d")).unwrap();
    std::fs::create_dir(ex.join("e")).unwrap();
    reused += (ino(&ex.join("e")) == n) as u32;
    let new = lookup(&mut c, &root, "e").1.unwrap();
    assert_ne!(new, old);
    assert_eq!(getattr(&mut c, &new), 0);
    assert_eq!(getattr(&mut c, &old), STALE);

    // 4. a symlink
    std::os::unix::fs::symlink("t1", ex.join("s")).unwrap();
    let old = lookup(&mut c, &root, "s").1.unwrap();
    let n = ino(&ex.join("s"));
    std::fs::remove_file(ex.join("s")).unwrap();
    std::os::unix::fs::symlink("t2", ex.join("s2")).unwrap();
    reused += (ino(&ex.join("s2")) == n) as u32;
    let new = lookup(&mut c, &root, "s2").1.unwrap();
    assert_ne!(new, old);
    assert_eq!(getattr(&mut c, &new), 0);
    assert_eq!(getattr(&mut c, &old), STALE);
    // the point of the cases above: at least one new object got its predecessor's inode
    // number (other work on the machine may take a freed number first, so not every time)
    assert!(
        reused >= 1,
        "the filesystem never reused an inode number: nothing above was tested"
    );

    // 5. a hard link made outside ftnfs is the same object; the handle outlives the first
    // name, and follows a rename made outside ftnfs
    std::fs::write(ex.join("h"), b"linked").unwrap();
    let h = lookup(&mut c, &root, "h").1.unwrap();
    std::fs::hard_link(ex.join("h"), ex.join("h2")).unwrap();
    assert_eq!(lookup(&mut c, &root, "h2").1.unwrap(), h, "same object");
    std::fs::remove_file(ex.join("h")).unwrap();
    assert_eq!(read(&mut c, &h), (0, b"linked".to_vec()));
    std::fs::rename(ex.join("h2"), ex.join("h3")).unwrap();
    assert_eq!(
        lookup(&mut c, &root, "h3").1.unwrap(),
        h,
        "renamed, same object"
    );
    assert_eq!(read(&mut c, &h), (0, b"linked".to_vec()));
}

/// A directory in use is kept open by file id (fs/dircache.rs): calls on its handle reach it
/// without walking its path. The rules that make that right: a rename (here outside ftnfs)
/// does not lose it; once it is removed (outside ftnfs too) its handle is STALE, and a
/// directory made after it is another object with another handle. (Listings read through a
/// descriptor of their own, `fs::reopen`, since a kept one is shared by concurrent calls;
/// the interleaved listings below pass either way, as each listing is read once and cached.)
#[test]
fn a_directory_kept_open_follows_its_object_and_dies_with_it() {
    let _serial = serial();
    let (_t, d) = setup("rw,insecure,no_root_squash");
    let ex = d.export();
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &ex);
    std::fs::create_dir_all(ex.join("k/sub")).unwrap();
    let k = lookup(&mut c, &root, "k").1.unwrap();
    let sub = lookup(&mut c, &k, "sub").1.unwrap();
    let unchecked = || CreateHow3::Unchecked(Sattr3::default());
    assert_eq!(create(&mut c, 11, &sub, "f1", unchecked()).0, 0);
    assert!(ex.join("k/sub/f1").exists());
    // renamed outside ftnfs: the handles still reach the objects
    std::fs::rename(ex.join("k"), ex.join("k2")).unwrap();
    assert_eq!(getattr(&mut c, &sub), 0);
    assert_eq!(create(&mut c, 12, &sub, "f2", unchecked()).0, 0);
    assert!(
        ex.join("k2/sub/f2").exists(),
        "made in the renamed directory"
    );
    // removed outside ftnfs: STALE, and nothing is made in the dead directory
    std::fs::remove_dir_all(ex.join("k2")).unwrap();
    assert_eq!(getattr(&mut c, &sub), STALE);
    assert_eq!(getattr(&mut c, &k), STALE);
    assert_eq!(create(&mut c, 13, &sub, "f3", unchecked()).0, STALE);
    std::fs::create_dir(ex.join("k3")).unwrap();
    let k3 = lookup(&mut c, &root, "k3").1.unwrap();
    assert_ne!(k3, k);
    assert_ne!(k3, sub);
    assert_eq!(getattr(&mut c, &k3), 0);
    // removed through ftnfs: STALE as well
    let (st, body) = nfs_status(
        &c.call(
            14,
            nfs3::PROGRAM,
            procs::RMDIR,
            &Args::Rmdir(DirOpArgs3 {
                dir: root.clone(),
                name: b"k3".to_vec(),
            })
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0, "{body:?}");
    assert_eq!(getattr(&mut c, &k3), STALE);
    // two listings of one directory, page by page, interleaved: each sees every entry
    std::fs::create_dir(ex.join("many")).unwrap();
    for i in 0..300 {
        std::fs::write(ex.join(format!("many/entry-with-a-long-name-{i:04}")), b"").unwrap();
    }
    let many = lookup(&mut c, &root, "many").1.unwrap();
    let page = |c: &mut Raw, xid: u32, cookie: u64, verf: [u8; 8]| {
        let (st, body) = nfs_status(
            &c.call(
                xid,
                nfs3::PROGRAM,
                procs::READDIR,
                &Args::ReadDir {
                    dir: many.clone(),
                    cookie,
                    verf,
                    count: 1024,
                }
                .to_bytes(),
            ),
        );
        assert_eq!(st, 0);
        let mut r = XdrReader::new(&body);
        if r.bool().unwrap() {
            let _: ftnfs_wire::nfs3::Fattr3 = ftnfs_wire::xdr::XdrDecode::decode(&mut r).unwrap();
        }
        let verf: [u8; 8] = r.fixed::<8>().unwrap();
        let mut names = Vec::new();
        let mut last = cookie;
        while r.bool().unwrap() {
            let _fileid = r.u64().unwrap();
            names.push(String::from_utf8(r.opaque(255).unwrap().to_vec()).unwrap());
            last = r.u64().unwrap();
        }
        (names, last, verf, r.bool().unwrap())
    };
    let mut seen = [Vec::new(), Vec::new()];
    let mut at = [(0u64, [0u8; 8], false); 2];
    let mut xid = 100;
    while at.iter().any(|a| !a.2) {
        for i in 0..2 {
            if at[i].2 {
                continue;
            }
            xid += 1;
            let (names, last, verf, eof) = page(&mut c, xid, at[i].0, at[i].1);
            seen[i].extend(names);
            at[i] = (last, verf, eof);
        }
    }
    for s in &mut seen {
        s.retain(|n| n != "." && n != "..");
        s.sort();
        assert_eq!(s.len(), 300, "every entry, once");
        s.dedup();
        assert_eq!(s.len(), 300);
    }
}

/// Sockets of a member that is killed reset their clients instead of lingering: a client that
/// reconnects from the same port (the Linux client does) must never meet an orphan of ours
/// that answers with bare ACKs. Here a client stops reading, so replies pile up unacknowledged
/// in the server's socket, and the server is killed: no socket may stay in FIN-WAIT.
#[test]
fn a_killed_member_leaves_no_orphaned_client_socket() {
    let _serial = serial();
    if !have_tool("ss") {
        return;
    }
    let (_t, d) = setup("rw,insecure,no_root_squash");
    std::fs::write(d.export().join("big"), vec![7u8; 1 << 20]).unwrap();
    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    let big = lookup(&mut c, &root, "big").1.unwrap();
    // 48 READs of 1 MiB, never read: the client's window closes, the server's queue fills
    let read = Args::Read {
        file: big,
        offset: 0,
        count: 1 << 20,
    }
    .to_bytes();
    for xid in 100..148u32 {
        c.send_raw(&call_record(xid, 0, 0, nfs3::PROGRAM, procs::READ, &read));
    }
    let queued = || {
        let out = Command::new("ss")
            .args(["-tanH", "state", "established"])
            .arg(format!("sport = :{}", d.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    let t = std::time::Instant::now();
    while queued() < 100_000 {
        assert!(t.elapsed() < PATIENCE, "replies never queued up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = d.port;
    d.stop(); // kill -9; its sockets are closed once it is reaped
    let out = Command::new("ss")
        .args([
            "-tanH",
            "state",
            "fin-wait-1",
            "state",
            "fin-wait-2",
            "state",
            "last-ack",
        ])
        .arg(format!("sport = :{port}"))
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        left.trim().is_empty(),
        "orphaned sockets of the killed server:\n{left}"
    );
    drop(c);
}

/// A server killed right after it answered a MKDIR and an RMDIR, and started again, answers
/// their retransmissions with the replies it gave (its reply log, replylog.rs) instead of
/// running them a second time (EXIST, NOENT). A new call still runs.
#[test]
fn a_restarted_server_replays_what_it_answered_before_it_was_killed() {
    let _serial = serial();
    let (t, d) = setup("rw,insecure,no_root_squash");
    let port = d.port;
    let mut c = Raw::connect(port);
    let root = mount_root(&mut c, &d.export());
    let name = |n: &str| DirOpArgs3 {
        dir: root.clone(),
        name: n.as_bytes().to_vec(),
    };
    let mkdir = Args::Mkdir {
        where_: name("once"),
        attr: Sattr3::default(),
    }
    .to_bytes();
    let rmdir = Args::Rmdir(name("gone")).to_bytes();
    std::fs::create_dir(d.export().join("gone")).unwrap();
    let made = c.call(7001, nfs3::PROGRAM, procs::MKDIR, &mkdir);
    let removed = c.call(7002, nfs3::PROGRAM, procs::RMDIR, &rmdir);
    assert_eq!(nfs_status(&made).0, 0);
    assert_eq!(nfs_status(&removed).0, 0);
    drop(c);
    d.stop(); // kill -9
    let d = Daemon::start(t.path(), port);
    let mut c = Raw::connect(d.port);
    assert!(
        c.call(7001, nfs3::PROGRAM, procs::MKDIR, &mkdir) == made,
        "the retransmitted MKDIR got its first reply"
    );
    assert!(
        c.call(7002, nfs3::PROGRAM, procs::RMDIR, &rmdir) == removed,
        "the retransmitted RMDIR got its first reply"
    );
    // another call with the same arguments is a new one: it runs (and finds the name)
    let again = c.call(7003, nfs3::PROGRAM, procs::MKDIR, &mkdir);
    assert_eq!(nfs_status(&again).0, 17, "EXIST");
    let st = admin_call(&t.path().join("admin.sock"), r#"{"cmd":"status"}"#);
    assert!(st["status"]["drc"]["reply_log_bytes"].as_u64().unwrap_or(0) > 0);
}

/// systemd's `Type=notify` (packaging/systemd/ftnfsd.service): ftnfsd says READY=1 on
/// `$NOTIFY_SOCKET` only once its NFS port takes connections, and STOPPING=1 at SIGTERM.
#[test]
fn systemd_hears_ready_once_the_listeners_are_up_and_stopping_at_sigterm() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("export")).unwrap();
    std::fs::write(
        dir.path().join("exports"),
        format!("{} *(rw)\n", dir.path().join("export").display()),
    )
    .unwrap();
    let notify = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = free_port();
    // (a Daemon is killed on drop: no daemon outlives a failed assertion)
    let mut d = Daemon {
        child: command(dir.path(), port)
            .args(["--bind", "127.0.0.1"])
            .env("NOTIFY_SOCKET", &notify)
            .spawn()
            .unwrap(),
        port,
        dir: dir.path().to_path_buf(),
    };
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a READY within 60 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg:?}");
    // ready means serving: the port takes a connection at once, no retry
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY before the NFS port listened"
    );
    signal(d.child.id(), "-TERM");
    let n = sock.recv(&mut buf).expect("STOPPING at SIGTERM");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("STOPPING=1"), "{msg:?}");
    let st = d.child.wait().unwrap();
    assert!(st.success(), "a clean stop: {st:?}");
}

/// Reload (SIGHUP and the admin `reload`, what `ftnfsctl reload` sends) under a live
/// connection and a mounted handle: options change at once, an added export is served to
/// libnfs, a bad file is refused whole with `FILE:LINE` and the old exports stay, a removed
/// export's handles answer STALE — and the client's connection and handles of the other
/// export keep working throughout.
#[test]
fn a_reload_changes_exports_under_a_live_mount_and_a_bad_file_changes_nothing() {
    let _g = serial();
    let (t, d) = setup("ro,insecure");
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("hello"), b"hi").unwrap();
    let exports = t.path().join("exports");
    let admin = t.path().join("admin.sock");
    let line_a = |opts: &str| format!("{} *({opts})\n", d.export().display());
    let line_b = format!("{} 127.0.0.1(rw,insecure)\n", other.display());
    let unchecked = || CreateHow3::Unchecked(Sattr3::default());

    let mut c = Raw::connect(d.port);
    let root = mount_root(&mut c, &d.export());
    assert_eq!(
        create(&mut c, 10, &root, "f1", unchecked()).0,
        30,
        "ro: ROFS"
    );

    // rw and a second export, by the admin command
    std::fs::write(&exports, line_a("rw,insecure,no_root_squash") + &line_b).unwrap();
    let r = admin_call(&admin, r#"{"cmd":"reload"}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["reload"]["changed"][0],
        d.export().display().to_string(),
        "{r}"
    );
    assert_eq!(r["reload"]["added"][0], other.display().to_string(), "{r}");
    // the same connection and handle, no new mount
    assert_eq!(
        create(&mut c, 11, &root, "f1", unchecked()).0,
        0,
        "rw after reload"
    );
    let root_b = mount_root(&mut c, &other);
    if have_tool("nfs-ls") {
        let url = format!(
            "nfs://127.0.0.1{}/?nfsport={}&mountport={}&version=3",
            other.display(),
            d.port,
            d.port
        );
        let ls = Command::new("nfs-ls").arg(&url).output().unwrap();
        assert!(
            String::from_utf8_lossy(&ls.stdout).contains("hello"),
            "libnfs lists the added export: {ls:?}"
        );
    }

    // a bad edit: refused with its line, nothing changes
    std::fs::write(
        &exports,
        line_a("ro,insecure") + "/nowhere *(bogus_option)\n",
    )
    .unwrap();
    let r = admin_call(&admin, r#"{"cmd":"reload"}"#);
    assert_eq!(r["ok"], false, "{r}");
    let why = r["error"].as_str().unwrap();
    assert!(why.contains(&format!("{}:2:", exports.display())), "{why}");
    assert_eq!(
        create(&mut c, 12, &root, "f2", unchecked()).0,
        0,
        "still rw"
    );
    assert_eq!(getattr(&mut c, &root_b), 0, "still served");
    // an added export that cannot be opened refuses the file too
    std::fs::write(
        &exports,
        line_a("ro,insecure") + &line_b + "/does/not/exist *(rw)\n",
    )
    .unwrap();
    let r = admin_call(&admin, r#"{"cmd":"reload"}"#);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(
        create(&mut c, 13, &root, "f3", unchecked()).0,
        0,
        "still rw"
    );

    // SIGHUP: the second export removed, the first read-only again
    std::fs::write(&exports, line_a("ro,insecure")).unwrap();
    signal(d.child.id(), "-HUP");
    let t0 = std::time::Instant::now();
    while getattr(&mut c, &root_b) != 70 {
        assert!(
            t0.elapsed() < PATIENCE,
            "a removed export's handle never went STALE"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        create(&mut c, 14, &root, "f4", unchecked()).0,
        30,
        "ro again"
    );
    assert_eq!(getattr(&mut c, &root), 0, "the kept export is served");
    let st = admin_call(&admin, r#"{"cmd":"status"}"#);
    let list = st["status"]["exports"].as_array().unwrap();
    assert!(
        list.iter().any(|e| e["served"] == false),
        "status shows the removed export: {st}"
    );
    // and put back: the same handle works again
    std::fs::write(&exports, line_a("ro,insecure") + &line_b).unwrap();
    assert_eq!(admin_call(&admin, r#"{"cmd":"reload"}"#)["ok"], true);
    assert_eq!(getattr(&mut c, &root_b), 0, "its old handle works again");
    d.stop();
}

/// The default listener takes IPv6 and IPv4 clients on one port: an export entry for an
/// IPv6 address and one for an IPv4 address each apply to their client (the IPv4 one seen
/// as 127.0.0.1, not as an IPv4-mapped IPv6 address), over TCP by a raw client and by
/// libnfs over IPv6.
#[test]
fn ipv6_and_ipv4_clients_on_the_default_listener() {
    let _g = serial();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        assert!(
            std::env::var("FTNFS_REQUIRE_TOOLS").is_err(),
            "no IPv6 loopback here (CI needs one)"
        );
        eprintln!("SKIP: no IPv6 loopback");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let ex = t.path().join("export");
    std::fs::create_dir(&ex).unwrap();
    std::fs::write(ex.join("hello"), b"hi").unwrap();
    std::fs::write(
        t.path().join("exports"),
        format!(
            "{} fd00::/8(ro,insecure) ::1(rw,insecure,no_root_squash) 127.0.0.1(ro,insecure)\n",
            ex.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _d = Daemon {
        // no --bind: the default, `::`
        child: command(t.path(), port).spawn().unwrap(),
        port,
        dir: t.path().to_path_buf(),
    };
    wait_listening(port);
    let unchecked = || CreateHow3::Unchecked(Sattr3::default());
    let mut v6 = Raw::over(TcpStream::connect(("::1", port)).unwrap());
    let root6 = mount_root(&mut v6, &ex);
    assert_eq!(
        create(&mut v6, 2, &root6, "by-v6", unchecked()).0,
        0,
        "::1 is rw"
    );
    let mut v4 = Raw::connect(port);
    let root4 = mount_root(&mut v4, &ex);
    assert_eq!(root4, root6, "one handle, whichever family");
    assert_eq!(
        create(&mut v4, 3, &root4, "by-v4", unchecked()).0,
        30,
        "127.0.0.1 is ro"
    );
    let st = admin_call(&t.path().join("admin.sock"), r#"{"cmd":"status"}"#);
    let clients: Vec<String> = st["status"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap().to_string())
        .collect();
    assert!(clients.contains(&"::1".to_string()), "{clients:?}");
    assert!(clients.contains(&"127.0.0.1".to_string()), "{clients:?}");
    if have_tool("nfs-ls") {
        // libnfs takes an IPv6 literal without brackets
        let url = format!(
            "nfs://::1{}/?nfsport={port}&mountport={port}&version=3",
            ex.display()
        );
        let ls = Command::new("nfs-ls").arg(&url).output().unwrap();
        assert!(
            String::from_utf8_lossy(&ls.stdout).contains("by-v6"),
            "libnfs over IPv6: {ls:?}"
        );
    }
}
