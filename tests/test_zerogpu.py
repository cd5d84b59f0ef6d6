"""The app as a ZeroGPU Space runs it, simulated on a CPU machine: errors keep their own message
through spaces' GPU worker, bad input asks for no GPU, nothing initialises CUDA at start-up, the
models go where `spaces` expects them, and a normal request works end to end.

How (tests/zerogpu_sim.py): the Space runs in a process of its own (ZeroGPU patching is
process-global) as `app.main()` of the root app.py, with SPACES_ZERO_GPU=true, so `import spaces`
(first, as app.py does) turns on ZeroGPU mode. `SPACES_ZERO_DEVICE_API_URL` points at
`FakeDeviceAPI`, an HTTP server in this process on 127.0.0.1 that answers spaces' client
(/startup-report, /schedule granting GPU 0 at once, /allow, /release) and records every call.
Requests go through `gradio_client` to `/erase`, as a script would call a Space.

Real: the `spaces` package (0.51.3) unchanged in ZeroGPU mode: its torch patching from import on
(fake CUDA device, `.to("cuda")` turned into CPU-backed aliases), its packing of those tensors to
disk at launch and its start-up report; its `@spaces.GPU` wrapper: the duration function, the
/schedule call over HTTP, pickling the arguments to a forked worker process, the worker start
(/allow, undoing the patching, forwarding Gradio progress), running `run_model` there, sending
back the result or the exception, /release, and re-raising only a `gr.Error` as it is. The app's
own start-up (engine loading with `device='auto'` under the patching), page, checks and writing.

Simulated: this machine's torch is a CPU build. Where `spaces` reads it, it is made to look like
the CUDA build a Space installs, without a driver: `torch.version.cuda` reads "12.8",
`torch._C._cuda_init` exists and fails ("no NVIDIA driver"; every call is recorded, none may
happen) and `torch._C._cuda_isInBadFork` is a plain function. In the worker, spaces' two steps
that need a GPU are replaced: `torch.init` (the first real CUDA tensor) and `torch.move` (copying
the packed tensors to the GPU) only record that they ran and how many bytes would move. So the
GPU function runs on the CPU: the served engine is the weight-free one the app falls back to with
no checkpoints (the propagation prior, no network), whose eraser is wrapped so that chosen seeds
raise torch.OutOfMemoryError or InputError inside the GPU function. The device API is a stand-in
that always grants a GPU (no queue, quota or timeout answers). The engine has no network to place,
so placement is checked on a network put on the device by the engine's own `resolve_device` and
`weights.load.to_device`, and, in the slow test, on the DiffuEraser networks (tiny checkpoints)
loaded by the app itself. The page is served without its example gallery.

Not covered: CUDA kernels and a real out-of-memory, the copy of packed tensors to a GPU, spaces'
own refusals (queue timeout, quota, duration exceeded), and Spaces' proxy headers (X-IP-Token).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from diffueraser import media
from diffueraser.app import jobs
from test_app import FPS, PROGRESS_POLL_S, SERVER_LIMITS, _write_bytes, _write_image, _write_video, free_port, submit
from zerogpu_sim import (CUDA_BUILD, EVENTS, FAKE_GPU_UUID, INPUT_ERROR_SEED, INPUT_ERROR_TEXT, OOM_SEED, READY,
                         FakeDeviceAPI)

REPO = Path(__file__).resolve().parents[1]
SIM = Path(__file__).resolve().parent / "zerogpu_sim.py"
START_TIMEOUT_S = 240  # the Space process: imports, engine, launch (slow when the cores are shared)
STOP_TIMEOUT_S = 30
CGROUP = "/zerogpu-sim"  # the device cgroup spaces reads from /proc/self/cgroup and sends to /schedule
SIZE = (64, 48)  # the test clip: width, height
CLIP_SECONDS = 0.4  # 10 frames at 25 fps
ENGINE_STAGES = {"reading", "masks", "prior", "writing"}  # the engine's progress stages: in the GPU worker
LIMIT_ENV = {f"DIFFUERASER_APP_{name.upper()}": str(getattr(SERVER_LIMITS, name))
             for name in ("max_seconds", "max_video_seconds", "max_size", "max_upload_mb", "gpu_jobs")}


@dataclass
class Space:
    """One simulated Space process and what it reported."""

    process: subprocess.Popen
    folder: Path
    facts: dict
    url: str

    def events(self, kind: str | None = None) -> list[dict]:
        path = self.folder / EVENTS
        lines = path.read_text().splitlines() if path.exists() else []
        found = [json.loads(line) for line in lines]
        return [e for e in found if kind is None or e["event"] == kind]

    def log(self) -> str:
        return (self.folder / "log").read_text(errors="replace")[-4000:]


def start_space(folder: Path, api: FakeDeviceAPI, *args: str) -> Space:
    """Start tests/zerogpu_sim.py as a ZeroGPU Space would run app.py; returns once it serves."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup").write_text(f"1:devices:{CGROUP}\n")
    env = {**os.environ, **LIMIT_ENV,
           "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": api.url,
           "ZEROGPU_OFFLOAD_DIR": str(folder / "offload"), "ZEROGPU_PROC_SELF_CGROUP_PATH": str(folder / "cgroup"),
           "ZEROGPU_SIM_DIR": str(folder), "HF_HOME": str(folder / "hf"), "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(folder / "gradio"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("DIFFUERASER_WEIGHTS", "HF_HUB_CACHE", "PYTHONPATH"):
        env.pop(name, None)
    port = free_port()
    with open(folder / "log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(SIM), "--host", "127.0.0.1", "--port", str(port), "--offline", *args],
            cwd=folder, env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    space = Space(process, folder, {}, f"http://127.0.0.1:{port}/")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (folder / READY).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_space(space)
            pytest.fail(f"the simulated Space did not start (exit {process.returncode}):\n{space.log()}")
        time.sleep(0.2)
    space.facts = json.loads((folder / READY).read_text())
    return space


def stop_space(space: Space) -> None:
    """Close its stdin (it closes the page and exits, ending spaces' daemon workers); kill it if it hangs."""
    if space.process.stdin and not space.process.stdin.closed:
        space.process.stdin.close()
    try:
        space.process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(space.process.pid, signal.SIGKILL)  # its own session: the Space and its workers only
        space.process.wait()


@pytest.fixture(scope="module")
def device_api():
    with FakeDeviceAPI() as api:
        yield api


@pytest.fixture(scope="module")
def space(tmp_path_factory, device_api):
    started = start_space(tmp_path_factory.mktemp("space"), device_api)
    try:
        yield started
    finally:
        stop_space(started)


@pytest.fixture(scope="module")
def client(space, tmp_path_factory):
    from gradio_client import Client

    return Client(space.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """A 10-frame video and a mask image with a square to remove."""
    folder = tmp_path_factory.mktemp("clip")
    video = _write_video(folder / "clip.mp4", CLIP_SECONDS, SIZE)
    mask = np.zeros(SIZE[::-1], np.uint8)
    mask[16:32, 24:40] = 255
    cv2.imwrite(str(folder / "mask.png"), mask)
    return video, folder / "mask.png"


def schedules(api: FakeDeviceAPI) -> int:
    return len(api.calls_to("/schedule"))


# ---------------------------------------------------------------------------------------------


def test_the_space_starts_in_zerogpu_mode_without_initialising_cuda(space, device_api):
    facts = space.facts
    assert facts["zero_gpu"] and facts["torch_version_cuda"] == CUDA_BUILD
    assert not facts["torch_imported_before_app"]  # app.py imported `spaces`, which imported torch
    assert facts["run_model_is_zerogpu"]  # the GPU function is spaces' wrapper
    assert facts["cuda_available_as_patched"]  # what the app sees under the patching
    assert facts["cuda_initialized_after_import"] is False
    for moment in ("before_launch", "after_launch"):
        for where in ("engine", "probe"):
            assert facts[moment][where]["cuda_initialized"] is False, (moment, where)
    assert not space.events("cuda_init"), "something tried to initialise CUDA"
    assert facts["rung"] == "the weight-free propagation prior alone"
    assert device_api.paths().count("/startup-report") == 1 and "/schedule" not in device_api.paths()


def test_models_are_put_on_the_device_spaces_emulates_and_packed_at_launch(space):
    before, after = space.facts["before_launch"], space.facts["after_launch"]
    # The loaders' placement (`device='auto'`) picks CUDA in float16 under the patching; spaces
    # turns `.to("cuda")` into fake CUDA tensors backed by the CPU originals...
    probe = before["probe"]
    assert probe["tensors"] == 2 and probe["reported_devices"] == ["cuda:0"] and probe["dtypes"] == ["torch.float16"]
    assert probe["not_zerogpu_aliases"] == [] and probe["originals"] == ["cpu"] and probe["packs"] == 0
    # ...and at launch packs those originals to disk, for its worker to copy onto the GPU.
    assert after["probe"]["originals"] == ["packed"] and after["probe"]["reported_devices"] == ["cuda:0"]
    assert after["probe"]["packs"] == 1 and after["probe"]["packed_bytes"] >= probe["bytes"] > 0
    assert before["engine"]["tensors"] == 0  # the weight-free engine has no network (see the slow test)


@pytest.mark.parametrize("case", ["text file as video", "empty mask"])
def test_bad_input_gets_its_own_message_and_no_gpu_is_asked_for(space, client, device_api, clip, tmp_path, case):
    from gradio_client.exceptions import AppError

    video, mask = clip
    if case == "text file as video":
        video, words = _write_bytes(tmp_path / "notes.txt", b"hello"), "notes.txt is not a video"
    else:
        mask, words = _write_image(tmp_path / "black.png", 0, SIZE), "the mask is empty"
    asked = schedules(device_api)
    with pytest.raises(AppError) as raised:
        submit(client, video, mask).result()
    assert words in str(raised.value)
    assert "InputError" not in str(raised.value) and "ZeroGPU" not in str(raised.value)
    assert schedules(device_api) == asked  # refused before `run_model`: no GPU scheduled


@pytest.mark.parametrize("seed, words", [(OOM_SEED, jobs.OUT_OF_MEMORY), (INPUT_ERROR_SEED, INPUT_ERROR_TEXT)],
                         ids=["out of memory", "input error"])
def test_an_error_inside_the_gpu_function_keeps_its_message(space, client, device_api, clip, seed, words):
    from gradio_client.exceptions import AppError

    asked = schedules(device_api)
    with pytest.raises(AppError) as raised:
        submit(client, *clip, seed=seed).result()
    message = str(raised.value)
    assert words in message
    assert "OutOfMemoryError" not in message and "InputError" not in message and "ZeroGPU" not in message
    assert schedules(device_api) == asked + 1
    release = device_api.calls_to("/release")[-1]
    assert release["fail"].lower() == "true"  # spaces reports the failed GPU task
    raised_in = [e for e in space.events("eraser") if e["seed"] == seed][-1]
    assert raised_in["pid"] != space.facts["server_pid"]  # in spaces' forked worker...
    assert raised_in["torch_device_patched"] is False  # ...with the patching undone, as on a GPU


def test_a_request_runs_in_the_gpu_worker_end_to_end_with_progress(space, client, device_api, clip):
    video, mask = clip
    asked = schedules(device_api)
    job = submit(client, video, mask, seed=5)
    seen = []  # (stage, fraction) of the progress bar while the job runs
    while not job.done():
        seen += [(p.desc.split(":")[0], p.progress) for p in job.status().progress_data or [] if p.desc]
        time.sleep(PROGRESS_POLL_S)
    result, prior, comparison, downloads, summary = job.result()

    out = media.read_video(result)
    assert out.frames.shape == (int(CLIP_SECONDS * FPS), SIZE[1], SIZE[0], 3) and out.fps == FPS
    assert "10 frames at 64×48" in summary and "seed 5" in summary
    assert {stage for stage, _ in seen} & ENGINE_STAGES, seen  # from inside the worker, forwarded by spaces
    assert [f for _, f in seen] == sorted(f for _, f in seen)  # the page's saving continues where it stopped

    assert schedules(device_api) == asked + 1
    scheduled = device_api.calls_to("/schedule")[-1]
    assert scheduled["cgroupPath"] == CGROUP and int(scheduled["durationSeconds"]) == jobs.GPU_MIN_S
    token = f"token-{asked + 1}"
    assert device_api.calls_to("/release")[-1] == {"allowToken": token, "fail": "false"}
    ran = [e for e in space.events("eraser") if e["seed"] == 5][-1]
    allowed = [c for c in device_api.calls_to("/allow") if c["allowToken"] == token]
    assert [int(c["pid"]) for c in allowed] == [ran["pid"]] and ran["pid"] != space.facts["server_pid"]
    init = [e for e in space.events("init") if e["pid"] == ran["pid"]]
    move = [e for e in space.events("move") if e["pid"] == ran["pid"]]
    assert init and init[0]["nvidia_uuid"] == FAKE_GPU_UUID and init[0]["torch_device_patched"] is False
    assert move and move[0]["bytes"] == space.facts["after_launch"]["probe"]["packed_bytes"]


@pytest.mark.slow
def test_the_diffusion_models_load_onto_the_emulated_gpu_and_are_packed_at_launch(tmp_path):
    """The app's own start-up with (tiny) DiffuEraser checkpoints, under the patching: every network
    tensor becomes a CPU-backed fake CUDA tensor in float16, CUDA is never initialised, launch packs
    them all."""
    from tiny_checkpoints import write_tiny_weights

    weights = write_tiny_weights(tmp_path / "weights", "released", ["denoiser", "text", "scheduler", "vae", "pcm"])
    with FakeDeviceAPI() as api:
        space = start_space(tmp_path / "space", api, "--weights", str(weights))
        try:
            before, after = space.facts["before_launch"]["engine"], space.facts["after_launch"]["engine"]
            assert space.facts["rung"] == "DiffuEraser over the weight-free propagation prior"
            assert before["tensors"] > 1000 and before["reported_devices"] == ["cuda:0"]
            assert before["not_zerogpu_aliases"] == [] and before["originals"] == ["cpu"]
            assert before["dtypes"] == ["torch.float16"]
            assert after["originals"] == ["packed"] and after["packed_bytes"] >= before["bytes"]
            assert not before["cuda_initialized"] and not after["cuda_initialized"] and not space.events("cuda_init")
        finally:
            stop_space(space)
