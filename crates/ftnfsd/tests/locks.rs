//! The NLM v4 service of a real daemon on loopback (issue 14), driven by raw calls: locks,
//! conflicts, a blocked lock granted by the GRANTED callback to the waiting client's lock
//! manager (a stand-in portmapper and lockd at the client's address, 127.0.0.7), the error
//! statuses, and versions 1 and 3 beside 4. The Linux kernel client's locking is
//! `tests/locks.sh`.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use ftnfs_wire::nfs3::{CreateHow3, NfsFh3, Sattr3};
use ftnfs_wire::nlm::{self, Args, Stat};
use ftnfs_wire::nsm;
use ftnfs_wire::rpc::{AcceptStat, ReplyHeader};
use ftnfs_wire::{XdrEncode, XdrReader, XdrWriter};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16) -> Daemon {
    std::fs::create_dir_all(dir.join("export")).unwrap();
    std::fs::write(
        dir.join("exports"),
        format!(
            "{} *(rw,insecure,no_root_squash)\n",
            dir.join("export").display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ftnfsd"))
        .arg("--exports")
        .arg(dir.join("exports"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--admin-socket")
        .arg(dir.join("admin.sock"))
        .arg("--no-portmap")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    Daemon(child)
}

/// A daemon serving `export` in a fresh directory, a client (127.0.0.1) that mounted it,
/// and a file `f` it made there. Bind `_daemon` by name when destructuring: it is killed
/// when dropped.
struct Fixture {
    dir: tempfile::TempDir,
    _daemon: Daemon,
    port: u16,
    a: Raw,
    root: NfsFh3,
    f: NfsFh3,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = start(dir.path(), port);
    let mut a = Raw::connect(port);
    let root = mount_root(&mut a, &dir.path().join("export"));
    let (st, body) = create(
        &mut a,
        2,
        &root,
        "f",
        CreateHow3::Guarded(Sattr3::default()),
    );
    assert_eq!(st, 0);
    let f = fh_of_create(&body);
    Fixture {
        dir,
        _daemon: daemon,
        port,
        a,
        root,
        f,
    }
}

fn locks_status(dir: &Path) -> serde_json::Value {
    admin_call(&dir.join("admin.sock"), "{\"cmd\":\"status\"}")["status"]["locks"].clone()
}

#[test]
fn a_blocked_lock_is_granted_by_callback_when_the_holder_unlocks() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port,
        mut a,
        root: _,
        f,
    } = fixture();
    let b_host = Ipv4Addr::new(127, 0, 0, 7);
    let granted = client_host(b_host, Stat::Granted);
    let mut b = connect_from(b_host, port);

    // a holds bytes 0–9 exclusively
    let (st, _) = nlm_call(
        &mut a,
        10,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, 0, 10)),
    );
    assert_eq!(st, Stat::Granted as u32);
    // b sees it, is denied without waiting, and blocks when it waits
    let (st, holder) = nlm_call(
        &mut b,
        11,
        nlm::procs::TEST,
        &test_args(true, alock("b", &f, 2, 5, 1)),
    );
    assert_eq!(st, Stat::Denied as u32);
    let mut r = XdrReader::new(&holder);
    assert!(r.bool().unwrap(), "exclusive");
    assert_eq!(r.i32().unwrap(), 1, "a's svid");
    let (st, _) = nlm_call(
        &mut b,
        12,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("b", &f, 2, 5, 1)),
    );
    assert_eq!(st, Stat::Denied as u32);
    let (st, _) = nlm_call(
        &mut b,
        13,
        nlm::procs::LOCK,
        &lock_args(true, true, alock("b", &f, 2, 5, 1)),
    );
    assert_eq!(st, Stat::Blocked as u32);
    // a retransmission does not queue it twice; shared locks of others elsewhere are fine
    let (st, _) = nlm_call(
        &mut b,
        13,
        nlm::procs::LOCK,
        &lock_args(true, true, alock("b", &f, 2, 5, 1)),
    );
    assert_eq!(st, Stat::Blocked as u32);
    let (st, _) = nlm_call(
        &mut b,
        14,
        nlm::procs::LOCK,
        &lock_args(false, false, alock("b", &f, 3, 20, 0)),
    );
    assert_eq!(st, Stat::Granted as u32, "a shared lock from 20 to the end");
    assert_eq!(locks_status(t.path())["waiting"], 1);
    assert!(granted.try_recv().is_err(), "nothing granted yet");

    // a lets go: b's lock is granted, and b is told by callback
    let (st, _) = nlm_call(
        &mut a,
        15,
        nlm::procs::UNLOCK,
        &unlock_args(alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (p, cb) = granted
        .recv_timeout(PATIENCE)
        .expect("a GRANTED callback to b");
    assert_eq!(p, nlm::procs::GRANTED);
    let Ok(Some(Args::Test(cb))) = Args::decode(p, &cb) else {
        panic!("GRANTED arguments")
    };
    assert_eq!(cb.alock, alock("b", &f, 2, 5, 1));
    assert!(cb.exclusive);
    let (st, holder) = nlm_call(
        &mut a,
        16,
        nlm::procs::TEST,
        &test_args(false, alock("a", &f, 1, 0, 10)),
    );
    assert_eq!(st, Stat::Denied as u32, "b holds byte 5 now");
    let mut r = XdrReader::new(&holder);
    let _ = r.bool().unwrap();
    assert_eq!(r.i32().unwrap(), 2, "b's svid");
    let s = locks_status(t.path());
    assert_eq!(
        (s["held"].as_u64(), s["waiting"].as_u64()),
        (Some(2), Some(0))
    );
    // per client and per export in status
    let per_client = |c: &str| {
        s["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["client"] == c)
            .map(|x| (x["held"].as_u64(), x["waiting"].as_u64()))
    };
    assert_eq!(per_client("b"), Some((Some(2), Some(0))), "{s}");
    assert_eq!(per_client("a"), None, "{s}");
    assert_eq!(s["exports"][0]["held"], 2, "{s}");
    // what `ftnfsctl locks` shows
    let l = admin_call(&t.path().join("admin.sock"), "{\"cmd\":\"locks\"}")["locks"].clone();
    let held = l["held"].as_array().unwrap();
    let mine = held
        .iter()
        .find(|r| r["client"] == "b" && r["svid"] == 2)
        .unwrap_or_else(|| panic!("b's lock in {l}"));
    assert_eq!(
        (&mine["exclusive"], &mine["start"], &mine["end"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(5),
            &serde_json::json!(5)
        )
    );
    assert!(held
        .iter()
        .any(|r| r["client"] == "b" && r["svid"] == 3 && r["end"].is_null()));

    // b's host rebooted (its FREE_ALL): everything of b goes
    rpc(
        &mut a,
        17,
        nlm::PROGRAM,
        nlm::VERSION,
        nlm::procs::FREE_ALL,
        &{
            let mut w = XdrWriter::new();
            w.opaque(b"b").i32(2);
            w.into_inner()
        },
    );
    let s = locks_status(t.path());
    assert_eq!(
        (s["held"].as_u64(), s["waiting"].as_u64()),
        (Some(0), Some(0))
    );
}

/// NLM versions 1 and 3 (NFSv2's, 32-bit ranges) share the table with version 4: a
/// version 3 client is denied by a version 4 holder and sees it in its own form, blocks,
/// and is called back in version 3 (its host has no version 4); a range past 4 GiB reaches
/// it as "from the largest offset to the end"; a status version 3 does not have comes as
/// one it has; NLM has no version 2.
#[test]
fn versions_1_and_3_share_the_table_with_version_4() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port,
        mut a,
        root: _,
        f,
    } = fixture();
    let b_host = Ipv4Addr::new(127, 0, 0, 12);
    let called = client_host_speaking(b_host, Stat::Granted, 0, &[1, 3]);
    let mut b = connect_from(b_host, port);
    // a lock of version 1/3: 32-bit offset and length
    let v3_lock = |w: &mut XdrWriter, svid: i32, offset: u32, len: u32| {
        let l = alock("b", &f, svid, 0, 0);
        w.opaque(&l.caller_name)
            .opaque(&l.fh)
            .opaque(&l.oh)
            .i32(svid)
            .u32(offset)
            .u32(len);
    };
    let v3_test = |svid, offset, len| {
        let mut w = XdrWriter::new();
        w.opaque(b"t").bool(true);
        v3_lock(&mut w, svid, offset, len);
        w.into_inner()
    };
    let v3_lock_args = |block: bool, svid, offset, len| {
        let mut w = XdrWriter::new();
        w.opaque(b"c").bool(block).bool(true);
        v3_lock(&mut w, svid, offset, len);
        w.bool(false).i32(1);
        w.into_inner()
    };

    let (st, _) = nlm_call(
        &mut a,
        10,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, 0, 10)),
    );
    assert_eq!(st, Stat::Granted as u32);
    for (xid, vers) in [(11, 1), (12, 3)] {
        let (st, holder) = nlm_call_version(&mut b, xid, vers, nlm::procs::TEST, &v3_test(2, 5, 1));
        assert_eq!(st, Stat::Denied as u32);
        // nlm_holder of version 1/3: exclusive, svid, oh, 32-bit offset and length
        let mut r = XdrReader::new(&holder);
        assert!(r.bool().unwrap());
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.opaque(1024).unwrap(), b"a-1");
        assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (0, 10));
        r.finish().expect("a 32-bit holder, nothing after it");
    }
    let (st, _) = nlm_call_version(
        &mut b,
        13,
        3,
        nlm::procs::LOCK,
        &v3_lock_args(true, 2, 5, 1),
    );
    assert_eq!(st, Stat::Blocked as u32);
    assert!(called.try_recv().is_err(), "nothing granted yet");

    // a lets go: b is told in version 3, the lock as it asked
    let (st, _) = nlm_call(
        &mut a,
        14,
        nlm::procs::UNLOCK,
        &unlock_args(alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (p, cb) = called
        .recv_timeout(PATIENCE)
        .expect("a version 3 GRANTED to b");
    assert_eq!(p, nlm::procs::GRANTED);
    let Ok(Some(Args::Test(cb))) = Args::decode_version(3, p, &cb) else {
        panic!("version 3 GRANTED arguments")
    };
    assert_eq!((cb.alock.svid, cb.alock.offset, cb.alock.len), (2, 5, 1));
    // and version 4 sees b's lock as any other
    let (st, holder) = nlm_call(
        &mut a,
        15,
        nlm::procs::TEST,
        &test_args(true, alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Denied as u32);
    let mut r = XdrReader::new(&holder);
    let _ = (r.bool().unwrap(), r.i32().unwrap(), r.opaque(1024).unwrap());
    assert_eq!((r.u64().unwrap(), r.u64().unwrap()), (5, 1));

    // a lock past 4 GiB, as version 3 sees it: from the largest offset to the end
    let (st, _) = nlm_call(
        &mut a,
        16,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, 1 << 40, 5)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (st, holder) = nlm_call_version(&mut b, 17, 3, nlm::procs::TEST, &v3_test(3, 100, 0));
    assert_eq!(st, Stat::Denied as u32);
    let mut r = XdrReader::new(&holder);
    let _ = (r.bool().unwrap(), r.i32().unwrap(), r.opaque(1024).unwrap());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (u32::MAX, 0));

    // a stale handle: NLM4_STALE_FH is no version 3 status; "no locks" is
    let mut w = XdrWriter::new();
    w.opaque(b"t").bool(true);
    w.opaque(b"b")
        .opaque(&[0xee; 8])
        .opaque(b"o")
        .i32(4)
        .u32(0)
        .u32(1);
    let (st, _) = nlm_call_version(&mut b, 18, 3, nlm::procs::TEST, w.as_slice());
    assert_eq!(st, Stat::DeniedNoLocks as u32);
    // version 1 has no SHARE; there is no version 2
    let refused = |c: &mut Raw, xid, vers, proc_| {
        c.send_raw(&call_record_vers(xid, 0, 0, nlm::PROGRAM, vers, proc_, &[]));
        let reply = c.recv().expect("reply");
        ReplyHeader::decode(&mut XdrReader::new(&reply)).unwrap().1
    };
    assert_eq!(
        refused(&mut b, 19, 1, nlm::procs::SHARE),
        ReplyHeader::Accepted(AcceptStat::ProcUnavail)
    );
    assert_eq!(
        refused(&mut b, 20, 2, nlm::procs::NULL),
        ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 1, high: 4 })
    );
    assert_eq!(locks_status(t.path())["held"], 2);
}

