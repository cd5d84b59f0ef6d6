"""DiffuEraser video object removal.

    from diffueraser import Eraser, Settings
    eraser = Eraser.from_pretrained(Settings(steps=2))
    eraser("video.mp4", "mask.mp4").save("result.mp4")
"""
from .engine import EraseResult, Eraser, EraseSummary, erase, required_parts
from .errors import CheckpointError, InputError
from .settings import Settings

__all__ = ["CheckpointError", "EraseResult", "EraseSummary", "Eraser", "InputError", "Settings", "erase", "required_parts"]
__version__ = "0.1.0"
