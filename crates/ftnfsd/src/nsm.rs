//! NSM (program 100024, issue 14), both ways:
//! - served: a client whose host restarted has its status monitor send SM_NOTIFY to every
//!   server it held locks with, and every lock and wait of that host is dropped here
//!   (`Server::free_host`). Served on the NFS port and registered there.
//! - served to local lock managers, as `rpc.statd` serves them: SM_STAT (our state number),
//!   SM_MON / SM_UNMON / SM_UNMON_ALL (watch a host: when its SM_NOTIFY comes, the caller's
//!   procedure is called back with its name, new state and the caller's 16 bytes,
//!   [`Watches`]). Only from this host (a loopback address), as statd refuses others; the
//!   callback goes to the address that asked. Our own NLM needs none of it (it monitors
//!   its lock holders itself, `monitor.rs`). SIMU_CRASH: PROC_UNAVAIL.
//! - sent ([`notify_hosts`]): after a start that lost the lock tables (`recovery.rs`), every
//!   monitored client host (`monitor.rs`) is told that we restarted, so that it reclaims.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;

use std::net::SocketAddr;
use std::sync::Mutex;

use ftnfs_wire::nsm::{procs, Mon, MonId, MyId, StatChange, StatRes, Status, STAT_FAIL, STAT_SUCC};
use ftnfs_wire::rpc::{AcceptStat, ReplyHeader, Xid};
use ftnfs_wire::xdr::{XdrEncode, XdrWriter};

/// Hosts told at once.
const NOTIFY_PARALLEL: usize = 16;

/// Sends SM_NOTIFY (this member restarted, now in `state`) to the status monitor of each of
/// `hosts`, a few tries each (`nlm::CALLBACK_TRIES`, 1 s apart), [`NOTIFY_PARALLEL`] hosts
/// at a time; blocks until all were tried. `vip`: the group's virtual IP — the address
/// clients locked through, so the name we give (a client's monitor matches the name or the
/// sender against the server it monitors) and the address we send from while we hold it.
/// Without one, the address the kernel picks towards each client, which is the one it
/// mounted unless routes are asymmetric. How many hosts answered.
pub fn notify_hosts(
    hosts: Vec<(IpAddr, String)>,
    state: u32,
    vip: Option<Arc<crate::vip::Vip>>,
) -> usize {
    let mut told = 0;
    for chunk in hosts.chunks(NOTIFY_PARALLEL) {
        let threads: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(addr, name)| {
                let vip = vip.clone();
                std::thread::spawn(move || {
                    let from = crate::nlm::from_address(&vip);
                    let mon_name = match &vip {
                        Some(v) => v.addr.to_string(),
                        None => UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
                            .and_then(|s| s.connect((addr, 111)).map(|()| s))
                            .and_then(|s| s.local_addr())
                            .map(|a| a.ip().to_string())
                            .unwrap_or_default(),
                    };
                    let mut w = XdrWriter::new();
                    StatChange {
                        mon_name: mon_name.clone().into_bytes(),
                        state: state as i32,
                    }
                    .encode(&mut w);
                    let call = (ftnfs_wire::nsm::PROGRAM, ftnfs_wire::nsm::VERSION, procs::NOTIFY);
                    match crate::nlm::call_program(from, addr, call, w.as_slice()) {
                        Ok(_) => {
                            tracing::info!(client = %addr, name, mon_name, state, "SM_NOTIFY sent: the client reclaims its locks");
                            true
                        }
                        Err(e) => {
                            tracing::warn!(client = %addr, name, error = %e, "SM_NOTIFY not delivered: the client does not know to reclaim");
                            false
                        }
                    }
                })
            })
            .collect();
        told += threads
            .into_iter()
            .map(|t| t.join())
            .filter(|r| matches!(r, Ok(true)))
            .count();
    }
    told
}

/// Most hosts local lock managers may ask us to watch at once (SM_MON).
pub const MAX_WATCHES: usize = 1024;

/// One SM_MON: a host, and whom to call back when it restarts.
#[derive(Debug, Clone)]
struct Watch {
    mon_name: Vec<u8>,
    /// The address the SM_MON came from (a loopback address): where the callback goes.
    caller: IpAddr,
    my_id: MyId,
    priv_: [u8; 16],
}

