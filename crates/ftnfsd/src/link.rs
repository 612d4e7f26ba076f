//! The sending half of a peer link: a bounded queue of encoded frames towards one peer,
//! drained by that peer's connection task (`peer.rs`). The mirror driver, the resync
//! streams and the peer tasks all hold one; it sits below all of them.

/// A frame queue towards one peer.
pub type Link = tokio::sync::mpsc::Sender<bytes::Bytes>;
