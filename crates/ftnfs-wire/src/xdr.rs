//! XDR (RFC 4506) primitives: a bounded reader over a byte slice and a growable writer.
//!
//! Every variable-length item is checked against a caller-supplied maximum *and* against the
//! bytes actually present before anything is allocated, so a hostile length field can never
//! make us reserve memory (nfsserve's mistake, see STYLE.md).

use thiserror::Error;

/// Why a decode failed. All variants mean "the sender produced bytes we cannot accept".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XdrError {
    /// The input ended before the item was complete.
    #[error("truncated input: needed {needed} bytes at offset {offset}")]
    Truncated {
        /// Offset where the item starts.
        offset: usize,
        /// Bytes the item needed.
        needed: usize,
    },
    /// A length field exceeds the protocol's (or our) limit for that item.
    #[error("length {len} exceeds limit {max}")]
    TooLong {
        /// Length announced on the wire.
        len: u32,
        /// Largest length we accept here.
        max: u32,
    },
    /// A boolean was neither 0 nor 1.
    #[error("invalid boolean {0}")]
    BadBool(u32),
    /// A discriminant has no arm in the union/enum being decoded.
    #[error("invalid discriminant {value} for {what}")]
    BadDiscriminant {
        /// The type being decoded.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// Bytes remained after the message was fully decoded.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Reads XDR items from a borrowed buffer.
#[derive(Debug, Clone)]
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn pad4(n: usize) -> usize {
    (4 - (n & 3)) & 3
}

impl<'a> XdrReader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unconsumed tail.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Decodes all of `buf` with `read`: bytes left over are an error ([`finish`]).
    ///
    /// [`finish`]: Self::finish
    pub fn whole<T>(
        buf: &'a [u8],
        read: impl FnOnce(&mut XdrReader<'a>) -> Result<T, XdrError>,
    ) -> Result<T, XdrError> {
        let mut r = XdrReader::new(buf);
        let v = read(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Fails unless everything was consumed.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if self.remaining() < n {
            return Err(XdrError::Truncated {
                offset: self.pos,
                needed: n,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(self.u32()? as i32)
    }

    /// An unsigned hyper.
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Ok((hi << 32) | lo)
    }

    /// A boolean; anything but 0 or 1 is an error.
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadBool(v)),
        }
    }

    /// Fixed-length opaque data of `N` bytes (plus padding).
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let b = self.take(N + pad4(N))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b[..N]);
        Ok(out)
    }

    /// Variable-length opaque data of at most `max` bytes, borrowed from the input.
    pub fn opaque(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let len = len as usize;
        let b = self.take(len + pad4(len))?;
        Ok(&b[..len])
    }

    /// The count of a variable-length array, checked against `max` and against the bytes left
    /// (each element takes at least `min_elem_size` bytes), so callers may preallocate it.
    pub fn array_len(&mut self, max: u32, min_elem_size: usize) -> Result<usize, XdrError> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let need = (len as usize).saturating_mul(min_elem_size.max(1));
        if need > self.remaining() {
            return Err(XdrError::Truncated {
                offset: self.pos,
                needed: need,
            });
        }
        Ok(len as usize)
    }

    /// A variable-length array of at most `max` elements of at least `min_elem_size` bytes
    /// each (checked before anything is allocated), each decoded by `item`.
    pub fn array<T>(
        &mut self,
        max: u32,
        min_elem_size: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Vec<T>, XdrError> {
        let n = self.array_len(max, min_elem_size)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }
}

/// Appends XDR items to a buffer.
#[derive(Debug, Default, Clone)]
pub struct XdrWriter {
    buf: Vec<u8>,
}

