//! # ftnfsd — the ftnfs daemon
//!
//! Serves NFSv3 and MOUNT v3 over TCP and UDP on one port from local exports, with file
//! handles that never change (see Documentation/). The protocol decisions live in
//! `ftnfs-core`; this crate is the shell that does I/O.
//!
//! ```text
//!  TCP/UDP ─▶ transport ─▶ server::handle ─▶ DRC (core) ─▶ nfs3_procs ─▶ fs (openat2, redb)
//!                                  └──────── reply bytes ◀────────────────┘
//! ```

mod admin;
mod arp;
mod call_stats;
mod changelog;
mod errors;
mod fs;
mod link;
mod local;
mod lock_log;
mod lock_table;
mod metrics;
mod mirror;
mod monitor;
mod multicast;
mod nfs3_procs;
mod nlm;
mod nsm;
mod peer;
mod peer_tls;
mod portmap;
mod recovery;
mod reload;
mod reply_sink;
mod replylog;
mod request_pool;
mod resync;
mod server;
mod transport;
mod udp_dst;
mod verify;
mod vip;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ftnfs_core::drc::DrcLimits;
use ftnfs_core::exports;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "ftnfsd", version, about = "Fault-tolerant NFSv3 server")]
struct Cli {
    /// Exports file (exports(5) syntax plus ftnfs options).
    #[arg(long, required_unless_present = "witness_mode")]
    exports: Option<PathBuf>,
    /// Directory for the identity tables and other state (kept outside the exports).
    #[arg(long)]
    state_dir: PathBuf,
    /// Port for NFS and MOUNT, TCP and UDP.
    #[arg(long, default_value_t = 2049)]
    port: u16,
    /// Address to listen on. The default `::` takes IPv6 and IPv4 clients on one socket
    /// (IPv4 ones seen as their IPv4 address); on a host without IPv6 it falls back to
    /// `0.0.0.0`. `0.0.0.0` takes IPv4 only, any other address only itself.
    #[arg(long, default_value = "::")]
    bind: IpAddr,
    /// Admin socket for ftnfsctl.
    #[arg(long, default_value = "/run/ftnfs/ftnfsd.sock")]
    admin_socket: PathBuf,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off unless given; e.g.
    /// 127.0.0.1:9249): calls, errors and latency per procedure, bytes, the DRC, roles,
    /// epochs, lag, failovers, change logs, resyncs, locks, connections.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Do not register with the portmapper.
    #[arg(long)]
    no_portmap: bool,
    /// Most open TCP connections.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Most requests executing at once.
    #[arg(long, default_value_t = 128)]
    max_inflight: usize,
    /// Most duplicate request cache entries.
    #[arg(long, default_value_t = 16384)]
    drc_entries: usize,
    /// Seconds clients have to reclaim their locks after a start that lost the lock tables
    /// (the host restarted without a clean stop; Documentation/12-locks.md "Cold start").
    #[arg(long, default_value_t = 45)]
    grace_secs: u64,
    /// Check the exports file and exit.
    #[arg(long)]
    check: bool,
    /// This member's name, as used in the exports file's `-ftnfs=A:B` lists (default: the
    /// host name).
    #[arg(long)]
    name: Option<String>,
    /// Another member: `NAME=ADDR:PORT` of its peer channel. Repeat for each member.
    #[arg(long = "peer", value_name = "NAME=ADDR:PORT")]
    peers: Vec<String>,
    /// Address of this member's peer channel.
    #[arg(long, default_value = "0.0.0.0:2050")]
    peer_listen: SocketAddr,
    /// File holding the group's shared secret (with mirrored exports this or --tls-*; at
    /// least 16 bytes; every member needs the same).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// This member's certificate (PEM) for mutual TLS on the peer channel; its DNS name is
    /// the member's --name (`ftnfsctl certs` makes them). With --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The group's CA certificate (PEM): peers must show a certificate it signed.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Alert (log an event) when secondaries report this many client update datagrams
    /// within 10 s that this primary never ordered (proxy mode: it may not receive the
    /// group's datagrams); 0: never.
    #[arg(long, default_value_t = 16)]
    unknown_alert: u64,
    /// Hand the primary role to the member that reports them when secondaries report this
    /// many client update datagrams within 10 s that this primary never ordered *and* it
    /// received fewer update datagrams itself (proxy mode: it does not hear the group's
    /// datagrams; it steps down as for `ftnfsctl demote`); 0: never.
    #[arg(long, default_value_t = 2)]
    unknown_exclude: u64,
    /// Resend an unacknowledged update to a secondary after this many milliseconds.
    #[arg(long, default_value_t = 200)]
    retry_ms: u64,
    /// Sends of one update before a silent secondary is failed out of the export.
    #[arg(long, default_value_t = 5)]
    max_sends: u32,
    /// Heartbeat interval between primary and secondaries, milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Heartbeats missed before a peer counts as silent.
    #[arg(long, default_value_t = 4)]
    heartbeat_misses: u32,
    /// A virtual IP, `[MEMBERS=]ADDR/PREFIX` (IPv4 or IPv6): the virtual server of the
    /// exports mirrored by MEMBERS (as in -ftnfs=, e.g. a:b; the order counts), held by
    /// their primary. Without MEMBERS: the group of the first mirrored export. Repeat for
    /// several groups (each its own primary). Needs --vip-dev.
    #[arg(long, requires = "vip_dev", value_name = "[MEMBERS=]ADDR/PREFIX")]
    vip: Vec<String>,
    /// Interface the virtual IP goes on.
    #[arg(long)]
    vip_dev: Option<String>,
    /// The group's witness, `NAME=ADDR:PORT` (a member run with --witness-mode): with one, a
    /// secondary may take over from a primary that is silent (host down, cut off) when the
    /// witness lost it too, and a primary that loses both fences itself.
    #[arg(long, value_name = "NAME=ADDR:PORT")]
    witness: Option<String>,
    /// Run as a witness only: no exports, no NFS; answers members' questions about each
    /// other on the peer channel (needs --name, --peer for each member, --peer-listen,
    /// --secret-file).
    #[arg(long)]
    witness_mode: bool,
    /// Most bytes (MiB) of each export's change log; a member that was out longer than the
    /// log reaches back is copied in full.
    #[arg(long, default_value_t = 64.0)]
    changelog_max_mb: f64,
    /// Resync rate limit in MiB/s (0: none); `ftnfsctl resync --rate` changes it.
    #[arg(long, default_value_t = 0)]
    resync_rate_mb: u64,
    /// Longest the last pass of a resync may hold clients' writes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    resync_hold_ms: u64,
    /// A member that finds no primary at start waits for `ftnfsctl promote` instead of
    /// becoming primary when every other member is heard and none holds newer updates.
    #[arg(long)]
    manual_start: bool,
}

