//! `Config → Plan → run`: a [`Plan`] does the expensive work once (geometry, calibration maps loaded
//! and inverted, trigger prepared); running it starts named threads — one source with the assembler,
//! N reducers, one sink thread — joined by bounded rings, and shuts them down in order: the source
//! ends and closes its ring, reducers drain it and the last one closes theirs, the sink thread drains
//! that, restores frame order, flushes and closes every sink. Nothing accepted is left behind.

mod assembly_metrics;
mod dark;
mod frames;
mod live;
pub mod monitor;
mod ordering;
mod replay;
mod run_control;
mod scoring;
mod service;
mod stages;
mod summaries;
mod summary;

pub use dark::{DarkReport, measure_dark};
pub use frames::{FramesRead, each_whole_frame};
pub use live::UdpSources;
pub use replay::{Pace, ReplayOptions};
pub use run_control::{ReloadReport, RunControl, apply_reload};
pub use scoring::{ScoredRun, ScoringError, score_capture};
pub use service::{LiveOptions, LiveSource};
pub use summaries::{LabelRule, LabelledFrames, SummariesError, label_recording, label_recording_with_audit};
pub use summary::{Progress, RunSummary};

use std::sync::Arc;

use crate::config::Config;
use crate::detector::{DetectorGeometry, GeometryError};
use crate::frame::{FramePool, PoolError};
use crate::ingest::PcapError;
use crate::reduce::ReducerPlan;
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("detector")]
    Geometry(#[from] GeometryError),
    /// Calibration, spot finding, trigger or feature models could not be prepared.
    #[error("reduction")]
    Reduction(#[from] crate::reduce::PlanError),
    #[error("frame pool")]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Capture(#[from] PcapError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the {0} sink failed")]
    SinkFailed(&'static str),
    #[error(transparent)]
    Udp(#[from] crate::ingest::udp::UdpError),
    #[error(transparent)]
    Uring(#[from] crate::ingest::uring::UringError),
    #[error(transparent)]
    Dma(#[from] crate::ingest::dma::DmaError),
    #[error("{recording} holds {found}; the config describes {expected}")]
    RecordingMismatch { recording: String, found: String, expected: String },
    #[error("no DMA device configured (dma.device)")]
    NoDmaDevice,
    #[error("cannot start thread {name}")]
    Thread { name: String, source: std::io::Error },
    #[error("thread {0} panicked")]
    Panicked(String),
    #[error("control.token_file: {0}")]
    Token(#[from] crate::control::TokenError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::scaleout::cluster::ClusterError),
}

/// A validated config with everything prepared that does not depend on the input.
pub struct Plan {
    pub config: Config,
    pub geometry: DetectorGeometry,
    reducer: Arc<ReducerPlan>,
    /// Every frame buffer of the run, mapped and populated here rather than on the first frame.
    pool: Arc<FramePool>,
    /// What the live monitor shows, when the run has a control plane to show it.
    monitor: Option<Arc<monitor::Monitor>>,
}

impl Plan {
    /// The trigger shared by the running workers (for the control plane's retune).
    pub fn trigger(&self) -> &crate::trigger::Trigger {
        self.reducer.trigger()
    }

    pub fn pool(&self) -> &Arc<FramePool> {
        &self.pool
    }

    pub fn monitor(&self) -> Option<&Arc<monitor::Monitor>> {
        self.monitor.as_ref()
    }

    /// How raw values become photons in this run.
    pub fn photons(&self) -> &crate::calib::Photons {
        self.reducer.photons()
    }

    /// Prepares a run: builds the geometry, loads the calibration and allocates the frame pool.
    ///
    /// # Errors
    /// The geometry or the calibration is unusable, or the pool cannot be allocated.
    pub fn new(config: Config) -> Result<Plan, PipelineError> {
        let geometry = config.geometry()?;
        let reducer = Arc::new(ReducerPlan::new(&config.reducer_settings(&geometry))?);
        let image = config.panel_image(&geometry);
        let chunk_room = config.stored_pixels().map_or(0, |p| crate::codec::chunk_bound(p, &geometry, &image));
        let pool = FramePool::with_chunk_room(
            geometry.frame_bytes(),
            geometry.packets_per_frame(),
            config.assembler.pool_frames,
            config.features.max_spots_recorded,
            chunk_room,
        )?;
        let monitor = config
            .control
            .enabled
            .then(|| monitor::Monitor::new(&config.experiment(&geometry), geometry.frame_bytes() / 2));
        Ok(Plan { config, geometry, reducer, pool, monitor })
    }
}
