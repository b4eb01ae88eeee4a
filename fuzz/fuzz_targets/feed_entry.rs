//! `feed_entry`: see `mandate_tests::fuzz_targets::feed_entry` (the same body runs in the
//! stable replay test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mandate_tests::fuzz_targets::feed_entry(data));
