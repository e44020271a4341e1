//! `hitgate demo`: the built-in default. A simulated JUNGFRAU run replayed through the whole pipeline
//! with the learned trigger and the localiser, scored against the simulator's truth.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use hitgate::config::{Hdf5Section, SinkSection, TriggerKind};
use hitgate::pipeline::Pace;
use hitgate::sim::{PacketFaults, SimConfig};

use super::out::{say, show};
use super::{damaged_input, load_config, print, replay, simulate};

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the simulated run and the results.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 400)]
    frames: u64,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let (out, frames) = (&args.out, args.frames);
    let cfg = SimConfig {
        frames,
        faults: PacketFaults { loss: 0.0005, reorder: 0.001, duplicate: 0.0005 },
        ..SimConfig::default()
    };
    say!("== simulating a JUNGFRAU run ({frames} frames, 25% hits, light packet damage) into {}", out.display());
    let outputs = simulate::with_progress(&cfg, out)?;
    print::simulation(&outputs);
    say!("\n== replaying it through assembly → calibration → spot finding → learned trigger → localiser → sinks");
    let mut config = load_config(&outputs.replay_config)?;
    // The built-in default is the learned trigger; the simulator's replay.toml keeps the classical one.
    config.trigger.kind = TriggerKind::Tract;
    if cfg!(feature = "hdf5") {
        // Kept frames also go where the X-ray world reads them: NeXus NXmx with bitshuffle-LZ4, in
        // whole photons (raw ADU would make every pixel strong to a spot finder such as DIALS's).
        let mut nexus = Hdf5Section::in_dir(out.join("replay/nexus"));
        nexus.frames_per_file = 50;
        nexus.pixels = hitgate::codec::StoredPixels::PhotonsU32;
        config.sinks.push(SinkSection::Hdf5(nexus));
    }
    let summary = replay::replay(config.clone(), &outputs.capture, Pace::AsFastAsPossible)?;
    show!("{summary}");
    replay::report_truth(&config, &replay::load_truth(&outputs.truth)?)?;
    damaged_input(&summary)
}
