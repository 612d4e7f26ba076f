//! The threads that execute client requests (`13-request-path.md`, "The request pool").
//!
//! A request that may wait (for the disk, the secondaries, a lease) runs on a thread of its
//! own, as with `tokio::task::spawn_blocking`, whose pool this replaces on the request path
//! for one reason: tokio wakes a pooled thread while holding the pool's lock, so the woken
//! thread's first act is to block on that lock (a futex wait and a second wake-up per
//! request, measured). Here the hand-off is: lock, queue the job, take the most recently
//! idle thread, unlock, *then* unpark it.
//!
//! Bounded: at most `max` threads (the transport's in-flight limit bounds the jobs as
//! well); a thread idle for `keep_alive` ends. Threads enter the runtime, so a job may
//! spawn tasks as it could on tokio's pool. A job that panics is logged and its thread
//! carries on (what it owned — its reply, its in-flight permit — is dropped, as tokio does).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A growing, shrinking, bounded set of request threads.
#[derive(Clone)]
pub struct RequestPool(Arc<Inner>);

struct Inner {
    state: Mutex<State>,
    rt: tokio::runtime::Handle,
    max: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads parked waiting for a job, most recently idle last.
    idle: Vec<Thread>,
    /// Threads alive (idle or running a job).
    threads: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a job never runs under the lock, so a poisoned lock holds a consistent state
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RequestPool {
    /// A pool whose threads run in `rt`'s context.
    pub fn new(rt: tokio::runtime::Handle, max: usize, keep_alive: Duration) -> RequestPool {
        RequestPool(Arc::new(Inner {
            state: Mutex::new(State::default()),
            rt,
            max: max.max(1),
            keep_alive,
        }))
    }

    /// Runs `job` on an idle thread, a new one (below `max`), or the first to finish.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let mut s = self.0.lock();
        s.jobs.push_back(Box::new(job));
        let wake = s.idle.pop();
        let grow = wake.is_none() && s.threads < self.0.max;
        if grow {
            s.threads += 1;
        }
        drop(s);
        if let Some(t) = wake {
            t.unpark();
        } else if grow {
            let inner = self.0.clone();
            let started = std::thread::Builder::new()
                .name("ftnfs-request".into())
                .spawn(move || work(&inner));
            if let Err(e) = started {
                // the job waits for a thread that finishes; with none at all it would
                // wait forever, so it is dropped (its client retransmits)
                let mut s = self.0.lock();
                s.threads -= 1;
                tracing::error!(error = %e, threads = s.threads, "cannot start a request thread");
                if s.threads == 0 {
                    s.jobs.clear();
                }
            }
        }
    }

    /// Threads alive and jobs waiting for one (tests, status).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let s = self.0.lock();
        (s.threads, s.jobs.len())
    }
}

fn work(inner: &Inner) {
    let _rt = inner.rt.enter();
    let me = std::thread::current();
    let mut idle_since = Instant::now();
    let mut s = inner.lock();
    loop {
        if let Some(job) = s.jobs.pop_front() {
            drop(s);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!("a request's execution panicked");
            }
            idle_since = Instant::now();
            s = inner.lock();
            continue;
        }
        let left = inner.keep_alive.saturating_sub(idle_since.elapsed());
        if left.is_zero() {
            s.threads -= 1;
            return;
        }
        s.idle.push(me.clone());
        drop(s);
        // woken by `spawn` (which took us off the idle list), spuriously, or by the time
        std::thread::park_timeout(left);
        s = inner.lock();
        if let Some(i) = s.idle.iter().position(|t| t.id() == me.id()) {
            s.idle.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn jobs_run_concurrently_up_to_the_bound_and_idle_threads_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pool = RequestPool::new(rt.handle().clone(), 3, Duration::from_millis(200));
        let (gate_tx, gate_rx) = channel::<()>();
        let gate = Arc::new(Mutex::new(gate_rx));
        let (done_tx, done_rx) = channel();
        let (started_tx, started_rx) = channel();
        for i in 0..5 {
            let (gate, done, started) = (gate.clone(), done_tx.clone(), started_tx.clone());
            pool.spawn(move || {
                started.send(i).unwrap();
                // each job holds its thread until the gate lets one through
                let _ = gate.lock().unwrap().recv();
                done.send(i).unwrap();
            });
        }
        // three run at once (the bound), two wait for a thread
        for _ in 0..3 {
            started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        assert!(started_rx.recv_timeout(Duration::from_millis(100)).is_err());
        assert_eq!(pool.counts(), (3, 2));
        for _ in 0..5 {
            gate_tx.send(()).unwrap();
        }
        let mut done: Vec<i32> = (0..5)
            .map(|_| done_rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        done.sort();
        assert_eq!(done, vec![0, 1, 2, 3, 4]);
        // a job that panics does not take its thread's count with it
        pool.spawn(|| panic!("on purpose"));
        let (tx, rx) = channel();
        pool.spawn(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // idle past keep_alive: every thread ends (bounded wait)
        let until = Instant::now() + Duration::from_secs(30);
        while pool.counts().0 > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.counts(), (0, 0));
        // and the pool starts threads again
        let (tx, rx) = channel();
        pool.spawn(move || {
            tx.send(tokio::runtime::Handle::try_current().is_ok())
                .unwrap()
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            "jobs run in the runtime's context"
        );
    }
}
