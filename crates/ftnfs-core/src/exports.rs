//! The exports file: exports(5) syntax plus the ftnfs options of the patent's Table II.
//!
//! ```text
//! # path        [-default,options]              client(options) ...
//! /srv/home1    -ftnfs=SvrAB-1:SvrAB-2           10.0.0.0/8(rw,no_root_squash) *(ro)
//! /srv/home2    -ftnfs=SvrAB-1:SvrAB-2,HighRead  *(rw)
//! /srv/home4    -ftnfsr=SvrAB-2:SvrAB-1,ftnfsw=SvrAB-1:SvrAB-2  *(rw)
//! ```
//!
//! A line that cannot be understood is refused with its file, line number and reason; nothing
//! is guessed. Parsing is pure; host names are resolved by the shell ([`ClientSpec::Host`]).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use crate::access::Squash;
use crate::ids::{fnv1a64, ExportId};

/// Most members of one export's group: a primary and up to 8 secondaries.
pub const MAX_MEMBERS: usize = 9;

/// A refused line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ExportsError {
    /// File name as given.
    pub file: String,
    /// 1-based line number (of the first physical line of a continued line).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Who may use an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSpec {
    /// `*`: everyone.
    Any,
    /// An address or network (`10.1.2.3`, `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `fd00::/8`).
    Net {
        /// Network address.
        addr: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// A host name or wildcard pattern (`client1`, `*.lab`); `addrs` is filled by the shell.
    Host {
        /// The name or pattern as written.
        name: String,
        /// Addresses it resolves to.
        addrs: Vec<IpAddr>,
    },
}

impl ClientSpec {
    /// Does `ip` belong to this spec?
    pub fn matches(&self, ip: IpAddr) -> bool {
        match self {
            ClientSpec::Any => true,
            ClientSpec::Net { addr, prefix } => in_net(ip, *addr, *prefix),
            ClientSpec::Host { addrs, .. } => addrs.contains(&ip),
        }
    }

    /// As written in the file (for EXPORT replies and status).
    pub fn describe(&self) -> String {
        match self {
            ClientSpec::Any => "*".into(),
            ClientSpec::Net { addr, prefix } => {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                if *prefix == full {
                    addr.to_string()
                } else {
                    format!("{addr}/{prefix}")
                }
            }
            ClientSpec::Host { name, .. } => name.clone(),
        }
    }
}

/// The client as the server sees it: an IPv4 client of a dual-stack socket (an IPv4-mapped
/// IPv6 address) is its IPv4 address, so that exports, the DRC, mounts and locks know one
/// client by one address whichever socket it came in on. Replies still go to `peer`.
pub fn client_of(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(client_ip(peer.ip()), peer.port())
}

/// [`client_of`] for an address alone.
pub fn client_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    // An IPv4 client may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
    let ip = client_ip(ip);
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Options of one client entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Read-write (`rw`) or read-only (`ro`, the default).
    pub read_write: bool,
    /// `sync` (default): every update is stable before its reply. `async`: as knfsd, the
    /// reply does not wait for stable storage — a server crash can lose updates the client
    /// was told were done (Documentation/05-write-stability.md).
    pub sync: bool,
    /// Identity mapping.
    pub squash: Squash,
    /// `secure` (default): requests must come from a port below 1024.
    pub secure: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            read_write: false,
            sync: true,
            squash: Squash::default(),
            secure: true,
        }
    }
}

/// One client entry of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// Who.
    pub spec: ClientSpec,
    /// With which options.
    pub options: ClientOptions,
}

/// How READs of a mirrored export are mirrored (DESIGN.md decision 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// The primary answers at once; reads are not forwarded (atime is each member's own).
    #[default]
    Async,
    /// `AckRead`: reads are forwarded and the primary answers when the secondaries have
    /// done them too (each sets its own atime).
    Acknowledged,
    /// `HighRead`: reads are forwarded with the primary's time; every member sets that atime
    /// (the latest one, in any order), then acknowledges; the reply waits.
    Serialized,
}

