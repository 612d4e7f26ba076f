//! The client side of `scripts/bench`: one NFSv3 client (the `nfs3_client` crate, written by
//! others) that runs the same workload against any server and prints its figures as one JSON
//! line. Sequential write and read use several connections, each with one request in flight,
//! striped over 1 MiB chunks; the metadata loop is CREATE, GETATTR, REMOVE from
//! `--meta-workers` connections at once (each its own names in the export's root), with the
//! latency of every call (p50/p99 per procedure in the output).

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ftnfs_bench::{connect, create, ok, remove, Conn, Target, CHUNK};
use nfs3_client::nfs3_types::nfs3::{
    nfs_fh3, stable_how, COMMIT3args, GETATTR3args, READ3args, WRITE3args,
};
use nfs3_client::nfs3_types::xdr_codec::Opaque;

#[derive(Parser)]
struct Args {
    /// Where.
    #[command(flatten)]
    target: Target,
    /// Size of the sequential file in MiB.
    #[arg(long, default_value_t = 256)]
    mib: u32,
    /// Connections used for the sequential write and read.
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// Iterations of the metadata loop (each is CREATE, GETATTR, REMOVE), over all workers.
    #[arg(long, default_value_t = 2000)]
    meta: u32,
    /// Connections running the metadata loop at once.
    #[arg(long, default_value_t = 4)]
    meta_workers: u32,
    /// Write the file but do not read it back (what a server sends is then only replies
    /// and what it relays: scripts/bench ONLY=fanout).
    #[arg(long)]
    no_read: bool,
    /// A tag copied into the output line.
    #[arg(long, default_value = "")]
    tag: String,
    /// Server processes whose CPU time (user + system, from /proc) each phase reports
    /// (`write_cpu_s`, `read_cpu_s`, `meta_cpu_s`: their sum over these processes).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
}

/// CPU seconds (user + system) the processes `pids` have used so far; 0 for one that is gone.
fn cpu_s(pids: &[u32]) -> f64 {
    let tick = 100.0; // USER_HZ: 100 on Linux, whatever the kernel's own rate
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|st| {
            // fields after the command name (which may hold spaces) in parentheses
            let rest = &st[st.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let (u, s) = (
                f.get(11)?.parse::<f64>().ok()?,
                f.get(12)?.parse::<f64>().ok()?,
            );
            Some((u + s) / tick)
        })
        .sum()
}

/// Chunks `i, i+n, i+2n, …` of the file, written UNSTABLE, then one COMMIT.
async fn write_stripe(mut c: Conn, fh: nfs_fh3, i: u32, n: u32, chunks: u32) -> Result<Conn> {
    let data = vec![0x5a_u8 ^ i as u8; CHUNK as usize];
    let mut k = i;
    while k < chunks {
        let r = c
            .write(&WRITE3args {
                file: fh.clone(),
                offset: u64::from(k) * u64::from(CHUNK),
                count: CHUNK,
                stable: stable_how::UNSTABLE,
                data: Opaque::borrowed(&data),
            })
            .await
            .map_err(|e| anyhow!("{e:?}"))?;
        let w = ok(r, "WRITE")?;
        if w.count != CHUNK {
            bail!("short write {}", w.count);
        }
        k += n;
    }
    let r = c
        .commit(&COMMIT3args {
            file: fh,
            offset: 0,
            count: 0,
        })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    ok(r, "COMMIT")?;
    Ok(c)
}

async fn read_stripe(mut c: Conn, fh: nfs_fh3, i: u32, n: u32, chunks: u32) -> Result<Conn> {
    let mut k = i;
    while k < chunks {
        let r = c
            .read(&READ3args {
                file: fh.clone(),
                offset: u64::from(k) * u64::from(CHUNK),
                count: CHUNK,
            })
            .await
            .map_err(|e| anyhow!("{e:?}"))?;
        let d = ok(r, "READ")?;
        if d.data.len() != CHUNK as usize || d.data[0] != 0x5a_u8 ^ (k % n) as u8 {
            bail!("chunk {k}: wrong data ({} bytes)", d.data.len());
        }
        k += n;
    }
    Ok(c)
}

/// Latencies of one worker's metadata loop, in microseconds: (create, getattr, remove).
type Lat = (Vec<u64>, Vec<u64>, Vec<u64>);