/// What local lock managers asked us to watch (SM_MON), bounded at [`MAX_WATCHES`]. In
/// memory: a lock manager registers again after its monitor restarted (statd's own state
/// number tells it).
#[derive(Default)]
pub struct Watches {
    watches: Mutex<Vec<Watch>>,
}

impl Watches {
    fn locked(&self) -> std::sync::MutexGuard<'_, Vec<Watch>> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches `m` for `caller`; false when [`MAX_WATCHES`] are kept already. The same host
    /// and caller again only renews its bytes.
    fn add(&self, m: Mon, caller: IpAddr) -> bool {
        let mut w = self.locked();
        let same = |x: &Watch| x.mon_name == m.mon_id.mon_name && x.my_id == m.mon_id.my_id;
        if let Some(x) = w.iter_mut().find(|x| same(x)) {
            x.priv_ = m.priv_;
            x.caller = caller;
            return true;
        }
        if w.len() >= MAX_WATCHES {
            return false;
        }
        w.push(Watch {
            mon_name: m.mon_id.mon_name,
            caller,
            my_id: m.mon_id.my_id,
            priv_: m.priv_,
        });
        true
    }

    fn remove(&self, keep: impl Fn(&Watch) -> bool) {
        self.locked().retain(keep);
    }

    /// The watches a restart of `name` (notified from `from`) concerns: by name (case does
    /// not count, as in host names) or by address.
    fn of(&self, name: &[u8], from: IpAddr) -> Vec<Watch> {
        self.locked()
            .iter()
            .filter(|w| {
                w.mon_name.eq_ignore_ascii_case(name)
                    || std::str::from_utf8(&w.mon_name)
                        .ok()
                        .and_then(|n| n.parse::<IpAddr>().ok())
                        == Some(from)
            })
            .cloned()
            .collect()
    }
}

/// What an NSM call needs of the server: who called, our state number, the watches, and
/// how to drop a restarted host's locks (how many went).
pub struct Context<'a, F: Fn(&str) -> usize> {
    /// The caller.
    pub peer: SocketAddr,
    /// This run's state number (`monitor.rs`).
    pub state: u32,
    /// What local lock managers asked us to watch.
    pub watches: &'a Watches,
    /// Drops every lock and wait of a host.
    pub free_host: F,
}

/// What an NSM procedure answers.
enum Answer {
    /// Nothing (NULL, SM_NOTIFY).
    Void,
    /// `sm_stat_res` (SM_STAT, SM_MON).
    StatRes(StatRes),
    /// `sm_stat`: our state number alone (SM_UNMON, SM_UNMON_ALL).
    State(i32),
}

/// Answers one NSM v1 call.
pub fn handle<F: Fn(&str) -> usize>(
    xid: Xid,
    proc_: u32,
    args: &[u8],
    cx: &Context<'_, F>,
) -> Vec<u8> {
    let mut w = XdrWriter::new();
    match answer(proc_, args, cx) {
        Ok(a) => {
            ReplyHeader::Accepted(AcceptStat::Success).encode(xid, &mut w);
            match a {
                Answer::Void => {}
                Answer::StatRes(r) => r.encode(&mut w),
                Answer::State(s) => {
                    w.i32(s);
                }
            }
        }
        Err(stat) => ReplyHeader::Accepted(stat).encode(xid, &mut w),
    }
    w.into_inner()
}

