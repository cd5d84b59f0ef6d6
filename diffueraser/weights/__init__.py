"""Checkpoints: the only package that knows where they live, how they are fetched and how they are read.

- `parts`: what each part is (files, where it is published, where it goes in a weights folder);
- `locate`: where parts are looked for (weights_dir, $DIFFUERASER_WEIGHTS, ./weights, the hub cache)
  and the one report of what is missing (`resolve`, `missing`);
- `fetch`: fetching a missing file (huggingface_hub for the hub, torch.hub for the ProPainter release);
- `files`: checking files cheaply and reading tensors;
- `strict`: diffusers' from_pretrained, refusing a checkpoint that does not match the model exactly;
- `load`, `propainter`: networks on the device from resolved paths (CheckpointError for a bad
  checkpoint, DeviceError for a device that cannot take it).
"""
from .fetch import fetch_url, hub_cache_dir, is_offline, propainter_cache_dir
from .files import checkpoint_shapes, file_problem, tensor_source
from .load import (Denoiser, TextEncoder, load_denoiser, load_diffuser, load_scheduler_config, load_text_encoder,
                   load_vae, pcm_lora_source, read_pcm_lora)
from .locate import missing, pcm_lora_path, propainter_paths, resolve
from .parts import ENV_WEIGHTS, PARTS, CheckpointPaths, ProPainterPaths, pcm_lora_file
from .propainter import load_flow_completion, load_generator, load_propainter, load_raft
from .strict import compare_shapes, describe_mismatch, load_strict

__all__ = [
    "ENV_WEIGHTS", "PARTS", "CheckpointPaths", "Denoiser", "ProPainterPaths", "TextEncoder",
    "checkpoint_shapes", "compare_shapes", "describe_mismatch", "fetch_url", "file_problem", "hub_cache_dir",
    "is_offline", "load_denoiser", "load_diffuser", "load_flow_completion", "load_generator", "load_propainter",
    "load_raft", "load_scheduler_config", "load_strict", "load_text_encoder", "load_vae", "missing",
    "pcm_lora_file", "pcm_lora_path", "pcm_lora_source", "propainter_cache_dir", "propainter_paths",
    "read_pcm_lora", "resolve", "tensor_source",
]
