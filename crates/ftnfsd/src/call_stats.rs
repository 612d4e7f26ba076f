//! What the request path measures per NFSv3 call for the metrics (`metrics.rs` encodes it):
//! latency per procedure, replies other than NFS3_OK, bytes read and written. Read from the
//! call record and the reply bytes, so it needs nothing of the server above it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ftnfs_wire::xdr::XdrReader;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// NFSv3 procedures (RFC 1813: 0..=21).
pub const NFS_PROCS: usize = 22;

/// What the request path measures per NFSv3 procedure.
pub struct CallStats {
    /// Seconds from a call's arrival on a thread to its reply (the wait for the
    /// secondaries of a mirrored update included).
    pub(crate) latency: Vec<Histogram>,
    /// Replies whose status was not NFS3_OK (or that were refused at the RPC level).
    pub(crate) errors: [AtomicU64; NFS_PROCS],
    /// Bytes READ returned.
    pub(crate) read_bytes: AtomicU64,
    /// Bytes WRITE accepted.
    pub(crate) written_bytes: AtomicU64,
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            // 50 µs … ~26 s
            latency: (0..NFS_PROCS)
                .map(|_| Histogram::new(exponential_buckets(0.000_05, 2.0, 20)))
                .collect(),
            errors: Default::default(),
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
        }
    }
}

impl CallStats {
    /// One NFSv3 call of `record` answered with `reply` (`None`: dropped or not answered
    /// here) after `took`.
    pub fn observe(&self, record: &[u8], took: Duration, reply: Option<&[u8]>) {
        let Some(p) = nfs_proc(record) else { return };
        self.latency[p].observe(took.as_secs_f64());
        let Some(reply) = reply else { return };
        match nfs_status(reply, p) {
            Some((0, mut body)) => {
                // READ: post_op_attr, count…; WRITE: wcc_data, count…
                let n = match p {
                    6 => skip_post_op(&mut body).and_then(|_| body.u32().ok()),
                    7 => skip_pre_op(&mut body)
                        .and_then(|_| skip_post_op(&mut body))
                        .and_then(|_| body.u32().ok()),
                    _ => None,
                };
                match (p, n) {
                    (6, Some(n)) => self.read_bytes.fetch_add(n as u64, Ordering::Relaxed),
                    (7, Some(n)) => self.written_bytes.fetch_add(n as u64, Ordering::Relaxed),
                    _ => 0,
                };
            }
            _ => {
                self.errors[p].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The NFSv3 procedure of a call record, if it is one.
fn nfs_proc(record: &[u8]) -> Option<usize> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(record.get(i..i + 4)?.try_into().ok()?))
    };
    // xid, CALL, rpcvers, prog, vers, proc
    if word(4)? != 0 || word(12)? != ftnfs_wire::nfs3::PROGRAM || word(16)? != 3 {
        return None;
    }
    let p = word(20)? as usize;
    (p < NFS_PROCS).then_some(p)
}

/// The NFS status of an accepted, successful RPC reply, and the rest of its body; `None`
/// for a denied or unsuccessful reply (also an error).
fn nfs_status(reply: &[u8], proc_: usize) -> Option<(u32, XdrReader<'_>)> {
    let mut r = XdrReader::new(reply);
    let _xid = r.u32().ok()?;
    if r.u32().ok()? != 1 || r.u32().ok()? != 0 {
        return None; // not a reply, or MSG_DENIED
    }
    let _flavor = r.u32().ok()?;
    let _verf = r.opaque(400).ok()?;
    if r.u32().ok()? != 0 {
        return None; // PROG_UNAVAIL, GARBAGE_ARGS …
    }
    if proc_ == 0 {
        return Some((0, r)); // NULL has no status
    }
    let st = r.u32().ok()?;
    Some((st, r))
}

fn skip_post_op(r: &mut XdrReader<'_>) -> Option<()> {
    if r.bool().ok()? {
        r.fixed::<84>().ok()?; // fattr3
    }
    Some(())
}

fn skip_pre_op(r: &mut XdrReader<'_>) -> Option<()> {
    if r.bool().ok()? {
        r.fixed::<24>().ok()?; // wcc_attr
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_counted_by_its_status_and_its_bytes() {
        let s = CallStats::default();
        // a READ call header (xid, CALL, rpc 2, NFS, v3, READ)
        let mut call = Vec::new();
        for w in [1u32, 0, 2, ftnfs_wire::nfs3::PROGRAM, 3, 6] {
            call.extend_from_slice(&w.to_be_bytes());
        }
        // accepted, AUTH_NONE verifier, SUCCESS, NFS3_OK, no attributes, count 512
        let mut reply = Vec::new();
        for w in [1u32, 1, 0, 0, 0, 0, 0, 0, 512] {
            reply.extend_from_slice(&w.to_be_bytes());
        }
        s.observe(&call, Duration::from_millis(1), Some(&reply));
        assert_eq!(s.read_bytes.load(Ordering::Relaxed), 512);
        assert_eq!(s.errors[6].load(Ordering::Relaxed), 0);
        // NFS3ERR_IO
        reply[24..28].copy_from_slice(&5u32.to_be_bytes());
        s.observe(&call, Duration::from_millis(1), Some(&reply));
        assert_eq!(s.errors[6].load(Ordering::Relaxed), 1);
        assert_eq!(s.read_bytes.load(Ordering::Relaxed), 512);
        // not an NFS call: not counted
        call[12..16].copy_from_slice(&100005u32.to_be_bytes());
        s.observe(&call, Duration::from_millis(1), None);
        let mut text = String::new();
        let mut r = prometheus_client::registry::Registry::default();
        r.register("t", "", s.latency[6].clone());
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("t_count 2"), "{text}");
    }
}
