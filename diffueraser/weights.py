"""Where the released checkpoints live, and loading them: the only module that knows file names.

A part is looked for, in this order, in
  1. the `weights_dir` argument,
  2. the folder named by the environment variable DIFFUERASER_WEIGHTS,
  3. ./weights,
each in the released repository's `weights/` layout (diffuEraser/{brushnet,unet_main},
stable-diffusion-v1-5/..., sd-vae-ft-mse, PCM_Weights/sd15, propainter/*.pth), then
  4. the Hugging Face cache (ProPainter: a folder beside it), downloading what is absent unless
     offline (`local_files_only=True` or HF_HUB_OFFLINE=1); cached files are used without asking the hub.
Only the files a part needs are fetched (no fp16 variants, not the SD1.5 UNet or VAE); safetensors
are preferred to .bin. A partial checkpoint (config without weights, a truncated file) is reported,
not skipped, and everything missing is named in one CheckpointError that says how to get it.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import struct
import urllib.error
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

import torch

from .errors import CheckpointError, InputError
from .settings import PCM_STEPS

log = logging.getLogger(__name__)

PARTS = ("denoiser", "text", "scheduler", "vae", "pcm", "propainter")
"""denoiser: brushnet + unet_main; text: CLIP text encoder + tokenizer; scheduler: SD1.5 scheduler
config; vae; pcm: the PCM LoRA of the chosen step count; propainter: the three ProPainter networks."""

ENV_WEIGHTS = "DIFFUERASER_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("weights")

DIFFUERASER_REPO = "lixiaowen/diffuEraser"
SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
PCM_REPO = "wangfuyun/PCM_Weights"
PCM_SUBFOLDER = "sd15"
PROPAINTER_RELEASE = "https://github.com/sczhou/ProPainter/releases/download/v0.1.0"

RAFT_FILE = "raft-things.pth"
FLOW_COMPLETION_FILE = "recurrent_flow_completion.pth"
GENERATOR_FILE = "ProPainter.pth"

# Weight files by preference: safetensors first, then .bin, then sharded indexes.
DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
TRANSFORMERS_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_INDEX_SUFFIX = ".index.json"
_SAFETENSORS_HEADER_LIMIT = 100 * 2**20  # a larger header length means the file is not safetensors
_DOWNLOAD_CHUNK = 2**20
_DOWNLOAD_TIMEOUT_S = 60


def pcm_lora_file(steps: int) -> str:
    """File name of the released PCM LoRA for a step count."""
    return f"pcm_sd15_smallcfg_{steps}step_converted.safetensors"


@dataclass(frozen=True)
class _Need:
    """One file a component needs: alternative names, the preferred first."""

    names: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class _Component:
    """A folder (or single file) the engine needs, and where it is published."""

    key: str  # CheckpointPaths field
    part: str
    title: str
    local: str  # path inside a weights/ folder of the released layout
    needs: tuple[_Need, ...]
    repo: Optional[str] = None  # Hugging Face repository, with `remote` the path inside it
    remote: str = ""
    url: Optional[str] = None  # direct download (ProPainter), of a single file
    single_file: bool = False  # the component is the one file in `needs`, not a folder

    def how_to_get(self) -> str:
        """Where it is published and where it goes in a weights folder."""
        into = f"weights/{self.local.rsplit('/', 1)[0] if self.single_file else self.local}/"
        if self.url:
            return f"get it from {self.url} into {into}"
        what = f"file {self.remote}" if self.single_file else (
            f"folder {self.remote}/" if self.remote else "config.json and the weights at the top level")
        return f"get it from Hugging Face {self.repo} ({what}) into {into}"


def _diffusers_folder(key: str, part: str, title: str, repo: str, remote: str, local: str) -> _Component:
    needs = (_Need(("config.json",)), _Need(DIFFUSERS_WEIGHTS))
    return _Component(key, part, title, local, needs, repo=repo, remote=remote)


def _propainter_file(key: str, title: str, name: str) -> _Component:
    return _Component(key, "propainter", title, f"propainter/{name}", (_Need((name,)),),
                      url=f"{PROPAINTER_RELEASE}/{name}", single_file=True)


def _components(parts: Iterable[str], steps: int) -> list[_Component]:
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown checkpoint part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    if "pcm" in parts and steps not in PCM_STEPS:
        raise InputError(f"steps must be one of {', '.join(map(str, PCM_STEPS))} (the released PCM LoRAs), got {steps!r}")
    table = {
        "denoiser": [
            _diffusers_folder("brushnet", "denoiser", "DiffuEraser BrushNet", DIFFUERASER_REPO, "brushnet", "diffuEraser/brushnet"),
            _diffusers_folder("unet_main", "denoiser", "DiffuEraser unet_main", DIFFUERASER_REPO, "unet_main", "diffuEraser/unet_main"),
        ],
        "text": [
            _Component("text_encoder", "text", "SD1.5 CLIP text encoder", "stable-diffusion-v1-5/text_encoder",
                       (_Need(("config.json",)), _Need(TRANSFORMERS_WEIGHTS)), repo=SD15_REPO, remote="text_encoder"),
            _Component("tokenizer", "text", "SD1.5 CLIP tokenizer", "stable-diffusion-v1-5/tokenizer",
                       (_Need(("vocab.json",)), _Need(("merges.txt",)), _Need(("tokenizer_config.json",)),
                        _Need(("special_tokens_map.json",), required=False)), repo=SD15_REPO, remote="tokenizer"),
        ],
        "scheduler": [
            _Component("scheduler", "scheduler", "SD1.5 scheduler config", "stable-diffusion-v1-5/scheduler",
                       (_Need(("scheduler_config.json",)),), repo=SD15_REPO, remote="scheduler"),
        ],
        "vae": [_diffusers_folder("vae", "vae", "VAE sd-vae-ft-mse", VAE_REPO, "", "sd-vae-ft-mse")],
        "pcm": [
            _Component("pcm_lora", "pcm", f"PCM LoRA ({steps} steps)", f"PCM_Weights/{PCM_SUBFOLDER}/{pcm_lora_file(steps)}",
                       (_Need((pcm_lora_file(steps),)),), repo=PCM_REPO,
                       remote=f"{PCM_SUBFOLDER}/{pcm_lora_file(steps)}", single_file=True),
        ],
        "propainter": [
            _propainter_file("raft", "ProPainter RAFT optical flow", RAFT_FILE),
            _propainter_file("flow_completion", "ProPainter recurrent flow completion", FLOW_COMPLETION_FILE),
            _propainter_file("propainter", "ProPainter inpainting generator", GENERATOR_FILE),
        ],
    }
    return [c for p in PARTS if p in parts for c in table[p]]


@dataclass(frozen=True)
class CheckpointPaths:
    """Resolved locations: folders for from_pretrained, files for the LoRA and ProPainter; None if not asked for."""

    brushnet: Optional[Path] = None
    unet_main: Optional[Path] = None
    text_encoder: Optional[Path] = None
    tokenizer: Optional[Path] = None
    scheduler: Optional[Path] = None
    vae: Optional[Path] = None
    pcm_lora: Optional[Path] = None
    pcm_steps: Optional[int] = None
    raft: Optional[Path] = None
    flow_completion: Optional[Path] = None
    propainter: Optional[Path] = None


# ---------------------------------------------------------------------------------------------
# Where to look


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (tests and apps set it late)."""
    env = os.environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def propainter_cache_dir() -> Path:
    """Where downloaded ProPainter files go: a folder beside the hub cache (not a hub repository)."""
    return hub_cache_dir().parent / "diffueraser" / "propainter"


