//! # ftnfs-core
//!
//! The pure protocol core of ftnfs. It decides; it never does I/O. No tokio, no sockets, no
//! clock (time comes in as [`ids::Millis`]), no filesystem, no ambient randomness. The daemon
//! (`ftnfsd`) feeds it requests and carries out what it decides.
//!
//! What lives here:
//! - [`ids`]: newtype ids (`ExportId`, `FileId`, `Generation`, …).
//! - [`handle`]: the file handle format (export id + file id + generation).
//! - [`proc_table`]: what each NFSv3/MOUNT procedure is (idempotent? updates? creates?).
//! - [`drc`]: the duplicate request cache.
//! - [`access`]: permission decisions for a caller's credential (the daemon runs as root).
//! - [`exports`]: the exports file parser (exports(5) + ftnfs mirroring options).
//! - [`dircookie`]: member-independent READDIR cookies.
//! - [`locks`]: byte-range locks of a file (NLM/POSIX range arithmetic; issue 14).
//! - [`mirror`]: the data path of mirroring (primary and secondary streams, order, resync plans).
//! - [`member`]: who serves an export — takeover, fencing, startup, rejoin, hand-back.
//!
//! ```text
//!  request ──▶ proc_table ──▶ drc.begin ──Execute──▶ (daemon executes) ──▶ drc.finish
//!                                 └──Replay / InProgress──▶ (daemon resends / drops)
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod dircookie;
pub mod drc;
pub mod exports;
pub mod handle;
pub mod ids;
pub mod lock_manager;
pub mod locks;
pub mod member;
pub mod mirror;
pub mod proc_table;
