//! The client side of `scripts/bench`: one NFSv3 client (the `nfs3_client` crate, written by
//! others) that runs the same workload against any server and prints its figures as one JSON
//! line. Sequential write and read use several connections, each with one request in flight,
//! striped over 1 MiB chunks; the metadata loop is CREATE, GETATTR, REMOVE on one connection.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nfs3_client::nfs3_types::nfs3::{
    createhow3, diropargs3, nfs_fh3, sattr3, stable_how, COMMIT3args, CREATE3args, GETATTR3args,
    Nfs3Option, Nfs3Result, READ3args, REMOVE3args, WRITE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};

#[derive(Parser)]
struct Args {
    /// Server address.
    #[arg(long)]
    host: String,
    /// NFS port.
    #[arg(long, default_value_t = 2049)]
    port: u16,
    /// MOUNT port.
    #[arg(long, default_value_t = 2049)]
    mount_port: u16,
    /// Exported path to mount.
    #[arg(long)]
    path: String,
    /// Size of the sequential file in MiB.
    #[arg(long, default_value_t = 256)]
    mib: u32,
    /// Connections used for the sequential write and read.
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// Iterations of the metadata loop (each is CREATE, GETATTR, REMOVE).
    #[arg(long, default_value_t = 2000)]
    meta: u32,
    /// A tag copied into the output line.
    #[arg(long, default_value = "")]
    tag: String,
}

type Conn = Nfs3Connection<TokioIo<tokio::net::TcpStream>>;
const CHUNK: u32 = 1 << 20;

async fn connect(a: &Args) -> Result<Conn> {
    let auth = auth_unix {
        stamp: 1,
        machinename: Opaque::borrowed(b"bench"),
        uid: 0,
        gid: 0,
        gids: vec![],
    };
    Nfs3ConnectionBuilder::new(TokioConnector, a.host.clone(), a.path.clone())
        .mount_port(a.mount_port)
        .nfs3_port(a.port)
        .connect_from_privileged_port(false)
        .credential(opaque_auth::auth_unix(&auth))
        .mount()
        .await
        .map_err(|e| anyhow!("mount {}:{}: {e:?}", a.host, a.path))
}

fn ok<T, F: std::fmt::Debug>(r: Nfs3Result<T, F>, what: &str) -> Result<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((stat, _)) => bail!("{what}: {stat:?}"),
    }
}

async fn create(c: &mut Conn, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3> {
    let r = c
        .create(&CREATE3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: name.as_bytes().into(),
            },
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    match ok(r, "CREATE")?.obj {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => bail!("CREATE returned no handle"),
    }
}

async fn remove(c: &mut Conn, dir: &nfs_fh3, name: &str) -> Result<()> {
    let r = c
        .remove(&REMOVE3args {
            object: diropargs3 {
                dir: dir.clone(),
                name: name.as_bytes().into(),
            },
        })
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    ok(r, "REMOVE").map(|_| ())
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

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let mut c = connect(&a).await?;
    let root = c.root_nfs_fh3();
    let name = format!("bench-seq-{}", std::process::id());
    let fh = create(&mut c, &root, &name).await?;
    let mut conns = vec![];
    for _ in 0..a.streams.max(1) {
        conns.push(connect(&a).await?);
    }
    let n = conns.len() as u32;
    let chunks = a.mib;

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

    let t = Instant::now();
    let mut tasks = vec![];
    for (i, cn) in conns.into_iter().enumerate() {
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
    remove(&mut c, &root, &name).await?;

    let t = Instant::now();
    for i in 0..a.meta {
        let name = format!("m{i}");
        let fh = create(&mut c, &root, &name).await?;
        let r = c
            .getattr(&GETATTR3args { object: fh })
            .await
            .map_err(|e| anyhow!("{e:?}"))?;
        ok(r, "GETATTR")?;
        remove(&mut c, &root, &name).await?;
    }
    let meta_s = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "tag": a.tag,
            "write_mib_s": f64::from(a.mib) / write_s,
            "read_mib_s": f64::from(a.mib) / read_s,
            "meta_ops_s": f64::from(a.meta * 3) / meta_s,
        })
    );
    Ok(())
}