fn group_of(cli: &Cli) -> anyhow::Result<mirror::Group> {
    let me = match &cli.name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let mut peers = Vec::new();
    let all: Vec<&String> = cli.peers.iter().chain(cli.witness.iter()).collect();
    for (i, p) in all.into_iter().enumerate() {
        let (name, addr) = p
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--peer {p}: expected NAME=ADDR:PORT"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--peer {p}: bad address"))?;
        if name == me || peers.iter().any(|x: &mirror::PeerCfg| x.name == name) {
            anyhow::bail!("--peer {p}: member {name} given twice");
        }
        if i >= 63 {
            anyhow::bail!("too many peers");
        }
        peers.push(mirror::PeerCfg {
            name: name.to_string(),
            addr,
            id: ftnfs_core::ids::MemberId(i as u8 + 1),
        });
    }
    let secret = match &cli.secret_file {
        Some(f) => {
            let s = std::fs::read(f)
                .with_context(|| format!("cannot read secret file {}", f.display()))?;
            let s = s.trim_ascii().to_vec();
            if s.len() < 16 {
                anyhow::bail!("secret file {} holds fewer than 16 bytes", f.display());
            }
            s
        }
        None => Vec::new(),
    };
    let witness = cli.witness.as_ref().and_then(|w| {
        let name = w.split_once('=').map(|(n, _)| n)?;
        peers
            .iter()
            .find(|p: &&mirror::PeerCfg| p.name == name)
            .map(|p| p.id)
    });
    let tls = match (&cli.tls_cert, &cli.tls_key, &cli.tls_ca) {
        (None, None, None) => None,
        (Some(c), Some(k), Some(ca)) => Some(Arc::new(peer_tls::PeerTls::load(c, k, ca)?)),
        _ => anyhow::bail!("--tls-cert, --tls-key and --tls-ca go together"),
    };
    Ok(mirror::Group {
        me,
        peers,
        witness,
        secret,
        tls,
        primary: ftnfs_core::mirror::primary::PrimaryConfig {
            retry_ms: cli.retry_ms.max(1),
            max_sends: cli.max_sends.max(1),
            ..Default::default()
        },
        failover: ftnfs_core::member::settings::FailoverConfig {
            heartbeat_ms: cli.heartbeat_ms.max(10),
            misses: cli.heartbeat_misses.max(1),
        },
        vips: match &cli.vip_dev {
            Some(d) => cli
                .vip
                .iter()
                .map(|v| vip::Vip::parse(v, d).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        },
        hearing: ftnfs_core::member::exclusion::HearingConfig {
            alert: cli.unknown_alert,
            exclude: cli.unknown_exclude,
            window_ms: mirror::UNKNOWN_WINDOW_MS,
        },
        rejoin: mirror::RejoinCfg {
            changelog_max: (cli.changelog_max_mb.max(0.004) * 1048576.0) as u64,
            rate: cli.resync_rate_mb << 20,
            hold_ms: cli.resync_hold_ms,
            manual_start: cli.manual_start,
        },
    })
}

