//! ftnfsctl — talks to the local ftnfsd over its admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

mod certs;

#[derive(Parser)]
#[command(name = "ftnfsctl", version, about = "Control a running ftnfsd")]
struct Cli {
    /// ftnfsd's admin socket.
    #[arg(long, default_value = "/run/ftnfs/ftnfsd.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Resyncs: progress (passes, objects, bytes, rate) of every resync to or from this
    /// member; `--start` asks every listed secondary that is out to rejoin now; `--rate`
    /// sets the rate limit.
    Resync {
        /// Ask the members that are out to rejoin (a resync follows when they need one).
        #[arg(long)]
        start: bool,
        /// The export (path or id) for --start; all when left out.
        #[arg(long)]
        export: Option<String>,
        /// Rate limit in MiB/s (0: none).
        #[arg(long)]
        rate: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// NLM locks: every lock held (export, file id, client, process, range) and every
    /// client waiting for one.
    Locks {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Frees every lock, wait and share reservation of a client host that died and will
    /// not come back (NLM has no lease; its SM_NOTIFY would do the same). Run it on the
    /// exports' primary.
    Unlock {
        /// The client host, as it names itself in its locks (`ftnfsctl locks`).
        #[arg(long)]
        client: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Exports, clients, connections, per-procedure counters, DRC, mirroring.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Makes this member primary of a mirrored export (a secondary in step, or a member
    /// standing by after a restart without a seal).
    Promote {
        /// The export (path or id); may be left out when there is only one mirrored export.
        #[arg(long)]
        export: Option<String>,
        /// Start even from a mirror this member cannot vouch for (its host restarted without
        /// a clean stop, a resync into it was cut, or it never joined): after every member's
        /// host lost power at once, promote the member with the newest data this way.
        #[arg(long)]
        force: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Makes this member step down from primary of an export (it stands by).
    Demote {
        /// The export (path or id).
        #[arg(long)]
        export: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Makes the certificates for mutual TLS on a group's peer channel (ftnfsd --tls-cert,
    /// --tls-key, --tls-ca): a CA (DIR/ca.pem, DIR/ca.key — kept by the admin, not copied to
    /// members) and per member DIR/NAME.pem and DIR/NAME.key, named by the member's --name.
    /// An existing CA in DIR is reused, so a member can be added later. Works offline.
    Certs {
        /// Where the files go (created, mode 0700).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A member's name (repeat for each member and the witness).
        #[arg(long = "member", value_name = "NAME", required = true)]
        members: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Prints this man page (roff): `ftnfsctl man | man -l -`.
    #[command(hide = true)]
    Man,
    /// Reads the exports file again (as SIGHUP does; `exportfs -r` of knfsd): changed client
    /// lists and options apply to the next call, added exports are served, removed ones
    /// answer STALE. A file with an error is refused whole, `FILE:LINE: reason`, and the
    /// exports in force stay. On a group, reload every member.
    #[command(visible_alias = "exportfs")]
    Reload {
        /// Accepted for `exportfs -r` habits (reload is always a full re-read).
        #[arg(short = 'r', hide = true)]
        r: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The mirroring event log (failovers, members failed out, joins, refusals), newest first.
    Events {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Compares an export's mirrors across members: tree, file ids, generations, types,
    /// modes, owners, sizes, mtimes and content checksums. Lists every difference; exits 1
    /// if there is one. The other members are reached through their admin sockets (for a
    /// remote member, forward its socket: `ssh -L /tmp/b.sock:/run/ftnfs/ftnfsd.sock b`).
    Verify {
        /// Admin socket of another member (repeat for each).
        #[arg(long = "with", value_name = "SOCKET", required = true)]
        with: Vec<PathBuf>,
        /// The export (path or id); may be left out when there is only one.
        #[arg(long)]
        export: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn request(socket: &PathBuf, req: &Value) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let v: Value = serde_json::from_str(&line).context("bad reply from ftnfsd")?;
    if v["ok"] != Value::Bool(true) {
        let why = match &v["error"] {
            Value::String(e) => e.clone(),
            other => other.to_string(),
        };
        bail!("ftnfsd at {}: {why}", socket.display());
    }
    Ok(v)
}

/// Fields compared between mirrors.
const FIELDS: [&str; 9] = [
    "id", "gen", "type", "mode", "uid", "gid", "size", "mtime", "sha256",
];

fn verify(sockets: &[PathBuf], export: Option<&str>, json_out: bool) -> anyhow::Result<bool> {
    let want = match export {
        None => Value::Null,
        Some(e) => match e.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(e),
        },
    };
    let mut members = Vec::new();
    for s in sockets {
        let v = request(s, &serde_json::json!({"cmd": "manifest", "export": want}))?;
        members.push(v);
    }
    let names: Vec<String> = members
        .iter()
        .zip(sockets)
        .map(|(m, s)| {
            m["member"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| s.display().to_string())
        })
        .collect();
    let maps: Vec<std::collections::BTreeMap<String, &Value>> = members
        .iter()
        .map(|m| {
            m["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| Some((e["path"].as_str()?.to_string(), e)))
                .collect()
        })
        .collect();
    let mut paths: std::collections::BTreeSet<&String> = Default::default();
    for m in &maps {
        paths.extend(m.keys());
    }
    let mut diffs: Vec<String> = Vec::new();
    for p in &paths {
        let here: Vec<Option<&&Value>> = maps.iter().map(|m| m.get(*p)).collect();
        // objects made outside ftnfs on a member are not mirrored: say where
        let outside: Vec<&str> = names
            .iter()
            .zip(&here)
            .filter(|(_, e)| e.is_some_and(|e| e["outside_ftnfs"] == true))
            .map(|(n, _)| n.as_str())
            .collect();
        let before = diffs.len();
        if here.iter().any(|e| e.is_none()) {
            let has: Vec<&str> = names
                .iter()
                .zip(&here)
                .filter(|(_, e)| e.is_some())
                .map(|(n, _)| n.as_str())
                .collect();
            diffs.push(format!("{p}: only on {}", has.join(", ")));
        } else {
            for f in FIELDS {
                let vals: Vec<&Value> = here.iter().map(|e| &e.expect("checked")[f]).collect();
                if vals.iter().any(|v| *v != vals[0]) {
                    let shown: Vec<String> = names
                        .iter()
                        .zip(&vals)
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect();
                    diffs.push(format!("{p}: {f} differs: {}", shown.join(" ")));
                }
            }
        }
        if diffs.len() > before && !outside.is_empty() {
            // say why: a change made on one member's disk, not through ftnfs
            diffs.push(format!(
                "{p}: created or replaced outside ftnfs on {} (a local change, not mirrored)",
                outside.join(", ")
            ));
        }
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "export": members[0]["export"],
                "members": names,
                "objects": paths.len(),
                "differences": diffs,
            }))?
        );
    } else {
        println!(
            "export {}: {} objects on {} members ({}): {}",
            members[0]["export"].as_str().unwrap_or("?"),
            paths.len(),
            names.len(),
            names.join(", "),
            if diffs.is_empty() {
                "no difference".to_string()
            } else {
                format!("{} difference(s)", diffs.len())
            }
        );
        for d in &diffs {
            println!("  {d}");
        }
    }
    Ok(diffs.is_empty())
}

impl Cmd {
    /// The command asked for machine-readable output.
    fn json(&self) -> bool {
        match self {
            Cmd::Resync { json, .. }
            | Cmd::Locks { json }
            | Cmd::Unlock { json, .. }
            | Cmd::Status { json }
            | Cmd::Promote { json, .. }
            | Cmd::Demote { json, .. }
            | Cmd::Events { json }
            | Cmd::Reload { json, .. }
            | Cmd::Verify { json, .. } => *json,
            Cmd::Man | Cmd::Certs { .. } => false,
        }
    }
}

/// Errors end the program with one line that carries the whole cause (`--json`: a JSON
/// object `{"ok": false, "error": …}` on standard output) and exit status 1 — no backtrace
/// and no Debug dump for an operator.
fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    let json = cli.cmd.json();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // anyhow's alternate form: "what failed: why: the root cause", on one line
            let msg = format!("{e:#}").replace('\n', " ");
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": msg}));
            } else {
                eprintln!("ftnfsctl: {msg}");
            }
            std::process::ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let export_value = |e: &Option<String>| match e {
        None => Value::Null,
        Some(e) => match e.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(e.as_str()),
        },
    };
    let promote = matches!(cli.cmd, Cmd::Promote { .. });
    let force = matches!(cli.cmd, Cmd::Promote { force: true, .. });
    match cli.cmd {
        Cmd::Certs { out, members, days } => {
            for f in certs::make(&out, &members, days)? {
                println!("{}", f.display());
            }
        }
        Cmd::Man => {
            use clap::CommandFactory;
            let page = ftnfs_man::render(
                Cli::command(),
                include_str!("../../../Documentation/man/ftnfsctl.8.md"),
            )?;
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
        }
        Cmd::Promote { export, json, .. } | Cmd::Demote { export, json } => {
            let cmd = if promote { "promote" } else { "demote" };
            let v = request(
                &cli.socket,
                &serde_json::json!({"cmd": cmd, "export": export_value(&export), "force": force}),
            )?;
            if json {
                println!("{v}");
            } else {
                println!("{}", v["result"].as_str().unwrap_or("done"));
            }
        }
        Cmd::Resync {
            start,
            export,
            rate,
            json,
        } => {
            let mut req = serde_json::json!({"cmd": "resync", "start": start});
            if let Some(r) = rate {
                req["rate_mb"] = r.into();
            }
            if export.is_some() {
                req["export"] = export_value(&export);
            }
            let v = request(&cli.socket, &req)?;
            let r = &v["resync"];
            if json {
                println!("{}", serde_json::to_string_pretty(r)?);
            } else {
                print_resync(r);
            }
        }
        Cmd::Unlock { client, json } => {
            let v = request(
                &cli.socket,
                &serde_json::json!({"cmd": "unlock", "client": client}),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("freed {} locks and waits of {client}", v["freed"]);
                for p in v["not_primary"].as_array().into_iter().flatten() {
                    println!(
                        "  {}: not the primary here; run it on the export's primary",
                        p.as_str().unwrap_or("?")
                    );
                }
            }
        }
        Cmd::Locks { json } => {
            let v = request(&cli.socket, &serde_json::json!({"cmd": "locks"}))?;
            let l = &v["locks"];
            if json {
                println!("{}", serde_json::to_string_pretty(l)?);
            } else {
                for (what, list) in [("held", &l["held"]), ("waiting", &l["waiting"])] {
                    let rows = list.as_array().cloned().unwrap_or_default();
                    println!("{what}: {}", rows.len());
                    for r in rows {
                        let end = match r["end"].as_u64() {
                            Some(e) => e.to_string(),
                            None => "EOF".into(),
                        };
                        println!(
                            "  export {} file {}  {} {}  bytes {}-{}  client {} process {}",
                            r["export"],
                            r["file"],
                            if r["exclusive"] == true {
                                "write"
                            } else {
                                "read"
                            },
                            what,
                            r["start"],
                            end,
                            r["client"].as_str().unwrap_or("?"),
                            r["svid"]
                        );
                    }
                }
            }
        }
        Cmd::Reload { json, .. } => {
            let v = request(&cli.socket, &serde_json::json!({"cmd": "reload"}))?;
            let r = &v["reload"];
            if json {
                println!("{}", serde_json::to_string_pretty(r)?);
            } else {
                let list = |k: &str| -> String {
                    let a = r[k].as_array().cloned().unwrap_or_default();
                    if a.is_empty() {
                        "none".into()
                    } else {
                        a.iter()
                            .map(|p| p.as_str().unwrap_or("?").to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                };
                println!("exports reloaded");
                println!("  added:     {}", list("added"));
                println!("  removed:   {}", list("removed"));
                println!("  changed:   {}", list("changed"));
                println!("  unchanged: {}", r["unchanged"]);
                if r["peer_tls_reloaded"] == true {
                    println!("peer TLS keys reloaded: new peer connections use them");
                }
            }
        }
        Cmd::Events { json } => {
            let v = request(&cli.socket, &serde_json::json!({"cmd": "events"}))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["events"])?);
            } else {
                for e in v["events"].as_array().into_iter().flatten() {
                    println!(
                        "{:>10.3} s  export {}  {}",
                        e["at_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        e["export"],
                        e["what"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Cmd::Verify { with, export, json } => {
            let mut sockets = vec![cli.socket.clone()];
            sockets.extend(with);
            if !verify(&sockets, export.as_deref(), json)? {
                std::process::exit(1);
            }
        }
        Cmd::Status { json } => {
            let v = request(&cli.socket, &serde_json::json!({"cmd": "status"}))?;
            let st = &v["status"];
            if json {
                println!("{}", serde_json::to_string_pretty(st)?);
            } else {
                print_human(st);
            }
        }
    }
    Ok(())
}

fn print_human(st: &Value) {
    print_mirror(&st["mirror"]);
    println!(
        "ftnfsd {} on port {}, up {} s, {} connection(s)",
        st["version"].as_str().unwrap_or("?"),
        st["port"],
        st["uptime_ms"].as_u64().unwrap_or(0) / 1000,
        st["connections"]
    );
    println!("exports:");
    for e in st["exports"].as_array().into_iter().flatten() {
        let clients: Vec<String> = e["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}({})",
                    c["spec"].as_str().unwrap_or("?"),
                    if c["rw"] == Value::Bool(true) {
                        "rw"
                    } else {
                        "ro"
                    }
                )
            })
            .collect();
        println!(
            "  {}  id={} gen={}  {}",
            e["path"].as_str().unwrap_or("?"),
            e["id"],
            e["generation"],
            clients.join(" ")
        );
    }
    let vips: Vec<&Value> = st["virtual_ips"].as_array().into_iter().flatten().collect();
    if !vips.is_empty() {
        println!("virtual IPs:");
        for v in vips {
            let ids: Vec<String> = v["exports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            let multicast = if v["multicast"] == Value::Bool(true) {
                format!(
                    "  multicast ({} datagrams for another holder dropped)",
                    v["foreign_datagrams"].as_u64().unwrap_or(0)
                )
            } else {
                String::new()
            };
            println!(
                "  {}  exports {}  {}{multicast}",
                v["addr"].as_str().unwrap_or("?"),
                ids.join(","),
                if v["held"] == Value::Bool(true) {
                    "held here (primary)"
                } else {
                    "elsewhere"
                }
            );
        }
    }
    println!("mounted by:");
    for c in st["clients"].as_array().into_iter().flatten() {
        println!(
            "  {} {}",
            c["client"].as_str().unwrap_or("?"),
            c["path"].as_str().unwrap_or("?")
        );
    }
    println!("nfs3 calls:");
    if let Some(m) = st["counters"]["nfs3"].as_object() {
        for (k, v) in m {
            if v.as_u64().unwrap_or(0) > 0 {
                println!("  {k:<12} {v}");
            }
        }
    }
    println!("rpc errors: {}", st["counters"]["rpc_errors"]);
    println!(
        "drc: {} entries, {} bytes, {} replays",
        st["drc"]["entries"], st["drc"]["bytes"], st["drc"]["replays"]
    );
    let l = &st["locks"];
    println!(
        "locks: {} held, {} waiting, on {} files; {} client hosts monitored (NSM state {})",
        l["held"], l["waiting"], l["files"], l["monitored_hosts"], l["nsm_state"]
    );
    for e in l["exports"].as_array().into_iter().flatten() {
        let grace = match e["grace_s"].as_u64() {
            Some(s) => format!(" (grace period: clients reclaim, {s} s left)"),
            None => String::new(),
        };
        println!(
            "  export {}: {} held, {} waiting{grace}",
            e["path"].as_str().unwrap_or("?"),
            e["held"],
            e["waiting"]
        );
    }
    for c in l["clients"].as_array().into_iter().flatten() {
        println!(
            "  client {}: {} held, {} waiting",
            c["client"].as_str().unwrap_or("?"),
            c["held"],
            c["waiting"]
        );
    }
}

fn print_resync(r: &Value) {
    let rate = r["rate_mib_per_s"].as_u64().unwrap_or(0);
    println!(
        "resync rate limit: {}; last pass holds writes at most {} ms",
        if rate == 0 {
            "none".to_string()
        } else {
            format!("{rate} MiB/s")
        },
        r["hold_ms"]
    );
    for a in r["started"]["asked"].as_array().into_iter().flatten() {
        println!(
            "asked {} to rejoin export {}",
            a["member"].as_str().unwrap_or("?"),
            a["export"]
        );
    }
    let list = r["resyncs"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no resync running or recently finished");
    }
    for x in list {
        let p = &x["progress"];
        println!(
            "export {} {} {}: {}, pass {}, {} objects, {} MiB in {} s ({} MiB/s) — {}{}",
            x["export"],
            if x["direction"] == "out" {
                "to"
            } else {
                "from"
            },
            p["member"].as_str().unwrap_or("?"),
            p["why"].as_str().unwrap_or(""),
            p["pass"],
            p["objects"],
            p["bytes"].as_u64().unwrap_or(0) >> 20,
            p["seconds"],
            p["mib_per_s"],
            p["phase"].as_str().unwrap_or(""),
            if p["done"] == Value::Bool(true) {
                " (finished)"
            } else {
                ""
            }
        );
    }
}

fn print_mirror(m: &Value) {
    let Some(exports) = m["exports"].as_array().filter(|e| !e.is_empty()) else {
        return;
    };
    println!(
        "mirroring: this member is {}",
        m["me"].as_str().unwrap_or("?")
    );
    for p in m["peers"].as_array().into_iter().flatten() {
        println!(
            "  peer {} at {}: {}",
            p["name"].as_str().unwrap_or("?"),
            p["addr"].as_str().unwrap_or("?"),
            if p["linked"] == Value::Bool(true) {
                "linked"
            } else {
                "not linked"
            }
        );
    }
    for e in exports {
        let role = e["role"].as_str().unwrap_or("?");
        match role {
            "primary" => {
                let secs: Vec<String> = e["secondaries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{} {}",
                            s["name"].as_str().unwrap_or("?"),
                            if s["joined"] == Value::Bool(true) {
                                "live"
                            } else if s["live"] == Value::Bool(true) {
                                "joining"
                            } else {
                                "OUT"
                            }
                        )
                    })
                    .collect();
                println!(
                    "  export {}: primary, epoch {}, update {}, lag {}, secondaries: {}",
                    e["export"],
                    e["epoch"],
                    e["last_seq"],
                    e["lag"],
                    secs.join(", ")
                );
            }
            "secondary" => println!(
                "  export {}: secondary of {}, epoch {}, applied {}, primary heard {} ms ago{}",
                e["export"],
                e["primary"].as_str().unwrap_or("?"),
                e["epoch"],
                e["applied"],
                e["primary_last_heard_ms_ago"],
                if e["demoted"] == Value::Bool(true) {
                    " (demoted: stays secondary until `ftnfsctl promote`)"
                } else {
                    ""
                }
            ),
            _ => println!(
                "  export {}: {role}, epoch {}: {}",
                e["export"],
                e["epoch"],
                e["why"].as_str().unwrap_or("")
            ),
        }
    }
}

/// `ftnfsctl verify | head` must end quietly when the reader goes away. Rust ignores SIGPIPE,
/// so a write to a closed pipe is an error that `println!` turns into a panic; a panic hook
/// that sees that message exits quietly instead (status 141, as a shell tool killed by
/// SIGPIPE would).
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("failed printing to stdout") {
            std::process::exit(141);
        }
        default(info);
    }));
}
