#!/usr/bin/python3
"""Exports CSRNet weights to ONNX for `predict --engine onnx` (OpenCV's DNN module,
no LibTorch) and for any ONNX runtime. See docs/interop.md.

    /usr/bin/python3 tools/export_onnx.py runs/x/model_best.h5 model.onnx
    /usr/bin/python3 tools/export_onnx.py runs/x/model_best.pt model.onnx
    /usr/bin/python3 tools/export_onnx.py PartAmodel_best.pth.tar model.onnx --backend B

WEIGHTS is detected from its content:
  - an .h5 in the original layout (the trainer's model_best.h5, convert_checkpoint.py's
    output); the back end is its `backend` attribute (B when absent);
  - this project's LibTorch .pt (model_best.pt or checkpoint.pt), read with
    torch.jit.load; the back end is the one it records;
  - a CSRNet-pytorch checkpoint (.pth.tar with 'state_dict', or a bare state dict);
    the back end is --backend.
The graph takes `image` (1 x 3 x H x W float32, ImageNet-normalised RGB, H and W free)
and gives `density` (1 x 1 x H/8 x W/8; its sum is the count). The opset is 13 unless
--opset says otherwise (OpenCV 4.6 reads 7..13 well). The model is checked with the
onnx package's checker and written atomically; its metadata records the back end and
the source file. Needs Debian's python3-torch, python3-h5py and python3-onnx.
"""
import argparse
import inspect
import os
import sys
import tempfile
import warnings
import zipfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csrnet_pytorch import DILATIONS, CSRNet, WeightsError, checked_state  # noqa: E402

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DEFAULT_OPSET = 13


def fail(path, reason):
    sys.stderr.write(f"export_onnx: error: {path}: {reason}\n")
    sys.exit(1)


def read_h5(path):
    """(tensors, back end) of an .h5 in the original layout."""
    try:
        with h5py.File(path, "r") as f:
            backend = f.attrs.get("backend", "B")
            backend = backend.decode() if isinstance(backend, bytes) else str(backend)
            tensors = {k: torch.from_numpy(np.asarray(f[k], dtype=np.float32)) for k in f.keys()
                       if isinstance(f[k], h5py.Dataset)}
    except OSError as e:
        fail(path, f"cannot read HDF5 ({e})")
    return tensors, backend


def read_libtorch(path):
    """(tensors, back end) of this project's .pt, or None when it is not one."""
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception:  # not a LibTorch archive (a CSRNet-pytorch zip checkpoint, say)
        return None
    if module._c.hasattr("batch_norm") and module._c.getattr("batch_norm"):
        fail(path, "holds a trainer --batch-norm network with its running statistics: export the run's "
             "model_best.pt or model_best.h5, which hold it folded into the convolutions")
    tensors = {}
    for name, value in module.named_parameters():
        if name.startswith("model."):
            tensors[name[len("model."):]] = value.detach()
    if not tensors:
        return None
    backend = module._c.getattr("backend") if module._c.hasattr("backend") else None
    if backend is None and module._c.hasattr("model") and module.model._c.hasattr("backend"):
        backend = module.model._c.getattr("backend")
    return tensors, str(backend) if backend is not None else None


def read_checkpoint(path):
    """Tensors of a CSRNet-pytorch .pth.tar / .pth (a 'module.' prefix dropped)."""
    try:
        ckpt = torch.load(path, map_location="cpu")
    except Exception as e:  # pickle, zip or version errors: one line
        fail(path, f"not CSRNet weights (.h5, .pt or a PyTorch checkpoint): {type(e).__name__}: {e}")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        fail(path, "no state_dict in this file")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items() if torch.is_tensor(v)}


def load_model(path, backend_arg):
    """The CSRNet of `path`, its back end, and what kind of file it was."""
    with open(path, "rb") as f:
        head = f.read(8)
    recorded, kind = None, "CSRNet-pytorch checkpoint"
    if head == HDF5_SIGNATURE:
        tensors, recorded = read_h5(path)
        kind = "HDF5 (original layout)"
    else:
        got = read_libtorch(path) if zipfile.is_zipfile(path) else None
        if got is not None:
            tensors, recorded = got
            kind = "LibTorch .pt"
        else:
            tensors = read_checkpoint(path)
    if recorded is not None and recorded not in DILATIONS:
        fail(path, f"records an unknown back end '{recorded}' (expected A, B, C or D)")
    if recorded is not None and backend_arg is not None and backend_arg != recorded:
        fail(path, f"holds back end {recorded} weights, not {backend_arg} (drop --backend)")
    backend = recorded or backend_arg or "B"
    try:
        state, _ = checked_state(path, tensors, backend)
    except WeightsError as e:
        fail(path, str(e)[len(path) + 2:])
    for key, value in state.items():
        if not torch.isfinite(value).all():
            fail(path, f"tensor '{key}' is not finite (NaN or Inf)")
    model = CSRNet(backend)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval(), backend, kind


def legacy_exporter():
    """torch.onnx.export's keyword for the TorchScript-based exporter: 2.9 made
    the torch.export-based one (which needs onnxscript) the default; 1.13 has
    only the former and no such keyword."""
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX")
        return {"dynamo": False}
    return {}


def export(model, backend, source, out, opset):
    import onnx  # python3-onnx

    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".tmp-", suffix=".onnx",
                               dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(model, torch.zeros(1, 3, 64, 64), tmp, opset_version=opset,
                              input_names=["image"], output_names=["density"],
                              dynamic_axes={"image": {2: "height", 3: "width"},
                                            "density": {2: "height_8", 3: "width_8"}},
                              do_constant_folding=True, **legacy_exporter())
        proto = onnx.load(tmp)
        for key, value in (("csrnet_backend", backend), ("csrnet_source", os.path.basename(source)),
                           ("csrnet_input", "1x3xHxW float32 RGB, (x/255 - mean) / std, ImageNet statistics"),
                           ("csrnet_output", "1x1xfloor(H/8)xfloor(W/8) density; its sum is the count")):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "csrnet-cpp tools/export_onnx.py"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return proto


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help=".h5 (original layout), this project's .pt, or a CSRNet-pytorch .pth.tar")
    ap.add_argument("out", help="the .onnx file to write")
    ap.add_argument("--backend", choices=sorted(DILATIONS), default=None,
                    help="back end of a CSRNet-pytorch checkpoint (default B; .h5 and .pt files record their own)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    args = ap.parse_args()
    if not os.path.isfile(args.weights):
        fail(args.weights, "no such file")
    if not 7 <= args.opset <= 17:
        fail(args.out, f"--opset {args.opset}: this exporter writes opsets 7..17")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        fail(args.out, "its folder does not exist or is not writable")
    try:
        import onnx  # noqa: F401
    except ImportError:
        fail(args.out, "the onnx package is missing (apt-get install python3-onnx)")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model, backend, kind = load_model(args.weights, args.backend)
    proto = export(model, backend, args.weights, args.out, args.opset)
    convs = sum(1 for n in proto.graph.node if n.op_type == "Conv")
    print(f"{args.weights} ({kind}, CSRNet-{backend}) -> {args.out}: opset {args.opset}, {convs} convolutions, "
          f"input image [1,3,H,W], output density [1,1,H/8,W/8], {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
