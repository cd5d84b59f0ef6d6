"""`python -m diffueraser mask VIDEO -o MASK.mp4`: make a mask video by clicks, boxes or words,
tracked through the whole video (and by text detection, with the text options).

    python -m diffueraser mask in.mp4 -o mask.mp4 --box 120,40,260,200@0 --point 180,90@30
    python -m diffueraser mask in.mp4 -o mask.mp4 --object 1 --point 100,80 --object 2 --box 300,50,380,200
    python -m diffueraser mask in.mp4 -o mask.mp4 --text "the red car"

Prompts are in the input video's pixels; `@FRAME` picks the frame (0 when omitted). `--object N`
makes the prompts after it belong to object N (1 until given); the mask is the union of all objects.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ..errors import InputError, UserError
from ..progress import ProgressFn, TqdmProgress
from . import text_options

TRACKER_CHOICES = ("auto", "sam2", "sam2-tiny", "sam2-base-plus", "sam2-large", "edgetam", "sam3", "flow")
PROMPT_DESTINATION = "prompt_steps"


class _Step(argparse.Action):
    """Records each --point / --negative / --box with the object current when it was given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        steps = list(getattr(namespace, PROMPT_DESTINATION, None) or [])
        steps.append((self.const, values, getattr(namespace, "current_object", 1)))
        setattr(namespace, PROMPT_DESTINATION, steps)


class _Object(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values < 1:
            parser.error(f"--object must be 1 or more, got {values}")
        namespace.current_object = values
        setattr(namespace, self.dest, values)


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """The prompt options (also used by the erase command)."""
    group = parser.add_argument_group("select what to remove (clicks, boxes, words; tracked through the video)")
    group.add_argument("--point", action=_Step, const="point", metavar="X,Y[@FRAME]",
                       help="a click on the object (repeatable)")
    group.add_argument("--negative", action=_Step, const="negative", metavar="X,Y[@FRAME]",
                       help="a click on something that is not the object (repeatable)")
    group.add_argument("--box", action=_Step, const="box", metavar="X0,Y0,X1,Y1[@FRAME]",
                       help="a box around the object (repeatable, one per object and frame)")
    group.add_argument("--text", metavar="WORDS", help='words naming what to remove, e.g. "the red car": every instance on every frame is '
                            'masked (needs SAM 3, facebook/sam3; gated, so a Hugging Face token)')
    group.add_argument("--object", type=int, action=_Object, default=1, metavar="N",
                       help="the prompts after this option belong to object N (default 1)")
    group.add_argument("--tracker", choices=TRACKER_CHOICES, default="auto",
                       help="auto: the best checkpoint at hand, else flow (the weight-free tracker); "
                            "sam2 is SAM 2.1 small; sam3 reads words (default: auto)")
    parser.set_defaults(**{PROMPT_DESTINATION: []}, current_object=1)


def prompts_from_args(args: argparse.Namespace):
    """The Prompts the options gave, or None when none were given."""
    from .prompts import prompts_from_options

    steps = getattr(args, PROMPT_DESTINATION, None) or []
    text = getattr(args, "text", None)
    if not steps and text is None:
        return None
    return prompts_from_options(steps, text=text, text_object=getattr(args, "current_object", 1))


@contextmanager
def tracked_mask(args: argparse.Namespace, progress: Optional[ProgressFn] = None,
                 max_seconds: Optional[float] = None) -> Iterator[Path]:
    """For the erase command: the MASK it was given, or, when prompts were given instead, a mask
    video tracked from them into a temporary folder (removed on leaving). InputError for both or neither."""
    prompts = prompts_from_args(args)
    if prompts is None:
        if args.mask is None:
            raise InputError("give a MASK (a mask video or image), or select what to remove with "
                             "--point, --box or --text")
        yield args.mask
        return
    if args.mask is not None:
        raise InputError(f"give a MASK ({args.mask}) or prompts (--point, --box, --text), not both")
    from .track import track_to_file

    with tempfile.TemporaryDirectory(prefix="diffueraser-mask-") as folder:
        mask = Path(folder) / "tracked-mask.mp4"
        report = track_to_file(args.video, prompts, mask, tracker=args.tracker, weights_dir=args.weights,
                               local_files_only=args.offline, max_seconds=max_seconds, progress=progress)
        print(f"tracker: {report.tracker} ({report.note}); {report.describe()}", file=sys.stderr)
        yield mask


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffueraser mask",
                                description="Write a mask video (white = remove) of what you point at, "
                                            "tracked through the whole video.")
    p.add_argument("video", type=Path, help="input video")
    p.add_argument("-o", "--output", type=Path, required=True, help="mask video to write (.mp4)")
    p.add_argument("--weights", type=Path, help="weights directory; default: $DIFFUERASER_WEIGHTS, ./weights, "
                   "then the Hugging Face cache/download")
    p.add_argument("--offline", action="store_true", help="never download; use local or cached checkpoints only")
    p.add_argument("--max-seconds", type=float, default=None, help="only the first seconds of the video")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when present)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_prompt_options(p)
    text_options.add_text_options(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the mask command; returns 0 or the UserError's exit code."""
    args = build_parser().parse_args(argv)
    try:
        from ..outputs import check_outputs

        check_outputs({"input video": args.video}, {"mask": args.output})
        if args.max_seconds is not None and not args.max_seconds > 0:
            raise InputError(f"--max-seconds must be positive, got {args.max_seconds:g}")
        prompts = prompts_from_args(args)
        detect = bool(args.detect_text)
        if prompts is None and not detect:
            raise InputError("nothing to select: give --point, --box or --text, or --detect-text")
        if prompts is not None and detect:
            raise InputError("give prompts (--point, --box, --text) or --detect-text, not both")
        if args.text_region is not None and not detect:
            raise InputError("--region applies to text detection: add --detect-text")
        if detect:
            report = text_options.text_masks_from_args(args, args.video, args.output, max_seconds=args.max_seconds)
            if not args.quiet:
                print(text_options.describe(report), file=sys.stderr)
            if report.warning:
                print(f"warning: {report.warning}", file=sys.stderr)
            return 0
        from .track import track_to_file

        with TqdmProgress(enabled=not args.quiet) as bars:
            report = track_to_file(args.video, prompts, args.output, tracker=args.tracker, weights_dir=args.weights,
                                   local_files_only=args.offline, max_seconds=args.max_seconds, progress=bars,
                                   device=args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if args.tracker == "auto" or not args.quiet:
        print(f"tracker: {report.tracker} ({report.note})", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {args.output}: {report.describe()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
