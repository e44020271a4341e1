//! The config schema. Every section documents its keys; defaults are what a single JUNGFRAU module
//! on one 10 GbE link needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cluster::ClusterSection;
use super::errors::ConfigProblem;
use crate::detector::{DetectorGeometry, DetectorModel, GeometryError, MODELS};
use crate::frame::{AssemblerConfig, PartialPolicy};

/// A whole hitgate configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub detector: DetectorSection,
    #[serde(default)]
    pub assembler: AssemblerSection,
    #[serde(default)]
    pub reducer: ReducerSection,
    #[serde(default)]
    pub udp: UdpSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub dma: DmaSection,
    #[serde(default)]
    pub calibration: CalibrationSection,
    #[serde(default)]
    pub features: FeaturesSection,
    #[serde(default)]
    pub trigger: TriggerSection,
    /// Where results go; each entry is one sink.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkSection>,
    /// How sinks are fed: their queues and what happens when storage falls behind.
    #[serde(default)]
    pub storage: StorageSection,
    /// Several nodes sharing the detector, with a trigger event builder (off unless `nats` is set).
    #[serde(default)]
    pub cluster: ClusterSection,
}

/// What detector sends, and on which UDP ports.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    /// A name from the geometry table, e.g. `jungfrau-1if`, `jungfrau-2if`, `eiger-10g-16bit`.
    pub model: String,
    /// Modules (EIGER: half-modules) of that model in the detector.
    #[serde(default = "one")]
    pub modules: usize,
    /// Destination UDP port of every module port, module-major. Either this or `first_udp_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<Vec<u16>>,
    /// First of consecutive destination UDP ports, one per module port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_udp_port: Option<u16>,
    /// Modules side by side in one row of the assembled image.
    #[serde(default = "one")]
    pub modules_per_row: usize,
    /// Blank pixels between modules in the assembled image, vertically and horizontally.
    #[serde(default)]
    pub module_gap_rows_px: usize,
    #[serde(default)]
    pub module_gap_cols_px: usize,
    /// Where the direct beam meets the assembled image (pixels); the image centre when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_center_row_px: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_center_col_px: Option<f64>,
}

/// Frame assembly.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssemblerSection {
    /// A partial frame leaves this long after its first packet.
    pub frame_timeout_us: u64,
    /// Frames assembled at once.
    pub window_frames: usize,
    /// Frame numbers further ahead than this of the newest are dropped as garbage.
    pub max_frame_jump: u64,
    /// `keep_flagged` or `drop`.
    pub partial_frames: PartialPolicy,
    /// Frame buffers preallocated for the whole pipeline.
    pub pool_frames: usize,
}

impl Default for AssemblerSection {
    fn default() -> Self {
        AssemblerSection {
            frame_timeout_us: 10_000,
            window_frames: 8,
            max_frame_jump: 1_000_000,
            partial_frames: PartialPolicy::KeepFlagged,
            pool_frames: 64,
        }
    }
}

/// The control plane of a live run: metrics, status, retune.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub enabled: bool,
    /// Where `/metrics`, `/status` and `/retune` are served; loopback unless you mean otherwise.
    pub listen_address: std::net::SocketAddr,
    /// A file holding the bearer token every request must carry (`Authorization: Bearer …`);
    /// required when `listen_address` is not a loopback address. Readable by its owner only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            enabled: true,
            listen_address: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            token_file: None,
        }
    }
}

impl ControlSection {
    /// The token in `token_file`, without surrounding white space.
    ///
    /// # Errors
    /// Why the file cannot serve as one: unreadable, readable by others than its owner, or holding
    /// fewer than 16 characters.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!("{} is readable by others than its owner (chmod 600 it)", path.display()));
            }
        }
        let _ = meta;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = text.trim();
        if token.chars().count() < 16 || token.chars().any(char::is_whitespace) {
            return Err(format!("{} must hold one token of at least 16 characters", path.display()));
        }
        Ok(Some(token.to_string()))
    }
}

/// A DMA ring as source for `hitgate run` instead of UDP (see `ingest::dma` for the layout).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DmaSection {
    /// The ring: a `/dev` node exposing the layout, or a file shared with an emulated card. When set,
    /// `hitgate run` reads it instead of the UDP ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// How long the source sleeps when the ring is empty.
    pub idle_sleep_us: u64,
    /// For a file-backed ring: create it at start with this many buffers (a power of two), as a
    /// driver allocates its DMA buffers. 0 opens an existing ring (a device node).
    pub create_buffers: u32,
    pub create_buffer_bytes: u32,
}

impl Default for DmaSection {
    fn default() -> Self {
        DmaSection { device: None, idle_sleep_us: 50, create_buffers: 0, create_buffer_bytes: 9216 }
    }
}

/// Live reception (`hitgate run`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpSection {
    /// Address the detector's packets arrive on (the receiving interface's address).
    pub bind_address: std::net::IpAddr,
    /// One address per module where modules arrive on different interfaces; overrides `bind_address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub module_bind_addresses: Vec<std::net::IpAddr>,
    /// Kernel receive buffer per socket (`SO_RCVBUF`).
    pub recv_buffer_bytes: usize,
    /// Datagrams taken per `recvmmsg` call.
    pub batch_packets: usize,
    /// CPU the receiving (assembling) thread is pinned to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_cpu: Option<usize>,
    /// Threads calling `recvmmsg`, the detector's ports shared among them round-robin, handing whole
    /// batches to the assembling thread. 0: the assembling thread receives itself (one thread less,
    /// but receiving and copying into frames then share one core).
    pub receiver_threads: usize,
    /// CPU for each receiver thread, in order (with `receiver_threads` above 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receiver_cpus: Vec<usize>,
    /// Batches in circulation between receiver threads and the assembling thread.
    pub handoff_batches: usize,
}

impl Default for UdpSection {
    fn default() -> Self {
        UdpSection {
            bind_address: std::net::IpAddr::from([0, 0, 0, 0]),
            module_bind_addresses: Vec::new(),
            recv_buffer_bytes: 256 << 20,
            batch_packets: 64,
            receiver_cpu: None,
            receiver_threads: 0,
            receiver_cpus: Vec::new(),
            handoff_batches: 32,
        }
    }
}

/// The reducer stage: calibration, spot finding, trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReducerSection {
    /// Worker threads, each reducing whole frames.
    pub workers: usize,
    /// Capacity of the queues between stages, in frames.
    pub queue_frames: usize,
    /// CPU for each worker, in order; workers past the list are not pinned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<usize>,
}

