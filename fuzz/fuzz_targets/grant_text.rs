//! `grant_text`: see `mandate_tests::fuzz_targets::grant_text` (the same body runs in the
//! stable replay test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mandate_tests::fuzz_targets::grant_text(data));
