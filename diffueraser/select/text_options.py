"""Command-line options of text detection, shared by `python -m diffueraser mask` and the erase command.

    python -m diffueraser mask VIDEO --detect-text [--region full|bottom|top|X0,Y0,X1,Y1] -o MASK.mp4

`add_text_options(parser)` adds `--detect-text` and `--region` (`--text-region` on the erase
command, whose `--region` is the crop setting); `text_masks_from_args(args, video, output)` runs
the detection when `--detect-text` was given.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from .. import media
from ..errors import InputError
from ..progress import ProgressFn
from .text import REGION_HELP, TextReport, parse_region, text_mask_to_file


def add_text_options(parser: argparse.ArgumentParser, region_flag: str = "--region") -> None:
    """Add `--detect-text` and the search region's option (`region_flag`) to a parser."""
    group = parser.add_argument_group("text detection (subtitles, captions, on-screen text)")
    group.add_argument("--detect-text", action="store_true",
                       help="mask burnt-in text found by a text detector (no mask needed)")
    group.add_argument(region_flag, dest="text_region", default=None, metavar="REGION",
                       help=f"where to look for text: {REGION_HELP} (default: full)")
    parser.set_defaults(text_region_flag=region_flag)


def _region_flag(args: argparse.Namespace) -> str:
    return getattr(args, "text_region_flag", "--region")


def text_masks_from_args(args: argparse.Namespace, video: media.PathLike, output: media.PathLike,
                         max_seconds: Optional[float] = None,
                         progress: Optional[ProgressFn] = None) -> Optional[TextReport]:
    """With `--detect-text`: detect the text of `video` and write its mask video to `output`, and
    return the report (a large hole's warning is in `report.warning`). Without it: None.
    InputError for `--region` without `--detect-text`, a bad region, or no text found."""
    region = getattr(args, "text_region", None)
    if not getattr(args, "detect_text", False):
        if region is not None:
            raise InputError(f"{_region_flag(args)} applies to text detection: add --detect-text")
        return None
    parse_region(region)  # a bad region is refused before the video is read
    return text_mask_to_file(video, output, region=region or "full", max_seconds=max_seconds, progress=progress)


@contextmanager
def with_detected_text(args: argparse.Namespace, video: media.PathLike, mask: Optional[media.PathLike],
                       max_seconds: Optional[float] = None,
                       progress: Optional[ProgressFn] = None) -> Iterator[Optional[Path]]:
    """For the erase command: the mask to erase with. Without `--detect-text`, `mask` as given;
    with it, the detected text's mask, or its union with `mask` when one was given too (written in
    a temporary folder, removed on leaving). Prints the detection's line and any warning to stderr."""
    if not getattr(args, "detect_text", False):
        if getattr(args, "text_region", None) is not None:
            raise InputError(f"{_region_flag(args)} applies to text detection: add --detect-text")
        yield None if mask is None else Path(mask)
        return
    with tempfile.TemporaryDirectory(prefix="diffueraser-text-") as folder:
        text = Path(folder) / "text-mask.mp4"
        report = text_masks_from_args(args, video, text, max_seconds=max_seconds, progress=progress)
        print(describe(report), file=sys.stderr)
        if report.warning:
            print(f"warning: {report.warning}", file=sys.stderr)
        if mask is None:
            yield text
            return
        from .combine import union_mask_files

        yield union_mask_files([mask, text], video, Path(folder) / "mask.mp4", max_seconds=max_seconds)


def describe(report: TextReport) -> str:
    """One line for the terminal."""
    return (f"text mask: {report.frames_with_mask} of {report.frames} frames, "
            f"{report.mean_area:.1%} of the frame on average ({report.detections} detections, "
            f"region {report.region}, {report.seconds:.1f} s)")
