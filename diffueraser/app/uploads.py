"""What this server accepts: its limits, and the checks an upload passes before any work starts."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping, Optional

from ..errors import InputError
from ..media import VideoInfo, probe

VIDEO_TYPES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
BYTES_PER_MB = 2**20
ENV_PREFIX = "DIFFUERASER_APP_"


@dataclass(frozen=True)
class Limits:
    """What this server accepts. Each field can be set by the environment variable
    DIFFUERASER_APP_<FIELD NAME IN CAPITALS>, read at start."""

    max_seconds: float = 20.0
    """Largest "maximum seconds" a request may ask for; a longer video is trimmed to the request."""
    max_video_seconds: float = 600.0
    """Videos longer than this are refused."""
    max_size: int = 1280
    """Largest "maximum size" (longer side, px) a request may ask for."""
    max_upload_mb: float = 200.0
    """Larger files are refused."""
    gpu_jobs: int = 1
    """Erase jobs run at once (one GPU job per device)."""

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Limits":
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw:
                kind = int if f.type in (int, "int") else float
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise InputError(f"{ENV_PREFIX}{f.name.upper()} must be a number, got {raw!r}") from None
        return cls(**values)


def file_kind(path: str, allowed: tuple[str, ...], what: str) -> str:
    """The file's extension if allowed, else an InputError naming the accepted types."""
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        names = ", ".join(e.lstrip(".") for e in allowed)
        raise InputError(f"{Path(path).name} is not {what}: use {names}.")
    return ext


def check_upload_size(path: str, limits: Limits) -> None:
    size_mb = Path(path).stat().st_size / BYTES_PER_MB
    if size_mb > limits.max_upload_mb:
        raise InputError(f"{Path(path).name} is {size_mb:.1f} MB, over this server's limit of "
                         f"{limits.max_upload_mb:g} MB; shorten or compress it first.")


def check_video(video: Optional[str], mask: Optional[str], limits: Limits) -> VideoInfo:
    """Types, sizes and length of an upload pair; the video's probe when all is well."""
    if not video:
        raise InputError("Upload a video first.")
    if not mask:
        raise InputError("Give a mask: upload a mask video or image (white = remove), or draw on a frame.")
    file_kind(video, VIDEO_TYPES, "a video")
    file_kind(mask, VIDEO_TYPES + IMAGE_TYPES, "a mask video or image")
    for path in (video, mask):
        check_upload_size(path, limits)
    info = probe(video)
    seconds = info.duration or 0.0
    if seconds > limits.max_video_seconds:
        raise InputError(f"The video is {seconds:.0f} s long; this server accepts videos up to "
                         f"{limits.max_video_seconds:g} s. Trim it first.")
    return info


def trimmed_note(info: VideoInfo, max_seconds: Optional[float], limits: Limits) -> Optional[str]:
    """A warning when only the first seconds of the video will be processed, else None."""
    seconds = info.duration or 0.0
    if max_seconds is None or not math.isfinite(seconds) or seconds <= max_seconds + 1 / max(info.fps, 1):
        return None
    return (f"The video is {seconds:.1f} s long: only its first {max_seconds:g} s are processed "
            f"(raise 'Maximum seconds', up to {limits.max_seconds:g} s here).")
