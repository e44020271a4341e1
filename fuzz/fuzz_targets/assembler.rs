#![no_main]
// The body and its invariants: hitgate::fuzz::assembler.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::assembler(data));
