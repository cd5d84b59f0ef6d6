"""`python -m diffueraser batch INPUT -o OUTDIR [options]`: many videos in one command.

INPUT is a folder (each video with its mask by the naming rule, or `--masks DIR`) or a manifest
(.csv / .jsonl); see `rows.py`. The settings options are the single-video command's, built by
the same code; a manifest's setting columns override them per row. Exit status: 0 when every row
is done or was already done, 1 when any row failed (the report says which and why), 2 when the
batch itself cannot run (bad options, manifest, or output paths; nothing was touched), 130 when
interrupted (Ctrl-C; rerunning the command goes on where it stopped).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional, Sequence

from ..__main__ import add_engine_options
from ..errors import InputError
from ..settings import Settings
from .plan import plan
from .report import Report
from .rows import find_rows

EXIT_OK, EXIT_FAILED_ROWS, EXIT_BAD_BATCH, EXIT_INTERRUPTED = 0, 1, InputError.exit_code, 130
REPORT_NAME = "report.jsonl"
RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'ray>=2.40' (or pip install -r requirements-ray.txt)"


def build_parser() -> argparse.ArgumentParser:
    """The batch command's parser: its own options, then one option per setting as the single-video command."""
    p = argparse.ArgumentParser(
        prog="python -m diffueraser batch",
        description="Erase the masked object from every video of a folder or a manifest. Reruns skip "
                    "finished rows; a failed row does not stop the batch.",
    )
    p.add_argument("input", type=Path, help="a folder of videos, each with its mask NAME.mask.EXT beside it "
                   "(e.g. clip.mp4 + clip.mask.mp4 or clip.mask.png), or a manifest (.csv or .jsonl: columns "
                   "video, mask | prompts | text, output, and any setting)")
    p.add_argument("-o", "--output", dest="out_dir", metavar="OUTDIR", type=Path, required=True,
                   help="output folder: NAME.mp4 per video, records in .diffueraser/, report.jsonl")
    p.add_argument("--masks", type=Path, help="folder of masks named like the videos (NAME.EXT or NAME.mask.EXT)")
    p.add_argument("--report", type=Path, help=f"where the JSON Lines report goes (default: OUTDIR/{REPORT_NAME})")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: no ADDRESS starts Ray here; 'auto' or HOST:PORT joins a running cluster "
                        "(inputs and outputs must be on a path every node sees); put it after INPUT")
    p.add_argument("--workers", type=int, help="with --ray: number of actors (default: one per GPU, or 1 "
                   "CPU worker on a cluster without GPUs)")
    add_engine_options(p, quiet_help="no progress bars and no summary line")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the batch command; returns the exit status (0, 1 or 2)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        base = Settings.from_dict({f.name: getattr(args, f.name) for f in fields(Settings)})
        if args.workers is not None and args.workers < 1:
            raise InputError(f"--workers must be at least 1, got {args.workers}")
        if args.workers is not None and args.ray is None:
            raise InputError("--workers goes with --ray (local mode runs one video at a time in this process)")
        report_path = args.report if args.report is not None else args.out_dir / REPORT_NAME
        jobs = plan(find_rows(args.input, args.out_dir, args.masks), base, report_path)
        if args.ray is not None:
            run = _ray_runner(args)
        else:
            from .local import run_local

            def run(jobs, report):
                run_local(jobs, report, args.weights, args.offline, args.quiet)
        with Report(report_path) as report:
            run(jobs, report)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_BATCH
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run the same command again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
    return EXIT_OK if report.all_succeeded else EXIT_FAILED_ROWS


def _ray_runner(args: argparse.Namespace):
    """The Ray runner bound to the command's options; Ray is imported here and nowhere else."""
    try:
        from .ray_runner import run_ray
    except ModuleNotFoundError as e:
        if e.name == "ray" or (e.name or "").startswith("ray."):
            raise InputError(RAY_MISSING) from None
        raise

    def run(jobs, report):
        run_ray(jobs, report, address=args.ray or None, workers=args.workers, weights_dir=args.weights,
                offline=args.offline, quiet=args.quiet)
    return run
