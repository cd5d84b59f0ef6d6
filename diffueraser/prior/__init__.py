"""Priors: a first completion of the masked video that the diffusion model refines.

Every prior is a callable `prior(frames, masks, progress=None) -> frames` with
`frames` uint8 [T, H, W, 3] RGB at the working size and `masks` bool [T, H, W] (True = hole),
the binarized user mask before DiffuEraser's own erosion/dilation: each prior prepares its
masks the way its released code does. `progress(fraction)` is called with values in [0, 1].
The result has the input's shape and dtype; pixels outside the holes may change only where the
prior's own dilated mask reaches.
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol

import numpy as np

Progress = Optional[Callable[[float], None]]


class Prior(Protocol):
    def __call__(self, frames: np.ndarray, masks: np.ndarray, progress: Progress = None) -> np.ndarray: ...
