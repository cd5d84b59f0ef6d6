"""Reading and writing videos, and reading masks, with the ffmpeg binary of imageio-ffmpeg.

Videos come in as uint8 RGB frames [T, H, W, 3] with their exact frame rate; they go out as
H.264/yuv420p mp4 (BT.709, `+faststart`) that browsers play, with the source's audio carried
over. Masks come in as a mask video, a mask image or an array, and leave as bool [T, H, W]
(True = remove) aligned to the video in time and size. Anything the user gave that cannot be used
raises `InputError` with a message that says why.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional, Union

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
# PIL's convert("L") in fixed point; the released code binarizes this luma (> 0).
_LUMA_WEIGHTS = (19595, 38470, 7471)
_LUMA_HALF = 1 << 15


@dataclass
class Video:
    """Decoded frames and what is needed to write them back (frame rate, audio source)."""

    frames: np.ndarray
    """uint8 [T, H, W, 3] RGB."""
    fps: float
    source: Optional[Path] = None
    """The file the frames came from; its audio track goes into the output."""
    has_audio: bool = False

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

    @property
    def is_image(self) -> bool:
        return self.container == "image2" or self.container.endswith("_pipe")


def read_video(path: PathLike, max_seconds: Optional[float] = None, max_frames: Optional[int] = None) -> Video:
    """Decode the first video stream of any file ffmpeg reads (mp4, mov, webm, mkv, avi, ...).

    Keeps every decoded frame (no frame-rate conversion) and the exact frame rate (30000/1001
    stays 29.97002997...). Frames are as displayed: rotation metadata is applied, the stored
    size is kept (no pixel-aspect correction). `max_seconds` keeps the first
    int(max_seconds · fps) frames, as the released reader does; `max_frames` caps the count
    too. The file is only read.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    path = _existing_file(path, "video")
    probe = _probe(path)
    if probe.is_image:
        raise InputError(f"{path.name} is an image, not a video: give a video file (mp4, mov, webm, mkv, avi)")
    limit = max_frames
    if max_seconds is not None:
        by_time = max(1, int(max_seconds * probe.fps))
        limit = by_time if limit is None else min(limit, by_time)
    frames = _decode_rgb(path, probe, limit)
    return Video(frames=frames, fps=probe.fps, source=path, has_audio=probe.has_audio)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself, without decoding it: for limits, sliders and estimates."""

    fps: float
    width: int
    height: int
    duration: Optional[float]
    """Seconds, as the container states them (None if it states none)."""
    has_audio: bool

    @property
    def frames(self) -> int:
        """Frames expected from the stated duration (at least 1)."""
        return max(1, round((self.duration or 0.0) * self.fps))


def probe(path: PathLike) -> VideoInfo:
    """Frame rate, displayed size, duration and audio of a video file (InputError if it is not one)."""
    path = _existing_file(path, "video")
    found = _probe(path)
    if found.is_image:
        raise InputError(f"{path.name} is an image, not a video: give a video file (mp4, mov, webm, mkv, avi)")
    return VideoInfo(found.fps, found.width, found.height, found.duration, found.has_audio)


def read_frame(path: PathLike, index: int, max_side: Optional[int] = None) -> Optional[np.ndarray]:
    """Frame `index` of a video as uint8 RGB [H, W, 3] (scaled down to `max_side`), None past the end.

    Decodes from the start up to the frame (exact on any frame rate, variable ones included).
    """
    path = _existing_file(path, "video")
    filters = [f"select=eq(n\\,{max(0, int(index))})"]
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
    )


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


def _decode_rgb(path: Path, probe: _Probe, limit: Optional[int]) -> np.ndarray:
    """All frames (or the first `limit`) as uint8 [T, H, W, 3], read from ffmpeg's pipe straight
    into preallocated memory (sized from the stated duration, grown if the file holds more)."""
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", _input_arg(path),
           "-map", "0:V:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough"]
    if limit is not None:
        cmd += ["-frames:v", str(limit)]
    cmd += ["-sws_flags", ACCURATE_SWSCALE, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    expected = max(1, math.ceil(probe.duration * probe.fps) + 1) if probe.duration else 64
    capacity = expected if limit is None else min(limit, expected)
    blocks: list[np.ndarray] = []
    count = in_block = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
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
    if count == 0:
        raise InputError(f"{path.name} contains no decodable video frame: the file is damaged or truncated "
                         f"({_last_error(log)})")
    stated = round(probe.duration * probe.fps) if probe.duration else 0
    wanted = stated if limit is None else min(limit, stated)
    if log.strip() and count < MIN_DECODED_FRACTION * wanted:
        raise InputError(f"{path.name} is damaged or truncated: only {count} of about {wanted} frames decode "
                         f"({_first_line(log)})")
    if len(blocks) > 1:
        return np.concatenate(blocks[:-1] + [blocks[-1][:in_block]])
    # Keep the buffer when the duration's estimate was close; else give the slack back.
    return blocks[0][:count] if count >= 0.9 * len(blocks[0]) else blocks[0][:count].copy()


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
    """Encode uint8 RGB frames [T, H, W, 3] as H.264 yuv420p mp4 with `+faststart`.

    yuv420p needs even sides: an odd height or width gets one more row/column, a copy of the
    last one (no scaling, no black bar), so the output is at most 1 px larger. The audio of
    `audio_from`, if it has any, is re-encoded to AAC and cut to the video's duration. The file
    is written next to `path` and renamed into place, so a failure never leaves half a video;
    `path` may not be `audio_from` nor any of `protect` (the inputs).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    for source in ([audio_from] if audio_from is not None else []) + list(protect):
        if _same_file(path, Path(source)):
            raise InputError(f"the output {path} is an input file; choose another output path")
    frames = _pad_to_even(frames)
    height, width = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(100000)
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(rate),
           "-i", "pipe:0"]
    if audio_from is not None:
        cmd += ["-t", f"{len(frames) / fps:.6f}", "-i", _input_arg(Path(audio_from)),
                "-map", "0:v:0", "-map", "1:a:0?", "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    cmd += ["-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags={ACCURATE_SWSCALE},format=yuv420p,"
            "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
            "-c:v", "libx264", "-crf", str(crf), "-preset", "medium", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.mp4", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _run_encoder(cmd + [str(tmp)], frames)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _run_encoder(cmd: list[str], frames: np.ndarray) -> None:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=errors)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
            code = proc.wait()
        errors.seek(0)
        log = errors.read().decode("utf-8", "replace")
    if code != 0:
        raise RuntimeError(f"ffmpeg could not write the video: {_last_error(log)}")


# ---------------------------------------------------------------------------- masks


MaskSource = Union[str, os.PathLike, np.ndarray]


def read_masks(source: MaskSource, video: Video) -> np.ndarray:
    """The user's mask as bool [T, H, W] matching `video` (True = remove).

    `source` is a mask video, a mask image (png, jpg, webp, bmp, tif: the same mask on every
    frame, e.g. a watermark), or an array [H, W], [T, H, W], [H, W, C] or [T, H, W, C] (bool or
    numbers; C = 3 or 4). A pixel is masked when its luma is > 0 (the released rule: white or
    any colour = remove, black = keep). An image or array with an alpha channel that is not fully
    opaque is a sketch layer instead: every non-transparent pixel is masked, whatever its colour.

    Time: a mask video with another frame rate or a few frames more or fewer is aligned by
    time (each video frame takes the mask frame nearest its timestamp, the last one past the
    mask's end); one that covers less than 90% of the video is refused. Arrays with several
    frames are taken at the video's frame rate; a single frame applies to all. Size: a mask of
    the video's shape but another size is resized (nearest); another aspect ratio is refused.
    """
    masks, mask_fps = _load_masks(source, video)
    masks = _check_aspect(masks, video)
    masks = masks[_time_alignment(len(masks), mask_fps, video)] if len(masks) > 1 else masks
    masks = resize_masks(masks, (video.height, video.width))
    if not masks.any():
        raise InputError("the mask is empty: no pixel is marked for removal in any frame "
                         "(white or painted = remove, black = keep)")
    if masks.all():
        raise InputError("the mask covers every pixel of every frame: nothing is left to fill the holes "
                         "from (white = remove, black = keep)")
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
        needed = math.ceil((video.num_frames - 1) / video.fps * probe.fps) + 2
        frames = _decode_rgb(path, probe, needed)
        return _luma_nonzero(frames), probe.fps
    if hasattr(source, "detach"):  # a torch tensor
        source = source.detach().cpu().numpy()
    if not isinstance(source, np.ndarray):
        raise InputError(f"a mask must be a file path or an array, got {type(source).__name__}")
    return _array_masks(source), None


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


def _colour_masks(array: np.ndarray) -> np.ndarray:
    """[N, h, w, 3|4] to bool: alpha > 0 when the alpha is not fully opaque, else luma > 0."""
    if array.shape[-1] == 4:
        alpha = array[..., 3]
        opaque = 255 if array.dtype == np.uint8 else 1
        if (alpha < opaque).any():
            return alpha > 0
    return _luma_nonzero(array[..., :3])


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
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                return _colour_masks(np.asarray(image.convert("RGBA"))[None])[0]
            if image.mode in ("1", "L", "I", "I;16", "F"):
                return np.asarray(image) > 0
            return _luma_nonzero(np.asarray(image.convert("RGB")))
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{path.name} cannot be read as a mask image: {error}") from None


def _check_aspect(masks: np.ndarray, video: Video) -> np.ndarray:
    mh, mw = masks.shape[1:]
    vh, vw = video.height, video.width
    if (mh, mw) == (vh, vw):
        return masks
    relative = abs((mw / mh) / (vw / vh) - 1)
    # Some scale s must make both sides match to within a pixel of rounding.
    low, high = max((mw - 1) / vw, (mh - 1) / vh), min((mw + 1) / vw, (mh + 1) / vh)
    if relative > ASPECT_TOLERANCE and low > high:
        raise InputError(f"the mask is {mw}x{mh} but the video is {vw}x{vh}: their aspect ratios differ, "
                         f"so the mask cannot be scaled onto the video")
    return masks


def _time_alignment(n_mask: int, mask_fps: Optional[float], video: Video) -> np.ndarray:
    """For each video frame, the mask frame nearest in time (the earlier one on a tie).

    Nearest rather than "last shown": a mask made for the same frames but labelled 24 fps on
    a 23.976 fps video would otherwise lag by one frame from the second frame on.
    """
    fps = video.fps if mask_fps is None else mask_fps
    mask_seconds = n_mask / fps
    if mask_seconds < MIN_MASK_COVERAGE * video.duration:
        raise InputError(
            f"the mask is shorter than the video: the mask has {n_mask} frames at {fps:.3f} fps "
            f"({mask_seconds:.2f} s), the video {video.num_frames} frames at {video.fps:.3f} fps "
            f"({video.duration:.2f} s); the mask must cover the whole video")
    times = np.arange(video.num_frames) * (fps / video.fps)
    return np.minimum(np.floor(times + 0.5 - TIME_EPSILON).astype(np.int64), n_mask - 1)