/// How the export is mirrored (patent Table II).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mirroring {
    /// Not mirrored: served by this member alone.
    #[default]
    None,
    /// `-ftnfs=A:B[:C…][,HighRead|,AckRead]`: the first live member in the list is primary.
    Group {
        /// Members, preferred primary first.
        members: Vec<String>,
        /// How READs are mirrored (DESIGN.md decision 10).
        read_mode: ReadMode,
    },
    /// `-ftnfsr=…,ftnfsw=…`: separate member orders for reads and writes.
    Split {
        /// Member order for reads.
        read: Vec<String>,
        /// Member order for writes.
        write: Vec<String>,
    },
}

impl Mirroring {
    /// The mirroring order: the first live member is the primary, which numbers the updates
    /// (`-ftnfs=`'s list, or `ftnfsw=`'s of a split export). `None`: not mirrored.
    pub fn write_order(&self) -> Option<&[String]> {
        match self {
            Mirroring::None => None,
            Mirroring::Group { members, .. } => Some(members),
            Mirroring::Split { write, .. } => Some(write),
        }
    }

    /// A split export's read order (`ftnfsr=`): who answers reads (`member::read_lease`).
    pub fn read_order(&self) -> Option<&[String]> {
        match self {
            Mirroring::Split { read, .. } => Some(read),
            _ => None,
        }
    }
}

/// One export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Absolute path of the exported directory (what clients name in MNT).
    pub path: String,
    /// Identity across members: `fsid=` or a hash of the path.
    pub id: ExportId,
    /// Client rules in file order; the first match wins.
    pub clients: Vec<ClientRule>,
    /// Mirroring configuration.
    pub mirroring: Mirroring,
    /// `InMemory` (mirrored exports only): an update counts as durable once it is in the
    /// memory of every live member — the reply waits for no disk — and each member flushes
    /// it within a second. While the primary has no live secondary, updates are stable
    /// before their reply as without it. Survives any single member failure, power loss
    /// included; not every member losing power within that second
    /// (Documentation/11-durable-metadata.md).
    pub in_memory: bool,
    /// `Proxy` (mirrored exports only): UDP clients' datagrams reach every member (a
    /// multicast virtual IP, or a client that sends to each): a secondary holds each update
    /// request it receives, and the primary sends it an order without the arguments
    /// (`mirror::proxy`; DESIGN.md decision 8). An update whose datagram a secondary lacks is
    /// fetched whole. A multicast virtual IP's datagrams are handled so without it.
    pub proxy: bool,
    /// 1-based line in the exports file.
    pub line: usize,
}

impl Export {
    /// The options for a client address, or `None` when it may not use the export.
    pub fn options_for(&self, ip: IpAddr) -> Option<&ClientOptions> {
        options_for(&self.clients, ip)
    }
}

/// The options of the first of `rules` that `ip` matches (exports(5): the first match
/// wins), or `None` when none does.
pub fn options_for(rules: &[ClientRule], ip: IpAddr) -> Option<&ClientOptions> {
    rules
        .iter()
        .find(|r| r.spec.matches(ip))
        .map(|r| &r.options)
}

/// Parses an exports file. `file` is used in error messages only.
pub fn parse(file: &str, text: &str) -> Result<Vec<Export>, ExportsError> {
    let mut out: Vec<Export> = Vec::new();
    let mut ids = HashSet::new();
    let mut paths = HashSet::new();
    for (line_no, logical) in logical_lines(text) {
        let err = |reason: String| ExportsError {
            file: file.to_string(),
            line: line_no,
            reason,
        };
        let words = split_words(&logical).map_err(err)?;
        let Some((path, rest)) = words.split_first() else {
            continue;
        };
        let e = parse_export(path, rest, line_no).map_err(err)?;
        if !paths.insert(e.path.clone()) {
            return Err(err(format!("{} is exported twice", e.path)));
        }
        if !ids.insert(e.id) {
            return Err(err(format!(
                "export id {} of {} is already used by another export (set a distinct fsid=)",
                e.id, e.path
            )));
        }
        out.push(e);
    }
    Ok(out)
}

fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(p) => &raw[..p],
            None => raw,
        };
        if cur.is_empty() {
            start = i + 1;
        }
        if let Some(stripped) = line.trim_end().strip_suffix('\\') {
            cur.push_str(stripped);
            cur.push(' ');
            continue;
        }
        cur.push_str(line);
        if !cur.trim().is_empty() {
            out.push((start, std::mem::take(&mut cur)));
        }
        cur.clear();
    }
    if !cur.trim().is_empty() {
        out.push((start, cur));
    }
    out
}

/// Splits on whitespace, honouring double quotes and `\040` (exports(5)).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if chars.peek() == Some(&'0') => {
                let code: String = chars.by_ref().take(3).collect();
                let v = u8::from_str_radix(&code, 8)
                    .map_err(|_| format!("bad octal escape \\{code}"))?;
                cur.push(v as char);
            }
            c if c.is_whitespace() && !in_quotes => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

fn parse_export(path: &str, rest: &[String], line: usize) -> Result<Export, String> {
    if !path.starts_with('/') {
        return Err(format!("export path {path:?} is not absolute"));
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("export path {path:?} contains . or .."));
    }
    let path = if path.len() > 1 {
        path.trim_end_matches('/').to_string()
    } else {
        path.to_string()
    };
    let mut defaults: Vec<String> = Vec::new();
    let mut client_words = Vec::new();
    for w in rest {
        if let Some(opts) = w.strip_prefix('-') {
            if !client_words.is_empty() {
                return Err(format!(
                    "default options {w:?} must come before the clients"
                ));
            }
            defaults.extend(opts.split(',').map(str::to_string));
        } else {
            client_words.push(w.as_str());
        }
    }
    let mut base = ClientOptions::default();
    let mut ex = ExportOptions::default();
    for o in &defaults {
        apply_option(o, &mut ex, &mut base)?;
    }
    let mut clients = Vec::new();
    for w in client_words {
        let (spec, opts) = match w.find('(') {
            Some(p) => {
                let Some(inner) = w[p + 1..].strip_suffix(')') else {
                    return Err(format!("unbalanced parenthesis in {w:?}"));
                };
                (&w[..p], Some(inner))
            }
            None => (w, None),
        };
        let mut options = base;
        for o in opts
            .into_iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
        {
            apply_option(o, &mut ex, &mut options)?;
        }
        clients.push(ClientRule {
            spec: parse_client(spec)?,
            options,
        });
    }
    if clients.is_empty() {
        return Err(format!(
            "{path} names no clients (write `*(rw)` to export to everyone)"
        ));
    }
    let ExportOptions {
        fsid,
        mut mirroring,
        read_mode: high_read,
        in_memory,
        proxy,
        split_r,
        split_w,
    } = ex;
    match (split_r, split_w) {
        (Some(read), Some(write)) => {
            if mirroring != Mirroring::None {
                return Err("ftnfs= cannot be combined with ftnfsr=/ftnfsw=".into());
            }
            let a: HashSet<_> = read.iter().collect();
            let b: HashSet<_> = write.iter().collect();
            if a != b {
                return Err("ftnfsr= and ftnfsw= must list the same members".into());
            }
            mirroring = Mirroring::Split { read, write };
        }
        (None, None) => {}
        _ => return Err("ftnfsr= and ftnfsw= must be given together".into()),
    }
    if high_read != ReadMode::Async {
        match &mut mirroring {
            Mirroring::Group { read_mode, .. } => *read_mode = high_read,
            _ => return Err("HighRead/AckRead need ftnfs=".into()),
        }
    }
    if in_memory && mirroring == Mirroring::None {
        return Err("InMemory needs ftnfs= (it counts on the other members' memory)".into());
    }
    if proxy && mirroring == Mirroring::None {
        return Err("Proxy needs ftnfs= (it is how secondaries receive updates)".into());
    }
    let id = match fsid {
        Some(0) => return Err("fsid=0 is reserved (NFSv4 pseudo root); choose another".into()),
        Some(f) => ExportId(f),
        // Same path on every member gives the same id; fold 64 bits into 32, never 0.
        None => {
            let h = fnv1a64(path.as_bytes());
            ExportId(((h >> 32) as u32 ^ h as u32).max(1))
        }
    };
    Ok(Export {
        path,
        id,
        clients,
        mirroring,
        in_memory,
        proxy,
        line,
    })
}

