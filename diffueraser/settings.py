"""Every knob of the method in one validated dataclass, shared by the API, the CLI and the app.

Each field is declared once with `knob(...)`: its default, help text, label, allowed values
(choices or a range) and where the page shows it. Validation, the command line's options, the
page's controls and the `/erase` endpoint's parameters are all generated from these declarations.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional

from .errors import InputError

PCM_STEPS = (2, 4, 8, 16)
PRIORS = ("propainter", "propagation", "none")
INJECTIONS = ("released", "ddim")
DTYPES = ("auto", "float32", "float16", "bfloat16")
REGIONS = ("auto", "crop", "frame")

PAGE_LEVELS = ("main", "advanced", "hidden")
"""Where the page shows a knob: up front, folded under "Advanced", or not at all (server-side)."""


@dataclass(frozen=True)
class Knob:
    """What the page, the API and the command line need to know about one setting."""

    help: str
    label: str
    choices: Optional[tuple[Any, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    """The page's slider step (None: a number box)."""
    none: Optional[str] = None
    """What None means for an Optional field ("automatic", "random"), shown in the page as -1."""
    page: str = "advanced"


def knob(default: Any, help: str, label: str, *, choices: Optional[tuple[Any, ...]] = None,
         low: Optional[float] = None, high: Optional[float] = None, step: Optional[float] = None,
         none: Optional[str] = None, page: str = "advanced") -> Any:
    """A settings field carrying its `Knob` description."""
    assert page in PAGE_LEVELS, page
    return field(default=default, metadata={"knob": Knob(help, label, choices, low, high, step, none, page)})


@dataclass(frozen=True)
class Settings:
    """What to run and how. Defaults are the released ones (`run_diffueraser.py`)."""

    steps: int = knob(2, "Denoising steps; one of the released PCM LoRAs (2, 4, 8 or 16).", "Steps",
                      choices=PCM_STEPS, page="main")
    prior: Literal["propainter", "propagation", "none"] = knob(
        "propainter",
        "Which prior fills the holes first: ProPainter, the weight-free propagation, or none.",
        "Prior", choices=PRIORS, page="main",
    )
    max_seconds: Optional[float] = knob(
        10.0, "Only the first seconds of the video are processed; None for the whole video.", "Maximum seconds",
        low=0.1, high=3600.0, step=0.1, none="the whole video", page="main",
    )
    diffusion: bool = knob(
        True, "Run the diffusion model; off returns the prior's result alone (needs no diffusion weights).",
        "Diffusion (DiffuEraser)", page="main",
    )
    clip_length: int = knob(22, "Frames denoised together (the motion modules' window).", "Clip length",
                            low=1, high=32, step=1)
    clip_overlap: Optional[int] = knob(
        None, "Frames shared by neighbouring windows; None means clip_length // 4 as released.", "Clip overlap",
        low=0, none="clip length // 4, as released",
    )
    prior_injection: Literal["released", "ddim"] = knob(
        "released",
        "How the prior enters the sampler: the released noise-at-t=0 mix, or true DDIM inversion.",
        "Prior injection", choices=INJECTIONS,
    )
    mask_dilation: int = knob(8, "3x3 dilations applied to the mask after one erosion.", "Mask dilation",
                              low=0, high=64, step=1)
    max_size: int = knob(960, "Longer side of the working size, in pixels.", "Maximum size",
                         low=64, high=4096, step=8)
    region: Literal["auto", "crop", "frame"] = knob(
        "auto", "Fill only boxes around the holes, at the video's own resolution ('crop'), the whole frame at the "
        "working size ('frame', as released), or crops where they clearly save work ('auto').", "Region",
        choices=REGIONS,
    )
    segment_frames: Optional[int] = knob(
        None, "Frames filled together; a longer video is split into segments sharing a quarter of their frames, "
        "cross-faded. None: as many as 1.5 GiB of frames hold at this size (memory does not grow with the video).",
        "Segment frames", low=8, high=100000, none="sized to a memory budget", page="hidden",
    )
    seed: Optional[int] = knob(None, "Random seed; None draws one.", "Seed", low=0, high=2**63 - 1, none="random")
    pre_inference: bool = knob(
        True, "Denoise frames sampled over the whole video first, for long videos (paper Fig. 7b).", "Pre-inference"
    )
    blended: bool = knob(True, "Paste the result with a blurred mask edge rather than a hard one.",
                         "Blend the mask edge")
    device: str = knob("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.", "Device", page="hidden")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = knob(
        "auto", "'auto' is float16 on CUDA and float32 on CPU.", "Precision", choices=DTYPES, page="hidden"
    )
    prior_scale: float = knob(
        0.6, "The ProPainter prior runs at this fraction of the working size, as released.", "Prior scale",
        low=0.1, high=1.0, step=0.05,
    )
    raft_iters: int = knob(20, "RAFT refinement iterations of the ProPainter prior.", "RAFT iterations",
                           low=1, high=50, step=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name), _kind(f), f.metadata["knob"])
        if self.clip_overlap is not None and not self.clip_overlap < self.clip_length:
            raise InputError(f"clip_overlap must be from 0 to clip_length - 1 = {self.clip_length - 1}, "
                             f"got {self.clip_overlap!r}")
        if not (self.device in ("auto", "cpu", "cuda") or _is_cuda_index(self.device)):
            raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.prior == "none" and not self.diffusion:
            raise InputError("with prior 'none' the diffusion model must run (diffusion on): "
                             "nothing would fill the holes")

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


