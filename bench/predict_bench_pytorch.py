#!/usr/bin/python3
"""PyTorch side of bench/predict_bench: the same CSRNet, weights and images,
timed the way the C++ side is timed (uint8 RGB in memory -> normalised
tensor -> forward -> sum), in fp32 and in bf16 (torch.autocast with
channels-last tensors, the standard PyTorch recipe), and on a GPU (--device
cuda) also in fp16. Prints one JSON line.

  /usr/bin/python3 bench/predict_bench_pytorch.py --weights W.h5 --threads 2 IMG.png ...
"""
import argparse
import contextlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from csrnet_pytorch import CSRNet, backend_of, load_h5  # noqa: E402


def run(model, images, precision, warmup, device):
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    fmt = torch.channels_last if dtype else torch.contiguous_format
    m = model.to(device, memory_format=fmt)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    counts = []

    def one(rgb):
        x = image_tensor_from_array(rgb).to(device).contiguous(memory_format=fmt)
        # The whole map back to the host, as predict writes it.
        return m(x).float().cpu().sum().item()

    with torch.no_grad(), ctx:
        for i in range(warmup):
            one(images[i % len(images)])
        start = time.perf_counter()
        for rgb in images:
            counts.append(one(rgb))
        seconds = time.perf_counter() - start
    return len(images) / seconds, counts


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def image_tensor_from_array(rgb):
    """uint8 H x W x 3 (numpy) -> ImageNet-normalised 1 x 3 x H x W float."""
    t = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    return (t - MEAN) / STD


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    import cv2

    images = [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in args.images]
    model = load_h5(CSRNet(backend_of(args.weights)), args.weights).eval()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for precision in args.precisions.split(","):
        ips, counts = run(model, images, precision, args.warmup, device)
        out[precision] = {"images_per_s": ips, "counts": counts}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