def is_offline(local_files_only: bool = False) -> bool:
    """True when nothing may be downloaded: the argument, or HF_HUB_OFFLINE in the environment."""
    if local_files_only:
        return True
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


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


# ---------------------------------------------------------------------------------------------
# Checking files without loading them


def file_problem(path: Path) -> Optional[str]:
    """What is wrong with a checkpoint file (empty, truncated, not parseable), or None.

    Cheap: safetensors are checked against the sizes in their header, torch zip archives by
    opening their central directory, JSON by parsing.
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror})"
    if size == 0:
        return f"{path.name} is empty"
    name = path.name
    try:
        if name.endswith(".safetensors"):
            return _safetensors_problem(path, size)
        if name.endswith((".bin", ".pth", ".pt", ".ckpt")):
            with open(path, "rb") as f:
                is_zip = f.read(2) == b"PK"
            if is_zip:  # torch.save's zip format; the legacy pickle format cannot be checked cheaply
                with zipfile.ZipFile(path):
                    pass
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
    except zipfile.BadZipFile:
        return f"{name} is truncated or corrupt (incomplete archive, {size} bytes)"
    except (ValueError, UnicodeDecodeError):
        return f"{name} is truncated or corrupt (not valid JSON)"
    except OSError as e:
        return f"{name} cannot be read ({e.strerror})"
    return None


def _safetensors_problem(path: Path, size: int) -> Optional[str]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _SAFETENSORS_HEADER_LIMIT):
            return f"{path.name} is truncated or not a safetensors file (header of {n} bytes in a {size}-byte file)"
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    expected = 8 + n + end
    if size != expected:
        return f"{path.name} is truncated or corrupt ({size} bytes, its header describes {expected})"
    return None


def _index_shards(index: Path) -> list[str]:
    """Shard file names listed by a sharded checkpoint's index."""
    return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))


