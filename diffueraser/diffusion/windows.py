"""Which frames are denoised together, and how overlapping windows are merged.

A video longer than one clip is cut into windows of `clip_length` consecutive frames. At even
denoising steps the windows start at frame 0; at odd steps they start half a clip later, so
every window border of one step lies inside a window of the next. Within a step, frames that two
windows share are merged with a linear ramp. Long videos are first denoised on frames sampled
evenly over the whole video ("pre-inference", paper Fig. 7b).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["WindowSchedule", "clip_windows", "RampBlender", "pre_inference_indices"]


@dataclass(frozen=True)
class WindowSchedule:
    """The windows of even steps and of odd (staggered) steps, as ranges of frame indices."""

    even: list[range]
    odd: list[range]

    def for_step(self, step: int) -> list[range]:
        """Windows used at denoising step `step` (0-based)."""
        return self.odd if step % 2 else self.even

    @property
    def clip_length(self) -> int:
        """Frames per window (the requested clip length, or the video length if shorter)."""
        return len(self.even[0])


def clip_windows(num_frames: int, clip_length: int, overlap: int) -> WindowSchedule:
    """The released window layout (`get_frames_context_swap`) for a video of `num_frames` frames.

    Videos shorter than a clip get one window of all their frames. Otherwise windows advance by
    `clip_length - overlap`; the last window always ends at the last frame. Odd steps start with
    a window at frame 0, then continue from half a clip.
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if not 0 <= overlap < clip_length:
        raise ValueError(f"overlap must be from 0 to clip_length - 1, got {overlap} for clip length {clip_length}")
    clip = min(clip_length, num_frames)
    if num_frames == clip:
        return WindowSchedule([range(num_frames)], [range(num_frames)])
    stride = clip - overlap
    tail = range(num_frames - clip, num_frames)
    even = [range(k, k + clip) for k in range(0, num_frames - clip, stride)] + [tail]
    odd = [range(clip)] + [range(k, k + clip) for k in range(clip // 2, num_frames - clip, stride)] + [tail]
    return WindowSchedule(_drop_repeats(even), _drop_repeats(odd))


def _drop_repeats(windows: list[range]) -> list[range]:
    """Remove a window equal to its predecessor (only a clip of one frame produces one)."""
    return [w for i, w in enumerate(windows) if i == 0 or w != windows[i - 1]]


class RampBlender:
    """Writes the windows of one step, in order, into `out` with the released ramp rule.

    The first window is written as is. A later window shares a prefix of k frames with what is
    already written; its frame at position p < k - 1 becomes `old·(1 − r[p]) + new·r[p]` with
    `r = linspace(0, 1, k + 2)[1:-1]`, and positions k − 1 onwards take the new values.
    Windows must come in increasing start order (as `clip_windows` gives them), so the written
    frames are always `[0, covered)`.
    """

    def __init__(self, out: torch.Tensor) -> None:
        self.out = out
        self.covered = 0

    def add(self, window: range, new: torch.Tensor) -> None:
        """Merge the new values `new` [len(window), ...] of frames `window` into `out`."""
        start, stop = window.start, window.stop
        if start > self.covered:
            raise ValueError(f"window {start}..{stop - 1} leaves a gap after frame {self.covered - 1}")
        shared = max(0, min(self.covered, stop) - start)
        keep = max(shared - 1, 0)  # released: the last shared frame is overwritten, not blended
        if keep:
            ramp = torch.linspace(0, 1, shared + 2, dtype=torch.float32)[1:keep + 1]
            ramp = ramp.to(self.out.device, self.out.dtype).view(-1, *([1] * (new.dim() - 1)))
            old = self.out[start:start + keep]
            self.out[start:start + keep] = old * (1 - ramp) + new[:keep] * ramp
        self.out[start + keep:stop] = new[keep:]
        self.covered = max(self.covered, stop)


def pre_inference_indices(num_frames: int, clip_length: int) -> Optional[list[int]]:
    """Frames denoised first, as one clip, for a video longer than two clips; None otherwise.

    The released sampling `int(i · N / clip)` for i < clip.
    """
    if num_frames <= 2 * clip_length:
        return None
    step = num_frames / clip_length
    return [int(i * step) for i in range(clip_length)]