fn member_list(v: &str, opt: &str) -> Result<Vec<String>, String> {
    let members: Vec<String> = v.split(':').map(str::to_string).collect();
    if members.len() < 2 {
        return Err(format!("{opt}= needs at least two members, got {v:?}"));
    }
    if members.len() > MAX_MEMBERS {
        return Err(format!(
            "{opt}= lists {} members; at most {MAX_MEMBERS} (a primary and 8 secondaries)",
            members.len()
        ));
    }
    let mut seen = HashSet::new();
    for m in &members {
        let ok = !m.is_empty()
            && m.len() <= 64
            && m.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(format!("{opt}=: bad member name {m:?}"));
        }
        if !seen.insert(m) {
            return Err(format!("{opt}=: member {m} listed twice"));
        }
    }
    Ok(members)
}

/// Export-wide options seen so far on a line (they may appear in any option list).
#[derive(Default)]
struct ExportOptions {
    fsid: Option<u32>,
    mirroring: Mirroring,
    read_mode: ReadMode,
    in_memory: bool,
    proxy: bool,
    split_r: Option<Vec<String>>,
    split_w: Option<Vec<String>>,
}

/// An option from the default list or a client's list: export-wide or per client.
fn apply_option(o: &str, ex: &mut ExportOptions, client: &mut ClientOptions) -> Result<(), String> {
    if !apply_export_option(o, ex)? {
        apply_client_option(o, client)?;
    }
    Ok(())
}

/// Export-wide options; returns false if `o` is not one of them.
fn apply_export_option(o: &str, ex: &mut ExportOptions) -> Result<bool, String> {
    let (k, v) = match o.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (o, None),
    };
    match (k, v) {
        ("fsid", Some(v)) => {
            let n = v
                .parse::<u32>()
                .map_err(|_| format!("fsid={v}: only numeric fsids are supported"))?;
            if ex.fsid.is_some_and(|f| f != n) {
                return Err("conflicting fsid= values".into());
            }
            ex.fsid = Some(n);
        }
        ("ftnfs", Some(v)) => {
            ex.mirroring = Mirroring::Group {
                members: member_list(v, "ftnfs")?,
                read_mode: ReadMode::Async,
            }
        }
        ("ftnfsr", Some(v)) => ex.split_r = Some(member_list(v, "ftnfsr")?),
        ("ftnfsw", Some(v)) => ex.split_w = Some(member_list(v, "ftnfsw")?),
        ("HighRead", None) | ("highread", None) => ex.read_mode = ReadMode::Serialized,
        ("AckRead", None) | ("ackread", None) => ex.read_mode = ReadMode::Acknowledged,
        ("InMemory", None) | ("inmemory", None) => ex.in_memory = true,
        ("Proxy", None) | ("proxy", None) => ex.proxy = true,
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_id(k: &str, v: Option<&str>) -> Result<u32, String> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{k} needs a numeric value"))
}

