//! Where a TCP connection's replies go: written by the thread that made them.
//!
//! A reply used to travel from the blocking thread that executed the call back to the
//! connection's writer task (the `JoinHandle` woke an async task, which sent it on a channel
//! to the writer, which wrote it): on a 2-CPU machine each of those hops is a thread wake-up,
//! and wake-ups were the largest item of a metadata profile (`finish_task_switch` and
//! `try_to_wake_up`, a third of the server's CPU; Documentation/13-request-path.md).
//!
//! Now the thread that has the reply writes it to the socket itself, with a non-blocking
//! write, whole record (mark and body) under one lock so records never interleave. Only what
//! the socket does not take at once (a large READ, a client slow to read) is queued for the
//! connection's writer task, which waits for the socket to become writable; while anything is
//! queued, later replies queue behind it. Every queued reply holds its request's permit, so
//! the queue is bounded by the requests a connection may have in flight (a client that stops
//! reading stops being read).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Mutex;

use ftnfs_wire::record::record_mark;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// One reply not yet (wholly) written: its record mark, its body, how much of the two went.
struct Pending {
    mark: [u8; 4],
    body: Vec<u8>,
    sent: usize,
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    fn len(&self) -> usize {
        4 + self.body.len()
    }

    /// Writes as much as the socket takes now. `Ok(true)` once the whole record went.
    fn write_some(&mut self, wr: &OwnedWriteHalf) -> std::io::Result<bool> {
        while self.sent < self.len() {
            let n = if self.sent < 4 {
                let bufs = [
                    IoSlice::new(&self.mark[self.sent..]),
                    IoSlice::new(&self.body),
                ];
                wr.try_write_vectored(&bufs)
            } else {
                wr.try_write(&self.body[self.sent - 4..])
            };
            match n {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

struct State {
    queue: VecDeque<Pending>,
    /// The socket failed: replies are dropped (the connection is going away).
    broken: bool,
}

impl State {
    /// The socket failed: what is queued is dropped (its shares return), and so is every
    /// later reply.
    fn fail(&mut self) {
        self.broken = true;
        self.queue.clear();
    }
}

/// The reply side of one TCP connection, shared by every thread that answers on it.
pub struct ReplySink {
    wr: OwnedWriteHalf,
    state: Mutex<State>,
    queued: Notify,
}

impl ReplySink {
    /// A sink writing to `wr`.
    pub fn new(wr: OwnedWriteHalf) -> ReplySink {
        ReplySink {
            wr,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                broken: false,
            }),
            queued: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `body` as one record, from any thread, without waiting for the socket. `permit`
    /// (the request's share of the connection) is released once the record is written.
    pub fn send(&self, body: Vec<u8>, permit: OwnedSemaphorePermit) {
        let mut p = Pending {
            mark: record_mark(body.len()),
            body,
            sent: 0,
            _permit: permit,
        };
        let mut st = self.state();
        if st.broken {
            return;
        }
        if !st.queue.is_empty() {
            st.queue.push_back(p);
        } else {
            match p.write_some(&self.wr) {
                Ok(true) => return,
                Ok(false) => st.queue.push_back(p),
                Err(_) => st.fail(),
            }
        }
        drop(st);
        self.queued.notify_one();
    }

    /// The writer task: writes what `send` queued, as the socket takes it. Returns when the
    /// socket fails.
    pub async fn drain(&self) {
        loop {
            let notified = self.queued.notified();
            loop {
                let done = {
                    let mut st = self.state();
                    if st.broken {
                        return;
                    }
                    let Some(front) = st.queue.front_mut() else {
                        break;
                    };
                    match front.write_some(&self.wr) {
                        Ok(true) => {
                            st.queue.pop_front();
                            true
                        }
                        Ok(false) => false,
                        Err(_) => {
                            st.fail();
                            return;
                        }
                    }
                };
                if !done && self.wr.writable().await.is_err() {
                    self.state().fail();
                    return;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::sync::Semaphore;

    /// Reads one record (single fragment, as the sink writes them) off `r`.
    async fn record(r: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut mark = [0u8; 4];
        r.read_exact(&mut mark).await.unwrap();
        let m = u32::from_be_bytes(mark);
        assert!(m & 0x8000_0000 != 0, "last-fragment bit");
        let mut body = vec![0u8; (m & 0x7fff_ffff) as usize];
        r.read_exact(&mut body).await.unwrap();
        body
    }

    #[tokio::test]
    async fn a_reply_the_socket_cannot_take_at_once_is_finished_in_order_and_whole() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (srv, _) = l.accept().await.unwrap();
        let (_rd, wr) = srv.into_split();
        let sink = Arc::new(ReplySink::new(wr));
        let permits = Arc::new(Semaphore::new(3));
        let take = || permits.clone().try_acquire_owned().unwrap();
        // far more than the socket buffers hold while the client does not read
        let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
        sink.send(big.clone(), take());
        assert!(
            permits.available_permits() < 3,
            "the unwritten reply holds its share"
        );
        // the client reads a little: the socket has room again, the big reply is still
        // unfinished (no writer task runs yet), and a small reply must queue behind it
        // rather than cut into it
        let mut mark = [0u8; 4];
        client.read_exact(&mut mark).await.unwrap();
        let mut first = vec![0u8; 1 << 20];
        client.read_exact(&mut first).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let s = sink.clone();
        let p = take();
        // from a blocking thread, as a call's reply is sent
        tokio::task::spawn_blocking(move || s.send(b"small".to_vec(), p))
            .await
            .unwrap();
        let writer = tokio::spawn({
            let s = sink.clone();
            async move { s.drain().await }
        });
        assert_eq!(u32::from_be_bytes(mark), 0x8000_0000 | (16 << 20));
        let mut rest = vec![0u8; (16 << 20) - (1 << 20)];
        client.read_exact(&mut rest).await.unwrap();
        first.extend_from_slice(&rest);
        assert!(first == big, "first record intact");
        assert_eq!(record(&mut client).await, b"small");
        // and once written, the shares are back
        for _ in 0..1000 {
            if permits.available_permits() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(permits.available_permits(), 3);
        // a reply with nothing queued goes straight out
        sink.send(b"direct".to_vec(), take());
        assert_eq!(record(&mut client).await, b"direct");
        writer.abort();
    }

    #[tokio::test]
    async fn a_broken_socket_drops_replies_and_returns_their_shares() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (srv, _) = l.accept().await.unwrap();
        let (_rd, wr) = srv.into_split();
        let sink = Arc::new(ReplySink::new(wr));
        let writer = tokio::spawn({
            let s = sink.clone();
            async move { s.drain().await }
        });
        // the client goes away with a reset
        client.set_zero_linger().unwrap();
        drop(client);
        let permits = Arc::new(Semaphore::new(8));
        for _ in 0..8 {
            let s = sink.clone();
            let p = permits.clone().try_acquire_owned().unwrap();
            tokio::task::spawn_blocking(move || s.send(vec![7u8; 1 << 20], p))
                .await
                .unwrap();
        }
        // the writer notices and ends; nothing stays queued
        tokio::time::timeout(std::time::Duration::from_secs(30), writer)
            .await
            .expect("the writer ends on a broken socket")
            .unwrap();
        sink.send(
            b"late".to_vec(),
            permits.clone().try_acquire_owned().unwrap(),
        );
        assert_eq!(permits.available_permits(), 8);
    }
}
