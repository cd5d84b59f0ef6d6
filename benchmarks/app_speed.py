"""Time of one page request with the weight-free engine, stage by stage, against the cost model.

Runs `app.jobs.erase` (what the page's Erase runs after the mask source) on the project's
examples at a few lengths, and prints per stage the wall time and the CPU time (this process and
the ffmpeg processes it waited for). On a machine shared with other work the wall time grows with
the load; the CPU time stays close to what a quiet machine's wall time would be, so the page's
cost model (`diffueraser/cost.py`) is compared with both.

    python benchmarks/app_speed.py [--seconds 1 2] [--max-size 960]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from diffueraser import media  # noqa: E402
from diffueraser.app import LADDER, EngineState, Limits, jobs  # noqa: E402
from diffueraser.cost import estimate_app_seconds  # noqa: E402
from diffueraser.engine import Eraser  # noqa: E402


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Stages:
    """Wall and CPU seconds per progress stage (the part before the first report is "checks")."""

    def __init__(self) -> None:
        self.stage, self.wall, self.cpu = "checks", time.perf_counter(), cpu_seconds()
        self.times: dict[str, list[float]] = {}

    def __call__(self, fraction: float, desc: str = "") -> None:
        stage = desc.split(":")[0].split(" ·")[0]
        if stage != self.stage:
            self.close()
            self.stage = stage

    def close(self) -> None:
        wall, cpu = time.perf_counter(), cpu_seconds()
        spent = self.times.setdefault(self.stage, [0.0, 0.0])
        spent[0] += wall - self.wall
        spent[1] += cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--max-size", type=int, default=960)
    args = parser.parse_args(argv)
    from examples.make_examples import existing, make_all

    examples = existing() or make_all()
    rung = LADDER[-1]
    jobs.SERVED = jobs.Served(EngineState(Eraser.from_pretrained(settings=rung.settings, local_files_only=True),
                                          rung, []), Limits(max_seconds=60, max_size=args.max_size))
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    print("| clip | frames | size | stages, wall / CPU s | total wall | total CPU | cost model |")
    print("|---|---|---|---|---|---|---|")
    for ex in examples:
        info = media.probe(ex.video)
        for seconds in args.seconds:
            stages = Stages()
            wall, cpu = time.perf_counter(), cpu_seconds()
            jobs.erase(str(ex.video), str(ex.mask), {"max_seconds": seconds, "max_size": args.max_size}, stages)
            stages.close()
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            frames = min(info.frames, round(seconds * info.fps))
            settings = rung.settings.replace(max_seconds=seconds, max_size=args.max_size)
            model = estimate_app_seconds(frames, info.height, info.width, settings, "cpu")
            parts = ", ".join(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in stages.times.items())
            print(f"| {ex.name} | {frames} | {info.width}×{info.height} | {parts} | {wall:.1f} s | {cpu:.1f} s "
                  f"| {model:.1f} s |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
