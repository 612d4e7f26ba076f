//! Helpers shared by the whole-daemon tests: a raw RPC client over TCP and small NFS calls.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use ftnfs_wire::nfs3::{self, procs, Args, CreateHow3, DirOpArgs3, NfsFh3};
use ftnfs_wire::record::{encode_record, RecordDecoder};
use ftnfs_wire::rpc::{AuthSys, CallHeader, ReplyHeader, Xid};
use ftnfs_wire::{mount, XdrEncode, XdrReader, XdrWriter};

/// Tests of one binary run one at a time: each picks free ports and starts daemons, and two
/// tests picking the same port at once would talk to each other's daemon.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the test lock for the rest of the test (a failed test does not poison it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port free on loopback for TCP and UDP.
pub fn free_port() -> u16 {
    // free for TCP *and* UDP (ftnfsd binds both on its NFS port), tried a bounded number of
    // times: a port free for TCP may be some UDP socket's (a loaded CI machine once had a
    // member exit before it listened)
    for _ in 0..64 {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on loopback");
}

/// How long a whole-daemon test waits for a condition before it fails: generous, because CI
/// runs on a loaded 2-core machine; a test waits for a condition, never for a fixed time.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Waits until a daemon listens on `port` of loopback (bounded by [`PATIENCE`]).
pub fn wait_listening(port: u16) {
    let t = std::time::Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < PATIENCE,
            "ftnfsd did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a daemon's admin socket; the reply as JSON. A socket that is not there yet,
/// or a stale one that refuses, is retried (a restarted daemon binds it at start).
pub fn admin_call(sock: &Path, request: &str) -> serde_json::Value {
    use std::io::BufRead;
    let t = std::time::Instant::now();
    let s = loop {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    t.elapsed() < PATIENCE,
                    "admin socket {}: {e}",
                    sock.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    (&s).write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("admin reply {line:?}: {e}"))
}

/// A minimal raw RPC client over TCP.
pub struct Raw {
    s: TcpStream,
    dec: RecordDecoder,
    buf: bytes::BytesMut,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Raw {
            s,
            dec: RecordDecoder::new(4 << 20),
            buf: bytes::BytesMut::new(),
        }
    }
    /// A client over a stream connected elsewhere.
    pub fn over(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Raw {
            s,
            dec: RecordDecoder::new(4 << 20),
            buf: bytes::BytesMut::new(),
        }
    }
    pub fn send_raw(&mut self, rec: &[u8]) {
        self.s.write_all(&encode_record(rec)).unwrap();
    }
    /// Sends raw bytes (already record-marked).
    pub fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }
    /// The next reply within `t`, or `None` (timeout, or the connection closed).
    pub fn recv_for(&mut self, t: Duration) -> Option<Vec<u8>> {
        self.s.set_read_timeout(Some(t)).unwrap();
        let r = self.recv();
        self.s.set_read_timeout(Some(PATIENCE)).unwrap();
        r
    }
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(r) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(r.to_vec());
            }
            let mut b = [0u8; 65536];
            let n = self.s.read(&mut b).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
    /// A call as root (AUTH_SYS uid 0, gid 0).
    pub fn call(&mut self, xid: u32, prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
        self.call_as(xid, 0, 0, prog, proc_, args)
    }
    /// A call with an AUTH_SYS credential for `uid`/`gid`; the whole reply record.
    pub fn call_as(
        &mut self,
        xid: u32,
        uid: u32,
        gid: u32,
        prog: u32,
        proc_: u32,
        args: &[u8],
    ) -> Vec<u8> {
        self.send_raw(&call_record(xid, uid, gid, prog, proc_, args));
        self.recv().expect("reply")
    }
}

/// The bytes of a call (without record mark) with an AUTH_SYS credential for `uid`/`gid`.
pub fn call_record(xid: u32, uid: u32, gid: u32, prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    call_record_vers(xid, uid, gid, prog, 3, proc_, args)
}

/// [`call_record`] of another program version than 3 (NLM v4, NSM v1).
pub fn call_record_vers(
    xid: u32,
    uid: u32,
    gid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> Vec<u8> {
    let cred = AuthSys {
        stamp: 0,
        machine_name: b"t".to_vec(),
        uid,
        gid,
        gids: vec![],
    };
    ftnfs_wire::rpc::sys_call(Xid(xid), prog, vers, proc_, &cred, args)
}

/// Splits a successful reply into (status, body after status).
pub fn nfs_status(reply: &[u8]) -> (u32, Vec<u8>) {
    let mut r = XdrReader::new(reply);
    let (_, h) = ReplyHeader::decode(&mut r).unwrap();
    assert_eq!(
        h,
        ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success)
    );
    let st = r.u32().unwrap();
    (st, r.rest().to_vec())
}

