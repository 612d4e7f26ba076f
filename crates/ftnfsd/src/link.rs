//! The sending half of a peer link: a bounded queue of encoded frames towards one peer. The
//! mirror driver, the resync streams and the peer tasks all hold one; it sits below all of
//! them.
//!
//! On a plain TCP link the thread that has a frame writes it to the socket itself, with a
//! non-blocking write, as `reply_sink.rs` does for client replies: a primary's update and a
//! secondary's acknowledgement each used to wake the link's writer task first, and on a
//! 2-CPU machine a wake-up costs as much as the write (Documentation/13-request-path.md).
//! Only what the socket does not take at once is queued for the writer task, which waits
//! for the socket to become writable; while anything is queued, later frames queue behind
//! it, so frames never interleave or overtake. Over TLS every frame goes through the writer
//! task (the TLS stream is not written from outside it).
//!
//! The queue holds at most [`LINK_QUEUE`] frames; a full queue refuses more (the primary's
//! resend timer covers a dropped update). When every holder of the link is gone, the writer
//! writes what is queued and shuts the socket's sending side.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Frames queued towards one peer (each at most `MAX_FRAME`).
pub const LINK_QUEUE: usize = 256;

/// Most frames handed to one vectored write.
const GATHER: usize = 64;

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// [`LINK_QUEUE`] frames wait already.
    #[error("link queue full")]
    Full,
    /// The connection ended.
    #[error("link closed")]
    Closed,
}

/// The writing half of a peer connection.
pub enum PeerWriter {
    /// Plain TCP: written by whoever sends.
    Plain(OwnedWriteHalf),
    /// A TLS stream: written by the link's writer task only.
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
}

impl PeerWriter {
    /// The writer as an async stream (the handshake writes through it).
    pub fn as_async(&mut self) -> &mut (dyn AsyncWrite + Send + Unpin) {
        match self {
            PeerWriter::Plain(w) => w,
            PeerWriter::Stream(w) => w,
        }
    }
}

struct State {
    queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    sent: usize,
    /// The socket failed or the writer ended: nothing more is taken.
    closed: bool,
    /// Every [`Link`] is gone: the writer finishes the queue and shuts the socket.
    dropped: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    /// The socket, when senders may write it themselves (plain TCP).
    direct: Option<OwnedWriteHalf>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes as much of the queue as `wr` takes now, gathering frames into one system call.
/// `Ok(true)` once the queue is empty, `Ok(false)` when the socket is full.
fn write_queued(st: &mut State, wr: &OwnedWriteHalf) -> std::io::Result<bool> {
    while !st.queue.is_empty() {
        let n = {
            let mut bufs: Vec<IoSlice<'_>> = Vec::with_capacity(GATHER.min(st.queue.len()));
            for (i, f) in st.queue.iter().take(GATHER).enumerate() {
                bufs.push(IoSlice::new(if i == 0 { &f[st.sent..] } else { f }));
            }
            match wr.try_write_vectored(&bufs) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        let mut n = n;
        while n > 0 {
            let left = st.queue[0].len() - st.sent;
            if n >= left {
                n -= left;
                st.queue.pop_front();
                st.sent = 0;
            } else {
                st.sent += n;
                n = 0;
            }
        }
    }
    Ok(true)
}

/// The last holder's handle: dropping it tells the writer that no more frames come.
struct Holder(Arc<Shared>);

impl Drop for Holder {
    fn drop(&mut self) {
        self.0.state().dropped = true;
        self.0.wake.notify_one();
    }
}

/// A frame queue towards one peer. Clones share it.
#[derive(Clone)]
pub struct Link(Arc<Holder>);

impl Link {
    /// A link writing to `wr`, with its writer task spawned on the current runtime.
    pub fn spawn(wr: PeerWriter) -> Link {
        let (direct, stream) = match wr {
            PeerWriter::Plain(w) => (Some(w), None),
            PeerWriter::Stream(w) => (None, Some(w)),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sent: 0,
                closed: false,
                dropped: false,
            }),
            wake: Notify::new(),
            direct,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            match stream {
                Some(w) => drain_stream(&s, w).await,
                None => drain_direct(&s).await,
            }
            let mut st = s.state();
            st.closed = true;
            st.queue.clear();
        });
        Link(Arc::new(Holder(shared)))
    }

    /// A link that takes nothing (a secondary sealed by a clean stop answers nobody).
    pub fn closed() -> Link {
        Link(Arc::new(Holder(Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sent: 0,
                closed: true,
                dropped: false,
            }),
            wake: Notify::new(),
            direct: None,
        }))))
    }

    /// Sends `frame`, from any thread, without waiting for the socket.
    pub fn try_send(&self, frame: Bytes) -> Result<(), LinkError> {
        let sh = &self.0 .0;
        let mut st = sh.state();
        if st.closed {
            return Err(LinkError::Closed);
        }
        if st.queue.len() >= LINK_QUEUE {
            return Err(LinkError::Full);
        }
        st.queue.push_back(frame);
        if st.queue.len() == 1 {
            if let Some(wr) = &sh.direct {
                match write_queued(&mut st, wr) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(_) => {
                        // the writer task sees it and ends the link
                        st.closed = true;
                        st.queue.clear();
                    }
                }
            }
        }
        drop(st);
        sh.wake.notify_one();
        Ok(())
    }

    /// Sends `frame` from a blocking thread, waiting while the queue is full (as long as the
    /// connection lasts).
    pub fn send_blocking(&self, frame: Bytes) -> Result<(), LinkError> {
        loop {
            match self.try_send(frame.clone()) {
                Err(LinkError::Full) => std::thread::sleep(std::time::Duration::from_micros(200)),
                r => return r,
            }
        }
    }

    /// Frames waiting for the socket.
    pub fn queued(&self) -> usize {
        self.0 .0.state().queue.len()
    }

    /// Whether the connection ended (nothing more is taken).
    pub fn is_closed(&self) -> bool {
        self.0 .0.state().closed
    }
}

