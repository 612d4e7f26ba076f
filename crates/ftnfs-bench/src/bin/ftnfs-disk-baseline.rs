//! The physical limit of durable metadata for `scripts/bench`: what any server that makes a
//! CREATE and a REMOVE durable before its reply must at least do, straight on the local
//! filesystem — `--workers` threads at once, each looping over: create a file and fsync it,
//! fsync the directory (the new entry), stat the file, unlink it, fsync the directory. Prints
//! one JSON line with the operations per second (create, stat and remove count one each, as
//! CREATE, GETATTR and REMOVE do in the bench client's loop).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Directory to work in (on the filesystem the servers export).
    #[arg(long)]
    dir: PathBuf,
    /// Iterations over all workers.
    #[arg(long, default_value_t = 2000)]
    ops: u32,
    /// Threads at once.
    #[arg(long, default_value_t = 4)]
    workers: u32,
}

fn worker(dir: PathBuf, w: u32, n: u32) -> Result<()> {
    let d = std::fs::File::open(&dir).context("open dir")?;
    for i in 0..n {
        let p = dir.join(format!("d{w}-{i}"));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&p)
            .context("create")?;
        f.sync_all().context("fsync file")?;
        drop(f);
        d.sync_all().context("fsync dir")?;
        std::fs::metadata(&p).context("stat")?;
        std::fs::remove_file(&p).context("unlink")?;
        d.sync_all().context("fsync dir")?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.dir)?;
    let workers = a.workers.max(1);
    let per = a.ops / workers;
    let t = Instant::now();
    let hs: Vec<_> = (0..workers)
        .map(|w| {
            let dir = a.dir.clone();
            std::thread::spawn(move || worker(dir, w, per))
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let s = t.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({ "tag": "disk", "meta_ops_s": f64::from(per * workers * 3) / s })
    )?;
    Ok(())
}
