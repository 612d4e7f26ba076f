//! NLM v4 arguments: any bytes for any procedure decode to arguments or an error, never a
//! panic or an allocation past the protocol's limits.
#![no_main]
use ftnfs_wire::nlm::Args;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&p, rest)) = data.split_first() {
        let _ = Args::decode(u32::from(p % 26), rest);
    }
});