/// `n` iterations of CREATE, GETATTR, REMOVE of names `m{w}-{i}` in the root.
async fn meta_loop(mut c: Conn, w: u32, n: u32) -> Result<Lat> {
    let root = c.root_nfs_fh3();
    let mut lat: Lat = (vec![], vec![], vec![]);
    let us = |t: Instant| t.elapsed().as_micros() as u64;
    for i in 0..n {
        let name = format!("m{w}-{i}");
        let t = Instant::now();
        let fh = create(&mut c, &root, &name).await?;
        lat.0.push(us(t));
        let t = Instant::now();
        let r = c
            .getattr(&GETATTR3args { object: fh })
            .await
            .map_err(|e| anyhow!("{e:?}"))?;
        ok(r, "GETATTR")?;
        lat.1.push(us(t));
        let t = Instant::now();
        remove(&mut c, &root, &name).await?;
        lat.2.push(us(t));
    }
    Ok(lat)
}

/// The `p`th percentile of `v` in milliseconds.
fn pct_ms(v: &mut [u64], p: usize) -> f64 {
    v.sort_unstable();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .map_or(0.0, |x| *x as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let tgt = a.target.clone();
    let mut c = connect(&tgt).await?;
    let root = c.root_nfs_fh3();
    let name = format!("bench-seq-{}", std::process::id());
    let fh = create(&mut c, &root, &name).await?;
    let mut conns = vec![];
    for _ in 0..a.streams.max(1) {
        conns.push(connect(&tgt).await?);
    }
    let n = conns.len() as u32;
    let chunks = a.mib;

    let cpu0 = cpu_s(&a.server_pids);
    let t = Instant::now();
    let mut tasks = vec![];
    for (i, cn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(write_stripe(
            cn,
            fh.clone(),
            i as u32,
            n,
            chunks,
        )));
    }
    let mut conns = vec![];
    for t in tasks {
        conns.push(t.await?.context("write")?);
    }
    let write_s = t.elapsed().as_secs_f64();
    let cpu1 = cpu_s(&a.server_pids);

    let t = Instant::now();
    let mut tasks = vec![];
    for (i, cn) in conns.into_iter().enumerate().filter(|_| !a.no_read) {
        tasks.push(tokio::spawn(read_stripe(
            cn,
            fh.clone(),
            i as u32,
            n,
            chunks,
        )));
    }
    for t in tasks {
        t.await?.context("read")?;
    }
    let read_s = t.elapsed().as_secs_f64();
    let cpu2 = cpu_s(&a.server_pids);
    remove(&mut c, &root, &name).await?;

    let workers = a.meta_workers.max(1);
    let per = a.meta / workers;
    let mut mconns = vec![];
    for _ in 0..workers {
        mconns.push(connect(&tgt).await?);
    }
    let cpu3 = cpu_s(&a.server_pids);
    let t = Instant::now();
    let tasks: Vec<_> = mconns
        .into_iter()
        .enumerate()
        .map(|(w, cn)| tokio::spawn(meta_loop(cn, w as u32, per)))
        .collect();
    let mut all: Lat = (vec![], vec![], vec![]);
    for t in tasks {
        let l = t.await?.context("metadata loop")?;
        all.0.extend(l.0);
        all.1.extend(l.1);
        all.2.extend(l.2);
    }
    let meta_s = t.elapsed().as_secs_f64();
    let cpu4 = cpu_s(&a.server_pids);
    println!(
        "{}",
        serde_json::json!({
            "tag": a.tag,
            "write_mib_s": f64::from(a.mib) / write_s,
            "read_mib_s": f64::from(a.mib) / read_s,
            "meta_ops_s": f64::from(per * workers * 3) / meta_s,
            "create_p50_ms": pct_ms(&mut all.0, 50),
            "create_p99_ms": pct_ms(&mut all.0, 99),
            "getattr_p50_ms": pct_ms(&mut all.1, 50),
            "getattr_p99_ms": pct_ms(&mut all.1, 99),
            "remove_p50_ms": pct_ms(&mut all.2, 50),
            "remove_p99_ms": pct_ms(&mut all.2, 99),
            "write_cpu_s": cpu1 - cpu0,
            "read_cpu_s": cpu2 - cpu1,
            "meta_cpu_s": cpu4 - cpu3,
        })
    );
    Ok(())
}
