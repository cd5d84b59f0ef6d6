"""Strict loading of diffusers checkpoint folders (config.json + diffusion_pytorch_model.*).

diffusers 0.42.1's `from_pretrained` only warns about missing or unexpected tensors (a missing one stays on the
meta device), and stops at the first wrong shape with advice to re-initialise weights. A user needs one clear
error naming every offending tensor instead, so `load_strict` turns all these cases into a `CheckpointError`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, TypeVar

import torch

from ..errors import CheckpointError
from .files import checkpoint_shapes

_LISTED = 8  # how many offending tensor names a message lists before "..."

Shapes = Mapping[str, Sequence[int]]
Model = TypeVar("Model")


def _names(items: list[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _LISTED else "")


def describe_mismatch(
    missing: Sequence[str], unexpected: Sequence[str], misshaped: Sequence[tuple[str, Sequence[int], Sequence[int]]]
) -> str:
    """One line naming missing, unexpected and wrongly shaped tensors ((name, file shape, model shape)); '' if none."""
    problems = []
    if missing:
        problems.append(f"missing tensors: {_names(list(missing))}")
    if unexpected:
        problems.append(f"unexpected tensors: {_names(list(unexpected))}")
    if misshaped:
        shapes = [f"{key} (file {tuple(got)}, model {tuple(want)})" for key, got, want in misshaped]
        problems.append(f"wrong shapes: {_names(shapes)}")
    return "; ".join(problems)


def compare_shapes(expected: Shapes, found: Shapes) -> str:
    """describe_mismatch() of a checkpoint's tensors (`found`) against a model's (`expected`)."""
    misshaped = [(k, found[k], expected[k]) for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    return describe_mismatch(
        [k for k in expected if k not in found], [k for k in found if k not in expected], misshaped
    )


def _advice(report: str) -> str:
    return f"{report}. The folder is incomplete or holds another model; download it again."


def load_strict(cls: type[Model], folder: Path, dtype: torch.dtype = torch.float32) -> Model:
    """`cls.from_pretrained(folder)` on the CPU in `dtype`, refusing a checkpoint whose tensors do not match exactly.

    The CheckpointError names every missing, unexpected and wrongly shaped tensor.
    """
    folder = Path(folder)
    try:
        model, info = cls.from_pretrained(folder, torch_dtype=dtype, output_loading_info=True)
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        report = _diagnose(cls, folder)
        reason = _advice(report) if report else str(err)
        raise CheckpointError(f"Cannot load {cls.__name__} from {folder}: {reason}") from err
    report = describe_mismatch(info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"])
    if report:
        raise CheckpointError(f"Cannot load {cls.__name__} from {folder}: {_advice(report)}")
    return model


def _diagnose(cls: type, folder: Path) -> str:
    """Every tensor of a local folder that does not fit the model its config.json describes ('' if unknown)."""
    try:
        found = checkpoint_shapes(folder) if folder.is_dir() else None
        if found is None:
            return ""
        with torch.device("meta"):
            model = cls.from_config(cls.load_config(folder))
        expected = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    except Exception:  # a diagnosis only: any failure here leaves diffusers' own message
        return ""
    return compare_shapes(expected, found)
