//! Writes a file over NFSv3 on UDP with every datagram sent to each of several members, as a
//! multicast virtual IP delivers it (DESIGN.md decision 8; `scripts/bench ONLY=fanout`
//! measures what the primary sends per byte written, relay against proxy mode).
//!
//! The file is created over TCP (mounted with the `nfs3_client` crate); then `--mib` MiB go
//! as 32 KiB UNSTABLE WRITEs, one at a time, each datagram to every `--to` address from one
//! socket (so every member sees the same source port and xid), retransmitted to all until
//! one answers; a COMMIT the same way. Prints one JSON line.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ftnfs_bench::{connect, create, Target};
use ftnfs_wire::nfs3::{self, Args, NfsFh3, StableHow};
use ftnfs_wire::rpc::{AuthSys, ReplyHeader, Xid};
use ftnfs_wire::{XdrEncode, XdrReader};

/// Bytes per WRITE (a UDP datagram's payload must stay below 64 KiB).
const CHUNK: usize = 32 << 10;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    target: Target,
    /// Every member's NFS address (ADDR:PORT); each datagram goes to all of them.
    #[arg(long = "to", required = true)]
    to: Vec<SocketAddr>,
    /// MiB to write.
    #[arg(long, default_value_t = 64)]
    mib: usize,
}

fn call(xid: u32, proc_: u32, args: &Args) -> Vec<u8> {
    let cred = AuthSys {
        stamp: 1,
        machine_name: b"fanout".to_vec(),
        uid: 0,
        gid: 0,
        gids: vec![],
    };
    ftnfs_wire::rpc::sys_call(Xid(xid), nfs3::PROGRAM, 3, proc_, &cred, &args.to_bytes())
}

/// Sends `rec` to every address until a reply to `xid` comes; its NFS status.
fn exchange(s: &UdpSocket, to: &[SocketAddr], xid: u32, rec: &[u8]) -> Result<u32> {
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        for a in to {
            s.send_to(rec, a)?;
        }
        let resend = Instant::now() + Duration::from_millis(500);
        while Instant::now() < resend {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                break;
            };
            if n >= 4 && u32::from_be_bytes(buf[..4].try_into().unwrap()) == xid {
                let mut r = XdrReader::new(&buf[..n]);
                let (_, h) = ReplyHeader::decode(&mut r).context("reply")?;
                if h != ReplyHeader::Accepted(ftnfs_wire::rpc::AcceptStat::Success) {
                    bail!("xid {xid}: {h:?}");
                }
                return Ok(r.u32()?);
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("xid {xid}: no answer in 60 s");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut c = connect(&cli.target).await?;
    let root = c.root_nfs_fh3();
    let fh = create(&mut c, &root, "udp-fanout").await?;
    let file = NfsFh3(fh.data.to_vec());
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let data = vec![0x5au8; CHUNK];
    let total = cli.mib << 20;
    let t0 = Instant::now();
    let mut xid = 0x4000_0000u32;
    let mut off = 0usize;
    while off < total {
        xid += 1;
        let n = CHUNK.min(total - off);
        let a = Args::Write {
            file: file.clone(),
            offset: off as u64,
            count: n as u32,
            stable: StableHow::Unstable,
            data: data[..n].to_vec().into(),
        };
        let st = exchange(&s, &cli.to, xid, &call(xid, nfs3::procs::WRITE, &a))?;
        if st != 0 {
            bail!("WRITE at {off}: status {st}");
        }
        off += n;
    }
    xid += 1;
    let commit = Args::Commit {
        file,
        offset: 0,
        count: 0,
    };
    let st = exchange(&s, &cli.to, xid, &call(xid, nfs3::procs::COMMIT, &commit))?;
    if st != 0 {
        bail!("COMMIT: status {st}");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"written": total, "mib_s": total as f64 / 1048576.0 / secs})
    );
    Ok(())
}
