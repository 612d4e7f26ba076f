//! NFSv3 client helpers shared by the benchmark client (`ftnfs-bench-client`) and the load
//! generator (`ftnfs-load`), both built on the independent `nfs3_client` crate.

use anyhow::{anyhow, bail, Result};
use nfs3_client::nfs3_types::nfs3::{
    createhow3, diropargs3, nfs_fh3, sattr3, CREATE3args, Nfs3Option, Nfs3Result, REMOVE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};

/// Where to mount: the command-line arguments every bench client shares
/// (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Server address.
    #[arg(long)]
    pub host: String,
    /// NFS port.
    #[arg(long, default_value_t = 2049)]
    pub port: u16,
    /// MOUNT port.
    #[arg(long, default_value_t = 2049)]
    pub mount_port: u16,
    /// Exported path to mount.
    #[arg(long)]
    pub path: String,
}

/// A mounted connection.
pub type Conn = Nfs3Connection<TokioIo<tokio::net::TcpStream>>;
/// Request size of the sequential runs.
pub const CHUNK: u32 = 1 << 20;

/// The credential of every bench connection: AUTH_SYS, uid 0.
pub fn root_auth() -> opaque_auth<'static> {
    let auth = auth_unix {
        stamp: 1,
        machinename: Opaque::borrowed(b"bench"),
        uid: 0,
        gid: 0,
        gids: vec![],
    };
    opaque_auth::auth_unix(&auth)
}

/// Mounts `a.path` as root (AUTH_SYS uid 0) from an unprivileged port.
pub async fn connect(a: &Target) -> Result<Conn> {
    Nfs3ConnectionBuilder::new(TokioConnector, a.host.clone(), a.path.clone())
        .mount_port(a.mount_port)
        .nfs3_port(a.port)
        .connect_from_privileged_port(false)
        .credential(root_auth())
        .mount()
        .await
        .map_err(|e| anyhow!("mount {}:{}: {e:?}", a.host, a.path))
}

/// An NFS connection as the Linux client's transport makes it: from `local_port` (0 the
/// first time: any), the same at every reconnect (the RPC transport keeps its source port),
/// without a new MOUNT, the kernel's own SYN retransmissions inside `patience`. The client
/// and the port it got.
pub async fn nfs_from_port(
    a: &Target,
    local_port: u16,
    patience: std::time::Duration,
) -> Result<(nfs3_client::Nfs3Client<TokioIo<tokio::net::TcpStream>>, u16)> {
    let to = tokio::net::lookup_host((a.host.as_str(), a.port))
        .await?
        .find(|s| s.is_ipv4())
        .ok_or_else(|| anyhow!("{}: no IPv4 address", a.host))?;
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(std::net::SocketAddr::from(([0, 0, 0, 0], local_port)))?;
    let stream = tokio::time::timeout(patience, s.connect(to))
        .await
        .map_err(|_| anyhow!("connect {to}: no answer in {patience:?}"))??;
    let port = stream.local_addr()?.port();
    stream.set_nodelay(true)?;
    let c = nfs3_client::Nfs3Client::new_with_auth(
        TokioIo::new(stream),
        root_auth(),
        opaque_auth::default(),
    );
    Ok((c, port))
}

/// The ok body of a result, or an error naming the status.
pub fn ok<T, F: std::fmt::Debug>(r: Nfs3Result<T, F>, what: &str) -> Result<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((stat, _)) => bail!("{what}: {stat:?}"),
    }
}

/// CREATE UNCHECKED; the new handle.
pub async fn create(c: &mut Conn, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3> {
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

/// REMOVE.
pub async fn remove(c: &mut Conn, dir: &nfs_fh3, name: &str) -> Result<()> {
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