fn apply_client_option(o: &str, c: &mut ClientOptions) -> Result<(), String> {
    let (k, v) = match o.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (o, None),
    };
    match k {
        "rw" => c.read_write = true,
        "ro" => c.read_write = false,
        "sync" => c.sync = true,
        "async" => c.sync = false,
        "root_squash" => c.squash.root_squash = true,
        "no_root_squash" => c.squash.root_squash = false,
        "all_squash" => c.squash.all_squash = true,
        "no_all_squash" => c.squash.all_squash = false,
        "anonuid" => c.squash.anonuid = parse_id(k, v)?,
        "anongid" => c.squash.anongid = parse_id(k, v)?,
        "secure" => c.secure = true,
        "insecure" => c.secure = false,
        // Accepted for compatibility; they have no meaning for ftnfs (no subtree checks: our
        // handles name objects directly; no write gathering; no nested mounts are crossed).
        "subtree_check" | "no_subtree_check" | "wdelay" | "no_wdelay" | "hide" | "nohide"
        | "crossmnt" | "no_crossmnt" | "secure_locks" | "insecure_locks" | "auth_nlm"
        | "no_auth_nlm" | "sec=sys" => {}
        "sec" if v == Some("sys") => {}
        _ => return Err(format!("unknown or unsupported option {o:?}")),
    }
    Ok(())
}

fn parse_client(s: &str) -> Result<ClientSpec, String> {
    if s.is_empty() || s == "*" {
        return Ok(ClientSpec::Any);
    }
    if s.starts_with('@') {
        return Err(format!("netgroups ({s}) are not supported"));
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => full,
            Some(p) => {
                if let Ok(n) = p.parse::<u8>() {
                    n
                } else if let Ok(std::net::IpAddr::V4(m)) = p.parse::<IpAddr>() {
                    let m = u32::from(m);
                    if m.leading_ones() + m.trailing_zeros() != 32 {
                        return Err(format!("netmask {p} is not contiguous"));
                    }
                    m.leading_ones() as u8
                } else {
                    return Err(format!("bad prefix or netmask {p:?}"));
                }
            }
        };
        if prefix > full {
            return Err(format!("prefix /{prefix} too long for {ip}"));
        }
        return Ok(ClientSpec::Net { addr: ip, prefix });
    }
    if prefix.is_some() {
        return Err(format!("bad network {s:?}"));
    }
    let ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.*?".contains(c));
    if !ok {
        return Err(format!("bad client {s:?}"));
    }
    Ok(ClientSpec::Host {
        name: s.to_string(),
        addrs: Vec::new(),
    })
}

/// What a reload (SIGHUP, `ftnfsctl reload`) does to one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Held already (served, or removed by an earlier reload and now put back): these
    /// client rules and options from now on.
    Keep {
        /// Which.
        id: ExportId,
        /// Its client rules as the new file says.
        clients: Vec<ClientRule>,
    },
    /// New: open its directory and serve it.
    Add(Export),
    /// Not in the new file: no longer served (its handles answer STALE).
    Remove(ExportId),
}

/// An export as a running daemon holds it, for [`plan_reload`].
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// Its configuration (the client rules are not compared).
    pub cfg: &'a Export,
    /// Served now (not removed by an earlier reload).
    pub served: bool,
}

