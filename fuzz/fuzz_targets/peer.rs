//! Peer channel: any byte stream, fed in arbitrary chunks, never panics or allocates past
//! the frame limit; every message that decodes re-encodes to a frame that decodes to itself.
#![no_main]
use bytes::BytesMut;
use ftnfs_wire::peer::{FrameDecoder, PeerMsg, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = FrameDecoder;
    let mut buf = BytesMut::new();
    for chunk in data.chunks(11) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME);
                    let shared = PeerMsg::decode_shared(&body.clone().freeze());
                    if let Ok(m) = PeerMsg::decode(&body) {
                        let f = m.to_frame();
                        assert_eq!(PeerMsg::decode(&f[4..]).unwrap(), m);
                        assert_eq!(shared.unwrap(), m, "decode_shared decodes as decode does");
                    } else {
                        assert!(shared.is_err());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
