"""Reads a hitgate live stream the way DECTRIS Stream V2 consumers do: a ZeroMQ PULL socket (pyzmq),
CBOR messages decoded by cbor2 with the DECTRIS compression tag (56500) undone by dectris-compression,
RFC 8746 typed arrays (tags 64/69/70/85) and multi-dimensional arrays (tag 40) made into numpy arrays.

    python stream2_consumer.py ENDPOINT OUT_DIR TIMEOUT_S

Connects to ENDPOINT, reads messages until the `end` message (or TIMEOUT_S without one), and writes
to OUT_DIR: `image-<image_id>.npy` for every image, and `messages.json` — the start message's fields,
each image's id, shape, dtype and user data, and the end message. Exits non-zero on a message it
cannot read or on no `end` in time.
"""
import datetime
import json
import sys
from pathlib import Path

import cbor2
import numpy as np
import zmq
from dectris.compression import decompress

TYPED_ARRAYS = {64: "u1", 69: "<u2", 70: "<u4", 85: "<f4"}


def tag_hook(*args):
    # cbor2 before 6 passes (decoder, tag); 6 passes (tag, immutable).
    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
    if tag.tag == 56500:
        algorithm, elem_size, encoded = tag.value
        return decompress(encoded, algorithm, elem_size=elem_size)
    if tag.tag in TYPED_ARRAYS:
        return np.frombuffer(tag.value, dtype=TYPED_ARRAYS[tag.tag])
    if tag.tag == 40:
        dimensions, contents = tag.value
        return contents.reshape(dimensions)
    return tag


def plain(value):
    """What json can write of a decoded value."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": value.dtype.str}
    return value


def main():
    endpoint, out, timeout_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    socket = zmq.Context().socket(zmq.PULL)
    socket.connect(endpoint)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    seen = {"start": None, "images": [], "end": None}
    while True:
        if not poller.poll(timeout_s * 1000):
            print(f"no end message within {timeout_s} s", file=sys.stderr)
            break
        message = cbor2.loads(socket.recv(), tag_hook=tag_hook)
        kind = message["type"]
        if kind == "start":
            seen["start"] = plain(message)
        elif kind == "image":
            image = message["data"]["threshold_1"]
            np.save(out / f"image-{message['image_id']}.npy", image)
            seen["images"].append(
                {
                    "image_id": message["image_id"],
                    "series_unique_id": message["series_unique_id"],
                    "shape": list(image.shape),
                    "dtype": image.dtype.str,
                    "start_time": message["start_time"],
                    "user_data": plain(message["user_data"]),
                }
            )
        elif kind == "end":
            seen["end"] = plain(message)
            break
        else:
            print(f"unknown message type {kind!r}", file=sys.stderr)
            sys.exit(2)
    (out / "messages.json").write_text(json.dumps(seen))
    print(f"{len(seen['images'])} images")
    sys.exit(0 if seen["end"] is not None else 1)


if __name__ == "__main__":
    main()
