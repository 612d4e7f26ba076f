//! Prometheus metrics on an opt-in HTTP listener (`--metrics ADDR:PORT`, `GET /metrics`),
//! encoded by `prometheus-client` in the OpenMetrics text format.
//!
//! Two kinds: what the request path counts as it goes (`call_stats.rs`: per-procedure
//! latency histograms and errors, bytes read and written — beside the call counters `Server`
//! already keeps), and what is read at scrape time from the state the daemon holds anyway (roles,
//! epochs, lag, the DRC, change logs, resyncs, locks, connections: [`Collect`]), so that a
//! scrape shows the same numbers as `ftnfsctl status` and nothing is kept twice.
//! Alert rules and panels: `Documentation/operations.md`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ftnfs_core::proc_table;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;

use crate::server::Server;
use crate::transport::Transport;

/// Most scrapes served at once; more wait for their turn.
const MAX_SCRAPES: usize = 8;

/// What a scrape reads from the daemon's state.
struct Collect {
    server: Arc<Server>,
    transport: Arc<Transport>,
}

// required of a collector by prometheus-client
impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collect")
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its name, help, type and samples.
fn family<M: EncodeMetric + TypedMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, unit, M::TYPE)?;
    for (labels, v) in samples {
        if labels.is_empty() {
            v.encode(m)?; // one sample without labels
            return Ok(());
        }
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.server;
        let c = &s.counters;
        family(
            &mut enc,
            "ftnfs_build_info",
            "The ftnfsd version serving",
            None,
            vec![(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                gauge(1),
            )],
        )?;
        // calls, errors, latency per procedure
        let mut calls = Vec::new();
        for (i, n) in c.nfs.iter().enumerate() {
            let name = proc_table::NFS3[i].name.to_string();
            calls.push((
                vec![("program", "nfs3".into()), ("procedure", name)],
                counter(n.load(Ordering::Relaxed)),
            ));
        }
        for (i, n) in c.mount.iter().enumerate() {
            let name = proc_table::MOUNT3[i].name.to_string();
            calls.push((
                vec![("program", "mount3".into()), ("procedure", name)],
                counter(n.load(Ordering::Relaxed)),
            ));
        }
        family(
            &mut enc,
            "ftnfs_calls",
            "RPC calls received, by procedure",
            None,
            calls,
        )?;
        let errors = c
            .calls
            .errors
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    vec![("procedure", proc_table::NFS3[i].name.to_string())],
                    counter(n.load(Ordering::Relaxed)),
                )
            })
            .collect();
        family(
            &mut enc,
            "ftnfs_call_errors",
            "NFSv3 replies with a status other than NFS3_OK, or refused at the RPC level",
            None,
            errors,
        )?;
        family(
            &mut enc,
            "ftnfs_rpc_rejects",
            "Calls refused at the RPC level (version, program, procedure, auth, garbage)",
            None,
            vec![(vec![], counter(c.rpc_errors.load(Ordering::Relaxed)))],
        )?;
        {
            let mut m = enc.encode_descriptor(
                "ftnfs_call_duration",
                "Time from a call's start to its reply, by NFSv3 procedure",
                Some(&Unit::Seconds),
                Histogram::TYPE,
            )?;
            for (i, h) in c.calls.latency.iter().enumerate() {
                let labels: Labels = vec![("procedure", proc_table::NFS3[i].name.to_string())];
                h.encode(m.encode_family(&labels)?)?;
            }
        }
        family(
            &mut enc,
            "ftnfs_read",
            "Bytes returned by READ",
            Some(&Unit::Bytes),
            vec![(vec![], counter(c.calls.read_bytes.load(Ordering::Relaxed)))],
        )?;
        family(
            &mut enc,
            "ftnfs_written",
            "Bytes accepted by WRITE",
            Some(&Unit::Bytes),
            vec![(
                vec![],
                counter(c.calls.written_bytes.load(Ordering::Relaxed)),
            )],
        )?;
        // the transport
        family(
            &mut enc,
            "ftnfs_connections",
            "Open client TCP connections",
            None,
            vec![(
                vec![],
                gauge(self.transport.open_connections.load(Ordering::Relaxed) as i64),
            )],
        )?;
        family(
            &mut enc,
            "ftnfs_requests_in_flight",
            "Client requests being executed or waiting for their reply",
            None,
            vec![(vec![], gauge(self.transport.in_flight() as i64))],
        )?;
        // the duplicate request cache
        let (entries, bytes, st) = {
            let d = s.local.drc.lock().unwrap_or_else(|p| p.into_inner());
            (d.len(), d.bytes(), d.stats())
        };
        family(
            &mut enc,
            "ftnfs_drc_entries",
            "Entries in the duplicate request cache",
            None,
            vec![(vec![], gauge(entries as i64))],
        )?;
        family(
            &mut enc,
            "ftnfs_drc_size",
            "Bytes of cached replies",
            Some(&Unit::Bytes),
            vec![(vec![], gauge(bytes as i64))],
        )?;
        family(
            &mut enc,
            "ftnfs_drc_replays",
            "Retransmissions answered from the cache",
            None,
            vec![(vec![], counter(st.replays))],
        )?;
        family(
            &mut enc,
            "ftnfs_drc_dropped_in_progress",
            "Retransmissions dropped because the original was executing",
            None,
            vec![(vec![], counter(st.dropped_in_progress))],
        )?;
        family(
            &mut enc,
            "ftnfs_drc_evictions",
            "Entries evicted for space or age",
            None,
            vec![(vec![], counter(st.evictions))],
        )?;
        family(
            &mut enc,
            "ftnfs_reply_log_size",
            "Bytes in the reply log (cached replies kept across a restart)",
            Some(&Unit::Bytes),
            vec![(vec![], gauge(s.local.reply_log_size() as i64))],
        )?;
        // exports
        let served = s
            .local
            .exports
            .iter()
            .map(|e| {
                (
                    vec![("export", e.cfg.path.clone())],
                    gauge(e.served() as i64),
                )
            })
            .collect();
        family(
            &mut enc,
            "ftnfs_export_served",
            "1 while the export is served (0: removed by a reload)",
            None,
            served,
        )?;
        let locks = s
            .local
            .exports
            .iter()
            .flat_map(|e| {
                let (_, held, waiting) = e.locks.counts();
                [
                    (
                        vec![
                            ("export", e.cfg.path.clone()),
                            ("state", "held".to_string()),
                        ],
                        gauge(held as i64),
                    ),
                    (
                        vec![
                            ("export", e.cfg.path.clone()),
                            ("state", "waiting".to_string()),
                        ],
                        gauge(waiting as i64),
                    ),
                ]
            })
            .collect();
        family(
            &mut enc,
            "ftnfs_nlm_locks",
            "NLM locks held and clients waiting for one",
            None,
            locks,
        )?;
        self.mirror(&mut enc)
    }
}