/// What a reload of the exports file changes, or why it is refused — whole: one refused
/// export refuses the file, and what is in force stays. `file` names the new file in
/// errors. Client lists and options change at once; exports without mirroring come and go;
/// an export's path, its `fsid`, its mirroring (member list, read mode) and `InMemory`
/// change only with a restart (of every member of its group: they must agree), and so does
/// adding a mirrored export. Removing a mirrored export stops serving it to clients here;
/// its mirror goes on following the group.
pub fn plan_reload(
    file: &str,
    held: &[Held<'_>],
    new: Vec<Export>,
) -> Result<Vec<Reload>, ExportsError> {
    let refuse = |line: usize, reason: String| ExportsError {
        file: file.to_string(),
        line,
        reason,
    };
    let mut plan = Vec::new();
    for e in &new {
        let by_id = held.iter().find(|h| h.cfg.id == e.id);
        let by_path = held.iter().find(|h| h.cfg.path == e.path);
        match (by_id, by_path) {
            (Some(h), _) if h.cfg.path != e.path => {
                return Err(refuse(
                    e.line,
                    format!(
                        "{} has the id (fsid) {} of the held export {}: an export's path or fsid changes only with a restart",
                        e.path, e.id.0, h.cfg.path
                    ),
                ))
            }
            (None, Some(h)) => {
                return Err(refuse(
                    e.line,
                    format!(
                        "the id (fsid) of {} changed from {} to {}: its handles would go stale; that needs a restart",
                        e.path, h.cfg.id.0, e.id.0
                    ),
                ))
            }
            (Some(h), _) => {
                if h.cfg.mirroring != e.mirroring {
                    return Err(refuse(
                        e.line,
                        format!(
                            "the mirroring of {} changed ({} -> {}): a group's members and read mode change only with a restart of every member with the new file",
                            e.path,
                            describe_mirroring(&h.cfg.mirroring),
                            describe_mirroring(&e.mirroring)
                        ),
                    ));
                }
                // group-wide options: every member must agree, so only a restart changes them
                for (option, was, is) in [
                    ("InMemory", h.cfg.in_memory, e.in_memory),
                    ("Proxy", h.cfg.proxy, e.proxy),
                ] {
                    if was != is {
                        return Err(refuse(
                            e.line,
                            format!(
                                "{option} of {} changed: that needs a restart of every member of its group",
                                e.path
                            ),
                        ));
                    }
                }
                plan.push(Reload::Keep {
                    id: e.id,
                    clients: e.clients.clone(),
                });
            }
            (None, None) => {
                if e.mirroring != Mirroring::None {
                    return Err(refuse(
                        e.line,
                        format!(
                            "{} is a new mirrored export ({}): it starts with a restart of every member of its group with the new file",
                            e.path,
                            describe_mirroring(&e.mirroring)
                        ),
                    ));
                }
                plan.push(Reload::Add(e.clone()));
            }
        }
    }
    for h in held.iter().filter(|h| h.served) {
        if !new.iter().any(|e| e.id == h.cfg.id) {
            plan.push(Reload::Remove(h.cfg.id));
        }
    }
    Ok(plan)
}

fn describe_mirroring(m: &Mirroring) -> String {
    match m {
        Mirroring::None => "not mirrored".into(),
        Mirroring::Group { members, read_mode } => match read_mode {
            ReadMode::Async => format!("-ftnfs={}", members.join(":")),
            ReadMode::Acknowledged => format!("-ftnfs={},AckRead", members.join(":")),
            ReadMode::Serialized => format!("-ftnfs={},HighRead", members.join(":")),
        },
        Mirroring::Split { read, write } => {
            format!("-ftnfsr={},ftnfsw={}", read.join(":"), write.join(":"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_durability_needs_a_mirror() {
        let e = parse(
            "exports",
            "/srv/a -ftnfs=A:B,InMemory *(rw)\n/srv/b -ftnfs=A:B *(rw)\n",
        )
        .unwrap();
        assert!(e[0].in_memory && !e[1].in_memory);
        let e = parse("exports", "/srv/a -ftnfs=A:B,Proxy,fsid=3 *(rw)\n").unwrap();
        assert!(e[0].proxy && !e[0].in_memory);
        let err = parse("exports", "/srv/a -Proxy *(rw)\n").unwrap_err();
        assert!(format!("{err}").contains("Proxy needs ftnfs="), "{err}");
        let err = parse("exports", "/srv/a -inmemory *(rw)\n").unwrap_err();
        assert!(format!("{err}").contains("InMemory needs ftnfs="), "{err}");
    }

    #[test]
    fn patent_table_ii_forms() {
        let text = "\
/srv/home1 -ftnfs=SvrAB-1:SvrAB-2 *(rw)
/srv/home2 -ftnfs=SvrAB-1:SvrAB-2,HighRead *(rw)
/srv/home3 -ftnfs=SvrAB-2:SvrAB-1 10.0.0.0/8(rw,no_root_squash) *(ro)
/srv/home4 -ftnfsr=SvrAB-2:SvrAB-1,ftnfsw=SvrAB-1:SvrAB-2 \\
    *(rw)
/srv/home5 -ftnfs=SvrAB-1:SvrAB-2,AckRead *(rw)
";
        let e = parse("exports", text).unwrap();
        assert_eq!(e.len(), 5);
        assert!(matches!(
            e[4].mirroring,
            Mirroring::Group {
                read_mode: ReadMode::Acknowledged,
                ..
            }
        ));
        assert_eq!(
            e[1].mirroring,
            Mirroring::Group {
                members: vec!["SvrAB-1".into(), "SvrAB-2".into()],
                read_mode: ReadMode::Serialized
            }
        );
        assert!(matches!(e[3].mirroring, Mirroring::Split { .. }));
        let o = e[2].options_for("10.1.2.3".parse().unwrap()).unwrap();
        assert!(o.read_write && !o.squash.root_squash);
        let o = e[2].options_for("192.168.1.1".parse().unwrap()).unwrap();
        assert!(!o.read_write);
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "# comment\n/ok *(rw)\n/bad *(rw,frobnicate)\n";
        let err = parse("/etc/ftnfs/exports", text).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(
            err.to_string(),
            "/etc/ftnfs/exports:3: unknown or unsupported option \"frobnicate\""
        );
        for (bad, why) in [
            ("relative *(rw)", "not absolute"),
            ("/a", "names no clients"),
            ("/a -ftnfs=A *(rw)", "at least two"),
            ("/a -ftnfs=A:A *(rw)", "listed twice"),
            ("/a -ftnfs=A:B:C:D:E:F:G:H:I:J *(rw)", "at most 9"),
            ("/a -ftnfsr=A:B *(rw)", "together"),
            ("/a -HighRead *(rw)", "need ftnfs"),
            ("/a -AckRead *(rw)", "need ftnfs"),
            ("/a 10.0.0.0/33(rw)", "too long"),
            ("/a @group(rw)", "netgroups"),
            ("/a *(anonuid=x)", "numeric"),
            ("/a -fsid=x *", "numeric fsids"),
            ("/a *(rw,fsid=0)", "reserved"),
        ] {
            let e = parse("f", bad).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
        }
        let dup = parse("f", "/a *(fsid=5)\n/b *(fsid=5)").unwrap_err();
        assert_eq!(dup.line, 2);
    }

    #[test]
    fn defaults_follow_exports_5() {
        let e = &parse("f", "/a client1 *.lab").unwrap()[0];
        let o = &e.clients[0].options;
        assert!(!o.read_write && o.secure && o.squash.root_squash && o.sync);
        assert_eq!(o.squash.anonuid, 65534);
        assert!(matches!(e.clients[1].spec, ClientSpec::Host { .. }));
    }

    #[test]
    fn networks_match() {
        let e = &parse("f", "/a 10.1.0.0/255.255.0.0(rw) fd00::/8").unwrap()[0];
        assert!(e.options_for("10.1.9.9".parse().unwrap()).is_some());
        assert!(e.options_for("::ffff:10.1.9.9".parse().unwrap()).is_some());
        assert!(e.options_for("10.2.0.1".parse().unwrap()).is_none());
        assert!(e.options_for("fd12::1".parse().unwrap()).is_some());
    }

    #[test]
    fn export_id_is_stable_and_fsid_wins() {
        let a = parse("f", "/srv/x *").unwrap()[0].id;
        let b = parse("g", "/srv/x/ *(ro)").unwrap()[0].id;
        assert_eq!(a, b);
        assert_eq!(parse("f", "/srv/x *(fsid=77)").unwrap()[0].id, ExportId(77));
    }

    #[test]
    fn quoted_paths() {
        let e = parse("f", "\"/srv/my dir\" *\n/srv/a\\040b *").unwrap();
        assert_eq!(e[0].path, "/srv/my dir");
        assert_eq!(e[1].path, "/srv/a b");
    }

    fn held(list: &[Export]) -> Vec<Held<'_>> {
        list.iter().map(|cfg| Held { cfg, served: true }).collect()
    }

    #[test]
    fn a_reload_changes_clients_adds_and_removes_plain_exports() {
        let old = parse("f", "/a *(ro)\n/b -ftnfs=x:y *(rw)\n/c *(rw)\n").unwrap();
        let new = parse("f", "/a 10.0.0.0/8(rw)\n/b -ftnfs=x:y *(ro)\n/d *(rw)\n").unwrap();
        let plan = plan_reload("f", &held(&old), new.clone()).unwrap();
        assert_eq!(
            plan,
            vec![
                Reload::Keep {
                    id: old[0].id,
                    clients: new[0].clients.clone()
                },
                Reload::Keep {
                    id: old[1].id,
                    clients: new[1].clients.clone()
                },
                Reload::Add(new[2].clone()),
                Reload::Remove(old[2].id),
            ]
        );
        // a removed export comes back with the same id: kept (its handles work again)
        let mut h = held(&old);
        h[2].served = false;
        let again = parse("f", "/a *(ro)\n/b -ftnfs=x:y *(rw)\n/c *(rw)\n").unwrap();
        let plan = plan_reload("f", &h, again.clone()).unwrap();
        assert!(plan.contains(&Reload::Keep {
            id: old[2].id,
            clients: again[2].clients.clone()
        }));
        assert!(!plan.iter().any(|p| matches!(p, Reload::Remove(_))));
        // an unserved one absent from the file stays unserved, not removed twice
        let plan = plan_reload(
            "f",
            &h,
            parse("f", "/a *(ro)\n/b -ftnfs=x:y *(rw)\n").unwrap(),
        )
        .unwrap();
        assert_eq!(plan.len(), 2);
    }

    #[test]
    fn a_reload_refuses_what_needs_a_restart_with_file_and_line() {
        let old = parse("f", "/a *(ro)\n/b -ftnfs=x:y *(rw)\n").unwrap();
        for (text, line, why) in [
            (
                "/a *(ro)\n/b -ftnfs=x:y:z *(rw)\n",
                2,
                "mirroring of /b changed",
            ),
            (
                "/a *(ro)\n/b -ftnfs=y:x *(rw)\n",
                2,
                "mirroring of /b changed",
            ),
            (
                "/a *(ro)\n/b -ftnfs=x:y,HighRead *(rw)\n",
                2,
                "mirroring of /b changed",
            ),
            (
                "/a *(ro)\n/b -ftnfs=x:y,InMemory *(rw)\n",
                2,
                "InMemory of /b",
            ),
            (
                "/a -ftnfs=x:y *(ro)\n/b -ftnfs=x:y *(rw)\n",
                1,
                "mirroring of /a changed",
            ),
            (
                "/a *(ro)\n/b -ftnfs=x:y *(rw)\n/n -ftnfs=x:y *(rw)\n",
                3,
                "new mirrored export",
            ),
            (
                "/a *(ro,fsid=77)\n/b -ftnfs=x:y *(rw)\n",
                1,
                "id (fsid) of /a changed",
            ),
        ] {
            let e = plan_reload("/etc/ftnfs/exports", &held(&old), parse("f", text).unwrap())
                .unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/etc/ftnfs/exports:{line}: ")),
                "{e}"
            );
            assert!(e.reason.contains(why), "{text}: {e}");
        }
        // another path taking a held export's fsid
        let old = parse("f", "/a *(fsid=7)\n").unwrap();
        let e = plan_reload("f", &held(&old), parse("f", "/z *(fsid=7)\n").unwrap()).unwrap_err();
        assert!(e.reason.contains("fsid"), "{e}");
    }
}
