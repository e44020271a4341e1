#![no_main]
// The body and its invariants: hitgate::fuzz::forward.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::forward(data));
