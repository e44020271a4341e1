//! `hitgate builder`: a trigger event builder for the config's cluster.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::out::say;
use super::{Exit, load_config, stop_on_signals};

#[derive(Args)]
pub struct BuilderArgs {
    #[arg(long)]
    config: PathBuf,
    /// This builder's name, in its verdicts.
    #[arg(long, default_value = "builder")]
    name: String,
}

pub fn run(args: &BuilderArgs) -> Result<()> {
    let (path, name) = (&args.config, &args.name);
    let config = load_config(path)?;
    if !config.cluster.enabled() {
        return Err(Exit { code: 3, message: format!("{}: no [cluster] nats servers", path.display()) }.into());
    }
    let stop = stop_on_signals()?;
    let c = &config.cluster;
    eprintln!("builder {name}: run {:?}, {} nodes, rule {:?}", c.run, c.nodes.len(), c.rule);
    let stats = hitgate::scaleout::cluster::run_builder(c, name, &stop).context("running the trigger event builder")?;
    say!(
        "builder {name}: {} frames decided, {} kept, {} without every node, {} late contributions, nodes taken as down {} times",
        stats.decided,
        stats.kept,
        stats.incomplete,
        stats.late,
        stats.nodes_down
    );
    Ok(())
}
