"""Reads hitgate's NeXus/HDF5 output the way the X-ray world does (h5py with hdf5plugin) and checks it
against what the run kept.

    python nexus_check.py MASTER EXPECTED MODE [--killed]

MASTER is `<prefix>_master.h5`. EXPECTED is a folder with `frames.bin` (the kept frames back to back,
as the data set must hold them: u16 raw values, u32 or f32 photons), `shape.txt` (`N ROWS COLS DTYPE`)
and `meta.json` (per kept frame: frame_number, score, audit; the detector's pixel size, distance,
wavelength, beam centre, modules). MODE is `whole` (the run ended: every frame must be there) or
`killed` (the run was killed: the linked files must be whole and equal to the first frames expected;
the open file must be marked `.partial`, and if h5py can read it, what it reads must be right).

Prints one line per check; exits non-zero on the first failure.
"""
import json
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers filter 32008)
import numpy as np

master_path, expected_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
n, rows, cols, dtype = (expected_dir / "shape.txt").read_text().split()
n, rows, cols = int(n), int(rows), int(cols)
expected = np.fromfile(expected_dir / "frames.bin", dtype=dtype).reshape(n, rows, cols)
meta = json.loads((expected_dir / "meta.json").read_text())


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def ok(msg):
    print("ok  ", msg)


def text(ds):
    v = ds[()]
    return v.decode() if isinstance(v, bytes) else str(v)


m = h5py.File(master_path, "r")
entry = m["/entry"]
if entry.attrs["NX_class"] != "NXentry" or text(entry["definition"]) != "NXmx":
    fail("/entry is not an NXmx NXentry")
for path, cls in [("/entry/data", "NXdata"), ("/entry/instrument", "NXinstrument"),
                  ("/entry/instrument/beam", "NXbeam"), ("/entry/instrument/detector", "NXdetector"),
                  ("/entry/instrument/detector/transformations", "NXtransformations"),
                  ("/entry/sample", "NXsample")]:
    if m[path].attrs.get("NX_class") != cls:
        fail(f"{path} is not {cls}")
ok("NXmx classes: entry, data, instrument, beam, detector, transformations, sample")

det = m["/entry/instrument/detector"]
# Whole photons mark a pixel flagged in its frame as 2**32 - 1, one above the trusted range.
photons_u32 = dtype == "<u4" and "photons" in text(det["pixel_content"])
if photons_u32 != ("saturation_value" in det):
    fail(f"saturation_value {'missing' if photons_u32 else 'given'} for {dtype} {text(det['pixel_content'])}")
if photons_u32:
    if int(det["saturation_value"][()]) != 2**32 - 2 or int(det["underload_value"][()]) != -1:
        fail(f"trusted range {det['underload_value'][()]}..{det['saturation_value'][()]}")
    ok("flagged pixels: stored as 4294967295, above saturation_value 4294967294")
checks = [
    (det["x_pixel_size"][()], meta["pixel_size_m"], "x_pixel_size"),
    (det["y_pixel_size"][()], meta["pixel_size_m"], "y_pixel_size"),
    (det["distance"][()], meta["distance_m"], "distance"),
    (m["/entry/instrument/beam/incident_wavelength"][()], meta["wavelength_angstrom"], "incident_wavelength"),
    (det["beam_center_x"][()], meta["beam_center_col_px"], "beam_center_x"),
    (det["beam_center_y"][()], meta["beam_center_row_px"], "beam_center_y"),
]
for got, want, name in checks:
    if abs(got - want) > 1e-9 * max(1.0, abs(want)):
        fail(f"{name}: {got}, expected {want}")
if det["x_pixel_size"].attrs["units"] != "m" or det["distance"].attrs["units"] != "m":
    fail("lengths are not in metres")
ok("geometry: pixel size, distance, wavelength, beam centre as configured, with units")

# Every transformation chain ends at ".", and each module covers its rows of the data.
for k in range(meta["modules"]):
    mod = det[f"module_{k + 1:02d}"]
    if mod.attrs["NX_class"] != "NXdetector_module":
        fail(f"module_{k + 1:02d} class")
    if list(mod["data_origin"][()]) != [k * meta["module_rows"], 0] or list(mod["data_size"][()]) != [meta["module_rows"], cols]:
        fail(f"module_{k + 1:02d}: origin {mod['data_origin'][()]}, size {mod['data_size'][()]}")
    node, seen = mod["fast_pixel_direction"], 0
    while True:
        dep = node.attrs["depends_on"]
        dep = dep.decode() if isinstance(dep, bytes) else dep
        if dep == ".":
            break
        node, seen = m[dep], seen + 1
        if seen > 10:
            fail("a depends_on chain does not end")
    # The beam centre pixel of the assembled image sits on the beam axis (x = y = 0).
    off = mod["module_offset"]
    origin = off[()] * off.attrs["vector"]
    px = meta["pixel_size_m"]
    row0, col0 = meta["module_origins"][k]
    at_centre = origin + np.array([-1, 0, 0]) * px * (meta["beam_center_col_px"] - col0) \
        + np.array([0, -1, 0]) * px * (meta["beam_center_row_px"] - row0)
    if np.abs(at_centre[:2]).max() > 1e-12:
        fail(f"module_{k + 1:02d}: the beam centre lands at {at_centre}, not on the beam")
