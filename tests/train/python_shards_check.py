#!/usr/bin/python3
"""The Python half of tests/train/python_shards_test.cpp: checks csrnet_shards
(python/csrnet_shards.py) against what the C++ loader produced.

    python_shards_check.py compare SET EXPORT
        EXPORT/examples.txt lists the C++ loader's examples and records, one
        tab-separated line each:
          example SPLIT MIRROR INDEX HEIGHT WIDTH   (EXPORT/SPLIT-MIRROR-INDEX.f32:
                                                     the image, then the target, float32)
          size SPLIT MIRROR EXAMPLES
          record SPLIT INDEX SOURCE COUNT CROP DENSITY_SUM X Y W H SCALE_X SCALE_Y
        Every example must equal ShardDataset's within 1e-6 and every label
        must be equal; prints one summary line.
    python_shards_check.py tamper SET OUT
        Writes damaged copies of SET under OUT and checks that csrnet_shards
        refuses each with a message naming the file: OUT/target (a target value
        changed, the manifest's file checksum updated to match), OUT/index (an
        index count changed), OUT/shard99 (a shard's root says version 99);
        also a missing split and a folder without manifest.
"""
import json
import shutil
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
import csrnet_shards  # noqa: E402
from csrnet_shards import ShardDataset, ShardError  # noqa: E402

TOLERANCE = 1e-6


def fail(message: str) -> None:
    print("MISMATCH:", message)
    sys.exit(1)


def compare(set_dir: Path, export: Path) -> None:
    datasets = {}

    def dataset(split: str, mirror: str) -> ShardDataset:
        key = (split, mirror)
        if key not in datasets:
            datasets[key] = ShardDataset(set_dir, split, mirror=mirror == "1", as_numpy=True)
        return datasets[key]

    examples = exact = records = 0
    worst = 0.0
    for line in (export / "examples.txt").read_text().splitlines():
        kind, *f = line.split("\t")
        if kind == "size":
            split, mirror, n = f
            if len(dataset(split, mirror)) != int(n):
                fail(f"{split} mirror={mirror}: {len(dataset(split, mirror))} examples, the C++ loader has {n}")
        elif kind == "example":
            split, mirror, index, h, w = f[0], f[1], int(f[2]), int(f[3]), int(f[4])
            image, target = dataset(split, mirror)[index]
            raw = np.fromfile(export / f"{split}-{mirror}-{index}.f32", dtype="<f4")
            want_image = raw[:3 * h * w].reshape(3, h, w)
            want_target = raw[3 * h * w:].reshape(1, h // 8, w // 8)
            where = f"{split} mirror={mirror} example {index}"
            for name, got, want in (("image", image, want_image), ("target", target, want_target)):
                if got.dtype != np.float32 or got.shape != want.shape or not got.flags.c_contiguous:
                    fail(f"{where}: {name} is {got.dtype} {got.shape}, the C++ loader's is float32 {want.shape}")
                diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
                if not diff <= TOLERANCE:
                    fail(f"{where}: {name} differs from the C++ loader's by up to {diff:g}")
                worst = max(worst, diff)
            exact += np.array_equal(image, want_image) and np.array_equal(target, want_target)
            examples += 1
        elif kind == "record":
            split, index = f[0], int(f[1])
            info = dataset(split, "0").info(index)
            got = [info.source, info.count, info.crop, info.density_sum, *info.box, *info.scale]
            want = [f[2], int(f[3]), int(f[4]), float(f[5]), *map(int, f[6:10]), *map(float, f[10:12])]
            if got != want:
                fail(f"{split} record {index}: labels {got}, the C++ reader's {want}")
            records += 1
        else:
            fail(f"unknown line {line!r}")
    torch = csrnet_shards._torch()
    if torch is not None:  # the tensor path gives the same values as the numpy one
        for (split, mirror), ds in datasets.items():
            tensors = ShardDataset(set_dir, split, mirror=mirror == "1")
            image, target = tensors[len(tensors) - 1]
            want_image, want_target = ds[len(ds) - 1]
            if not (isinstance(image, torch.Tensor) and np.array_equal(image.numpy(), want_image)
                    and np.array_equal(target.numpy(), want_target)):
                fail(f"{split} mirror={mirror}: torch tensors differ from the numpy arrays")
    verified = sum(dataset(split, "0").verify() for split in {split for split, _ in datasets})
    print(f"{examples} examples match the C++ loader ({exact} bit-identical, largest difference {worst:g}); "
          f"{records} records' labels match; verify() passed on {verified} records")


def expect_error(make, *pieces: str) -> str:
    try:
        make()
    except ShardError as e:
        message = str(e)
        missing = [p for p in pieces if p not in message]
        if missing:
            fail(f"message {message!r} lacks {missing}")
        return message
    fail(f"no ShardError (expected one naming {pieces})")


def copy_set(set_dir: Path, out: Path) -> Path:
    shutil.copytree(set_dir, out)
    return out


def refresh_manifest(set_dir: Path, shard_file: str) -> None:
    """Makes the manifest list a modified shard's new size and checksum, as if
    the damage had happened before the manifest was written."""
    path = set_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    data = (set_dir / shard_file).read_bytes()
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            if shard["file"] == shard_file:
                shard["bytes"], shard["crc32"] = len(data), zlib.crc32(data)
        split["bytes"] = sum(s["bytes"] for s in split["shards"])
    manifest.get("totals", {}).pop("bytes", None)
    path.write_text(json.dumps(manifest, indent=2))


def tamper(set_dir: Path, out: Path) -> None:
    shard_file = json.loads((set_dir / "manifest.json").read_text())["splits"]["train"]["shards"][0]["file"]

    target = copy_set(set_dir, out / "target")
    with h5py.File(target / shard_file, "r+") as f:
        f["records/000001/target"][0, 0] += 1.0
    refresh_manifest(target, shard_file)
    damaged = ShardDataset(target, "train", mirror=False)
    damaged[0]  # the other records still read
    expect_error(lambda: damaged[1], shard_file, "train record 1 (/records/000001)", "checksum mismatch")
    expect_error(damaged.verify, shard_file, "checksum mismatch")

    index = copy_set(set_dir, out / "index")
    with h5py.File(index / shard_file, "r+") as f:
        f["index/count"][2] += 5
    refresh_manifest(index, shard_file)
    expect_error(ShardDataset(index, "train").verify, shard_file, "/records/000002 attribute 'count'",
                 "but /index says")

    stale = copy_set(set_dir, out / "stale")
    with h5py.File(stale / shard_file, "r+") as f:
        f["index/count"][0] += 1
    expect_error(ShardDataset(stale, "train").verify, shard_file, "checksum mismatch", "manifest.json says")

    shard99 = copy_set(set_dir, out / "shard99")
    with h5py.File(shard99 / shard_file, "r+") as f:
        f.attrs["format_version"] = np.int64(99)
    refresh_manifest(shard99, shard_file)
    expect_error(lambda: ShardDataset(shard99, "train"), shard_file, "shard format version 99 is not supported",
                 "rebuild the set with crop_shards --overwrite")

    expect_error(lambda: ShardDataset(set_dir, "val"), str(set_dir), "no split 'val'", "test, train")
    (out / "empty").mkdir()
    expect_error(lambda: ShardDataset(out / "empty", "train"), "empty", "no manifest.json: incomplete shard set")
    print("every damaged copy refused, naming its file")


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("compare", "tamper"):
        sys.exit(__doc__)
    (compare if sys.argv[1] == "compare" else tamper)(Path(sys.argv[2]), Path(sys.argv[3]))


if __name__ == "__main__":
    main()
