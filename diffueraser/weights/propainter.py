"""The released ProPainter v0.1.0 files read into their networks, and the prior built from them."""
from __future__ import annotations

import os
from typing import Any, Union

import torch

from ..errors import CheckpointError
from .load import Device, need, on_device
from .parts import FLOW_COMPLETION_FILE, GENERATOR_FILE, RAFT_FILE, CheckpointPaths

PathLike = Union[str, os.PathLike]
RELEASE_PAGE = "github.com/sczhou/ProPainter/releases/tag/v0.1.0"


def read_propainter_file(path: PathLike, released_name: str) -> dict[str, torch.Tensor]:
    """A released ProPainter state dict, on the CPU (CheckpointError naming the file when it cannot be used)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{released_name} not found at {path}; download it from the ProPainter v0.1.0 "
                              f"release ({RELEASE_PAGE}).", missing=(f"{released_name}: not found at {path}",)) from exc
    except Exception as exc:  # truncated or not a torch file
        raise CheckpointError(f"cannot read {path} as {released_name} ({exc}); download it again.",
                              missing=(f"{released_name}: cannot read {path}",)) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a state dict ({released_name} expected)")
    return state


def load_raft(path: PathLike):
    """RAFT from `raft-things.pth` (saved from DataParallel: its keys carry `module.`), on the CPU."""
    from ..prior.propainter.checkpoint import load_state_strict
    from ..prior.propainter.raft import RAFT, strip_data_parallel_prefix

    state = strip_data_parallel_prefix(read_propainter_file(path, RAFT_FILE))
    return load_state_strict(RAFT(), state, str(path), RAFT_FILE)


def load_flow_completion(path: PathLike):
    """The recurrent flow-completion network from `recurrent_flow_completion.pth`, on the CPU."""
    from ..prior.propainter.checkpoint import load_state_strict
    from ..prior.propainter.flow_completion import RecurrentFlowCompleteNet

    state = read_propainter_file(path, FLOW_COMPLETION_FILE)
    return load_state_strict(RecurrentFlowCompleteNet(), state, str(path), FLOW_COMPLETION_FILE)


def load_generator(path: PathLike):
    """The InpaintGenerator from `ProPainter.pth`, on the CPU."""
    from ..prior.propainter.checkpoint import load_state_strict
    from ..prior.propainter.generator import InpaintGenerator

    state = read_propainter_file(path, GENERATOR_FILE)
    return load_state_strict(InpaintGenerator(), state, str(path), GENERATOR_FILE)


def load_propainter(paths: CheckpointPaths, device: Device = "cpu", dtype: torch.dtype = torch.float32,
                    **prior_settings: Any):
    """The ProPainter prior from the three released files (strict loading), its networks on `device`.

    `prior_settings` go to ProPainterPrior (prior_scale, raft_iters, ...).
    """
    from ..prior.propainter import ProPainterPrior

    nets = (
        load_raft(need(paths.raft, "propainter")),
        load_flow_completion(need(paths.flow_completion, "propainter")),
        load_generator(need(paths.propainter, "propainter")),
    )
    with on_device("ProPainter", device):
        return ProPainterPrior(*nets, device=device, dtype=dtype, **prior_settings)
