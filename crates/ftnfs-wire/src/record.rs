//! ONC RPC record marking over TCP (RFC 5531 §11): a record is one or more fragments, each
//! preceded by a 4-byte header whose top bit marks the last fragment and whose low 31 bits give
//! the fragment length.
//!
//! [`RecordDecoder`] is incremental: feed it whatever arrived, it returns complete records and
//! keeps the rest. The total size of a record is bounded before any byte of it is buffered.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Why a byte stream cannot be decoded into records; the connection should be closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The record (sum of its fragments) would exceed the configured maximum.
    #[error("record of at least {size} bytes exceeds limit {max}")]
    TooLarge {
        /// Size the record would reach.
        size: usize,
        /// Largest record accepted.
        max: usize,
    },
    /// A record has more fragments than we accept (defends against a flood of empty fragments).
    #[error("record has more than {0} fragments")]
    TooManyFragments(usize),
}

const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Upper bound on fragments per record; real clients send one.
pub const MAX_FRAGMENTS: usize = 1024;

/// Incremental decoder of record-marked streams.
#[derive(Debug)]
pub struct RecordDecoder {
    max_record: usize,
    record: Vec<u8>,
    fragments: usize,
}

impl RecordDecoder {
    /// A decoder accepting records up to `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Self {
            max_record,
            record: Vec::new(),
            fragments: 0,
        }
    }

    /// Takes bytes out of `src` and returns the next complete record, `Ok(None)` if more bytes
    /// are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        loop {
            if src.len() < 4 {
                return Ok(None);
            }
            let header = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let len = (header & !LAST_FRAGMENT) as usize;
            let last = header & LAST_FRAGMENT != 0;
            let size = self.record.len().saturating_add(len);
            if size > self.max_record {
                return Err(RecordError::TooLarge {
                    size,
                    max: self.max_record,
                });
            }
            if src.len() < 4 + len {
                // Reserve only what the (already bounded) fragment needs.
                src.reserve(4 + len - src.len());
                return Ok(None);
            }
            self.fragments += 1;
            if self.fragments > MAX_FRAGMENTS {
                return Err(RecordError::TooManyFragments(MAX_FRAGMENTS));
            }
            src.advance(4);
            if last && self.record.is_empty() {
                self.fragments = 0;
                // no copy: the record shares the receive buffer's memory
                return Ok(Some(src.split_to(len).freeze()));
            }
            self.record.extend_from_slice(&src[..len]);
            src.advance(len);
            if last {
                self.fragments = 0;
                return Ok(Some(Bytes::from(std::mem::take(&mut self.record))));
            }
        }
    }
}

/// The 4-byte mark of a one-fragment record of `len` bytes.
pub fn record_mark(len: usize) -> [u8; 4] {
    (len as u32 | LAST_FRAGMENT).to_be_bytes()
}

/// A whole one-fragment record.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32 | LAST_FRAGMENT).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(data: &[u8], last: bool) -> Vec<u8> {
        let mut v = ((data.len() as u32) | if last { LAST_FRAGMENT } else { 0 })
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn multi_fragment_record_byte_by_byte() {
        let mut stream = frag(b"hello ", false);
        stream.extend(frag(b"world", true));
        stream.extend(frag(b"next", true));
        let mut d = RecordDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in stream {
            buf.extend_from_slice(&[b]);
            while let Some(r) = d.decode(&mut buf).unwrap() {
                out.push(r);
            }
        }
        assert_eq!(out, vec![b"hello world".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn oversized_header_is_refused_without_buffering() {
        let mut d = RecordDecoder::new(1024);
        let mut buf = BytesMut::from(&0xffff_ffffu32.to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordError::TooLarge { .. })
        ));
        assert!(buf.capacity() < 4096);
    }

    #[test]
    fn too_many_empty_fragments() {
        let mut d = RecordDecoder::new(1024);
        let mut buf = BytesMut::new();
        for _ in 0..=MAX_FRAGMENTS {
            buf.extend_from_slice(&frag(b"", false));
        }
        assert_eq!(
            d.decode(&mut buf),
            Err(RecordError::TooManyFragments(MAX_FRAGMENTS))
        );
    }
}