ok(f"{meta['modules']} NXdetector_module(s): data_origin/data_size, depends_on chains end at '.', beam centre on the axis")

data = m["/entry/data"]
links = sorted(k for k in data if k.startswith("data_"))
files = [data.get(k, getlink=True) for k in links]
if not all(isinstance(link, h5py.ExternalLink) for link in files):
    fail("data_NNNNNN are not external links")
frames = []
scores, numbers, audits = [], [], []
for k, link in zip(links, files):
    ds = data[k]
    if ds.chunks != (1, rows, cols):
        fail(f"{k}: chunks {ds.chunks}")
    filters = ds._filters
    if "32008" not in filters or tuple(filters["32008"])[2] != np.dtype(dtype).itemsize or tuple(filters["32008"])[4] != 2:
        fail(f"{k}: filters {filters}")
    if ds.dtype != np.dtype(dtype):
        fail(f"{k}: dtype {ds.dtype}, expected {dtype}")
    frames.append(ds[...])
    info = data[f"frames_{k[5:]}"]
    numbers += list(info["frame_number"][()])
    scores += list(info["trigger_score"][()])
    audits += list(info["audit"][()])
    if info["packet_mask"].shape[0] != ds.shape[0] or info["timestamp"].shape[0] != ds.shape[0]:
        fail(f"{k}: per-frame metadata does not cover every frame")
    lo, hi = ds.attrs["image_nr_low"], ds.attrs["image_nr_high"]
    if hi - lo + 1 != ds.shape[0]:
        fail(f"{k}: image_nr {lo}..{hi} for {ds.shape[0]} frames")
got = np.concatenate(frames) if frames else np.zeros((0, rows, cols), dtype)
ok(f"{len(links)} data files linked, {got.shape[0]} frames, chunks (1, {rows}, {cols}), bitshuffle-LZ4 (32008)")

# What a reader that opens `data` alone sees: one virtual data set over every linked file, in order.
if got.shape[0] > 0:
    if "data" not in data or not data["data"].is_virtual:
        fail("/entry/data/data is not a virtual data set over the files")
    whole = data["data"]
    if whole.dtype != np.dtype(dtype) or not np.array_equal(whole[...], got):
        fail(f"/entry/data/data ({whole.shape}, {whole.dtype}) is not the linked files' frames in order")
    sources = sorted({v.file_name for v in whole.virtual_sources()})
    if sources != sorted(m["/entry/data"].get(k, getlink=True).filename for k in links):
        fail(f"/entry/data/data maps {sources}, not the linked files")
    ok(f"/entry/data/data: a virtual data set of {whole.shape[0]} frames over {len(sources)} files, equal to the links")
elif "data" in data:
    fail("/entry/data/data exists with no closed file")

run_complete = int(entry["run_complete"][()])
if mode == "whole":
    if got.shape[0] != n or int(data["frames"][()]) != n:
        fail(f"{got.shape[0]} frames in the files, {n} kept")
    if run_complete != 1 or "end_time" not in entry:
        fail("the run ended but the master does not say it is complete")
    leftovers = list(master_path.parent.glob("*.partial"))
    if leftovers:
        fail(f"files left open: {leftovers}")
else:
    if got.shape[0] == 0 or got.shape[0] > n:
        fail(f"{got.shape[0]} frames in the closed files (of {n} in the whole run)")
    if run_complete != 0 or "end_time" in entry:
        fail("a killed run's master says it is complete")
if not np.array_equal(got, expected[: got.shape[0]]):
    bad = [i for i in range(got.shape[0]) if not np.array_equal(got[i], expected[i])]
    fail(f"frames differ from what was kept: {bad[:10]}")
want = meta["frames"][: got.shape[0]]
if numbers != [f["frame_number"] for f in want]:
    fail(f"frame numbers {numbers[:10]}, expected {[f['frame_number'] for f in want][:10]}")
if any("score" in f and abs(a - f["score"]) > 1e-6 for a, f in zip(scores, want)) or [bool(a) for a in audits] != [f["audit"] for f in want]:
    fail("trigger scores or audit flags differ")
ok(f"all {got.shape[0]} frames byte for byte as kept; frame numbers, scores, audit flags match")

if mode == "killed":
    partial = sorted(master_path.parent.glob("*.partial"))
    if len(partial) != 1:
        fail(f"expected the one open file marked .partial, found {partial}")
    try:
        with h5py.File(partial[0], "r") as f:
            flushed = f["/entry/data/frame_number"].shape[0] if "frame_number" in f["/entry/data"] else 0
            part = f["/entry/data/data"][:flushed]
            start = got.shape[0]
            if not np.array_equal(part, expected[start:start + flushed]):
                fail(f"{partial[0].name} opens but its {flushed} flushed frames are wrong")
            ok(f"{partial[0].name}: marked incomplete, readable up to its last flush ({flushed} frames, right)")
    except Exception as e:  # noqa: BLE001  (any failure to read a cut-short file is acceptable)
        ok(f"{partial[0].name}: marked incomplete; HDF5 cannot open it ({str(e)[:60]})")
