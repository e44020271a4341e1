"""What the training scripts share once a network is exported: static int8 quantization in the form
tract runs fast, and golden vectors for hitgate's correctness gate."""

import json
from pathlib import Path

import numpy as np
import onnx


def quantize_qdq(float_path, int8_path, input_name, calibration, op_types, exclude):
    """Static int8 quantization (QDQ form, int8 activations and weights, per tensor), calibrated on
    `calibration` (real training inputs), of the `op_types` nodes but those named in `exclude`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calibration[i : i + 64]} for i in range(0, len(calibration), 64)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(float_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types),
        nodes_to_exclude=list(exclude),
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=False,
    )
    # The quantizer records every intermediate tensor's shape with the symbolic batch; runtimes that
    # fix the batch (tract) then cannot unify the two. The shapes are hints, not part of the model.
    model = onnx.load(str(int8_path))
    del model.graph.value_info[:]
    onnx.save(model, str(int8_path))


def write_golden(session, input_name, x, path, tolerance):
    """onnxruntime's outputs on `x`, with `x` as stored (so the outputs belong to exactly it)."""
    x = x.astype(np.float32)
    y = session.run(None, {input_name: x})[0]
    Path(path).write_text(json.dumps({
        "input_shape": list(x.shape),
        "inputs": [float(v) for v in x.ravel()],
        "outputs": [float(v) for v in y.ravel()],
        "tolerance": tolerance,
    }))
