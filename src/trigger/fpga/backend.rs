//! The `fpga` trigger backend, `[trigger.fpga]`: frames' summaries quantized on the host and judged on
//! the card, a worker's batch a call (the card is shared by the workers behind a lock; each worker
//! stages its batch in its own `CardBatch`). When the card cannot be opened, or fails a call, the
//! frame is judged in software by the kernel's own arithmetic ([`QuantClassifier`], bit for bit what
//! the card computes), counted
//! (`hitgate_fpga_fallbacks_total`); after [`GIVE_UP_AFTER`] failures in a row the card is given up
//! for the run (`hitgate_fpga_card_up` 0) and said so once.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use serde::{Deserialize, Serialize};

use super::card::CardPaths;
use super::driver::{CardLayout, FpgaCard, FpgaError};
use super::emulator::{EmulatedCard, Faults, INPUT_ADDRESS, OUTPUT_ADDRESS};
use super::manifest::{EMULATED_MANIFEST, Manifest, ManifestError, fnv1a64};
use super::quant::{INPUTS, QuantClassifier, QuantError};
use super::regs::MAX_FRAMES;
use crate::section::{Problems, key, resolve, resolve_model};
use crate::telemetry;
use crate::trigger::TriggerError;
use crate::trigger::backend::{Backend, BackendSection, ConfiguredCut, CutUnit, FrameFacts, Score, Scorer};

/// The trigger on an FPGA co-processor.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FpgaTriggerSection {
    /// `"emulated"` (the HLS kernel compiled for this machine behind an emulated card) or an XDMA
    /// card, `"xdma0"`, `"xdma1"`, … (`/dev/xdmaN_user`, `_h2c_0`, `_c2h_0`).
    pub card: String,
    /// `"builtin-int8"` or an int8 (QDQ) ONNX file: what the card's kernel must have been built from.
    pub model: String,
    /// The cut on the hit probability.
    pub threshold: f32,
    /// A call the card has not finished in this long fails; the frame is judged in software.
    pub timeout_us: u64,
    /// The most frames a reducer worker hands the card in one call. A worker takes what is already
    /// queued behind the frame it waited for, up to this many: an idle pipeline still sends one
    /// frame a call (no added wait), a busy one shares the call's fixed cost among many.
    pub batch_frames: usize,
    /// The manifest of the bitstream on the card (`bitstreams/<board>/manifest.toml`); checked
    /// against this hitgate's register map and the model at start. Required for an XDMA card; the
    /// emulated card's is built in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// Faults the emulated card plays, to rehearse the driver's error paths on a machine without a
    /// card: `"stuck_done"` (the kernel never says done), `"dma_refused"` (every transfer to the card
    /// fails), `"not_loaded"` (nothing answers the registers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emulated_faults: Vec<String>,
}

/// The faults `trigger.fpga.emulated_faults` knows.
pub const EMULATED_FAULTS: [&str; 3] = ["stuck_done", "dma_refused", "not_loaded"];

/// The model name for the int8 classifier compiled into hitgate.
pub const BUILTIN_INT8: &str = "builtin-int8";

impl Default for FpgaTriggerSection {
    fn default() -> Self {
        FpgaTriggerSection {
            card: "emulated".into(),
            model: BUILTIN_INT8.into(),
            threshold: 0.5,
            timeout_us: 10_000,
            batch_frames: 64,
            manifest: None,
            emulated_faults: Vec::new(),
        }
    }
}

