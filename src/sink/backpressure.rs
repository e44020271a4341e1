//! Storage's hold on the trigger (`storage.on_full = "raise_threshold"`): when a sink's queue is full,
//! the accept rate is given a ceiling below what it was, so the trigger's cut rises until storage keeps
//! up; once no sink has been full for a while and the queues are short, the ceiling is raised step by
//! step until it is gone. Multiplicative down, gentler up: storage that is briefly slow costs a brief
//! rise of the cut, storage that stays slow holds it up.

/// A full queue in a step cuts the ceiling to this share of the accept rate it saw.
const TIGHTEN: f64 = 0.7;
/// Quiet steps raise the ceiling by this factor…
const RELAX: f64 = 1.25;
/// …after this many quiet steps in a row.
const RELAX_AFTER_STEPS: u32 = 4;
/// Queues must be below this fill for the ceiling to rise.
const RELAX_BELOW_FILL: f64 = 0.25;
/// The ceiling never goes below this accept rate (the trigger still passes its best frames).
const MIN_CEILING: f64 = 1e-3;

#[derive(Debug)]
pub struct Backpressure {
    step: u64,
    frames: u64,
    accepted: u64,
    full: bool,
    quiet_steps: u32,
    ceiling: Option<f64>,
}

impl Backpressure {
    /// A controller deciding every `step` judged frames.
    pub fn new(step: u64) -> Backpressure {
        Backpressure { step: step.max(1), frames: 0, accepted: 0, full: false, quiet_steps: 0, ceiling: None }
    }

    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling
    }

    /// Takes one judged frame: whether it was accepted, whether a sink's queue refused it, and the
    /// fill (0..=1) of the fullest queue. Returns the new ceiling when it changes (`Some(None)`: lifted).
    pub fn observe(&mut self, accepted: bool, refused: bool, fullest: f64) -> Option<Option<f64>> {
        self.frames += 1;
        self.accepted += u64::from(accepted);
        self.full |= refused;
        if self.frames < self.step {
            return None;
        }
        let rate = self.accepted as f64 / self.frames as f64;
        let change = if self.full {
            self.quiet_steps = 0;
            let seen = self.ceiling.map_or(rate, |c| c.min(rate));
            Some(Some((seen * TIGHTEN).max(MIN_CEILING)))
        } else if let Some(c) = self.ceiling {
            self.quiet_steps += 1;
            (self.quiet_steps >= RELAX_AFTER_STEPS && fullest < RELAX_BELOW_FILL).then(|| {
                self.quiet_steps = 0;
                Some(c * RELAX).filter(|&next| next < 1.0)
            })
        } else {
            None
        };
        (self.frames, self.accepted, self.full) = (0, 0, false);
        if let Some(c) = change {
            self.ceiling = c;
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queues_lower_the_ceiling_and_quiet_ones_lift_it() {
        let mut b = Backpressure::new(10);
        // 40% accepted, a refusal in the step: the ceiling goes to 0.7 × 0.4.
        let mut last = None;
        for i in 0..10 {
            last = b.observe(i % 5 < 2, i == 3, 1.0).or(last);
        }
        assert_eq!(last, Some(Some(0.4 * TIGHTEN)));
        // Still refused at a lower rate: down again from the lower of ceiling and rate.
        for i in 0..10 {
            b.observe(i < 2, i == 0, 1.0);
        }
        let after_two = b.ceiling().unwrap();
        assert!((after_two - 0.2 * TIGHTEN).abs() < 1e-12, "{after_two}");
        // Quiet but with long queues: it holds.
        for _ in 0..100 {
            b.observe(false, false, 0.5);
        }
        assert_eq!(b.ceiling(), Some(after_two));
        // Quiet with short queues: it rises every few steps and is finally lifted.
        let mut steps = 0;
        while b.ceiling().is_some() {
            for _ in 0..10 {
                b.observe(false, false, 0.0);
            }
            steps += 1;
            assert!(steps < 1000, "never lifted");
        }
        assert!(steps > RELAX_AFTER_STEPS as usize);
    }

    #[test]
    fn the_ceiling_has_a_floor() {
        let mut b = Backpressure::new(5);
        for _ in 0..200 {
            b.observe(false, true, 1.0);
        }
        assert_eq!(b.ceiling(), Some(MIN_CEILING));
    }
}
