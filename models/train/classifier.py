"""Train hitgate's learned hit classifier and export it as ONNX, float32 and int8.

The classifier reads a frame's summary (`features::summary` in hitgate: per resolution shell, whether
the detector covers it, the frame's own background there, how widely 2 x 2 pixel blocks (the four pixels summed, then rounded) spread around it
against Poisson's spread, and the fractions of blocks 3, 6 and 12 deviations above it) and gives the
probability that the frame is a hit. The graph takes the summary as
hitgate computes it: the logarithm and the standardisation learned from the training set are part of
the model.

Inputs come from `hitgate dataset frames`. Training is JAX + optax on the CPU with fixed seeds. The ONNX
graph is written node by node (MatMul + Add rather than Gemm, so static quantization gives standard
operators rather than a contrib op), checked against JAX through onnxruntime; the int8 model is made by
onnxruntime's static quantization (QDQ form) calibrated on training summaries. Golden vectors (inputs and
onnxruntime's outputs) are written for both, for hitgate's tract correctness test.

    python classifier.py --train DIR [DIR ...] --test DIR --out MODELS_DIR [--epochs N] [--seed S]
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import optax
from onnx import TensorProto, helper, numpy_helper

from onnx_tools import quantize_qdq, write_golden

SHELLS, PER_SHELL = 12, 6
LEN = SHELLS * PER_SHELL
OPSET = 17
HIDDEN = (64, 32)
LABEL_SMOOTHING = 0.02


USABLE_HIT_SPOTS = 10


def load(folder):
    """A frame dataset, without the frames whose label is not clear: hits with fewer than ten
    reflections standing out of their background (a crystal was there, but left too little to use).
    Recorded runs' frames (labelled by a conservative rule, no truth of their spots) are all kept."""
    d = Path(folder)
    data = {k: np.load(d / f"{k}.npy") for k in ("summaries", "hit", "strength", "visible_spots", "spots_found")}
    n = len(data["hit"])
    detectable = np.load(d / "detectable_spots.npy") if (d / "detectable_spots.npy").is_file() else np.full(n, np.nan)
    usable = (data["hit"] == 0) | np.isnan(detectable) | (detectable >= USABLE_HIT_SPOTS)
    data = {k: v[usable] for k, v in data.items()}
    data["marginal_hits_left_out"] = int((~usable).sum())
    return data


def load_all(folders):
    """Several frame datasets as one (each loaded as `load` does)."""
    parts = [load(f) for f in folders]
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "marginal_hits_left_out"}
    data["marginal_hits_left_out"] = sum(p["marginal_hits_left_out"] for p in parts)
    return data


def input_ranges(folders):
    """The range the training inputs held, from each dataset's `inputs.json` (written by `hitgate
    dataset frames`): one dataset's as it is; for several, per input the lowest of their low
    quantiles and the highest of their high ones."""
    ranges = [json.loads((Path(f) / "inputs.json").read_text()) for f in folders if (Path(f) / "inputs.json").is_file()]
    if len(ranges) != len(folders):
        return None
    if len(ranges) == 1:
        return ranges[0]
    assert all(r["quantiles"] == ranges[0]["quantiles"] for r in ranges), "datasets' ranges at different quantiles"
    return {
        "quantiles": ranges[0]["quantiles"],
        "low": [min(v) for v in zip(*(r["low"] for r in ranges))],
        "high": [max(v) for v in zip(*(r["high"] for r in ranges))],
        "frames": sum(r["frames"] for r in ranges),
        "source": "; ".join(r["source"] for r in ranges),
    }


def offsets():
    """What is added before the logarithm: fractions are small, and an absent shell reads 0."""
    return np.full(LEN, 1e-4, np.float32)


