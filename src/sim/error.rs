//! Why a simulation or a dataset cannot be made.

use std::path::PathBuf;

use crate::detector::GeometryError;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator supports JUNGFRAU models only, not {0:?}")]
    NotJungfrau(String),
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    #[error(transparent)]
    Calibration(#[from] crate::calib::CalibrationError),
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a truth file: {reason}")]
    Truth { path: PathBuf, reason: String },
    #[error("invalid simulation parameter: {0}")]
    Parameter(String),
    /// A thread simulating part of the frames panicked: the run or dataset would lack its frames.
    #[error("a simulation thread panicked; its frames are missing, so nothing was written")]
    WorkerPanicked,
}
