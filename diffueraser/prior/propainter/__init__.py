"""ProPainter, as DiffuEraser uses it for its prior: RAFT flows, flow completion, propagation and
the InpaintGenerator, weight-compatible with the released v0.1.0 checkpoints.

Submodules import lazily so that e.g. `deform_conv` can be used without the rest.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ProPainterPrior": ".runner",
    "InpaintGenerator": ".generator",
    "RAFT": ".raft",
    "RecurrentFlowCompleteNet": ".flow_completion",
    "deform_conv2d": ".deform_conv",
    "flow_warp": ".propagation",
    "img_propagation": ".propagation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
