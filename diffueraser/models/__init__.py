"""The two denoiser networks of DiffuEraser, weight-compatible with the released checkpoints.

`BrushNetModel` turns noisy latents + masked-image latents + mask into residuals; `UNetMotionModel` (unet_main)
predicts the noise of a clip of frames with those residuals added in (reference README §4).
"""
from .brushnet import BrushNetModel, BrushNetOutput
from .unet_motion import UNetMotionModel, UNetMotionOutput

__all__ = ["BrushNetModel", "BrushNetOutput", "UNetMotionModel", "UNetMotionOutput"]
