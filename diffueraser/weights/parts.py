"""What each checkpoint part is: the files it needs, where it is published, where it goes in a weights folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

from ..errors import InputError
from ..settings import PCM_STEPS

PARTS = ("denoiser", "text", "scheduler", "vae", "pcm", "propainter")
"""denoiser: brushnet + unet_main; text: CLIP text encoder + tokenizer; scheduler: SD1.5 scheduler
config; vae; pcm: the PCM LoRA of the chosen step count; propainter: the three ProPainter networks."""

TRACKER_PARTS = ("sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large", "edgetam", "sam3")
"""Segment-and-track checkpoints for making masks (transformers format; one is resolved at a time,
into `CheckpointPaths.tracker`). sam3 is gated on the Hub: accept its licence and give a token."""
TRACKER_REPOS = {
    "sam2.1-tiny": "facebook/sam2.1-hiera-tiny", "sam2.1-small": "facebook/sam2.1-hiera-small",
    "sam2.1-base-plus": "facebook/sam2.1-hiera-base-plus", "sam2.1-large": "facebook/sam2.1-hiera-large",
    "edgetam": "yonigozlan/EdgeTAM-hf", "sam3": "facebook/sam3",
}
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


def pcm_lora_file(steps: int) -> str:
    """File name of the released PCM LoRA for a step count."""
    return f"pcm_sd15_smallcfg_{steps}step_converted.safetensors"


@dataclass(frozen=True)
class Need:
    """One file a component needs: alternative names, the preferred first."""

    names: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Component:
    """A folder (or single file) the engine needs, and where it is published."""

    key: str  # CheckpointPaths field
    part: str
    title: str
    local: str  # path inside a weights/ folder of the released layout
    needs: tuple[Need, ...]
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


def _tracker_folder(part: str) -> Component:
    """A transformers video segmenter: config and weights at the top of its Hub repository (SAM 3
    also needs its text tokenizer)."""
    repo = TRACKER_REPOS[part]
    needs = (Need(("config.json",)), Need(TRANSFORMERS_WEIGHTS))
    title = f"{repo.split('/')[-1]} tracker"
    if part == "sam3":
        needs += (Need(("tokenizer.json", "vocab.json")), Need(("tokenizer_config.json",)),
                  Need(("merges.txt",), required=False), Need(("processor_config.json",), required=False))
        title += " (gated on the Hub: accept its licence there and set HF_TOKEN)"
    return Component("tracker", part, title, repo.split("/")[-1], needs, repo=repo)


def _diffusers_folder(key: str, part: str, title: str, repo: str, remote: str, local: str) -> Component:
    needs = (Need(("config.json",)), Need(DIFFUSERS_WEIGHTS))
    return Component(key, part, title, local, needs, repo=repo, remote=remote)


def _propainter_file(key: str, title: str, name: str) -> Component:
    return Component(key, "propainter", title, f"propainter/{name}", (Need((name,)),),
                     url=f"{PROPAINTER_RELEASE}/{name}", single_file=True)


def components(parts: Iterable[str], steps: int) -> list[Component]:
    """The components of `parts`, in PARTS order (ValueError for an unknown part, InputError for unreleased steps)."""
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS) - set(TRACKER_PARTS))
    if unknown:
        raise ValueError(f"unknown checkpoint part(s) {', '.join(unknown)}; known: {', '.join(PARTS + TRACKER_PARTS)}")
    if "pcm" in parts and steps not in PCM_STEPS:
        raise InputError(f"steps must be one of {', '.join(map(str, PCM_STEPS))} (the released PCM LoRAs), got {steps!r}")
    table = {
        "denoiser": [
            _diffusers_folder("brushnet", "denoiser", "DiffuEraser BrushNet", DIFFUERASER_REPO, "brushnet", "diffuEraser/brushnet"),
            _diffusers_folder("unet_main", "denoiser", "DiffuEraser unet_main", DIFFUERASER_REPO, "unet_main", "diffuEraser/unet_main"),
        ],
        "text": [
            Component("text_encoder", "text", "SD1.5 CLIP text encoder", "stable-diffusion-v1-5/text_encoder",
                      (Need(("config.json",)), Need(TRANSFORMERS_WEIGHTS)), repo=SD15_REPO, remote="text_encoder"),
            Component("tokenizer", "text", "SD1.5 CLIP tokenizer", "stable-diffusion-v1-5/tokenizer",
                      (Need(("vocab.json",)), Need(("merges.txt",)), Need(("tokenizer_config.json",)),
                       Need(("special_tokens_map.json",), required=False)), repo=SD15_REPO, remote="tokenizer"),
        ],
        "scheduler": [
            Component("scheduler", "scheduler", "SD1.5 scheduler config", "stable-diffusion-v1-5/scheduler",
                      (Need(("scheduler_config.json",)),), repo=SD15_REPO, remote="scheduler"),
        ],
        "vae": [_diffusers_folder("vae", "vae", "VAE sd-vae-ft-mse", VAE_REPO, "", "sd-vae-ft-mse")],
        "pcm": [
            Component("pcm_lora", "pcm", f"PCM LoRA ({steps} steps)", f"PCM_Weights/{PCM_SUBFOLDER}/{pcm_lora_file(steps)}",
                      (Need((pcm_lora_file(steps),)),), repo=PCM_REPO,
                      remote=f"{PCM_SUBFOLDER}/{pcm_lora_file(steps)}", single_file=True),
        ],
        "propainter": [
            _propainter_file("raft", "ProPainter RAFT optical flow", RAFT_FILE),
            _propainter_file("flow_completion", "ProPainter recurrent flow completion", FLOW_COMPLETION_FILE),
            _propainter_file("propainter", "ProPainter inpainting generator", GENERATOR_FILE),
        ],
    }
    table.update({part: [_tracker_folder(part)] for part in TRACKER_PARTS})
    return [c for p in PARTS + TRACKER_PARTS if p in parts for c in table[p]]


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
    tracker: Optional[Path] = None  # the one TRACKER_PARTS checkpoint asked for


class ProPainterPaths(NamedTuple):
    """The released ProPainter files: RAFT, flow completion, generator."""

    raft: Path
    flow_completion: Path
    generator: Path
