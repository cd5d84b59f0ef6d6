"""Reading and writing videos, and reading masks, with the ffmpeg binary of imageio-ffmpeg.

Videos come in as uint8 RGB frames [T, H, W, 3] at a constant frame rate; they go out as
H.264/yuv420p mp4 (BT.709, `+faststart`) that browsers play, with the source's audio carried
over. Masks come in as a mask video, a mask image or an array, and leave as bool [T, H, W]
(True = remove) aligned to the video in time and size. Anything the user gave that cannot be used
raises `InputError` with a message that says why.

Frame timing. The packet timestamps are read first (a demux pass, no decoding). When every
frame lies within half a frame of the grid of the stream's stated rate, the file is constant
rate: every decoded frame is kept, at that exact rate (30000/1001 stays 30000/1001). Otherwise
(variable frame rate: phone and screen recordings, joined clips) the frames are resampled to a
constant rate with ffmpeg's `fps` filter, each frame going to its nearest slot and an empty slot
repeating the frame before: to the stated rate when only a few frames are missing (a dropped
frame, a cut: at most 10% repeats, nothing dropped), else to the average rate, frames ÷
duration, where frames repeat or drop as the rate departed from the average. Either way the
frame count ÷ rate equals the duration, so the output lasts as long as the input and its audio
stays in sync. Writing the source's own timestamps back was not chosen: a raw-frame pipe carries
no timestamps, ffmpeg has no way to give piped frames a list of timestamps, and the models and
the mask alignment assume equally spaced frames.

Mask binarisation. A file stored losslessly (PNG, BMP, GIF, lossless TIFF or WebP; FFV1, PNG,
raw, HuffYUV, Ut Video, QuickTime RLE... video; H.264/HEVC whose x264/x265 settings say
lossless) keeps the released rule: a pixel is masked when its luma is > 0. A lossily stored one
(JPEG, lossy WebP, JPEG-compressed TIFF, JPEG 2000; any other video codec) is masked where its
brightest channel is at least mid-grey (>= 128): compression noise around the shapes' edges
would otherwise grow the mask (measured on drawn shapes: JPEG q75 +15%, lossy WebP q75 +27%,
H.264 crf 18 +9%, crf 23 +15%; with the threshold they read back exactly). Arrays keep
the released rule; an alpha channel that is not fully opaque (a sketch layer) is alpha > 0.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np

from .errors import InputError
from .masks import resize_masks

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Mask files read as one static mask for every frame."""
DEFAULT_CRF = 18
"""x264 quality: visually lossless for this kind of footage."""
AUDIO_BITRATE = "192k"
MIN_MASK_COVERAGE = 0.9
"""A mask video must last at least this fraction of the video; the rest reuses its last frame."""
MIN_DECODED_FRACTION = 0.9
"""Fewer decoded frames than this fraction of the stated duration, with decoder errors: damaged."""
ASPECT_TOLERANCE = 0.03
"""Relative aspect-ratio difference still taken as the same shape (e.g. a side floored to 8 px)."""
ACCURATE_SWSCALE = "accurate_rnd+full_chroma_int"
"""swscale's default YUV->RGB rounding darkens every channel by ~1.4 levels; these flags do not."""
FALLBACK_FPS = 25.0
"""Used only when a stream states no frame rate at all."""
TIME_EPSILON = 1e-6
"""Slack in frame-time comparisons, in frames, against float rounding."""
CONSTANT_RATE_SLACK = 0.5
"""A stream is constant-rate when every frame lies within this many frames of its rate's grid."""
GAP_ALLOWANCE = 0.1
"""Resampling a variable-rate stream at its stated rate may add this fraction of repeated frames."""
RATE_DENOMINATOR = 1001
"""Largest denominator of a resampled (average) frame rate: 20000/1001 rather than 19.98002..."""
LOSSY_MASK_LEVEL = 128
"""In a lossily stored mask, a pixel whose brightest channel reaches this level is masked."""
LOSSLESS_VIDEO_CODECS = frozenset({
    "png", "apng", "ffv1", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "qtrle", "gif",
    "zlib", "zmbv", "bmp", "tiff", "lagarith", "v210", "v410", "r210", "yuv4",
})
"""ffmpeg decoder names of mask videos read with the released rule (> 0): always lossless."""
LOSSY_IMAGE_FORMATS = frozenset({"JPEG", "MPO", "JPEG2000"})
"""PIL formats of mask images that are always lossy (WebP and TIFF are checked per file)."""
ENCODER_SETTINGS_BYTES = 8 << 20
"""How far into a mask video to look for x264/x265's settings (in the first frame, after the index)."""
# PIL's convert("L") in fixed point; the released code binarizes this luma (> 0).
_LUMA_WEIGHTS = (19595, 38470, 7471)
_LUMA_HALF = 1 << 15
_NO_PTS = -(1 << 63)
"""AV_NOPTS_VALUE: a packet without a presentation timestamp."""


