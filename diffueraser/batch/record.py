"""The record beside each output that makes a batch resumable.

After a row's output is written (atomically, by `media.write_video`: a hidden `.partial` file
renamed over the output once complete), a small JSON record goes to
`OUTDIR/.diffueraser/NAME.mp4.json` (in the hidden `.diffueraser` folder beside the output). It
holds the content hash (SHA-256) of each input file, the prompts or text region when the mask was
made from them, the row's settings, and the output's hash. A rerun skips a row when its record
matches: same input hashes, same settings, and the output still the file the record describes. Anything else redoes the row: a changed video or mask, a changed setting, a
deleted or replaced output, a missing record (e.g. a crash between writing the output and its
record). The record is itself written to a temporary name and renamed, so it is never half a file.

Hashing reads a file in 1 MiB chunks. A file whose size and modification time equal the recorded
ones keeps its recorded hash without being read again (as make and rsync trust them); a touched
or copied file (new mtime, same bytes) costs one more read and still counts as the same.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..settings import Settings

RECORD_FOLDER = ".diffueraser"
RECORD_VERSION = 1
CHUNK = 1 << 20
"""Bytes read at a time when hashing an input."""


def record_path(output: Path) -> Path:
    """Where the record of `output` lives: `.diffueraser/NAME.json` in the output's folder."""
    return output.parent / RECORD_FOLDER / (output.name + ".json")


def file_digest(path: Path, known: Optional[dict[str, Any]] = None, what: str = "input") -> dict[str, Any]:
    """SHA-256, size and mtime of a file; `known` (a previous digest) is reused when size and mtime match."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    if not path.is_file():
        raise InputError(f"{what} path is not a file: {path}")
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns and known.get("sha256"):
        return dict(known)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint(video: Path, mask: Optional[Path], prompts: Optional[str], text: Optional[str],
                settings: Settings, previous: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What a row's output depends on: its inputs' content and its settings (JSON-ready)."""
    known = (previous or {}).get("inputs", {})
    inputs: dict[str, Any] = {"video": file_digest(video, known.get("video"), "video")}
    if mask is not None:
        inputs["mask"] = file_digest(mask, known.get("mask"), "mask")
    if prompts is not None:
        inputs["prompts"] = json.loads(prompts)
    if text is not None:
        inputs["text"] = text
    return {"inputs": inputs, "settings": json.loads(json.dumps(dataclasses.asdict(settings)))}


def load_record(output: Path) -> Optional[dict[str, Any]]:
    """The output's record, or None when there is none or it cannot be read."""
    try:
        record = json.loads(record_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def is_done(output: Path, record: Optional[dict[str, Any]], current: dict[str, Any]) -> bool:
    """Whether `output` is the finished result of exactly these inputs and settings: the record's
    inputs and settings are these, and the output is still the file it describes (same content)."""
    if record is None:
        return False
    if _content(record.get("inputs")) != _content(current["inputs"]) or record.get("settings") != current["settings"]:
        return False
    made = record.get("output")
    if not isinstance(made, dict) or not output.is_file():
        return False
    return file_digest(output, made, "output")["sha256"] == made.get("sha256")


def _content(inputs: Any) -> Any:
    """Inputs without their stat fields: only content decides."""
    if not isinstance(inputs, dict):
        return None
    return {k: (v.get("sha256") if isinstance(v, dict) and "sha256" in v else v) for k, v in inputs.items()}


def write_record(output: Path, current: dict[str, Any], details: dict[str, Any]) -> Path:
    """Write the record of a finished output (temporary name, then rename)."""
    record = {"version": RECORD_VERSION, **current,
              "output": {"name": output.name, **file_digest(output, what="output")}, **details}
    path = record_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def forget(output: Path) -> None:
    """Drop the output's record (before redoing it), so a crash never leaves an old record matching."""
    record_path(output).unlink(missing_ok=True)


def clear_leftovers(output: Path) -> list[Path]:
    """Remove temporary files a killed writer left beside `output` (`.NAME.*.partial`)."""
    removed = []
    for folder, name in ((output.parent, output.name), (record_path(output).parent, record_path(output).name)):
        if not folder.is_dir():
            continue
        for leftover in folder.glob(f".{_glob_escape(name)}.*.partial"):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