pub fn mount_root(c: &mut Raw, path: &Path) -> NfsFh3 {
    let mut w = XdrWriter::new();
    w.opaque(path.to_str().unwrap().as_bytes());
    let rep = c.call(1, mount::PROGRAM, mount::procs::MNT, w.as_slice());
    let (st, body) = nfs_status(&rep);
    assert_eq!(st, 0);
    let mut r = XdrReader::new(&body);
    NfsFh3(r.opaque(64).unwrap().to_vec())
}

pub fn create(c: &mut Raw, xid: u32, dir: &NfsFh3, name: &str, how: CreateHow3) -> (u32, Vec<u8>) {
    let a = Args::Create {
        where_: DirOpArgs3 {
            dir: dir.clone(),
            name: name.into(),
        },
        how,
    };
    nfs_status(&c.call(xid, nfs3::PROGRAM, procs::CREATE, &a.to_bytes()))
}

pub fn fh_of_create(body: &[u8]) -> NfsFh3 {
    let mut r = XdrReader::new(body);
    assert!(r.bool().unwrap());
    NfsFh3(r.opaque(64).unwrap().to_vec())
}

/// LOOKUP of `name` in `dir`: (status, handle).
pub fn lookup(c: &mut Raw, dir: &NfsFh3, name: &str) -> (u32, Option<NfsFh3>) {
    let (st, body) = nfs_status(
        &c.call(
            40,
            nfs3::PROGRAM,
            procs::LOOKUP,
            &Args::Lookup(DirOpArgs3 {
                dir: dir.clone(),
                name: name.into(),
            })
            .to_bytes(),
        ),
    );
    let fh = (st == 0).then(|| NfsFh3(XdrReader::new(&body).opaque(64).unwrap().to_vec()));
    (st, fh)
}

/// GETATTR: its status.
pub fn getattr(c: &mut Raw, fh: &NfsFh3) -> u32 {
    nfs_status(&c.call(
        41,
        nfs3::PROGRAM,
        procs::GETATTR,
        &Args::GetAttr(fh.clone()).to_bytes(),
    ))
    .0
}

/// Sends signal `sig` (as `kill` spells it: `-STOP`, `-CONT`) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// A syntactically valid handle that names nothing (an unknown file id in export `export`).
pub fn unknown_handle(export: u32) -> NfsFh3 {
    ftnfs_core_handle(export, 0x00ff_ffff_ffff, 1)
}

fn ftnfs_core_handle(export: u32, file: u64, gen: u32) -> NfsFh3 {
    let mut v = vec![1u8, 0, 0, 0];
    v.extend_from_slice(&export.to_be_bytes());
    v.extend_from_slice(&file.to_be_bytes());
    v.extend_from_slice(&gen.to_be_bytes());
    NfsFh3(v)
}

/// Arguments for every NFSv3 procedure but NULL, aimed at `fh` (and names in it), in
/// procedure order: (procedure, encoded arguments).
pub fn every_procedure(fh: &NfsFh3) -> Vec<(u32, Vec<u8>)> {
    use ftnfs_wire::nfs3::{MknodData3, Sattr3, StableHow};
    let d = |n: &str| DirOpArgs3 {
        dir: fh.clone(),
        name: n.into(),
    };
    let v = [
        Args::GetAttr(fh.clone()),
        Args::SetAttr {
            obj: fh.clone(),
            attr: Sattr3 {
                mode: Some(0o600),
                ..Sattr3::default()
            },
            guard: None,
        },
        Args::Lookup(d("x")),
        Args::Access {
            obj: fh.clone(),
            access: 0x3f,
        },
        Args::ReadLink(fh.clone()),
        Args::Read {
            file: fh.clone(),
            offset: 0,
            count: 10,
        },
        Args::Write {
            file: fh.clone(),
            offset: 0,
            count: 1,
            stable: StableHow::FileSync,
            data: b"x".to_vec().into(),
        },
        Args::Create {
            where_: d("c"),
            how: CreateHow3::Unchecked(Sattr3::default()),
        },
        Args::Mkdir {
            where_: d("m"),
            attr: Sattr3::default(),
        },
        Args::Symlink {
            where_: d("s"),
            attr: Sattr3::default(),
            target: b"t".to_vec(),
        },
        Args::Mknod {
            where_: d("n"),
            what: MknodData3::Special {
                ftype: ftnfs_wire::nfs3::FType3::Fifo,
                attr: Sattr3::default(),
            },
        },
        Args::Remove(d("r")),
        Args::Rmdir(d("r")),
        Args::Rename {
            from: d("a"),
            to: d("b"),
        },
        Args::Link {
            file: fh.clone(),
            link: d("l"),
        },
        Args::ReadDir {
            dir: fh.clone(),
            cookie: 0,
            verf: [0; 8],
            count: 4096,
        },
        Args::ReadDirPlus {
            dir: fh.clone(),
            cookie: 0,
            verf: [0; 8],
            dircount: 4096,
            maxcount: 8192,
        },
        Args::FsStat(fh.clone()),
        Args::FsInfo(fh.clone()),
        Args::PathConf(fh.clone()),
        Args::Commit {
            file: fh.clone(),
            offset: 0,
            count: 0,
        },
    ];
    v.iter().map(|a| (a.proc_num(), a.to_bytes())).collect()
}

