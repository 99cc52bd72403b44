#!/usr/bin/python3
"""CSRNet in PyTorch, laid out exactly as the original CSRNet-pytorch model.py
(same module names, so its state_dict keys are the HDF5 dataset names this
project reads and writes), plus HDF5 weight I/O and a small counting CLI.

Used by the interop tests and the benchmark as the PyTorch reference, and by
docs/interop.md. Needs Debian's python3-torch, python3-h5py, python3-opencv.

    /usr/bin/python3 tools/csrnet_pytorch.py count --weights model_best.h5 IMG_1.jpg ...
prints "path<TAB>count" per image (6 decimals), like the C++ `predict`.
"""
import argparse
import sys

import h5py
import numpy as np
import torch
from torch import nn

FRONTEND = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]
BACKEND = [512, 512, 512, 256, 128, 64]
DILATIONS = {"A": [1] * 6, "B": [2] * 6, "C": [2, 2, 2, 4, 4, 4], "D": [4] * 6}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def make_layers(cfg, in_channels, dilations=None):
    layers = []
    i = 0
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        d = dilations[i] if dilations else 1
        i += 1
        layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=d, dilation=d), nn.ReLU(inplace=True)]
        in_channels = v
    return nn.Sequential(*layers)


class CSRNet(nn.Module):
    def __init__(self, backend="B"):
        super().__init__()
        self.frontend = make_layers(FRONTEND, 3)
        self.backend = make_layers(BACKEND, 512, DILATIONS[backend])
        self.output_layer = nn.Conv2d(64, 1, kernel_size=1)

    def forward(self, x):
        return self.output_layer(self.backend(self.frontend(x)))


class WeightsError(ValueError):
    """Weights that are not CSRNet's: the message names the file and the tensor."""


def checked_state(path, tensors, backend):
    """The CSRNet state dict out of `tensors` (name -> tensor): every expected tensor
    present with its shape, else WeightsError. Returns (state, extra names)."""
    want = {k: tuple(v.shape) for k, v in CSRNet(backend).state_dict().items()}
    for key, shape in want.items():
        if key not in tensors:
            raise WeightsError(f"{path}: missing tensor '{key}' (not a CSRNet checkpoint?)")
        got = tuple(tensors[key].shape)
        if got != shape:
            raise WeightsError(f"{path}: tensor '{key}' has shape {list(got)}, expected {list(shape)} "
                               "(another architecture?)")
    return {k: tensors[k] for k in want}, sorted(set(tensors) - set(want))


def load_h5(model, path):
    """Loads weights in the original layout (one root dataset per state_dict key)."""
    with h5py.File(path, "r") as f:
        state = {}
        for key, param in model.state_dict().items():
            if key not in f:
                raise KeyError(f"{path}: missing tensor '{key}'")
            value = torch.from_numpy(np.asarray(f[key], dtype=np.float32))
            if value.shape != param.shape:
                raise ValueError(f"{path}: tensor '{key}' has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
            state[key] = value
    model.load_state_dict(state)
    return model


def backend_of(path):
    with h5py.File(path, "r") as f:
        b = f.attrs.get("backend", "B")
    return b.decode() if isinstance(b, bytes) else str(b)


def save_h5(model, path):
    with h5py.File(path, "w") as f:
        for key, value in model.state_dict().items():
            f.create_dataset(key, data=value.detach().cpu().float().numpy())


def image_tensor(path):
    """RGB in [0,1], ImageNet-normalised, 1 x 3 x H x W. Decoded with OpenCV (as
    the C++ side does) so both see identical pixels."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IOError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    rgb = (rgb - MEAN) / STD
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy()).unsqueeze(0)


def load_any(path):
    """A model from .h5 (original layout) or a CSRNet-pytorch .pth.tar / state_dict."""
    with open(path, "rb") as f:
        if f.read(8) == b"\x89HDF\r\n\x1a\n":
            return load_h5(CSRNet(backend_of(path)), path)
    ckpt = torch.load(path, map_location="cpu")
    state = ckpt.get("state_dict", ckpt)
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = CSRNet()
    model.load_state_dict(state)
    return model


def count_main(args):
    torch.set_num_threads(args.threads)
    model = load_any(args.weights).eval()
    with torch.no_grad():
        for path in args.images:
            density = model(image_tensor(path)).double()
            print(f"{path}\t{density.sum().item():.6f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("count", help="print path<TAB>count per image (fp32, whole image)")
    c.add_argument("--weights", required=True, help="CSRNet weights: .h5 (original layout) or .pth.tar checkpoint")
    c.add_argument("--threads", type=int, default=torch.get_num_threads())
    c.add_argument("images", nargs="+")
    args = ap.parse_args()
    if args.command == "count":
        count_main(args)


if __name__ == "__main__":
    sys.exit(main())