fn answer<F: Fn(&str) -> usize>(
    proc_: u32,
    args: &[u8],
    cx: &Context<'_, F>,
) -> Result<Answer, AcceptStat> {
    let garbage = |_| AcceptStat::GarbageArgs;
    // SM_MON, SM_UNMON, SM_UNMON_ALL: from this host only (a lock manager on it), as statd
    let local = ftnfs_core::exports::client_of(cx.peer).ip().is_loopback();
    let state = cx.state as i32;
    let ok = Answer::StatRes(StatRes {
        res_stat: STAT_SUCC,
        state,
    });
    // statd's answer to what it will not do: STAT_FAIL, the state undefined
    let fail = Answer::StatRes(StatRes {
        res_stat: STAT_FAIL,
        state: -1,
    });
    Ok(match proc_ {
        procs::NULL => Answer::Void,
        procs::STAT => {
            ftnfs_wire::nsm::decode_sm_name(args).map_err(garbage)?;
            ok
        }
        procs::MON => {
            let m = Mon::decode(args).map_err(garbage)?;
            let host = String::from_utf8_lossy(&m.mon_id.mon_name).into_owned();
            if !local {
                tracing::warn!(caller = %cx.peer, host, "SM_MON from another host refused");
                fail
            } else if cx.watches.add(m, cx.peer.ip()) {
                tracing::info!(host, "SM_MON: watched for a local lock manager");
                ok
            } else {
                tracing::warn!(host, "SM_MON refused: {MAX_WATCHES} hosts are watched");
                fail
            }
        }
        procs::UNMON => {
            let m = MonId::decode_unmon(args).map_err(garbage)?;
            if local {
                cx.watches
                    .remove(|w| !(w.mon_name == m.mon_name && w.my_id == m.my_id));
            }
            Answer::State(state)
        }
        procs::UNMON_ALL => {
            let id = MyId::decode_all(args).map_err(garbage)?;
            if local {
                cx.watches.remove(|w| w.my_id != id);
            }
            Answer::State(state)
        }
        procs::NOTIFY => {
            let s = StatChange::decode(args).map_err(garbage)?;
            let host = String::from_utf8_lossy(&s.mon_name).into_owned();
            let freed = (cx.free_host)(&host);
            tracing::info!(
                client = host,
                state = s.state,
                freed,
                "SM_NOTIFY: the client's host restarted; its locks are freed"
            );
            call_back(cx.watches.of(&s.mon_name, cx.peer.ip()), s.state);
            Answer::Void
        }
        _ => return Err(AcceptStat::ProcUnavail),
    })
}

