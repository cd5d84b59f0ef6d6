"""Batch throughput: videos per minute in local mode and on a local Ray instance with 1 and 2 workers.

The prior-only engine (weight-free propagation, no checkpoints) on short real clips with a moving
object-sized mask. Times are wall clock for the whole batch, from the first row to the report:
Ray's include starting the actors (each imports torch and the engine once); Ray's own start
(`ray.init`) is timed apart.

    python benchmarks/batch_throughput.py [--videos 8] [--frames 24] [--width 320]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _footage import moving_box_masks  # noqa: E402
from diffueraser.batch.local import run_local  # noqa: E402
from diffueraser.batch.plan import plan  # noqa: E402
from diffueraser.batch.report import Report  # noqa: E402
from diffueraser.batch.rows import find_rows  # noqa: E402
from diffueraser.media import read_video, write_video  # noqa: E402
from diffueraser.settings import Settings  # noqa: E402
from footage import make_clip  # noqa: E402

SETTINGS = Settings(diffusion=False, prior="propagation", seed=0)


def make_videos(folder: Path, count: int, frames: int, width: int) -> None:
    """`count` clips (alternating sources) named by the folder rule, each with a mask video."""
    folder.mkdir(parents=True)
    for i in range(count):
        video = make_clip(folder / f"v{i:02d}.mp4", source=("bikes", "bigbuckbunny")[i % 2], frames=frames,
                          width=width, audio=False)
        clip = read_video(video)
        masks = moving_box_masks(clip.num_frames, clip.height, clip.width)
        write_video(folder / f"v{i:02d}.mask.mp4", np.repeat(masks[..., None], 3, -1).astype(np.uint8) * 255, clip.fps)


def timed(run, folder: Path, out: Path) -> tuple[float, Report]:
    jobs = plan(find_rows(folder, out), SETTINGS)
    with Report(out / "report.jsonl") as report:
        start = time.perf_counter()
        run(jobs, report)
        seconds = time.perf_counter() - start
    assert report.all_succeeded, [o.message for o in report.outcomes if o.message]
    return seconds, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--width", type=int, default=320)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        make_videos(folder, args.videos, args.frames, args.width)
        size = read_video(folder / "v00.mp4").frames.shape
        print(f"{args.videos} videos of {size[0]} frames, {size[2]}x{size[1]}, prior only (propagation)")
        rows = []
        seconds, report = timed(lambda jobs, report: run_local(jobs, report, quiet=True), folder, Path(tmp) / "local")
        rows.append(("local mode (one process)", seconds, report))
        import ray

        from diffueraser.batch.ray_runner import run_ray

        start = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"ray.init(address=\"local\", num_cpus=2): {time.perf_counter() - start:.1f} s")
        for workers in (1, 2):
            seconds, report = timed(lambda jobs, report: run_ray(jobs, report, workers=workers, quiet=True),
                                    folder, Path(tmp) / f"ray{workers}")
            rows.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}", seconds, report))
        ray.shutdown()
    print("| run | wall | videos/min | mean per video (in the worker) |")
    print("|---|---|---|---|")
    for name, seconds, report in rows:
        per_video = np.mean([o.seconds for o in report.outcomes])
        print(f"| {name} | {seconds:.1f} s | {60 * args.videos / seconds:.1f} | {per_video:.2f} s |")


if __name__ == "__main__":
    main()