/// The writer of a plain TCP link: finishes what senders could not write at once.
async fn drain_direct(sh: &Shared) {
    let Some(wr) = &sh.direct else { return };
    loop {
        let notified = sh.wake.notified();
        loop {
            let (empty, dropped) = {
                let mut st = sh.state();
                if st.closed {
                    return;
                }
                match write_queued(&mut st, wr) {
                    Ok(empty) => (empty, st.dropped),
                    Err(_) => return,
                }
            };
            if empty {
                if dropped {
                    let fd = std::os::fd::AsFd::as_fd(wr.as_ref());
                    let _ = nix::sys::socket::shutdown(
                        std::os::fd::AsRawFd::as_raw_fd(&fd),
                        nix::sys::socket::Shutdown::Write,
                    );
                    return;
                }
                break;
            }
            if wr.writable().await.is_err() {
                return;
            }
        }
        notified.await;
    }
}

/// The writer of a TLS link: every frame, in order, gathered into one write when several wait.
async fn drain_stream(sh: &Shared, mut wr: Box<dyn AsyncWrite + Send + Unpin>) {
    let mut buf = Vec::new();
    loop {
        let notified = sh.wake.notified();
        let dropped = {
            let mut st = sh.state();
            if st.closed {
                return;
            }
            buf.clear();
            while let Some(f) = st.queue.pop_front() {
                buf.extend_from_slice(&f);
            }
            st.dropped
        };
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            continue; // more may have come meanwhile
        }
        if dropped {
            let _ = wr.shutdown().await;
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    fn frame(i: u32, len: usize) -> Bytes {
        let mut v = i.to_be_bytes().to_vec();
        v.extend((0..len).map(|j| (j as u32 ^ i) as u8));
        Bytes::from(v)
    }

    async fn check_in_order(link: Link, mut rd: tokio::net::TcpStream, sizes: &[usize]) {
        let expect: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| frame(i as u32, n).to_vec())
            .collect();
        let sent = std::thread::spawn({
            let sizes = sizes.to_vec();
            move || {
                for (i, n) in sizes.into_iter().enumerate() {
                    // a full queue is waited out, as resync does
                    loop {
                        match link.try_send(frame(i as u32, n)) {
                            Ok(()) => break,
                            Err(LinkError::Full) => {
                                std::thread::sleep(std::time::Duration::from_micros(200))
                            }
                            Err(LinkError::Closed) => panic!("link closed"),
                        }
                    }
                }
                // `link` dropped here: the writer finishes and shuts the socket
            }
        });
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(60), rd.read_to_end(&mut got))
            .await
            .expect("the writer shuts the socket once every holder is gone")
            .unwrap();
        sent.join().unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "frames whole and in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_the_socket_cannot_take_at_once_are_finished_whole_and_in_order() {
        let (c, s) = pair().await;
        let (_r, w) = s.into_split();
        let link = Link::spawn(PeerWriter::Plain(w));
        // large frames fill the socket buffer at once (the client reads late), small ones
        // must queue behind the unfinished one rather than cut into it
        let sizes: Vec<usize> = (0..600)
            .map(|i| if i % 7 == 0 { 1 << 20 } else { 40 })
            .collect();
        check_in_order(link, c, &sizes).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_link_writes_every_frame_in_order_from_its_task() {
        let (c, s) = pair().await;
        let link = Link::spawn(PeerWriter::Stream(Box::new(s)));
        let sizes: Vec<usize> = (0..600)
            .map(|i| if i % 9 == 0 { 300_000 } else { 12 })
            .collect();
        check_in_order(link, c, &sizes).await;
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_broken_socket_closes_the_link() {
        let (c, s) = pair().await;
        let (_r, w) = s.into_split();
        let link = Link::spawn(PeerWriter::Plain(w));
        // nobody reads: the socket fills, then the queue
        let mut full = false;
        for i in 0..(LINK_QUEUE as u32 + 4096) {
            match link.try_send(frame(i, 64 << 10)) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e, LinkError::Full);
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the queue is bounded");
        assert_eq!(link.queued(), LINK_QUEUE);
        // the peer goes away with a reset: the writer ends, the link takes nothing more
        c.set_zero_linger().unwrap();
        drop(c);
        for _ in 0..6000 {
            if link.is_closed() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(link.is_closed());
        assert_eq!(link.queued(), 0, "what was queued is dropped");
        assert_eq!(link.try_send(frame(0, 1)), Err(LinkError::Closed));
        assert!(Link::closed().try_send(frame(0, 1)).is_err());
    }
}
