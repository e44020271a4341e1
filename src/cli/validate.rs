//! `hitgate validate`: a config checked, every problem listed with its key path.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::load_config;
use super::out::say;

#[derive(Args)]
pub struct ValidateArgs {
    config: PathBuf,
}

pub fn run(args: &ValidateArgs) -> Result<()> {
    let c = load_config(&args.config)?;
    let g = c.geometry()?;
    say!(
        "{}: ok — {} × {} on UDP ports {:?}, {} packets of {} bytes per frame, pool {} × {} MiB, trigger {}, {} sink(s)",
        args.config.display(),
        g.modules,
        g.model.name,
        g.udp_ports,
        g.packets_per_frame(),
        g.model.packet_bytes(),
        c.assembler.pool_frames,
        g.frame_bytes() >> 20,
        c.trigger.kind.name(),
        c.sinks.len()
    );
    Ok(())
}
