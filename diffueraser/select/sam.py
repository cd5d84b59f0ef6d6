"""Segment-and-track with transformers' video models: SAM 2.1 (`Sam2VideoModel`) and EdgeTAM
(`EdgeTamVideoModel`); SAM 3 (`Sam3VideoModel`) reads words and is driven by `sam3.py`.

The models are stateless; a video's state lives in an inference session that this module feeds.
The session's frame table is replaced by a lazy one that reads each frame from the caller's store
(a memory map) and preprocesses it when the model asks, so no processed copy of the video exists
(video storage stays on the host; one frame at a time goes to the device). Outputs of frames the
memory can no longer reach are dropped as propagation moves on, so the session does not grow with
the video. Objects are tracked in groups that share their first prompted frame: forwards from it
(later prompts are conditioning frames on the way) and backwards from it to frame 0.

Preprocessing is done here rather than by transformers' processors, which need torchvision: frames
are resized to the model's square input (bilinear, antialiased), scaled to 0..1 and normalised with
the ImageNet mean and deviation, as `Sam2VideoVideoProcessor` does; points and boxes are scaled to
the model's input size; masks are the logits resized to the frame, > 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .flowtrack import Emit, Frames
from .prompts import NEGATIVE, Prompt

if TYPE_CHECKING:
    from .sam3 import Sam3Tracker

PathLike = Union[str, os.PathLike]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOX_LABELS = (2, 3)
"""SAM's point labels for a box's top-left and bottom-right corners."""
POSITIVE_LABEL, NEGATIVE_LABEL = 1, 0
KEEP_BEHIND = 20
"""Tracked (non-conditioning) outputs kept behind the current frame: SAM 2 attends to the last
6 (num_maskmem - 1) frames' memories and up to 16 object pointers."""


@dataclass(frozen=True)
class TrackerModel:
    """A tracker choice: its weights part and the transformers class that reads it."""

    part: str
    title: str
    class_name: str
    text: bool = False
    package: Optional[str] = None
    """A Python package the model's code needs beyond transformers (EdgeTAM's backbone is timm's)."""


MODELS = {
    "sam2": TrackerModel("sam2.1-small", "SAM 2.1 small", "Sam2VideoModel"),
    "sam2-tiny": TrackerModel("sam2.1-tiny", "SAM 2.1 tiny", "Sam2VideoModel"),
    "sam2-base-plus": TrackerModel("sam2.1-base-plus", "SAM 2.1 base+", "Sam2VideoModel"),
    "sam2-large": TrackerModel("sam2.1-large", "SAM 2.1 large", "Sam2VideoModel"),
    "edgetam": TrackerModel("edgetam", "EdgeTAM", "EdgeTamVideoModel", package="timm"),
    "sam3": TrackerModel("sam3", "SAM 3", "Sam3VideoModel", text=True),
}
"""Tracker names: 'sam2' is SAM 2.1 small; other SAM 2.1 sizes are 'sam2-tiny', 'sam2-base-plus', 'sam2-large'."""


def available(name: str, weights_dir: Optional[PathLike] = None) -> bool:
    """True when the tracker's checkpoint is at hand (a weights folder or the hub cache), without downloading."""
    from ..weights import missing

    return missing_package(name) is None and not missing([MODELS[name].part], weights_dir)


def missing_package(name: str) -> Optional[str]:
    """What to install for the tracker's code to run, or None when nothing is missing."""
    import importlib.util

    package = MODELS[name].package
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return (f"the {MODELS[name].title} tracker needs the `{package}` package and a torchvision built for the "
            f"installed torch (pip install {package} torchvision; with a CPU-only torch, torchvision from "
            f"https://download.pytorch.org/whl/cpu); {package} is not installed here")


def unavailable_reason(name: str, weights_dir: Optional[PathLike] = None) -> Optional[str]:
    """Why the tracker cannot run here (its checkpoint is not at hand), or None when it can."""
    from ..weights import missing

    lines = missing([MODELS[name].part], weights_dir)
    package = missing_package(name)
    lines = ([package] if package else []) + list(lines)
    return "; ".join(lines) if lines else None


def pick_device(device: Optional[str] = None) -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 (fp16 where bf16 is not supported) when present, else the CPU in fp32."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dev, torch.float32


def load_tracker(name: str, weights_dir: Optional[PathLike] = None, local_files_only: bool = False,
                 device: Optional[str] = None) -> Union["SamTracker", "Sam3Tracker"]:
    """The tracker `name` with its checkpoint from the weights module (CheckpointError naming what is missing)."""
    from ..weights import resolve
    from ..weights.load import on_device, reading

    if name not in MODELS:
        raise InputError(f"unknown tracker {name!r}; known: {', '.join(MODELS)}, flow")
    spec = MODELS[name]
    package = missing_package(name)
    if package:
        raise InputError(f"{package}: choose another tracker (sam2 or flow)")
    folder = resolve([spec.part], weights_dir, local_files_only).tracker
    dev, dtype = pick_device(device)
    if spec.text:
        from .sam3 import load_sam3

        with reading(f"{spec.title} tracker", folder):
            words = load_sam3(folder, dev, dtype)
        with on_device(f"{spec.title} tracker", dev):
            words.model = words.model.to(dev, dtype=dtype).eval()
        return words
    with reading(f"{spec.title} tracker", folder):
        model = load_model(folder, spec.class_name)
    with on_device(f"{spec.title} tracker", dev):
        model = model.to(dev, dtype=dtype).eval()
    return SamTracker(model, name=name, device=dev, dtype=dtype)


def load_model(folder: PathLike, class_name: str) -> torch.nn.Module:
    """The transformers video model saved in `folder` (fp32 on the CPU)."""
    import transformers

    cls = getattr(transformers, class_name)
    return cls.from_pretrained(str(folder), torch_dtype=torch.float32)