impl Default for ReducerSection {
    fn default() -> Self {
        ReducerSection { workers: 1, queue_frames: 32, cpus: Vec::new() }
    }
}

/// Conversion of raw JUNGFRAU values to photons. EIGER counts photons already and ignores it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationSection {
    /// Per-pixel pedestal and gain maps (the format `hitgate simulate` writes; see docs/formats.md).
    /// Without one, the per-gain-stage constants below apply to every pixel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Pixels not to trust (dead, hot, user-flagged; the format `hitgate simulate` writes, see
    /// docs/formats.md): they read 0 photons and are never part of a spot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_file: Option<PathBuf>,
    pub photon_energy_kev: f32,
    /// Frames at the start of the run that are dark (no beam): the G0 pedestal is measured on them,
    /// then followed on frames without signal. 0 keeps the pedestals of the file (or constants).
    pub dark_frames: usize,
    /// The tracked pedestal's memory, in frames without signal.
    pub pedestal_window_frames: usize,
    /// Track on every n-th frame without signal (tracking a module frame costs ~0.5 ms).
    pub pedestal_track_every: usize,
    /// Pedestal of gain stages G0, G1, G2 where no file is given.
    pub pedestal_adu: [f32; 3],
    /// Gain of G0, G1, G2 where no file is given (G1 and G2 count down, hence negative).
    pub gain_adu_per_kev: [f32; 3],
    /// Set for a cluster node (`--node`), never read from a config: the files describe the whole
    /// detector, the node uses its modules of them.
    #[serde(skip)]
    pub share: Option<ModuleShare>,
}

impl Default for CalibrationSection {
    fn default() -> Self {
        CalibrationSection {
            file: None,
            mask_file: None,
            photon_energy_kev: 12.4,
            dark_frames: 0,
            pedestal_window_frames: 1000,
            pedestal_track_every: 10,
            pedestal_adu: [3000.0, 14500.0, 14000.0],
            gain_adu_per_kev: [40.0, -1.45, -0.11],
            share: None,
        }
    }
}

/// h·c in keV·Å: a photon of E keV has a wavelength of `HC_KEV_ANGSTROM / E` Å.
pub const HC_KEV_ANGSTROM: f64 = 12.398_419_843;

impl CalibrationSection {
    /// The incident wavelength the photon energy makes.
    pub fn wavelength_angstrom(&self) -> f64 {
        HC_KEV_ANGSTROM / f64::from(self.photon_energy_kev)
    }
}

/// A cluster node's part of the whole detector: which modules of the calibration and mask files
/// it uses, and where its panels sit in the whole detector's image.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleShare {
    /// The files' modules, in this node's order.
    pub modules: Vec<usize>,
    /// Modules the files hold: the whole detector's.
    pub of: usize,
    /// Each of this node's panels' first pixel in the whole detector's image (row, column).
    pub panel_origins: Vec<(usize, usize)>,
    /// The beam centre in the whole detector's image (row, column).
    pub beam_center_px: (f64, f64),
}

/// Which spot finder the reducer runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesSection {
    pub finder: FinderKind,
    /// Parameters of the peakfinder8 finder (see `features::peakfinder8`).
    pub peakfinder8: crate::features::Peakfinder8Params,
    /// The learned peak localiser (see `features::peaks`).
    pub localiser: LocaliserSection,
}

/// The learned peak localiser: refines the centre of each recorded spot from its 11 × 11 patch.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocaliserSection {
    /// `"builtin"` (the model compiled into hitgate), the path of an ONNX model that follows the same
    /// contract, or absent for no refinement.
    pub model: Option<String>,
    /// Patches per model run: a frame's spots go in batches of this size, the last one padded.
    pub batch_patches: usize,
    /// Which frames' spots are refined.
    pub frames: LocaliseFrames,
}

impl Default for LocaliserSection {
    fn default() -> Self {
        LocaliserSection { model: None, batch_patches: 16, frames: LocaliseFrames::Accepted }
    }
}

