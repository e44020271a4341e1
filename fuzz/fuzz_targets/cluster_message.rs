#![no_main]
// The body and its invariants: hitgate::fuzz::cluster_message.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hitgate::fuzz::cluster_message(data));
