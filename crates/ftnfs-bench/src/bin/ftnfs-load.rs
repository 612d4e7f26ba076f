//! Load and cross-member checks for the mirroring tests (`tests/mirror.sh`), built on the
//! independent `nfs3_client` crate.
//!
//! - `mixed`: a seeded mix of overlapping WRITEs to one shared file, CREATE/WRITE/REMOVE of
//!   small files, RENAMEs inside one directory, SETATTR and MKDIR/RMDIR. Meant to run while
//!   other clients (the kernel client in a guest) do the same to the same file and directory:
//!   NFS errors that such races cause (NOENT, EXIST, NOTEMPTY) are counted, transport
//!   errors fail.
//! - `crosscheck`: takes a file's handle from one member and uses it directly against
//!   another (GETATTR, READ): the handle must work and the answers must be the same.

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use ftnfs_bench::{connect, create, nfs_from_port, Target};
use nfs3_client::nfs3_types::nfs3::{
    diropargs3, nfs_fh3, sattr3, set_mode3, stable_how, GETATTR3args, LOOKUP3args, MKDIR3args,
    Nfs3Result, READ3args, REMOVE3args, RENAME3args, RMDIR3args, SETATTR3args, WRITE3args,
};
use nfs3_client::nfs3_types::xdr_codec::Opaque;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mixed updates.
    Mixed {
        #[command(flatten)]
        target: Target,
        /// Operations to run.
        #[arg(long, default_value_t = 500)]
        ops: u32,
        /// Seed of the operation mix.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Continuous FILE_SYNC writes of 4 KiB for `seconds`, reconnecting from the same local
    /// port (without a new MOUNT) on any transport error while keeping the same file handle,
    /// as the hard-mounted Linux client does. Prints the longest gap between two completed writes (the stall a client sees).
    Stall {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
    },
    /// Another client host's lock attempt on file `name` (in the export's root), through NLM
    /// over UDP on the NFS port: a TEST, then a non-blocking exclusive LOCK as owner `probe`
    /// (unlocked again if granted). Proves what the *server's* table holds: a second process
    /// of the same kernel client is refused by that client's own lock table without asking.
    /// Exit 0 granted, 75 denied, 76 denied for the grace period, 1 error.
    Nlm {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
    },
    /// A handle from `host` used against `other`.
    Crosscheck {
        #[arg(long)]
        host: String,
        #[arg(long)]
        other: String,
        #[arg(long, default_value_t = 2049)]
        port: u16,
        #[arg(long)]
        path: String,
        /// File (in the export's root) whose handle is taken.
        #[arg(long)]
        name: String,
    },
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn dir<'a>(fh: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: fh.clone(),
        name: name.as_bytes().into(),
    }
}

/// Ok → 0, NFS error → its number (counted by the caller).
fn status<T, F>(r: Nfs3Result<T, F>) -> u32 {
    match r {
        Nfs3Result::Ok(_) => 0,
        Nfs3Result::Err((s, _)) => s as u32,
    }
}

async fn lookup(c: &mut ftnfs_bench::Conn, d: &nfs_fh3, name: &str) -> Result<Option<nfs_fh3>> {
    let r = c
        .lookup(&LOOKUP3args { what: dir(d, name) })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(match r {
        Nfs3Result::Ok(ok) => Some(ok.object),
        Nfs3Result::Err(_) => None,
    })
}

