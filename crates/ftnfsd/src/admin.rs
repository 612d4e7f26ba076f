//! The admin socket: one JSON request per line in, one JSON reply per line out.
//! `{"cmd":"status"}` is what `ftnfsctl status` sends.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ftnfs_core::exports::Mirroring;
use ftnfs_core::proc_table;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::server::Server;
use crate::transport::Transport;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Builds the status document.
pub fn status(server: &Server, transport: &Transport, port: u16) -> Value {
    let exports: Vec<Value> = server
        .local
        .exports
        .iter()
        .map(|e| {
            let mirroring = match &e.cfg.mirroring {
                Mirroring::None => json!(null),
                Mirroring::Group { members, read_mode } => {
                    json!({"members": members, "read_mode": format!("{read_mode:?}")})
                }
                Mirroring::Split { read, write } => json!({"read": read, "write": write}),
            };
            json!({
                "path": e.cfg.path,
                "id": e.cfg.id.0,
                "generation": e.ids.generation().0,
                "served": e.served(),
                "clients": e.clients().unwrap_or_default().iter().map(|c| json!({
                    "spec": c.spec.describe(),
                    "rw": c.options.read_write,
                    "sync": c.options.sync,
                    "root_squash": c.options.squash.root_squash,
                    "all_squash": c.options.squash.all_squash,
                    "secure": c.options.secure,
                })).collect::<Vec<_>>(),
                "mirroring": mirroring,
            })
        })
        .collect();
    let count = |arr: &[std::sync::atomic::AtomicU64], table: &[proc_table::ProcInfo]| {
        let mut m = serde_json::Map::new();
        for (i, c) in arr.iter().enumerate() {
            m.insert(table[i].name.to_string(), json!(c.load(Ordering::Relaxed)));
        }
        Value::Object(m)
    };
    let mounts = server
        .mounts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let drc = server.local.drc.lock().unwrap_or_else(|p| p.into_inner());
    let st = drc.stats();
    let locks = server.lock_summary();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "port": port,
        "uptime_ms": server.now().0,
        "write_verifier": hex(&server.local.write_verf),
        "exports": exports,
        // the virtual servers: each address, the exports it serves, whether it is here
        "virtual_ips": server.mirror.vips.iter().map(|g| json!({
            "addr": g.vip.addr.to_string(),
            "exports": g.exports.iter().map(|e| e.0).collect::<Vec<_>>(),
            "held": g.vip.held(),
            "multicast": g.vip.multicast,
            "foreign_datagrams": g.vip.foreign.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
        "clients": mounts.iter().map(|(ip, p)| json!({"client": ip.to_string(), "path": p})).collect::<Vec<_>>(),
        "connections": transport.open_connections.load(Ordering::Relaxed),
        "counters": {
            "nfs3": count(&server.counters.nfs, &proc_table::NFS3),
            "mount3": count(&server.counters.mount, &proc_table::MOUNT3),
            "rpc_errors": server.counters.rpc_errors.load(Ordering::Relaxed),
        },
        "mirror": server.mirror.status(server.now()),
        "locks": locks,
        "drc": {
            "entries": drc.len(),
            "bytes": drc.bytes(),
            "replays": st.replays,
            "dropped_in_progress": st.dropped_in_progress,
            "evictions": st.evictions,
            "reply_log_bytes": server.local.reply_log_size(),
        },
    })
}

/// `{"cmd":"promote"|"demote","export":PATH|ID[,"force":true]}`: planned role changes.
fn role_change(server: &Server, cmd: &str, want: &Value, force: bool) -> Value {
    let ex = match find_export(server, want) {
        Ok(e) => e,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let id = ex.cfg.id;
    let now = server.now();
    let r = if cmd == "promote" {
        server.mirror.promote_by_operator(id, now, force)
    } else {
        match server.mirror.role(id).as_deref() {
            Some(crate::mirror::Role::Primary(_)) => server
                .mirror
                .demote(id, now, "ftnfsctl demote".into())
                .map(|()| "demoted".into()),
            _ => Err("not primary of this export".to_string()),
        }
    };
    match r {
        Ok(what) => json!({"ok": true, "result": what}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn find_export<'a>(server: &'a Server, want: &Value) -> Result<&'a crate::fs::ExportFs, String> {
    let found: Vec<&crate::fs::ExportFs> = server
        .local
        .exports
        .iter()
        .filter(|e| match want {
            Value::Null => {
                !matches!(e.cfg.mirroring, Mirroring::None) || server.local.exports.len() == 1
            }
            Value::String(p) => e.cfg.path == *p,
            Value::Number(n) => n.as_u64() == Some(e.cfg.id.0 as u64),
            _ => false,
        })
        .collect();
    match found[..] {
        [ex] => Ok(ex),
        [] => Err(format!("no export {want}")),
        _ => Err("several exports: name one with --export".into()),
    }
}

fn return_error(v: &mut Value, e: String) {
    v["error"] = Value::from(e);
}

/// `{"cmd":"manifest","export":PATH|ID}`: the export's manifest (`verify.rs`). Without
/// `export`, the only export (or an error if there are several).
fn manifest(server: &Server, want: &Value) -> Value {
    let found: Vec<&crate::fs::ExportFs> = server
        .local
        .exports
        .iter()
        .filter(|e| match want {
            Value::Null => true,
            Value::String(p) => e.cfg.path == *p,
            Value::Number(n) => n.as_u64() == Some(e.cfg.id.0 as u64),
            _ => false,
        })
        .collect();
    let ex = match found[..] {
        [ex] => ex,
        [] => return json!({"ok": false, "error": format!("no export {want}")}),
        _ => return json!({"ok": false, "error": "several exports: name one with --export"}),
    };
    match crate::verify::manifest(ex) {
        Ok(entries) => json!({
            "ok": true,
            "export": ex.cfg.path,
            "id": ex.cfg.id.0,
            "member": server.mirror.group.me,
            "entries": entries,
        }),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Frees every lock, wait and share reservation of client host `client` (the name it locks
/// with), as its SM_NOTIFY would: for a client that died and will not come back (NLM has no
/// lease). Only where this member serves the export: a secondary's table follows its
/// primary's, so those exports are named for the operator to run it there.
fn unlock_client(server: &Server, client: &str) -> Value {
    let (freed, skipped) =
        server.free_host_where(client, std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let elsewhere: Vec<&str> = skipped.iter().map(|ex| ex.cfg.path.as_str()).collect();
    tracing::info!(client, freed, "operator freed a client's locks");
    json!({"ok": true, "client": client, "freed": freed, "not_primary": elsewhere})
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Binds the admin socket, first thing at start (before the exports and change logs are
/// opened, which can be slow): a socket file left by a killed daemon is replaced, and from
/// here on a client's connect succeeds and waits in the backlog until [`serve`] answers,
/// instead of being refused by the stale file.
pub fn bind(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale admin socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(format!("cannot remove {}", path.display())),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind admin socket {}", path.display()))?;
    // Only root may talk to the daemon.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves the admin socket (bound by [`bind`]) until the process ends.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    server: Arc<Server>,
    transport: Arc<Transport>,
    reloader: Option<Arc<crate::reload::Reloader>>,
    port: u16,
) -> anyhow::Result<()> {
    let listener = UnixListener::from_std(listener)?;
    loop {
        let (sock, _) = listener.accept().await?;
        let server = server.clone();
        let transport = transport.clone();
        let reloader = reloader.clone();
        tokio::spawn(async move {
            let (rd, mut wr) = sock.into_split();
            let mut lines = BufReader::new(rd.take(MAX_LINE as u64)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let reply = match req.get("cmd").and_then(Value::as_str) {
                    Some("status") => {
                        json!({"ok": true, "status": status(&server, &transport, port)})
                    }
                    Some("locks") => {
                        let s = server.clone();
                        tokio::task::spawn_blocking(move || {
                            s.purge_removed_locks();
                            json!({"ok": true, "locks": s.locks_json()})
                        })
                        .await
                        .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
                    }
                    Some("unlock") => match req.get("client").and_then(Value::as_str) {
                        Some(client) if !client.is_empty() => {
                            let s = server.clone();
                            let client = client.to_string();
                            tokio::task::spawn_blocking(move || unlock_client(&s, &client))
                                .await
                                .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
                        }
                        _ => json!({"ok": false, "error": "name the client host"}),
                    },
                    Some("events") => {
                        json!({"ok": true, "events": server.mirror.events(1024)})
                    }
                    Some(cmd @ ("promote" | "demote")) => {
                        let s = server.clone();
                        let cmd = cmd.to_string();
                        let want = req.get("export").cloned().unwrap_or(Value::Null);
                        let force = req.get("force") == Some(&Value::Bool(true));
                        tokio::task::spawn_blocking(move || role_change(&s, &cmd, &want, force))
                            .await
                            .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
                    }
                    Some("resync") => {
                        let rate = req.get("rate_mb").and_then(|r| r.as_u64());
                        let mut v = server.mirror.resync_status(rate);
                        if req.get("start") == Some(&Value::Bool(true)) {
                            let export = match req.get("export") {
                                None | Some(Value::Null) => None,
                                Some(w) => match find_export(&server, w) {
                                    Ok(e) => Some(e.cfg.id),
                                    Err(e) => {
                                        return_error(&mut v, e);
                                        None
                                    }
                                },
                            };
                            if v.get("error").is_none() {
                                v["started"] = server.mirror.resync_start(export, server.now());
                            }
                        }
                        let ok = v.get("error").is_none();
                        json!({"ok": ok, "resync": v})
                    }
                    Some("reload") => match reloader.clone() {
                        None => json!({"ok": false, "error": "ftnfsd was started without --exports or --tls-*: nothing to reload"}),
                        Some(r) => tokio::task::spawn_blocking(move || match r.reload() {
                            Ok(o) => json!({"ok": true, "reload": o}),
                            Err(e) => json!({"ok": false, "error": format!("{e:#}; the old exports stay in force")}),
                        })
                        .await
                        .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()})),
                    },
                    Some("manifest") => {
                        let s = server.clone();
                        let want = req.get("export").cloned().unwrap_or(Value::Null);
                        tokio::task::spawn_blocking(move || manifest(&s, &want))
                            .await
                            .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
                    }
                    Some(other) => {
                        json!({"ok": false, "error": format!("unknown command {other:?}")})
                    }
                    None => json!({"ok": false, "error": "expected {\"cmd\": ...}"}),
                };
                let mut out = reply.to_string();
                out.push('\n');
                if wr.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}
