//! Which life of an inode number an object is (Documentation/01-file-handles.md).
//!
//! Linux reuses an inode number as soon as its object is gone: a file removed outside ftnfs
//! and another created (under any name) often get the same number. The identity table keeps,
//! beside the inode number, a 64-bit *life* that tells two objects with one number apart:
//!
//! 1. the filesystem's own file handle (`name_to_handle_at`, what knfsd hands out): on ext4,
//!    xfs, btrfs and tmpfs it holds the inode's generation, which is new for every object
//!    that gets the number;
//! 2. else the birth time (`statx` `STATX_BTIME`), which tells lives apart unless both began
//!    within one tick of the filesystem's clock;
//! 3. else nothing ([`UNKNOWN`]): on such a filesystem a re-created object is taken for the
//!    old one, as before.
//!
//! A life is member-local, like the inode number; it is never sent to peers.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// No life could be read: never compared.
pub const UNKNOWN: u64 = 0;

/// Room for any file handle the kernel gives (MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// `struct file_handle` with its variable part inline.
#[repr(C)]
struct Handle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE],
}

/// The life of the object `name` in `dir` (not following a symlink), or [`UNKNOWN`].
pub fn of(dir: BorrowedFd<'_>, name: &OsStr) -> u64 {
    let Ok(cname) = CString::new(name.as_bytes()) else {
        return UNKNOWN;
    };
    let mut h = Handle {
        handle_bytes: MAX_HANDLE as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call; `h` is a
    // `struct file_handle` (same layout: two C ints, then the bytes) whose `handle_bytes`
    // says how much room follows, which is exactly the size of `f_handle`, so the kernel
    // writes at most that many bytes (EOVERFLOW otherwise); `mount_id` is a valid int.
    // Flags 0: the last component is not followed if it is a symlink.
    let r = unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            cname.as_ptr(),
            (&mut h as *mut Handle).cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    if r == 0 && (h.handle_bytes as usize) <= MAX_HANDLE {
        let mut x = fnv(FNV_OFFSET, &h.handle_type.to_be_bytes());
        x = fnv(x, &h.f_handle[..h.handle_bytes as usize]);
        return nonzero(x);
    }
    match rustix::fs::statx(
        dir,
        name,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::BTIME,
    ) {
        Ok(st) if st.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0 => {
            let t = st.stx_btime;
            nonzero(fnv(
                fnv(FNV_OFFSET, b"btime"),
                &[t.tv_sec.to_be_bytes(), (t.tv_nsec as i64).to_be_bytes()].concat(),
            ))
        }
        _ => UNKNOWN,
    }
}

/// Two lives are the same object unless both are known and differ.
pub fn same(recorded: u64, now: u64) -> bool {
    recorded == UNKNOWN || now == UNKNOWN || recorded == now
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, b: &[u8]) -> u64 {
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn nonzero(x: u64) -> u64 {
    if x == UNKNOWN {
        1
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_recreated_object_with_the_same_inode_has_another_life() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let mut changed = 0;
        // the inode number comes back at once on ext4 and tmpfs; try a few times in case
        // the filesystem hands out another one
        for _ in 0..20 {
            std::fs::write(d.path().join("a"), b"1").unwrap();
            let ino = std::os::unix::fs::MetadataExt::ino(
                &std::fs::metadata(d.path().join("a")).unwrap(),
            );
            let l1 = of(dir.as_fd(), OsStr::new("a"));
            assert_ne!(l1, UNKNOWN, "this filesystem tells lives apart");
            assert_eq!(l1, of(dir.as_fd(), OsStr::new("a")), "stable");
            std::fs::remove_file(d.path().join("a")).unwrap();
            std::fs::write(d.path().join("b"), b"2").unwrap();
            let ino2 = std::os::unix::fs::MetadataExt::ino(
                &std::fs::metadata(d.path().join("b")).unwrap(),
            );
            let l2 = of(dir.as_fd(), OsStr::new("b"));
            std::fs::remove_file(d.path().join("b")).unwrap();
            if ino == ino2 {
                assert_ne!(l1, l2, "same inode number, another life");
                changed += 1;
            }
        }
        assert!(changed > 0, "the inode number was never reused");
        // a symlink's own life, not its target's
        std::os::unix::fs::symlink("/", d.path().join("s")).unwrap();
        assert_ne!(
            of(dir.as_fd(), OsStr::new("s")),
            of(dir.as_fd(), OsStr::new("."))
        );
        assert_eq!(of(dir.as_fd(), OsStr::new("missing")), UNKNOWN);
    }
}
