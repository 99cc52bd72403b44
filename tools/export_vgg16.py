#!/usr/bin/python3
"""Writes the ImageNet VGG-16 front end for `trainer --vgg16 FILE`.

CSRNet's front end is the first ten convolutions of VGG-16, initialised from
ImageNet weights as in the paper. This writes torchvision's VGG-16 `features`
tensors to HDF5, one root dataset per state-dict key (`features.0.weight` ...
`features.28.bias`, float32, OIHW); the trainer reads features.0 ... features.21.

  # torchvision downloads the weights (needs the internet once):
  /usr/bin/python3 tools/export_vgg16.py --out vgg16.h5
  # or from a torchvision checkpoint you already have (no torchvision needed):
  /usr/bin/python3 tools/export_vgg16.py --weights vgg16-397923af.pth --out vgg16.h5

Needs Debian's python3-torch and python3-h5py, plus python3-torchvision when
--weights is not given.
"""
import argparse
import os
import sys
import tempfile

import h5py
import numpy as np
import torch

# The ten convolutions CSRNet takes, by their index in VGG-16's `features`.
CSRNET_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
CSRNET_SHAPES = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
                 14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512)}


def fail(path, reason):
    sys.stderr.write(f"export_vgg16: error: {path}: {reason}\n")
    sys.exit(1)


def load_state_dict(path):
    if path:
        try:
            state = torch.load(path, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - any load failure is the file's fault
            fail(path, f"cannot read as a PyTorch checkpoint: {e}")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            fail(path, "not a state_dict")
        return path, state
    try:
        import torchvision
    except ImportError:
        fail("torchvision", "not installed: apt-get install python3-torchvision, or pass --weights FILE")
    try:
        model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    except AttributeError:  # torchvision < 0.13
        model = torchvision.models.vgg16(pretrained=True)
    return "torchvision vgg16", model.state_dict()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="", help="torchvision VGG-16 checkpoint (.pth); default: download")
    ap.add_argument("--out", default="vgg16.h5", help="HDF5 file to write")
    args = ap.parse_args()

    source, state = load_state_dict(args.weights)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for i in CSRNET_CONVS:
        out_c, in_c = CSRNET_SHAPES[i]
        for name, shape in ((f"features.{i}.weight", (out_c, in_c, 3, 3)), (f"features.{i}.bias", (out_c,))):
            if name not in state:
                fail(source, f"missing tensor '{name}' (not a VGG-16 state_dict?)")
            if tuple(state[name].shape) != shape:
                fail(source, f"tensor '{name}' has shape {list(state[name].shape)}, expected {list(shape)}")

    # Written to a temporary name and renamed, so a failure leaves no half file.
    out_dir = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(prefix=".export_vgg16-", suffix=".h5", dir=out_dir)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for name, tensor in state.items():
                if name.startswith("features."):
                    f.create_dataset(name, data=tensor.detach().cpu().float().numpy().astype(np.float32))
            f.attrs["source"] = source
        os.replace(tmp, args.out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f"wrote {args.out}: VGG-16 features from {source}")


if __name__ == "__main__":
    main()
