#![no_main]
// The body and its invariants: hitgate::fuzz::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::config(data));
