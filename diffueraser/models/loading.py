"""Strict loading of checkpoint folders in the released layout (config.json + diffusion_pytorch_model.*).

diffusers 0.42.1's `from_pretrained` only warns about missing or unexpected tensors (a missing one stays on the
meta device), and stops at the first wrong shape with advice to re-initialise weights. A user needs one clear
error naming every offending tensor instead, so `StrictCheckpointMixin.from_pretrained` turns all these cases into
a `CheckpointError`. It also drops, quietly, the config.json keys the released classes wrote but never read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import safe_open

from ..errors import CheckpointError

ANY_VALUE = object()
"""Marks a released config key whose value does not matter (the released class ignored it)."""

WEIGHTS_STEM = "diffusion_pytorch_model"
_LISTED = 8  # how many offending tensor names a message lists before "..."

Shapes = Mapping[str, Sequence[int]]


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


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor names and shapes of the weight files in `folder`, read without loading any data; None if none."""
    files = sorted(folder.glob(f"{WEIGHTS_STEM}*.safetensors")) or sorted(folder.glob(f"{WEIGHTS_STEM}*.bin"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as reader:
                shapes.update({k: tuple(reader.get_slice(k).get_shape()) for k in reader.keys()})
        else:
            tensors = torch.load(file, map_location="meta", weights_only=True)
            shapes.update({k: tuple(v.shape) for k, v in tensors.items()})
    return shapes


def compare_shapes(expected: Shapes, found: Shapes) -> str:
    """describe_mismatch() of a checkpoint's tensors (`found`) against a model's (`expected`)."""
    misshaped = [(k, found[k], expected[k]) for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    return describe_mismatch(
        [k for k in expected if k not in found], [k for k in found if k not in expected], misshaped
    )


def _advice(report: str) -> str:
    return f"{report}. The folder is incomplete or holds another model; download it again."


class StrictCheckpointMixin:
    """Mixin for a diffusers ModelMixin/ConfigMixin class: strict `from_pretrained`, released config extras.

    `_released_config_extras` maps the keys a released config.json carries without this class using them to
    the only value that is safe to ignore (or `ANY_VALUE`); another value is refused, not silently ignored.
    """

    _released_config_extras: Mapping[str, Any] = {}

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        config_dict = dict(config_dict)
        for key, allowed in cls._released_config_extras.items():
            if key not in config_dict:
                continue
            value = config_dict.pop(key)
            if allowed is not ANY_VALUE and value != allowed:
                raise CheckpointError(
                    f"{cls.__name__} config: `{key}: {value!r}` is not supported (the released model has {allowed!r})."
                )
        return super().extract_init_dict(config_dict, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """diffusers' `from_pretrained`, refusing a checkpoint whose tensors do not match the model exactly."""
        want_info = kwargs.pop("output_loading_info", False)
        where = Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        except CheckpointError:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            report = cls._diagnose(where)
            reason = _advice(report) if report else str(err)
            raise CheckpointError(f"Cannot load {cls.__name__} from {where}: {reason}") from err
        report = describe_mismatch(info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"])
        if report:
            raise CheckpointError(f"Cannot load {cls.__name__} from {where}: {_advice(report)}")
        return (model, info) if want_info else model

    @classmethod
    def _diagnose(cls, folder: Path) -> str:
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