/// Our status monitor serves a local lock manager as rpc.statd does: SM_STAT gives the
/// state number (odd: up); SM_MON asks to watch a host, and that host's SM_NOTIFY (from its
/// own monitor, another host) reaches the lock manager — a stand-in lockd on 127.0.0.13 —
/// as its callback, with the 16 bytes it gave.
#[test]
fn a_local_lock_manager_is_called_back_when_a_watched_host_restarts() {
    let _serial = serial();
    let Fixture {
        dir: _t,
        _daemon,
        port,
        a: _,
        root: _,
        f: _,
    } = fixture();
    let lm_host = Ipv4Addr::new(127, 0, 0, 13);
    let called = client_host_speaking(lm_host, Stat::Granted, 0, &[3]);
    let mut lm = connect_from(lm_host, port);
    let mut w = XdrWriter::new();
    w.opaque(b"anyone");
    let body = rpc(
        &mut lm,
        1,
        nsm::PROGRAM,
        nsm::VERSION,
        nsm::procs::STAT,
        w.as_slice(),
    );
    let mut r = XdrReader::new(&body);
    assert_eq!(r.u32().unwrap(), nsm::STAT_SUCC);
    let state = r.i32().unwrap();
    assert_eq!(state % 2, 1, "up: an odd state number");
    let m = nsm::Mon {
        mon_id: nsm::MonId {
            mon_name: b"client9".to_vec(),
            my_id: nsm::MyId {
                my_name: b"localhost".to_vec(),
                my_prog: nlm::PROGRAM,
                my_vers: 3,
                my_proc: 16,
            },
        },
        priv_: [42; 16],
    };
    let body = rpc(
        &mut lm,
        2,
        nsm::PROGRAM,
        nsm::VERSION,
        nsm::procs::MON,
        &m.to_bytes(),
    );
    let ok = nsm::StatRes {
        res_stat: nsm::STAT_SUCC,
        state,
    };
    assert_eq!(body, ok.to_bytes());
    // client9 restarted: its monitor tells us
    let mut c9 = connect_from(Ipv4Addr::new(127, 0, 0, 14), port);
    let notify = nsm::StatChange {
        mon_name: b"client9".to_vec(),
        state: 7,
    };
    rpc(
        &mut c9,
        3,
        nsm::PROGRAM,
        nsm::VERSION,
        nsm::procs::NOTIFY,
        &notify.to_bytes(),
    );
    let (p, args) = called
        .recv_timeout(PATIENCE)
        .expect("the lock manager's callback");
    assert_eq!(p, 16);
    assert_eq!(
        nsm::Status::decode(&args).unwrap(),
        nsm::Status {
            mon_name: b"client9".to_vec(),
            state: 7,
            priv_: [42; 16],
        }
    );
}