fn write_verifier() -> [u8; 8] {
    // New on every start: boot-unique (time) and process-unique (pid).
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ ((std::process::id() as u64) << 48)).to_be_bytes()
}

/// Descriptors: every connection holds one, and each export keeps directories open
/// (`fs::dircache`); the soft limit (often 1024) is raised to the hard one, as knfsd's and
/// Ganesha's service files do. Returns the limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the descriptor limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // `ftnfsd --man | man -l -`: this man page (roff), before the required options are
    // asked for
    if std::env::args_os()
        .skip(1)
        .eq([std::ffi::OsString::from("--man")])
    {
        use clap::CommandFactory;
        let page = ftnfs_man::render(
            Cli::command(),
            include_str!("../../../Documentation/man/ftnfsd.8.md"),
        )?;
        std::io::Write::write_all(&mut std::io::stdout(), &page)?;
        return Ok(());
    }
    let cli = Cli::parse();
    let list = match &cli.exports {
        Some(e) => reload::read_exports(e)?,
        None => Vec::new(),
    };
    if cli.check {
        println!("{} exports OK", list.len());
        return Ok(());
    }
    // Modes of created objects are exactly what the client asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let fds = raise_fd_limit();
    // a quarter of the descriptors may hold kept directories (fs/dircache.rs), shared by the
    // exports
    fs::dircache::set_cap(fds / 4 / list.len().max(1) as u64);
    std::fs::create_dir_all(&cli.state_dir)
        .with_context(|| format!("cannot create state dir {}", cli.state_dir.display()))?;
    let admin_listener = if cli.witness_mode {
        None
    } else {
        Some(admin::bind(&cli.admin_socket)?)
    };
    let generation = fs::generation_now();
    // once, before anything reads it: it records this boot
    let rebooted = resync::host_rebooted(&cli.state_dir);
    let (monitor, clean_stop) = monitor::Monitor::open(&cli.state_dir).with_context(|| {
        format!(
            "cannot open the status monitor in {}",
            cli.state_dir.display()
        )
    })?;
    // a lock log may have lost its tail with the page cache: the tables start empty and
    // the clients reclaim (recovery.rs) — if any client ever locked
    let cold = rebooted && !clean_stop && !monitor.hosts().is_empty();
    let mut fss = Vec::new();
    for e in list {
        let path = e.path.clone();
        let fs = fs::ExportFs::open(e, &cli.state_dir, generation)?;
        tracing::info!(export = path, id = fs.cfg.id.0, "exporting");
        if cold {
            fs.locks.restore(true, &[]);
        }
        fss.push(fs);
    }
    let cold_exports = if cold {
        fss.iter().map(|f| f.cfg.id).collect()
    } else {
        std::collections::HashSet::new()
    };
    let recovery = recovery::Recovery::new(
        monitor,
        cold_exports,
        std::time::Duration::from_secs(cli.grace_secs),
    );
    let group = group_of(&cli)?;
    let local = Arc::new(local::Local::new(
        fss,
        DrcLimits {
            max_entries: cli.drc_entries,
            ..DrcLimits::default()
        },
        write_verifier(),
        (!cli.witness_mode).then_some(cli.state_dir.as_path()),
        recovery,
    )?);
    {
        // the identity-table changes of `async` clients' calls are made durable within
        // seconds (their replies did not wait: exports(5) async)
        let local = local.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(fs::idtable::ASYNC_FLUSH);
            loop {
                every.tick().await;
                let l = local.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for ex in &l.exports {
                        if let Err(e) = ex.ids.flush_if_unsynced() {
                            tracing::warn!(export = ex.cfg.path, error = %e, "identity table flush failed");
                        }
                    }
                })
                .await;
            }
        });
    }
    if local.exports.iter().any(|e| e.cfg.in_memory) {
        // `InMemory` exports: what their replies did not wait for is stable within
        // MEMORY_FLUSH (Documentation/11-durable-metadata.md)
        let local = local.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(fs::MEMORY_FLUSH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let l = local.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for ex in l.exports.iter().filter(|e| e.cfg.in_memory) {
                        if let Err(e) = ex.flush_memory_updates() {
                            tracing::warn!(export = ex.cfg.path, error = %e, "in-memory updates not flushed");
                        }
                    }
                })
                .await;
            }
        });
    }
    let mirror = Arc::new(mirror::Mirror::new(
        group,
        local.clone(),
        &cli.state_dir,
        rebooted,
    )?);
    if (!mirror.is_empty() || cli.witness_mode)
        && mirror.group.secret.is_empty()
        && mirror.group.tls.is_none()
    {
        anyhow::bail!("mirrored exports need --secret-file (the group's shared secret) or --tls-cert/--tls-key/--tls-ca (mutual TLS)");
    }
    let server = Arc::new(server::Server::new(local, mirror));
    {
        // a member that takes an export over tells lately granted lock waiters again
        let weak = Arc::downgrade(&server);
        server.local.on_takeover(Box::new(move |e| {
            if let Some(s) = weak.upgrade() {
                s.tell_recent_grants(e);
                s.start_lock_recovery(e);
            }
        }));
        // an export served alone serves its locks from now on
        for ex in &server.local.exports {
            if matches!(ex.cfg.mirroring, exports::Mirroring::None) {
                server.start_lock_recovery(ex.cfg.id);
            }
        }
    }
    if let Some(rx) = server
        .nlm_grants
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let s = server.clone();
        let m = server.mirror.clone();
        tokio::spawn(nlm::callbacks(
            rx,
            Arc::new(move |p| s.release_refused(p)),
            Arc::new(move |export| match export {
                Some(e) => m.vip_of(e),
                None => m
                    .vips
                    .iter()
                    .find(|g| g.vip.held())
                    .or(m.vips.first())
                    .map(|g| g.vip.clone()),
            }),
        ));
    }
    {
        // locks of removed files do not stay until their clients restart
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(nlm::PURGE_EVERY).await;
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || s.purge_removed_locks()).await;
            }
        });
    }
    if !server.mirror.is_empty() || cli.witness_mode {
        let l = tokio::net::TcpListener::bind(cli.peer_listen)
            .await
            .with_context(|| format!("cannot listen for peers on {}", cli.peer_listen))?;
        tracing::info!(addr = %cli.peer_listen, me = server.mirror.group.me, "peer channel listening");
        tokio::spawn(peer::serve(server.mirror.clone(), l));
        for g in &server.mirror.vips {
            let mine = server
                .mirror
                .role(g.lead)
                .is_some_and(|r| matches!(&*r, mirror::Role::Primary(_)));
            g.vip.take(mine);
            vip::guard(&g.vip, cli.port);
            if g.vip.multicast {
                if g.vip.addr.is_ipv4() {
                    // (IPv6: the kernel answers no solicitation for an address on lo)
                    multicast::quiet_arp(&g.vip.dev);
                }
                let v = g.vip.clone();
                std::thread::Builder::new()
                    .name("mcast-responder".into())
                    .spawn(move || multicast::responder(v))?;
            }
            tokio::spawn(vip::keeper(g.vip.clone()));
        }
        if !cli.witness_mode {
            peer::spawn_dialers(server.mirror.clone());
        }
        tokio::spawn(mirror::drive(server.mirror.clone()));
    }
    let limits = transport::Limits {
        max_connections: cli.max_connections,
        max_inflight: cli.max_inflight,
        ..transport::Limits::default()
    };
    let transport = transport::Transport::new(server.clone(), limits);
    let addr = SocketAddr::new(cli.bind, cli.port);
    // SIGHUP and `ftnfsctl reload` read the exports file again (reload.rs)
    // and the peer channel's TLS files, so that certificates rotate without a restart
    let tls = server.mirror.group.tls.clone();
    let reloader = (cli.exports.is_some() || tls.is_some()).then(|| {
        Arc::new(reload::Reloader::new(
            cli.exports.clone(),
            cli.state_dir.clone(),
            server.local.clone(),
            tls,
        ))
    });
    if let Some(r) = reloader.clone() {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let r = r.clone();
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!("not reloaded, what was in force stays: {e:#}")
                    }
                    Err(e) => tracing::error!(error = %e, "reload failed"),
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        });
    }
    if cli.witness_mode {
        tracing::info!(
            me = server.mirror.group.me,
            "witness: answering members on the peer channel only"
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return Ok(());
    }
    let (tcp, udp, addr) = transport::listen(addr)?;
    let port = addr.port();
    // the listener takes IPv6 clients: register on the IPv6 netids too
    let ipv6 = addr.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
    tracing::info!(%addr, port, "serving NFSv3 and MOUNT v3 on tcp and udp");
    if !cli.no_portmap {
        let n = tokio::task::spawn_blocking(move || portmap::register(port, true, ipv6)).await?;
        if n > 0 {
            tracing::info!(mappings = n, "registered with portmapper");
        } else {
            tracing::info!("no portmapper answered; serving without registration");
        }
    }
    tokio::spawn(transport.clone().serve_tcp(tcp));
    tokio::spawn(transport.clone().serve_udp(udp));
    if let Some(addr) = cli.metrics {
        let registry = Arc::new(metrics::registry(server.clone(), transport.clone()));
        // bound here, so that a port in use stops the start with its reason
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        listener.set_nonblocking(true)?;
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, registry).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    if let Some(l) = admin_listener {
        let (s, t, p) = (server.clone(), transport.clone(), cli.admin_socket.clone());
        let r = reloader.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(l, s, t, r, port).await {
                tracing::error!(error = %e, path = %p.display(), "admin socket failed");
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // systemd (Type=notify): ready once every listener is up; a no-op outside systemd
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd we are ready");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    {
        let s = server.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let flush = |id| match s.export(id) {
                Some(ex) => nix::unistd::syncfs(ex.root_fd()).map_err(std::io::Error::from),
                None => Ok(()),
            };
            s.mirror.seal(&flush);
            // every lock table durable, then the mark that says so: the next start on a
            // restarted host keeps the tables (recovery.rs)
            let mut synced = true;
            for ex in &s.local.exports {
                if let Err(e) = ex.locks.sync() {
                    tracing::warn!(export = ex.cfg.path, error = %e, "cannot sync the lock table");
                    synced = false;
                }
            }
            if synced {
                if let Err(e) = s.local.recovery.monitor().mark_clean_stop() {
                    tracing::warn!(error = %e, "cannot mark the clean stop");
                }
            }
        })
        .await;
    }
    if !cli.no_portmap {
        let _ = tokio::task::spawn_blocking(move || portmap::register(port, false, ipv6)).await;
    }
    let _ = std::fs::remove_file(&cli.admin_socket);
    Ok(())
}
