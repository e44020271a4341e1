//! What no section sees alone: a resource two parts claim (a UDP port, a TCP endpoint, a CPU, an output
//! path), and settings of one section that another section's make wrong (a trigger that needs 16-bit
//! pixels, stored pixels the detector cannot give, a storage policy the trigger cannot follow).

use super::Config;
use crate::codec::StoredPixels;
use crate::section::{Claim, Problems, Resource, key};
use crate::sink::OnFull;

/// Every cross-section problem of `config`, each at the key that caused it.
pub(super) fn cross_check(config: &Config, problems: &mut Problems) {
    claimed_twice(&claims(config), problems);
    let d = &config.detector;
    if let Some(model) = d.detector_model()
        && model.bits_per_pixel != 16
        && config.trigger.has_cut()
    {
        problems.bad(
            "trigger.kind",
            format!("{:?} needs 16-bit pixels; {} sends {}-bit", config.trigger.kind, model.name, model.bits_per_pixel),
        );
    }
    stored_pixels(config, problems);
    if config.storage.on_full == OnFull::RaiseThreshold && !config.trigger.has_cut() {
        problems.bad("storage.on_full", "raise_threshold needs a trigger with a cut; accept_all has none");
    }
    if config.sinks.is_empty() {
        problems.bad("sink", "no sink: add at least one [[sink]] (kind = \"null\" to discard)");
    }
}

/// Every resource the config's parts take, in the order the file gives them.
pub(super) fn claims(config: &Config) -> Vec<Claim> {
    let mut all = config.detector.claims("detector");
    all.extend(config.udp.claims("udp"));
    all.extend(config.reducer.claims("reducer"));
    all.extend(config.control.claims("control"));
    for (i, sink) in config.sinks.iter().enumerate() {
        all.extend(sink.config().claims(&format!("sink[{i}]")));
    }
    all
}

/// A resource taken by a part after another took it is reported at the later part's key.
fn claimed_twice(claims: &[Claim], problems: &mut Problems) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (i, claim) in claims.iter().enumerate() {
        match &claim.resource {
            Resource::Cpu(cpu) if *cpu >= cpus => {
                problems.bad(&claim.key, format!("CPU {cpu} does not exist here (0..{cpus})"));
                continue;
            }
            // An empty path is its section's problem, and lies inside every other.
            Resource::Output(path) if path.as_os_str().is_empty() => continue,
            _ => {}
        }
        let earlier = claims[..i].iter().find(|other| match &other.resource {
            Resource::Output(path) if path.as_os_str().is_empty() => false,
            resource => resource.clashes_with(&claim.resource),
        });
        if let Some(other) = earlier {
            let reason = match &claim.resource {
                Resource::UdpPort(port) => format!("port {port} is already claimed by {}", other.key),
                Resource::Cpu(cpu) => format!("CPU {cpu} is already claimed by {}", other.key),
                Resource::Output(path) => format!("{} overlaps the output of {}", path.display(), other.key),
                Resource::Tcp { host, port } => format!("{host}:{port} is already claimed by {}", other.key),
                Resource::Ipc(path) => format!("ipc://{} is already claimed by {}", path.display(), other.key),
            };
            problems.bad(&claim.key, reason);
        }
    }
}

/// Sinks that take compressed frames: pixels this detector can give, and the same for every such
/// sink (frames are compressed once, by the reducers).
fn stored_pixels(config: &Config, problems: &mut Problems) {
    for (i, sink) in config.sinks.iter().enumerate() {
        let Some(pixels) = sink.config().stored_pixels() else { continue };
        let k = key(&format!("sink[{i}]"), "pixels");
        if let Some(model) = config.detector.detector_model() {
            let bits = model.bits_per_pixel;
            match pixels {
                StoredPixels::Raw if !matches!(bits, 8 | 16 | 32) => {
                    problems.bad(&k, format!("raw {bits}-bit pixels are packed; store photons_u32 instead"))
                }
                StoredPixels::PhotonsU32 | StoredPixels::PhotonsF32 if bits != 16 => problems
                    .bad(&k, format!("photons are computed from 16-bit pixels; {} sends {bits}-bit", model.name)),
                _ => {}
            }
        }
        if config.sinks.iter().filter_map(|s| s.config().stored_pixels()).any(|p| p != pixels) {
            problems.bad(&k, "every HDF5 and stream sink of a run takes the same pixels (frames are compressed once)");
        }
    }
}