@dataclass
class Video:
    """Decoded frames and what is needed to write them back (frame rate, audio source)."""

    frames: np.ndarray
    """uint8 [T, H, W, 3] RGB."""
    fps: float
    source: Optional[Path] = None
    """The file the frames came from; its audio track goes into the output."""
    has_audio: bool = False
    source_duration: Optional[float] = None
    """Seconds the whole source's video stream lasts (more than the frames cover when
    `max_seconds` trimmed it; None if unknown)."""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / self.fps


# ---------------------------------------------------------------------------- reading videos


@dataclass(frozen=True)
class _Probe:
    container: str
    fps: float
    width: int
    height: int
    has_audio: bool
    duration: Optional[float]
    """Stated by the container (seconds), if it states one."""
    codec: str = ""
    """ffmpeg's name of the video stream's codec (h264, ffv1, ...)."""

    @property
    def is_image(self) -> bool:
        return self.container == "image2" or self.container.endswith("_pipe")


@dataclass(frozen=True)
class _Timing:
    """How frames are taken from a stream: its constant rate, and whether to resample to it."""

    fps: float
    resample: Optional[Fraction] = None
    """The rate ffmpeg's fps filter resamples a variable-rate stream to; None keeps every frame."""
    duration: Optional[float] = None
    """Seconds the video stream lasts: from its packets' timestamps, else as the container
    states it (which counts the longest stream: an audio track may outlast the picture)."""


def read_video(path: PathLike, max_seconds: Optional[float] = None, max_frames: Optional[int] = None) -> Video:
    """Decode the first video stream of any file ffmpeg reads (mp4, mov, webm, mkv, avi, ...).

    A constant-rate stream keeps every decoded frame and its exact frame rate (30000/1001
    stays 29.97002997...); a variable-rate one is resampled to a constant rate (its average, or
    its stated rate when only frames are missing) so that frames ÷ fps is its duration (see the
    module's docstring). Frames are as displayed: rotation metadata is applied, the stored size
    is kept (no pixel-aspect correction). `max_seconds` keeps the first int(max_seconds · fps)
    frames, as the released reader does; `max_frames` caps the count too. The file is only read.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    path = _existing_file(path, "video")
    probe = _probe(path)
    if probe.is_image:
        raise InputError(f"{path.name} is an image, not a video: give a video file (mp4, mov, webm, mkv, avi)")
    timing = _timing(path, probe, max_seconds)
    frames = _decode_rgb(path, probe, timing, _frame_limit(timing.fps, max_seconds, max_frames))
    return Video(frames=frames, fps=timing.fps, source=path, has_audio=probe.has_audio,
                 source_duration=timing.duration)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself, without decoding it: for limits, sliders and estimates."""

    fps: float
    width: int
    height: int
    duration: Optional[float]
    """Seconds the video stream lasts (None if neither its packets nor the container say)."""
    has_audio: bool

    @property
    def frames(self) -> int:
        """Frames expected from the stated duration (at least 1)."""
        return max(1, round((self.duration or 0.0) * self.fps))


def probe(path: PathLike) -> VideoInfo:
    """Frame rate (the one `read_video` gives), displayed size, duration and audio of a video file.

    Reads packet timestamps but decodes only one frame. InputError if the file is not a video.
    """
    path = _existing_file(path, "video")
    found = _probe(path)
    if found.is_image:
        raise InputError(f"{path.name} is an image, not a video: give a video file (mp4, mov, webm, mkv, avi)")
    timing = _timing(path, found)
    return VideoInfo(timing.fps, found.width, found.height, timing.duration, found.has_audio)


def read_frame(path: PathLike, index: int, max_side: Optional[int] = None) -> Optional[np.ndarray]:
    """Frame `index` of a video as uint8 RGB [H, W, 3] (scaled down to `max_side`), None past the end.

    Decodes from the start up to the frame; the index counts frames as `read_video` gives them
    (after resampling a variable-rate video). InputError if the file is not a video.
    """
    path = _existing_file(path, "video")
    found = _probe(path)
    timing = _timing(path, found)
    filters = [_resample_filter(timing.resample)] if timing.resample else []
    filters.append(f"select=eq(n\\,{max(0, int(index))})")
    if max_side:
        filters.append(f"scale=w='min({max_side},iw)':h='min({max_side},ih)':force_original_aspect_ratio=decrease")
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", _input_arg(path), "-map", "0:V:0",
           "-an", "-sn", "-dn", "-vf", ",".join(filters), "-fps_mode", "passthrough", "-frames:v", "1",
           "-sws_flags", ACCURATE_SWSCALE, "-f", "image2pipe", "-vcodec", "png", "pipe:1"]
    data = subprocess.run(cmd, capture_output=True).stdout
    if not data:
        return None
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _existing_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} path is not a file: {path}")
    return path


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _input_arg(path: Path) -> str:
    """The file protocol keeps names with colons from being read as ffmpeg protocols."""
    return "file:" + str(path)


