"""What the user pointed at: clicks, boxes and words on frames, grouped by object.

Prompts are plain data, in the input video's pixels. They come as JSON (the API, the page),
a list of dicts (Python), or command-line options (`--point X,Y@FRAME`, `--box ...`), and are
checked twice: their form when parsed (`parse_prompts`), and against the video — frame count and
size — before anything runs (`check_prompts`). Every problem is an InputError that names the entry.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence, Union

from ..errors import InputError

POSITIVE, NEGATIVE = 1, 0
KEYS = frozenset({"object", "frame", "points", "labels", "box", "text"})
MAX_TEXT = 200
"""Longest words prompt accepted (characters)."""


@dataclass(frozen=True)
class Prompt:
    """One object's prompts on one frame: points with labels (1 = object, 0 = not), a box, or words."""

    object: int = 1
    frame: int = 0
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: Optional[tuple[float, float, float, float]] = None
    text: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what `parse_prompts` reads back)."""
        out: dict[str, Any] = {"object": self.object, "frame": self.frame}
        if self.points:
            out["points"] = [list(p) for p in self.points]
            out["labels"] = list(self.labels)
        if self.box is not None:
            out["box"] = list(self.box)
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class Prompts:
    """Every prompt of one request; `objects` in first-seen order."""

    items: tuple[Prompt, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def objects(self) -> list[int]:
        return list(dict.fromkeys(p.object for p in self.items))

    @property
    def has_text(self) -> bool:
        return any(p.text for p in self.items)

    @property
    def has_clicks(self) -> bool:
        return any(p.points or p.box is not None for p in self.items)

    def for_object(self, obj: int) -> list[Prompt]:
        """This object's prompts, by frame."""
        return sorted((p for p in self.items if p.object == obj), key=lambda p: p.frame)

    def frames(self) -> list[int]:
        """Prompted frames, ascending."""
        return sorted({p.frame for p in self.items})

    def to_json(self) -> str:
        return json.dumps([p.to_dict() for p in self.items])


def parse_prompts(source: Union[str, bytes, Sequence[Any], dict, Prompts, None]) -> Prompts:
    """Prompts from JSON text, a list of dicts (or one dict) or Prompts; InputError on any malformed entry.

    An entry: {"object": 1, "frame": 0, "points": [[x, y], ...], "labels": [1, 0, ...],
    "box": [x0, y0, x1, y1], "text": "the dog"}; object defaults to 1, frame to 0, labels to all 1.
    """
    if isinstance(source, Prompts):
        return source
    if source is None:
        raise InputError("no prompts given: click the object, draw a box or give words")
    if isinstance(source, (str, bytes)):
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        if not text.strip():
            raise InputError("no prompts given: click the object, draw a box or give words")
        try:
            source = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"the prompts are not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                             f'expected e.g. [{{"object": 1, "frame": 0, "points": [[120, 80]], "labels": [1]}}]')
    if isinstance(source, dict):
        source = [source]
    if not isinstance(source, (list, tuple)):
        raise InputError(f"the prompts must be a list of objects like {{\"frame\": 0, \"points\": [[x, y]]}}, "
                         f"got {type(source).__name__}")
    if not source:
        raise InputError("no prompts given: click the object, draw a box or give words")
    return Prompts(tuple(_entry(e, i + 1) for i, e in enumerate(source)))


def _entry(entry: Any, n: int) -> Prompt:
    where = f"prompt {n}"
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be an object like {{\"frame\": 0, \"points\": [[x, y]]}}, "
                         f"got {type(entry).__name__}")
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise InputError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(KEYS))}")
    obj = _whole(entry.get("object", 1), f"{where}: object", minimum=1)
    frame = _whole(entry.get("frame", 0), f"{where}: frame", minimum=0)
    points = tuple(_pair(p, f"{where}: point {k + 1}") for k, p in enumerate(_list(entry.get("points", []), where, "points")))
    labels_raw = entry.get("labels")
    if labels_raw is None:
        labels = (POSITIVE,) * len(points)
    else:
        labels = tuple(_label(v, f"{where}: label {k + 1}") for k, v in enumerate(_list(labels_raw, where, "labels")))
        if len(labels) != len(points):
            raise InputError(f"{where} has {len(points)} point(s) but {len(labels)} label(s); give one label per point")
    box = None
    if entry.get("box") is not None:
        box = _box(entry["box"], f"{where}: box")
    text = entry.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise InputError(f"{where}: text must be a string, got {type(text).__name__}")
        text = " ".join(text.split())
        if not text:
            raise InputError(f"{where}: text is empty; give words naming the object, e.g. \"the dog\"")
        if len(text) > MAX_TEXT:
            raise InputError(f"{where}: text is {len(text)} characters long; at most {MAX_TEXT}")
    if not points and box is None and text is None:
        raise InputError(f"{where} has no points, box or text: nothing says what to select")
    if points and not any(l == POSITIVE for l in labels) and box is None and text is None:
        raise InputError(f"{where} has only negative points: add a positive point or a box on the object")
    return Prompt(obj, frame, points, labels, box, text)


