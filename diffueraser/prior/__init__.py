"""Priors: a first completion of the masked video that the diffusion model refines.

Every prior is a callable `prior(frames, masks, progress=silent) -> frames` with
`frames` uint8 [T, H, W, 3] RGB at the working size and `masks` bool [T, H, W] (True = hole),
the binarized user mask before DiffuEraser's own erosion/dilation: each prior prepares its
masks the way its released code does. `progress` gets "prior" reports (`progress.Progress`), in
the prior's own units, from done = 0 to done = total.
The result has the input's shape and dtype; pixels outside the holes may change only where the
prior's own dilated mask reaches.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..progress import ProgressFn, silent


class Prior(Protocol):
    def __call__(self, frames: np.ndarray, masks: np.ndarray, progress: ProgressFn = silent) -> np.ndarray: ...