def _probe(path: Path) -> _Probe:
    """Container, exact frame rate, displayed frame size and audio presence, from one decoded frame."""
    cmd = [
        _ffmpeg(), "-hide_banner", "-nostdin", "-i", _input_arg(path),
        "-map", "0:V:0?", "-vf", "showinfo", "-frames:v", "1", "-f", "null", "-",
    ]
    log = subprocess.run(cmd, capture_output=True).stderr.decode("utf-8", "replace")
    opened = re.search(r"^Input #0, (.+?), from ", log, re.M)
    if not opened:
        raise InputError(f"{path.name} cannot be read as a video: it is not a video file, or it is damaged "
                         f"or truncated ({_last_error(log)})")
    header = log[opened.end():].split("Stream mapping:")[0].split("Output #0")[0]
    video_lines = [l for l in header.splitlines() if re.search(r"Stream #0:\d+.*: Video:", l)
                   and "(attached pic)" not in l]
    if not video_lines:
        raise InputError(f"{path.name} has no video stream (is it an audio file?)")
    size = re.search(r"\bn:\s*0\b.*?\bs:(\d+)x(\d+)", log)
    if not size:
        raise InputError(f"{path.name} contains no decodable video frame: the file is damaged or truncated "
                         f"({_last_error(log)})")
    return _Probe(
        container=opened.group(1),
        fps=_frame_rate(log, video_lines[0]),
        width=int(size.group(1)),
        height=int(size.group(2)),
        has_audio=bool(re.search(r"Stream #0:\d+.*: Audio:", header)),
        duration=_stated_duration(header),
        codec=_codec_name(video_lines[0]),
    )


def _codec_name(stream_line: str) -> str:
    found = re.search(r": Video: ([\w-]+)", stream_line)
    return found.group(1) if found else ""


def _stated_duration(header: str) -> Optional[float]:
    found = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", header)
    if not found:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _frame_rate(log: str, stream_line: str) -> float:
    """The rational frame rate ffmpeg settles on (showinfo's config line), else the stream's tbr/fps."""
    exact = re.search(r"config in time_base: \S+, frame_rate: (\d+)/(\d+)", log)
    if exact and int(exact.group(1)) > 0 and int(exact.group(2)) > 0:
        return int(exact.group(1)) / int(exact.group(2))
    stated = re.search(r"([\d.]+)(k?) (?:fps|tbr)", stream_line)
    if stated:
        return float(stated.group(1)) * (1000 if stated.group(2) else 1)
    return FALLBACK_FPS


def _timing(path: Path, probe: _Probe, seconds: Optional[float] = None) -> _Timing:
    """Constant rate (every frame, the stated rate) or variable rate (resampled), and the video
    stream's duration.

    The rate is decided from the packet timestamps of the first `seconds` (all when None), read
    without decoding; all of them give the duration. A variable-rate stream is resampled to its
    stated rate when that keeps every frame in a slot of its own and adds at most
    `GAP_ALLOWANCE` repeats (a constant-rate stream with frames missing: a dropped frame, a
    cut), else to its average rate. Timestamps that are missing (raw streams) leave the stated
    rate and duration, as do fewer than three frames.
    """
    stated = _Timing(probe.fps, duration=probe.duration)
    if probe.is_image:
        return stated
    found = _packet_times(path)
    if found is None:
        return stated
    ticks, last_duration, tick = found
    if len(ticks) > 1 or last_duration > 0:
        stated = _Timing(probe.fps, duration=float(_span(ticks, last_duration) * tick))
    if seconds is not None:
        kept = ticks * float(tick) < seconds
        ticks, last_duration = ticks[kept], (last_duration if kept.all() else 0)
    if len(ticks) < 3:
        return stated
    slots = ticks * (float(tick) * probe.fps)
    if np.abs(slots - np.arange(len(ticks))).max() <= CONSTANT_RATE_SLACK + TIME_EPSILON:
        return stated
    span = _span(ticks, last_duration) * tick
    own_slots = bool(np.all(np.diff(np.floor(slots + 0.5)) >= 1))  # as the fps filter rounds
    if own_slots and span * probe.fps <= (1 + GAP_ALLOWANCE) * len(ticks):
        return _Timing(probe.fps, Fraction(probe.fps).limit_denominator(100000), stated.duration)
    rate = (len(ticks) / span).limit_denominator(RATE_DENOMINATOR)
    return _Timing(float(rate), rate, stated.duration)


def _span(ticks: np.ndarray, last_duration: int) -> int:
    """Ticks from the first packet to the end of the last one shown (whose duration, when
    unstated, is the median gap between packets)."""
    last = last_duration if last_duration > 0 else int(np.median(np.diff(ticks))) if len(ticks) > 1 else 0
    return int(ticks[-1]) + max(last, 1)


def _resample_filter(rate: Fraction) -> str:
    """Constant `rate` from the first frame on: each frame goes to its nearest slot, an empty slot
    repeats the frame before it."""
    return f"setpts=PTS-STARTPTS,fps={rate}:round=near"


