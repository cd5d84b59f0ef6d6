"""The union of several mask files (videos or images) for one video, streamed frame by frame.

Masks from several sources combine: detected text, tracked objects, a drawn or uploaded mask.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .. import media
from ..errors import InputError
from .text_io import write_mask_video


def union_mask_files(paths: Sequence[media.PathLike], video: media.PathLike, output: media.PathLike,
                     max_seconds: float | None = None) -> Path:
    """Write to `output` the mask video that removes what any of `paths` removes (aligned to
    `video` in time and size, as the engine aligns each). InputError for a mask the engine would refuse."""
    paths = [p for p in paths if p]
    if not paths:
        raise InputError("no mask to combine")
    stream = media.VideoStream(video, max_seconds=max_seconds)
    count = stream.expected_frames
    masks = [iter(media.MaskStream(p, stream.fps, count, stream.height, stream.width)) for p in paths]

    def frames():
        for _ in range(count):
            union = np.zeros((stream.height, stream.width), bool)
            for m in masks:
                union |= next(m)
            yield union.astype(np.uint8) * 255

    return write_mask_video(output, frames(), stream.fps, protect=[video, *paths])
