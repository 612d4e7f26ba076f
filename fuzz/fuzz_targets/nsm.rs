//! NSM arguments (SM_NOTIFY, SM_MON, SM_UNMON, SM_UNMON_ALL, SM_STAT, the callback's
//! status): any bytes decode to arguments or an error, never a panic or an allocation past
//! SM_MAXSTRLEN; what decodes encodes back to the same bytes (padding aside).
#![no_main]
use ftnfs_wire::nsm::{decode_sm_name, Mon, MonId, MyId, StatChange, Status};
use ftnfs_wire::xdr::XdrEncode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let again = match which % 6 {
        0 => StatChange::decode(rest).ok().map(|a| a.to_bytes()),
        1 => Mon::decode(rest).ok().map(|a| a.to_bytes()),
        2 => MonId::decode_unmon(rest).ok().map(|a| a.to_bytes()),
        3 => MyId::decode_all(rest).ok().map(|a| a.to_bytes()),
        4 => Status::decode(rest).ok().map(|a| a.to_bytes()),
        _ => {
            let _ = decode_sm_name(rest);
            None
        }
    };
    if let Some(b) = again {
        // the same bytes, but for XDR padding, which decoding skips and encoding zeroes
        assert_eq!(b.len(), rest.len());
        assert!(rest.iter().zip(&b).all(|(x, y)| x == y || *y == 0));
    }
});
