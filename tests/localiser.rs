//! The committed localiser (the learned peak localiser), run by tract, against onnxruntime's outputs on the same inputs
//! (golden vectors written by `models/train/peaks.py` when the model was exported).

mod common;

use common::{Golden, golden};
use hitgate::features::localiser::{Localiser, LocaliserSource};
use hitgate::features::patch::PATCH_PIXELS;

fn models() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// tract's centres for the golden inputs, run in batches of `batch`.
fn tract_centres(source: &LocaliserSource, g: &Golden, batch: usize) -> Vec<f32> {
    let model = Localiser::load(source, batch).expect("model loads");
    let mut localiser = model.state().unwrap();
    let mut centres = vec![[0f32; 2]; batch];
    let mut out = Vec::new();
    for chunk in g.inputs.chunks(batch * PATCH_PIXELS) {
        localiser.locate(chunk, &mut centres).unwrap();
        out.extend(centres.iter().take(chunk.len() / PATCH_PIXELS).flatten());
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= tolerance, "{what}: tract differs from onnxruntime by up to {worst} px (tolerance {tolerance})");
}

#[test]
fn builtin_model_matches_onnxruntime_on_the_golden_vectors() {
    let g = golden("peak_localiser");
    assert_eq!(g.input_shape[1..], [1, 11, 11]);
    let n = g.input_shape[0];
    assert_eq!(g.inputs.len(), n * PATCH_PIXELS);
    assert_eq!(g.outputs.len(), n * 2);
    // Whole batches, one patch at a time, and a batch size that leaves a padded remainder: padding
    // must not change any patch's centre.
    for batch in [n, 1, 7] {
        let got = tract_centres(&LocaliserSource::Builtin, &g, batch);
        assert_close(&got, &g.outputs, g.tolerance, &format!("batch {batch}"));
    }
}

#[test]
fn the_model_file_and_the_builtin_copy_are_the_same_model() {
    let g = golden("peak_localiser");
    let from_file = tract_centres(&LocaliserSource::File(models().join("peak_localiser.onnx")), &g, 8);
    assert_close(&from_file, &g.outputs, g.tolerance, "models/peak_localiser.onnx");
}

#[test]
fn braggnn_shaped_model_matches_onnxruntime_on_the_golden_vectors() {
    // Convolutions, a non-local (softmax attention) block and a dense head: the ops tract must get
    // right beyond the dense layers of the built-in model.
    let g = golden("braggnn");
    for batch in [16, 5] {
        let got = tract_centres(&LocaliserSource::File(models().join("braggnn.onnx")), &g, batch);
        assert_close(&got, &g.outputs, g.tolerance, &format!("braggnn, batch {batch}"));
    }
}

#[test]
fn int8_models_match_onnxruntime_on_their_golden_vectors() {
    for name in ["peak_localiser.int8", "braggnn.int8"] {
        let g = golden(name);
        let got = tract_centres(&LocaliserSource::File(models().join(format!("{name}.onnx"))), &g, 16);
        assert_close(&got, &g.outputs, g.tolerance, name);
    }
}

#[test]
fn a_damaged_model_file_is_refused_at_load() {
    // A copy of the model cut short: an error that names the file, never a panic.
    let dir = tempfile::tempdir().unwrap();
    let model =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/peak_localiser.onnx")).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &model[..model.len() / 2]).unwrap();
    let err = Localiser::load(&LocaliserSource::File(cut), 4).err().expect("a cut model is refused");
    assert!(err.to_string().contains("cut.onnx"), "{err}");
}
