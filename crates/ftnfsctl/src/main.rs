//! ftnfsctl — talks to the local ftnfsd over its admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

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
    /// Exports, clients, connections, per-procedure counters, DRC.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Status { json } => {
            let mut s = UnixStream::connect(&cli.socket)
                .with_context(|| format!("cannot connect to {}", cli.socket.display()))?;
            s.write_all(b"{\"cmd\":\"status\"}\n")?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line)?;
            let v: Value = serde_json::from_str(&line).context("bad reply from ftnfsd")?;
            if v["ok"] != Value::Bool(true) {
                bail!("ftnfsd: {}", v["error"]);
            }
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
}
