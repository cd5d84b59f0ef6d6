"""Command line: `python -m diffueraser VIDEO MASK -o OUT [options]` erases; `python -m diffueraser
mask ...` makes a mask, `python -m diffueraser batch ...` works through many videos."""
from __future__ import annotations

import argparse
import importlib
import sys
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import CheckpointError, DeviceError, InputError, UserError
from .outputs import check_outputs
from .progress import TqdmProgress
from .settings import Settings, is_optional, kind, knobs

EXIT_BAD_INPUT = InputError.exit_code
EXIT_MISSING_CHECKPOINT = CheckpointError.exit_code
EXIT_DEVICE = DeviceError.exit_code
# Subcommands live with what they drive; each module has `main(argv) -> int`.
SUBCOMMANDS = {"mask": "diffueraser.select.command", "batch": "diffueraser.batch.command"}
OUT_OF_MEMORY = "out of memory while erasing ({}); lower --max-size or --max-seconds, or use another --device"


def _option(name: str) -> dict[str, Any]:
    """argparse keywords for one setting: converter, choices, help, from its knob ('none' for None)."""
    k, value_kind, optional = knobs()[name], kind(name), is_optional(name)

    def convert(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        return value_kind(text)

    convert.__name__ = value_kind.__name__
    default = next(f.default for f in fields(Settings) if f.name == name)
    none = f"; 'none': {k.none}" if k.none else ""
    if value_kind is bool:
        return dict(action=argparse.BooleanOptionalAction, default=default, help=f"{k.help} (default: {default})")
    # Choices are shown, not enforced here: Settings refuses a bad value with its own message.
    metavar = "{" + ",".join(map(str, k.choices)) + "}" if k.choices else None
    return dict(type=convert, metavar=metavar, default=default, help=f"{k.help} (default: {default}{none})")


def add_engine_options(p: argparse.ArgumentParser, quiet_help: str = "no progress bars") -> None:
    """Where checkpoints come from, -q, and one option per setting: shared by erase and batch."""
    p.add_argument("--weights", type=Path, help="weights directory (released `weights/` layout); default: "
                   "$DIFFUERASER_WEIGHTS, ./weights, then the Hugging Face cache/download")
    p.add_argument("--offline", action="store_true", help="never download; use local or cached checkpoints only")
    p.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    for name in knobs():
        p.add_argument("--" + name.replace("_", "-"), **_option(name))


def build_parser() -> argparse.ArgumentParser:
    """The parser; one option per Settings field, with the field's help text and default."""
    p = argparse.ArgumentParser(
        prog="python -m diffueraser",
        description="Remove the masked object or watermark from a video with DiffuEraser.",
    )
    p.add_argument("video", type=Path, help="input video (mp4, mov, webm, mkv, avi)")
    p.add_argument("mask", type=Path, nargs="?", help="mask video, or one mask image used for every frame "
                   "(white = remove); omit it when selecting with --point/--box/--text")
    p.add_argument("-o", "--output", type=Path, required=True, help="output mp4 (H.264, audio kept)")
    p.add_argument("--prior-output", type=Path, help="also write the prior's result to this mp4")
    add_engine_options(p)
    from .select.command import add_prompt_options
    from .select.text_options import add_text_options

    add_prompt_options(p)
    add_text_options(p, region_flag="--text-region")  # --region is the crop setting here
    return p


def check_arguments(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse, before any model is loaded, outputs that would overwrite an input or each other, or
    that cannot be written, and a --prior-output that no prior would fill."""
    check_outputs({"input video": args.video, "mask": args.mask},
                  {"output": args.output, "prior output": args.prior_output})
    if args.prior_output is not None and settings.prior == "none":
        raise InputError(f"--prior-output {args.prior_output} was given but --prior none makes no prior video; "
                         f"drop --prior-output or choose a prior")


def trimmed_note(result: Any, settings: Settings) -> Optional[str]:
    """How much of the video was processed, when --max-seconds cut it short; else None."""
    whole = result.source_duration
    if settings.max_seconds is None or whole is None or whole <= settings.max_seconds + 1 / result.fps:
        return None
    return (f"note: processed the first {result.duration:.1f} s of {whole:.1f} s "
            f"(--max-seconds {settings.max_seconds:g}; --max-seconds none processes the whole video)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0, or the UserError's `exit_code`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_dict({f.name: getattr(args, f.name) for f in fields(Settings)})
        check_arguments(args, settings)
        from .select.command import prompts_from_args, tracked_mask
        from .select.text_options import with_detected_text

        # Masks from the given file, tracked prompts and detected text combine (their union).
        text_only = args.detect_text and args.mask is None and prompts_from_args(args) is None
        with TqdmProgress(enabled=not args.quiet) as bars, \
                (nullcontext(None) if text_only else tracked_mask(args, bars, settings.max_seconds)) as given, \
                with_detected_text(args, args.video, given, settings.max_seconds, bars) as mask:
            args.mask = mask
            from .engine import Eraser

            eraser = Eraser.from_pretrained(settings, weights_dir=args.weights, local_files_only=args.offline)
            result = eraser.erase_file(args.video, args.mask, args.output, settings=settings, progress=bars,
                                       prior_output=args.prior_output)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except MemoryError as e:
        print("error: " + OUT_OF_MEMORY.format(_first_line(e)), file=sys.stderr)
        return EXIT_DEVICE
    except RuntimeError as e:
        torch = sys.modules.get("torch")  # loaded by the engine by now; not imported for --help
        if torch is None or not isinstance(e, torch.OutOfMemoryError):
            raise
        print("error: " + OUT_OF_MEMORY.format(_first_line(e)), file=sys.stderr)
        return EXIT_DEVICE
    note = trimmed_note(result, settings)
    if note:
        print(note, file=sys.stderr)
    if not args.quiet:
        print(f"wrote {args.output} ({result.num_frames} frames, seed {result.seed})", file=sys.stderr)
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
