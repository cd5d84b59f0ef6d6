"""How a missing file is fetched: Hugging Face files through huggingface_hub, the ProPainter
release files through torch.hub, each into its cache; nothing here speaks HTTP itself."""
from __future__ import annotations

import http.client
import logging
import os
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from .files import file_problem

log = logging.getLogger(__name__)

ABSENT_REMOTE = "absent from the Hugging Face repository"
HUB_UNREACHABLE = "cannot reach the Hugging Face Hub"
DOWNLOAD_FAILED = "download failed"


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


class Fetched(NamedTuple):
    """A file found or fetched (`path`), or why not: `absent` (the source does not have it) or
    `error` (fetching failed: no network, refused); both None when it is not cached and no download was tried."""

    path: Optional[Path] = None
    absent: bool = False
    error: Optional[str] = None


def _failure(e: BaseException) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{DOWNLOAD_FAILED}: {type(e).__name__}: {first}"


def hub_file(repo: str, filename: str, download: bool) -> Fetched:
    """One file of a hub repository: from the cache, else downloaded by huggingface_hub when allowed."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    cache = hub_cache_dir()
    cached = try_to_load_from_cache(repo, filename, cache_dir=cache)
    if isinstance(cached, str):
        return Fetched(Path(cached))
    if cached is not None:  # the hub said earlier that it does not exist
        return Fetched(absent=True)
    if not download:
        return Fetched()
    try:
        return Fetched(Path(hf_hub_download(repo, filename, cache_dir=cache)))
    except LocalEntryNotFoundError:
        return Fetched(error=HUB_UNREACHABLE)
    except EntryNotFoundError:
        return Fetched(absent=True)
    except (OSError, ValueError) as e:  # repository gone, gated, HTTP or disk errors
        return Fetched(error=_failure(e))


def fetch_url(url: str, dest: Path) -> Fetched:
    """Download `url` to `dest` with torch.hub, atomically: into a temporary file beside it, checked,
    then renamed; a file lock keeps two processes from fetching it at once."""
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the suffix, so that file_problem checks it as what it is.
    part = dest.with_name(f"{dest.stem}.incomplete{dest.suffix}")
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():  # another process fetched it while this one waited
            return Fetched(dest)
        log.info("downloading %s to %s", url, dest)
        try:
            torch.hub.download_url_to_file(url, str(part))
            problem = file_problem(part)
            if problem:
                problem = problem.replace(part.name, dest.name, 1)
                return Fetched(error=f"{DOWNLOAD_FAILED}: the downloaded file is unusable ({problem})")
            os.replace(part, dest)
        except (OSError, http.client.HTTPException) as e:  # URLError and HTTPError are OSErrors
            return Fetched(error=_failure(e))
        finally:
            part.unlink(missing_ok=True)
    return Fetched(dest)


HUB_CHECK_TIMEOUT_S = 3.0
"""One short look at the Hub before downloading: a machine without network starts at once instead
of spending minutes in the download retries."""


def hub_endpoint() -> str:
    """The Hub's address: HF_ENDPOINT at call time, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_unreachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> Optional[str]:
    """None when the Hub answers (any HTTP status), else why not, in a few words (one attempt, no retry)."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(hub_endpoint(), timeout=timeout)
    except Exception as e:  # DNS, refused, timed out, TLS: all mean "not now"
        return f"{HUB_UNREACHABLE} ({type(e).__name__})"
    return None


def go_offline() -> None:
    """From now on this process downloads nothing (huggingface_hub and transformers read these)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