/// A client host that died for good (NLM has no lease) holds its locks until the operator
/// frees them (`ftnfsctl unlock --client`); its waiter is then granted.
#[test]
fn the_operator_frees_the_locks_of_a_client_that_died() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port: _,
        mut a,
        root: _,
        f,
    } = fixture();
    let (st, _) = nlm_call(
        &mut a,
        10,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("ghost", &f, 1, 0, 10)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (st, _) = nlm_call(
        &mut a,
        11,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("ghost", &f, 2, 100, 10)),
    );
    assert_eq!(st, Stat::Granted as u32, "another process of it, elsewhere");
    let (st, _) = nlm_call(
        &mut a,
        12,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("alive", &f, 3, 0, 1)),
    );
    assert_eq!(st, Stat::Denied as u32);
    let sock = t.path().join("admin.sock");
    let r = admin_call(&sock, "{\"cmd\":\"unlock\",\"client\":\"ghost\"}");
    assert_eq!(
        (r["ok"].as_bool(), r["freed"].as_u64()),
        (Some(true), Some(2)),
        "{r}"
    );
    assert_eq!(r["not_primary"], serde_json::json!([]));
    let (st, _) = nlm_call(
        &mut a,
        13,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("alive", &f, 3, 0, 1)),
    );
    assert_eq!(
        st,
        Stat::Granted as u32,
        "free once the dead host's locks went"
    );
    let r = admin_call(&sock, "{\"cmd\":\"unlock\"}");
    assert_eq!(r["ok"], false, "a client must be named: {r}");
}

