"""Strict loading of a ProPainter state dict into its network, with messages naming the source and the keys.

Reading the released files is the weights package's work; this only compares and loads tensors.
"""
from __future__ import annotations

from typing import Mapping, TypeVar

import torch

from ...errors import CheckpointError

Net = TypeVar("Net", bound=torch.nn.Module)
_LISTED = 5  # keys named per kind of problem before "..."


def load_state_strict(model: Net, state: Mapping[str, torch.Tensor], source: str, released_name: str) -> Net:
    """Load `state` into `model` strictly, in eval mode; a CheckpointError names `source` and every bad key."""
    expected = model.state_dict()
    # BatchNorm fills in a missing step counter itself, as torch's strict loading allows.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                more = ", ..." if len(keys) > _LISTED else ""
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:_LISTED])}{more})")
        raise CheckpointError(f"{source} does not match {released_name}: " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)
    return model.eval()