def _packet_times(path: Path) -> Optional[tuple[np.ndarray, int, Fraction]]:
    """Sorted presentation times of the first video stream's packets, in ticks from the first,
    the last one's duration in ticks, and the tick in seconds; None when a timestamp is missing.

    ffmpeg's framecrc muxer lists every packet (stream copy: no decoding; about 0.4 s for five
    minutes of 1080p at 8 Mb/s). Packets the demuxer flags as discarded (before an edit list's
    start) are never displayed, so they are skipped.
    """
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", _input_arg(path),
           "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    listing = subprocess.run(cmd, capture_output=True).stdout.decode("ascii", "replace")
    base = re.search(r"^#tb 0: (\d+)/(\d+)", listing, re.M)
    if not base or int(base.group(2)) == 0:
        return None
    tick = Fraction(int(base.group(1)), int(base.group(2)))
    times: list[int] = []
    last_pts, last_duration = _NO_PTS, 0
    for line in listing.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        flags = fields[6] if len(fields) > 6 and fields[6].startswith("F=") else "F=0x0"
        if int(flags[2:], 16) & 0x4:  # AV_PKT_FLAG_DISCARD
            continue
        pts = int(fields[2])
        if pts == _NO_PTS:
            return None
        times.append(pts)
        if pts >= last_pts:  # the last packet shown owns the duration that ends the stream
            last_pts, last_duration = pts, int(fields[3])
    if not times:
        return None
    ticks = np.sort(np.array(times, np.int64))
    return ticks - ticks[0], last_duration, tick


def _first_line(log: str) -> str:
    lines = _log_lines(log)
    return lines[0] if lines else "ffmpeg gave no reason"


def _last_error(log: str) -> str:
    lines = _log_lines(log)
    return lines[-1] if lines else "ffmpeg gave no reason"


def _log_lines(log: str) -> list[str]:
    """ffmpeg's messages without their "[h264 @ 0x...]" prefixes."""
    lines = (re.sub(r"^(\[[^\]]*\]\s*)+", "", l.strip()) for l in log.splitlines())
    return [l for l in lines if l]


