"""Finding a batch's rows: the videos, their masks and their outputs.

A folder: every video in it (top level, not hidden; `.mp4 .mov .webm .mkv .avi .m4v`) whose name
does not end in `.mask.<ext>` is a row. Its mask is `NAME.mask.<ext>` beside it (a mask video or a
mask image, e.g. `clip.mp4` + `clip.mask.mp4` or `clip.mask.png`), or, with `--masks DIR`,
`DIR/NAME.<ext>` or `DIR/NAME.mask.<ext>`. The output is `OUTDIR/NAME.mp4`.

A manifest: a CSV file (first line: column names) or a JSON Lines file (one object per line)
with the columns
- `video` (required): the input video;
- one mask source: `mask` (a mask video or image), `prompts` (points/boxes/text prompts as
  JSON, for the tracker of `python -m diffueraser mask`) or `text` (a region, 'full', 'bottom',
  'top' or 'X0,Y0,X1,Y1', for the burnt-in text detector);
- `output` (optional): the output's path inside OUTDIR (default `NAME.mp4`);
- any setting's name (`steps`, `prior`, `max_seconds`, ...): that row's value, over the
  command's. An empty CSV cell keeps the command's value; 'none' is None.
Relative paths are relative to the manifest's folder.

What cannot be used as a whole (an unknown column, a malformed line, a bad setting value) is an
`InputError` naming the line, before any work; what concerns one row's files only (a missing
mask, a missing video) is that row's `problem`, reported as its failure while the others run.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from ..errors import InputError
from ..media import IMAGE_SUFFIXES
from ..settings import Settings, is_optional, kind

PathLike = Union[str, os.PathLike]

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
"""Files of a folder taken as videos."""
MASK_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES
"""A mask is a video or one image used for every frame."""
MASK_TAG = ".mask"
"""`clip.mask.mp4` is the mask of `clip.mp4`."""
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
MASK_COLUMNS = ("mask", "prompts", "text")
"""The mask sources a manifest row may name (exactly one)."""
PATH_COLUMNS = ("video", "output") + MASK_COLUMNS
SETTING_NAMES = tuple(f.name for f in fields(Settings))
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass
class Row:
    """One video to erase: its inputs, where the result goes, and its settings over the command's."""

    name: str
    """How reports name the row: the video's file name, with the manifest line."""
    video: Path
    output: Path
    mask: Optional[Path] = None
    prompts: Optional[str] = None
    """JSON prompts for the tracker (instead of a mask file)."""
    text: Optional[str] = None
    """A text-detection region (instead of a mask file)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Settings of this row that differ from the command's."""
    problem: Optional[str] = None
    """Why the row cannot run (reported as its failure), found while finding rows."""

    def settings(self, base: Settings) -> Settings:
        """The row's settings: `base` with the row's overrides (validated)."""
        if not self.overrides:
            return base
        try:
            return base.replace(**self.overrides)
        except InputError as e:
            raise InputError(f"{self.name}: {e}") from None

    def inputs(self) -> dict[str, Optional[Path]]:
        """The files the row reads, named for messages."""
        return {"input video": self.video, "mask": self.mask}


def find_rows(source: PathLike, out_dir: PathLike, masks: Optional[PathLike] = None) -> list[Row]:
    """The rows of a folder (naming rule) or a manifest file (CSV or JSON Lines); see the module.

    Paths are made absolute, so that workers started elsewhere (Ray) read and write the same files.
    """
    source, out_dir = Path(source).absolute(), Path(out_dir).absolute()
    masks = None if masks is None else Path(masks).absolute()
    if not source.exists():
        raise InputError(f"batch input not found: {source}")
    if source.is_dir():
        return folder_rows(source, out_dir, masks)
    if masks is not None:
        raise InputError("--masks goes with a folder of videos; a manifest names each row's mask in its 'mask' column")
    suffix = source.suffix.lower()
    if suffix in CSV_SUFFIXES:
        records = _csv_records(source)
    elif suffix in JSONL_SUFFIXES:
        records = _jsonl_records(source)
    else:
        raise InputError(f"{source.name} is neither a folder nor a manifest: give a folder of videos, "
                         f"a .csv or a .jsonl file")
    rows = [_manifest_row(values, line, source.parent, out_dir) for line, values in records]
    if not rows:
        raise InputError(f"the manifest {source.name} has no rows")
    return rows


# ---------------------------------------------------------------------------- a folder


def folder_rows(folder: Path, out_dir: Path, masks: Optional[Path] = None) -> list[Row]:
    """Every video of `folder` with its mask by the naming rule, sorted by name."""
    if masks is not None and not masks.is_dir():
        raise InputError(f"--masks {masks} is not a folder")
    videos = sorted(p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
                    and not _is_mask_name(p))
    if not videos:
        raise InputError(f"no videos in {folder} (looked for {', '.join(VIDEO_SUFFIXES)}; "
                         f"files named NAME{MASK_TAG}.EXT are masks)")
    rows = []
    for video in videos:
        row = Row(name=video.name, video=video, output=out_dir / (video.stem + ".mp4"))
        candidates = _mask_candidates(video, folder if masks is None else masks, masks is not None)
        if len(candidates) == 1:
            row.mask = candidates[0]
        elif not candidates:
            where = f"in {masks}" if masks is not None else "beside it"
            expected = f"{video.stem}{MASK_TAG}.mp4 or {video.stem}{MASK_TAG}.png"
            if masks is not None:
                expected = f"{video.stem}.png, {video.stem}.mp4 or {expected}"
            row.problem = f"no mask for {video.name} {where}: expected {expected} (any video or image type)"
        else:
            row.problem = (f"more than one mask for {video.name}: {', '.join(c.name for c in candidates)}; "
                           f"keep one")
        rows.append(row)
    return rows


