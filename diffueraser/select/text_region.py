"""Where text is looked for: the whole frame, the bottom or top band, or a rectangle in pixels."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import InputError

BAND_SHARE = 1 / 3
"""Height of the 'bottom' and 'top' bands, as a share of the frame: where subtitles and tickers sit."""
NAMED = ("full", "bottom", "top")
REGION_HELP = "full, bottom, top, or a rectangle X0,Y0,X1,Y1 in the video's pixels"


@dataclass(frozen=True)
class Region:
    """A named band, or a rectangle [x0, x1) × [y0, y1) in the video's pixels."""

    name: str
    """'full', 'bottom', 'top' or 'rect'."""
    box: Optional[tuple[int, int, int, int]] = None
    """(x0, y0, x1, y1) when `name` is 'rect'."""

    def __str__(self) -> str:
        return ",".join(map(str, self.box)) if self.box else self.name

    def rect(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the region in a `width` × `height` frame; InputError when a rectangle
        does not lie inside the frame."""
        band = max(1, round(height * BAND_SHARE))
        if self.name == "full":
            return 0, 0, width, height
        if self.name == "bottom":
            return 0, height - band, width, height
        if self.name == "top":
            return 0, 0, width, band
        x0, y0, x1, y1 = self.box
        if x1 > width or y1 > height:
            raise InputError(f"the text region {self} reaches outside the {width}×{height} frame: "
                             f"give X0,Y0,X1,Y1 with X1 <= {width} and Y1 <= {height}")
        return x0, y0, x1, y1


def parse_region(text: Union[str, Region, None]) -> Region:
    """A Region from 'full', 'bottom', 'top' or 'X0,Y0,X1,Y1' (pixels; empty means 'full').

    InputError naming the region when it is none of these or its rectangle has no area."""
    if isinstance(text, Region):
        return text
    raw = "" if text is None else str(text).strip()
    value = raw.lower()
    if value in ("", "full", "all", "whole"):
        return Region("full")
    if value in NAMED:
        return Region(value)
    parts = [p for p in re.split(r"[\s,;]+", value.strip("()[]")) if p]
    if len(parts) != 4:
        raise InputError(f"unknown text region {raw!r}: give {REGION_HELP}")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"unknown text region {raw!r}: give {REGION_HELP}") from None
    if any(n != int(n) for n in numbers):
        raise InputError(f"the text region {raw!r} must be whole pixels: X0,Y0,X1,Y1")
    x0, y0, x1, y1 = (int(n) for n in numbers)
    if min(x0, y0) < 0:
        raise InputError(f"the text region {raw!r} starts outside the frame: X0 and Y0 must be >= 0")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"the text region {raw!r} has no area: it needs X1 > X0 and Y1 > Y0")
    return Region("rect", (x0, y0, x1, y1))