/// Checks that `body` (what follows a non-zero status) is exactly procedure `proc_`'s failure
/// body as RFC 1813 §3.3 writes it — attributes present or absent, nothing left over.
/// Written from the RFC, not from the server's procedure table, so the two check each other.
pub fn check_fail_body(proc_: u32, body: &[u8]) -> Result<(), String> {
    fn post_op(r: &mut XdrReader<'_>) -> Result<(), String> {
        if r.bool().map_err(|e| format!("post_op_attr: {e:?}"))? {
            r.fixed::<84>().map_err(|e| format!("fattr3: {e:?}"))?;
        }
        Ok(())
    }
    fn wcc(r: &mut XdrReader<'_>) -> Result<(), String> {
        if r.bool().map_err(|e| format!("pre_op_attr: {e:?}"))? {
            r.fixed::<24>().map_err(|e| format!("wcc_attr: {e:?}"))?;
        }
        post_op(r)
    }
    let mut r = XdrReader::new(body);
    match proc_ {
        procs::GETATTR => {}
        procs::LOOKUP
        | procs::ACCESS
        | procs::READLINK
        | procs::READ
        | procs::READDIR
        | procs::READDIRPLUS
        | procs::FSSTAT
        | procs::FSINFO
        | procs::PATHCONF => post_op(&mut r)?,
        procs::SETATTR
        | procs::WRITE
        | procs::CREATE
        | procs::MKDIR
        | procs::SYMLINK
        | procs::MKNOD
        | procs::REMOVE
        | procs::RMDIR
        | procs::COMMIT => wcc(&mut r)?,
        procs::RENAME => {
            wcc(&mut r)?;
            wcc(&mut r)?;
        }
        procs::LINK => {
            post_op(&mut r)?;
            wcc(&mut r)?;
        }
        p => return Err(format!("procedure {p} has no failure body")),
    }
    r.finish().map_err(|e| format!("{e:?}"))
}

/// A call of `prog` version `vers` as root; the body of its reply, which must be accepted.
pub fn rpc(c: &mut Raw, xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    c.send_raw(&call_record_vers(xid, 0, 0, prog, vers, proc_, args));
    let reply = c.recv().expect("reply");
    let mut r = XdrReader::new(&reply);
    let (_, h) = ReplyHeader::decode(&mut r).unwrap();
    assert_eq!(
        h,
        ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success)
    );
    r.rest().to_vec()
}

/// An NLM v4 call; (status, rest of the body after cookie and status).
pub fn nlm_call(c: &mut Raw, xid: u32, proc_: u32, args: &[u8]) -> (u32, Vec<u8>) {
    nlm_call_version(c, xid, ftnfs_wire::nlm::VERSION, proc_, args)
}

/// An NLM call of version `vers`; (status, rest of the body after cookie and status).
pub fn nlm_call_version(
    c: &mut Raw,
    xid: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> (u32, Vec<u8>) {
    let body = rpc(c, xid, ftnfs_wire::nlm::PROGRAM, vers, proc_, args);
    let mut r = XdrReader::new(&body);
    let _cookie = r.opaque(1024).unwrap();
    let st = r.u32().unwrap();
    (st, r.rest().to_vec())
}

pub fn alock(host: &str, fh: &NfsFh3, svid: i32, offset: u64, len: u64) -> ftnfs_wire::nlm::Lock {
    ftnfs_wire::nlm::Lock {
        caller_name: host.as_bytes().to_vec(),
        fh: fh.0.clone(),
        oh: format!("{host}-{svid}").into_bytes(),
        svid,
        offset,
        len,
    }
}

pub fn test_args(exclusive: bool, l: ftnfs_wire::nlm::Lock) -> Vec<u8> {
    let mut w = XdrWriter::new();
    ftnfs_wire::nlm::TestArgs {
        cookie: b"t".to_vec(),
        exclusive,
        alock: l,
    }
    .encode(&mut w);
    w.into_inner()
}

/// LOCK arguments (cookie "c", not a reclaim, NSM state 1), by the wire crate's encoder.
pub fn lock_args(block: bool, exclusive: bool, l: ftnfs_wire::nlm::Lock) -> Vec<u8> {
    let mut w = XdrWriter::new();
    ftnfs_wire::nlm::Args::Lock(ftnfs_wire::nlm::LockArgs {
        cookie: b"c".to_vec(),
        block,
        exclusive,
        alock: l,
        reclaim: false,
        state: 1,
    })
    .encode(&mut w);
    w.into_inner()
}

/// UNLOCK arguments (cookie "u").
pub fn unlock_args(l: ftnfs_wire::nlm::Lock) -> Vec<u8> {
    let mut w = XdrWriter::new();
    ftnfs_wire::nlm::UnlockArgs {
        cookie: b"u".to_vec(),
        alock: l,
    }
    .encode(&mut w);
    w.into_inner()
}

/// A client on another loopback address (another client host on this machine).
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> Raw {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&std::net::SocketAddr::from((src, 0)).into())
        .unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    Raw::over(sock.into())
}

