//! `audit_export`: see `mandate_tests::fuzz_targets::audit_export` (the same body runs in the
//! stable replay test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mandate_tests::fuzz_targets::audit_export(data));
