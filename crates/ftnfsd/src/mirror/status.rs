//! What `ftnfsctl status` shows of the mirror: roles, streams, resyncs, links, events.

use super::*;

impl Mirror {
    /// Status of every mirrored export.
    pub fn status(&self, now: Millis) -> Value {
        let mut out = Vec::new();
        let mut roles = self.roles();
        roles.sort_by_key(|r| r.export());
        let (evidence, demoted) = {
            let mut n = lock(&self.node);
            // exports whose member stood down on the operator's word (Member::demoted)
            let demoted: HashSet<ExportId> = roles
                .iter()
                .map(|r| r.export())
                .filter(|e| n.member(*e).is_some_and(|m| m.held_down()))
                .collect();
            (n.evidence.clone(), demoted)
        };
        let ago = |m: MemberId| evidence.last_heard(m).map(|h| now.since(h));
        for role in roles {
            let v = match &*role {
                Role::Standby(sb) => json!({
                    "export": sb.export.0,
                    "role": "standby",
                    "epoch": sb.epoch.0,
                    "why": sb.why,
                    "clean_at": sb.clean_at.map(|c| c.1 .0),
                    "demoted": demoted.contains(&sb.export),
                }),
                Role::Primary(ps) => {
                    let id = ps.export;
                    let Some(c) = ps.lead() else {
                        // the role moved on this instant: the next status shows the new one
                        continue;
                    };
                    let st = c.p.stats();
                    json!({
                        "export": id.0,
                        "role": "primary",
                        "epoch": c.p.epoch().0,
                        "secondaries": ps.secondaries.iter().map(|m| json!({
                            "name": self.group.name_of(*m),
                            "live": c.p.live().contains(*m),
                            "joined": c.p.live().contains(*m) && c.accepted.contains(m),
                            "last_heard_ms_ago": ago(*m),
                        })).collect::<Vec<_>>(),
                        "lag": c.p.last_seq().0 - c.p.released_watermark().0,
                        "last_seq": c.p.last_seq().0,
                        "released": c.p.released_watermark().0,
                        "pending": c.p.pending(),
                        "submitted": st.submitted,
                        "resends": st.resends,
                        "failures": st.failures,
                        // proxy mode: datagrams secondaries got that we never ordered
                        "unknown_requests": c.unknown_total(),
                        "datagrams": ps.datagrams.load(std::sync::atomic::Ordering::Relaxed),
                        // split reads: whether we answer them ourselves now, and whose they
                        // are otherwise (the read server)
                        "read_server": self.read_list(id).map(|read| {
                            c.read_server(read, SELF, now)
                                .map(|m| if m == SELF { self.group.me.as_str() } else { self.group.name_of(m) })
                        }),
                        "releases_held": c.p.releases_held(),
                        "reads_answered": self.reads_answered(id),
                    })
                }
                Role::Secondary(ss) => {
                    let id = ss.export;
                    let c = lock(&ss.core);
                    match &*c {
                        None => json!({
                            "export": id.0,
                            "role": "secondary",
                            "primary": self.group.name_of(ss.primary),
                            "joined": false,
                            "primary_last_heard_ms_ago": ago(ss.primary),
                            "demoted": demoted.contains(&id),
                        }),
                        Some(sc) => {
                            let st = sc.s.stats();
                            let px = sc.proxy.stats();
                            json!({
                                "export": id.0,
                                "role": "secondary",
                                "primary": self.group.name_of(ss.primary),
                                "joined": true,
                                "primary_last_heard_ms_ago": ago(ss.primary),
                                "epoch": sc.s.epoch().0,
                                "applied": sc.s.watermark().0,
                                "backlog": sc.s.backlog(),
                                "duplicates": st.duplicates,
                                "refused": st.refused,
                                "demoted": demoted.contains(&id),
                                // split reads: this member answers them under its lease
                                "reads": self.read_list(id).map(|_| sc.reads(now)),
                                "reads_answered": self.reads_answered(id),
                                // proxy mode (proxy_side.rs): client datagrams held for the
                                // primary's orders
                                "proxy": {
                                    "held_now": sc.proxy.held(),
                                    "held_bytes_now": sc.proxy.held_bytes(),
                                    "held": px.held,
                                    "claimed": px.claimed,
                                    "fetched": px.fetched,
                                    "mismatched": px.mismatched,
                                    "expired": px.expired,
                                    "repeated": px.repeated,
                                    "stale": px.stale,
                                    "dropped": px.dropped,
                                },
                            })
                        }
                    }
                }
            };
            out.push(v);
        }
        let events: Vec<Value> = self.events(50);
        json!({
            "me": self.group.me,
            "peers": self.group.peers.iter().map(|p| json!({
                "name": p.name,
                "addr": p.addr.to_string(),
                "linked": lock(&self.links).contains_key(&p.id),
            })).collect::<Vec<_>>(),
            "exports": out,
            "changelog": self.rejoin.logs.iter().map(|(e, l)| {
                let (bytes, appended) = l.size();
                let (stream, gapless_to, highest) = l.reach();
                json!({"export": e.0, "bytes": bytes, "records_since_start": appended,
                       "complete": self.complete(*e), "stream": format!("{stream:016x}"),
                       "gapless_to": gapless_to, "highest": highest})
            }).collect::<Vec<_>>(),
            "resync": self.resync_status(None),
            "events": events,
        })
    }

    /// The newest `n` events, newest first.
    pub fn events(&self, n: usize) -> Vec<Value> {
        lock(&self.events)
            .iter()
            .rev()
            .take(n)
            .map(|e| json!({"at_ms": e.at.0, "export": e.export.0, "what": e.what}))
            .collect()
    }
}
