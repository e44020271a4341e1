//! `hitgate tune`: every frame of a capture scored by the config's trigger, the cut chosen for a
//! target accept rate, the curve drawn, and a copy of the config written with that cut (where the
//! trigger's backend keeps it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use hitgate::config::edit::with_setting;
use hitgate::pipeline::{Progress, score_capture};
use hitgate::sim::RunTruth;
use hitgate::trigger::tune::TuneCurve;

use super::out::{say, show};
use super::progress::{replay_line, while_running};
use super::{Exit, damaged_input, load_config, open_capture};

#[derive(Args)]
pub struct TuneArgs {
    capture: PathBuf,
    #[arg(long)]
    config: PathBuf,
    /// Fraction of frames to accept (0 < R <= 1).
    #[arg(long)]
    target_rate: f64,
    /// A simulator truth file: add efficiency and purity.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Where to draw the curve.
    #[arg(long, default_value = "out/tune.svg")]
    svg: PathBuf,
    /// Where to write the config with the chosen cut (default: beside the config, NAME.tuned.toml,
    /// so its relative paths still hold).
    #[arg(long)]
    write_config: Option<PathBuf>,
}

pub fn run(args: TuneArgs) -> Result<()> {
    let (capture, config_path, target_rate) = (&args.capture, &args.config, args.target_rate);
    if !(target_rate > 0.0 && target_rate <= 1.0) {
        return Err(Exit { code: 2, message: format!("--target-rate {target_rate}: must be in (0, 1]") }.into());
    }
    let config = load_config(config_path)?;
    if !config.trigger.has_cut() {
        anyhow::bail!("trigger.kind = {} has no cut to tune", config.trigger.kind.name());
    }
    let cap = open_capture(capture)?;
    let progress = Progress::default();
    let scored = while_running(|| replay_line(&progress), || score_capture(&config, &cap, &progress))
        .with_context(|| format!("scoring {}", capture.display()))?;
    let truth = args
        .truth
        .as_deref()
        .map(|t| RunTruth::load(t).map(|t| t.frames.iter().map(|f| (f.frame_number, f.hit)).collect()))
        .transpose()?;
    let curve = TuneCurve::new(&scored.scores, truth.as_ref());
    let chosen = curve.cut_for_rate(target_rate);
    say!("scored       {} frames of {} ({} trigger)", curve.frames, capture.display(), config.trigger.kind.name());
    if let Some(hits) = curve.hits {
        say!("truth        {hits} hits");
    }
    show!("{}", curve.table(12, chosen));
    let svg = &args.svg;
    if let Some(parent) = svg.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let title = format!("{}: accept rate by cut, target {:.1}%", capture.display(), 100.0 * target_rate);
    std::fs::write(svg, curve.svg(&title, chosen)).with_context(|| format!("writing {}", svg.display()))?;
    say!("curve        {}", svg.display());
    let problem = curve.rate_problem(target_rate);
    let Some(chosen) = chosen else {
        anyhow::bail!(
            "no cut holds {:.2}% on this capture: {}",
            100.0 * target_rate,
            problem.unwrap_or_else(|| "the frames at the highest score alone are more".into())
        );
    };
    if let Some(problem) = problem {
        say!("WARNING      {problem}");
    }
    let out = args.write_config.unwrap_or_else(|| {
        let stem = config_path.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
        config_path.with_file_name(format!("{stem}.tuned.toml"))
    });
    // Where the cut lives and how it is written is the trigger's backend's to say.
    let Some((key, value)) = config.trigger.cut_setting(chosen.threshold) else {
        anyhow::bail!("trigger.kind = {} has no cut to write", config.trigger.kind.name());
    };
    let shown = format!("{key} = {value}");
    let text = std::fs::read_to_string(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let edited = with_setting(&text, &key, value).with_context(|| format!("editing {}", config_path.display()))?;
    let header = format!("# {} with the trigger's cut chosen by `hitgate tune` ({shown}).\n", config_path.display());
    std::fs::write(&out, header + &edited).with_context(|| format!("writing {}", out.display()))?;
    say!(
        "chosen       {shown} → {:.2}% of frames accepted{}",
        100.0 * chosen.accept_rate,
        chosen.efficiency.map(|e| format!(", {:.2}% of hits kept", 100.0 * e)).unwrap_or_default()
    );
    say!("config       {}", out.display());
    damaged_input(&scored.summary)
}
