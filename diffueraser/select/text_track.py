"""From lines detected on keyframes to the frames each line is shown on (pure, no pixels).

The detector runs on every `stride`-th frame (a keyframe). Each line it finds (a sighting) knows,
from the cheap edge check, how far before and after its keyframe the same pixels were seen again
(`first`, `last`: contiguous, at most to the neighbouring keyframes). Then:

- a sighting that overlaps a sighting on the next keyframe, or on the one after when the edges
  show the line stayed through the keyframe in between (one miss of the detector is forgiven), is
  drawn on every frame up to it: a box of the same size moves linearly from one to the other (a
  scrolling ticker is followed, not smeared), boxes of different sizes are both drawn (a line
  growing as it scrolls in, a word the detector joined or split); a line the edge check lost
  (busy background) is kept;
- otherwise it is drawn as far as its edges were seen (a line that appears or disappears between
  keyframes is masked from the frame it appears on);
- a sighting linked to no other one is dropped when it lasted under `MIN_FRAMES` frames (a
  one-frame false detection) or when its pixels stayed the same up to a neighbouring keyframe
  where the detector, looking at them again, found nothing (a flickering false detection).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

MIN_FRAMES = 3
"""A line seen on only one keyframe must last this many frames to be kept."""
LINK_OVERLAP = 0.5
"""Two sightings are the same line when their boxes' intersection is this share of the smaller."""
MAX_MISSES = 1
"""Keyframes in a row the detector may miss a line without breaking it."""
SAME_SIZE = 0.15
"""Two linked boxes within this relative size of each other are one box moving (interpolated);
otherwise both are drawn on the frames between."""


@dataclass
class Sighting:
    """A line found on keyframe `key`, with the frames [first, last] its edges were seen on."""

    key: int
    quad: np.ndarray
    """4 × (x, y) in the video's pixels."""
    first: int
    last: int


@dataclass(frozen=True)
class Span:
    """A line drawn on frames [start, stop]: `quad`, or, when `towards` is given, the quadrilateral
    moving linearly from `quad` on frame start to `towards` on frame stop (a line between two
    keyframes that both saw it: a scrolling ticker is followed, not smeared)."""

    quad: np.ndarray
    start: int
    stop: int
    towards: Optional[np.ndarray] = None

    def at(self, t: int) -> list[np.ndarray]:
        """The quadrilaterals drawn on frame t: one moving box, or both ends when the box changed
        size (a line growing as it scrolls in, or another line at the same place)."""
        if self.towards is None or self.stop == self.start:
            return [self.quad]
        if not _same_size(self.quad, self.towards):
            return [self.quad, self.towards]
        w = (t - self.start) / (self.stop - self.start)
        return [(1 - w) * self.quad + w * self.towards]


def _same_size(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two boxes differ in width and height by at most SAME_SIZE of the larger."""
    sa, sb = a.max(axis=0) - a.min(axis=0), b.max(axis=0) - b.min(axis=0)
    return bool(np.all(np.abs(sa - sb) <= SAME_SIZE * np.maximum(sa, sb)))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of the two quadrilaterals' bounding boxes over the smaller box's area."""
    ax0, ay0 = a.min(axis=0)
    ax1, ay1 = a.max(axis=0)
    bx0, by0 = b.min(axis=0)
    bx1, by1 = b.max(axis=0)
    w = min(ax1, bx1) - max(ax0, bx0)
    h = min(ay1, by1) - max(ay0, by0)
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return float(w * h / smaller) if smaller > 0 else 0.0


def spans(sightings: Sequence[Sighting], keyframes: Sequence[int]) -> list[Span]:
    """The frames each sighting is drawn on, after linking and dropping (see the module's docstring)."""
    keys = sorted(set(keyframes))
    position = {k: i for i, k in enumerate(keys)}
    by_key: dict[int, list[Sighting]] = {}
    for s in sightings:
        by_key.setdefault(s.key, []).append(s)

    def linked(s: Sighting, step: int) -> Optional[Sighting]:
        """The same line on the nearest keyframe (`step` = +1 later, -1 earlier), if within reach."""
        p = position[s.key]
        for jump in range(1, MAX_MISSES + 2):
            q = p + step * jump
            if not 0 <= q < len(keys):
                return None
            missed = keys[p + step] if jump > 1 else None
            scored = [(overlap(s.quad, o.quad), i) for i, o in enumerate(by_key.get(keys[q], ()))
                      if missed is None or _seen_through(s, o, missed)]
            best = max(scored, default=(0.0, -1))
            if best[0] >= LINK_OVERLAP:
                return by_key[keys[q]][best[1]]
        return None

    out = []
    for s in sightings:
        after, before = linked(s, +1), linked(s, -1)
        if after is None and before is None and _isolated_false(s, keys, position):
            continue
        if before is None:
            out.append(Span(s.quad, min(s.first, s.key), s.key))
        else:
            out.append(Span(before.quad, before.key, s.key, towards=s.quad))
        if after is None:
            out.append(Span(s.quad, s.key, max(s.last, s.key)))
        else:
            out.append(Span(s.quad, s.key, after.key, towards=after.quad))
    return out


def _seen_through(a: Sighting, b: Sighting, missed: int) -> bool:
    """Whether the pixels of one of the two sightings were still there on the keyframe between them
    that missed the line (else they are two lines shown one after the other at one place)."""
    early, late = (a, b) if a.key < b.key else (b, a)
    return early.last >= missed or late.first <= missed


def _isolated_false(s: Sighting, keys: list[int], position: dict[int, int]) -> bool:
    """A sighting with no partner: too short, or unchanged on a neighbouring keyframe that saw nothing."""
    if s.last - s.first + 1 < MIN_FRAMES:
        return True
    p = position[s.key]
    earlier = keys[p - 1] if p > 0 else None
    later = keys[p + 1] if p + 1 < len(keys) else None
    return (earlier is not None and s.first <= earlier) or (later is not None and s.last >= later)


def frames_of(all_spans: Sequence[Span], count: int) -> Iterator[list[np.ndarray]]:
    """For frames 0 .. count-1 in order, the quadrilaterals drawn on each (a sweep: no per-frame table)."""
    ordered = sorted(all_spans, key=lambda s: s.start)
    active: list[Span] = []
    at = 0
    for t in range(count):
        while at < len(ordered) and ordered[at].start <= t:
            active.append(ordered[at])
            at += 1
        active = [s for s in active if s.stop >= t]
        yield [quad for s in active for quad in s.at(t)]