/// A client that answers a GRANTED callback with "denied" no longer waits: the lock it got
/// is released, and the next waiter gets it. But a refusal that answers a *resent*
/// GRANTED leaves the lock held: the client may have taken the first one, whose answer was
/// lost, and holds the lock now. And the error statuses: a stale handle, a
/// range past the largest offset.
#[test]
fn a_refused_callback_releases_the_lock_and_bad_calls_get_their_status() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port,
        mut a,
        root: _,
        f,
    } = fixture();
    let gone_host = Ipv4Addr::new(127, 0, 0, 8);
    let told = client_host(gone_host, Stat::Denied);
    let mut g = connect_from(gone_host, port);
    let (st, _) = nlm_call(
        &mut a,
        10,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (st, _) = nlm_call(
        &mut g,
        11,
        nlm::procs::LOCK,
        &lock_args(true, false, alock("g", &f, 4, 0, 0)),
    );
    assert_eq!(st, Stat::Blocked as u32);
    let (st, _) = nlm_call(
        &mut a,
        12,
        nlm::procs::UNLOCK,
        &unlock_args(alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32);
    told.recv_timeout(PATIENCE).expect("the callback");
    let free = || {
        let s = locks_status(t.path());
        (s["held"].as_u64(), s["waiting"].as_u64()) == (Some(0), Some(0))
    };
    let start = std::time::Instant::now();
    while !free() {
        assert!(
            start.elapsed() < PATIENCE,
            "the refused lock was never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, _) = nlm_call(
        &mut a,
        13,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32, "free again");

    // the asynchronous form: LOCK_MSG gets a void reply, and its result comes to g's lock
    // manager as a LOCK_RES call (denied: a holds it)
    let reply = rpc(
        &mut g,
        19,
        nlm::PROGRAM,
        nlm::VERSION,
        nlm::procs::LOCK_MSG,
        &lock_args(false, true, alock("g", &f, 4, 0, 0)),
    );
    assert!(reply.is_empty(), "a void reply");
    let (p, res) = told.recv_timeout(PATIENCE).expect("the LOCK_RES call");
    assert_eq!(p, nlm::procs::LOCK_RES);
    let Ok(Some(Args::Res(res))) = Args::decode(p, &res) else {
        panic!("LOCK_RES arguments")
    };
    assert_eq!(res.stat, Stat::Denied);

    // DOS share reservations: g reads and denies writers; a cannot then open for writing
    let share = |host: &str, access: u32, mode: u32| {
        let mut w = XdrWriter::new();
        w.opaque(b"s")
            .opaque(host.as_bytes())
            .opaque(&f.0)
            .opaque(host.as_bytes())
            .u32(mode)
            .u32(access)
            .bool(false);
        w.into_inner()
    };
    let (st, _) = nlm_call(&mut g, 20, nlm::procs::SHARE, &share("g", 1, 2));
    assert_eq!(st, Stat::Granted as u32);
    let (st, _) = nlm_call(&mut a, 21, nlm::procs::SHARE, &share("a", 2, 0));
    assert_eq!(st, Stat::Denied as u32, "a would write what g denies");
    let (st, _) = nlm_call(&mut a, 22, nlm::procs::SHARE, &share("a", 1, 0));
    assert_eq!(st, Stat::Granted as u32, "reading is fine");
    let (st, _) = nlm_call(&mut g, 23, nlm::procs::UNSHARE, &share("g", 1, 2));
    assert_eq!(st, Stat::Granted as u32);
    let (st, _) = nlm_call(&mut a, 24, nlm::procs::SHARE, &share("a", 3, 0));
    assert_eq!(st, Stat::Granted as u32, "g's reservation went");

    let mut stale = f.clone();
    let n = stale.0.len();
    stale.0[n - 5] ^= 0x55; // another file id
    let (st, _) = nlm_call(
        &mut a,
        14,
        nlm::procs::TEST,
        &test_args(true, alock("a", &stale, 1, 0, 0)),
    );
    assert_eq!(st, Stat::StaleFh as u32);
    let (st, _) = nlm_call(
        &mut a,
        15,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("a", &f, 1, u64::MAX, 2)),
    );
    assert_eq!(st, Stat::Fbig as u32);
}

/// A client whose host restarted has its status monitor send SM_NOTIFY (NSM): every lock
/// of that host is freed — the next client's lock, non-blocking, is granted.
#[test]
fn a_restarted_clients_notify_frees_its_locks() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port: _,
        mut a,
        root,
        f,
    } = fixture();
    for (xid, svid) in [(10, 1), (11, 2)] {
        let (st, _) = nlm_call(
            &mut a,
            xid,
            nlm::procs::LOCK,
            &lock_args(false, false, alock("gone", &f, svid, 0, 0)),
        );
        assert_eq!(st, Stat::Granted as u32);
    }
    let (st, _) = nlm_call(
        &mut a,
        12,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("other", &f, 1, 0, 1)),
    );
    assert_eq!(st, Stat::Denied as u32);
    // SM_NOTIFY { mon_name "gone", state 3 }: a void reply
    let mut w = XdrWriter::new();
    ftnfs_wire::nsm::StatChange {
        mon_name: b"gone".to_vec(),
        state: 3,
    }
    .encode(&mut w);
    let reply = rpc(
        &mut a,
        13,
        ftnfs_wire::nsm::PROGRAM,
        ftnfs_wire::nsm::VERSION,
        ftnfs_wire::nsm::procs::NOTIFY,
        w.as_slice(),
    );
    assert!(reply.is_empty(), "a void reply");
    assert_eq!(locks_status(t.path())["held"], 0);
    let (st, _) = nlm_call(
        &mut a,
        14,
        nlm::procs::LOCK,
        &lock_args(false, true, alock("other", &f, 1, 0, 1)),
    );
    assert_eq!(st, Stat::Granted as u32, "free after the notify");
    // the file goes: its locks go with it (listing purges; a sweep does it every minute)
    let (st, _) = nfs_status(
        &a.call(
            15,
            ftnfs_wire::nfs3::PROGRAM,
            ftnfs_wire::nfs3::procs::REMOVE,
            &ftnfs_wire::nfs3::Args::Remove(ftnfs_wire::nfs3::DirOpArgs3 {
                dir: root.clone(),
                name: b"f".to_vec(),
            })
            .to_bytes(),
        ),
    );
    assert_eq!(st, 0);
    let l = admin_call(&t.path().join("admin.sock"), "{\"cmd\":\"locks\"}")["locks"].clone();
    assert_eq!(l["held"], serde_json::json!([]), "{l}");
    assert_eq!(locks_status(t.path())["held"], 0);
}

