//! The fuzz targets (run long by `fuzz/` under libFuzzer) in a short run on stable: each over its
//! seeds, every input kept in `fuzz/regressions/<target>/` (crashes found before), and a fixed number
//! of mutations of the seeds — bit flips, byte changes, cuts, splices, repeats — from a fixed-seed
//! generator, so every run tries the same inputs. A panic is a
//! finding. With `HITGATE_FUZZ_CORPUS=DIR` set, the seeds are also written to `DIR/<target>/` as
//! the libFuzzer corpus to start from.

use std::path::Path;

use super::{TARGETS, seeds};

/// Mutated inputs tried per target.
const MUTATIONS: usize = 3000;

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = pool[rng.below(pool.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            2 if len > 0 => v.truncate(rng.below(len)),
            3 => {
                let other = &pool[rng.below(pool.len())];
                let at = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.splice(at..at, other[from..].iter().take(64).copied());
            }
            4 if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let (a, b) = (a.min(b), a.max(b).min(a + 256));
                let piece = v[a..b].to_vec();
                v.splice(b..b, piece);
            }
            5 if len >= 8 => {
                let i = rng.below(len - 7);
                let word = [0u64, 1, u64::MAX, u64::from(u32::MAX), 1 << 31, 4096][rng.below(6)];
                v[i..i + 8].copy_from_slice(&word.to_le_bytes());
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect()
}

#[test]
fn every_fuzz_target_survives_its_seeds_regressions_and_mutations() {
    let corpus = std::env::var_os("HITGATE_FUZZ_CORPUS");
    for (name, target) in TARGETS {
        let mut pool = seeds(name);
        assert!(!pool.is_empty(), "{name} has seeds");
        if let Some(dir) = &corpus {
            let dir = Path::new(dir).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in pool.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
            }
        }
        pool.extend(regressions(name));
        for input in &pool {
            target(input);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for _ in 0..MUTATIONS {
            target(&mutate(&mut rng, &pool));
        }
        println!("{name}: {} seeds and regressions, {MUTATIONS} mutations", pool.len());
    }
}
