"""Where parts are looked for, and the one report of what is missing.

A part is looked for, in this order, in
  1. the `weights_dir` argument,
  2. the folder named by the environment variable DIFFUERASER_WEIGHTS,
  3. ./weights,
each in the released repository's `weights/` layout (diffuEraser/{brushnet,unet_main},
stable-diffusion-v1-5/..., sd-vae-ft-mse, PCM_Weights/sd15, propainter/*.pth), then
  4. the Hugging Face cache (ProPainter: a folder beside it), fetching what is absent unless
     offline (`local_files_only=True` or HF_HUB_OFFLINE=1); cached files are used without asking the hub.
Only the files a part needs are fetched (no fp16 variants, not the SD1.5 UNet or VAE); safetensors
are preferred to .bin. A partial checkpoint (config without weights, a truncated file) is reported,
not skipped, and everything missing is named in one CheckpointError that says how to get it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..errors import CheckpointError
from .fetch import fetch_url, hub_cache_dir, hub_file, is_offline, propainter_cache_dir
from .files import INDEX_SUFFIX, file_problem, index_shards
from .parts import (DEFAULT_WEIGHTS_DIR, ENV_WEIGHTS, PARTS, CheckpointPaths, Component, ProPainterPaths,
                    components)


@dataclass
class _Found:
    path: Optional[Path] = None  # the folder, or the file of a single-file component
    problem: Optional[str] = None  # partial or corrupt: why
    reason: Optional[str] = None  # absent: why, when there is more to say than "not found"
    fetch_error: Optional[str] = None  # fetching was tried and failed: why


def _local_roots(weights_dir: Optional[os.PathLike]) -> tuple[list[tuple[str, Path]], list[str]]:
    """Weights folders by precedence, and problems with folders the user named that do not exist."""
    roots, problems = [], []
    named = [("weights_dir", weights_dir)]
    if os.environ.get(ENV_WEIGHTS):
        named.append((f"${ENV_WEIGHTS}", os.environ[ENV_WEIGHTS]))
    for label, value in named:
        if value is None:
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            roots.append((f"{label} {path}", path))
        else:
            problems.append(f"{label} {path} is not a folder")
    if DEFAULT_WEIGHTS_DIR.is_dir():
        roots.append((f"./{DEFAULT_WEIGHTS_DIR}", DEFAULT_WEIGHTS_DIR.resolve()))
    return roots, problems


def _in_local_root(comp: Component, root: Path) -> Optional[_Found]:
    """The component in a weights folder of the released layout: found, partial, or None if absent."""
    target = root / comp.local
    if comp.single_file:
        if not target.is_file():
            return None
        problem = file_problem(target)
        return _Found(problem=f"partial checkpoint {target}: {problem}") if problem else _Found(target)
    if not target.is_dir() or not any(not p.name.startswith(".") for p in target.iterdir()):
        return None
    problems = []
    for need in comp.needs:
        present = [target / n for n in need.names if (target / n).is_file()]
        if not present:
            if need.required:
                problems.append(f"no {' or '.join(need.names)}")
            continue
        problems += [p for p in [file_problem(present[0])] if p]
        if present[0].name.endswith(INDEX_SUFFIX) and not problems:
            for shard in index_shards(present[0]):
                problem = file_problem(target / shard) if (target / shard).is_file() else f"no shard {shard}"
                problems += [problem] if problem else []
    if problems:
        return _Found(problem=f"partial checkpoint {target}: {'; '.join(problems)}")
    return _Found(target)


def _in_hub(comp: Component, download: bool) -> Optional[_Found]:
    """The component in the Hugging Face cache, fetching the missing files when allowed."""
    prefix = f"{comp.remote}/" if comp.remote and not comp.single_file else ""
    files: list[Path] = []
    for need in comp.needs:
        got = None
        for name in need.names:
            got = hub_file(comp.repo, comp.remote if comp.single_file else prefix + name, download)
            if got.path is not None or got.error:
                break  # found, or the hub cannot be used: the other names would fail the same way
        if got.path is None:
            if not need.required:
                continue
            if got.error:
                return _Found(reason=got.error, fetch_error=got.error)
            if got.absent:
                return _Found(reason="absent from the Hugging Face repository")
            if not files:
                return None  # nothing of it cached, nothing downloaded
            return _Found(reason=f"only part of it is in the Hugging Face cache {hub_cache_dir()}")
        files.append(got.path)
        if got.path.name.endswith(INDEX_SUFFIX):
            for shard in index_shards(got.path):
                part = hub_file(comp.repo, prefix + shard, download)
                if part.path is None:
                    reason = part.error or f"shard {shard} is not in the Hugging Face cache"
                    return _Found(reason=reason, fetch_error=part.error)
                files.append(part.path)
    problems = [p for p in map(file_problem, files) if p]
    if problems:
        return _Found(problem=f"corrupt file in the Hugging Face cache ({'; '.join(problems)}); "
                              f"delete {files[0].parent} so it is downloaded again")
    return _Found(files[0] if comp.single_file else files[0].parent)


def _in_url_cache(comp: Component, download: bool) -> Optional[_Found]:
    """A file published at a URL (ProPainter) in its cache folder, fetching it when allowed."""
    target = propainter_cache_dir() / Path(comp.local).name
    if target.is_file():
        problem = file_problem(target)
        return _Found(problem=f"corrupt download {target}: {problem}; delete it") if problem else _Found(target)
    if not download:
        return None
    got = fetch_url(comp.url, target)
    return _Found(got.path) if got.path else _Found(reason=got.error, fetch_error=got.error)


def _locate(comp: Component, roots: list[tuple[str, Path]], download: bool) -> _Found:
    """First source that has the component; a partial one stops the search (it must be fixed, not hidden)."""
    for _, root in roots:
        found = _in_local_root(comp, root)
        if found is not None:
            return found
    found = _in_url_cache(comp, download) if comp.url else _in_hub(comp, download)
    return found if found is not None else _Found()


def _line(comp: Component, found: _Found) -> str:
    if found.problem:
        return f"{comp.title} ({comp.part}): {found.problem}"
    why = f"not found ({found.reason})" if found.reason else "not found"
    return f"{comp.title} ({comp.part}): {why}; {comp.how_to_get()}"


def _report(lines: list[str], roots: list[tuple[str, Path]], offline: bool) -> str:
    looked = [label for label, _ in roots] + [f"Hugging Face cache {hub_cache_dir()}",
                                              f"ProPainter downloads {propainter_cache_dir()}"]
    online = ("offline (HF_HUB_OFFLINE=1 or local_files_only): nothing was downloaded"
              if offline else "downloads were attempted")
    return "\n".join(
        ["Model checkpoints are missing or incomplete:"]
        + [f"  - {line}" for line in lines]
        + [f"Looked in: {'; '.join(looked)} ({online}).",
           f"Fix: put the files in the released weights/ layout under ./weights, a folder named by "
           f"${ENV_WEIGHTS} or the weights_dir argument, or run online once so they are downloaded "
           f"into the Hugging Face cache."]
    )


def missing(parts: Iterable[str] = PARTS, weights_dir: Optional[os.PathLike] = None, steps: int = 2) -> list[str]:
    """One line per part not available without downloading (absent or partial), saying how to get it.

    Downloads nothing; for the app to show at start-up. An empty list means all is in place.
    """
    roots, problems = _local_roots(weights_dir)
    lines = list(problems)
    for comp in components(parts, steps):
        found = _locate(comp, roots, download=False)
        if found.path is None:
            lines.append(_line(comp, found))
    return lines


def resolve(
    parts: Iterable[str] = PARTS,
    weights_dir: Optional[os.PathLike] = None,
    local_files_only: bool = False,
    steps: int = 2,
) -> CheckpointPaths:
    """Locate (fetching when allowed) every checkpoint of `parts`; one CheckpointError names all that fail.

    The error's `missing` holds its per-part lines, `download_error` why fetching failed (when it did).
    """
    roots, problems = _local_roots(weights_dir)
    offline = is_offline(local_files_only)
    comps = components(parts, steps)
    if problems:
        raise CheckpointError(_report(problems, roots, offline), missing=problems)
    # Local pass first: a partial checkpoint is reported before anything is downloaded.
    found = {c.key: _locate(c, roots, download=False) for c in comps}
    if not any(f.problem for f in found.values()) and not offline:
        found = {c.key: f if f.path else _locate(c, [], download=True) for c, f in zip(comps, found.values())}
    lines = [_line(c, found[c.key]) for c in comps if found[c.key].path is None]
    if lines:
        fetch_error = next((f.fetch_error for f in found.values() if f.fetch_error), None)
        raise CheckpointError(_report(lines, roots, offline), missing=lines, download_error=fetch_error)
    paths = {key: f.path for key, f in found.items()}
    return CheckpointPaths(**paths, pcm_steps=steps if "pcm_lora" in paths else None)


def pcm_lora_path(steps: int = 2, weights_dir: Optional[os.PathLike] = None, local_files_only: bool = False) -> Path:
    """The released PCM LoRA file for `steps` denoising steps."""
    return resolve(["pcm"], weights_dir, local_files_only, steps).pcm_lora


def propainter_paths(weights_dir: Optional[os.PathLike] = None, local_files_only: bool = False) -> ProPainterPaths:
    """The three ProPainter checkpoint files."""
    p = resolve(["propainter"], weights_dir, local_files_only)
    return ProPainterPaths(p.raft, p.flow_completion, p.propainter)
