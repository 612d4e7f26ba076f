//! # ftnfs-wire
//!
//! Byte-level codecs for the protocols ftnfs speaks: XDR (RFC 4506), ONC RPC v2 with record
//! marking (RFC 5531), MOUNT v3 and NFSv3 (RFC 1813), NLM v4 (locks), and the portmapper calls
//! a server needs.
//!
//! It is **not** a server: no sockets, no dispatch, no policy. Every decoder works on bytes
//! already received, bounds every length before allocating, and reports "need more bytes"
//! (`Ok(None)`) apart from "these bytes are bad" (an error).
//!
//! ```text
//!  TCP bytes ──RecordDecoder──▶ record ──CallHeader::decode──▶ (header, args bytes)
//!                                                  │
//!                              nfs3::Args::decode ◀┘   (or mount::*)
//!  reply: ReplyHeader::encode + Res<Ok,Fail>::encode ──encode_record──▶ TCP bytes
//! ```
#![deny(missing_docs)]

pub mod mount;
pub mod nfs3;
pub mod nlm;
pub mod nsm;
pub mod peer;
pub mod portmap;
pub mod record;
pub mod rpc;
pub mod xdr;

pub use xdr::{XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};
