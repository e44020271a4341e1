#![no_main]
// The body and its invariants: hitgate::fuzz::capture.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::capture(data));