impl LocaliserSection {
    /// Where the model comes from, if one is configured.
    pub fn source(&self) -> Option<crate::features::peaks::ModelSource> {
        use crate::features::peaks::{BUILTIN_MODEL_NAME, ModelSource};
        self.model.as_ref().map(|m| match m.as_str() {
            BUILTIN_MODEL_NAME => ModelSource::Builtin,
            path => ModelSource::File(PathBuf::from(path)),
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LocaliseFrames {
    /// Frames the trigger keeps: what is stored gets the best centres.
    #[default]
    Accepted,
    /// Every judged frame, for a live monitor or to measure the localiser on everything.
    All,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinderKind {
    /// Connected pixels above a fixed photon threshold (`trigger.spots` parameters).
    #[default]
    Threshold,
    /// Per-ring background by sigma clipping, SNR against a local background.
    Peakfinder8,
}

/// Which trigger decides, and its parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerSection {
    pub kind: TriggerKind,
    pub spots: SpotsTriggerSection,
    pub tract: TractTriggerSection,
    pub fpga: FpgaTriggerSection,
    pub rate: RateSection,
}

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

impl Default for FpgaTriggerSection {
    fn default() -> Self {
        FpgaTriggerSection {
            card: "emulated".into(),
            model: "builtin-int8".into(),
            threshold: 0.5,
            timeout_us: 10_000,
            batch_frames: 64,
            manifest: None,
            emulated_faults: Vec::new(),
        }
    }
}

/// How scores become verdicts beyond the backend's own cut: a target accept rate, the audit stream.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSection {
    /// Hold the fraction of frames accepted at this value (0 < rate ≤ 1) by moving the cut; absent:
    /// the cut stays where the backend's config (or an operator) puts it.
    pub target_accept_rate: Option<f64>,
    /// Frames whose scores the target rate is measured on.
    pub window_frames: usize,
    /// Frames between two moves of the cut.
    pub update_every_frames: u64,
    /// Keep 1 in this many rejected frames, flagged as audit frames, to measure efficiency on real
    /// data; 0 for none.
    pub audit_every: u64,
}

impl Default for RateSection {
    fn default() -> Self {
        RateSection { target_accept_rate: None, window_frames: 1000, update_every_frames: 50, audit_every: 0 }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Classical: count connected spots of photons, accept at a minimum count.
    #[default]
    Spots,
    /// Learned: a hit classifier run by tract on the frame's summary; score = hit probability.
    Tract,
    /// Keep every frame (commissioning, calibration runs).
    AcceptAll,
    /// The int8 hit classifier on an FPGA co-processor (or its emulated card); the same decisions,
    /// judged in software (the kernel's arithmetic on the CPU) whenever the card fails.
    Fpga,
}

/// The learned trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TractTriggerSection {
    /// `"builtin"` or `"builtin-int8"` (the classifier compiled into hitgate, float32 or int8), or the
    /// path of an ONNX model that follows the same contract.
    pub model: String,
    /// The cut on the hit probability (moved by the rate control when a target rate is set).
    pub threshold: f32,
}

impl Default for TractTriggerSection {
    fn default() -> Self {
        TractTriggerSection { model: "builtin".into(), threshold: 0.5 }
    }
}

/// The classical spot-counting trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpotsTriggerSection {
    /// A pixel belongs to a spot from this many photons on.
    pub threshold_photons: f32,
    /// Connected pixels a spot needs, at least and at most.
    pub min_spot_pixels: u32,
    pub max_spot_pixels: u32,
    /// A spot's summed photons must reach this.
    pub min_spot_photons: f32,
    /// A frame is a hit from this many spots on.
    pub min_spots: u32,
    /// ... and up to this many, if set: more spots than a crystal gives (ice rings, a flash of stray
    /// light, a detector glitch) is no hit.
    pub max_spots: Option<u32>,
    /// Spots recorded per frame at most (the rest are counted, not listed).
    pub max_spots_recorded: usize,
}

impl From<&SpotsTriggerSection> for crate::features::SpotFinderParams {
    /// The threshold finder's parameters, which this section also holds.
    fn from(s: &SpotsTriggerSection) -> Self {
        crate::features::SpotFinderParams {
            threshold_photons: s.threshold_photons,
            min_spot_pixels: s.min_spot_pixels,
            max_spot_pixels: s.max_spot_pixels,
            min_spot_photons: s.min_spot_photons,
        }
    }
}

impl Default for SpotsTriggerSection {
    fn default() -> Self {
        SpotsTriggerSection {
            threshold_photons: 2.5,
            min_spot_pixels: 2,
            max_spot_pixels: 400,
            min_spot_photons: 8.0,
            min_spots: 8,
            max_spots: None,
            max_spots_recorded: 512,
        }
    }
}

/// One output.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSection {
    /// Accepted frames, raw, with an index (docs/formats.md).
    Raw {
        /// Folder for `frames.raw`, `frames.idx` and `run.json`.
        dir: PathBuf,
    },
    /// One record per frame, accepted or not, as JSON lines.
    Features { path: PathBuf },
    /// Accepted (and audit) frames as NeXus NXmx HDF5 files with bitshuffle-LZ4 chunks.
    Hdf5(Hdf5Section),
    /// Discards frames (throughput measurements). `write_delay_us` makes each frame take that long,
    /// to rehearse storage slower than the accept rate.
    Null {
        #[serde(default)]
        write_delay_us: u64,
    },
    /// Accepted (and audit) frames as a live stream: DECTRIS Stream V2 CBOR messages over ZeroMQ.
    Stream(StreamSection),
    /// Every frame's features record and the kept frames' compressed chunks, forwarded to a NATS
    /// JetStream stream with acknowledgements, for consumers on other machines (`hitgate consume`).
    Jetstream(ForwardSection),
}

impl SinkSection {
    /// The sink's kind, as configs name it (and metrics label it).
    pub fn kind_name(&self) -> &'static str {
        match self {
            SinkSection::Raw { .. } => "raw",
            SinkSection::Features { .. } => "features",
            SinkSection::Hdf5(_) => "hdf5",
            SinkSection::Null { .. } => "null",
            SinkSection::Stream(_) => "stream",
            SinkSection::Jetstream(_) => "jetstream",
        }
    }

    /// The file or folder the sink writes, when it writes one.
    pub fn output_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            SinkSection::Raw { dir } => Some(dir),
            SinkSection::Features { path } => Some(path),
            SinkSection::Hdf5(h) => Some(&mut h.dir),
            SinkSection::Null { .. } | SinkSection::Stream(_) | SinkSection::Jetstream(_) => None,
        }
    }

    /// The pixels the sink takes compressed, when it takes compressed frames.
    pub fn compressed_pixels(&self) -> Option<StoredPixels> {
        match self {
            SinkSection::Hdf5(h) => Some(h.pixels),
            SinkSection::Stream(s) => Some(s.pixels),
            SinkSection::Jetstream(f) => Some(f.pixels),
            _ => None,
        }
    }
}

/// The live stream of kept frames: DECTRIS Stream V2 (start, image and end messages, CBOR, images
/// as bitshuffle-LZ4 multi-dimensional typed arrays) on a ZeroMQ socket consumers connect to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// Where the stream binds: `tcp://ADDRESS:PORT` (31001 is Stream V2's port) or `ipc://PATH`.
    #[serde(default = "default_stream_endpoint")]
    pub endpoint: String,
    /// `push` (each message to one consumer, round robin, as DECTRIS detectors do) or `pub` (every
    /// subscriber gets every message; a slow one loses messages, never slows the stream).
    #[serde(default)]
    pub socket: StreamSocket,
    /// What a pixel holds, as for the HDF5 sink (frames are compressed once for both).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// A message no consumer takes within this long is not sent, and counted.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// Messages queued per consumer before sending waits (ZeroMQ's high-water mark).
    #[serde(default = "default_high_water_mark")]
    pub high_water_mark: i32,
}

impl StreamSection {
    /// A push stream of raw frames bound at `endpoint`, every other key at its default.
    pub fn at(endpoint: &str) -> StreamSection {
        StreamSection {
            endpoint: endpoint.into(),
            socket: StreamSocket::Push,
            pixels: StoredPixels::Raw,
            send_timeout_ms: default_send_timeout_ms(),
            high_water_mark: default_high_water_mark(),
        }
    }
}

