//! Record marking: any byte stream, fed in arbitrary chunks, never panics, never yields a
//! record over the limit, and whatever it yields re-encodes and decodes to itself.
#![no_main]
use bytes::BytesMut;
use ftnfs_wire::record::{encode_record, RecordDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = RecordDecoder::new(4096);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(7) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(r)) => {
                    assert!(r.len() <= 4096);
                    let mut again = BytesMut::from(&encode_record(&r)[..]);
                    let mut d2 = RecordDecoder::new(4096);
                    assert_eq!(d2.decode(&mut again).unwrap(), Some(r));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
