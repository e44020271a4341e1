//! The `fpga` trigger backend: each frame's summary quantized on the host and judged on the card,
//! one frame a call (frames reach each worker one at a time; the card is shared behind a lock). When
//! the card cannot be opened, or fails a call, the frame is judged in software by the kernel's own
//! arithmetic ([`QuantClassifier`], bit for bit what the card computes), counted
//! (`hitgate_fpga_fallbacks_total`); after [`GIVE_UP_AFTER`] failures in a row the card is given up
//! for the run (`hitgate_fpga_card_up` 0) and said so once.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge};

use super::card::CardPaths;
use super::driver::{CardLayout, FpgaCard, FpgaError};
use super::emulator::{EmulatedCard, Faults, INPUT_ADDRESS, OUTPUT_ADDRESS};
use super::manifest::{EMULATED_MANIFEST, Manifest, ManifestError};
use super::quant::{INPUTS, QuantClassifier, QuantError};
use super::weights::fnv1a64;
use crate::config::FpgaTriggerSection;
use crate::telemetry;

/// Failed calls in a row after which the card is given up for the run.
pub const GIVE_UP_AFTER: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum FpgaBackendError {
    #[error("trigger.fpga.model: cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("trigger.fpga.model")]
    Model(#[from] QuantError),
    #[error("trigger.fpga.manifest")]
    Manifest(#[from] ManifestError),
    #[error("trigger.fpga.manifest: required for card {0:?} (the manifest of the bitstream loaded on it)")]
    NoManifest(String),
}

/// What the backend did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FpgaStats {
    pub on_card: u64,
    pub in_software: u64,
    /// Why the card is not in use, if it is not.
    pub down: Option<String>,
}

pub struct FpgaBackend {
    quant: QuantClassifier,
    card: Mutex<Option<FpgaCard>>,
    /// The emulated card, kept running for the run, and its folder.
    emulated: Option<(EmulatedCard, PathBuf)>,
    failures_in_a_row: AtomicU32,
    up: AtomicBool,
    down_reason: Mutex<Option<String>>,
    on_card: AtomicU64,
    in_software: AtomicU64,
}

impl std::fmt::Debug for FpgaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FpgaBackend").field("up", &self.up).finish_non_exhaustive()
    }
}

impl FpgaBackend {
    /// Loads the model and opens the card. A card that cannot be opened is no error: frames are
    /// judged in software, and it is said (stderr, metrics, the run's summary).
    ///
    /// # Errors
    /// The model cannot be read or is not the int8 hit classifier.
    pub fn open(section: &FpgaTriggerSection) -> Result<FpgaBackend, FpgaBackendError> {
        let model = match section.model.as_str() {
            "builtin-int8" => crate::trigger::tract::BUILTIN_INT8_MODEL.to_vec(),
            path => std::fs::read(path).map_err(|source| FpgaBackendError::Read { path: path.into(), source })?,
        };
        let quant = QuantClassifier::from_onnx(&model)?;
        // A bitstream built from other sources or another model is refused, not fallen back from.
        let (manifest, manifest_path) = match &section.manifest {
            Some(path) => (Manifest::load(path)?, path.clone()),
            None if section.card == "emulated" => {
                let path = PathBuf::from("bitstreams/emulated/manifest.toml (built in)");
                let parsed = toml::from_str(EMULATED_MANIFEST)
                    .map_err(|e| ManifestError::Parse { path: path.clone(), reason: e.message().to_string() })?;
                (parsed, path)
            }
            None => return Err(FpgaBackendError::NoManifest(section.card.clone())),
        };
        manifest.check(&manifest_path, &model)?;
        let mut emulated = None;
        let paths = if section.card == "emulated" {
            // One folder per emulated card of this process.
            static CARDS: AtomicU64 = AtomicU64::new(0);
            let n = CARDS.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("hitgate-fpga-{}-{n}", std::process::id()));
            match EmulatedCard::start(&dir, Faults::default()) {
                Ok(card) => {
                    let paths = card.paths().clone();
                    emulated = Some((card, dir));
                    Ok(paths)
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            let index: u32 = section.card.trim_start_matches("xdma").parse().unwrap_or(0);
            Ok(CardPaths::xdma(index))
        };
        let layout = CardLayout { input_address: INPUT_ADDRESS, output_address: OUTPUT_ADDRESS };
        let timeout = Duration::from_micros(section.timeout_us);
        let opened =
            paths.and_then(|p| FpgaCard::open(&p, layout, fnv1a64(&model), timeout).map_err(|e| e.to_string()));
        let (card, down) = match opened {
            Ok(card) => (Some(card), None),
            Err(e) => {
                eprintln!("hitgate: FPGA card {}: {e}; the FPGA trigger judges in software", section.card);
                (None, Some(e))
            }
        };
        gauge!(telemetry::FPGA_UP).set(if card.is_some() { 1.0 } else { 0.0 });
        Ok(FpgaBackend {
            quant,
            up: AtomicBool::new(card.is_some()),
            card: Mutex::new(card),
            emulated,
            failures_in_a_row: AtomicU32::new(0),
            down_reason: Mutex::new(down),
            on_card: AtomicU64::new(0),
            in_software: AtomicU64::new(0),
        })
    }

    /// The hit probability of a frame with this summary.
    pub fn score(&self, summary: &[f32]) -> f32 {
        let mut x = [0i8; INPUTS];
        self.quant.quantize_input(summary, &mut x);
        if self.up.load(Ordering::Relaxed) {
            match self.on_card(&x) {
                Some(Ok(logit)) => {
                    self.failures_in_a_row.store(0, Ordering::Relaxed);
                    self.on_card.fetch_add(1, Ordering::Relaxed);
                    counter!(telemetry::FPGA_FRAMES).increment(1);
                    return self.quant.probability(logit);
                }
                Some(Err(e)) => self.failed(&e),
                None => {}
            }
        }
        self.in_software.fetch_add(1, Ordering::Relaxed);
        counter!(telemetry::FPGA_FALLBACKS).increment(1);
        self.quant.probability(self.quant.logit_accumulator(&x))
    }

    /// The card's logit for one frame; `None` when there is no card.
    fn on_card(&self, x: &[i8; INPUTS]) -> Option<Result<i64, FpgaError>> {
        let mut guard = self.card.lock().unwrap_or_else(|p| p.into_inner());
        let card = guard.as_mut()?;
        let mut logit = [0i64];
        Some(card.judge(std::slice::from_ref(x), &mut logit).map(|()| logit[0]))
    }

    fn failed(&self, e: &FpgaError) {
        if self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= GIVE_UP_AFTER
            && self.up.swap(false, Ordering::Relaxed)
        {
            let reason = format!("{e} ({GIVE_UP_AFTER} calls in a row failed)");
            eprintln!("hitgate: FPGA card given up: {reason}; the FPGA trigger judges in software");
            gauge!(telemetry::FPGA_UP).set(0.0);
            *self.down_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        }
    }

    pub fn stats(&self) -> FpgaStats {
        FpgaStats {
            on_card: self.on_card.load(Ordering::Relaxed),
            in_software: self.in_software.load(Ordering::Relaxed),
            down: self.down_reason.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// The emulated card, when the backend runs one (for fault rehearsal).
    pub fn emulated_card(&self) -> Option<&EmulatedCard> {
        self.emulated.as_ref().map(|(card, _)| card)
    }
}

impl Drop for FpgaBackend {
    fn drop(&mut self) {
        if let Some((card, dir)) = self.emulated.take() {
            drop(card);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