def _list(value: Any, where: str, key: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: {key} must be a list, got {type(value).__name__}")
    return list(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _whole(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        raise InputError(f"{where} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise InputError(f"{where} must be 1 (on the object) or 0 (not on it), got {value!r}")
    return int(value)


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{where} must be [x, y], got {value!r}")
    return _number(value[0], where), _number(value[1], where)


def _box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise InputError(f"{where} must be [x0, y0, x1, y1], got {value!r}")
    x0, y0, x1, y1 = (_number(v, where) for v in value)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"{where} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has zero area: "
                         f"give two opposite corners at least one pixel apart")
    return x0, y0, x1, y1


def check_prompts(prompts: Prompts, width: int, height: int, frames: int, slack: int = 0) -> None:
    """Refuse prompts that do not fit the video: a frame past the end, a point or box outside the frame.
    `slack`: frames past `frames` still let through (when `frames` is the stated count, before decoding)."""
    for n, p in enumerate(prompts.items, 1):
        where = f"prompt {n} (object {p.object}, frame {p.frame})"
        if p.frame >= frames + slack:
            raise InputError(f"{where}: frame {p.frame} is past the end of the video "
                             f"({frames} frame{'s' if frames != 1 else ''}, numbered 0 to {frames - 1})")
        for x, y in p.points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise InputError(f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} frame; "
                                 f"coordinates are in the video's pixels")
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise InputError(f"{where}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] reaches outside the "
                                 f"{width}x{height} frame; coordinates are in the video's pixels")


# ---------------------------------------------------------------------------- command-line forms


def _at_frame(text: str, what: str, count: int) -> tuple[list[float], int]:
    body, _, frame_text = text.partition("@")
    try:
        values = [float(v) for v in body.split(",")]
        frame = int(frame_text) if frame_text else 0
    except ValueError:
        values, frame = [], -1
    if len(values) != count or frame < 0 or not all(math.isfinite(v) for v in values):
        form = "X,Y[@FRAME]" if count == 2 else "X0,Y0,X1,Y1[@FRAME]"
        raise InputError(f"{what} {text!r} is not {form} (pixels, frame 0 when omitted)")
    return values, frame


def prompts_from_options(steps: Iterable[tuple[str, str, int]], text: Optional[str] = None,
                         text_object: int = 1) -> Prompts:
    """Prompts from command-line steps in the order given: (kind, value, object) with kind
    'point', 'negative' or 'box'; points and boxes of one object on one frame form one prompt."""
    grouped: dict[tuple[int, int], dict[str, Any]] = {}
    for kind, value, obj in steps:
        if kind == "box":
            coords, frame = _at_frame(value, "--box", 4)
            entry = grouped.setdefault((obj, frame), {"object": obj, "frame": frame})
            if "box" in entry:
                raise InputError(f"object {obj} has two boxes on frame {frame}; give one box per object and frame "
                                 f"(use --object N for another object)")
            entry["box"] = coords
        else:
            (x, y), frame = _at_frame(value, f"--{kind}", 2)
            entry = grouped.setdefault((obj, frame), {"object": obj, "frame": frame})
            entry.setdefault("points", []).append([x, y])
            entry.setdefault("labels", []).append(POSITIVE if kind == "point" else NEGATIVE)
    entries = list(grouped.values())
    if text is not None:
        entries.append({"object": text_object, "frame": 0, "text": text})
    return parse_prompts(entries)
