"""Checks that NeXus files hold the same frames as a reference run's, read the way the X-ray world
reads them (h5py with hdf5plugin).

    python same_frames.py REFERENCE_MASTER MASTER [MASTER ...]

Every frame of the reference (by frame number) must be in exactly one of the other masters, pixel
for pixel, with the same metadata; and they must hold no other frame. Prints a line; exits 1 on the
first difference.
"""
import sys

import h5py
import hdf5plugin  # noqa: F401  (registers filter 32008)
import numpy as np

COLUMNS = ["sequence", "bunch_id", "detector_timestamp", "timestamp", "trigger_score", "audit", "packets_received"]


def frames(master):
    """Frame number -> (pixels, metadata), over every data file the master links."""
    out = {}
    with h5py.File(master, "r") as f:
        data = f["/entry/data"]
        for name in sorted(k for k in data.keys() if k.startswith("frames_")):
            group = data[name]
            numbers = group["frame_number"][()]
            pixels = group["data"]
            meta = {c: group[c][()] for c in COLUMNS}
            for i, n in enumerate(numbers):
                if int(n) in out:
                    sys.exit(f"FAIL frame {n} twice in {master}")
                out[int(n)] = (pixels[i], {c: meta[c][i] for c in COLUMNS})
    return out


reference = frames(sys.argv[1])
found = {}
for master in sys.argv[2:]:
    for n, frame in frames(master).items():
        if n in found:
            sys.exit(f"FAIL frame {n} in two parts")
        found[n] = frame
if sorted(found) != sorted(reference):
    sys.exit(f"FAIL frames {sorted(found)} instead of {sorted(reference)}")
for n, (pixels, meta) in reference.items():
    other_pixels, other_meta = found[n]
    if not np.array_equal(pixels, other_pixels):
        sys.exit(f"FAIL frame {n}: pixels differ")
    for c in COLUMNS:
        if meta[c] != other_meta[c]:
            sys.exit(f"FAIL frame {n}: {c} {other_meta[c]} instead of {meta[c]}")
print(f"same {len(reference)} frames in {len(sys.argv) - 2} masters")