impl BackendSection for FpgaTriggerSection {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let k = |name: &str| key(path, name);
        if !self.threshold.is_finite() {
            problems.bad(k("threshold"), format!("{} is not a number", self.threshold));
        }
        if self.card != "emulated" && self.card.strip_prefix("xdma").is_none_or(|n| n.parse::<u32>().is_err()) {
            problems.bad(k("card"), format!("{:?}: \"emulated\" or \"xdmaN\"", self.card));
        }
        for fault in &self.emulated_faults {
            if !EMULATED_FAULTS.contains(&fault.as_str()) {
                problems.bad(k("emulated_faults"), format!("{fault:?} is not one of {EMULATED_FAULTS:?}"));
            }
        }
        if !self.emulated_faults.is_empty() && self.card != "emulated" {
            problems.bad(k("emulated_faults"), format!("only an emulated card plays faults, not {:?}", self.card));
        }
        problems.outside(k("timeout_us"), self.timeout_us, (10, 10_000_000));
        let most = MAX_FRAMES as usize;
        if !(1..=most).contains(&self.batch_frames) {
            problems.bad(
                k("batch_frames"),
                format!("{} is outside 1..={most} (what the kernel takes a call)", self.batch_frames),
            );
        }
        match &self.manifest {
            None if self.card != "emulated" => problems.bad(
                k("manifest"),
                format!(
                    "required for card {:?}: the manifest of the bitstream loaded on it (bitstreams/<board>/manifest.toml)",
                    self.card
                ),
            ),
            Some(file) if !file.is_file() => {
                problems.bad(k("manifest"), format!("{} is not a readable file", file.display()))
            }
            _ => {}
        }
        if self.model != BUILTIN_INT8 && !Path::new(&self.model).is_file() {
            problems.bad(k("model"), format!("{} is not a readable file (or \"{BUILTIN_INT8}\")", self.model));
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(manifest) = self.manifest.as_mut() {
            resolve(manifest, base);
        }
        resolve_model(&mut self.model, &[BUILTIN_INT8], base);
    }

    fn prepare(&self) -> Result<Box<dyn Backend>, TriggerError> {
        Ok(Box::new(FpgaTrigger::open(self)?))
    }

    fn reads_summary(&self) -> bool {
        true
    }

    fn cut(&self) -> Option<ConfiguredCut> {
        Some(ConfiguredCut { key: "threshold", value: self.threshold, unit: CutUnit::Score })
    }
}

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
    /// Card calls that judged `on_card` frames.
    pub calls: u64,
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
    calls: AtomicU64,
    in_software: AtomicU64,
    batch_frames: usize,
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
            BUILTIN_INT8 => crate::trigger::tract::BUILTIN_INT8_MODEL.to_vec(),
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
            let plays = |name: &str| section.emulated_faults.iter().any(|f| f == name);
            let faults = Faults {
                stuck_done: plays("stuck_done"),
                dma_refused: plays("dma_refused"),
                not_loaded: plays("not_loaded"),
            };
            match EmulatedCard::start(&dir, faults) {
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
            calls: AtomicU64::new(0),
            in_software: AtomicU64::new(0),
            batch_frames: section.batch_frames.clamp(1, super::regs::MAX_FRAMES as usize),
        })
    }

    /// The most frames judged in one card call.
    pub fn batch_frames(&self) -> usize {
        self.batch_frames
    }

    /// The card's input for a frame with this summary (quantized on the host, as the card expects).
    pub fn quantize(&self, summary: &[f32], input: &mut [i8; INPUTS]) {
        self.quant.quantize_input(summary, input);
    }

    /// The hit probabilities of a batch of frames, judged in one card call (`scores[i]` for
    /// `inputs[i]`); `logits` is the caller's scratch, as long as `inputs`. A call the card fails
    /// judges the whole batch in software.
    pub fn score_batch(&self, inputs: &[[i8; INPUTS]], logits: &mut [i64], scores: &mut [f32]) {
        let n = inputs.len();
        let (logits, scores) = (&mut logits[..n], &mut scores[..n]);
        if self.up.load(Ordering::Relaxed) {
            match self.on_card(inputs, logits) {
                Some(Ok(())) => {
                    self.failures_in_a_row.store(0, Ordering::Relaxed);
                    self.on_card.fetch_add(n as u64, Ordering::Relaxed);
                    self.calls.fetch_add(1, Ordering::Relaxed);
                    counter!(telemetry::FPGA_FRAMES).increment(n as u64);
                    histogram!(telemetry::FPGA_BATCH_FRAMES).record(n as f64);
                    for (score, &logit) in scores.iter_mut().zip(logits.iter()) {
                        *score = self.quant.probability(logit);
                    }
                    return;
                }
                Some(Err(e)) => self.failed(&e),
                None => {}
            }
        }
        self.in_software.fetch_add(n as u64, Ordering::Relaxed);
        counter!(telemetry::FPGA_FALLBACKS).increment(n as u64);
        for (score, x) in scores.iter_mut().zip(inputs) {
            *score = self.quant.probability(self.quant.logit_accumulator(x));
        }
    }

    /// The hit probability of one frame with this summary (one card call).
    pub fn score(&self, summary: &[f32]) -> f32 {
        let (mut x, mut logit, mut score) = ([[0i8; INPUTS]], [0i64], [0f32]);
        self.quantize(summary, &mut x[0]);
        self.score_batch(&x, &mut logit, &mut score);
        score[0]
    }

    /// The card's logits for a batch; `None` when there is no card.
    fn on_card(&self, inputs: &[[i8; INPUTS]], logits: &mut [i64]) -> Option<Result<(), FpgaError>> {
        let mut guard = self.card.lock().unwrap_or_else(|p| p.into_inner());
        let card = guard.as_mut()?;
        Some(card.judge(inputs, logits))
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
            calls: self.calls.load(Ordering::Relaxed),
            in_software: self.in_software.load(Ordering::Relaxed),
            down: self.down_reason.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// The emulated card, when the backend runs one (for fault rehearsal).
    pub fn emulated_card(&self) -> Option<&EmulatedCard> {
        self.emulated.as_ref().map(|(card, _)| card)
    }
}

