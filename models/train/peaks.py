"""Train hitgate's learned peak localisers and export them as ONNX.

A localiser reads the 11 x 11 photon patch the reducer cuts around a spot and gives the peak's centre
as a (row, column) offset in pixels from the patch's central pixel. It normalises its input itself
(divides by the patch's brightest pixel, at least 1 photon), so it takes photons as the reducer computes
them. Two shapes:

- `--arch cnn`: BraggNN's (Liu et al., IUCrJ 2022): a convolution, a non-local self-attention block,
  two more convolutions and a dense head. The first kernel is 4 x 4 so the attention runs over 8 x 8 = 64
  positions (tract's softmax is vectorised for rows that are a multiple of 4).
- `--arch mlp`: dense layers on the patch's 121 pixels.

Inputs come from `hitgate dataset peaks` (simulated frames calibrated, searched and cut by hitgate's own
code). Training is JAX + optax on the CPU with fixed seeds; the ONNX graph is written node by node with
the `onnx` package from the trained weights, checked against the JAX model through onnxruntime, and
golden vectors (inputs and onnxruntime's outputs) are saved for hitgate's tract correctness test.

    python peaks.py --train DIR --test DIR --out MODELS_DIR --name NAME --arch mlp|cnn [--epochs N] [--seed S]
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

SIDE = 11
STRENGTH_BINS = [(1, 10), (10, 25), (25, 100), (100, 1000), (1000, float("inf"))]
OPSET = 17
# Layer widths: conv1 channels, attention channels, conv2, conv3, dense layers.
C1, CA, C2, C3, D1, D2 = 16, 8, 16, 8, 64, 32
# "cnn": BraggNN's shape (convolutions, optional non-local block, dense head); "mlp": dense layers on
# the patch's pixels.
ARCH = "mlp"
MLP_WIDTHS = (256, 128, 64)
# BraggNN's non-local (self-attention) block after the first convolution.
ATTENTION = True
# First convolution's kernel: 4 makes an 8 x 8 map, 64 positions for the attention (a multiple of 4,
# which tract's vectorised softmax needs; 81 positions ran at a third of the speed).
K1 = 4
M1 = SIDE - K1 + 1


def load(folder):
    d = Path(folder)
    return {k: np.load(d / f"{k}.npy") for k in ("patches", "targets", "centre_of_mass", "photons")}


def init_params(key):
    def conv(key, out_c, in_c, k):
        fan_in = in_c * k * k
        return {
            "w": jax.random.normal(key, (out_c, in_c, k, k)) * np.sqrt(2.0 / fan_in),
            "b": jnp.zeros((out_c,)),
        }

    def dense(key, n_in, n_out, scale=None):
        s = np.sqrt(2.0 / n_in) if scale is None else scale
        return {"w": jax.random.normal(key, (n_in, n_out)) * s, "b": jnp.zeros((n_out,))}

    if ARCH == "mlp":
        widths = (SIDE * SIDE, *MLP_WIDTHS)
        k = jax.random.split(key, len(widths))
        layers = {f"mlp{i + 1}": dense(k[i], a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]))}
        layers["out"] = dense(k[-1], widths[-1], 2, scale=0.01)
        return layers
    k = jax.random.split(key, 10)
    return {
        "conv1": conv(k[0], C1, 1, K1),
        "theta": conv(k[1], CA, C1, 1),
        "phi": conv(k[2], CA, C1, 1),
        "g": conv(k[3], CA, C1, 1),
        "nl_out": conv(k[4], C1, CA, 1),
        "conv2": conv(k[5], C2, C1, 3),
        "conv3": conv(k[6], C3, C2, 3),
        "fc1": dense(k[7], C3 * (M1 - 4) ** 2, D1),
        "fc2": dense(k[8], D1, D2),
        "fc3": dense(k[9], D2, 2, scale=0.01),
    }


def conv2d(p, x):
    y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + p["b"][None, :, None, None]


def forward(params, x):
    """x: [B, 1, 11, 11] photons -> [B, 2] centre offsets (pixels)."""
    peak = jnp.maximum(jnp.max(x, axis=(1, 2, 3), keepdims=True), 1.0)
    x = x / peak
    if ARCH == "mlp":
        h = x.reshape(x.shape[0], -1)
        for i in range(len(MLP_WIDTHS)):
            h = jax.nn.relu(h @ params[f"mlp{i + 1}"]["w"] + params[f"mlp{i + 1}"]["b"])
        return h @ params["out"]["w"] + params["out"]["b"]
    h = jax.nn.relu(conv2d(params["conv1"], x))  # [B, C1, M1, M1]
    b = h.shape[0]
    if ATTENTION:
        h = non_local(params, h)
    h = jax.nn.relu(conv2d(params["conv2"], h))  # [B, C2, M1 - 2, M1 - 2]
    h = jax.nn.relu(conv2d(params["conv3"], h))  # [B, C3, M1 - 4, M1 - 4]
    h = h.reshape(b, -1)
    h = jax.nn.relu(h @ params["fc1"]["w"] + params["fc1"]["b"])
    h = jax.nn.relu(h @ params["fc2"]["w"] + params["fc2"]["b"])
    return h @ params["fc3"]["w"] + params["fc3"]["b"]


def non_local(params, h):
    """BraggNN's non-local block: every position of the feature map attends to every other."""
    b = h.shape[0]
    theta = conv2d(params["theta"], h).reshape(b, CA, M1 * M1)
    phi = conv2d(params["phi"], h).reshape(b, CA, M1 * M1)
    g = conv2d(params["g"], h).reshape(b, CA, M1 * M1)
    attention = jax.nn.softmax(jnp.einsum("bci,bcj->bij", theta, phi), axis=-1)  # [B, P, P]
    y = jnp.einsum("bij,bcj->bci", attention, g).reshape(b, CA, M1, M1)
    return h + conv2d(params["nl_out"], y)


