"""Checking and reading checkpoint files: cheap integrity checks, tensor shapes, tensors read on demand."""
from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch

from ..errors import CheckpointError
from .parts import DIFFUSERS_WEIGHTS

INDEX_SUFFIX = ".index.json"
WEIGHTS_STEM = "diffusion_pytorch_model"
_SAFETENSORS_HEADER_LIMIT = 100 * 2**20  # a larger header length means the file is not safetensors

TensorSource = Callable[[Iterable[str]], Iterator[tuple[str, torch.Tensor]]]
"""source(names) yields (name, tensor) for each name, one tensor at a time, in file order."""


def file_problem(path: Path) -> Optional[str]:
    """What is wrong with a checkpoint file (empty, truncated, not parseable), or None.

    Cheap: safetensors are checked against the sizes in their header, torch zip archives by
    opening their central directory, JSON by parsing.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror})"
    if size == 0:
        return f"{path.name} is empty"
    name = path.name
    try:
        if name.endswith(".safetensors"):
            return _safetensors_problem(path, size)
        if name.endswith((".bin", ".pth", ".pt", ".ckpt")):
            with open(path, "rb") as f:
                is_zip = f.read(2) == b"PK"
            if is_zip:  # torch.save's zip format; the legacy pickle format cannot be checked cheaply
                with zipfile.ZipFile(path):
                    pass
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
    except zipfile.BadZipFile:
        return f"{name} is truncated or corrupt (incomplete archive, {size} bytes)"
    except (ValueError, UnicodeDecodeError):
        return f"{name} is truncated or corrupt (not valid JSON)"
    except OSError as e:
        return f"{name} cannot be read ({e.strerror})"
    return None


def _safetensors_problem(path: Path, size: int) -> Optional[str]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _SAFETENSORS_HEADER_LIMIT):
            return f"{path.name} is truncated or not a safetensors file (header of {n} bytes in a {size}-byte file)"
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    expected = 8 + n + end
    if size != expected:
        return f"{path.name} is truncated or corrupt ({size} bytes, its header describes {expected})"
    return None


def index_shards(index: Path) -> list[str]:
    """Shard file names listed by a sharded checkpoint's index."""
    return sorted(set(_weight_map(index).values()))


def _weight_map(index: Path) -> dict[str, str]:
    return json.loads(index.read_text(encoding="utf-8"))["weight_map"]


def checkpoint_shapes(folder: Path) -> Optional[dict[str, tuple[int, ...]]]:
    """Tensor names and shapes of a diffusers folder's weight files, read without loading any data; None if none."""
    files = sorted(folder.glob(f"{WEIGHTS_STEM}*.safetensors")) or sorted(folder.glob(f"{WEIGHTS_STEM}*.bin"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(file, framework="pt") as reader:
                shapes.update({k: tuple(reader.get_slice(k).get_shape()) for k in reader.keys()})
        else:
            tensors = torch.load(file, map_location="meta", weights_only=True)
            shapes.update({k: tuple(v.shape) for k, v in tensors.items()})
    return shapes


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    return load_file(str(path))


def _shard_of(folder: Path) -> Callable[[str], Path]:
    """Which file of a diffusers folder holds a tensor, in diffusers' order of preference."""
    for name in DIFFUSERS_WEIGHTS:
        path = folder / name
        if path.is_file():
            if name.endswith(INDEX_SUFFIX):
                weight_map = _weight_map(path)
                return lambda tensor: folder / weight_map[tensor]
            return lambda tensor: path
    raise FileNotFoundError(f"no {' or '.join(DIFFUSERS_WEIGHTS)} in {folder}")


def tensor_source(folder: Path, what: str) -> TensorSource:
    """Reads named tensors of the diffusers folder `folder` from disk when asked, holding none in memory.

    safetensors are read lazily, tensor by tensor; a .bin is memory-mapped where its format allows.
    Any failure is a CheckpointError naming `what` and the folder.
    """

    def source(names: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
        try:
            shard_of = _shard_of(folder)
            by_file: dict[Path, list[str]] = {}
            for name in names:
                by_file.setdefault(shard_of(name), []).append(name)
            for file, wanted in by_file.items():
                yield from _read_tensors(file, wanted)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"cannot read the {what} weights from {folder}: {type(e).__name__}: {e}; "
                                  f"delete it so it is fetched again, or replace it") from e

    return source


def _read_tensors(file: Path, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    if file.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(file, framework="pt") as reader:
            for name in names:
                yield name, reader.get_tensor(name)
        return
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
        state = torch.load(file, map_location="cpu", weights_only=True)
    for name in names:
        yield name, state[name]
