//! Helpers shared by the whole-daemon tests: a raw RPC client over TCP and small NFS calls.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use ftnfs_wire::nfs3::{self, procs, Args, CreateHow3, DirOpArgs3, NfsFh3};
use ftnfs_wire::record::{encode_record, RecordDecoder};
use ftnfs_wire::rpc::{flavor, AuthSys, CallHeader, OpaqueAuth, ReplyHeader, Xid, AUTH_NONE};
use ftnfs_wire::{mount, XdrEncode, XdrReader, XdrWriter};

/// Tests of one binary run one at a time: each picks free ports and starts daemons, and two
/// tests picking the same port at once would talk to each other's daemon.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the test lock for the rest of the test (a failed test does not poison it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            s,
            dec: RecordDecoder::new(4 << 20),
            buf: bytes::BytesMut::new(),
        }
    }
    pub fn send_raw(&mut self, rec: &[u8]) {
        self.s.write_all(&encode_record(rec)).unwrap();
    }
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(r) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(r);
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
        let cred = AuthSys {
            stamp: 0,
            machine_name: b"t".to_vec(),
            uid,
            gid,
            gids: vec![],
        }
        .to_bytes();
        let mut w = XdrWriter::new();
        CallHeader {
            xid: Xid(xid),
            rpcvers: 2,
            prog,
            vers: 3,
            proc_,
            cred: OpaqueAuth {
                flavor: flavor::SYS,
                body: &cred,
            },
            verf: AUTH_NONE,
        }
        .encode(&mut w);
        w.fixed(args);
        self.send_raw(w.as_slice());
        self.recv().expect("reply")
    }
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
