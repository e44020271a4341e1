//! A fixed-size latency histogram (no allocation when recording) for percentiles in the run summary:
//! 8 sub-buckets per power of two of microseconds, so a percentile is known within 9%.

const SUB: usize = 8;
const BUCKETS: usize = 40 * SUB;

#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { counts: Box::new([0; BUCKETS]), total: 0 }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // us in [2^exp, 2^(exp+1))
    let frac = ((us >> (exp - 3)) & (SUB as u64 - 1)) as usize;
    ((exp - 2) * SUB + frac).min(BUCKETS - 1)
}

/// The upper edge of a bucket, in microseconds.
fn upper_edge(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64 + 1;
    }
    let exp = bucket / SUB + 2;
    let frac = (bucket % SUB) as u64;
    (1u64 << exp) + ((frac + 1) << (exp - 3))
}

impl LatencyHistogram {
    pub fn record_ns(&mut self, ns: u64) {
        self.counts[bucket_of(ns / 1000)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency (µs, bucket upper edge) below which `q` of the samples fall; `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(upper_edge(b));
            }
        }
        Some(upper_edge(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = LatencyHistogram::default();
        for us in 1..=10_000u64 {
            h.record_ns(us * 1000);
        }
        for (q, truth) in [(0.5, 5000.0), (0.99, 9900.0), (0.01, 100.0)] {
            let got = h.quantile_us(q).unwrap() as f64;
            assert!(got >= truth && got <= truth * 1.13 + 1.0, "q{q}: {got} vs {truth}");
        }
        assert_eq!(LatencyHistogram::default().quantile_us(0.5), None);
    }

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for us in 0..1_000_000u64 {
            let b = bucket_of(us);
            assert!(b >= last);
            assert!(upper_edge(b) > us, "{us} in bucket {b} with edge {}", upper_edge(b));
            last = b;
        }
    }
}