/// The durable forward: a JetStream stream (file storage, `replicas` copies) holding, per source,
/// every frame's features record on `<subject>.<source>.features` and each kept frame's compressed
/// chunk on `<subject>.<source>.frame`, cut in parts no larger than the server takes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForwardSection {
    /// The NATS servers (any of them; the client moves to another when one goes away).
    #[serde(default = "default_nats")]
    pub nats: Vec<String>,
    /// The JetStream stream's name (created when missing).
    #[serde(default = "default_forward_stream")]
    pub stream: String,
    /// Subject prefix: the stream holds `<subject>.>`.
    #[serde(default = "default_forward_subject")]
    pub subject: String,
    /// Names this node's messages; empty: the cluster node's name, or `all` for a single node.
    #[serde(default)]
    pub source: String,
    /// What a pixel holds, as for the HDF5 sink (frames are compressed once for both).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// Copies the stream keeps (servers of a cluster it lives on).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The stream keeps at most this many GiB, dropping its oldest messages past it; 0: no limit
    /// but the server's.
    #[serde(default)]
    pub max_gib: u64,
    /// Largest part a chunk is cut into, bytes; 0: what the server takes (its `max_payload`)
    /// less room for headers.
    #[serde(default)]
    pub part_bytes: usize,
}

impl ForwardSection {
    /// A forward of raw frames to `nats`, every other key at its default.
    pub fn to(nats: &str) -> ForwardSection {
        ForwardSection {
            nats: vec![nats.into()],
            stream: default_forward_stream(),
            subject: default_forward_subject(),
            source: String::new(),
            pixels: StoredPixels::Raw,
            replicas: default_replicas(),
            max_gib: 0,
            part_bytes: 0,
        }
    }

    /// The name this node's messages carry.
    pub fn source_name(&self) -> &str {
        if self.source.is_empty() { "all" } else { &self.source }
    }
}

fn default_nats() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".into()]
}

fn default_forward_stream() -> String {
    "HITGATE_FORWARD".into()
}

fn default_forward_subject() -> String {
    "hitgate.forward".into()
}

fn default_replicas() -> usize {
    1
}

/// The ZeroMQ socket type of the live stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamSocket {
    #[default]
    Push,
    Pub,
}

fn default_stream_endpoint() -> String {
    "tcp://127.0.0.1:31001".into()
}

fn default_send_timeout_ms() -> u64 {
    500
}

fn default_high_water_mark() -> i32 {
    64
}

/// The NeXus/HDF5 sink: data files of `frames_per_file` frames (or `max_file_mib`), and a master
/// file linking them, in `dir`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hdf5Section {
    pub dir: PathBuf,
    /// Files are `<prefix>_master.h5` and `<prefix>_data_000001.h5`, ….
    #[serde(default = "default_hdf5_prefix")]
    pub prefix: String,
    /// What a pixel holds: `raw` (the detector's values), `photons_u32` (whole photons) or
    /// `photons_f32` (photons, unrounded).
    #[serde(default)]
    pub pixels: StoredPixels,
    /// A data file is closed after this many frames…
    #[serde(default = "default_frames_per_file")]
    pub frames_per_file: u64,
    /// …or once it holds this many MiB, whichever comes first.
    #[serde(default = "default_max_file_mib")]
    pub max_file_mib: u64,
    /// The open file's frame metadata is written and the file flushed every this many frames.
    #[serde(default = "default_flush_every")]
    pub flush_every_frames: u64,
    /// Sample to detector distance, for the NXmx geometry.
    #[serde(default = "default_distance_mm")]
    pub distance_mm: f64,
    /// Incident wavelength; from `calibration.photon_energy_kev` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wavelength_angstrom: Option<f64>,
    /// Written to `/entry/sample/name`.
    #[serde(default)]
    pub sample_name: String,
}

impl Hdf5Section {
    /// Raw frames into `dir`, every other key at its default.
    pub fn in_dir(dir: PathBuf) -> Hdf5Section {
        Hdf5Section {
            dir,
            prefix: default_hdf5_prefix(),
            pixels: StoredPixels::Raw,
            frames_per_file: default_frames_per_file(),
            max_file_mib: default_max_file_mib(),
            flush_every_frames: default_flush_every(),
            distance_mm: default_distance_mm(),
            wavelength_angstrom: None,
            sample_name: String::new(),
        }
    }
}

/// What the HDF5 sink stores per pixel.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoredPixels {
    #[default]
    Raw,
    PhotonsU32,
    PhotonsF32,
}

impl StoredPixels {
    /// What a stored pixel holds, in words, for the files' and streams' own descriptions.
    pub fn description(self) -> &'static str {
        match self {
            StoredPixels::Raw => "raw detector values",
            StoredPixels::PhotonsU32 => "photons (whole)",
            StoredPixels::PhotonsF32 => "photons",
        }
    }
}

/// Sink queues and the policy when storage cannot keep up.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Frames each sink may have waiting (memory: this many frame copies per frame-storing sink).
    pub queue_frames: usize,
    /// `auto` (the default): `wait` for a capture replayed as fast as possible (a file can wait, so
    /// the replay is lossless), `drop_newest` for live and paced sources; `wait`: the ordering
    /// thread waits for the sink (a live source then drops at its own full queue, counted);
    /// `drop_newest`: a frame that finds a sink's queue full is not written there, counted and
    /// alarmed; `raise_threshold`: the same, and the trigger's cut rises until storage keeps up.
    pub on_full: OnFull,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { queue_frames: 64, on_full: OnFull::Auto }
    }
}

/// What to do when a sink's queue is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    #[default]
    Auto,
    Wait,
    DropNewest,
    RaiseThreshold,
}

fn default_hdf5_prefix() -> String {
    "run".into()
}

fn default_frames_per_file() -> u64 {
    1000
}

fn default_max_file_mib() -> u64 {
    4096
}

fn default_flush_every() -> u64 {
    100
}

fn default_distance_mm() -> f64 {
    100.0
}

fn one() -> usize {
    1
}

impl Config {
    /// The built-in default: one JUNGFRAU module on one interface, raw and feature sinks under `out`.
    pub fn default_for(out: &Path) -> Config {
        Config {
            detector: DetectorSection {
                model: "jungfrau-1if".into(),
                modules: 1,
                udp_ports: None,
                first_udp_port: Some(50001),
                modules_per_row: 1,
                module_gap_rows_px: 0,
                module_gap_cols_px: 0,
                beam_center_row_px: None,
                beam_center_col_px: None,
            },
            assembler: AssemblerSection::default(),
            udp: UdpSection::default(),
            control: ControlSection::default(),
            dma: DmaSection::default(),
            reducer: ReducerSection::default(),
            calibration: CalibrationSection::default(),
            features: FeaturesSection::default(),
            trigger: TriggerSection::default(),
            storage: StorageSection::default(),
            cluster: ClusterSection::default(),
            sinks: vec![
                SinkSection::Raw { dir: out.join("raw") },
                SinkSection::Features { path: out.join("features.jsonl") },
            ],
        }
    }

