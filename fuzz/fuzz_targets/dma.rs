#![no_main]
// The body and its invariants: hitgate::fuzz::dma.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::dma(data));