/// Tells each watching lock manager that its host restarted (on a thread of its own: each
/// call may take its tries, and the SM_NOTIFY is answered at once).
fn call_back(watches: Vec<Watch>, state: i32) {
    if watches.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ftnfs-sm-callback".into())
        .spawn(move || {
            for w in watches {
                let args = Status {
                    mon_name: w.mon_name.clone(),
                    state,
                    priv_: w.priv_,
                }
                .to_bytes();
                let call = (w.my_id.my_prog, w.my_id.my_vers, w.my_id.my_proc);
                let host = String::from_utf8_lossy(&w.mon_name).into_owned();
                match crate::nlm::call_program(w.caller, w.caller, call, &args) {
                    Ok(_) => tracing::info!(host, "SM callback: the local lock manager was told"),
                    Err(e) => {
                        tracing::warn!(host, error = %e, "SM callback not delivered")
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "SM callbacks not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftnfs_wire::xdr::XdrReader;

    fn mon(name: &str, proc_: u32) -> Mon {
        Mon {
            mon_id: MonId {
                mon_name: name.as_bytes().to_vec(),
                my_id: MyId {
                    my_name: b"localhost".to_vec(),
                    my_prog: 100021,
                    my_vers: 3,
                    my_proc: proc_,
                },
            },
            priv_: [7; 16],
        }
    }

    /// (accept status, the body's words)
    fn call(
        cx: &Context<'_, impl Fn(&str) -> usize>,
        proc_: u32,
        args: &[u8],
    ) -> (AcceptStat, Vec<i32>) {
        let reply = handle(Xid(1), proc_, args, cx);
        let mut r = XdrReader::new(&reply);
        let (_, h) = ReplyHeader::decode(&mut r).unwrap();
        let ReplyHeader::Accepted(stat) = h else {
            panic!("{h:?}")
        };
        let mut words = Vec::new();
        while let Ok(v) = r.i32() {
            words.push(v);
        }
        (stat, words)
    }

    #[test]
    fn only_this_host_may_ask_to_watch_and_unwatching_forgets() {
        let watches = Watches::default();
        let cx = |peer: &str| Context {
            peer: peer.parse().unwrap(),
            state: 5,
            watches: &watches,
            free_host: |_: &str| 0,
        };
        let far = cx("10.0.0.1:700");
        let here = cx("127.0.0.1:700");
        let here6 = cx("[::ffff:127.0.0.1]:700");
        let m = mon("10.1.2.3", 16).to_bytes();
        // another host: STAT_FAIL, nothing watched
        assert_eq!(
            call(&far, procs::MON, &m),
            (AcceptStat::Success, vec![1, -1])
        );
        assert!(watches
            .of(b"10.1.2.3", "10.9.9.9".parse().unwrap())
            .is_empty());
        // this host: watched, our state number; by name (any case) or by the sender's address
        assert_eq!(
            call(&here, procs::MON, &m),
            (AcceptStat::Success, vec![0, 5])
        );
        assert_eq!(
            call(&here6, procs::MON, &mon("Client.Example", 17).to_bytes()).1,
            vec![0, 5]
        );
        assert_eq!(
            watches.of(b"10.1.2.3", "10.9.9.9".parse().unwrap()).len(),
            1
        );
        assert_eq!(watches.of(b"x", "10.1.2.3".parse().unwrap()).len(), 1);
        assert_eq!(
            watches
                .of(b"client.example", "10.9.9.9".parse().unwrap())
                .len(),
            1
        );
        // the same again renews, does not add
        call(&here, procs::MON, &m);
        assert_eq!(watches.locked().len(), 2);
        // SM_UNMON from elsewhere changes nothing; from here it forgets that one
        let u = mon("10.1.2.3", 16).mon_id.to_bytes();
        assert_eq!(call(&far, procs::UNMON, &u), (AcceptStat::Success, vec![5]));
        assert_eq!(watches.locked().len(), 2);
        assert_eq!(
            call(&here, procs::UNMON, &u),
            (AcceptStat::Success, vec![5])
        );
        assert!(watches
            .of(b"10.1.2.3", "10.9.9.9".parse().unwrap())
            .is_empty());
        // SM_UNMON_ALL forgets everything of that caller
        call(&here, procs::MON, &m);
        let mut other = mon("h2", 16);
        other.mon_id.my_id.my_prog = 300_000;
        call(&here, procs::MON, &other.to_bytes());
        let all = mon("", 16).mon_id.my_id.to_bytes();
        assert_eq!(
            call(&here, procs::UNMON_ALL, &all),
            (AcceptStat::Success, vec![5])
        );
        // (a caller is its whole my_id: the same program with another procedure stays)
        let left: Vec<_> = watches
            .locked()
            .iter()
            .map(|w| (w.my_id.my_prog, w.my_id.my_proc))
            .collect();
        assert_eq!(left, [(100021, 17), (300_000, 16)]);
    }

    #[test]
    fn watches_are_bounded_and_bad_calls_get_their_status() {
        let watches = Watches::default();
        let freed = std::sync::atomic::AtomicUsize::new(0);
        let cx = Context {
            peer: "127.0.0.1:700".parse().unwrap(),
            state: 3,
            watches: &watches,
            free_host: |_: &str| freed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        for i in 0..MAX_WATCHES {
            assert_eq!(
                call(&cx, procs::MON, &mon(&format!("h{i}"), 16).to_bytes()).1,
                [0, 3]
            );
        }
        assert_eq!(
            call(&cx, procs::MON, &mon("one more", 16).to_bytes()).1,
            [1, -1]
        );
        let mut w = XdrWriter::new();
        w.opaque(b"anyone");
        assert_eq!(
            call(&cx, procs::STAT, w.as_slice()),
            (AcceptStat::Success, vec![0, 3])
        );
        assert_eq!(call(&cx, procs::MON, &[0, 0]).0, AcceptStat::GarbageArgs);
        assert_eq!(call(&cx, procs::UNMON, &[]).0, AcceptStat::GarbageArgs);
        assert_eq!(call(&cx, procs::SIMU_CRASH, &[]).0, AcceptStat::ProcUnavail);
        assert_eq!(call(&cx, procs::NULL, &[]), (AcceptStat::Success, vec![]));
        // SM_NOTIFY frees the host's locks (its callbacks go to nobody listening here)
        let n = StatChange {
            mon_name: b"nobody-watches".to_vec(),
            state: 9,
        }
        .to_bytes();
        assert_eq!(call(&cx, procs::NOTIFY, &n), (AcceptStat::Success, vec![]));
        assert_eq!(freed.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