/// A GRANTED whose first answer was lost and whose resend is refused leaves the lock with the
/// client: the refusal may only mean "I no longer wait — I took the first one".
#[test]
fn a_refusal_of_a_resent_callback_leaves_the_lock_held() {
    let _serial = serial();
    let Fixture {
        dir: t,
        _daemon,
        port,
        mut a,
        root: _,
        f,
    } = fixture();
    let host = Ipv4Addr::new(127, 0, 0, 10);
    let told = client_host_dropping(host, Stat::Denied, 1);
    let mut g = connect_from(host, port);
    let lock = |c: &mut Raw, xid, who: &str, svid, block| {
        nlm_call(
            c,
            xid,
            nlm::procs::LOCK,
            &lock_args(block, true, alock(who, &f, svid, 0, 0)),
        )
        .0
    };
    assert_eq!(lock(&mut a, 10, "a", 1, false), Stat::Granted as u32);
    assert_eq!(lock(&mut g, 11, "g", 4, true), Stat::Blocked as u32);
    let (st, _) = nlm_call(
        &mut a,
        12,
        nlm::procs::UNLOCK,
        &unlock_args(alock("a", &f, 1, 0, 0)),
    );
    assert_eq!(st, Stat::Granted as u32);
    let (p, _) = told.recv_timeout(PATIENCE).expect("the resent callback");
    assert_eq!(p, nlm::procs::GRANTED);
    // a wrong release would follow the refusal at once; give it a moment to show
    std::thread::sleep(Duration::from_millis(500));
    let s = locks_status(t.path());
    assert_eq!(
        (s["held"].as_u64(), s["waiting"].as_u64()),
        (Some(1), Some(0)),
        "g keeps the lock"
    );
    assert_eq!(lock(&mut a, 13, "a", 1, false), Stat::Denied as u32);
}
