"""Cross-checks hitgate's bitshuffle-LZ4 chunks with the filter the X-ray world reads them with
(HDF5 filter 32008 from hdf5plugin, through h5py).

    python bitshuffle_check.py DIR

DIR holds `frames.u16` (N frames of ROWS x COLS little-endian u16, shape in `shape.txt`) and
`chunk-K.bin`, hitgate's compressed chunk of frame K. The chunks are written as they are into an HDF5
dataset declared with the filter; h5py must read every frame back equal to the original. Then h5py
compresses the same frames with the filter itself and writes the raw chunks to `reference-K.bin`, for
hitgate to decompress. Prints one line per check; exits non-zero on a mismatch.
"""
import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

d = Path(sys.argv[1])
n, rows, cols = (int(v) for v in (d / "shape.txt").read_text().split())
frames = np.fromfile(d / "frames.u16", dtype="<u2").reshape(n, rows, cols)
with h5py.File(d / "ours.h5", "w") as f:
    ds = f.create_dataset("data", shape=(n, rows, cols), dtype="<u2", chunks=(1, rows, cols),
                          **hdf5plugin.Bitshuffle(cname="lz4"))
    for k in range(n):
        ds.id.write_direct_chunk((k, 0, 0), (d / f"chunk-{k}.bin").read_bytes())
with h5py.File(d / "ours.h5", "r") as f:
    back = f["data"][...]
bad = [k for k in range(n) if not np.array_equal(back[k], frames[k])]
if bad:
    print(f"h5py + hdf5plugin read hitgate's chunks differently for frames {bad}")
    sys.exit(1)
print(f"h5py + hdf5plugin read all {n} of hitgate's chunks back equal")
with h5py.File(d / "theirs.h5", "w") as f:
    ds = f.create_dataset("data", data=frames, chunks=(1, rows, cols), **hdf5plugin.Bitshuffle(cname="lz4"))
with h5py.File(d / "theirs.h5", "r") as f:
    for k in range(n):
        _, chunk = f["data"].id.read_direct_chunk((k, 0, 0))
        (d / f"reference-{k}.bin").write_bytes(chunk)
print(f"wrote {n} reference chunks compressed by hdf5plugin")
