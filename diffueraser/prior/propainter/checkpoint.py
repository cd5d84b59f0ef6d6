"""Strict loading of the released ProPainter v0.1.0 checkpoints, with messages naming file and keys."""
from __future__ import annotations

import os
from typing import Callable, Union

import torch

from ...errors import CheckpointError
from .flow_completion import RecurrentFlowCompleteNet
from .generator import InpaintGenerator
from .raft import RAFT, strip_data_parallel_prefix

PathLike = Union[str, os.PathLike]


def load_released(model: torch.nn.Module, path: PathLike, released_name: str,
                  convert: Callable[[dict], dict] = dict) -> torch.nn.Module:
    """Load a released checkpoint strictly; a CheckpointError names the file and the bad keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{released_name} not found at {path}; download it from the ProPainter v0.1.0 "
                              "release (github.com/sczhou/ProPainter/releases/tag/v0.1.0).") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or not a torch file
        raise CheckpointError(f"cannot read {path} as {released_name} ({exc}); download it again.") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a state dict ({released_name} expected)")
    state = convert(state)
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
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})")
        raise CheckpointError(f"{path} does not match {released_name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_raft(path: PathLike) -> RAFT:
    """RAFT from `raft-things.pth` (saved from DataParallel: its keys carry `module.`)."""
    return load_released(RAFT(), path, "raft-things.pth", strip_data_parallel_prefix)


def load_flow_completion(path: PathLike) -> RecurrentFlowCompleteNet:
    """The recurrent flow-completion network from `recurrent_flow_completion.pth`."""
    return load_released(RecurrentFlowCompleteNet(), path, "recurrent_flow_completion.pth")


def load_generator(path: PathLike) -> InpaintGenerator:
    """The InpaintGenerator from `ProPainter.pth`."""
    return load_released(InpaintGenerator(), path, "ProPainter.pth")
