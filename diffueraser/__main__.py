"""Command line: `python -m diffueraser VIDEO MASK -o OUT [options]`."""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import CheckpointError, InputError
from .settings import Settings

EXIT_BAD_INPUT = 2
EXIT_MISSING_CHECKPOINT = 3


def _option_type(annotation: Any):
    """argparse `type` and `choices` for a Settings annotation (Optional[...] accepts 'none')."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    inner = next((a for a in args if a is not type(None)), annotation) if optional else annotation
    choices = list(typing.get_args(inner)) if typing.get_origin(inner) is typing.Literal else None
    base = str if choices else inner

    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    convert.__name__ = getattr(base, "__name__", "value")
    return convert, choices


def build_parser() -> argparse.ArgumentParser:
    """The parser; one option per Settings field, with the field's help text and default."""
    p = argparse.ArgumentParser(
        prog="python -m diffueraser",
        description="Remove the masked object or watermark from a video with DiffuEraser.",
    )
    p.add_argument("video", type=Path, help="input video (mp4, mov, webm, mkv, avi)")
    p.add_argument("mask", type=Path, help="mask video, or one mask image used for every frame (white = remove)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output mp4 (H.264, audio kept)")
    p.add_argument("--prior-output", type=Path, help="also write the prior's result to this mp4")
    p.add_argument("--weights", type=Path, help="weights directory (released `weights/` layout); default: "
                   "$DIFFUERASER_WEIGHTS, ./weights, then the Hugging Face cache/download")
    p.add_argument("--offline", action="store_true", help="never download; use local or cached checkpoints only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata['help']} (default: {f.default})"
        if hints[f.name] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            convert, choices = _option_type(hints[f.name])
            p.add_argument(flag, type=convert, choices=choices, default=f.default, help=help_)
    return p


class _StageBars:
    """One tqdm bar per stage of the engine's progress reports."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.stage, self.bar = enabled, None, None

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        name = stage.split(" ", 1)[0]
        if name != self.stage:
            self.close()
            self.stage, self.bar = name, tqdm(total=1000, desc=name, unit="‰", leave=True, file=sys.stderr)
        self.bar.set_postfix_str(stage[len(name):].strip())
        self.bar.n = int(round(fraction * 1000))
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    bars = _StageBars(enabled=not args.quiet)
    try:
        from .engine import Eraser

        settings = Settings.from_dict({f.name: getattr(args, f.name) for f in fields(Settings)})
        eraser = Eraser.from_pretrained(settings, weights_dir=args.weights, local_files_only=args.offline)
        result = eraser(args.video, args.mask, settings=settings, progress=bars)
        result.save(args.output, audio_from=args.video)
        if args.prior_output is not None and result.prior is not None:
            result.save_prior(args.prior_output)
    except InputError as e:
        bars.close()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CheckpointError as e:
        bars.close()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_MISSING_CHECKPOINT
    bars.close()
    if not args.quiet:
        print(f"wrote {args.output} ({len(result.frames)} frames, seed {result.seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
