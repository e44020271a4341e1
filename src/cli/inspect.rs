//! `hitgate inspect`: what a capture holds, or what a NeXus master written by hitgate links.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use hitgate::ingest::inventory::inventory;

use super::out::say;
use super::{Exit, open_capture, print};

#[derive(Args)]
pub struct InspectArgs {
    capture: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let (path, json) = (&args.capture, args.json);
    #[cfg(feature = "hdf5")]
    if hitgate::sink::hdf5::inspect::is_hdf5(path) {
        let summary = hitgate::sink::hdf5::inspect::summarize(path)
            .map_err(|e| Exit { code: 4, message: format!("{}: {e}", path.display()) })?;
        if json {
            say!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print::master(path, &summary);
        }
        return Ok(());
    }
    let inv = inventory(&open_capture(path)?);
    if json {
        say!("{}", serde_json::to_string_pretty(&inv)?);
    } else {
        print::inventory(path, &inv);
    }
    match inv.error {
        Some(e) => Err(Exit { code: 4, message: format!("{}: {e}", path.display()) }.into()),
        None => Ok(()),
    }
}
