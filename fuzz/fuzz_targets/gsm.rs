//! Arbitrary 65-byte blocks through the GSM 06.10 decoder (every bit pattern is a frame): no
//! panic, no overflow, and every sample on the 13-bit grid the standard's truncation leaves.
#![no_main]

use callrec_engine::decode::gsm::{BLOCK_BYTES, BLOCK_SAMPLES, GsmDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = GsmDecoder::new();
    let mut out = [0i16; BLOCK_SAMPLES];
    for block in data.chunks_exact(BLOCK_BYTES) {
        decoder.decode_block(block.try_into().unwrap(), &mut out);
        assert!(out.iter().all(|s| s & 7 == 0));
    }
});
