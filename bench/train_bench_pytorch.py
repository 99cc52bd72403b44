#!/usr/bin/python3
"""PyTorch side of bench/train_bench: the original CSRNet model and training
step (SGD lr 1e-7, momentum 0.95, weight decay 5e-4, MSELoss with sum
reduction, batch 1, zero_grad / backward / step), timed per step on a random
crop. --precision bf16 is the standard PyTorch recipe for the same thing:
torch.autocast with channels-last model and input; --precision fp16 (CUDA)
adds torch.cuda.amp.GradScaler. Uses Debian's python3-torch (1.13, the
LibTorch version the C++ side links) or, with --device cuda, the torch of the
LibTorch the C++ side was built against. Prints one JSON line: {"precision",
"threads", "step_seconds": [...], "losses": [...]}.

  /usr/bin/python3 bench/train_bench_pytorch.py --precision fp32 --threads 2 --steps 4

--serve: one model per precision kept alive; each line "fp32" or "bf16" on
stdin runs one step of that model and answers its seconds on stdout
("version" answers torch's version, "quit" ends). train_bench drives this to interleave PyTorch's steps with its own one
by one, so a change in machine load hits every configuration alike.
"""
import argparse
import contextlib
import json
import sys
import time
import warnings

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


class Trainer:
    def __init__(self, precision, width, height, device="cpu"):
        torch.manual_seed(1)
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if self.dtype == torch.float16 and not self.cuda:
            raise ValueError("fp16 needs --device cuda")
        fmt = torch.channels_last if self.dtype else torch.contiguous_format
        self.model = CSRNet().to(self.device, memory_format=fmt)
        self.model.train()
        self.criterion = nn.MSELoss(reduction="sum")
        self.optimizer = torch.optim.SGD(self.model.parameters(), 1e-7, momentum=0.95, weight_decay=5e-4)
        with warnings.catch_warnings():  # 2.x deprecates the name, not the scaler
            warnings.simplefilter("ignore")
            self.scaler = torch.cuda.amp.GradScaler() if self.dtype == torch.float16 else None
        img = torch.randn(1, 3, height, width)
        target = torch.rand(1, 1, height // 8, width // 8)
        if self.cuda:  # host batches as the loader hands them: pinned, copied without blocking
            img, target = img.pin_memory(), target.pin_memory()
        self.img, self.target, self.fmt = img, target, fmt

    def step(self):
        """One step of the original training loop; returns (seconds, loss)."""
        start = time.perf_counter()
        img = self.img.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        target = self.target.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with ctx:
            output = self.model(img)
        loss = self.criterion(output.float(), target)
        self.optimizer.zero_grad()
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        value = loss.item()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, value


def serve(args):
    trainers = {}
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd == "version":
            print(torch.__version__, flush=True)
            continue
        if cmd not in ("fp32", "bf16", "fp16"):
            print(f"error: unknown request {cmd!r}", flush=True)
            continue
        if cmd not in trainers:
            try:
                trainers[cmd] = Trainer(cmd, args.width, args.height, args.device)
            except (ValueError, RuntimeError) as e:
                print(f"error: {str(e).splitlines()[0]}", flush=True)
                continue
        seconds, _ = trainers[cmd].step()
        print(f"{seconds:.6f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--serve", action="store_true", help="answer step requests on stdin (see above)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.device != "cpu":
        torch.backends.cudnn.benchmark = True
    if args.serve:
        serve(args)
        return
    trainer = Trainer(args.precision, args.width, args.height, args.device)
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        seconds, value = trainer.step()
        if i >= args.warmup:
            times.append(seconds)
            losses.append(value)
    print(json.dumps({"precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "step_seconds": times, "losses": losses}))


if __name__ == "__main__":
    main()
