//! NLM arguments of every version: any bytes for any procedure decode to arguments or an
//! error, never a panic or an allocation past the protocol's limits; what decodes survives
//! its version 4 form (what a version 1 or 3 call is carried on as).
#![no_main]
use ftnfs_wire::nlm::Args;
use ftnfs_wire::xdr::XdrEncode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let [v, p, rest @ ..] = data {
        let vers = u32::from(v % 5);
        let proc_ = u32::from(p % 26);
        if let Ok(Some(a)) = Args::decode_version(vers, proc_, rest) {
            let again = Args::decode(proc_, &a.to_bytes());
            assert_eq!(again.ok().flatten(), Some(a));
        }
    }
});
