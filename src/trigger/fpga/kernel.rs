//! The HLS kernel's top function, compiled for this machine by `build.rs` from `hls/kernels/`: what
//! the emulated card runs.

/// What one call of the kernel reports besides its outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelReport {
    pub status: u32,
    pub judged: u32,
    pub kernel_id: u32,
    pub abi_version: u32,
    pub model_hash: u64,
}

// SAFETY: the declaration is the C++ one in hls/kernels/hitgate_trigger.h (`extern "C"`), type for
// type: const int8_t*, int64_t*, uint32_t, then four uint32_t* / one uint64_t* out-parameters.
unsafe extern "C" {
    fn hitgate_trigger(
        input: *const i8,
        output: *mut i64,
        frames: u32,
        status: *mut u32,
        judged: *mut u32,
        kernel_id: *mut u32,
        abi_version: *mut u32,
        model_hash: *mut u64,
    );
}

/// Runs the kernel on `frames` inputs of `super::quant::INPUTS` values. A call whose buffers are too
/// short for `frames` runs with no frames (the kernel then reports a bad frame count).
pub fn run(input: &[i8], output: &mut [i64], frames: u32) -> KernelReport {
    let fits = input.len() >= frames as usize * super::quant::INPUTS && output.len() >= frames as usize;
    let frames = if fits { frames } else { 0 };
    let mut r = KernelReport::default();
    // SAFETY: the kernel reads `frames × INPUTS` bytes from `input` and writes `frames` values to
    // `output`, both checked above to be in bounds (and it reads and writes nothing when `frames` is
    // 0 or above its maximum); the five report pointers are to live locals; it keeps no pointer after
    // returning and touches no other memory.
    unsafe {
        hitgate_trigger(
            input.as_ptr(),
            output.as_mut_ptr(),
            frames,
            &mut r.status,
            &mut r.judged,
            &mut r.kernel_id,
            &mut r.abi_version,
            &mut r.model_hash,
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::fpga::quant::{INPUTS, QuantClassifier};
    use crate::trigger::fpga::regs;

    #[test]
    fn the_compiled_kernel_computes_what_the_rust_model_does() {
        let q = QuantClassifier::from_onnx(crate::trigger::tract::BUILTIN_INT8_MODEL).unwrap();
        let inputs: Vec<[i8; INPUTS]> =
            (0..20).map(|k| std::array::from_fn(|i| ((i as i32 * 37 + k * 101) % 256 - 128) as i8)).collect();
        let flat: Vec<i8> = inputs.iter().flatten().copied().collect();
        let mut out = vec![0i64; 20];
        let r = run(&flat, &mut out, 20);
        assert_eq!((r.status, r.judged), (regs::STATUS_OK, 20));
        assert_eq!((r.kernel_id, r.abi_version), (regs::KERNEL_ID_VALUE, regs::ABI_VERSION_VALUE));
        assert_eq!(r.model_hash, crate::trigger::fpga::manifest::fnv1a64(crate::trigger::tract::BUILTIN_INT8_MODEL));
        for (x, got) in inputs.iter().zip(&out) {
            assert_eq!(*got, q.logit_accumulator(x));
        }
        // Buffers shorter than the count: nothing runs.
        let r = run(&flat[..10], &mut out, 20);
        assert_eq!((r.status, r.judged), (regs::STATUS_BAD_FRAME_COUNT, 0));
    }
}
