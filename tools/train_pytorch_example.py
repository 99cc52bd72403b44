#!/usr/bin/python3
"""Trains the PyTorch CSRNet (tools/csrnet_pytorch.py) for a few steps on a
csrnet-cpp shard set, read through python/csrnet_shards.py with a torch
DataLoader: the whole path for training in Python on this toolkit's
preprocessing (crop_shards), without its C++ trainer.

The step is the original CSRNet-pytorch one, as the C++ trainer's batch of 1:
the mirrored training examples in shuffled order, one per step, loss = sum of
squared errors over the 1/8 map (MSELoss with sum reduction), SGD with lr
1e-7, momentum 0.95, weight decay 5e-4; weights N(0, 0.01), biases 0, the
front end optionally from ImageNet VGG-16 (tools/export_vgg16.py).

    /usr/bin/python3 tools/train_pytorch_example.py shards --steps 20
    /usr/bin/python3 tools/train_pytorch_example.py shards --steps 2000 --vgg16 vgg16.h5 \\
        --eval --save model.h5

prints one line per step. --save writes the original HDF5 layout, which the
C++ `predict` and `evaluate` read (docs/interop.md). Needs Debian's
python3-torch, python3-h5py and python3-numpy.
"""
import argparse
import itertools
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))
from csrnet_pytorch import CSRNet, save_h5  # noqa: E402
from csrnet_shards import ShardDataset  # noqa: E402


def init_weights(model: CSRNet, seed: int) -> None:
    """The original's initialisation: every conv weight N(0, 0.01), bias 0."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def load_vgg16(model: CSRNet, path: str) -> None:
    """The front end from torchvision VGG-16 `features` tensors (HDF5, as
    tools/export_vgg16.py writes them): features.N is frontend.N."""
    state = model.state_dict()
    with h5py.File(path, "r") as f:
        for key in state:
            if not key.startswith("frontend."):
                continue
            name = "features." + key[len("frontend."):]
            if name not in f:
                sys.exit(f"train_pytorch_example: error: {path}: missing tensor '{name}' (not tools/export_vgg16.py "
                         "output?)")
            value = torch.from_numpy(np.asarray(f[name], dtype=np.float32))
            if value.shape != state[key].shape:
                sys.exit(f"train_pytorch_example: error: {path}: tensor '{name}' has shape {list(value.shape)}, "
                         f"expected {list(state[key].shape)}")
            state[key] = value
    model.load_state_dict(state)


def evaluate(model: CSRNet, shards: str) -> float:
    """MAE of the predicted counts against the annotation counts over the test
    split's whole images (the paper's measure)."""
    test = ShardDataset(shards, "test", mirror=False)
    model.eval()
    errors = []
    with torch.no_grad():
        for record in range(test.num_records):
            image, _ = test[record]
            count = model(image.unsqueeze(0)).double().sum().item()
            errors.append(abs(count - test.info(record).count))
    model.train()
    return float(np.mean(errors)) if errors else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", help="shard set folder (crop_shards --out)")
    ap.add_argument("--steps", type=int, default=20, help="training steps (one example each)")
    ap.add_argument("--lr", type=float, default=1e-7, help="SGD learning rate")
    ap.add_argument("--momentum", type=float, default=0.95, help="SGD momentum")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    ap.add_argument("--backend", default="B", choices=["A", "B", "C", "D"], help="dilation configuration")
    ap.add_argument("--vgg16", help="ImageNet VGG-16 front end (HDF5 from tools/export_vgg16.py)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation and shuffling")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    ap.add_argument("--eval", action="store_true", help="print the test split's MAE after training")
    ap.add_argument("--save", help="write the weights here (HDF5, the original layout, with its back end)")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error("--steps must be >= 1")

    torch.set_num_threads(args.threads)
    train = ShardDataset(args.shards, "train")  # mirrored, as the C++ trainer
    print(train, flush=True)
    loader = DataLoader(train, batch_size=1, shuffle=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(args.seed))
    model = CSRNet(args.backend)
    init_weights(model, args.seed)
    if args.vgg16:
        load_vgg16(model, args.vgg16)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    criterion = nn.MSELoss(reduction="sum")

    # Epoch after epoch (each a new shuffle) until --steps.
    batches = itertools.chain.from_iterable(loader for _ in itertools.count())
    start = time.monotonic()
    for step, (image, target) in zip(range(1, args.steps + 1), batches):
        output = model(image)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}/{args.steps} loss {loss.item():.6f} count {output.sum().item():.3f} "
              f"(target {target.sum().item():.3f}, {image.shape[3]}x{image.shape[2]} px) "
              f"{time.monotonic() - start:.1f}s", flush=True)
    if args.eval:
        print(f"test MAE {evaluate(model, args.shards):.3f}", flush=True)
    if args.save:
        save_h5(model, args.save)
        with h5py.File(args.save, "a") as f:
            f.attrs["backend"] = args.backend  # read by the C++ tools (docs/interop.md)
        print(f"wrote {args.save}", flush=True)


if __name__ == "__main__":
    main()