impl XdrWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// The encoded bytes, borrowed.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Variable-length opaque data of at most `max` bytes produced in place by `fill`, which
    /// gets a zeroed buffer of `max` bytes and returns how many it used (≤ `max`). Saves the
    /// copy of a large READ payload.
    pub fn opaque_fill<E>(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let at = self.buf.len();
        self.buf.resize(at + 4 + max, 0);
        let n = match fill(&mut self.buf[at + 4..]) {
            Ok(n) => n.min(max),
            Err(e) => {
                self.buf.truncate(at);
                return Err(e);
            }
        };
        self.buf[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
        self.buf.truncate(at + 4 + n);
        self.buf.extend_from_slice(&[0u8; 3][..pad4(n)]);
        Ok(n)
    }

    /// [`opaque_fill`](Self::opaque_fill) without zeroing the room first (a 1 MiB READ paid
    /// a 1 MiB memset for bytes the read then overwrote): `fill` gets a pointer to `max`
    /// writable bytes and returns how many it wrote, from the start.
    ///
    /// # Safety
    /// `fill` must have written every one of the first `n` bytes it returns `Ok(n)` for
    /// (`n` ≤ `max`; more is clamped); it must not read the room, which is uninitialized.
    pub unsafe fn opaque_fill_raw<E>(
        &mut self,
        max: usize,
        fill: impl FnOnce(*mut u8, usize) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf.reserve(max + 3);
        let room = self.buf.spare_capacity_mut().as_mut_ptr() as *mut u8;
        let n = match fill(room, max) {
            Ok(n) => n.min(max),
            Err(e) => {
                self.buf.truncate(at);
                return Err(e);
            }
        };
        // SAFETY: `reserve` made room for `max` bytes past the length, so `at + 4 + n` is
        // within the capacity; the caller's contract says `fill` wrote those `n` bytes, so
        // every byte up to the new length is initialized.
        unsafe { self.buf.set_len(at + 4 + n) };
        self.buf[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
        self.buf.extend_from_slice(&[0u8; 3][..pad4(n)]);
        Ok(n)
    }

    /// Appends `n` zero bytes (room to be [`patch`](Self::patch)ed later).
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    /// Overwrites bytes already written, starting at `at`.
    ///
    /// # Panics
    /// If the range is beyond what was written (a caller bug).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) {
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Drops everything written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }

    /// An unsigned hyper.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(v as u32)
    }

    /// Fixed-length opaque data (padded).
    pub fn fixed(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(&[0u8; 3][..pad4(b.len())]);
        self
    }

    /// Variable-length opaque data or string.
    pub fn opaque(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.fixed(b)
    }
}

/// A type with an XDR decoding.
pub trait XdrDecode<'a>: Sized {
    /// Decodes one value.
    fn decode(r: &mut XdrReader<'a>) -> Result<Self, XdrError>;

    /// Decodes a value that must span all of `buf`.
    fn from_bytes(buf: &'a [u8]) -> Result<Self, XdrError> {
        let mut r = XdrReader::new(buf);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A type with an XDR encoding.
pub trait XdrEncode {
    /// Appends the encoding of `self`.
    fn encode(&self, w: &mut XdrWriter);

    /// The encoding as a fresh buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        self.encode(&mut w);
        w.into_inner()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn opaque_fill_raw_writes_what_was_filled_and_pads() {
        let mut w = XdrWriter::new();
        w.u32(7);
        // SAFETY: the closure writes the first 5 bytes it reports
        let n = unsafe {
            w.opaque_fill_raw(16, |p, max| -> Result<usize, ()> {
                assert!(max >= 5);
                for i in 0..5 {
                    p.add(i).write(b'a' + i as u8);
                }
                Ok(5)
            })
        }
        .unwrap();
        assert_eq!(n, 5);
        assert_eq!(w.as_slice(), b"\0\0\0\x07\0\0\0\x05abcde\0\0\0");
        // SAFETY: nothing reported, nothing to write
        let e = unsafe { w.opaque_fill_raw(8, |_, _| Err::<usize, &str>("x")) };
        assert_eq!(e, Err("x"));
        assert_eq!(w.len(), 16, "an error leaves nothing behind");
    }

    #[test]
    fn opaque_fill_matches_opaque() {
        for n in [0usize, 1, 3, 4, 5, 100] {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut a = XdrWriter::new();
            a.u32(7).opaque(&data);
            let mut b = XdrWriter::new();
            b.u32(7);
            let got = b
                .opaque_fill(200, |buf| -> Result<usize, ()> {
                    buf[..n].copy_from_slice(&data);
                    Ok(n)
                })
                .unwrap();
            assert_eq!(got, n);
            assert_eq!(a.as_slice(), b.as_slice());
        }
        let mut c = XdrWriter::new();
        c.u32(1);
        assert!(c.opaque_fill(10, |_| Err::<usize, ()>(())).is_err());
        assert_eq!(c.as_slice(), &[0, 0, 0, 1]);
    }

    use super::*;

    #[test]
    fn opaque_is_padded_and_round_trips() {
        let mut w = XdrWriter::new();
        w.opaque(b"abcde").u64(0x0102_0304_0506_0708).bool(true);
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 4 + 8 + 8 + 4);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.opaque(5).unwrap(), b"abcde");
        assert_eq!(r.u64().unwrap(), 0x0102_0304_0506_0708);
        assert!(r.bool().unwrap());
        r.finish().unwrap();
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        // length 0xffff_fff0 with only 4 bytes following
        let bytes = [0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4];
        assert!(matches!(
            XdrReader::new(&bytes).opaque(u32::MAX),
            Err(XdrError::Truncated { .. })
        ));
        assert!(matches!(
            XdrReader::new(&bytes).opaque(1024),
            Err(XdrError::TooLong { .. })
        ));
        assert!(matches!(
            XdrReader::new(&bytes).array_len(u32::MAX, 4),
            Err(XdrError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_bool_is_an_error() {
        assert_eq!(
            XdrReader::new(&[0, 0, 0, 2]).bool(),
            Err(XdrError::BadBool(2))
        );
    }
}