def _decode_command(path: Path, timing: _Timing, limit: Optional[int]) -> list[str]:
    """ffmpeg decoding the first video stream to raw RGB on stdout (resampled when variable-rate)."""
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", _input_arg(path),
           "-map", "0:V:0", "-an", "-sn", "-dn"]
    if timing.resample:
        cmd += ["-vf", _resample_filter(timing.resample)]
    cmd += ["-fps_mode", "passthrough"]
    if limit is not None:
        cmd += ["-frames:v", str(limit)]
    return cmd + ["-sws_flags", ACCURATE_SWSCALE, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def _check_decoded(path: Path, count: int, log: str, probe: _Probe, timing: _Timing, limit: Optional[int]) -> None:
    """InputError when nothing decoded, or far fewer frames than stated with decoder errors."""
    if count == 0:
        raise InputError(f"{path.name} contains no decodable video frame: the file is damaged or truncated "
                         f"({_last_error(log)})")
    # The container's length, not the packets': a truncated file lists only the packets it still has.
    stated = round(probe.duration * timing.fps) if probe.duration else 0
    wanted = stated if limit is None else min(limit, stated)
    if log.strip() and count < MIN_DECODED_FRACTION * wanted:
        raise InputError(f"{path.name} is damaged or truncated: only {count} of about {wanted} frames decode "
                         f"({_first_line(log)})")


def _decode_rgb(path: Path, probe: _Probe, timing: _Timing, limit: Optional[int]) -> np.ndarray:
    """All frames (or the first `limit`) as uint8 [T, H, W, 3], read from ffmpeg's pipe straight
    into preallocated memory (sized from the stated duration, grown if the file holds more).
    A variable-rate stream is resampled to `timing.resample` on the way."""
    expected = max(1, math.ceil(timing.duration * timing.fps) + 1) if timing.duration else 64
    capacity = expected if limit is None else min(limit, expected)
    blocks: list[np.ndarray] = []
    count = in_block = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(_decode_command(path, timing, limit), stdout=subprocess.PIPE, stderr=errors)
        try:
            while limit is None or count < limit:
                if not blocks or in_block == len(blocks[-1]):
                    blocks.append(np.empty((capacity, probe.height, probe.width, 3), np.uint8))
                    capacity, in_block = capacity * 2, 0
                if not _read_exactly(proc.stdout, blocks[-1][in_block]):
                    break
                in_block, count = in_block + 1, count + 1
        finally:
            proc.stdout.close()
            proc.wait()
        errors.seek(0)
        log = errors.read().decode("utf-8", "replace")
    _check_decoded(path, count, log, probe, timing, limit)
    if len(blocks) > 1:
        return np.concatenate(blocks[:-1] + [blocks[-1][:in_block]])
    # Keep the buffer when the duration's estimate was close; else give the slack back.
    return blocks[0][:count] if count >= 0.9 * len(blocks[0]) else blocks[0][:count].copy()


def _stream_rgb(path: Path, probe: _Probe, timing: _Timing, limit: Optional[int]) -> Iterator[np.ndarray]:
    """The frames `_decode_rgb` gives, one new uint8 [H, W, 3] array at a time (checked at the end).
    Closing the generator early stops ffmpeg."""
    count = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(_decode_command(path, timing, limit), stdout=subprocess.PIPE, stderr=errors)
        try:
            while limit is None or count < limit:
                frame = np.empty((probe.height, probe.width, 3), np.uint8)
                if not _read_exactly(proc.stdout, frame):
                    break
                count += 1
                yield frame
        finally:
            if proc.poll() is None and (limit is None or count < limit):
                proc.kill()  # stopped early (or failed): ffmpeg is not left decoding into a full pipe
            proc.stdout.close()
            proc.wait()
        errors.seek(0)
        log = errors.read().decode("utf-8", "replace")
    _check_decoded(path, count, log, probe, timing, limit)


class VideoStream:
    """A video file opened to be read one frame at a time: the frames `read_video` gives, in
    order, without holding more than one. Probed (and refused if it is not a video) on opening."""

    def __init__(self, path: PathLike, max_seconds: Optional[float] = None, max_frames: Optional[int] = None) -> None:
        self.source = _existing_file(path, "video")
        self._probe = _probe(self.source)
        if self._probe.is_image:
            raise InputError(f"{self.source.name} is an image, not a video: give a video file (mp4, mov, webm, mkv, avi)")
        self._timing = _timing(self.source, self._probe, max_seconds)
        self.limit = _frame_limit(self._timing.fps, max_seconds, max_frames)
        self.fps = self._timing.fps
        self.height, self.width = self._probe.height, self._probe.width
        self.has_audio = self._probe.has_audio
        self.source_duration = self._timing.duration

    @property
    def expected_frames(self) -> int:
        """Frames the stated duration (and the limits) promise; the decoded count may differ a little."""
        stated = max(1, round((self.source_duration or 0.0) * self.fps))
        return stated if self.limit is None else min(self.limit, stated)

    def __iter__(self) -> Iterator[np.ndarray]:
        return _stream_rgb(self.source, self._probe, self._timing, self.limit)


def _frame_limit(fps: float, max_seconds: Optional[float], max_frames: Optional[int]) -> Optional[int]:
    """How many frames `max_seconds` and `max_frames` let through (None: all)."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    limit = max_frames
    if max_seconds is not None:
        by_time = max(1, int(max_seconds * fps))
        limit = by_time if limit is None else min(limit, by_time)
    return limit


def _read_exactly(stream, frame: np.ndarray) -> bool:
    """Fill `frame` from the stream; False at the end of the stream."""
    view = memoryview(frame).cast("B")
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])
        if not got:
            return False
        filled += got
    return True


# ---------------------------------------------------------------------------- writing videos


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float,
    audio_from: Optional[PathLike] = None,
    crf: int = DEFAULT_CRF,
    protect: Iterable[PathLike] = (),
) -> Path:
    """Encode uint8 RGB frames [T, H, W, 3] as H.264 yuv420p mp4 with `+faststart` (see `VideoWriter`)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    with VideoWriter(path, fps, audio_from=audio_from, crf=crf, protect=protect) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


class VideoWriter:
    """An H.264 yuv420p mp4 (`+faststart`) fed one uint8 RGB frame [H, W, 3] at a time.

    yuv420p needs even sides: an odd height or width gets one more row/column, a copy of the
    last one (no scaling, no black bar), so the output is at most 1 px larger. The audio of
    `audio_from`, if it has any, is re-encoded to AAC and cut to the video's duration (a second,
    stream-copy pass once the frame count is known). Everything is encoded into hidden files
    beside `path`; the result is renamed over `path` only when `close` finds it complete and
    synced, so an interrupted or failed run leaves the previous file or the new one, never half
    of one. The new file gets the mode any new file gets under the umask (0o666 & ~umask).
    `path` may not be `audio_from` nor any of `protect` (the inputs). Use it as a context
    manager: leaving on an exception discards the partial file.
    """

    def __init__(self, path: PathLike, fps: float, audio_from: Optional[PathLike] = None, crf: int = DEFAULT_CRF,
                 protect: Iterable[PathLike] = ()) -> None:
        self.path = Path(path)
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        for source in ([audio_from] if audio_from is not None else []) + list(protect):
            if _same_file(self.path, Path(source)):
                raise InputError(f"the output {self.path} is an input file; choose another output path")
        self.fps, self.audio_from, self.crf = fps, audio_from, crf
        self.frames = 0
        self.size: Optional[tuple[int, int]] = None
        self._proc: Optional[subprocess.Popen] = None
        self._errors = None
        self._tmp: Optional[Path] = None

    def write(self, frame: np.ndarray) -> None:
        """Append one frame; every frame must have the first one's size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"a frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        if self._proc is None:
            self._start(frame.shape[:2])
        elif frame.shape[:2] != self.size:
            raise ValueError(f"frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the first was {self.size[1]}x{self.size[0]}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(_pad_to_even(frame)).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped: `close` reports its reason
        self.frames += 1

    def _start(self, size: tuple[int, int]) -> None:
        self.size = size
        height, width = size[0] + size[0] % 2, size[1] + size[1] % 2
        rate = Fraction(self.fps).limit_denominator(100000)
        cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(rate),
               "-i", "pipe:0",
               "-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags={ACCURATE_SWSCALE},format=yuv420p,"
               "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
               "-c:v", "libx264", "-crf", str(self.crf), "-preset", "medium", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", "mp4"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _new_file_beside(self.path)
        self._errors = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd + [str(self._tmp)], stdin=subprocess.PIPE, stderr=self._errors)

    def close(self) -> Path:
        """Finish the file and put it in place; RuntimeError with ffmpeg's reason if it failed."""
        if self._proc is None:
            raise ValueError(f"no frame was written to {self.path}")
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            code = self._proc.wait()
            self._errors.seek(0)
            log = self._errors.read().decode("utf-8", "replace")
            if code != 0:
                raise RuntimeError(f"ffmpeg could not write the video: {_last_error(log)}")
            if self.audio_from is not None:
                self._add_audio()
            _sync(self._tmp)
            os.replace(self._tmp, self.path)
            _sync(self.path.parent)
        finally:
            self._cleanup()
        return self.path

    def _add_audio(self) -> None:
        """Copy the video stream and add `audio_from`'s audio (if any) cut to the video's length."""
        muxed = _new_file_beside(self.path)
        try:
            cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(self._tmp),
                   "-t", f"{self.frames / self.fps:.6f}", "-i", _input_arg(Path(self.audio_from)),
                   "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", "-c:a", "aac", "-b:a", AUDIO_BITRATE,
                   "-movflags", "+faststart", "-f", "mp4", str(muxed)]
            done = subprocess.run(cmd, capture_output=True)
            if done.returncode != 0:
                raise RuntimeError(f"ffmpeg could not write the video: {_last_error(done.stderr.decode('utf-8', 'replace'))}")
            os.replace(muxed, self._tmp)
        finally:
            muxed.unlink(missing_ok=True)

    def abort(self) -> None:
        """Stop encoding and remove the partial file; the previous `path`, if any, is untouched."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        if self._proc is not None and self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _new_file_beside(path: Path) -> Path:
    """A new, empty, hidden file in `path`'s folder (same file system, so the rename is atomic).

    Created with mode 0o666 like any new file, so the umask alone decides its permissions
    (mkstemp's 0o600 would make outputs private).
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _sync(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # folders cannot be synced on some systems
    finally:
        os.close(fd)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """One frame [H, W, 3] with its last row/column repeated to even sides (per frame: no copy
    of the whole video)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# ---------------------------------------------------------------------------- masks


MaskSource = Union[str, os.PathLike, np.ndarray]


def read_masks(source: MaskSource, video: Video) -> np.ndarray:
    """The user's mask as bool [T, H, W] matching `video` (True = remove).

    `source` is a mask video, a mask image (png, jpg, webp, bmp, tif: the same mask on every
    frame, e.g. a watermark), or an array [H, W], [T, H, W], [H, W, C] or [T, H, W, C] (bool or
    numbers; C = 3 or 4). A pixel is masked when its luma is > 0 (the released rule: white or
    any colour = remove, black = keep), except in a lossily stored file (JPEG, lossy WebP, a
    lossy video codec) where its brightest channel must reach mid-grey (>= 128), so that
    compression noise around the edges does not grow the mask. An image or array with an alpha
    channel that is not fully opaque is a sketch layer instead: every non-transparent pixel is
    masked, whatever its colour.

    Time: a mask video with another frame rate or a few frames more or fewer is aligned by
    time (each video frame takes the mask frame nearest its timestamp, the last one past the
    mask's end); one that covers less than 90% of the video is refused. Arrays with several
    frames are taken at the video's frame rate; a single frame applies to all. Size: a mask of
    the video's shape but another size is resized (nearest); another aspect ratio is refused.
    """
    masks, mask_fps = _load_masks(source, video)
    _check_aspect(masks.shape[1:], (video.height, video.width))
    if len(masks) > 1:
        masks = masks[_time_alignment(len(masks), mask_fps or video.fps, video.fps, video.num_frames)]
    masks = resize_masks(masks, (video.height, video.width))
    _check_coverage(masks.any(), masks.all())
    if len(masks) == 1:
        masks = np.repeat(masks, video.num_frames, axis=0)
    return masks


def _load_masks(source: MaskSource, video: Video) -> tuple[np.ndarray, Optional[float]]:
    """Bool [N, h, w] at the mask's own size, and the mask's frame rate (None: the video's)."""
    if isinstance(source, (str, os.PathLike)):
        path = _existing_file(source, "mask")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return _read_mask_image(path)[None], None
        probe = _probe(path)
        if probe.is_image:
            return _read_mask_image(path)[None], None
        timing = _timing(path, probe, video.duration)
        needed = math.ceil((video.num_frames - 1) / video.fps * timing.fps) + 2
        frames = _decode_rgb(path, probe, timing, needed)
        return _binarize_rgb(frames, lossy=_video_is_lossy(path, probe)), timing.fps
    return _mask_array(source), None


def _mask_array(source: object) -> np.ndarray:
    if hasattr(source, "detach"):  # a torch tensor
        source = source.detach().cpu().numpy()
    if not isinstance(source, np.ndarray):
        raise InputError(f"a mask must be a file path or an array, got {type(source).__name__}")
    return _array_masks(source)


def _array_masks(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return (array > 0)[None]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return _colour_masks(array[None])
    if array.ndim == 3:
        return array > 0
    if array.ndim == 4 and array.shape[-1] in (3, 4):
        return _colour_masks(array)
    raise InputError(f"a mask array must be [H, W], [T, H, W], [H, W, C] or [T, H, W, C] with C = 3 or 4, "
                     f"got shape {array.shape}")


def _colour_masks(array: np.ndarray, lossy: bool = False) -> np.ndarray:
    """[N, h, w, 3|4] to bool: alpha > 0 when the alpha is not fully opaque, else the colours'
    rule (`_binarize_rgb`). Alpha keeps > 0 even in a lossy file: encoders store it losslessly."""
    if array.shape[-1] == 4:
        alpha = array[..., 3]
        opaque = 255 if array.dtype == np.uint8 else 1
        if (alpha < opaque).any():
            return alpha > 0
    return _binarize_rgb(array[..., :3], lossy)


def _binarize_rgb(rgb: np.ndarray, lossy: bool) -> np.ndarray:
    """Lossless: luma > 0 (released). Lossy uint8: brightest channel >= mid-grey, so that
    compression noise stays out and colour strokes of any hue stay in."""
    if not lossy or rgb.dtype != np.uint8:
        return _luma_nonzero(rgb)
    out = np.empty(rgb.shape[:-1], bool)
    for i in np.ndindex(rgb.shape[:-3]):  # frame by frame, like _luma_nonzero
        out[i] = rgb[i].max(axis=-1) >= LOSSY_MASK_LEVEL
    return out


def _luma_nonzero(rgb: np.ndarray) -> np.ndarray:
    """PIL's convert("L") > 0, the released binarization of colour masks."""
    if rgb.dtype != np.uint8:
        return (rgb > 0).any(axis=-1)
    out = np.empty(rgb.shape[:-1], bool)
    weights = np.array(_LUMA_WEIGHTS, np.int32)
    for i in np.ndindex(rgb.shape[:-3]):  # frame by frame: int32 copies of a whole video are large
        out[i] = rgb[i].astype(np.int32) @ weights >= _LUMA_HALF
    return out


def _read_mask_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            lossy = _image_is_lossy(image, path)
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                return _colour_masks(np.asarray(image.convert("RGBA"))[None], lossy)[0]
            if image.mode == "L" and lossy:
                return np.asarray(image) >= LOSSY_MASK_LEVEL
            if image.mode in ("1", "L", "I", "I;16", "F"):
                return np.asarray(image) > 0
            return _binarize_rgb(np.asarray(image.convert("RGB")), lossy)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{path.name} cannot be read as a mask image: {error}") from None


def _image_is_lossy(image, path: Path) -> bool:
    """JPEG (and JPEG 2000, MPO), JPEG-compressed TIFF, and WebP holding a lossy (VP8) frame."""
    if image.format in LOSSY_IMAGE_FORMATS:
        return True
    if image.format == "TIFF":
        return "jpeg" in str(image.info.get("compression", ""))
    if image.format == "WEBP":
        return _webp_has_lossy_frame(path)
    return False


def _webp_has_lossy_frame(path: Path) -> bool:
    """Walks the RIFF chunks (animation frames included): a "VP8 " chunk is lossy, "VP8L" lossless."""
    data = path.read_bytes()

    def walk(start: int, end: int) -> bool:
        while start + 8 <= end:
            kind, size = data[start:start + 4], int.from_bytes(data[start + 4:start + 8], "little")
            body = start + 8
            if kind == b"VP8 " or (kind == b"ANMF" and walk(body + 16, min(body + size, end))):
                return True
            start = body + size + (size & 1)
        return False

    return data[:4] == b"RIFF" and data[8:12] == b"WEBP" and walk(12, len(data))


def _video_is_lossy(path: Path, probe: _Probe) -> bool:
    """Any codec but the always-lossless ones, unless H.264 by x264 at qp 0 or HEVC by x265
    with `lossless`, as their settings (written in the first frame) say."""
    if probe.codec in LOSSLESS_VIDEO_CODECS:
        return False
    tags = {"h264": b"x264 - core ", "hevc": b"x265 (build "}
    if probe.codec not in tags:
        return True
    with open(path, "rb") as file:
        head = file.read(ENCODER_SETTINGS_BYTES)
    at = head.find(tags[probe.codec])
    if at < 0:
        return True
    settings = head[at:at + 4096].split(b"\0")[0].decode("latin-1")
    if probe.codec == "h264":
        return not (re.search(r"(?:^| )rc=cqp(?: |$)", settings) and re.search(r"(?:^| )qp=0(?: |$)", settings))
    return not re.search(r"(?:^| )lossless(?: |$)", settings)


def _check_coverage(anything: bool, everything: bool) -> None:
    if not anything:
        raise InputError("the mask is empty: no pixel is marked for removal in any frame "
                         "(white or painted = remove, black = keep)")
    if everything:
        raise InputError("the mask covers every pixel of every frame: nothing is left to fill the holes "
                         "from (white = remove, black = keep)")


def _check_aspect(mask_size: tuple[int, int], video_size: tuple[int, int]) -> None:
    """InputError when a mask of (height, width) cannot be scaled onto a video of that size."""
    (mh, mw), (vh, vw) = mask_size, video_size
    if (mh, mw) == (vh, vw):
        return
    relative = abs((mw / mh) / (vw / vh) - 1)
    # Some scale s must make both sides match to within a pixel of rounding.
    low, high = max((mw - 1) / vw, (mh - 1) / vh), min((mw + 1) / vw, (mh + 1) / vh)
    if relative > ASPECT_TOLERANCE and low > high:
        raise InputError(f"the mask is {mw}x{mh} but the video is {vw}x{vh}: their aspect ratios differ, "
                         f"so the mask cannot be scaled onto the video")


def _time_alignment(n_mask: int, mask_fps: float, video_fps: float, video_frames: int) -> np.ndarray:
    """For each video frame, the mask frame nearest in time (the earlier one on a tie).

    Nearest rather than "last shown": a mask made for the same frames but labelled 24 fps on
    a 23.976 fps video would otherwise lag by one frame from the second frame on.
    """
    mask_seconds, video_seconds = n_mask / mask_fps, video_frames / video_fps
    if mask_seconds < MIN_MASK_COVERAGE * video_seconds:
        raise InputError(
            f"the mask is shorter than the video: the mask has {n_mask} frames at {mask_fps:.3f} fps "
            f"({mask_seconds:.2f} s), the video {video_frames} frames at {video_fps:.3f} fps "
            f"({video_seconds:.2f} s); the mask must cover the whole video")
    return _mask_index(np.arange(video_frames), n_mask, mask_fps, video_fps)


def _mask_index(t: Union[int, np.ndarray], n_mask: int, mask_fps: float, video_fps: float):
    times = np.asarray(t) * (mask_fps / video_fps)
    return np.minimum(np.floor(times + 0.5 - TIME_EPSILON).astype(np.int64), n_mask - 1)


class MaskStream:
    """The user's mask one video frame at a time: iterating gives bool [H, W] at the video's size
    (True = remove) for frames 0, 1, 2, ... without end (past the mask's last frame, its last).

    Same rules as `read_masks` (files, arrays, binarisation, alignment in time and size), and
    the same checks, all made on opening, before any frame is used. A mask video is decoded once
    to check it (keeping two flags per frame), then again as the video is read: never more than
    one of its frames is held.
    """

    def __init__(self, source: MaskSource, fps: float, frames: int, height: int, width: int) -> None:
        self.fps, self.frames, self.size = fps, frames, (height, width)
        self._path: Optional[Path] = None
        if isinstance(source, (str, os.PathLike)):
            path = _existing_file(source, "mask")
            probe = None if path.suffix.lower() in IMAGE_SUFFIXES else _probe(path)
            if probe is not None and not probe.is_image:
                self._open_video(path, probe)
                return
            masks: np.ndarray = _read_mask_image(path)[None]
        else:
            masks = _mask_array(source)
        _check_aspect(masks.shape[1:], self.size)
        if len(masks) > 1:
            masks = masks[_time_alignment(len(masks), fps, fps, frames)]
        self._masks = resize_masks(masks, self.size)
        _check_coverage(self._masks.any(), self._masks.all())

    def _open_video(self, path: Path, probe: _Probe) -> None:
        _check_aspect((probe.height, probe.width), self.size)
        self._path, self._probe = path, probe
        self._timing = _timing(path, probe, self.frames / self.fps)
        self._limit = math.ceil((self.frames - 1) / self.fps * self._timing.fps) + 2
        self._lossy = _video_is_lossy(path, probe)
        anything, everything = [], []
        for frame in _stream_rgb(path, probe, self._timing, self._limit):
            mask = _binarize_rgb(frame, self._lossy)
            anything.append(bool(mask.any()))
            everything.append(bool(mask.all()))
        used = np.unique(_time_alignment(len(anything), self._timing.fps, self.fps, self.frames))
        self._count = len(anything)
        _check_coverage(any(anything[i] for i in used), all(everything[i] for i in used))

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._path is None:
            return self._from_array()
        return self._from_video()

    def _from_array(self) -> Iterator[np.ndarray]:
        for t in itertools.count():
            yield self._masks[min(t, len(self._masks) - 1)]

    def _from_video(self) -> Iterator[np.ndarray]:
        frames = _stream_rgb(self._path, self._probe, self._timing, self._limit)
        at, raw, mask = -1, None, None
        try:
            for t in itertools.count():
                wanted = int(_mask_index(t, self._count, self._timing.fps, self.fps))
                while at < wanted:
                    frame = next(frames, None)
                    if frame is None:  # fewer frames than the check counted: keep the last
                        break
                    at, raw, mask = at + 1, frame, None
                if mask is None:
                    mask = resize_masks(_binarize_rgb(raw, self._lossy)[None], self.size)[0]
                yield mask
        finally:
            frames.close()
