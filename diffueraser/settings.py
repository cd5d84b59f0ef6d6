"""Every knob of the method in one validated dataclass, shared by the API, the CLI and the app."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional

from .errors import InputError

PCM_STEPS = (2, 4, 8, 16)
PRIORS = ("propainter", "propagation", "none")
INJECTIONS = ("released", "ddim")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def knob(default: Any, help: str) -> Any:
    """A settings field whose help text the command line and the app show."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """What to run and how. Defaults are the released ones (`run_diffueraser.py`)."""

    steps: int = knob(2, "Denoising steps; one of the released PCM LoRAs (2, 4, 8 or 16).")
    clip_length: int = knob(22, "Frames denoised together (the motion modules' window).")
    clip_overlap: Optional[int] = knob(
        None, "Frames shared by neighbouring windows; None means clip_length // 4 as released."
    )
    prior: Literal["propainter", "propagation", "none"] = knob(
        "propainter",
        "Which prior fills the holes first: ProPainter, the weight-free propagation, or none.",
    )
    prior_injection: Literal["released", "ddim"] = knob(
        "released",
        "How the prior enters the sampler: the released noise-at-t=0 mix, or true DDIM inversion.",
    )
    mask_dilation: int = knob(8, "3x3 dilations applied to the mask after one erosion.")
    max_size: int = knob(960, "Longer side of the working size, in pixels.")
    max_seconds: Optional[float] = knob(
        10.0, "Only the first seconds of the video are processed; None for the whole video."
    )
    seed: Optional[int] = knob(None, "Random seed; None draws one.")
    pre_inference: bool = knob(
        True, "Denoise frames sampled over the whole video first, for long videos (paper Fig. 7b)."
    )
    blended: bool = knob(True, "Paste the result with a blurred mask edge rather than a hard one.")
    diffusion: bool = knob(
        True,
        "Run the diffusion model; off returns the prior's result alone (needs no diffusion weights).",
    )
    device: str = knob("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = knob(
        "auto", "'auto' is float16 on CUDA and float32 on CPU."
    )
    prior_scale: float = knob(
        0.6, "The ProPainter prior runs at this fraction of the working size, as released."
    )
    raft_iters: int = knob(20, "RAFT refinement iterations of the ProPainter prior.")

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise InputError(msg)

        if self.steps not in PCM_STEPS:
            bad(f"steps must be one of {', '.join(map(str, PCM_STEPS))} (the released PCM LoRAs), got {self.steps!r}")
        if not isinstance(self.clip_length, int) or not 1 <= self.clip_length <= 32:
            bad(f"clip_length must be an integer from 1 to 32 (the motion modules' table), got {self.clip_length!r}")
        if self.clip_overlap is not None and not 0 <= self.clip_overlap < self.clip_length:
            bad(f"clip_overlap must be from 0 to clip_length - 1 = {self.clip_length - 1}, got {self.clip_overlap!r}")
        if self.prior not in PRIORS:
            bad(f"prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if self.prior_injection not in INJECTIONS:
            bad(f"prior_injection must be one of {', '.join(INJECTIONS)}, got {self.prior_injection!r}")
        if not isinstance(self.mask_dilation, int) or not 0 <= self.mask_dilation <= 64:
            bad(f"mask_dilation must be an integer from 0 to 64, got {self.mask_dilation!r}")
        if not isinstance(self.max_size, int) or not 64 <= self.max_size <= 4096:
            bad(f"max_size must be an integer from 64 to 4096 pixels, got {self.max_size!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            bad(f"max_seconds must be positive (or None for the whole video), got {self.max_seconds!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed < 2**63):
            bad(f"seed must be a non-negative integer or None, got {self.seed!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            bad(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.dtype not in DTYPES:
            bad(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 0.1 <= self.prior_scale <= 1.0:
            bad(f"prior_scale must be from 0.1 to 1.0, got {self.prior_scale!r}")
        if self.prior == "none" and not self.diffusion:
            bad("with prior 'none' the diffusion model must run (diffusion on): nothing would fill the holes")
        if not isinstance(self.raft_iters, int) or not 1 <= self.raft_iters <= 50:
            bad(f"raft_iters must be an integer from 1 to 50, got {self.raft_iters!r}")

    @property
    def overlap(self) -> int:
        """The clip overlap in force."""
        return self.clip_length // 4 if self.clip_overlap is None else self.clip_overlap

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Settings":
        """Settings from a mapping, refusing unknown names with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)
