//! What every component's config section shares. A section is a documented serde struct with its
//! defaults, kept beside the component that reads it, with a `validate(&self, path, problems)` that
//! reports every problem at its key path and a `claims` of the resources it takes (ports, endpoints,
//! CPUs, output paths). `crate::config` puts the sections together into the root document and checks
//! what no section sees alone: two parts claiming one resource, and settings that depend on each other.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One thing wrong with a config, at one key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `detector.udp_ports[1]`.
    pub key: String,
    pub reason: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigProblem { key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Every problem found while validating a config, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// The key `key` is wrong, for `reason`.
    pub fn bad(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem::new(key, reason));
    }

    /// Reports `value` at `key` when it lies outside `range` (`"{value} is outside LO..=HI"`).
    pub fn outside<T: PartialOrd + fmt::Display>(&mut self, key: impl Into<String>, value: T, range: (T, T)) {
        let (low, high) = range;
        if !(value >= low && value <= high) {
            self.bad(key, format!("{value} is outside {low}..={high}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigProblem> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// The key `name` of the section at `path`: `key("trigger.spots", "min_spots")` is
/// `trigger.spots.min_spots`.
pub fn key(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// A resource a part of the config takes for itself; two parts taking one is a clash the config's
/// cross-check reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A UDP port the detector's packets arrive on.
    UdpPort(u16),
    /// A TCP address something listens on or binds; `host` as written (`*`, `0.0.0.0` and `::`
    /// stand for every address).
    Tcp { host: String, port: u16 },
    /// A Unix socket path something binds (`ipc://PATH`).
    Ipc(PathBuf),
    /// A CPU a thread is pinned to.
    Cpu(usize),
    /// A file or folder something writes; two outputs clash when one lies inside the other.
    Output(PathBuf),
}

impl Resource {
    /// Whether taking both would clash.
    pub fn clashes_with(&self, other: &Resource) -> bool {
        let every = |h: &str| matches!(h, "*" | "0.0.0.0" | "::" | "[::]");
        match (self, other) {
            (Resource::Tcp { host: a, port: p }, Resource::Tcp { host: b, port: q }) => {
                p == q && (a == b || every(a) || every(b))
            }
            (Resource::Output(a), Resource::Output(b)) => a.starts_with(b) || b.starts_with(a),
            (a, b) => a == b,
        }
    }

    /// A ZeroMQ-style endpoint (`tcp://HOST:PORT`, `ipc://PATH`) as a resource, when it is one.
    pub fn of_endpoint(endpoint: &str) -> Option<Resource> {
        if let Some(path) = endpoint.strip_prefix("ipc://") {
            return (!path.is_empty()).then(|| Resource::Ipc(path.into()));
        }
        let (host, port) = endpoint.strip_prefix("tcp://")?.rsplit_once(':')?;
        Some(Resource::Tcp { host: host.trim_matches(['[', ']']).to_string(), port: port.parse().ok()? })
    }
}

/// One resource taken, and the key that takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub resource: Resource,
}

impl Claim {
    pub fn new(key: impl Into<String>, resource: Resource) -> Claim {
        Claim { key: key.into(), resource }
    }
}

/// A key that moved to another section. It is still read, so that a config written for the old place
/// is refused at load with the new place named, instead of as an unknown key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Moved(Option<toml::Value>);

impl Moved {
    /// Whether the old key is absent (then it is not written either).
    pub fn is_absent(&self) -> bool {
        self.0.is_none()
    }

    /// Reports the old key `key`, when it is given, as moved to `to`.
    pub fn check(&self, key: impl Into<String>, to: &str, problems: &mut Problems) {
        if self.0.is_some() {
            problems.bad(key, format!("moved to {to}"));
        }
    }
}

/// A path read from a config file is taken from the file's folder when it is relative.
pub fn resolve(path: &mut PathBuf, base: &Path) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// A model a config names: one of `builtins` as it is, or a file path resolved like any other.
pub fn resolve_model(name: &mut String, builtins: &[&str], base: &Path) {
    if !builtins.contains(&name.as_str()) && Path::new(name.as_str()).is_relative() {
        *name = base.join(name.as_str()).to_string_lossy().into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_clash_on_one_port_of_one_address_or_of_every_address() {
        let tcp = |e: &str| Resource::of_endpoint(e).unwrap();
        assert!(tcp("tcp://127.0.0.1:31001").clashes_with(&tcp("tcp://127.0.0.1:31001")));
        assert!(tcp("tcp://*:31001").clashes_with(&tcp("tcp://127.0.0.1:31001")));
        assert!(!tcp("tcp://127.0.0.1:31001").clashes_with(&tcp("tcp://127.0.0.2:31001")));
        assert!(!tcp("tcp://127.0.0.1:31001").clashes_with(&tcp("tcp://127.0.0.1:31002")));
        assert_eq!(tcp("tcp://[::1]:5"), Resource::Tcp { host: "::1".into(), port: 5 });
        assert_eq!(tcp("ipc:///tmp/s"), Resource::Ipc("/tmp/s".into()));
        assert!(Resource::of_endpoint("tcp://nowhere").is_none() && Resource::of_endpoint("ipc://").is_none());
    }

    #[test]
    fn outputs_clash_when_one_holds_the_other() {
        let out = |p: &str| Resource::Output(p.into());
        assert!(out("/data/run").clashes_with(&out("/data/run/features.jsonl")));
        assert!(!out("/data/run-a").clashes_with(&out("/data/run-b")));
    }

    #[test]
    fn problems_name_the_range_they_left() {
        let mut p = Problems::default();
        p.outside("reducer.workers", 0, (1, 64));
        p.outside("reducer.workers", 64, (1, 64));
        assert_eq!(p.into_vec(), vec![ConfigProblem::new("reducer.workers", "0 is outside 1..=64")]);
        assert_eq!(key("trigger.spots", "min_spots"), "trigger.spots.min_spots");
    }
}
