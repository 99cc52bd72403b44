#!/usr/bin/python3
"""PyTorch side of bench/train_bench: the original CSRNet model and training
step (SGD lr 1e-7, momentum 0.95, weight decay 5e-4, MSELoss with sum
reduction, batch 1, zero_grad / backward / step), timed per step on a random
crop. --precision bf16 is the standard PyTorch recipe for the same thing:
torch.autocast on the CPU with channels-last model and input. Uses Debian's
python3-torch (1.13, the LibTorch version the C++ side links). Prints one JSON
line: {"precision", "threads", "step_seconds": [...], "losses": [...]}.

  /usr/bin/python3 bench/train_bench_pytorch.py --precision fp32 --threads 2 --steps 4
"""
import argparse
import contextlib
import json
import time

import torch
from torch import nn


def make_layers(cfg, in_channels=3, dilation=1):
    layers = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=dilation, dilation=dilation),
                       nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class CSRNet(nn.Module):
    """The original model (back end B), with its initialisation."""

    def __init__(self):
        super().__init__()
        self.frontend = make_layers([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512])
        self.backend = make_layers([512, 512, 512, 256, 128, 64], in_channels=512, dilation=2)
        self.output_layer = nn.Conv2d(64, 1, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return self.output_layer(self.backend(self.frontend(x)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    bf16 = args.precision == "bf16"
    model = CSRNet()
    model.train()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    criterion = nn.MSELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), 1e-7, momentum=0.95, weight_decay=5e-4)
    img = torch.randn(1, 3, args.height, args.width).contiguous(memory_format=fmt)
    target = torch.rand(1, 1, args.height // 8, args.width // 8)

    times, losses = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        with (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()):
            output = model(img)
        loss = criterion(output.float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = loss.item()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            losses.append(value)
    print(json.dumps({"precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "step_seconds": times, "losses": losses}))


if __name__ == "__main__":
    main()