# ---------------------------------------------------------------------------------------------
# Looking up one component


@dataclass
class _Found:
    path: Optional[Path] = None  # the folder, or the file of a single-file component
    problem: Optional[str] = None  # partial or corrupt: why
    reason: Optional[str] = None  # absent: why, when there is more to say than "not found"


def _in_local_root(comp: _Component, root: Path) -> Optional[_Found]:
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
        if present[0].name.endswith(_INDEX_SUFFIX) and not problems:
            for shard in _index_shards(present[0]):
                problem = file_problem(target / shard) if (target / shard).is_file() else f"no shard {shard}"
                problems += [problem] if problem else []
    if problems:
        return _Found(problem=f"partial checkpoint {target}: {'; '.join(problems)}")
    return _Found(target)


_ABSENT_REMOTE = "absent from the Hugging Face repository"


def _hub_file(repo: str, filename: str, download: bool) -> tuple[Optional[Path], Optional[str]]:
    """One file of a hub repository: from the cache, else downloaded when allowed. (path, why-not)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    cache = hub_cache_dir()
    cached = try_to_load_from_cache(repo, filename, cache_dir=cache)
    if isinstance(cached, str):
        return Path(cached), None
    if cached is not None:  # the hub said earlier that it does not exist
        return None, _ABSENT_REMOTE
    if not download:
        return None, None
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache)), None
    except LocalEntryNotFoundError:
        return None, "cannot reach the Hugging Face Hub"
    except EntryNotFoundError:
        return None, _ABSENT_REMOTE
    except (OSError, ValueError) as e:  # repository gone, gated, HTTP or disk errors
        return None, f"download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _in_hub(comp: _Component, download: bool) -> Optional[_Found]:
    """The component in the Hugging Face cache, downloading the missing files when allowed."""
    prefix = f"{comp.remote}/" if comp.remote and not comp.single_file else ""
    files: list[Path] = []
    for need in comp.needs:
        path, why = None, None
        for name in need.names:
            path, why = _hub_file(comp.repo, comp.remote if comp.single_file else prefix + name, download)
            if path is not None or why not in (None, _ABSENT_REMOTE):
                break  # found, or the hub cannot be used: the other names would fail the same way
        if path is None:
            if not need.required:
                continue
            if why is None and not files:
                return None  # nothing of it cached, nothing downloaded
            return _Found(reason=why or f"only part of it is in the Hugging Face cache {hub_cache_dir()}")
        files.append(path)
        if path.name.endswith(_INDEX_SUFFIX):
            for shard in _index_shards(path):
                shard_path, why = _hub_file(comp.repo, prefix + shard, download)
                if shard_path is None:
                    return _Found(reason=why or f"shard {shard} is not in the Hugging Face cache")
                files.append(shard_path)
    problems = [p for p in map(file_problem, files) if p]
    if problems:
        return _Found(problem=f"corrupt file in the Hugging Face cache ({'; '.join(problems)}); "
                              f"delete {files[0].parent} so it is downloaded again")
    return _Found(files[0] if comp.single_file else files[0].parent)


def _in_url_cache(comp: _Component, download: bool) -> Optional[_Found]:
    """A directly downloaded file (ProPainter) in its cache folder, downloading it when allowed."""
    target = propainter_cache_dir() / Path(comp.local).name
    if target.is_file():
        problem = file_problem(target)
        return _Found(problem=f"corrupt download {target}: {problem}; delete it") if problem else _Found(target)
    if not download:
        return None
    try:
        download_file(comp.url, target)
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
        return _Found(reason=f"download failed: {type(e).__name__}: {e}")
    problem = file_problem(target)
    return _Found(problem=f"downloaded file {target} is corrupt: {problem}") if problem else _Found(target)


def download_file(url: str, dest: Path) -> None:
    """Fetch url to dest through dest.incomplete: resumes an interrupted download, renames when complete."""
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".incomplete")
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():
            return
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "diffueraser"} | ({"Range": f"bytes={have}-"} if have else {})
        log.info("downloading %s to %s", url, dest)
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_DOWNLOAD_TIMEOUT_S)
        except urllib.error.HTTPError as e:
            if e.code == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:  # a stale partial file: start over next time
                part.unlink()
            raise
        with response as r:
            if have and r.status != HTTPStatus.PARTIAL_CONTENT:  # the server ignored the range: start over
                have = 0
            length = r.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as f:
                while chunk := r.read(_DOWNLOAD_CHUNK):
                    f.write(chunk)
        if expected is not None and part.stat().st_size != expected:
            raise OSError(f"incomplete download of {url}: {part.stat().st_size} of {expected} bytes (run again to resume)")
        os.replace(part, dest)


# ---------------------------------------------------------------------------------------------
# Resolving parts


def _locate(comp: _Component, roots: list[tuple[str, Path]], download: bool) -> _Found:
    """First source that has the component; a partial one stops the search (it must be fixed, not hidden)."""
    for _, root in roots:
        found = _in_local_root(comp, root)
        if found is not None:
            return found
    found = _in_url_cache(comp, download) if comp.url else _in_hub(comp, download)
    return found if found is not None else _Found()


def _line(comp: _Component, found: _Found) -> str:
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
    for comp in _components(parts, steps):
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
    """Locate (downloading when allowed) every checkpoint of `parts`; one CheckpointError names all that fail."""
    roots, problems = _local_roots(weights_dir)
    offline = is_offline(local_files_only)
    comps = _components(parts, steps)
    if problems:
        raise CheckpointError(_report(problems, roots, offline))
    # Local pass first: a partial checkpoint is reported before anything is downloaded.
    found = {c.key: _locate(c, roots, download=False) for c in comps}
    if not any(f.problem for f in found.values()) and not offline:
        found = {c.key: f if f.path else _locate(c, [], download=True) for c, f in zip(comps, found.values())}
    lines = [_line(c, found[c.key]) for c in comps if found[c.key].path is None]
    if lines:
        raise CheckpointError(_report(lines, roots, offline))
    paths = {key: f.path for key, f in found.items()}
    return CheckpointPaths(**paths, pcm_steps=steps if "pcm_lora" in paths else None)


class ProPainterPaths(NamedTuple):
    """The released ProPainter files, in the order ProPainterPrior.from_checkpoints takes them."""

    raft: Path
    flow_completion: Path
    generator: Path


def pcm_lora_path(steps: int = 2, weights_dir: Optional[os.PathLike] = None, local_files_only: bool = False) -> Path:
    """The released PCM LoRA file for `steps` denoising steps."""
    return resolve(["pcm"], weights_dir, local_files_only, steps).pcm_lora


def propainter_paths(weights_dir: Optional[os.PathLike] = None, local_files_only: bool = False) -> ProPainterPaths:
    """The three ProPainter checkpoint files."""
    p = resolve(["propainter"], weights_dir, local_files_only)
    return ProPainterPaths(p.raft, p.flow_completion, p.propainter)


# ---------------------------------------------------------------------------------------------
# Loaders


def _need(path: Optional[Path], part: str) -> Path:
    if path is None:
        raise CheckpointError(f"the {part} checkpoint was not resolved; call resolve() with {part!r} in parts")
    return path


@contextmanager
def _loading(what: str, path: Path) -> Iterator[None]:
    """Turn any failure while loading into a CheckpointError naming the checkpoint."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot load the {what} from {path}: {type(e).__name__}: {e}; "
                              f"delete it so it is fetched again, or replace it") from e