    /// Whether the configured trigger has a cut to tune (`accept_all` has none).
    pub fn trigger_has_cut(&self) -> bool {
        self.trigger.kind != TriggerKind::AcceptAll
    }

    /// Relative paths in the config are taken from the config file's folder.
    pub fn resolved_against(mut self, base: &Path) -> Config {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(f) = self.calibration.file.as_mut() {
            fix(f);
        }
        if let Some(f) = self.calibration.mask_file.as_mut() {
            fix(f);
        }
        if let Some(d) = self.dma.device.as_mut() {
            fix(d);
        }
        if let Some(t) = self.control.token_file.as_mut() {
            fix(t);
        }
        if let Some(m) = self.trigger.fpga.manifest.as_mut() {
            fix(m);
        }
        let m = &mut self.trigger.fpga.model;
        if m != "builtin-int8" && Path::new(m.as_str()).is_relative() {
            *m = base.join(m.as_str()).to_string_lossy().into_owned();
        }
        let m = &mut self.trigger.tract.model;
        if !m.starts_with("builtin") && Path::new(m.as_str()).is_relative() {
            *m = base.join(m.as_str()).to_string_lossy().into_owned();
        }
        if let Some(m) = self.features.localiser.model.as_mut()
            && m != crate::features::peaks::BUILTIN_MODEL_NAME
            && Path::new(m.as_str()).is_relative()
        {
            *m = base.join(m.as_str()).to_string_lossy().into_owned();
        }
        for path in self.sinks.iter_mut().filter_map(SinkSection::output_mut) {
            fix(path);
        }
        self
    }

    /// The detector geometry this config describes.
    ///
    /// # Errors
    /// As [`DetectorGeometry::new`]; [`Config::validate`] reports the same with key paths.
    pub fn geometry(&self) -> Result<DetectorGeometry, GeometryError> {
        let d = &self.detector;
        match (&d.udp_ports, d.first_udp_port) {
            (Some(ports), _) => DetectorGeometry::new(&d.model, d.modules, ports.clone()),
            (None, first) => DetectorGeometry::with_consecutive_ports(&d.model, d.modules, first.unwrap_or(50001)),
        }
    }

    /// How modules sit in the assembled image.
    pub fn image_layout(&self) -> Option<crate::detector::ImageLayout> {
        let d = &self.detector;
        let model = DetectorModel::by_name(&d.model)?;
        Some(crate::detector::ImageLayout {
            modules: d.modules,
            module_rows: model.module_rows(),
            module_cols: model.module_cols(),
            modules_per_row: d.modules_per_row.clamp(1, d.modules.max(1)),
            gap_rows_px: d.module_gap_rows_px,
            gap_cols_px: d.module_gap_cols_px,
        })
    }

    /// Where each panel's first pixel sits in the assembled image (row, column); a cluster node's
    /// panels where they sit in the whole detector's.
    pub fn panel_origins(&self, geometry: &DetectorGeometry) -> Vec<(usize, usize)> {
        let (panels, rows, _) = geometry.panels();
        if let Some(share) = &self.calibration.share
            && share.panel_origins.len() == panels
        {
            return share.panel_origins.clone();
        }
        let layout = self.image_layout();
        (0..panels).map(|p| layout.as_ref().map_or((p * rows, 0), |l| geometry.panel_origin(p, l))).collect()
    }

    /// The beam centre in image pixels (row, column); a cluster node's in the whole detector's image.
    pub fn beam_center_px(&self) -> (f64, f64) {
        if let Some(share) = &self.calibration.share {
            return share.beam_center_px;
        }
        let layout = self.image_layout();
        let (rows, cols) = layout.map_or((0.0, 0.0), |l| (l.image_rows() as f64, l.image_cols() as f64));
        (self.detector.beam_center_row_px.unwrap_or(rows / 2.0), self.detector.beam_center_col_px.unwrap_or(cols / 2.0))
    }

    pub fn assembler_config(&self) -> AssemblerConfig {
        let a = &self.assembler;
        AssemblerConfig {
            frame_timeout_ns: a.frame_timeout_us.saturating_mul(1000),
            window_frames: a.window_frames,
            max_frame_jump: a.max_frame_jump,
            partial_policy: a.partial_frames,
        }
    }

    fn validate_hdf5(&self, i: usize, h: &Hdf5Section, bad: &mut impl FnMut(&str, String)) {
        let key = |k: &str| format!("sink[{i}].{k}");
        if !cfg!(feature = "hdf5") {
            bad(&key("kind"), "this hitgate was built without HDF5 (cargo feature `hdf5`)".into());
        }
        if h.prefix.is_empty() || h.prefix.contains(['/', '\\']) {
            bad(&key("prefix"), format!("{:?} must be a non-empty file name part without slashes", h.prefix));
        }
        if h.frames_per_file == 0 {
            bad(&key("frames_per_file"), "must be at least 1".into());
        }
        if h.max_file_mib == 0 {
            bad(&key("max_file_mib"), "must be at least 1".into());
        }
        if h.flush_every_frames == 0 {
            bad(&key("flush_every_frames"), "must be at least 1".into());
        }
        if !(h.distance_mm.is_finite() && h.distance_mm > 0.0) {
            bad(&key("distance_mm"), format!("{} must be a positive distance", h.distance_mm));
        }
        if let Some(w) = h.wavelength_angstrom
            && !(w.is_finite() && w > 0.0)
        {
            bad(&key("wavelength_angstrom"), format!("{w} must be a positive wavelength"));
        }
        self.validate_pixels(i, h.pixels, bad);
    }

    /// A compressed-frame sink's pixels: storable for this detector, and the same as every other
    /// such sink's (frames are compressed once, by the reducers).
    fn validate_pixels(&self, i: usize, pixels: StoredPixels, bad: &mut impl FnMut(&str, String)) {
        let key = format!("sink[{i}].pixels");
        if let Some(model) = DetectorModel::by_name(&self.detector.model) {
            let bits = model.bits_per_pixel;
            match pixels {
                StoredPixels::Raw if !matches!(bits, 8 | 16 | 32) => {
                    bad(&key, format!("raw {bits}-bit pixels are packed; store photons_u32 instead"))
                }
                StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 if bits != 16 => {
                    bad(&key, format!("photons are computed from 16-bit pixels; {} sends {bits}-bit", model.name))
                }
                _ => {}
            }
        }
        if self.sinks.iter().filter_map(SinkSection::compressed_pixels).any(|f| f != pixels) {
            bad(&key, "every HDF5 and stream sink of a run takes the same pixels (frames are compressed once)".into());
        }
    }

