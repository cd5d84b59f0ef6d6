"""A ZeroGPU Space on a CPU machine: a fake device API for the `spaces` client, and the app run under
`spaces`' ZeroGPU mode in a process of its own (see tests/test_zerogpu.py for what is real and what
is simulated).

    FakeDeviceAPI     the HTTP endpoints `spaces.zero.api.APIClient` calls, on 127.0.0.1, recording them
    python tests/zerogpu_sim.py
                      the Space: `app.main()` (the root app.py, which imports `spaces` first) with
                      SPACES_ZERO_GPU=true in its environment, and
                      - this CPU build of torch made to read as a CUDA build without a driver where
                        `spaces` looks (`_CudaBuild`), as torch is first imported;
                      - the two steps of spaces' worker start that need an NVIDIA driver replaced;
                      - where the served engine's networks are, and a probe network put on the device
                        by the engine's own placement, before and after launch (ready.json);
                      - the engine's eraser wrapped so that chosen seeds raise inside the GPU function.
                      It serves until its stdin is closed.

The hooks write JSON to files under $ZEROGPU_SIM_DIR; the test reads them.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

OOM_SEED = 4101  # a request with this seed: the GPU function's eraser raises torch.OutOfMemoryError
INPUT_ERROR_SEED = 4102  # ... raises InputError(INPUT_ERROR_TEXT)
INPUT_ERROR_TEXT = "the mask leaves nothing to fill from (raised inside the GPU function)"
PROGRESS_HOLD_S = 0.5  # the engine's last progress report stays this long, for the test to see it
READY = "ready.json"  # what the Space process saw up to its launch
EVENTS = "events.jsonl"  # one line per worker start step and eraser call, from whichever process ran it
CUDA_BUILD = "12.8"  # the CUDA version of the torch build a ZeroGPU Space installs
FAKE_GPU_UUID = "GPU-00000000-sim0-0000-0000-000000000000"


# ---------------------------------------------------------------------------------------------
# The device API (runs in the test process)


class FakeDeviceAPI:
    """Answers /startup-report, /schedule, /allow and /release as the ZeroGPU device API does for a
    Space with a free GPU: every schedule is granted at once, on GPU index 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with api.lock:
                    api.calls.append((url.path, params))
                    granted = sum(1 for path, _ in api.calls if path == "/schedule")
                if url.path == "/schedule":
                    body = {"idle": True, "nvidiaIndex": 0, "nvidiaUUID": FAKE_GPU_UUID,
                            "allowToken": f"token-{granted}"}
                    self._answer(200, json.dumps(body).encode(), "application/json")
                elif url.path in ("/startup-report", "/allow", "/release"):
                    self._answer(200, b"{}", "application/json")
                else:
                    self._answer(404, b"{}", "application/json")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeDeviceAPI":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.calls]

    def calls_to(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [params for p, params in self.calls if p == path]


# ---------------------------------------------------------------------------------------------
# The Space (runs in its own process)


def _record(event: str, **data: Any) -> None:
    line = json.dumps({"event": event, "pid": os.getpid(), **data}) + "\n"
    with open(Path(os.environ["ZEROGPU_SIM_DIR"]) / EVENTS, "a") as f:
        f.write(line)


def _tensors(state) -> dict[str, Any]:
    """Every parameter and buffer of the served engine's networks, by name."""
    import torch

    found: dict[str, Any] = {}
    for owner_name in ("diffuser", "propainter"):
        owner = getattr(state.eraser, owner_name, None)
        if owner is None:
            continue
        for attr, value in vars(owner).items():
            if isinstance(value, torch.nn.Module):
                for name, t in [*value.named_parameters(), *value.named_buffers()]:
                    found[f"{owner_name}.{attr}.{name}"] = t
            elif isinstance(value, torch.Tensor):
                found[f"{owner_name}.{attr}"] = value
    return found


def _probe() -> Any:
    """A small network put where the engine's loaders put theirs: `weights.load.to_device` onto the
    device `engine.resolve_device` picks for the released settings, in its dtype."""
    import torch

    from diffueraser.app import RELEASED
    from diffueraser.engine import resolve_device
    from diffueraser.weights.load import to_device

    device, dtype = resolve_device(RELEASED)
    return to_device(torch.nn.Conv2d(3, 8, 3).to(dtype), device, "a probe network")


def _placement(tensors: dict[str, Any], packed: bool = False) -> dict[str, Any]:
    """Where these tensors are, as `spaces`' torch patching sees them. Once packed, a tensor's data
    is on disk and torch refuses to read it (its size, its dtype) in this process."""
    import torch
    from spaces.zero.torch import patching

    seen = {
        "tensors": len(tensors),
        "reported_devices": sorted({str(t.device) for t in tensors.values()}),
        "not_zerogpu_aliases": [n for n, t in tensors.items() if t not in patching.cuda_aliases],
        # an alias's original: the CPU tensor behind it until packing (None once packed to disk)
        "originals": sorted({"packed" if patching.cuda_aliases[t] is None else str(patching.cuda_aliases[t].device)
                             for t in tensors.values() if t in patching.cuda_aliases}),
        "packs": len(patching.tensor_packs),
        "packed_bytes": sum(pack.total_size for pack in patching.tensor_packs),
        "cuda_initialized": torch.cuda.is_initialized(),
    }
    if not packed:
        seen["bytes"] = sum(t.numel() * t.element_size() for t in tensors.values())
        seen["dtypes"] = sorted({str(t.dtype) for t in tensors.values()})
    return seen


class SimEraser:
    """The served eraser, raising on chosen seeds, and noting where each call runs."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __call__(self, clip, holes, settings, progress=None):
        import torch
        from spaces.zero.torch import patching

        _record("eraser", seed=settings.seed, torch_device_patched=torch.device is not patching._device)
        if settings.seed == OOM_SEED:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        if settings.seed == INPUT_ERROR_SEED:
            from diffueraser.errors import InputError

            raise InputError(INPUT_ERROR_TEXT)
        result = self.real(clip, holes, settings=settings, progress=progress)
        time.sleep(PROGRESS_HOLD_S)
        return result


class _CudaBuild(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes this machine's CPU build of torch look, where `spaces` reads it, like the CUDA build a
    ZeroGPU Space installs, on a machine without the NVIDIA driver: `torch.version.cuda` reads
    CUDA_BUILD (`spaces.zero.torch.static` parses it) and `torch._C._cuda_init` exists (`spaces`
    saves and replaces it) and fails as it does there, "no NVIDIA driver"; `_cuda_isInBadFork` is
    a function `spaces` can send to a forked process. They are set as torch is
    first imported, by `spaces` as in the Space, and every call of `_cuda_init` is recorded."""

    NAMES = ("torch.version", "torch._C")

    def __init__(self) -> None:
        self.loaders: dict[str, Any] = {}

    def find_spec(self, name, path=None, target=None):
        if name not in self.NAMES or name in self.loaders:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        self.loaders[name] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loaders[spec.name].create_module(spec)

    def exec_module(self, module) -> None:
        self.loaders[module.__name__].exec_module(module)
        if module.__name__ == "torch.version" and module.cuda is None:
            module.cuda = CUDA_BUILD
        if module.__name__ == "torch._C" and not hasattr(module, "_cuda_init"):
            module._cuda_init = _cuda_init_without_driver
            module._cuda_isInBadFork = _cuda_is_in_bad_fork
        if len(self.loaders) == len(self.NAMES):
            sys.meta_path.remove(self)


def _cuda_is_in_bad_fork() -> bool:
    """A CUDA build's answer in a process forked before any CUDA init (a builtin there, which `spaces`
    sends to a forked process; the CPU build's stand-in is a lambda, which cannot be sent)."""
    return False


def _cuda_init_without_driver() -> None:
    _record("cuda_init")
    raise RuntimeError("Found no NVIDIA driver on your system (ZeroGPU simulation on a CPU machine)")


def main() -> None:
    out = Path(os.environ["ZEROGPU_SIM_DIR"])
    started = time.perf_counter()
    before = {"torch_imported_before_app": "torch" in sys.modules}
    sys.meta_path.insert(0, _CudaBuild())

    import app  # noqa: E402  (the Space's entry point: `spaces` first, then torch through diffueraser.app)

    import spaces.zero.torch as zero_torch
    import torch
    from spaces.config import Config
    from spaces.zero.torch import patching

    from diffueraser.app import jobs

    facts: dict[str, Any] = {
        **before,
        "zero_gpu": Config.zero_gpu,
        "run_model_is_zerogpu": hasattr(jobs.run_model, "zerogpu"),
        "cuda_available_as_patched": torch.cuda.is_available(),
        "cuda_initialized_after_import": torch.cuda.is_initialized(),
        "server_pid": os.getpid(),
        "seconds_import": time.perf_counter() - started,
        "torch_version_cuda": torch.version.cuda,
    }

    # What needs an NVIDIA driver in spaces' worker start (`worker_init`): `torch.init` makes the
    # first CUDA tensor and `torch.move` copies the packed models onto the GPU. Both are replaced;
    # the rest of the worker start (allow, unpatch, queue patching) is spaces' own.
    def init_without_driver(nvidia_uuid: str) -> None:
        _record("init", nvidia_uuid=nvidia_uuid, torch_device_patched=torch.device is not patching._device)

    def move_without_driver(callback=None) -> None:
        _record("move", bytes=zero_torch.size())

    zero_torch.init = init_without_driver
    zero_torch.move = move_without_driver

    real_build_demo, real_launch = app.build_demo, app.launch

    def build_demo(state, limits, examples):
        facts["rung"] = state.rung.name
        facts["seconds_loaded"] = time.perf_counter() - started
        probe = _probe()
        facts["before_launch"] = {"engine": _placement(_tensors(state)), "probe": _placement(dict(probe.named_parameters()))}
        state.eraser = SimEraser(state.eraser)
        facts["state"], facts["probe"] = state, probe  # not written: kept to look at after launch
        return real_build_demo(state, limits, examples)

    def launch(demo, limits, **kwargs):
        real_launch(demo, limits, **kwargs, prevent_thread_lock=True, quiet=True)  # spaces packs here
        state, probe = facts.pop("state"), facts.pop("probe")
        facts["after_launch"] = {"engine": _placement(_tensors(state), packed=True),
                                 "probe": _placement(dict(probe.named_parameters()), packed=True)}
        facts["port"] = kwargs["server_port"]
        facts["seconds_launched"] = time.perf_counter() - started
        (out / (READY + ".part")).write_text(json.dumps(facts))
        (out / (READY + ".part")).rename(out / READY)
        # Serve until the test closes stdin. Read below Python's file object: a thread blocked in
        # `sys.stdin.read()` holds its lock, and spaces' forked worker, which closes its copy of
        # sys.stdin on start (multiprocessing does), would wait for that lock forever.
        while os.read(sys.stdin.fileno(), 1024):
            pass
        demo.close()

    app.build_demo, app.launch = build_demo, launch
    app.find_examples = lambda: []  # no gallery: examples/ is not written to
    app.main(sys.argv[1:])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: app.py
    main()
