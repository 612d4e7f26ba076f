//! NSM SM_NOTIFY arguments: any bytes decode to arguments or an error, never a panic or an
//! allocation past SM_MAXSTRLEN.
#![no_main]
use ftnfs_wire::nsm::StatChange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = StatChange::decode(data);
});
