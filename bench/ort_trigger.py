"""onnxruntime's time for the hit classifier on the same inputs as hitgate's tract benchmark.

    python bench/ort_trigger.py MODEL.onnx INPUTS.npy ROUNDS

One thread, one frame per run (as hitgate runs it); prints one line: p50 and p99 in microseconds.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model, inputs, rounds = sys.argv[1], np.load(sys.argv[2]).astype(np.float32), int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
rows = [inputs[i : i + 1] for i in range(len(inputs))]
for row in rows[:200]:
    session.run(None, {name: row})
times = []
for _ in range(rounds):
    for row in rows:
        t0 = time.perf_counter_ns()
        session.run(None, {name: row})
        times.append(time.perf_counter_ns() - t0)
times = np.array(times) / 1000.0
print(f"{np.percentile(times, 50):.2f} {np.percentile(times, 99):.2f} onnxruntime {ort.__version__}")
