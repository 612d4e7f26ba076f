//! The file handle: export id + file id + generation (DESIGN.md decision 2).
//!
//! ```text
//!  byte 0     1..4      4..8        8..16      16..20
//!  version=1  reserved  export id   file id    generation   (big-endian)
//! ```
//! Nothing member-local (inode, device, boot time) is in it, so a handle stays valid across
//! restarts and on every member of the group.

use crate::ids::{ExportId, FileId, Generation};

/// Encoded length.
pub const HANDLE_LEN: usize = 20;
const VERSION: u8 = 1;

/// A decoded file handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// The export the object lives in.
    pub export: ExportId,
    /// The object.
    pub file: FileId,
    /// Its generation.
    pub gen: Generation,
}

/// The bytes are not a handle we issued: NFS3ERR_BADHANDLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed file handle")]
pub struct BadHandle;

impl FileHandle {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HANDLE_LEN);
        b.extend_from_slice(&[VERSION, 0, 0, 0]);
        b.extend_from_slice(&self.export.0.to_be_bytes());
        b.extend_from_slice(&self.file.0.to_be_bytes());
        b.extend_from_slice(&self.gen.0.to_be_bytes());
        b
    }

    /// Parses the wire form.
    pub fn decode(b: &[u8]) -> Result<FileHandle, BadHandle> {
        if b.len() != HANDLE_LEN || b[0] != VERSION || b[1..4] != [0, 0, 0] {
            return Err(BadHandle);
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        Ok(FileHandle {
            export: ExportId(u32_at(4)),
            file: FileId(u64::from_be_bytes(id)),
            gen: Generation(u32_at(16)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let h = FileHandle {
            export: ExportId(7),
            file: FileId(1 << 40),
            gen: Generation(3),
        };
        let b = h.encode();
        assert_eq!(b.len(), HANDLE_LEN);
        assert_eq!(FileHandle::decode(&b), Ok(h));
        assert_eq!(FileHandle::decode(&b[..19]), Err(BadHandle));
        let mut bad = b.clone();
        bad[0] = 2;
        assert_eq!(FileHandle::decode(&bad), Err(BadHandle));
    }
}