async fn mixed(t: Target, ops: u32, seed: u64) -> Result<()> {
    let mut c = connect(&t).await?;
    let root = c.root_nfs_fh3();
    let mut rng = Rng(seed);
    let rd = match lookup(&mut c, &root, "r").await? {
        Some(fh) => fh,
        None => {
            let _ = c
                .mkdir(&MKDIR3args {
                    where_: dir(&root, "r"),
                    attributes: sattr3::default(),
                })
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            lookup(&mut c, &root, "r")
                .await?
                .ok_or_else(|| anyhow!("no directory r"))?
        }
    };
    let shared = match lookup(&mut c, &root, "shared").await? {
        Some(fh) => fh,
        None => create(&mut c, &root, "shared").await?,
    };
    let mut errors = std::collections::BTreeMap::<u32, u32>::new();
    let mut backoff = std::time::Duration::from_millis(50);
    for i in 0..ops {
        let st = match rng.below(8) {
            0..=2 => {
                // overlapping writes to the shared file
                let off = rng.below(96 * 1024);
                let len = 1 + rng.below(16 * 1024) as usize;
                let data = vec![(seed as u8) ^ (i as u8); len];
                let r = c
                    .write(&WRITE3args {
                        file: shared.clone(),
                        offset: off,
                        count: len as u32,
                        stable: if i % 7 == 0 {
                            stable_how::FILE_SYNC
                        } else {
                            stable_how::UNSTABLE
                        },
                        data: Opaque::borrowed(&data),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                status(r)
            }
            3 => {
                // rename within r (names shared with the other clients)
                let a = format!("n{}", rng.below(8));
                let b = format!("n{}", rng.below(8));
                let r = c
                    .rename(&RENAME3args {
                        from: dir(&rd, &a),
                        to: dir(&rd, &b),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                status(r)
            }
            4 => {
                let name = format!("n{}", rng.below(8));
                match create(&mut c, &rd, &name).await {
                    Ok(fh) => {
                        let data = format!("{seed}:{i}").into_bytes();
                        let r = c
                            .write(&WRITE3args {
                                file: fh,
                                offset: 0,
                                count: data.len() as u32,
                                stable: stable_how::FILE_SYNC,
                                data: Opaque::borrowed(&data),
                            })
                            .await
                            .map_err(|e| anyhow!("{e:?}"))?;
                        status(r)
                    }
                    // an NFS error of the CREATE is counted; a lost connection ends the run
                    Err(e) if e.to_string().starts_with("CREATE") => 1000,
                    Err(e) => return Err(e),
                }
            }
            5 => {
                let name = format!("n{}", rng.below(8));
                let r = c
                    .remove(&REMOVE3args {
                        object: dir(&rd, &name),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                status(r)
            }
            6 => {
                let r = c
                    .setattr(&SETATTR3args {
                        object: shared.clone(),
                        new_attributes: sattr3 {
                            mode: set_mode3::Some(0o600 | (rng.below(4) as u32) << 3),
                            ..sattr3::default()
                        },
                        guard: Default::default(),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                status(r)
            }
            _ => {
                let name = format!("d{}", rng.below(4));
                let r = c
                    .mkdir(&MKDIR3args {
                        where_: dir(&rd, &name),
                        attributes: sattr3::default(),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                let s = status(r);
                let r = c
                    .rmdir(&RMDIR3args {
                        object: dir(&rd, &name),
                    })
                    .await
                    .map_err(|e| anyhow!("{e:?}"))?;
                s.max(status(r))
            }
        };
        if st != 0 {
            *errors.entry(st).or_default() += 1;
        }
        // NFS3ERR_JUKEBOX: the server asks us to come back later (a member not in step, a
        // group without a primary): back off as a kernel client does, never spin
        if st == 10008 {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
        } else {
            backoff = std::time::Duration::from_millis(50);
        }
    }
    println!(
        "mixed: {ops} operations, NFS errors by status (races with other clients): {errors:?}"
    );
    Ok(())
}

async fn read64k(c: &mut ftnfs_bench::Conn, fh: nfs_fh3) -> Result<Vec<u8>> {
    let args = READ3args {
        file: fh,
        offset: 0,
        count: 65536,
    };
    match c.read(&args).await.map_err(|e| anyhow!("{e:?}"))? {
        Nfs3Result::Ok(r) => Ok(r.data.to_vec()),
        Nfs3Result::Err((s, _)) => Err(anyhow!("READ: {s:?}")),
    }
}

async fn crosscheck(a: Target, b: Target, name: &str) -> Result<()> {
    let mut ca = connect(&a).await?;
    let root = ca.root_nfs_fh3();
    let fh = lookup(&mut ca, &root, name)
        .await?
        .ok_or_else(|| anyhow!("{name} not found on {}", a.host))?;
    let mut cb = connect(&b).await?;
    if cb.root_nfs_fh3() != root {
        bail!("root handles differ between {} and {}", a.host, b.host);
    }
    let ga = ca
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    let gb = cb
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    let (Nfs3Result::Ok(ga), Nfs3Result::Ok(gb)) = (ga, gb) else {
        bail!("GETATTR with {}'s handle failed on one member", a.host);
    };
    let (x, y) = (&ga.obj_attributes, &gb.obj_attributes);
    let same = x.fileid == y.fileid
        && x.size == y.size
        && x.mode == y.mode
        && x.mtime.seconds == y.mtime.seconds
        && x.mtime.nseconds == y.mtime.nseconds;
    if !same {
        bail!("attributes differ: {x:?} vs {y:?}");
    }
    let da = read64k(&mut ca, fh.clone()).await?;
    let db = read64k(&mut cb, fh).await?;
    if da != db {
        bail!("content read through the same handle differs");
    }
    println!(
        "crosscheck: {name}'s handle from {} works on {} (file id {}, {} bytes, same mtime and data)",
        a.host, b.host, x.fileid, x.size
    );
    Ok(())
}

async fn stall(t: Target, seconds: f64) -> Result<()> {
    use std::time::{Duration, Instant};
    // Mounted once, like the kernel client: the handles stay, and every connection after
    // the first comes from the same local port without a new MOUNT — what the Linux client's
    // RPC transport does, and what lets a new primary's tickle reach a client whose SYN
    // went to the dead host (Documentation/07-failover.md).
    let mut m = connect(&t).await?;
    let root = m.root_nfs_fh3();
    let fh = create(&mut m, &root, "stall").await?;
    drop(m);
    let patience = Duration::from_secs(15);
    let (mut c, port) = nfs_from_port(&t, 0, patience).await?;
    let data = vec![7u8; 4096];
    let start = Instant::now();
    let mut last = Instant::now();
    let (mut worst, mut ops, mut reconnects, mut errors) = (Duration::ZERO, 0u64, 0u32, 0u32);
    // The gap that spans the first lost connection (the failover itself), and the longest
    // gaps before and after it: a disk that stalls a synchronous write now and then shows
    // in all three, a slow takeover only in the first (scripts/bench reports them apart).
    let (mut failover, mut before, mut after) = (None::<Duration>, Duration::ZERO, Duration::ZERO);
    let mut lost = false;
    // JUKEBOX answers: this client retries them at once, the Linux client only after 5 s
    let mut jukebox = 0u32;
    let mut off = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        // A reply normally takes a few ms; a closed connection ends the call at once, and
        // after 250 ms without an answer the client gives up on this connection too.
        let r = tokio::time::timeout(
            Duration::from_millis(250),
            c.write(&WRITE3args {
                file: fh.clone(),
                offset: off,
                count: 4096,
                stable: stable_how::FILE_SYNC,
                data: Opaque::borrowed(&data),
            }),
        )
        .await;
        match r {
            Ok(Ok(Nfs3Result::Ok(_))) => {
                let now = Instant::now();
                let gap = now - last;
                worst = worst.max(gap);
                match (lost, failover) {
                    (false, _) => before = before.max(gap),
                    (true, None) => failover = Some(gap),
                    (true, Some(_)) => after = after.max(gap),
                }
                last = now;
                ops += 1;
                off += 4096;
            }
            Ok(Ok(Nfs3Result::Err((s, _)))) => {
                // an NFS error is a client-visible error (JUKEBOX is retried, as clients do)
                if s as u32 != 10008 {
                    errors += 1;
                } else {
                    jukebox += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => {
                // connection lost or no answer: reconnect to the (virtual) address from the
                // same port and go on with the same handle
                reconnects += 1;
                lost = true;
                drop(c);
                loop {
                    if start.elapsed().as_secs_f64() > seconds + 30.0 {
                        bail!("could not reconnect for 30 s");
                    }
                    match nfs_from_port(&t, port, patience).await {
                        Ok((n, _)) => {
                            c = n;
                            break;
                        }
                        // the old connection's end may hold the port a moment
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
        }
    }
    println!(
        "{{\"max_gap_ms\":{:.1},\"failover_gap_ms\":{},\"max_gap_before_ms\":{:.1},\"max_gap_after_ms\":{:.1},\"ops\":{ops},\"reconnects\":{reconnects},\"errors\":{errors},\"jukebox\":{jukebox}}}",
        worst.as_secs_f64() * 1000.0,
        failover.map_or("null".to_string(), |g| format!("{:.1}", g.as_secs_f64() * 1000.0)),
        before.as_secs_f64() * 1000.0,
        after.as_secs_f64() * 1000.0,
    );
    if errors > 0 {
        bail!("{errors} NFS errors seen by the client");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Stall { target, seconds } => stall(target, seconds).await,
        Cmd::Mixed { target, ops, seed } => mixed(target, ops, seed).await,
        Cmd::Nlm { target, name } => {
            let code = nlm_probe(target, &name).await?;
            std::process::exit(code)
        }
        Cmd::Crosscheck {
            host,
            other,
            port,
            path,
            name,
        } => {
            let a = Target {
                host,
                port,
                mount_port: port,
                path: path.clone(),
            };
            let b = Target {
                host: other,
                port,
                mount_port: port,
                path,
            };
            crosscheck(a, b, &name).await
        }
    }
}

/// One NLM v4 call over UDP to `to` (retried a few times): the status and the holder's
/// caller name when TEST names one.
fn nlm_udp(to: std::net::SocketAddr, proc_: u32, args: &[u8]) -> Result<(u32, Option<String>)> {
    use ftnfs_wire::rpc::{CallHeader, ReplyHeader, Xid};
    use ftnfs_wire::xdr::{XdrReader, XdrWriter};
    let sock = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    let xid = Xid(0x7072_0000 | proc_ | (std::process::id() << 8 & 0xff00));
    let mut w = XdrWriter::new();
    CallHeader::auth_none(
        xid,
        ftnfs_wire::nlm::PROGRAM,
        ftnfs_wire::nlm::VERSION,
        proc_,
    )
    .encode(&mut w);
    w.fixed(args);
    let mut buf = vec![0u8; 4096];
    for _ in 0..5 {
        sock.send_to(w.as_slice(), to)?;
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let mut r = XdrReader::new(&buf[..n]);
        let Ok((x, h)) = ReplyHeader::decode(&mut r) else {
            continue;
        };
        if x != xid {
            continue;
        }
        if h != ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success) {
            bail!("NLM call refused: {h:?}");
        }
        let _cookie = r.opaque(1024).map_err(|e| anyhow!("{e:?}"))?;
        let st = r.u32().map_err(|e| anyhow!("{e:?}"))?;
        // TEST's holder: exclusive, svid, oh, offset, length — and no caller name in v4's
        // holder; the owner handle names it (the Linux client puts its host name there)
        let holder = (proc_ == ftnfs_wire::nlm::procs::TEST && st == 1)
            .then(|| {
                let _excl = r.bool().ok()?;
                let _svid = r.i32().ok()?;
                let oh = r.opaque(1024).ok()?;
                Some(String::from_utf8_lossy(oh).into_owned())
            })
            .flatten();
        return Ok((st, holder));
    }
    bail!("no answer from {to}")
}

async fn nlm_probe(t: Target, name: &str) -> Result<i32> {
    use ftnfs_wire::xdr::{XdrEncode, XdrWriter};
    let mut c = connect(&t).await?;
    let root = c.root_nfs_fh3();
    let fh = lookup(&mut c, &root, name)
        .await?
        .ok_or_else(|| anyhow!("no file {name}"))?;
    let to: std::net::SocketAddr = format!("{}:{}", t.host, t.port).parse()?;
    let alock = ftnfs_wire::nlm::Lock {
        caller_name: b"probe".to_vec(),
        fh: fh.data.to_vec(),
        oh: b"probe-4242".to_vec(),
        svid: 4242,
        offset: 0,
        len: 0,
    };
    let mut w = XdrWriter::new();
    ftnfs_wire::nlm::TestArgs {
        cookie: b"t".to_vec(),
        exclusive: true,
        alock: alock.clone(),
    }
    .encode(&mut w);
    let (test, holder) = nlm_udp(to, ftnfs_wire::nlm::procs::TEST, w.as_slice())?;
    let mut w = XdrWriter::new();
    w.opaque(b"l").bool(false).bool(true);
    alock.encode(&mut w);
    w.bool(false).i32(1); // not a reclaim; our state
    let (lock, _) = nlm_udp(to, ftnfs_wire::nlm::procs::LOCK, w.as_slice())?;
    let says = |s: u32| match s {
        0 => "granted",
        1 => "denied",
        4 => "denied (grace period)",
        _ => "refused",
    };
    println!(
        "TEST {}{} LOCK {}",
        says(test),
        holder
            .map(|h| format!(" (held by {h})"))
            .unwrap_or_default(),
        says(lock)
    );
    Ok(match lock {
        0 => {
            let mut w = XdrWriter::new();
            w.opaque(b"u");
            alock.encode(&mut w);
            let _ = nlm_udp(to, ftnfs_wire::nlm::procs::UNLOCK, w.as_slice());
            0
        }
        1 => 75,
        4 => 76,
        _ => 1,
    })
}
