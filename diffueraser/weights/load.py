"""Loaders: resolved checkpoint paths in, networks on the device out.

Each network is read on the CPU inside a guard that turns any failure into a CheckpointError naming
the checkpoint (it is missing, broken or another model), then moved to the device outside it: a
failure there (out of memory, a driver error) is a DeviceError, never advice to delete the files.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, TypeVar

import torch

from ..errors import CheckpointError, DeviceError, UserError
from .files import read_safetensors, tensor_source
from .locate import pcm_lora_path
from .parts import CheckpointPaths
from .strict import load_strict

Device = str | torch.device
Module = TypeVar("Module", bound=torch.nn.Module)


def need(path: Optional[Path], part: str) -> Path:
    """`path`, which resolve() fills when `part` was asked for."""
    if path is None:
        raise CheckpointError(f"the {part} checkpoint was not resolved; call resolve() with {part!r} in parts")
    return path


def _memory_error(what: str, where: str, e: BaseException) -> DeviceError:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return DeviceError(f"Not enough memory to load {what} on {where} ({first}); "
                       f"free some memory or use a smaller dtype")


@contextmanager
def reading(what: str, path: Path) -> Iterator[None]:
    """Turn any failure while reading a checkpoint into a CheckpointError naming it (memory errors excepted)."""
    try:
        yield
    except UserError:
        raise
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise _memory_error(what, "the CPU", e) from e
    except Exception as e:
        raise CheckpointError(f"cannot load the {what} from {path}: {type(e).__name__}: {e}; "
                              f"delete it so it is fetched again, or replace it",
                              missing=(f"{what}: cannot be loaded from {path}",)) from e


@contextmanager
def on_device(what: str, device: Device) -> Iterator[None]:
    """Turn a failure while putting `what` on `device` (out of memory, driver error) into a DeviceError."""
    try:
        yield
    except UserError:
        raise
    except torch.OutOfMemoryError as e:
        first = str(e).splitlines()[0] if str(e) else "out of memory"
        raise DeviceError(f"Not enough GPU memory to load {what} on {device} ({first}); "
                          f"free the GPU, use a smaller dtype or --device cpu") from e
    except MemoryError as e:
        raise _memory_error(what, str(device), e) from e
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeviceError(f"Cannot put {what} on {device} ({type(e).__name__}: {first}); "
                          f"check the device and its driver, or use --device cpu") from e


def to_device(module: Module, device: Device, what: str) -> Module:
    """`module` on `device`, in eval mode (DeviceError when it does not fit or the device fails)."""
    with on_device(what, device):
        return module.to(device).eval()


class TextEncoder(NamedTuple):
    """The SD1.5 prompt encoder: its tokenizer and CLIP text model."""

    tokenizer: Any  # transformers.CLIPTokenizer
    model: Any  # transformers.CLIPTextModel


def load_text_encoder(paths: CheckpointPaths, device: Device = "cpu", dtype: torch.dtype = torch.float32) -> TextEncoder:
    """The SD1.5 CLIP tokenizer and text encoder (eval mode)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = need(paths.tokenizer, "text")
    with reading("CLIP tokenizer", folder):
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    folder = need(paths.text_encoder, "text")
    with reading("CLIP text encoder", folder):
        model = CLIPTextModel.from_pretrained(folder, dtype=dtype)
    return TextEncoder(tokenizer, to_device(model, device, "the CLIP text encoder"))


def load_vae(paths: CheckpointPaths, device: Device = "cpu", dtype: torch.dtype = torch.float32):
    """The sd-vae-ft-mse AutoencoderKL (eval mode)."""
    from diffusers import AutoencoderKL

    folder = need(paths.vae, "vae")
    with reading("VAE", folder):
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype)
    return to_device(vae, device, "the VAE")


class Denoiser(NamedTuple):
    """The two DiffuEraser networks."""

    brushnet: Any  # diffueraser.models.BrushNetModel
    unet_main: Any  # diffueraser.models.UNetMotionModel


def load_denoiser(paths: CheckpointPaths, device: Device = "cpu", dtype: torch.dtype = torch.float32) -> Denoiser:
    """The released BrushNet and unet_main, loaded strictly (eval mode)."""
    from ..models import BrushNetModel, UNetMotionModel

    nets = []
    for cls, folder, what in ((BrushNetModel, paths.brushnet, "BrushNet"), (UNetMotionModel, paths.unet_main, "unet_main")):
        folder = need(folder, "denoiser")
        with reading(what, folder):
            net = load_strict(cls, folder, dtype)
        nets.append(to_device(net, device, what))
    return Denoiser(*nets)


def load_scheduler_config(paths: CheckpointPaths) -> dict:
    """The SD1.5 scheduler_config.json as a dict."""
    folder = need(paths.scheduler, "scheduler")
    with reading("scheduler config", folder):
        return json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8"))


def read_pcm_lora(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PCM LoRA file (CheckpointError naming the file when it cannot be read)."""
    try:
        return read_safetensors(path)
    except Exception as e:  # unreadable, truncated or not safetensors
        raise CheckpointError(f"cannot read the PCM LoRA file {path}: {e}",
                              missing=(f"PCM LoRA: cannot read {path}",)) from e


def pcm_lora_source(weights_dir: Optional[os.PathLike] = None,
                    local_files_only: bool = False) -> Callable[[int], dict[str, torch.Tensor]]:
    """lora(steps): the PCM LoRA state dict for `steps`, located (fetched when allowed) when asked for."""

    def lora(steps: int) -> dict[str, torch.Tensor]:
        return read_pcm_lora(pcm_lora_path(steps, weights_dir, local_files_only))

    return lora


def load_diffuser(paths: CheckpointPaths, device: Device = "cpu", dtype: torch.dtype = torch.float32,
                  weights_dir: Optional[os.PathLike] = None, local_files_only: bool = False):
    """The Diffuser from `resolve(["denoiser", "text", "vae", "pcm"], ...)` paths, with the resolved LoRA fused.

    It swaps to another step count's LoRA in place when a call asks for one, reading that LoRA
    (from `weights_dir` or the usual places) and unet_main's base tensors from disk only then.
    """
    from ..diffusion.diffuser import Diffuser, encode_prompt

    text = load_text_encoder(paths, device, dtype)
    with on_device("the CLIP text encoder", device):
        prompt_embeds = encode_prompt(text.tokenizer, text.model)
    del text
    nets = load_denoiser(paths, device, dtype)
    diffuser = Diffuser(
        nets.brushnet, nets.unet_main, load_vae(paths, device, dtype), prompt_embeds,
        lora=pcm_lora_source(weights_dir, local_files_only),
        base_weights=tensor_source(need(paths.unet_main, "denoiser"), "unet_main"),
    )
    if paths.pcm_steps is not None:
        diffuser.use_lora(paths.pcm_steps)
    return diffuser
