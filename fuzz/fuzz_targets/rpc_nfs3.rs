//! RPC call header + NFSv3 arguments: never panics; decoded arguments round-trip.
#![no_main]
use ftnfs_wire::nfs3::Args;
use ftnfs_wire::rpc::CallHeader;
use ftnfs_wire::{XdrEncode, XdrReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = XdrReader::new(data);
    let proc_ = match CallHeader::decode(&mut r) {
        Ok(h) => h.proc_,
        Err(_) => data.first().copied().unwrap_or(0) as u32 % 23,
    };
    let args = r.rest();
    let shared = Args::decode_shared(proc_, &bytes::Bytes::copy_from_slice(args));
    if let Ok(a) = Args::decode(proc_, args) {
        let b = a.to_bytes();
        assert_eq!(Args::decode(proc_, &b).unwrap(), a);
        assert_eq!(shared.unwrap(), a, "decode_shared decodes as decode does");
    } else {
        assert!(shared.is_err());
    }
});
