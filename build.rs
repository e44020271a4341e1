//! Compiles the FPGA trigger kernel's HLS C++ (`hls/kernels/`) for this machine, so the emulated
//! card computes with the very source a bitstream is built from.

fn main() {
    for path in ["hls/kernels/hitgate_trigger.cpp", "hls/kernels/hit_classifier.h", "hls/kernels/hitgate_trigger.h"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=hls/weights/hit_classifier_weights.h");
    println!("cargo:rerun-if-changed=hls/include/hitgate_trigger_regs.h");
    cc::Build::new()
        .cpp(true)
        .file("hls/kernels/hitgate_trigger.cpp")
        .flag_if_supported("-std=c++11")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-label")
        .opt_level(2)
        .cpp_link_stdlib(None)
        .compile("hitgate_kernel");
}
