"""Diffusion stage: prior latents in, refined latents out (windows, prior injection, TCD sampling).

`DiffuEraserPipeline` runs BrushNet + unet_main over a whole video; `windows` holds the staggered
clip layout and ramp merge, `injection` the released prior injection and DDIM inversion,
`scheduler` the released TCD set-up and the PCM LoRA loader.
"""
from .injection import ddim_invert, draw_clip_noise, inject_released, released_coefficients, tile_noise
from .pipeline import DiffuEraserPipeline
from .scheduler import TCD_CONFIG, load_pcm_lora, make_scheduler
from .windows import RampBlender, WindowSchedule, clip_windows, pre_inference_indices

__all__ = [
    "DiffuEraserPipeline",
    "TCD_CONFIG",
    "make_scheduler",
    "load_pcm_lora",
    "clip_windows",
    "WindowSchedule",
    "RampBlender",
    "pre_inference_indices",
    "draw_clip_noise",
    "tile_noise",
    "released_coefficients",
    "inject_released",
    "ddim_invert",
]