def _is_mask_name(path: Path) -> bool:
    return Path(path.stem).suffix.lower() == MASK_TAG


def _mask_candidates(video: Path, folder: Path, own_folder: bool) -> list[Path]:
    """Mask files for `video` in `folder`: NAME.mask.EXT, and NAME.EXT when the folder holds masks only."""
    stems = [video.stem + MASK_TAG] + ([video.stem] if own_folder else [])
    found = []
    for stem in stems:
        for suffix in MASK_SUFFIXES:
            for spelled in {suffix, suffix.upper()}:
                path = folder / (stem + spelled)
                if path.is_file() and path not in found and not (own_folder and _same(path, video)):
                    found.append(path)
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------------- a manifest


def _csv_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, {column: text}) per non-empty CSV line; empty cells are left out."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"the manifest {path.name} is empty") from None
        except csv.Error as e:
            raise InputError(f"{path.name} line 1 is not valid CSV: {e}") from None
        names = [h.strip() for h in header]
        _check_columns(names, path.name)
        records = []
        try:
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(names):
                    raise InputError(f"{path.name} line {line} has {len(cells)} cells but the header names "
                                     f"{len(names)} columns")
                records.append((line, {n: c.strip() for n, c in zip(names, cells) if c.strip()}))
        except csv.Error as e:
            raise InputError(f"{path.name} line {reader.line_num} is not valid CSV: {e}") from None
    return records


def _jsonl_records(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty JSON Lines line; null values are kept (None)."""
    records = []
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                values = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"{path.name} line {line} is not valid JSON: {e.msg}") from None
            if not isinstance(values, dict):
                raise InputError(f"{path.name} line {line} must be a JSON object "
                                 f'({{"video": ..., "mask": ...}}), got {type(values).__name__}')
            _check_columns(list(values), path.name, line)
            records.append((line, values))
    return records


def _check_columns(names: list[str], manifest: str, line: Optional[int] = None) -> None:
    where = f"{manifest} line {line}" if line else manifest
    known = set(PATH_COLUMNS) | set(SETTING_NAMES)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(PATH_COLUMNS)} and the settings {', '.join(SETTING_NAMES)}")
    if line is None and "video" not in names:
        raise InputError(f"{manifest} has no 'video' column (its first line must name the columns)")


def _manifest_row(values: dict[str, Any], line: int, base: Path, out_dir: Path) -> Row:
    where = f"line {line}"
    video = values.get("video")
    if not isinstance(video, str) or not video.strip():
        raise InputError(f"{where}: the 'video' column is empty; give the video's path")
    video_path = _path(base, video)
    given = [c for c in MASK_COLUMNS if values.get(c) not in (None, "")]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise InputError(f"{where}: give exactly one of the columns mask, prompts or text, got {what}")
    row = Row(name=f"{where}: {video_path.name}", video=video_path,
              output=_output(values.get("output"), video_path, out_dir, where))
    source = given[0]
    value = values[source]
    if source == "mask":
        if not isinstance(value, str):
            raise InputError(f"{where}: 'mask' must be a path, got {type(value).__name__}")
        row.mask = _path(base, value)
    elif source == "prompts":
        row.prompts = value if isinstance(value, str) else json.dumps(value)
        try:
            json.loads(row.prompts)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: 'prompts' is not valid JSON: {e.msg}") from None
    else:
        if not isinstance(value, str):
            raise InputError(f"{where}: 'text' must be a region such as 'full', 'bottom' or 'X0,Y0,X1,Y1'")
        row.text = value
    # Values are checked with the command's settings (`Row.settings`), before any work.
    row.overrides = {n: setting_value(n, values[n], where) for n in SETTING_NAMES if n in values}
    return row


def setting_value(name: str, value: Any, where: str) -> Any:
    """A manifest cell as the setting's value: text is read like the command line's option
    ('none' is None, 'true'/'false' for switches); JSON values are taken as they are."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if is_optional(name) and text.lower() in ("none", "null"):
        return None
    value_kind = kind(name)
    if value_kind is str:
        return text
    if value_kind is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise InputError(f"{where}: {name} must be true or false, got {text!r}")
    try:
        return value_kind(text)
    except ValueError:
        wanted = "an integer" if value_kind is int else "a number"
        raise InputError(f"{where}: {name} must be {wanted}, got {text!r}") from None


def _path(base: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text.strip()))
    return path if path.is_absolute() else base / path


def _output(value: Any, video: Path, out_dir: Path, where: str) -> Path:
    if value in (None, ""):
        return out_dir / (video.stem + ".mp4")
    if not isinstance(value, str):
        raise InputError(f"{where}: 'output' must be a path inside the output folder")
    relative = Path(value.strip())
    if relative.is_absolute() or ".." in relative.parts:
        raise InputError(f"{where}: 'output' must be a path inside the output folder (relative, no '..'), "
                         f"got {value!r}")
    return out_dir / relative
