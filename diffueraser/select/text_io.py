"""Writing a mask video one frame at a time (the text mask is drawn per frame, never held whole)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .. import media


def write_mask_video(path: media.PathLike, masks: Iterable[np.ndarray], fps: float,
                     protect: Iterable[media.PathLike] = ()) -> Path:
    """Encode uint8 masks [H, W] (255 = remove) with `media.VideoWriter`; `path` may not be any of
    `protect`. White and black shapes read back exactly (media's rule for lossily stored masks)."""
    with media.VideoWriter(path, fps, protect=protect) as writer:
        for mask in masks:
            writer.write(np.repeat(mask[..., None], 3, axis=2))
    return writer.path