def standardiser(x):
    """Mean and scale of the logarithms. The scale is at least an eighth of the input's range: an input
    that is rarely above zero (the excess far out in resolution) would otherwise reach tens of
    deviations, and int8 quantization shares one scale among all inputs."""
    z = np.log(x + offsets())
    scale = np.maximum(z.std(0), (z.max(0) - z.min(0)) / 8) + 1e-3
    return z.mean(0).astype(np.float32), scale.astype(np.float32)


def init_params(key):
    widths = (LEN, *HIDDEN, 1)
    keys = jax.random.split(key, len(widths) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), "b": jnp.zeros((b,))}
        for k, a, b in zip(keys, widths, widths[1:])
    ]


def logits(params, norm, x):
    mean, std = norm
    h = (jnp.log(x + offsets()) - mean) / std
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return (h @ params[-1]["w"] + params[-1]["b"])[:, 0]


def train(data, norm, epochs, seed, batch=256):
    rng = np.random.default_rng(seed)
    params = init_params(jax.random.PRNGKey(seed))
    x, y = data["summaries"], data["hit"]
    n = len(y)
    batch = min(batch, n)
    steps = max(epochs * (n // batch), 2)
    opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 3e-3, max(steps // 20, 1), steps, 3e-5), weight_decay=1e-4)
    state = opt.init(params)

    # Smoothed labels keep the logit within a few units: the card's integer arithmetic and the int8
    # model's rounding then move a probability by little, where a logit of tens of units would let
    # a rounding step flip a verdict.
    def loss_fn(params, xb, yb):
        target = yb * (1 - 2 * LABEL_SMOOTHING) + LABEL_SMOOTHING
        return optax.sigmoid_binary_cross_entropy(logits(params, norm, xb), target).mean()

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    for epoch in range(epochs):
        order = rng.permutation(n)
        losses = []
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            params, state, loss = step(params, state, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
            losses.append(float(loss))
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}", flush=True)
    return params


def to_onnx(params, norm, path):
    mean, std = norm
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    h = node("Add", ["summary", const("offsets", offsets())], "offset")
    h = node("Log", [h], "log")
    h = node("Sub", [h, const("mean", mean)], "centred")
    h = node("Div", [h, const("std", std)], "standardised")
    for i, layer in enumerate(params):
        w = const(f"dense{i + 1}.weight", layer["w"])
        b = const(f"dense{i + 1}.bias", layer["b"])
        h = node("MatMul", [h, w], f"dense{i + 1}.matmul")
        h = node("Add", [h, b], f"dense{i + 1}" if i < len(params) - 1 else "logit")
        if i < len(params) - 1:
            h = node("Relu", [h], f"dense{i + 1}.relu")
    node("Sigmoid", [h], "hit_probability")
    graph = helper.make_graph(
        nodes,
        "hit_classifier",
        [helper.make_tensor_value_info("summary", TensorProto.FLOAT, ["batch", LEN])],
        [helper.make_tensor_value_info("hit_probability", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hitgate")
    model.ir_version = 8
    model.doc_string = "frame summary (hitgate features::summary) -> probability that the frame is a hit"
    onnx.checker.check_model(model)
    onnx.save(model, path)


def quantize(float_path, int8_path, calibration):
    """Static int8 quantization calibrated on real training summaries, in the QDQ form.

    Measured in tract 0.23.9 on this model (one frame, one core): QDQ 8 us a frame; QOperator
    (QLinearMatMul) 83 us and dynamic quantization (MatMulInteger) 82 us — tract's integer matrix path
    is an order of magnitude slower here than its float path, which is what it makes of QDQ. The
    second hidden layer's matrix product is quantized; the input's logarithm and standardisation,
    the first layer and the last (a logit spanning tens of units) stay float: on the randomized
    training distribution, quantizing the first layer too flipped 12 of 3000 held-out verdicts at 0.5
    (probabilities up to 0.48 apart), against 5 without it."""
    quantize_qdq(float_path, int8_path, "summary", calibration, ["MatMul"], [f"dense{len(HIDDEN) + 1}.matmul"])


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probabilities(sess, x):
    return sess.run(None, {"summary": x.astype(np.float32)})[0][:, 0]


def evaluate(p, data):
    """Efficiency where the cut keeps 10% and 5% of all frames, beside the spots baseline at the same
    reduction (spot counts spread within one unit, as hitgate's rate control does, so any rate holds)."""
    hit = data["hit"] == 1
    weak = hit & (data["strength"] < 5)
    spots = data["spots_found"] + np.random.default_rng(0).random(len(p))
    out = {"frames": int(len(p)), "hits": int(hit.sum()), "weak_hits": int(weak.sum())}
    for keep in (0.10, 0.05):
        cut, spots_cut = np.quantile(p, 1 - keep), np.quantile(spots, 1 - keep)
        out[f"keep_{round(keep * 100)}pct"] = {
            "cut": float(cut),
            "efficiency": float((p[hit] >= cut).mean()),
            "weak_hit_efficiency": float((p[weak] >= cut).mean()) if weak.any() else None,
            "spots_baseline_efficiency": float((spots[hit] >= spots_cut).mean()),
            "spots_baseline_weak_hit_efficiency": float((spots[weak] >= spots_cut).mean()) if weak.any() else None,
        }
    return out


def golden(sess, data, path, tolerance, count=32):
    """Summaries spread over hits and misses, weak to strong."""
    order = np.argsort(data["strength"] + data["hit"])
    pick = order[np.linspace(0, len(order) - 1, count).astype(int)]
    write_golden(sess, "summary", data["summaries"][pick], path, tolerance)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, nargs="+", help="one or more hitgate dataset frames folders")
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data, test_data = load_all(args.train), load(args.test)
    assert train_data["summaries"].shape[1] == LEN, "summary length differs from hitgate's"
    print(f"training on {len(train_data['hit'])} frames, testing on {len(test_data['hit'])}")
    norm = standardiser(train_data["summaries"])
    t0 = time.time()
    params = train(train_data, norm, args.epochs, args.seed)
    train_s = time.time() - t0
    float_path, int8_path = out / "hit_classifier.onnx", out / "hit_classifier.int8.onnx"
    to_onnx(params, norm, float_path)
    quantize(float_path, int8_path, train_data["summaries"].astype(np.float32))
    fsess, qsess = session(float_path), session(int8_path)
    jax_p = np.asarray(jax.nn.sigmoid(logits(params, norm, jnp.asarray(test_data["summaries"]))))
    float_p = probabilities(fsess, test_data["summaries"])
    int8_p = probabilities(qsess, test_data["summaries"])
    agreement = float(np.abs(jax_p - float_p).max())
    assert agreement < 1e-4, f"ONNX graph differs from the trained network by {agreement}"
    golden(fsess, test_data, out / "hit_classifier.golden.json", 1e-4)
    golden(qsess, test_data, out / "hit_classifier.int8.golden.json", 1e-2)
    metrics = {
        "train_frames": int(len(train_data["hit"])),
        "train_marginal_hits_left_out": train_data["marginal_hits_left_out"],
        "test_marginal_hits_left_out": test_data["marginal_hits_left_out"],
        "train_hits": int(train_data["hit"].sum()),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "opset": OPSET,
        "hidden": list(HIDDEN),
        "onnx_vs_jax_max_abs": agreement,
        "int8_vs_float_max_abs": float(np.abs(int8_p - float_p).max()),
        "float": evaluate(float_p, test_data),
        "int8": evaluate(int8_p, test_data),
    }
    (out / "hit_classifier.metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    # The range the training inputs held (`hitgate dataset frames` measured it), beside the models:
    # hitgate reads it to tell when a run's frames are unlike them. Both forms share it.
    ranges = input_ranges(args.train)
    if ranges is not None:
        (out / "hit_classifier.inputs.json").write_text(json.dumps(ranges, indent=2) + "\n")
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
