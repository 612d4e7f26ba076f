//! READDIR cookies (RFC 1813 §3.3.16) that do not depend on a member's local directory layout.
//!
//! A cookie is a 63-bit hash of the entry name, and a listing is returned in cookie order. So
//! the same directory gives the same cookies on every member and across restarts, entries
//! created or removed between two READDIR calls never shift the others, and the cookie
//! verifier can stay constant. Cookies 1 and 2 are `.` and `..`; 0 means "from the start".
//! Two names colliding on 63 bits in one directory would hide one of them from a listing
//! resumed between them; with FNV-1a this needs ~2^31 entries to become likely.

use crate::ids::fnv1a64;

/// Cookie of ".".
pub const DOT: u64 = 1;
/// Cookie of "..".
pub const DOTDOT: u64 = 2;

/// The cookie of an entry name.
pub fn cookie_of(name: &[u8]) -> u64 {
    match name {
        b"." => DOT,
        b".." => DOTDOT,
        _ => (fnv1a64(name) >> 1).max(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stable_and_above_reserved() {
        assert_eq!(cookie_of(b"a"), cookie_of(b"a"));
        assert_ne!(cookie_of(b"a"), cookie_of(b"b"));
        for n in [&b"x"[..], b"", b"long name"] {
            assert!(cookie_of(n) >= 3 && cookie_of(n) < 1 << 63);
        }
    }
}