/// A client host's portmapper and lock manager, on UDP at `addr`: the portmapper names the
/// lockd's port, the lockd answers GRANTED with `answer` (and any `_RES` call with a void
/// reply) and hands each call's procedure and arguments to the test.
pub fn client_host(
    addr: std::net::Ipv4Addr,
    answer: ftnfs_wire::nlm::Stat,
) -> std::sync::mpsc::Receiver<(u32, Vec<u8>)> {
    client_host_dropping(addr, answer, 0)
}

/// [`client_host`] whose lock manager answers nothing to the first `drop` calls (their
/// replies lost).
pub fn client_host_dropping(
    addr: std::net::Ipv4Addr,
    answer: ftnfs_wire::nlm::Stat,
    drop: u32,
) -> std::sync::mpsc::Receiver<(u32, Vec<u8>)> {
    client_host_speaking(addr, answer, drop, &[ftnfs_wire::nlm::VERSION])
}

/// [`client_host_dropping`] whose lock manager has NLM versions `versions` only (its
/// portmapper answers port 0 for any other); each call goes to the test as (procedure,
/// arguments) in the version it came in.
pub fn client_host_speaking(
    addr: std::net::Ipv4Addr,
    answer: ftnfs_wire::nlm::Stat,
    mut drop: u32,
    versions: &[u32],
) -> std::sync::mpsc::Receiver<(u32, Vec<u8>)> {
    let versions = versions.to_vec();
    let served = versions.clone();
    let pm = std::net::UdpSocket::bind((addr, 111))
        .unwrap_or_else(|e| panic!("a portmapper port on {addr} (root): {e}"));
    let lockd = std::net::UdpSocket::bind((addr, 0)).unwrap();
    let lport = lockd.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    let reply = |sock: &std::net::UdpSocket, to, xid: Xid, body: &[u8]| {
        let mut w = XdrWriter::new();
        ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success).encode(xid, &mut w);
        w.fixed(body);
        sock.send_to(w.as_slice(), to).unwrap();
    };
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = pm.recv_from(&mut b) {
            let mut r = XdrReader::new(&b[..n]);
            let Ok(h) = CallHeader::decode(&mut r) else {
                continue;
            };
            assert_eq!((h.prog, h.proc_), (100000, 3), "a portmapper GETPORT");
            let (prog, vers) = (r.u32().unwrap(), r.u32().unwrap());
            assert_eq!(prog, ftnfs_wire::nlm::PROGRAM);
            let port = if versions.contains(&vers) { lport } else { 0 };
            reply(&pm, from, h.xid, &(port as u32).to_be_bytes());
        }
    });
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok((n, from)) = lockd.recv_from(&mut b) {
            let mut r = XdrReader::new(&b[..n]);
            let Ok(h) = CallHeader::decode(&mut r) else {
                continue;
            };
            assert_eq!(h.prog, ftnfs_wire::nlm::PROGRAM);
            assert!(served.contains(&h.vers), "a call in version {}", h.vers);
            if drop > 0 {
                drop -= 1;
                continue;
            }
            let mut w = XdrWriter::new();
            if h.proc_ == ftnfs_wire::nlm::procs::GRANTED {
                let Ok(Some(ftnfs_wire::nlm::Args::Test(a))) =
                    ftnfs_wire::nlm::Args::decode_version(h.vers, h.proc_, r.rest())
                else {
                    panic!("GRANTED arguments")
                };
                w.opaque(&a.cookie).u32(answer as u32);
            }
            reply(&lockd, from, h.xid, w.as_slice());
            let _ = tx.send((h.proc_, r.rest().to_vec()));
        }
    });
    rx
}

/// Is `tool` on PATH? With `FTNFS_REQUIRE_TOOLS` set (CI) a missing tool fails the test.
#[allow(dead_code)]
pub fn have_tool(tool: &str) -> bool {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && std::env::var("FTNFS_REQUIRE_TOOLS").is_ok() {
        panic!("{tool} is required (FTNFS_REQUIRE_TOOLS is set)");
    }
    ok
}
