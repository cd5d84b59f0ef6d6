"""The reference fixtures' deterministic pseudo-weights, so tests and benchmarks rebuild them.

Each floating-point state-dict entry is drawn from a numpy generator seeded with
crc32(namespace + name) and scaled by its shape (fan-in for matrices and kernels, around one
for norm scales, around zero for biases). Integer entries, and the tables a module computes
itself (`pe`, `position_ids`, `num_batches_tracked`), are left alone.
"""
from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np
import torch

_COMPUTED = {"num_batches_tracked", "position_ids", "pe"}


def is_computed(name: str) -> bool:
    """Entries the rule never overwrites: the module computes them."""
    return name.rsplit(".", 1)[-1] in _COMPUTED


def pseudo_tensor(name: str, shape: Sequence[int], namespace: str = "") -> torch.Tensor:
    """The float32 value of one entry."""
    shape = tuple(int(s) for s in shape)
    x = np.random.default_rng(zlib.crc32((namespace + name).encode())).standard_normal(shape)
    if len(shape) >= 2:
        x /= np.sqrt(np.prod(shape[1:]))  # in place: same values, no second copy of a large tensor
    elif name.endswith("running_var"):
        x = 1.0 + 0.1 * np.abs(x)
    elif len(shape) == 1 and name.endswith("weight"):
        x = 1.0 + 0.1 * x
    else:
        x = 0.1 * x
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def pseudo_state_dict(
    shapes: Mapping[str, Sequence[int]], namespace: str = "", aliases: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """Values for a {name: shape} mapping; an alias gets the value of the name it points to."""
    aliases = aliases or {}
    out = {n: pseudo_tensor(n, s, namespace) for n, s in shapes.items() if not is_computed(n) and n not in aliases}
    out.update({n: out[t].clone() for n, t in aliases.items() if n in shapes and t in out})
    return out


@torch.no_grad()
def fill_module(module: torch.nn.Module, namespace: str = "") -> torch.nn.Module:
    """Overwrite every floating-point entry of `module` in place; a shared tensor once, by its first name."""
    seen: set[int] = set()
    for name, t in module.state_dict(keep_vars=True).items():
        if t.numel() and t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        if t.is_floating_point() and not is_computed(name):
            t.data.copy_(pseudo_tensor(name, t.shape, namespace).to(t.dtype))
    return module
