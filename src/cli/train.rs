//! `hitgate train classifier`: the learned trigger trained on frame summaries (`hitgate dataset
//! frames`, simulated or from a recorded run) from wherever hitgate is installed. The training scripts
//! are compiled into the binary and run by a Python that has the pinned training wheels; without one it
//! refuses with the command that makes one. It writes the models (float and int8, with their input
//! ranges) and, given a config, a copy of it that uses the new model, ready for `hitgate tune`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::Exit;
use super::out::say;
use hitgate::config::edit::with_setting;

/// The training workflow, as `models/train/` holds it.
const CLASSIFIER: &str = include_str!("../../models/train/classifier.py");
const ONNX_TOOLS: &str = include_str!("../../models/train/onnx_tools.py");
const REQUIREMENTS: &str = include_str!("../../models/train/requirements.txt");
/// Where the training environment lives unless `--python` or `$HITGATE_TRAIN_PYTHON` says otherwise.
const DEFAULT_VENV: &str = "/var/tmp/hitgate-train/venv";

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the hit classifier on frame summaries and test it on a held-out set.
    Classifier {
        /// Training summaries (a `hitgate dataset frames` folder).
        #[arg(long)]
        data: PathBuf,
        /// Held-out summaries to measure it on (another folder; never the training one).
        #[arg(long)]
        test: PathBuf,
        /// Where the models go: hit_classifier.onnx, hit_classifier.int8.onnx, their input ranges,
        /// golden vectors and metrics.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60)]
        epochs: u32,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// A config to write a copy of, NAME.trained.toml beside it (so its relative paths hold),
        /// whose trigger is the new model.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The Python with the training wheels (default: $HITGATE_TRAIN_PYTHON, else the training
        /// environment in /var/tmp/hitgate-train/venv).
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

pub fn run(command: TrainCommand) -> Result<()> {
    let TrainCommand::Classifier { data, test, out, epochs, seed, config, python } = command;
    if data == test {
        return Err(Exit { code: 2, message: "--test must be held out: not the --data folder".into() }.into());
    }
    let python = python
        .or_else(|| std::env::var_os("HITGATE_TRAIN_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(DEFAULT_VENV).join("bin/python"));
    check_python(&python)?;
    let scripts = std::env::temp_dir().join(format!("hitgate-train-{}", std::process::id()));
    std::fs::create_dir_all(&scripts).with_context(|| format!("creating {}", scripts.display()))?;
    for (name, text) in [("classifier.py", CLASSIFIER), ("onnx_tools.py", ONNX_TOOLS)] {
        std::fs::write(scripts.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let status = Command::new(&python)
        .arg(scripts.join("classifier.py"))
        .arg("--train")
        .arg(&data)
        .arg("--test")
        .arg(&test)
        .arg("--out")
        .arg(&out)
        .args(["--epochs", &epochs.to_string(), "--seed", &seed.to_string()])
        .status()
        .with_context(|| format!("running {}", python.display()));
    let _ = std::fs::remove_dir_all(&scripts);
    let status = status?;
    if !status.success() {
        anyhow::bail!("training failed ({status}); its output is above");
    }
    let model = out.join("hit_classifier.onnx");
    say!("model        {} (and hit_classifier.int8.onnx, hit_classifier.inputs.json)", model.display());
    if let Some(config) = config {
        let text = std::fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
        let model_path = std::fs::canonicalize(&model).unwrap_or(model);
        let model_value = toml::Value::String(model_path.display().to_string());
        let edited = with_setting(&text, "trigger.kind", toml::Value::String("tract".into()))
            .and_then(|t| with_setting(&t, "trigger.tract.model", model_value))
            .with_context(|| format!("editing {}", config.display()))?;
        let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
        let written = config.with_file_name(format!("{stem}.trained.toml"));
        let header = format!("# {} with the hit classifier trained by `hitgate train classifier`.\n", config.display());
        std::fs::write(&written, header + &edited).with_context(|| format!("writing {}", written.display()))?;
        say!("config       {} (choose its cut with `hitgate tune`)", written.display());
    }
    Ok(())
}

/// Refuses, with the commands that make one, a Python without the training wheels.
fn check_python(python: &Path) -> Result<()> {
    let modules = "import jax, optax, onnx, onnxruntime, numpy";
    let ok = Command::new(python).args(["-c", modules]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    let wheels: Vec<&str> =
        REQUIREMENTS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    Err(Exit {
        code: 1,
        message: format!(
            "{} has not the training wheels (jax, optax, onnx, onnxruntime). Make the training environment \
             with:\n    python3 -m venv {DEFAULT_VENV} && {DEFAULT_VENV}/bin/pip install {}",
            python.display(),
            wheels.join(" ")
        ),
    }
    .into())
}
