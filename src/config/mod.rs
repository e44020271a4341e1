//! The TOML configuration: a serde schema (unknown keys refused, units in key names) and one
//! [`Config::validate`] that collects *every* problem with its key path, including two parts claiming
//! one resource (a UDP port, an output path).

mod cluster;
mod errors;
mod schema;

pub use cluster::{ClusterNode, ClusterSection, VerdictRule};
pub use errors::{ConfigError, ConfigProblem};
pub use schema::{
    AssemblerSection, CalibrationSection, Config, ControlSection, DetectorSection, DmaSection, FeaturesSection,
    FinderKind, ForwardSection, FpgaTriggerSection, Hdf5Section, LocaliseFrames, LocaliserSection, ModuleShare, OnFull,
    RateSection, ReducerSection, SinkSection, SpotsTriggerSection, StorageSection, StoredPixels, StreamSection,
    StreamSocket, TractTriggerSection, TriggerKind, TriggerSection, UdpSection,
};

use std::path::Path;

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for the schema, or fails validation (all problems).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config = Self::parse(&text).map_err(|e| e.in_file(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolved_against(base).validated().map_err(|e| e.in_file(path))
    }

    /// Parses TOML text without validating it.
    ///
    /// # Errors
    /// Syntax errors, unknown keys and wrong types, with the key path where it can be told.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| errors::parse_error(text, &e))
    }

    /// Checks the whole config and returns it, or every problem found.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key path.
    pub fn validated(self) -> Result<Config, ConfigError> {
        let problems = self.validate();
        if problems.is_empty() { Ok(self) } else { Err(ConfigError::Invalid { file: None, problems }) }
    }
}

#[cfg(test)]
mod tests;