class TextEncoder(NamedTuple):
    """The SD1.5 prompt encoder: its tokenizer and CLIP text model."""

    tokenizer: Any  # transformers.CLIPTokenizer
    model: Any  # transformers.CLIPTextModel


def load_text_encoder(paths: CheckpointPaths, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> TextEncoder:
    """The SD1.5 CLIP tokenizer and text encoder (eval mode)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = _need(paths.tokenizer, "text")
    with _loading("CLIP tokenizer", folder):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    folder = _need(paths.text_encoder, "text")
    with _loading("CLIP text encoder", folder):
        model = CLIPTextModel.from_pretrained(folder, dtype=dtype)
    return TextEncoder(tokenizer, model.to(device).eval())


def load_vae(paths: CheckpointPaths, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The sd-vae-ft-mse AutoencoderKL (eval mode)."""
    from diffusers import AutoencoderKL

    folder = _need(paths.vae, "vae")
    with _loading("VAE", folder):
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype)
    return vae.to(device).eval()


class Denoiser(NamedTuple):
    """The two DiffuEraser networks."""

    brushnet: Any  # diffueraser.models.BrushNetModel
    unet_main: Any  # diffueraser.models.UNetMotionModel


def load_denoiser(paths: CheckpointPaths, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> Denoiser:
    """The released BrushNet and unet_main (eval mode)."""
    from .models import BrushNetModel, UNetMotionModel

    nets = []
    for cls, folder, what in ((BrushNetModel, paths.brushnet, "BrushNet"), (UNetMotionModel, paths.unet_main, "unet_main")):
        folder = _need(folder, "denoiser")
        with _loading(what, folder):
            nets.append(cls.from_pretrained(folder, torch_dtype=dtype).to(device).eval())
    return Denoiser(*nets)


def load_scheduler_config(paths: CheckpointPaths) -> dict:
    """The SD1.5 scheduler_config.json as a dict."""
    folder = _need(paths.scheduler, "scheduler")
    with _loading("scheduler config", folder):
        return json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8"))
