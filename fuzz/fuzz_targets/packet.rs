#![no_main]
// The body and its invariants: hitgate::fuzz::packet.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::packet(data));
