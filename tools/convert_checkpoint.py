#!/usr/bin/python3
"""Converts CSRNet weights between CSRNet-pytorch checkpoints and the HDF5
layout this project reads and writes (see docs/interop.md).

  PyTorch -> here:  convert_checkpoint.py PartAmodel_best.pth.tar model.h5
      A .pth.tar / .pth holding {'state_dict': ...} (as CSRNet-pytorch's
      save_checkpoint writes it) or a bare state_dict. A 'module.' prefix
      (nn.DataParallel) is dropped. Writes one root dataset per state_dict key,
      float32, OIHW, plus the root attribute `backend`.
  here -> PyTorch:  convert_checkpoint.py model_best.h5 model_best.pth.tar
      Writes {'state_dict', 'epoch', 'best_prec1', 'arch'} for CSRNet-pytorch's
      model.load_state_dict(checkpoint['state_dict']).

The direction follows the input's content (HDF5 signature or not). Every
CSRNet tensor must be present with its exact shape; otherwise the error names
the tensor. Needs Debian's python3-torch and python3-h5py.
"""
import argparse
import os
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csrnet_pytorch import WeightsError, checked_state  # noqa: E402

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def fail(path, reason):
    sys.stderr.write(f"convert_checkpoint: error: {path}: {reason}\n")
    sys.exit(1)


def check(path, tensors, backend):
    """Every expected tensor present with its shape; extras are reported and dropped."""
    try:
        state, extra = checked_state(path, tensors, backend)
    except WeightsError as e:
        fail(path, str(e)[len(path) + 2:])
    if extra:
        sys.stderr.write(f"convert_checkpoint: warning: {path}: ignoring {len(extra)} extra entries ({extra[0]}, ...)\n")
    return state


def atomic_target(out):
    """A temporary beside `out`, renamed over it once written."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".tmp-", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    return tmp


def torch_to_h5(src, out, backend):
    try:
        ckpt = torch.load(src, map_location="cpu")
    except Exception as e:  # pickle, zip or version errors: one line
        fail(src, f"not a PyTorch checkpoint ({type(e).__name__}: {e})")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        fail(src, "no state_dict in this file")
    tensors = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        tensors[key[len("module."):] if key.startswith("module.") else key] = value
    tensors = check(src, tensors, backend)
    tmp = atomic_target(out)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in tensors.items():
                f.create_dataset(key, data=value.detach().cpu().float().numpy())
            f.attrs["backend"] = backend
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    best = ckpt.get("best_prec1") if isinstance(ckpt, dict) else None
    print(f"{src} -> {out}: {len(tensors)} tensors (epoch {epoch}, best MAE {best})")


def h5_to_torch(src, out, backend):
    try:
        with h5py.File(src, "r") as f:
            if "backend" in f.attrs:
                b = f.attrs["backend"]
                backend = b.decode() if isinstance(b, bytes) else str(b)
            tensors = {k: torch.from_numpy(np.asarray(f[k], dtype=np.float32)) for k in f.keys()
                       if isinstance(f[k], h5py.Dataset)}
    except OSError as e:
        fail(src, f"cannot read HDF5 ({e})")
    tensors = check(src, tensors, backend)
    tmp = atomic_target(out)
    try:
        torch.save({"state_dict": tensors, "epoch": 0, "best_prec1": None, "arch": f"CSRNet-{backend}"}, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"{src} -> {out}: {len(tensors)} tensors (back end {backend})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help=".pth.tar/.pth checkpoint, or .h5 weights in the original layout")
    ap.add_argument("output", help=".h5 (from a checkpoint) or .pth.tar (from .h5)")
    ap.add_argument("--backend", default="B", choices=["A", "B", "C", "D"],
                    help="back-end variant recorded in the .h5 (the released CSRNet models are B)")
    args = ap.parse_args()
    if not os.path.isfile(args.input):
        fail(args.input, "no such file")
    with open(args.input, "rb") as f:
        is_h5 = f.read(8) == HDF5_SIGNATURE
    (h5_to_torch if is_h5 else torch_to_h5)(args.input, args.output, args.backend)


if __name__ == "__main__":
    main()