def knobs() -> dict[str, Knob]:
    """Every setting's description, in declaration order."""
    return {f.name: f.metadata["knob"] for f in fields(Settings)}


def kind(name: str) -> type:
    """The value type of a setting (int, float, bool or str), without Optional/Literal."""
    return _kind(next(f for f in fields(Settings) if f.name == name))


def is_optional(name: str) -> bool:
    """Whether None is a value of the setting."""
    return type(None) in typing.get_args(_HINTS[name])


_HINTS = typing.get_type_hints(Settings)


def _kind(f: dataclasses.Field) -> type:
    inner = _HINTS[f.name]
    if typing.get_origin(inner) is typing.Union:
        inner = next(a for a in typing.get_args(inner) if a is not type(None))
    if typing.get_origin(inner) is Literal:
        return type(typing.get_args(inner)[0])
    return inner


def _is_cuda_index(device: str) -> bool:
    return device.startswith("cuda:") and device[5:].isdigit()


def _check(name: str, value: Any, kind: type, k: Knob) -> None:
    """Refuse a value of the wrong type, outside its choices or outside its range, naming the setting."""
    if value is None:
        if k.none is None:
            raise InputError(f"{name} must be set, got None")
        return
    choices = ", ".join(map(str, k.choices)) if k.choices else ""
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, got {value!r}")
        return
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        wanted = f"one of {choices}" if choices else "an integer"
        raise InputError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {value!r} ({type(value).__name__})")
    if k.choices is not None and value not in k.choices:
        note = " (the released PCM LoRAs)" if name == "steps" else ""
        raise InputError(f"{name} must be one of {choices}{note}, got {value!r}")
    if k.low is not None and not (k.low <= value and (k.high is None or value <= k.high)):
        raise InputError(_range_message(name, value, kind, k))


def _range_message(name: str, value: Any, kind: type, k: Knob) -> str:
    if name == "max_seconds":
        return f"max_seconds must be positive, from {k.low:g} to {k.high:g} s (or None for the whole video), got {value!r}"
    if name == "seed":
        return f"seed must be a non-negative integer below 2**63, or None for a random one, got {value!r}"
    what = "an integer" if kind is int else "a number"
    unit = " pixels" if name == "max_size" else ""
    span = f"from {k.low:g} to {k.high:g}" if k.high is not None else f"of at least {k.low:g}"
    return f"{name} must be {what} {span}{unit}, got {value!r}"


def markdown_table() -> str:
    """Every setting as a Markdown table (name, default, allowed values, meaning), for the README."""
    rows = ["| setting | default | allowed | what it does |", "|---|---|---|---|"]
    for f in fields(Settings):
        k: Knob = f.metadata["knob"]
        if k.choices is not None:
            allowed = ", ".join(f"`{c}`" for c in k.choices)
        elif k.low is not None:
            allowed = f"{_num(k.low)} to {_num(k.high)}" if k.high is not None else f"≥ {_num(k.low)}"
        else:
            allowed = "true / false" if _kind(f) is bool else "see text"
        if k.none:
            allowed += f"; None ({k.none})"
        where = {"main": "", "advanced": " (page: Advanced)", "hidden": " (not on the page)"}[k.page]
        rows.append(f"| `{f.name}` | `{f.default}` | {allowed} | {k.help}{where} |")
    return "\n".join(rows)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


if __name__ == "__main__":  # `python -m diffueraser.settings`: the README's settings table
    print(markdown_table())
