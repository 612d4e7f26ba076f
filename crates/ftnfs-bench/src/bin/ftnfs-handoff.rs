//! What one hand-off to an owner task costs, against locking the state in place: the
//! measurement behind Documentation/09-member-machine.md "no owner task per export".
//! Four threads (as the daemon's request threads) each submit `N` tiny updates:
//! - `mutex`: lock the state, change it, unlock;
//! - `owner`: send it to a task on a two-worker tokio runtime by a bounded channel and wait
//!   for its answer on a oneshot (one round trip; a mirrored update would need two).
//!
//! Prints wall and CPU microseconds per update for each.
//!   ftnfs-handoff [N]        (default 200000)

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// This process's CPU seconds (user + system) from /proc.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name (which may hold spaces) in parentheses
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn report(what: &str, n: u64, t0: Instant, c0: f64) {
    println!(
        "{what}: {:.2} us wall, {:.2} us CPU per update",
        t0.elapsed().as_secs_f64() * 1e6 / n as f64,
        (cpu_s() - c0) * 1e6 / n as f64
    );
}

/// Runs `update` `n` times over [`THREADS`] threads at once (each stops at its first
/// `false`) and reports the time and CPU per update as `what`.
fn timed(what: &str, n: u64, update: impl Fn(u64) -> bool + Send + Sync + 'static) {
    let update = Arc::new(update);
    let (t0, c0) = (Instant::now(), cpu_s());
    let hs: Vec<_> = (0..THREADS)
        .map(|_| {
            let update = update.clone();
            std::thread::spawn(move || {
                for i in 0..n / THREADS {
                    if !update(i) {
                        return;
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    report(what, n, t0, c0);
}

/// Submitting threads, as the daemon's request threads.
const THREADS: u64 = 4;

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let state = Arc::new(Mutex::new(0u64));
    timed("mutex", n, move |i| {
        *state.lock().unwrap_or_else(|p| p.into_inner()) += i;
        true
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    type Submit = (u64, tokio::sync::oneshot::Sender<u64>);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Submit>(1024);
    rt.spawn(async move {
        let mut s = 0u64;
        while let Some((i, answer)) = rx.recv().await {
            s = s.wrapping_add(i);
            let _ = answer.send(s);
        }
    });
    timed("owner (one round trip)", n, move |i| {
        let (a, b) = tokio::sync::oneshot::channel();
        tx.blocking_send((i, a)).is_ok() && b.blocking_recv().is_ok()
    });
    Ok(())
}
