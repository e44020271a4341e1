//! `hitgate doctor --config C`: the host checked against the config (`config::host`), printed as a
//! table with the command that fixes each shortfall.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use hitgate::config::host::{ThisHost, Verdict, check_host, table};

use super::load_config;
use super::out::show;

#[derive(Args)]
pub struct DoctorArgs {
    #[arg(long)]
    config: PathBuf,
    /// Frames a second the detector will send, for the storage estimate.
    #[arg(long, default_value_t = 1000.0)]
    frame_rate_hz: f64,
    /// Hours the sinks' disks must hold at that rate.
    #[arg(long, default_value_t = 12.0)]
    hours: f64,
    /// Exit 1 when a check fails.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: &DoctorArgs) -> Result<()> {
    let config = load_config(&args.config)?;
    let checks = check_host(&config, &ThisHost, args.frame_rate_hz, args.hours)?;
    show!("{}", table(&checks));
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if args.strict && failed > 0 {
        return Err(super::Exit { code: 1, message: format!("{failed} check(s) failed") }.into());
    }
    Ok(())
}
