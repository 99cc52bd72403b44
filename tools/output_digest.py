#!/usr/bin/python3
"""Digest of a pipeline's deterministic outputs, to show that a change of the
code (a refactoring) leaves them byte for byte the same.

Usage: tools/output_digest.py DIR [DIR ...] > digest.txt

For every file under the folders, one line "<sha256> <relative path>":
  .h5       the content, not the container: every dataset (name, dtype,
            shape, raw bytes) and attribute (strings decoded), in name order,
            so two files holding the same arrays digest the same whatever
            HDF5 put where;
  .json/.jsonl  the JSON with wall-clock fields (time, seconds, rates, dates)
            dropped;
  .csv/.mat/.jpg/.png/.txt  the bytes.
Other files are listed without a digest, as "-": .html, logs, and .pt
(LibTorch numbers a checkpoint's storages in an order that varies between
runs; the weights themselves are compared through model_best.h5).
The output folder's own path is replaced by "<out>" wherever it appears, so
runs in different folders compare. Two digests are compared with diff.
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np

# Keys whose values are clocks or speeds, not results.
CLOCK_KEYS = {"time", "seconds", "elapsed", "elapsed_s", "wall_s", "created", "date", "started", "finished",
              "images_per_s", "steps_per_s", "records_per_s", "rate", "eta", "duration_s", "step_ms",
              "data_ms", "eval_seconds", "epoch_seconds", "data_wait_fraction", "patches_per_s", "images_per_second", "created_by", "host", "command"}


ROOT = b""


def unroot(b):
    return b.replace(ROOT, b"<out>") if ROOT else b


def h5_digest(path):
    h = hashlib.sha256()

    def attrs(obj):
        for k in sorted(obj.attrs):
            v = obj.attrs[k]
            if isinstance(v, bytes):
                v = v.decode()
            h.update(unroot(f"@{k}={np.asarray(v).dtype.kind}:{v!r}".encode()))

    def visit(name, obj):
        h.update(name.encode())
        attrs(obj)
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            h.update(f"{data.dtype.str}{data.shape}".encode())
            h.update(np.ascontiguousarray(data).tobytes())

    with h5py.File(path, "r") as f:
        attrs(f)
        f.visititems(visit)
    return h.hexdigest()


def strip_clocks(v):
    if isinstance(v, dict):
        return {k: strip_clocks(x) for k, x in v.items() if k not in CLOCK_KEYS}
    if isinstance(v, list):
        return [strip_clocks(x) for x in v]
    if isinstance(v, str):
        return unroot(v.encode()).decode()
    return v


def json_digest(path):
    text = open(path, encoding="utf-8").read()
    if path.endswith(".jsonl"):
        docs = [strip_clocks(json.loads(line)) for line in text.splitlines() if line.strip()]
    else:
        docs = strip_clocks(json.loads(text))
    return hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()


def main(dirs):
    global ROOT
    for d in dirs:
        ROOT = os.path.dirname(os.path.abspath(d)).encode()
        for root, _, files in sorted(os.walk(d)):
            for name in sorted(files):
                p = os.path.join(root, name)
                rel = os.path.relpath(p, os.path.dirname(os.path.abspath(d)))
                if name.endswith(".h5"):
                    digest = h5_digest(p)
                elif name.endswith((".json", ".jsonl")):
                    digest = json_digest(p)
                elif name.endswith((".csv", ".mat", ".jpg", ".png", ".txt")):
                    digest = hashlib.sha256(unroot(open(p, "rb").read())).hexdigest()
                else:
                    digest = "-"
                print(digest, rel)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
