//! NSM (program 100024, issue 14), both ways:
//! - served: a client whose host restarted has its status monitor send SM_NOTIFY to every
//!   server it held locks with, and every lock and wait of that host is dropped here
//!   (`Server::free_host`). Served on the NFS port and registered there; the other
//!   procedures (a lock manager's calls to its own local monitor) are not ours:
//!   PROC_UNAVAIL.
//! - sent ([`notify_hosts`]): after a start that lost the lock tables (`recovery.rs`), every
//!   monitored client host (`monitor.rs`) is told that we restarted, so that it reclaims.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;

use ftnfs_wire::nsm::{procs, StatChange};
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

/// Answers one NSM v1 call; `free_host` drops a restarted host's locks (how many went).
pub fn handle(xid: Xid, proc_: u32, args: &[u8], free_host: impl Fn(&str) -> usize) -> Vec<u8> {
    let mut w = XdrWriter::new();
    let stat = match proc_ {
        procs::NULL => AcceptStat::Success,
        procs::NOTIFY => match StatChange::decode(args) {
            Ok(s) => {
                let host = String::from_utf8_lossy(&s.mon_name).into_owned();
                let freed = free_host(&host);
                tracing::info!(
                    client = host,
                    state = s.state,
                    freed,
                    "SM_NOTIFY: the client's host restarted; its locks are freed"
                );
                AcceptStat::Success
            }
            Err(_) => AcceptStat::GarbageArgs,
        },
        _ => AcceptStat::ProcUnavail,
    };
    ReplyHeader::Accepted(stat).encode(xid, &mut w);
    w.into_inner()
}