class LazyFrames(dict):
    """The session's frame table, read from the caller's frames on demand and never stored."""

    def __init__(self, frames: Frames, prepare: Callable[[np.ndarray], torch.Tensor]) -> None:
        super().__init__()
        self._frames, self._prepare = frames, prepare

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self._frames):
            raise KeyError(index)
        return self._prepare(self._frames[index])

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < len(self._frames)

    def __setitem__(self, index: int, value: torch.Tensor) -> None:
        raise RuntimeError("frames come from the store; streaming into this session is not supported")


class SamTracker:
    """A SAM-family video model driven through its inference session, frame store in, masks out."""

    def __init__(self, model: torch.nn.Module, name: str = "sam2", device: torch.device = torch.device("cpu"),
                 dtype: torch.dtype = torch.float32) -> None:
        self.model, self.name, self.device, self.dtype = model, name, device, dtype
        size = model.config.image_size
        self.input_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    # ------------------------------------------------------------------ inputs

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 [h, w, 3] → normalised float [3, S, S] at the model's input size, on the host."""
        x = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1)[None].float()
        s = self.input_size
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
        x = (x / 255.0 - self._mean) / self._std
        return x.to(self.dtype)

    def point_inputs(self, prompt: Prompt, height: int, width: int) -> dict[str, torch.Tensor]:
        """The prompt as SAM's point inputs: a box as two labelled corners first, then the clicks,
        in model-input pixels."""
        sx, sy = self.input_size / width, self.input_size / height
        coords: list[list[float]] = []
        labels: list[int] = []
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            coords += [[x0 * sx, y0 * sy], [x1 * sx, y1 * sy]]
            labels += list(BOX_LABELS)
        for (x, y), label in zip(prompt.points, prompt.labels):
            coords.append([x * sx, y * sy])
            labels.append(NEGATIVE_LABEL if label == NEGATIVE else POSITIVE_LABEL)
        return {"point_coords": torch.tensor(coords, dtype=torch.float32).view(1, 1, -1, 2).to(self.device),
                "point_labels": torch.tensor(labels, dtype=torch.int32).view(1, 1, -1).to(self.device)}

    def new_session(self, frames: Frames):
        """An inference session over `frames`, read lazily; state on the device, video on the host."""
        session_cls = _session_class(self.model)
        height, width = frames[0].shape[:2] if len(frames) else (0, 0)
        session = session_cls(video=None, video_height=height, video_width=width, inference_device=self.device,
                              inference_state_device=self.device, video_storage_device="cpu", dtype=self.dtype)
        session.processed_frames = LazyFrames(frames, self.prepare)
        return session

    # ------------------------------------------------------------------ tracking

    def track(self, frames: Frames, prompts: Sequence[Prompt], emit: Emit,
              step: Optional[Callable[[], None]] = None) -> None:
        """Every frame's mask of each prompted object through `emit` (at the frames' size)."""
        if any(p.text for p in prompts):
            raise InputError(f"words need the SAM 3 tracker (--tracker sam3); {self.name} takes clicks and boxes")
        first: dict[int, int] = {}
        for p in prompts:
            first[p.object] = min(first.get(p.object, p.frame), p.frame)
        for start in sorted(set(first.values())):
            group = [p for p in prompts if first[p.object] == start]
            self._track_group(frames, group, start, emit, step)

    @torch.inference_mode()
    def _track_group(self, frames: Frames, prompts: list[Prompt], start: int, emit: Emit,
                     step: Optional[Callable[[], None]]) -> None:
        session = self.new_session(frames)
        height, width = frames[0].shape[:2]
        by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            by_frame.setdefault(p.frame, []).append(p)
        for frame_idx in sorted(by_frame):
            objects = []
            for p in by_frame[frame_idx]:
                obj_idx = session.obj_id_to_idx(p.object)
                session.add_point_inputs(obj_idx, frame_idx, self.point_inputs(p, height, width))
                session.remove_mask_inputs(obj_idx, frame_idx)
                objects.append(p.object)
            session.obj_with_new_inputs = list(dict.fromkeys(objects))
            self.model(inference_session=session, frame_idx=frame_idx)
        for reverse in (False, True):
            if reverse and start == 0:
                break
            for out in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                self._emit(out, height, width, emit)
                _forget_far(session, out.frame_idx, reverse)
                if step is not None:
                    step()
            if not reverse:
                _forget_far(session, None, reverse)  # the backward pass starts from the prompts alone

    def _emit(self, out, height: int, width: int, emit: Emit) -> None:
        logits = out.pred_masks.float()
        if logits.dim() == 3:
            logits = logits[:, None]
        masks = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[:, 0] > 0
        masks = masks.cpu().numpy()
        for k, obj in enumerate(out.object_ids):
            emit(out.frame_idx, int(obj), masks[k])


def _session_class(model: torch.nn.Module):
    import transformers

    name = type(model).__name__.replace("Model", "InferenceSession")
    return getattr(transformers, name)


def _forget_far(session, frame_idx: Optional[int], reverse: bool) -> None:
    """Drop tracked outputs more than KEEP_BEHIND frames behind `frame_idx` (all of them when None):
    the model never reads them again, and keeping them would grow with the video."""
    for per_obj in session.output_dict_per_obj.values():
        tracked = per_obj["non_cond_frame_outputs"]
        for k in list(tracked):
            behind = None if frame_idx is None else (k - frame_idx if reverse else frame_idx - k)
            if behind is None or behind > KEEP_BEHIND:
                del tracked[k]
    if frame_idx is None:
        for tracked in session.frames_tracked_per_obj.values():
            tracked.clear()
