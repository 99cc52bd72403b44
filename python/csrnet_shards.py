"""Read csrnet-cpp shard sets (docs/shard_format.md) from Python.

`ShardDataset` gives the examples of one split exactly as the C++ trainer
feeds them (`csr::ShardDataset`, train/dataset.cpp): the record's RGB pixels
scaled to [0, 1] and normalised with the ImageNet mean and standard deviation,
planar C x H x W float32, and its 1/8 target as 1 x h/8 x w/8 float32, with
the same float32 arithmetic, so the values are the C++ loader's (bit for bit
where the compiler does not fuse the multiply-add, within one float32 step
otherwise).

Mirroring follows the C++ rule, which is fixed by the index, not drawn at
random: with ``mirror=True`` the split has ``2 * records`` examples, example
``i`` is record ``i // 2``, and odd examples are that record flipped
left-right (image and target). The C++ trainer mirrors the train split and not
the test split. Which examples form an epoch, in which order, is the
sampler's business (the C++ trainer's shuffle is its own; use a DataLoader's
``shuffle=True`` here).

Needs h5py and numpy. torch is imported only when an example is fetched: with
torch installed, examples are tensors (so a ``torch.utils.data.DataLoader``
batches them); without it, or with ``as_numpy=True``, numpy arrays.

    from csrnet_shards import ShardDataset
    train = ShardDataset("shards", "train")             # mirrored, like the trainer
    image, target = train[1]                            # record 0, flipped
    for info in train.records():                        # labels, no pixels read
        print(info.source, info.box, info.count)
    train.verify()                                      # checksums and index
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

import h5py
import numpy as np

__all__ = ["ShardError", "RecordInfo", "ShardDataset", "normalize_image", "FORMAT", "READABLE_VERSIONS"]

FORMAT = "csrnet-shards"
READABLE_VERSIONS = (2, 3)
MANIFEST = "manifest.json"
# ImageNet statistics on RGB in [0, 1], as float32 (deploy/tiling.h).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Per channel, out = pixel * _SCALE + _SHIFT in float32: the C++ NormalizeImage.
_SCALE = np.float32(1.0) / (np.float32(255.0) * IMAGENET_STD)
_SHIFT = -IMAGENET_MEAN / IMAGENET_STD
# Shard files kept open at once per process (the C++ reader keeps 32).
_MAX_OPEN_SHARDS = 32
_CRC_BLOCK = 1 << 20

Transform = Callable[[Any, Any], Tuple[Any, Any]]


class ShardError(Exception):
    """A shard set that cannot be read as it is. The message starts with the
    file or folder at fault, as the C++ reader's do."""

    def __init__(self, where: os.PathLike | str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = str(where)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RecordInfo:
    """One record's labels, from its shard's /index (no pixels read)."""

    index: int  # record number within the split
    shard: str  # its shard file, relative to the set's folder (the manifest's "file")
    group: str  # its HDF5 group in that file, e.g. "records/000003"
    source: str  # source image file name, e.g. "IMG_12.jpg"
    box: Tuple[int, int, int, int]  # x, y, w, h in the (rescaled) source image's pixels
    count: int  # annotations inside the box
    density_sum: float  # full-resolution density summed over the box
    crop: int  # 0-3 the quarters, 4.. random crops, -1 the whole image
    image: Optional[int]  # version 3: its stored image, /images/NNNNNN; version 2: None (own pixels)
    at: Tuple[int, int]  # x, y of its pixels inside that image ((0, 0) in version 2)
    scale: Tuple[float, float]  # stored pixels per source pixel, x and y

    @property
    def width(self) -> int:
        return self.box[2]

    @property
    def height(self) -> int:
        return self.box[3]


@dataclasses.dataclass(frozen=True)
class _Shard:
    file: str  # relative to the set's folder
    path: Path
    records: int
    bytes: int
    crc32: int


def normalize_image(rgb: np.ndarray, flip: bool = False) -> np.ndarray:
    """RGB uint8 h x w x 3 -> ImageNet-normalised float32 3 x h x w, mirrored
    left-right when `flip`: the C++ NormalizeImage (deploy/tiling.cpp)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an h x w x 3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    if flip:
        rgb = rgb[:, ::-1]
    out = rgb.astype(np.float32) * _SCALE + _SHIFT
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(obj: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ShardError(path, f"missing field '{where + '.' if where else ''}{key}' (not a crop_shards manifest?)")
    return obj[key]


def _unsupported(version: Any) -> str:
    return (f"shard format version {version} is not supported (this reader reads versions {READABLE_VERSIONS[0]} "
            f"to {READABLE_VERSIONS[-1]}): rebuild the set with crop_shards --overwrite")


def _file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


class ShardDataset:
    """The examples of one split of a shard set, as the C++ trainer loads them.

    `root` is the set's folder (holding manifest.json), `split` "train" or
    "test" (or any split the manifest lists). With `mirror` (the trainer's
    setting for train) the split has two examples per record, the odd ones
    mirrored (see the module's docstring). `transform`, if given, is called as
    ``transform(image, target)`` on each normalised example and returns the
    pair to yield (a joint transform, so a spatial one can move the target with
    the image). `as_numpy` returns numpy arrays even when torch is installed.

    Opening reads the manifest and each shard's /index and checks them as the
    C++ reader does; a problem raises ShardError naming the file. Pixels are
    read per example, and each record's crc32 is checked as it is read.
    Usable from DataLoader worker processes: open files are per process.
    """

    def __init__(self, root: os.PathLike | str, split: str, mirror: bool = True,
                 transform: Optional[Transform] = None, *, as_numpy: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.mirror = mirror
        self.transform = transform
        self.as_numpy = as_numpy
        self.manifest = self._read_manifest()
        self.version: int = self.manifest["format_version"]
        self._shards = self._list_shards()
        self._infos: list[RecordInfo] = []
        self._shard_of: list[_Shard] = []  # per record
        for shard in self._shards:
            infos = self._read_index(shard, first=len(self._infos))
            self._infos += infos
            self._shard_of += [shard] * len(infos)
        self._open: collections.OrderedDict[Path, h5py.File] = collections.OrderedDict()
        self._pid = os.getpid()

    # -- the examples ------------------------------------------------------

    def __len__(self) -> int:
        return len(self._infos) * (2 if self.mirror else 1)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        """Example `index`: (image 3 x h x w, target 1 x h/8 x w/8), float32."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"example {index} out of range: split '{self.split}' has {n}")
        index %= n
        if self.mirror:
            return self.example(index // 2, flip=index % 2 == 1)
        return self.example(index, flip=False)

    def example(self, record: int, flip: bool) -> Tuple[Any, Any]:
        """Record `record` of the split, normalised, mirrored when `flip`,
        whatever the dataset's `mirror` setting; then `transform`."""
        pixels, target = self.read(record)
        image = normalize_image(pixels, flip)
        target = np.ascontiguousarray(target[None, :, ::-1] if flip else target[None])
        torch = None if self.as_numpy else _torch()
        if torch is not None:
            image, target = torch.from_numpy(image), torch.from_numpy(target)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def read(self, record: int) -> Tuple[np.ndarray, np.ndarray]:
        """The stored record as it is: pixels (uint8 h x w x 3, RGB) and target
        (float32 h/8 x w/8). Checks its crc32 and that the target is the 1/8
        grid of the pixels; raises ShardError naming the shard otherwise."""
        info = self.info(record)
        shard = self._shard_of[record]
        f = self._file(shard.path)
        what = f"{self.split} record {info.index} (/{info.group})"
        try:
            group = f[info.group]
            if info.image is None:
                pixels = group["image"][()]
            else:
                x, y = info.at
                pixels = f[f"images/{info.image:06d}"][y:y + info.height, x:x + info.width]
            target = group["target"][()]
            crc = int(group.attrs["crc32"]) if "crc32" in group.attrs else None
        except (KeyError, OSError) as e:
            raise ShardError(shard.path, f"cannot read {what}: {e} (corrupt shard?)") from None
        pixels = np.ascontiguousarray(pixels)
        target = np.ascontiguousarray(target, dtype="<f4")
        if pixels.dtype != np.uint8 or pixels.shape != (info.height, info.width, 3):
            raise ShardError(shard.path, f"{what}: pixels are {pixels.dtype} {pixels.shape}, the index says "
                             f"{info.height} x {info.width} x 3 uint8 (corrupt shard?)")
        if target.shape != (info.height // 8, info.width // 8):
            raise ShardError(shard.path, f"{what}: target is {target.shape[-1]}x{target.shape[0]}, expected the "
                             f"image's 1/8 grid {info.width // 8}x{info.height // 8}")
        if crc is not None and zlib.crc32(target.tobytes(), zlib.crc32(pixels.tobytes())) != crc:
            raise ShardError(shard.path, f"{what}: checksum mismatch, the shard is corrupt; rebuild it")
        return pixels, target

    # -- labels and checks -------------------------------------------------

    @property
    def num_records(self) -> int:
        """Records in the split (examples are twice as many with `mirror`)."""
        return len(self._infos)

    def info(self, record: int) -> RecordInfo:
        """Labels of record `record` of the split (not of an example index)."""
        if not 0 <= record < len(self._infos):
            raise IndexError(f"record {record} out of range: split '{self.split}' has {len(self._infos)}")
        return self._infos[record]

    def records(self) -> Iterator[RecordInfo]:
        """Every record's labels, in record order (from the index: no pixels read)."""
        return iter(self._infos)

    def verify(self) -> int:
        """Checks the whole split; returns its number of records.

        Each shard file's size and crc32 against the manifest, that it holds
        exactly the records its index lists, that each record's attributes
        equal its index entry, and each record's crc32 over its pixels and
        target (root attributes and the index were checked at open). The
        first problem raises ShardError naming the file (and the record)."""
        first = 0
        for shard in self._shards:
            self._check_size(shard)
            crc = _file_crc32(shard.path)
            if crc != shard.crc32:
                raise ShardError(shard.path, f"checksum mismatch (crc32 {crc}, manifest.json says {shard.crc32}): "
                                 "the shard is corrupt; rebuild with crop_shards --overwrite")
            infos = self._infos[first:first + shard.records]
            first += shard.records
            with h5py.File(shard.path, "r") as f:
                groups = sorted(f["records"]) if "records" in f else []
                expected = [info.group.split("/")[1] for info in infos]
                if groups != expected:
                    raise ShardError(shard.path, f"its {len(groups)} record groups are not the {len(expected)} its "
                                     f"index lists (records/000000 to records/{len(expected) - 1:06d}): corrupt "
                                     "shard")
                for info in infos:
                    self._check_attributes(shard, f[info.group].attrs, info)
        for record in range(len(self._infos)):
            self.read(record)
        return len(self._infos)

    def close(self) -> None:
        """Closes the shard files this process has open (reopened on demand)."""
        while self._open:
            self._open.popitem()[1].close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = collections.OrderedDict()  # open files do not cross processes
        return state

    def __repr__(self) -> str:
        return (f"ShardDataset({str(self.root)!r}, {self.split!r}, mirror={self.mirror}): {len(self)} examples "
                f"from {len(self._infos)} records, format version {self.version}")

    # -- opening -----------------------------------------------------------

    def _read_manifest(self) -> dict:
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise ShardError(self.root, "shard set folder not found")
        if not path.exists():
            raise ShardError(self.root, "no manifest.json: incomplete shard set (crop_shards did not finish); "
                             "rerun crop_shards")
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ShardError(path, f"not valid JSON: {e}") from None
        if isinstance(manifest, dict) and manifest.get("format", FORMAT) != FORMAT:
            raise ShardError(path, f"'format' is {json.dumps(manifest['format'])}, not \"{FORMAT}\": "
                             "not a csrnet-cpp shard set")
        version = _field(manifest, "format_version", "", path)
        if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise ShardError(path, _unsupported(version))
        splits = _field(manifest, "splits", "", path)
        if not isinstance(splits, dict):
            raise ShardError(path, "'splits' is not an object")
        if self.split not in splits:
            raise ShardError(self.root, f"the shard set has no split '{self.split}' (it has: "
                             f"{', '.join(sorted(splits)) or 'none'})")
        return manifest

    def _list_shards(self) -> list[_Shard]:
        path = self.root / MANIFEST
        where = f"splits.{self.split}"
        listed = _field(self.manifest["splits"][self.split], "shards", where, path)
        if not isinstance(listed, list):
            raise ShardError(path, f"'{where}.shards' is not a list")
        shards = []
        for k, entry in enumerate(listed):
            w = f"{where}.shards[{k}]"
            file = str(_field(entry, "file", w, path))
            rel = Path(file)
            if not file or rel.is_absolute() or ".." in rel.parts:
                raise ShardError(path, f"'{w}.file' ({file}) is not a path inside the set")
            shard = _Shard(file, self.root / rel, int(_field(entry, "records", w, path)),
                           int(_field(entry, "bytes", w, path)), int(_field(entry, "crc32", w, path)))
            self._check_size(shard)
            shards.append(shard)
        total = sum(s.records for s in shards)
        declared = self.manifest["splits"][self.split].get("records", total)
        if declared != total:
            raise ShardError(path, f"'{where}.records' says {declared} but its shards hold {total} records: the "
                             "manifest was modified; rebuild with crop_shards --overwrite")
        return shards

    @staticmethod
    def _check_size(shard: _Shard) -> None:
        try:
            size = shard.path.stat().st_size
        except OSError:
            raise ShardError(shard.path, "shard file listed in manifest.json is missing") from None
        if size != shard.bytes:
            raise ShardError(shard.path, f"shard is {size} bytes but manifest.json says {shard.bytes}: truncated or "
                             "modified; rebuild with crop_shards --overwrite")

    def _read_index(self, shard: _Shard, first: int) -> list[RecordInfo]:
        """The labels of a shard's records, `first` being the split's number
        of its first record; checks the shard's root attributes and index."""
        try:
            f = h5py.File(shard.path, "r")
        except OSError:
            raise ShardError(shard.path, "cannot open shard: not an HDF5 file (corrupt or truncated?)") from None
        with f:
            self._check_root(shard, f)
            if "index" not in f:
                raise ShardError(shard.path, "missing /index (not a crop_shards shard?)")
            n = shard.records
            index = f["index"]
            per_record = ["source", "box", "count", "density_sum", "crop"]
            if self.version >= 3:
                per_record += ["image", "at", "scale"]
            cols = {}
            for name in per_record + (["image_shape"] if self.version >= 3 else []):
                if name not in index:
                    raise ShardError(shard.path, f"missing /index/{name} (corrupt shard?)")
                cols[name] = index[name][()]
            for name in per_record:
                if len(cols[name]) != n:
                    raise ShardError(shard.path, f"/index/{name} has {len(cols[name])} entries, the shard holds "
                                     f"{n} records (corrupt shard?)")
            infos = []
            for i in range(n):
                box = tuple(int(v) for v in cols["box"][i])
                image, at, scale = None, (0, 0), (1.0, 1.0)
                if self.version >= 3:
                    image = int(cols["image"][i])
                    at = (int(cols["at"][i][0]), int(cols["at"][i][1]))
                    scale = (float(cols["scale"][i][0]), float(cols["scale"][i][1]))
                    self._check_inside(shard, i, box, image, at, cols["image_shape"])
                elif box[2] <= 0 or box[3] <= 0:
                    raise ShardError(shard.path, f"index entry {i} is impossible (box {box}): corrupt shard")
                infos.append(RecordInfo(first + i, shard.file, f"records/{i:06d}", _text(cols["source"][i]), box,
                                        int(cols["count"][i]), float(cols["density_sum"][i]),
                                        int(cols["crop"][i]), image, at, scale))
        return infos

    def _check_root(self, shard: _Shard, f: h5py.File) -> None:
        attrs = f.attrs
        if "format" in attrs and _text(attrs["format"]) != FORMAT:
            raise ShardError(shard.path, f"attribute 'format' is \"{_text(attrs['format'])}\", not \"{FORMAT}\": "
                             "not a csrnet-cpp shard")
        if "format_version" in attrs:
            version = int(attrs["format_version"])
            if version not in READABLE_VERSIONS:
                raise ShardError(shard.path, _unsupported(version))
            if version != self.version:
                raise ShardError(shard.path, f"shard is format version {version} but manifest.json says "
                                 f"{self.version}: the manifest does not belong to these shards; rebuild with "
                                 "crop_shards --overwrite")
        if "records" in attrs and int(attrs["records"]) != shard.records:
            raise ShardError(shard.path, f"shard holds {int(attrs['records'])} records but manifest.json says "
                             f"{shard.records}: the manifest does not belong to these shards; rebuild with "
                             "crop_shards --overwrite")
        if "split" in attrs and _text(attrs["split"]) != self.split:
            raise ShardError(shard.path, f"shard belongs to split '{_text(attrs['split'])}' but manifest.json lists "
                             f"it under '{self.split}'")

    @staticmethod
    def _check_inside(shard: _Shard, i: int, box: tuple, image: int, at: tuple, shapes: np.ndarray) -> None:
        known = 0 <= image < len(shapes)
        rows, cols = (int(shapes[image][0]), int(shapes[image][1])) if known else (0, 0)
        if (not known or box[2] <= 0 or box[3] <= 0 or at[0] < 0 or at[1] < 0 or at[0] + box[2] > cols
                or at[1] + box[3] > rows):
            raise ShardError(shard.path, f"index entry {i} is impossible (image {image} of {len(shapes)} at "
                             f"{at[0]},{at[1]}, {box[2]}x{box[3]} px): corrupt shard")

    @staticmethod
    def _check_attributes(shard: _Shard, attrs: h5py.AttributeManager, info: RecordInfo) -> None:
        """A record group's attributes agree with its index entry and it has a crc32."""
        expected = {"source": info.source, "box": info.box, "count": info.count, "density_sum": info.density_sum,
                    "crop": info.crop}
        if info.image is not None:
            expected.update(image=info.image, at=info.at, scale=info.scale)
        for name in [*expected, "crc32"]:
            if name not in attrs:
                raise ShardError(shard.path, f"/{info.group} has no attribute '{name}' (corrupt shard?)")
        for name, want in expected.items():
            value = attrs[name]
            got = _text(value) if name == "source" else np.asarray(value).tolist()
            if (tuple(got) if isinstance(got, list) else got) != want:
                raise ShardError(shard.path, f"/{info.group} attribute '{name}' is {got} but /index says {want}: "
                                 "corrupt shard")

    # -- reading -----------------------------------------------------------

    def _file(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # a forked DataLoader worker: the parent's handles are not ours
            self._open = collections.OrderedDict()
            self._pid = os.getpid()
        f = self._open.get(path)
        if f is not None:
            self._open.move_to_end(path)
            return f
        if len(self._open) >= _MAX_OPEN_SHARDS:
            self._open.popitem(last=False)[1].close()
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise ShardError(path, "cannot open shard: not an HDF5 file (corrupt or truncated?)") from None
        self._open[path] = f
        return f


@functools.lru_cache(maxsize=None)
def _torch() -> Any:
    """The torch module, or None when it is not installed (imported on first use)."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None