def symmetry(patches, targets, rng):
    """A random symmetry of the square per example: the patch and its target move together."""
    p, t = patches.copy(), targets.copy()
    flip_r = rng.random(len(p)) < 0.5
    p[flip_r] = p[flip_r, ::-1, :]
    t[flip_r, 0] *= -1
    flip_c = rng.random(len(p)) < 0.5
    p[flip_c] = p[flip_c, :, ::-1]
    t[flip_c, 1] *= -1
    swap = rng.random(len(p)) < 0.5
    p[swap] = p[swap].transpose(0, 2, 1)
    t[swap] = t[swap][:, ::-1]
    return p, t


def train(data, epochs, seed, batch=256):
    rng = np.random.default_rng(seed)
    params = init_params(jax.random.PRNGKey(seed))
    n = len(data["targets"])
    steps = epochs * (n // batch)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 2e-3, max(steps // 20, 1), steps, 2e-5)
    opt = optax.adamw(schedule, weight_decay=1e-4)
    state = opt.init(params)

    def loss_fn(params, x, y):
        return jnp.mean(jnp.sum((forward(params, x) - y) ** 2, axis=-1))

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    for epoch in range(epochs):
        order = rng.permutation(n)
        t0, losses = time.time(), []
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            p, t = symmetry(data["patches"][idx], data["targets"][idx], rng)
            params, state, loss = step(params, state, jnp.asarray(p[:, None]), jnp.asarray(t))
            losses.append(float(loss))
        print(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f} ({time.time() - t0:.1f} s)", flush=True)
    return params


def predict(fn, patches, batch=1024):
    return np.concatenate([np.asarray(fn(patches[i : i + batch, None])) for i in range(0, len(patches), batch)])


def error_table(pred, data):
    """Median and 95th percentile of the centre error (pixels) per strength bin, model and centre of mass."""
    model_err = np.hypot(*(pred - data["targets"]).T)
    com_err = np.hypot(*(data["centre_of_mass"] - data["targets"]).T)
    rows = []
    for lo, hi in STRENGTH_BINS:
        m = (data["photons"] >= lo) & (data["photons"] < hi)
        if m.sum() == 0:
            continue
        q = lambda e: [round(float(np.median(e[m])), 3), round(float(np.percentile(e[m], 95)), 3)]
        rows.append({"photons": [lo, hi if np.isfinite(hi) else None], "spots": int(m.sum()),
                     "model_px": q(model_err), "centre_of_mass_px": q(com_err)})
    return rows


def to_onnx(params, path):
    """The same network as `forward`, node by node, batch left symbolic."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), params)
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(x, layer, name):
        w = const(f"{layer}.weight", p[layer]["w"])
        b = const(f"{layer}.bias", p[layer]["b"])
        return node("Conv", [x, w, b], name)

    peak = node("ReduceMax", ["patch"], "peak", axes=[1, 2, 3], keepdims=1)
    peak = node("Max", [peak, const("one", np.array(1.0, np.float32))], "peak_at_least_one")
    x = node("Div", ["patch", peak], "normalised")
    if ARCH == "mlp":
        h = node("Flatten", [x], "pixels", axis=1)
        layers = [f"mlp{i + 1}" for i in range(len(MLP_WIDTHS))] + ["out"]
        for layer in layers:
            w = const(f"{layer}.weight", p[layer]["w"])
            b = const(f"{layer}.bias", p[layer]["b"])
            h = node("Gemm", [h, w, b], layer if layer != "out" else "centre")
            if layer != "out":
                h = node("Relu", [h], f"{layer}_relu")
        return finish(nodes, inits, path)
    h = node("Relu", [conv(x, "conv1", "conv1")], "relu1")
    if ATTENTION:
        flat = const("attention_shape", np.array([0, CA, M1 * M1], np.int64))
        theta = node("Reshape", [conv(h, "theta", "theta"), flat], "theta_flat")
        phi = node("Reshape", [conv(h, "phi", "phi"), flat], "phi_flat")
        g = node("Reshape", [conv(h, "g", "g"), flat], "g_flat")
        theta_t = node("Transpose", [theta], "theta_t", perm=[0, 2, 1])  # [B, P, CA]
        logits = node("MatMul", [theta_t, phi], "attention_logits")  # [B, P, P]
        attention = node("Softmax", [logits], "attention", axis=-1)
        g_t = node("Transpose", [g], "g_t", perm=[0, 2, 1])  # [B, P, CA]
        y = node("MatMul", [attention, g_t], "attended")  # [B, P, CA]
        y = node("Transpose", [y], "attended_t", perm=[0, 2, 1])
        y = node("Reshape", [y, const("attended_shape", np.array([0, CA, M1, M1], np.int64))], "attended_map")
        h = node("Add", [h, conv(y, "nl_out", "nl_out")], "non_local")
    h = node("Relu", [conv(h, "conv2", "conv2")], "relu2")
    h = node("Relu", [conv(h, "conv3", "conv3")], "relu3")
    h = node("Flatten", [h], "flat", axis=1)
    for i, layer in enumerate(["fc1", "fc2", "fc3"]):
        w = const(f"{layer}.weight", p[layer]["w"])
        b = const(f"{layer}.bias", p[layer]["b"])
        h = node("Gemm", [h, w, b], layer if i < 2 else "centre")
        if i < 2:
            h = node("Relu", [h], f"{layer}_relu")
    finish(nodes, inits, path)


def finish(nodes, inits, path):
    graph = helper.make_graph(
        nodes,
        "peak_localiser",
        [helper.make_tensor_value_info("patch", TensorProto.FLOAT, ["batch", 1, SIDE, SIDE])],
        [helper.make_tensor_value_info("centre", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hitgate")
    model.ir_version = 8
    model.doc_string = ("11x11 photon patch -> peak centre (row, column) offset in pixels from the patch's "
                        "central pixel")
    onnx.checker.check_model(model)
    onnx.save(model, path)


def quantize(float_path, int8_path, calibration):
    """Static int8 quantization (QDQ form, the one tract runs at float speed) of the convolutions and
    dense layers but the last, calibrated on real training patches. The attention's products of two
    activations stay float: quantized, tract 0.23.9 computed BraggNN up to 0.44 px away from both
    onnxruntime's int8 result and the float model (which agree within 0.04 px); without them tract and
    onnxruntime agree within 0.011 px."""
    quantize_qdq(float_path, int8_path, "patch", calibration, ["Conv", "Gemm"], ["centre"])


def golden(session, data, path, count=32, tolerance=1e-4):
    """Patches spread over spot strength."""
    order = np.argsort(data["photons"])
    pick = order[np.linspace(0, len(order) - 1, count).astype(int)]
    # Rounded as the file stores them, so the outputs belong to exactly the inputs written.
    write_golden(session, "patch", np.round(data["patches"][pick][:, None], 6), path, tolerance)


def main():
    global ARCH, ATTENTION, K1, M1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--name", default="peak_localiser", help="file stem of the model, metrics and golden vectors")
    ap.add_argument("--arch", choices=["cnn", "mlp"], default=ARCH, help="network shape (default: %(default)s)")
    ap.add_argument("--attention", choices=["on", "off"], default="on" if ATTENTION else "off",
                    help="the non-local block (default: %(default)s)")
    ap.add_argument("--first-kernel", type=int, default=K1, help="first convolution's kernel (default: %(default)s)")
    args = ap.parse_args()
    ARCH, ATTENTION, K1 = args.arch, args.attention == "on", args.first_kernel
    M1 = SIDE - K1 + 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data, test_data = load(args.train), load(args.test)
    print(f"training on {len(train_data['targets'])} patches, testing on {len(test_data['targets'])}")
    t0 = time.time()
    params = train(train_data, args.epochs, args.seed)
    train_s = time.time() - t0
    model_path = out / f"{args.name}.onnx"
    to_onnx(params, model_path)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    jitted = jax.jit(forward)
    jax_pred = predict(lambda x: jitted(params, x), test_data["patches"])
    ort_pred = predict(lambda x: session.run(None, {"patch": np.asarray(x, np.float32)})[0], test_data["patches"])
    agreement = float(np.abs(jax_pred - ort_pred).max())
    assert agreement < 1e-4, f"ONNX graph differs from the trained network by {agreement}"
    table = error_table(ort_pred, test_data)
    golden(session, test_data, out / f"{args.name}.golden.json")
    int8_path = out / f"{args.name}.int8.onnx"
    quantize(model_path, int8_path, train_data["patches"][:1024, None].astype(np.float32))
    int8_session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    int8_pred = predict(lambda x: int8_session.run(None, {"patch": np.asarray(x, np.float32)})[0], test_data["patches"])
    # tract runs the QDQ graph in float with the same rounding points; onnxruntime uses integer kernels.
    golden(int8_session, test_data, out / f"{args.name}.int8.golden.json", tolerance=0.05)
    metrics = {
        "train_patches": int(len(train_data["targets"])),
        "test_patches": int(len(test_data["targets"])),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "onnx_vs_jax_max_abs_px": agreement,
        "opset": OPSET,
        "arch": ARCH,
        **({"attention": ATTENTION, "first_kernel": K1} if ARCH == "cnn" else {"widths": list(MLP_WIDTHS)}),
        "error_by_strength": table,
        "int8": {
            "vs_float_max_abs_px": float(np.abs(int8_pred - ort_pred).max()),
            "error_by_strength": error_table(int8_pred, test_data),
        },
    }
    (out / f"{args.name}.metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