impl Collect {
    /// Roles, epochs, lag, members, failovers, change logs and resyncs of mirrored exports.
    fn mirror(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.server;
        let st = s.mirror.status(s.now());
        let path_of = |id: &Value| -> String {
            let id = u(id);
            s.local
                .exports
                .iter()
                .find(|e| e.cfg.id.0 as u64 == id)
                .map(|e| e.cfg.path.clone())
                .unwrap_or_else(|| id.to_string())
        };
        let exports = st["exports"].as_array().cloned().unwrap_or_default();
        let mut role = Vec::new();
        let mut epoch = Vec::new();
        let mut lag = Vec::new();
        let mut resends = Vec::new();
        let mut failures = Vec::new();
        let mut members = Vec::new();
        let mut applied = Vec::new();
        for e in &exports {
            let path = path_of(&e["export"]);
            let r = e["role"].as_str().unwrap_or("");
            for name in ["primary", "secondary", "standby"] {
                role.push((
                    vec![("export", path.clone()), ("role", name.to_string())],
                    gauge((r == name) as i64),
                ));
            }
            if !e["epoch"].is_null() {
                epoch.push((vec![("export", path.clone())], gauge(u(&e["epoch"]) as i64)));
            }
            if r == "primary" {
                lag.push((vec![("export", path.clone())], gauge(u(&e["lag"]) as i64)));
                resends.push((vec![("export", path.clone())], counter(u(&e["resends"]))));
                failures.push((vec![("export", path.clone())], counter(u(&e["failures"]))));
                let list = e["secondaries"].as_array().cloned().unwrap_or_default();
                let count =
                    |f: &dyn Fn(&Value) -> bool| list.iter().filter(|m| f(m)).count() as i64;
                members.push((
                    vec![("export", path.clone()), ("state", "joined".into())],
                    gauge(count(&|m| m["joined"] == true)),
                ));
                members.push((
                    vec![("export", path.clone()), ("state", "joining".into())],
                    gauge(count(&|m| m["live"] == true && m["joined"] != true)),
                ));
                members.push((
                    vec![("export", path.clone()), ("state", "out".into())],
                    gauge(count(&|m| m["live"] != true)),
                ));
            }
            if r == "secondary" && e["joined"] == true {
                applied.push((
                    vec![("export", path.clone())],
                    gauge(u(&e["backlog"]) as i64),
                ));
            }
        }
        family(
            enc,
            "ftnfs_role",
            "This member's role for a mirrored export (1: the one it has)",
            None,
            role,
        )?;
        family(
            enc,
            "ftnfs_epoch",
            "The epoch of the stream this member leads or follows",
            None,
            epoch,
        )?;
        family(
            enc,
            "ftnfs_mirror_lag_updates",
            "Updates numbered by the primary and not yet released (not on every live member)",
            None,
            lag,
        )?;
        family(
            enc,
            "ftnfs_mirror_resends",
            "Updates the primary sent again to a secondary",
            None,
            resends,
        )?;
        family(
            enc,
            "ftnfs_mirror_failures",
            "Secondaries the primary failed out (they stopped acknowledging)",
            None,
            failures,
        )?;
        family(
            enc,
            "ftnfs_mirror_secondaries",
            "The primary's secondaries by state (out: failed out or not yet back)",
            None,
            members,
        )?;
        family(
            enc,
            "ftnfs_mirror_backlog_updates",
            "Updates a secondary received and has not yet applied",
            None,
            applied,
        )?;
        let changes = s
            .mirror
            .role_changes()
            .into_iter()
            .flat_map(|(id, counts)| {
                let path = path_of(&Value::from(id.0));
                counts.into_iter().map(move |(to, n)| {
                    (
                        vec![("export", path.clone()), ("to", to.to_string())],
                        counter(n),
                    )
                })
            })
            .collect();
        family(
            enc,
            "ftnfs_role_changes",
            "Role changes of this member (to=primary: it took over or was promoted)",
            None,
            changes,
        )?;
        let logs = st["changelog"].as_array().cloned().unwrap_or_default();
        family(
            enc,
            "ftnfs_changelog_size",
            "Bytes in the change log a returning member catches up from",
            Some(&Unit::Bytes),
            logs.iter()
                .map(|l| {
                    (
                        vec![("export", path_of(&l["export"]))],
                        gauge(u(&l["bytes"]) as i64),
                    )
                })
                .collect(),
        )?;
        let resyncs = st["resync"]["resyncs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut rb = Vec::new();
        let mut ro = Vec::new();
        for r in &resyncs {
            let labels: Labels = vec![
                ("export", path_of(&r["export"])),
                (
                    "direction",
                    r["direction"].as_str().unwrap_or("?").to_string(),
                ),
                (
                    "member",
                    r["progress"]["member"].as_str().unwrap_or("?").to_string(),
                ),
            ];
            rb.push((labels.clone(), gauge(u(&r["progress"]["bytes"]) as i64)));
            ro.push((labels, gauge(u(&r["progress"]["objects"]) as i64)));
        }
        family(
            enc,
            "ftnfs_resync_copied",
            "Bytes a running or finished resync copied so far",
            Some(&Unit::Bytes),
            rb,
        )?;
        family(
            enc,
            "ftnfs_resync_objects",
            "Objects a running or finished resync visited so far",
            None,
            ro,
        )?;
        Ok(())
    }
}

/// The OpenMetrics text as the classic Prometheus text format (0.0.4): a counter family's
/// HELP and TYPE name its samples (`x_total`), and there is no UNIT line and no `# EOF`.
pub fn classic(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap_or((t, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The registry of this daemon.
pub fn registry(server: Arc<Server>, transport: Arc<Transport>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Collect { server, transport }));
    r
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: std::net::TcpListener, registry: Arc<Registry>) -> anyhow::Result<()> {
    use hyper::{Request, Response, StatusCode};
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let scrapes = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let (sock, _) = listener.accept().await?;
        let Ok(permit) = scrapes.clone().acquire_owned().await else {
            return Ok(());
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let reply = if req.uri().path() == "/metrics"
                        && req.method() == hyper::Method::GET
                    {
                        // Prometheus asks for OpenMetrics; curl, promtool and older
                        // scrapers get the classic text format
                        let open_metrics =
                            req.headers()
                                .get_all(hyper::header::ACCEPT)
                                .iter()
                                .any(|v| {
                                    v.to_str()
                                        .is_ok_and(|v| v.contains("application/openmetrics-text"))
                                });
                        let mut text = String::new();
                        match prometheus_client::encoding::text::encode(&mut text, &registry) {
                            Ok(()) => Response::builder()
                                .header(
                                    hyper::header::CONTENT_TYPE,
                                    if open_metrics {
                                        "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    } else {
                                        "text/plain; version=0.0.4; charset=utf-8"
                                    },
                                )
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    if open_metrics { text } else { classic(&text) },
                                ))),
                            Err(_) => Response::builder()
                                .status(StatusCode::INTERNAL_SERVER_ERROR)
                                .body(http_body_util::Full::new(bytes::Bytes::new())),
                        }
                    } else {
                        Response::builder().status(StatusCode::NOT_FOUND).body(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"try /metrics\n")),
                        )
                    };
                    Ok::<_, Infallible>(reply.unwrap_or_default())
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc);
            // a scraper that stalls is cut off
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let om = "# HELP x_calls Calls.\n# TYPE x_calls counter\nx_calls_total{p=\"A\"} 3\n\
                  # HELP x_size Size.\n# TYPE x_size gauge\n# UNIT x_size bytes\nx_size 1\n# EOF\n";
        assert_eq!(
            classic(om),
            "# HELP x_calls_total Calls.\n# TYPE x_calls_total counter\nx_calls_total{p=\"A\"} 3\n\
             # HELP x_size Size.\n# TYPE x_size gauge\nx_size 1\n"
        );
    }
}
