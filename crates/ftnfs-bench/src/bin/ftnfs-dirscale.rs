//! Directory scale for `scripts/bench` (issue 13): in a fresh directory of the export, create
//! `--entries` empty files from `--workers` connections, then list the directory whole with
//! READDIRPLUS (twice: the first listing after the creates, then a warm one) and with READDIR,
//! then LOOKUP and CREATE `--probes` names in it. Prints one JSON line: microseconds per
//! entry (listings, creates) and per call (lookups, creates in the full directory), so that
//! sizes compare directly — a flat cost per entry is the goal.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use ftnfs_bench::{connect, create, ok, Conn, Target};
use nfs3_client::nfs3_types::nfs3::{
    cookieverf3, diropargs3, nfs_fh3, sattr3, LOOKUP3args, MKDIR3args, Nfs3Option, READDIR3args,
    READDIRPLUS3args,
};

#[derive(Parser)]
struct Args {
    /// Where.
    #[command(flatten)]
    target: Target,
    /// Files in the directory.
    #[arg(long, default_value_t = 10_000)]
    entries: u32,
    /// Connections creating at once.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// LOOKUPs and CREATEs in the full directory.
    #[arg(long, default_value_t = 1000)]
    probes: u32,
    /// Warm READDIRPLUS listings (the figure is their mean; more make a profile easy).
    #[arg(long, default_value_t = 1)]
    warm_lists: u32,
    /// A tag copied into the output line.
    #[arg(long, default_value = "")]
    tag: String,
}

/// Lists `dir` whole; the number of entries (without `.` and `..`). The Linux client's sizes:
/// READDIRPLUS dircount 4 KiB (of names) and maxcount 32 KiB, READDIR count 32 KiB.
async fn list(c: &mut Conn, dir: &nfs_fh3, plus: bool) -> Result<u64> {
    let (mut cookie, mut verf, mut n) = (0u64, cookieverf3::default(), 0u64);
    for _ in 0..10_000_000 {
        let (entries, next_verf, eof) = if plus {
            let r = c
                .readdirplus(&READDIRPLUS3args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verf,
                    dircount: 4096,
                    maxcount: 32_768,
                })
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            let r = ok(r, "READDIRPLUS")?;
            let e: Vec<(u64, Vec<u8>)> = r
                .reply
                .entries
                .0
                .iter()
                .map(|e| (e.cookie, e.name.0.to_vec()))
                .collect();
            (e, r.cookieverf, r.reply.eof)
        } else {
            let r = c
                .readdir(&READDIR3args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verf,
                    count: 32_768,
                })
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            let r = ok(r, "READDIR")?;
            let e: Vec<(u64, Vec<u8>)> = r
                .reply
                .entries
                .0
                .iter()
                .map(|e| (e.cookie, e.name.0.to_vec()))
                .collect();
            (e, r.cookieverf, r.reply.eof)
        };
        verf = next_verf;
        for (k, name) in &entries {
            cookie = *k;
            if name != b"." && name != b".." {
                n += 1;
            }
        }
        if eof {
            return Ok(n);
        }
        if entries.is_empty() {
            bail!("an empty reply that is not the end of the directory");
        }
    }
    bail!("the listing never ended")
}

/// Seconds to list `dir` whole, which must hold `entries` files.
async fn timed_list(c: &mut Conn, dir: &nfs_fh3, plus: bool, entries: u32) -> Result<f64> {
    let t = Instant::now();
    let n = list(c, dir, plus).await?;
    if n != u64::from(entries) {
        bail!("listed {n} entries of {entries}");
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn create_range(mut c: Conn, dir: nfs_fh3, from: u32, to: u32) -> Result<Conn> {
    for i in from..to {
        create(&mut c, &dir, &format!("f{i:07}")).await?;
    }
    Ok(c)
}

/// A cheap deterministic sequence (no dependency for it).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let tgt = a.target.clone();
    let mut c = connect(&tgt).await?;
    let root = c.root_nfs_fh3();
    let dname = format!("dirscale-{}-{}", a.entries, std::process::id());
    let r = c
        .mkdir(&MKDIR3args {
            where_: diropargs3 {
                dir: root.clone(),
                name: dname.as_bytes().into(),
            },
            attributes: sattr3::default(),
        })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    let dir = match ok(r, "MKDIR")?.obj {
        Nfs3Option::Some(fh) => fh,
        Nfs3Option::None => bail!("MKDIR returned no handle"),
    };

    let workers = a.workers.max(1);
    let t = Instant::now();
    let mut tasks = vec![];
    for w in 0..workers {
        let (from, to) = (a.entries * w / workers, a.entries * (w + 1) / workers);
        let cn = connect(&tgt).await?;
        tasks.push(tokio::spawn(create_range(cn, dir.clone(), from, to)));
    }
    for t in tasks {
        t.await??;
    }
    let create_s = t.elapsed().as_secs_f64();

    let plus_first = timed_list(&mut c, &dir, true, a.entries).await?;
    let mut plus_warm = 0.0;
    for _ in 0..a.warm_lists.max(1) {
        plus_warm += timed_list(&mut c, &dir, true, a.entries).await?;
    }
    let plus_warm = plus_warm / f64::from(a.warm_lists.max(1));
    let plain = timed_list(&mut c, &dir, false, a.entries).await?;

    let probes = a.probes.min(a.entries).max(1);
    let t = Instant::now();
    for i in 0..probes {
        let k = mix(u64::from(i)) % u64::from(a.entries);
        let name = format!("f{k:07}");
        let r = c
            .lookup(&LOOKUP3args {
                what: diropargs3 {
                    dir: dir.clone(),
                    name: name.as_bytes().into(),
                },
            })
            .await
            .map_err(|e| anyhow!("{e:?}"))?;
        ok(r, "LOOKUP")?;
    }
    let lookup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..probes {
        create(&mut c, &dir, &format!("g{i:07}")).await?;
    }
    let create_full_s = t.elapsed().as_secs_f64();

    let per_entry = |s: f64| s * 1e6 / f64::from(a.entries);
    let per_probe = |s: f64| s * 1e6 / f64::from(probes);
    println!(
        "{}",
        serde_json::json!({
            "tag": a.tag,
            "entries": a.entries,
            "create_us_per_entry": per_entry(create_s),
            "readdirplus_first_us_per_entry": per_entry(plus_first),
            "readdirplus_warm_us_per_entry": per_entry(plus_warm),
            "readdir_us_per_entry": per_entry(plain),
            "lookup_us": per_probe(lookup_s),
            "create_in_full_dir_us": per_probe(create_full_s),
        })
    );
    Ok(())
}
