#![no_main]
// The body and its invariants: hitgate::fuzz::calibration.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::calibration(data));
