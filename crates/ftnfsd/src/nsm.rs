//! The server side of NSM (program 100024, issue 14): a client whose host restarted has its
//! status monitor send SM_NOTIFY to every server it held locks with, and every lock and
//! wait of that host is dropped here (`Server::free_host`). Served on the
//! NFS port and registered there; the other procedures (a lock manager's calls to its own
//! local monitor) are not ours: PROC_UNAVAIL. Not yet: monitoring clients ourselves, the
//! state number kept durably, and notifying clients after a cold start of the group
//! (Documentation/12-locks.md).

use ftnfs_wire::nsm::{procs, StatChange};
use ftnfs_wire::rpc::{AcceptStat, ReplyHeader, Xid};
use ftnfs_wire::xdr::XdrWriter;

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