/// The backend as the trigger holds it: the card and its fallback, shared by the workers.
#[derive(Debug)]
pub struct FpgaTrigger(Arc<FpgaBackend>);

impl FpgaTrigger {
    /// As [`FpgaBackend::open`].
    ///
    /// # Errors
    /// As [`FpgaBackend::open`].
    pub fn open(section: &FpgaTriggerSection) -> Result<FpgaTrigger, FpgaBackendError> {
        Ok(FpgaTrigger(Arc::new(FpgaBackend::open(section)?)))
    }

    /// What the card did over the run.
    pub fn stats(&self) -> FpgaStats {
        self.0.stats()
    }

    /// The emulated card, when the backend runs one (for fault rehearsal).
    pub fn emulated_card(&self) -> Option<&EmulatedCard> {
        self.0.emulated_card()
    }
}

impl Backend for FpgaTrigger {
    fn scorer(&self) -> Result<Box<dyn Scorer>, TriggerError> {
        let most = self.0.batch_frames();
        Ok(Box::new(CardBatch {
            backend: Arc::clone(&self.0),
            inputs: Vec::with_capacity(most),
            logits: vec![0; most],
            scores: Vec::with_capacity(most),
        }))
    }

    fn cut_unit(&self) -> Option<CutUnit> {
        Some(CutUnit::Score)
    }

    fn reads_summary(&self) -> bool {
        true
    }

    fn batch_frames(&self) -> usize {
        self.0.batch_frames()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A worker's frames staged for one card call: their inputs, then their scores once judged. Sized
/// once for the largest batch, so judging allocates nothing.
struct CardBatch {
    backend: Arc<FpgaBackend>,
    inputs: Vec<[i8; INPUTS]>,
    logits: Vec<i64>,
    scores: Vec<f32>,
}

impl Scorer for CardBatch {
    fn stage(&mut self, summary: &[f32]) {
        if self.inputs.len() < self.inputs.capacity() {
            let mut input = [0i8; INPUTS];
            self.backend.quantize(summary, &mut input);
            self.inputs.push(input);
        }
    }

    fn judge_staged(&mut self) {
        let n = self.inputs.len();
        self.scores.clear();
        self.scores.resize(n, 0.0);
        self.backend.score_batch(&self.inputs, &mut self.logits[..n], &mut self.scores);
        self.inputs.clear();
    }

    fn score(&mut self, frame: FrameFacts<'_>, staged: Option<usize>) -> Score {
        // A frame staged past the batch's capacity was not judged with it: it is judged alone.
        let staged = staged.and_then(|i| self.scores.get(i).copied());
        Score::Value(staged.unwrap_or_else(|| self.backend.score(frame.summary)))
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
