//! The switched stages' conversion sixteen pixels at a time with AVX2 and F16C, where the CPU has
//! them: the gain codes compared in 16-bit lanes, each pixel's stage's pedestal and factor selected
//! with one byte blend each, the factor widened from half precision by the F16C instruction (the
//! portable loop spends seven integer operations on it); a flagged pixel's factor is set to a half
//! NaN, whose product is `f32::NAN`, and the flags are tallied in 16-bit lanes.
//! Same operations, same order, same results to the bit as the portable loop, which converts what
//! is left over and whatever runs on other CPUs. About a quarter less time than the compiler's own
//! vectorisation of the portable loop on this pass.

/// Pixels (`raw`) with their maps, all of one length: G0's pedestal (quarter ADU) and factor, and
/// G1's and G2's pedestal (quarter ADU) and factor (half bits).
#[derive(Clone, Copy)]
pub(super) struct SwitchedRun<'a> {
    pub raw: &'a [u16],
    pub g0_pedestal: &'a [u16],
    pub g0_factor: &'a [f32],
    pub g1_pedestal: &'a [u16],
    pub g2_pedestal: &'a [u16],
    pub g1_factor: &'a [u16],
    pub g2_factor: &'a [u16],
}

impl<'a> SwitchedRun<'a> {
    /// The pixels `at` of this run, with their maps.
    pub fn part(&self, at: std::ops::Range<usize>) -> SwitchedRun<'a> {
        SwitchedRun {
            raw: &self.raw[at.clone()],
            g0_pedestal: &self.g0_pedestal[at.clone()],
            g0_factor: &self.g0_factor[at.clone()],
            g1_pedestal: &self.g1_pedestal[at.clone()],
            g2_pedestal: &self.g2_pedestal[at.clone()],
            g1_factor: &self.g1_factor[at.clone()],
            g2_factor: &self.g2_factor[at],
        }
    }
}

/// Converts the longest prefix of `run` that is a multiple of sixteen pixels into `out` if this CPU
/// has AVX2 and F16C, and returns how many pixels that was (0 otherwise) and how many of them were
/// flagged, which read `f32::NAN` (its bits exactly). With `MIXED`, G0 pixels are converted with G0's
/// maps as well.
pub(super) fn convert_prefix<const MIXED: bool>(run: &SwitchedRun<'_>, out: &mut [f32]) -> (usize, u32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU was just found to have both features the function is compiled for, which
        // is its only requirement: it reads and writes through slices alone.
        return unsafe { convert_avx2::<MIXED>(run, out) };
    }
    let _ = (run, out);
    (0, 0)
}

/// A half-precision quiet NaN: widened by F16C it is `f32::NAN` to the bit, and a product with it is
/// that NaN again, so a flagged pixel's factor set to it makes the pixel read `f32::NAN`.
const HALF_NAN: i16 = 0x7e00;

