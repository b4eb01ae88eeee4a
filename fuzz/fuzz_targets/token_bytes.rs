//! `token_bytes`: see `mandate_tests::fuzz_targets::token_bytes` (the same body runs in the
//! stable replay test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mandate_tests::fuzz_targets::token_bytes(data));
