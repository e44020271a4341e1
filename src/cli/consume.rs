//! `hitgate consume`: one source of the config's JetStream forward written as the node's storage
//! would write it, in whole parts, resuming where the last whole part ended.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use hitgate::config::{Hdf5Section, SinkSection};
use hitgate::scaleout::forward::consume::{ConsumeOptions, consume};

use super::out::say;
use super::{Exit, as_node, load_config, stop_on_signals};

#[derive(Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    config: PathBuf,
    /// Folder for the parts (`part-000001/`, …).
    #[arg(long)]
    out: PathBuf,
    /// Read this cluster node's messages (its modules, its `{node}`), else the single node's.
    #[arg(long)]
    node: Option<String>,
    /// The durable consumer's name; default `consume-<source>`.
    #[arg(long)]
    durable: Option<String>,
    #[arg(long, default_value_t = 1000)]
    frames_per_part: u64,
    /// Stop once the source's run has ended and all of it is written.
    #[arg(long)]
    exit_at_end: bool,
}

pub fn run(args: ConsumeArgs) -> Result<()> {
    let path = &args.config;
    let config = as_node(load_config(path)?, args.node.as_deref(), path)?;
    let Some(section) = config.sinks.iter().find_map(|s| match s {
        SinkSection::Jetstream(f) => Some(f.clone()),
        _ => None,
    }) else {
        return Err(Exit { code: 3, message: format!("{}: no [[sink]] kind = \"jetstream\"", path.display()) }.into());
    };
    if args.frames_per_part == 0 {
        return Err(Exit { code: 2, message: "--frames-per-part must be at least 1".into() }.into());
    }
    // The parts' NeXus files are written as the node's own HDF5 sink would write them.
    let nexus = config
        .sinks
        .iter()
        .find_map(|s| if let SinkSection::Hdf5(h) = s { Some(h.clone()) } else { None })
        .unwrap_or_else(|| Hdf5Section::in_dir(args.out.clone()));
    let source = section.source_name().to_string();
    let options = ConsumeOptions {
        out: args.out,
        durable: args.durable.unwrap_or_else(|| format!("consume-{source}")),
        source,
        frames_per_part: args.frames_per_part,
        exit_at_end: args.exit_at_end,
        idle: Duration::from_secs(1),
        nexus,
    };
    let geometry = config.geometry().map_err(|e| Exit { code: 3, message: format!("{}: {e}", path.display()) })?;
    let stop = stop_on_signals()?;
    eprintln!("consume: {} source {} as {}", section.stream, options.source, options.durable);
    let report = consume(&config.experiment(&geometry), &section, &options, &stop)
        .with_context(|| format!("consuming {} into {}", section.stream, options.out.display()))?;
    let r = &report.reassembly;
    say!(
        "consume: {} parts, {} frames, {} chunks written; {} messages already written skipped; {} chunks missing, {} parts dropped, {} messages malformed; {} run ends",
        report.parts,
        report.frames,
        report.chunks,
        report.messages_skipped,
        r.chunks_missing,
        r.parts_dropped,
        r.messages_malformed,
        report.ends
    );
    Ok(())
}