    fn validate_stream(&self, i: usize, s: &StreamSection, bad: &mut impl FnMut(&str, String)) {
        let key = |k: &str| format!("sink[{i}].{k}");
        let tcp_port = s.endpoint.strip_prefix("tcp://").and_then(|a| a.rsplit_once(':')).map(|(_, p)| p);
        match (tcp_port, s.endpoint.strip_prefix("ipc://")) {
            (Some(port), _) if port.parse::<u16>().is_ok() => {}
            (None, Some(path)) if !path.is_empty() => {}
            _ => bad(&key("endpoint"), format!("{:?}: tcp://ADDRESS:PORT or ipc://PATH", s.endpoint)),
        }
        if !(1..=60_000).contains(&s.send_timeout_ms) {
            bad(&key("send_timeout_ms"), format!("{} is outside 1..=60000", s.send_timeout_ms));
        }
        if !(1..=1_000_000).contains(&s.high_water_mark) {
            bad(&key("high_water_mark"), format!("{} is outside 1..=1000000", s.high_water_mark));
        }
        self.validate_pixels(i, s.pixels, bad);
    }

    fn validate_forward(&self, i: usize, f: &ForwardSection, bad: &mut impl FnMut(&str, String)) {
        let key = |k: &str| format!("sink[{i}].{k}");
        if f.nats.is_empty() {
            bad(&key("nats"), "no server: give at least one nats://HOST:PORT".into());
        }
        for url in &f.nats {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                bad(&key("nats"), format!("{url:?} is not a NATS URL (nats://HOST:PORT)"));
            }
        }
        let token = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !token(&f.stream) {
            bad(&key("stream"), format!("{:?}: letters, digits, '_' and '-' only", f.stream));
        }
        if !f.subject.split('.').all(token) {
            bad(&key("subject"), format!("{:?}: dot-separated tokens of letters, digits, '_' and '-'", f.subject));
        }
        if !f.source.is_empty() && !token(&f.source) {
            bad(&key("source"), format!("{:?}: letters, digits, '_' and '-' only", f.source));
        }
        if !(1..=5).contains(&f.replicas) {
            bad(&key("replicas"), format!("{} is outside 1..=5 (JetStream's limit)", f.replicas));
        }
        if f.part_bytes != 0 && !(1024..=64 << 20).contains(&f.part_bytes) {
            bad(
                &key("part_bytes"),
                format!("{} is outside 1024..=67108864 (0: the server's max_payload)", f.part_bytes),
            );
        }
        self.validate_pixels(i, f.pixels, bad);
    }

    /// The pixels frames are compressed as for storage, when a sink stores compressed frames.
    pub fn stored_pixels(&self) -> Option<StoredPixels> {
        self.sinks.iter().find_map(SinkSection::compressed_pixels)
    }

    /// Every problem in the config, each with its key path; empty when it is sound.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, reason: String| p.push(ConfigProblem::new(key, reason));
        let d = &self.detector;
        match DetectorModel::by_name(&d.model) {
            None => bad(
                "detector.model",
                format!(
                    "unknown model {:?}; known: {}",
                    d.model,
                    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(model) => {
                if model.bits_per_pixel != 16 && self.trigger.kind != TriggerKind::AcceptAll {
                    bad(
                        "trigger.kind",
                        format!(
                            "{:?} needs 16-bit pixels; {} sends {}-bit",
                            self.trigger.kind, model.name, model.bits_per_pixel
                        ),
                    );
                }
                let need = d.modules * model.ports_per_module;
                match (&d.udp_ports, d.first_udp_port) {
                    (Some(_), Some(_)) => {
                        bad("detector.first_udp_port", "give either udp_ports or first_udp_port, not both".into())
                    }
                    (Some(ports), None) => {
                        if ports.len() != need {
                            bad(
                                "detector.udp_ports",
                                format!(
                                    "{} modules × {} ports need {need} ports, {} given",
                                    d.modules,
                                    model.ports_per_module,
                                    ports.len()
                                ),
                            );
                        }
                        for (i, port) in ports.iter().enumerate() {
                            if *port == 0 {
                                bad(&format!("detector.udp_ports[{i}]"), "port 0 cannot be received on".into());
                            }
                            if let Some(j) = ports[..i].iter().position(|q| q == port) {
                                bad(
                                    &format!("detector.udp_ports[{i}]"),
                                    format!("port {port} is already claimed by detector.udp_ports[{j}]"),
                                );
                            }
                        }
                    }
                    (None, first) => {
                        let first = first.unwrap_or(50001);
                        if first == 0 || usize::from(first) + need > 65536 {
                            bad(
                                "detector.first_udp_port",
                                format!("{need} consecutive ports from {first} do not fit in 1..=65535"),
                            );
                        }
                    }
                }
            }
        }
        if d.modules == 0 || d.modules > 64 {
            bad("detector.modules", format!("{} is outside 1..=64", d.modules));
        }
        if d.modules_per_row == 0 || d.modules_per_row > d.modules.max(1) {
            bad("detector.modules_per_row", format!("{} is outside 1..={}", d.modules_per_row, d.modules.max(1)));
        }
        let a = &self.assembler;
        if a.frame_timeout_us == 0 || a.frame_timeout_us > 60_000_000 {
            bad("assembler.frame_timeout_us", format!("{} is outside 1..=60000000", a.frame_timeout_us));
        }
        if a.window_frames == 0 || a.window_frames > 64 {
            bad("assembler.window_frames", format!("{} is outside 1..=64", a.window_frames));
        }
        if a.max_frame_jump < a.window_frames as u64 {
            bad(
                "assembler.max_frame_jump",
                format!("{} is less than window_frames ({})", a.max_frame_jump, a.window_frames),
            );
        }
        let r = &self.reducer;
        if a.pool_frames < a.window_frames + 2 || a.pool_frames > 4096 {
            bad(
                "assembler.pool_frames",
                format!("{} is outside {}..=4096 (window_frames + 2 at least)", a.pool_frames, a.window_frames + 2),
            );
        }
        if r.workers == 0 || r.workers > 64 {
            bad("reducer.workers", format!("{} is outside 1..=64", r.workers));
        }
        if r.queue_frames == 0 || r.queue_frames > 4096 {
            bad("reducer.queue_frames", format!("{} is outside 1..=4096", r.queue_frames));
        }
        let u = &self.udp;
        if !u.module_bind_addresses.is_empty() && u.module_bind_addresses.len() != d.modules {
            bad(
                "udp.module_bind_addresses",
                format!("{} addresses for {} modules", u.module_bind_addresses.len(), d.modules),
            );
        }
        if u.recv_buffer_bytes > 1 << 31 {
            bad("udp.recv_buffer_bytes", format!("{} is above 2 GiB", u.recv_buffer_bytes));
        }
        if u.batch_packets == 0 || u.batch_packets > 1024 {
            bad("udp.batch_packets", format!("{} is outside 1..=1024", u.batch_packets));
        }
        if u.receiver_threads > 64 {
            bad("udp.receiver_threads", format!("{} is above 64", u.receiver_threads));
        }
        if u.handoff_batches < u.receiver_threads * 2 || u.handoff_batches > 4096 {
            bad(
                "udp.handoff_batches",
                format!(
                    "{} is outside {}..=4096 (two per receiver thread at least)",
                    u.handoff_batches,
                    u.receiver_threads * 2
                ),
            );
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Every pinned thread: its key and CPU. Two threads pinned to one CPU is a clash.
        let pinned: Vec<(String, usize)> = u
            .receiver_cpu
            .iter()
            .map(|c| ("udp.receiver_cpu".to_string(), *c))
            .chain(u.receiver_cpus.iter().enumerate().map(|(i, c)| (format!("udp.receiver_cpus[{i}]"), *c)))
            .chain(r.cpus.iter().enumerate().map(|(i, c)| (format!("reducer.cpus[{i}]"), *c)))
            .collect();
        for (i, (key, cpu)) in pinned.iter().enumerate() {
            if *cpu >= cpus {
                bad(key, format!("CPU {cpu} does not exist here (0..{cpus})"));
            } else if let Some((other, _)) = pinned[..i].iter().find(|(_, c)| c == cpu) {
                bad(key, format!("CPU {cpu} is already claimed by {other}"));
            }
        }
        let dma = &self.dma;
        if dma.idle_sleep_us > 100_000 {
            bad("dma.idle_sleep_us", format!("{} is above 100000", dma.idle_sleep_us));
        }
        if dma.create_buffers != 0 && !dma.create_buffers.is_power_of_two() {
            bad("dma.create_buffers", format!("{} is not a power of two", dma.create_buffers));
        }
        if let Some(model) = DetectorModel::by_name(&d.model)
            && dma.create_buffers != 0
            && (dma.create_buffer_bytes as usize) < model.packet_bytes()
        {
            bad(
                "dma.create_buffer_bytes",
                format!(
                    "{} is smaller than a {} packet ({} bytes)",
                    dma.create_buffer_bytes,
                    model.name,
                    model.packet_bytes()
                ),
            );
        }
        let c = &self.calibration;
        if !(1.0..=200.0).contains(&c.photon_energy_kev) {
            bad("calibration.photon_energy_kev", format!("{} is outside 1..=200 keV", c.photon_energy_kev));
        }
        if c.dark_frames > 100_000 {
            bad("calibration.dark_frames", format!("{} is above 100000", c.dark_frames));
        }
        if c.pedestal_window_frames == 0 {
            bad("calibration.pedestal_window_frames", "must be at least 1".into());
        }
        if c.pedestal_track_every == 0 {
            bad("calibration.pedestal_track_every", "must be at least 1".into());
        }
        for (i, g) in c.gain_adu_per_kev.iter().enumerate() {
            if *g == 0.0 || !g.is_finite() {
                bad(&format!("calibration.gain_adu_per_kev[{i}]"), "a gain must be finite and non-zero".into());
            }
        }
        if let Some(file) = &c.file
            && !file.is_file()
        {
            bad("calibration.file", format!("{} is not a readable file", file.display()));
        }
        if let Some(file) = &c.mask_file
            && !file.is_file()
        {
            bad("calibration.mask_file", format!("{} is not a readable file", file.display()));
        }
        let loc = &self.features.localiser;
        if !(1..=1024).contains(&loc.batch_patches) {
            bad("features.localiser.batch_patches", format!("{} is outside 1..=1024", loc.batch_patches));
        }
        if let Some(crate::features::peaks::ModelSource::File(path)) = loc.source()
            && !path.is_file()
        {
            bad(
                "features.localiser.model",
                format!("{} is not a readable file (or \"builtin\" for the built-in model)", path.display()),
            );
        }
        let pf = &self.features.peakfinder8;
        let pf_key = |k: &str| format!("features.peakfinder8.{k}");
        if pf.ring_width_px.is_nan() || pf.ring_width_px <= 0.0 {
            bad(&pf_key("ring_width_px"), format!("{} must be above 0", pf.ring_width_px));
        }
        if pf.min_photons.is_nan() || pf.min_photons <= 0.0 {
            bad(&pf_key("min_photons"), format!("{} must be above 0", pf.min_photons));
        }
        if pf.min_pixels == 0 || pf.max_pixels < pf.min_pixels {
            bad(
                &pf_key("max_pixels"),
                format!("pixels must satisfy 1 <= min_pixels ({}) <= max_pixels ({})", pf.min_pixels, pf.max_pixels),
            );
        }
        if pf.clip_iterations == 0 || pf.clip_iterations > 20 {
            bad(&pf_key("clip_iterations"), format!("{} is outside 1..=20", pf.clip_iterations));
        }
        if pf.background_sample_stride == 0 {
            bad(&pf_key("background_sample_stride"), "must be at least 1".into());
        }
        if pf.local_bg_outer_px <= pf.local_bg_inner_px || pf.local_bg_outer_px > 32 {
            bad(
                &pf_key("local_bg_outer_px"),
                format!(
                    "{} must exceed local_bg_inner_px ({}) and be at most 32",
                    pf.local_bg_outer_px, pf.local_bg_inner_px
                ),
            );
        }
        if pf.max_radius_px.is_nan() || pf.min_radius_px.is_nan() || pf.max_radius_px <= pf.min_radius_px {
            bad(
                &pf_key("max_radius_px"),
                format!("{} must exceed min_radius_px ({})", pf.max_radius_px, pf.min_radius_px),
            );
        }
        let s = &self.trigger.spots;
        if s.threshold_photons.is_nan() || s.threshold_photons <= 0.0 {
            bad("trigger.spots.threshold_photons", format!("{} must be above 0", s.threshold_photons));
        }
        if s.min_spot_pixels == 0 {
            bad("trigger.spots.min_spot_pixels", "a spot has at least one pixel".into());
        }
        if s.max_spot_pixels < s.min_spot_pixels {
            bad(
                "trigger.spots.max_spot_pixels",
                format!("{} is below min_spot_pixels ({})", s.max_spot_pixels, s.min_spot_pixels),
            );
        }
        if s.min_spots == 0 {
            bad("trigger.spots.min_spots", "0 would accept every frame; use trigger.kind = \"accept_all\"".into());
        }
        let f = &self.trigger.fpga;
        if !f.threshold.is_finite() {
            bad("trigger.fpga.threshold", format!("{} is not a number", f.threshold));
        }
        if f.card != "emulated" && f.card.strip_prefix("xdma").is_none_or(|n| n.parse::<u32>().is_err()) {
            bad("trigger.fpga.card", format!("{:?}: \"emulated\" or \"xdmaN\"", f.card));
        }
        for fault in &f.emulated_faults {
            if !EMULATED_FAULTS.contains(&fault.as_str()) {
                bad("trigger.fpga.emulated_faults", format!("{fault:?} is not one of {EMULATED_FAULTS:?}"));
            }
        }
        if !f.emulated_faults.is_empty() && f.card != "emulated" {
            bad("trigger.fpga.emulated_faults", format!("only an emulated card plays faults, not {:?}", f.card));
        }
        if !(10..=10_000_000).contains(&f.timeout_us) {
            bad("trigger.fpga.timeout_us", format!("{} is outside 10..=10000000", f.timeout_us));
        }
        let most = crate::trigger::fpga::regs::MAX_FRAMES as usize;
        if !(1..=most).contains(&f.batch_frames) {
            bad(
                "trigger.fpga.batch_frames",
                format!("{} is outside 1..={most} (what the kernel takes a call)", f.batch_frames),
            );
        }
        match &f.manifest {
            None if f.card != "emulated" => bad(
                "trigger.fpga.manifest",
                format!(
                    "required for card {:?}: the manifest of the bitstream loaded on it (bitstreams/<board>/manifest.toml)",
                    f.card
                ),
            ),
            Some(path) if !path.is_file() => {
                bad("trigger.fpga.manifest", format!("{} is not a readable file", path.display()))
            }
            _ => {}
        }
        if f.model != "builtin-int8" && !Path::new(&f.model).is_file() {
            bad("trigger.fpga.model", format!("{} is not a readable file (or \"builtin-int8\")", f.model));
        }
        let t = &self.trigger.tract;
        if !t.threshold.is_finite() {
            bad("trigger.tract.threshold", format!("{} is not a number", t.threshold));
        }
        if let crate::trigger::ClassifierSource::File(path) = crate::trigger::ClassifierSource::parse(&t.model)
            && !path.is_file()
        {
            bad(
                "trigger.tract.model",
                format!("{} is not a readable file (or \"builtin\", \"builtin-int8\")", path.display()),
            );
        }
        let r = &self.trigger.rate;
        if let Some(rate) = r.target_accept_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            bad("trigger.rate.target_accept_rate", format!("{rate} is outside (0, 1]"));
        }
        if !(20..=1_000_000).contains(&r.window_frames) {
            bad("trigger.rate.window_frames", format!("{} is outside 20..=1000000", r.window_frames));
        }
        if r.update_every_frames == 0 || r.update_every_frames as usize > r.window_frames {
            bad(
                "trigger.rate.update_every_frames",
                format!("{} must be at least 1 and at most window_frames ({})", r.update_every_frames, r.window_frames),
            );
        }
        if let Some(max) = s.max_spots
            && max < s.min_spots
        {
            bad("trigger.spots.max_spots", format!("{max} is below min_spots ({})", s.min_spots));
        }
        if s.max_spots_recorded > 100_000 {
            bad("trigger.spots.max_spots_recorded", format!("{} is above 100000", s.max_spots_recorded));
        }
        if !(1..=65_536).contains(&self.storage.queue_frames) {
            bad("storage.queue_frames", format!("{} is outside 1..=65536", self.storage.queue_frames));
        }
        if self.storage.on_full == OnFull::RaiseThreshold && !self.trigger_has_cut() {
            bad("storage.on_full", "raise_threshold needs a trigger with a cut; accept_all has none".into());
        }
        if self.control.enabled {
            if let Err(reason) = self.control.token() {
                bad("control.token_file", reason);
            } else if self.control.token_file.is_none() && !self.control.listen_address.ip().is_loopback() {
                bad(
                    "control.listen_address",
                    format!(
                        "{} is not a loopback address: set control.token_file so that requests must carry its token",
                        self.control.listen_address
                    ),
                );
            }
        }
        if self.sinks.is_empty() {
            bad("sink", "no sink: add at least one [[sink]] (kind = \"null\" to discard)".into());
        }
        let mut claimed: Vec<(PathBuf, String)> = Vec::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            let (key, path) = match sink {
                SinkSection::Raw { dir } => (format!("sink[{i}].dir"), dir.clone()),
                SinkSection::Features { path } => (format!("sink[{i}].path"), path.clone()),
                SinkSection::Hdf5(h) => {
                    self.validate_hdf5(i, h, &mut bad);
                    (format!("sink[{i}].dir"), h.dir.clone())
                }
                SinkSection::Null { .. } => continue,
                SinkSection::Stream(st) => {
                    self.validate_stream(i, st, &mut bad);
                    continue;
                }
                SinkSection::Jetstream(f) => {
                    self.validate_forward(i, f, &mut bad);
                    continue;
                }
            };
            if path.as_os_str().is_empty() {
                bad(&key, "an empty path".into());
                continue;
            }
            let overlaps = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
            if let Some((_, other)) = claimed.iter().find(|(q, _)| overlaps(q, &path)) {
                bad(&key, format!("{} overlaps the output of {other}", path.display()));
            }
            claimed.push((path, key));
        }
        // A node's config has its own modules only; the cluster describes the whole detector.
        let whole = self.calibration.share.as_ref().map_or(self.detector.modules, |s| s.of);
        p.extend(self.cluster.problems(whole));
        p
    }
}