/// Pixels a 16-bit lane counts before the flag tally is emptied into its total.
const TALLY_ROUNDS: usize = 1 << 15;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn convert_avx2<const MIXED: bool>(run: &SwitchedRun<'_>, out: &mut [f32]) -> (usize, u32) {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_setzero_si128, _mm256_and_si256, _mm256_andnot_si256, _mm256_blendv_epi8,
        _mm256_blendv_ps, _mm256_castsi256_ps, _mm256_castsi256_si128, _mm256_cmpeq_epi16, _mm256_cvtepi16_epi32,
        _mm256_cvtepi32_ps, _mm256_cvtepu16_epi32, _mm256_cvtph_ps, _mm256_extracti128_si256, _mm256_mul_ps,
        _mm256_or_si256, _mm256_set1_epi16, _mm256_setzero_si256, _mm256_slli_epi16, _mm256_srli_epi16,
        _mm256_sub_epi16, _mm256_sub_epi32,
    };
    let maps = [run.g1_pedestal, run.g2_pedestal, run.g1_factor, run.g2_factor];
    let mut n = maps.iter().fold(out.len().min(run.raw.len()), |n, m| n.min(m.len()));
    if MIXED {
        n = n.min(run.g0_pedestal.len()).min(run.g0_factor.len());
    }
    let n = n / 16 * 16;
    let vector = |words: &[u16]| -> __m256i {
        let words: [u16; 16] = words.try_into().expect("sixteen");
        zerocopy::transmute!(words)
    };
    // The maps walked sixteen pixels at a time in step, which leaves no bounds to check a load.
    let steps = run.raw[..n]
        .chunks_exact(16)
        .zip(run.g1_pedestal[..n].chunks_exact(16))
        .zip(run.g2_pedestal[..n].chunks_exact(16))
        .zip(run.g1_factor[..n].chunks_exact(16))
        .zip(run.g2_factor[..n].chunks_exact(16))
        .zip(out[..n].chunks_exact_mut(16));
    let halves = |v: __m256i| -> [__m128i; 2] { [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)] };
    let (one, two, adc_bits) = (_mm256_set1_epi16(1), _mm256_set1_epi16(2), _mm256_set1_epi16(0x3fff));
    let (zero, half_nan) = (_mm256_setzero_si256(), _mm256_set1_epi16(HALF_NAN));
    let mut flagged = 0;
    // Each 16-bit lane counts its flagged pixels (a flag is -1 there), emptied before it can wrap.
    let mut tally = zero;
    let empty = |tally: __m256i| -> u32 {
        let counts: [u16; 16] = zerocopy::transmute!(tally);
        counts.iter().map(|&c| u32::from(c)).sum()
    };
    for (round, (((((raw, g1_pedestal), g2_pedestal), g1_factor), g2_factor), out)) in steps.enumerate() {
        let at = 16 * round;
        if round % TALLY_ROUNDS == TALLY_ROUNDS - 1 {
            flagged += empty(tally);
            tally = zero;
        }
        let raw = vector(raw);
        let code = _mm256_srli_epi16::<14>(raw);
        let adc = _mm256_and_si256(raw, adc_bits);
        let in_g1 = _mm256_cmpeq_epi16(code, one);
        let in_g0 = _mm256_cmpeq_epi16(code, zero);
        // Code 2 is no stage; G1 or G2 at ADC 0 is saturated.
        let bad =
            _mm256_or_si256(_mm256_cmpeq_epi16(code, two), _mm256_andnot_si256(in_g0, _mm256_cmpeq_epi16(adc, zero)));
        tally = _mm256_sub_epi16(tally, bad);
        let pedestal = _mm256_blendv_epi8(vector(g2_pedestal), vector(g1_pedestal), in_g1);
        let factor = _mm256_blendv_epi8(vector(g2_factor), vector(g1_factor), in_g1);
        let factor = _mm256_blendv_epi8(factor, half_nan, bad);
        let (adc, pedestal, factor) = (halves(_mm256_slli_epi16::<2>(adc)), halves(pedestal), halves(factor));
        let g0_halves = halves(in_g0);
        let g0_pedestal = if MIXED { halves(vector(&run.g0_pedestal[at..at + 16])) } else { [_mm_setzero_si128(); 2] };
        for h in 0..2 {
            // Both under 2¹⁶ and their difference under 2¹⁷: exact as integers and as floats alike, so
            // one conversion after an integer subtraction gives the portable loop's value to the bit.
            let adc = _mm256_cvtepu16_epi32(adc[h]);
            let excess = _mm256_cvtepi32_ps(_mm256_sub_epi32(adc, _mm256_cvtepu16_epi32(pedestal[h])));
            let mut value = _mm256_mul_ps(excess, _mm256_cvtph_ps(factor[h]));
            if MIXED {
                let at = at + 8 * h;
                let g0_factor: [f32; 8] = run.g0_factor[at..at + 8].try_into().expect("eight");
                let g0_factor: __m256 = zerocopy::transmute!(g0_factor);
                let g0_excess = _mm256_cvtepi32_ps(_mm256_sub_epi32(adc, _mm256_cvtepu16_epi32(g0_pedestal[h])));
                let g0_value = _mm256_mul_ps(g0_excess, g0_factor);
                value = _mm256_blendv_ps(value, g0_value, _mm256_castsi256_ps(_mm256_cvtepi16_epi32(g0_halves[h])));
            }
            let value: [f32; 8] = zerocopy::transmute!(value);
            out[8 * h..8 * h + 8].copy_from_slice(&value);
        }
    }
    (n, flagged + empty(tally))
}
