//! Bitstream manifests: the committed emulated card's manifest is what `hitgate fpga-export` writes
//! from this hitgate's sources and model (so never edited by hand), and a manifest that does not
//! match the compiled register map or the configured model makes hitgate refuse the card with a
//! message that says which and what to do.

use std::path::{Path, PathBuf};

use hitgate::config::{Config, FpgaTriggerSection, TriggerKind};
use hitgate::fpga_export::{EMULATED_MANIFEST_FILE, emulated_manifest_text};
use hitgate::trigger::fpga::manifest::{self, Manifest, WEIGHTS};
use hitgate::trigger::tract::BUILTIN_INT8_MODEL;
use hitgate::trigger::{Trigger, TriggerError};

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bitstreams").join(EMULATED_MANIFEST_FILE)
}

fn header() -> String {
    String::from_utf8(WEIGHTS.to_vec()).unwrap()
}

#[test]
fn the_emulated_manifest_is_generated_from_the_sources_and_model() {
    let text = std::fs::read_to_string(committed()).unwrap();
    let expected = emulated_manifest_text(BUILTIN_INT8_MODEL, "models/hit_classifier.int8.onnx", &header()).unwrap();
    assert!(text == expected, "bitstreams/{EMULATED_MANIFEST_FILE} is stale: run `hitgate fpga-export`");
    let m = Manifest::load(&committed()).unwrap();
    assert_eq!(m.abi_version, hitgate::trigger::fpga::regs::ABI_VERSION_VALUE);
    assert!(m.check(&committed(), BUILTIN_INT8_MODEL).is_ok());
}

fn trigger_with(manifest: &Manifest, dir: &Path) -> Result<Trigger, TriggerError> {
    let path = dir.join("manifest.toml");
    std::fs::write(&path, toml::to_string(manifest).unwrap()).unwrap();
    let mut section = Config::default_for(dir).trigger;
    section.kind = TriggerKind::Fpga;
    section.fpga = FpgaTriggerSection { manifest: Some(path), ..FpgaTriggerSection::default() };
    Trigger::from_config(&section)
}

#[test]
fn a_bitstream_built_from_another_register_map_or_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = manifest::emulated("models/hit_classifier.int8.onnx", BUILTIN_INT8_MODEL, WEIGHTS);
    assert!(trigger_with(&good, dir.path()).is_ok());

    let other_map = Manifest { register_map_fnv1a64: "0123456789abcdef".into(), ..good.clone() };
    let err = trigger_with(&other_map, dir.path()).unwrap_err();
    let said = format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
    assert!(said.contains("register map (0123456789abcdef)") && said.contains("rebuild it"), "{said}");

    let other_model = Manifest { model_fnv1a64: "fedcba9876543210".into(), ..good.clone() };
    let err = trigger_with(&other_model, dir.path()).unwrap_err();
    let said = format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
    assert!(said.contains("its model (fedcba9876543210)"), "{said}");

    let other_abi = Manifest { abi_version: 2, ..good };
    assert!(trigger_with(&other_abi, dir.path()).is_err());
}

#[test]
fn an_xdma_card_needs_its_manifest_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default_for(dir.path());
    config.trigger.kind = TriggerKind::Fpga;
    config.trigger.fpga.card = "xdma0".into();
    let err = config.clone().validated().unwrap_err();
    assert!(err.problems().iter().any(|p| p.key == "trigger.fpga.manifest"), "{err}");
    config.trigger.fpga.manifest = Some(committed());
    assert!(config.validated().is_ok());
}
