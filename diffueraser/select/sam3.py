"""Words through SAM 3 (`Sam3VideoModel`): every instance of what the words name, found and
tracked through the video; the mask of a words prompt is the union of its instances.

SAM 3's video model runs its detector on every frame (so what enters the video late is found
too) and its SAM 2-style tracker carries the instances between frames. As for SAM 2.1 (`sam.py`),
the inference session's frame table is a lazy one that reads each frame from the caller's store
when the model asks, and outputs the tracker can no longer reach are dropped as propagation moves
on, so the session does not grow with the video. Detection runs on every frame, so one forward
pass from frame 0 covers the whole video whatever frame the words were given on.

Preprocessing is done here (transformers' SAM 3 processors need torchvision): frames are resized
to the model's square input (bilinear, antialiased), scaled to 0..1 and normalised with the mean and
deviation of the checkpoint's processor config (SAM 3's 0.5 / 0.5 when it has none); words are
tokenized by the checkpoint's CLIP tokenizer, padded to 32 tokens as `Sam3VideoProcessor` does;
masks are the instances' low-resolution logits resized to the frame, > 0, leaving out the instances
the model suppressed or removed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .flowtrack import Emit, Frames
from .prompts import Prompt
from .sam import LazyFrames

PathLike = Union[str, os.PathLike]
SAM3_MEAN = (0.5, 0.5, 0.5)
SAM3_STD = (0.5, 0.5, 0.5)
TEXT_TOKENS = 32
"""Words are padded (and cut) to this many tokens: SAM 3's text encoder has 32 positions."""
KEEP_BEHIND = 20
"""Tracked outputs and per-frame bookkeeping kept behind the last frame handed out (the tracker
reads the last 6 frames' memories and up to 16 object pointers; outputs are handed out up to the
model's hot-start delay after the frame it is working on)."""


def normalisation(folder: PathLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and deviation the checkpoint's processor config gives frames (SAM 3's when it has none)."""
    for name, keys in (("processor_config.json", ("video_processor", "image_processor")),
                       ("preprocessor_config.json", ("",)), ("video_preprocessor_config.json", ("",))):
        file = Path(folder) / name
        if not file.is_file():
            continue
        try:
            config = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        for key in keys:
            section = config.get(key, {}) if key else config
            if isinstance(section, dict) and "image_mean" in section and "image_std" in section:
                return tuple(map(float, section["image_mean"])), tuple(map(float, section["image_std"]))
    return SAM3_MEAN, SAM3_STD


class Sam3Tracker:
    """SAM 3's video model driven from words: frame store in, each words prompt's union mask out."""

    name = "sam3"

    def __init__(self, model: torch.nn.Module, tokenizer, device: torch.device = torch.device("cpu"),
                 dtype: torch.dtype = torch.float32, mean: Sequence[float] = SAM3_MEAN,
                 std: Sequence[float] = SAM3_STD) -> None:
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        size = model.config.image_size
        self.input_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.keep_cond = max(1, int(getattr(model.config.tracker_config, "max_cond_frame_num", 4) or 4))
        self._mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 [h, w, 3] → normalised float [3, S, S] at the model's input size, on the host."""
        x = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1)[None].float()
        s = self.input_size
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
        return ((x / 255.0 - self._mean) / self._std).to(self.dtype)

    def tokens(self, words: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The words' token ids and attention mask, [1, 32] each, on the device."""
        encoded = self.tokenizer(words, return_tensors="pt", padding="max_length", max_length=TEXT_TOKENS,
                                 truncation=True)
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def new_session(self, frames: Frames):
        """An inference session over `frames`, read lazily; state on the device, video on the host."""
        from transformers import Sam3VideoInferenceSession

        height, width = frames[0].shape[:2] if len(frames) else (0, 0)
        session = Sam3VideoInferenceSession(video=None, video_height=height, video_width=width,
                                            inference_device=self.device, inference_state_device=self.device,
                                            video_storage_device="cpu", dtype=self.dtype)
        session.processed_frames = LazyFrames(frames, self.prepare)
        return session

    def add_words(self, session, words: str) -> int:
        """Give the session a words prompt (as `Sam3VideoProcessor.add_text_prompt` does); its prompt id."""
        prompt_id = session.add_prompt(words)
        if prompt_id not in session.prompt_input_ids:
            ids, mask = self.tokens(words)
            session.prompt_input_ids[prompt_id] = ids
            session.prompt_attention_masks[prompt_id] = mask
        return prompt_id

    @torch.inference_mode()
    def track(self, frames: Frames, prompts: Sequence[Prompt], emit: Emit,
              step: Optional[Callable[[], None]] = None) -> None:
        """Every frame's mask of each words prompt's object through `emit`: the union of all the
        instances the words name (an empty mask where there are none)."""
        clicks = [p for p in prompts if p.points or p.box is not None]
        if clicks:
            raise InputError("SAM 3 here takes words only; give clicks and boxes to another tracker "
                             "(sam2, edgetam or flow), or select by words alone")
        if not len(frames):
            return
        height, width = frames[0].shape[:2]
        session = self.new_session(frames)
        objects_of: dict[int, list[int]] = {}
        for p in prompts:
            if p.text:
                objects_of.setdefault(self.add_words(session, p.text), []).append(p.object)
        objects = sorted({obj for objs in objects_of.values() for obj in objs})
        for out in self.model.propagate_in_video_iterator(session, start_frame_idx=0):
            union = {obj: np.zeros((height, width), bool) for obj in objects}
            for prompt_id, mask in self.instances(session, out, height, width):
                for obj in objects_of.get(prompt_id, ()):
                    union[obj] |= mask
            for obj in objects:
                emit(out.frame_idx, obj, union[obj])
            forget_far(session, out.frame_idx, self.keep_cond)
            if step is not None:
                step()

    def instances(self, session, out, height: int, width: int) -> list[tuple[int, np.ndarray]]:
        """The frame's instances as (prompt id, bool mask at height x width), without those the
        model suppressed on this frame or removed after its hot-start check."""
        hidden = set(out.suppressed_obj_ids or ()) | set(session.hotstart_removed_obj_ids)
        found = []
        for obj_id in sorted(out.obj_id_to_mask):
            if obj_id in hidden:
                continue
            logits = out.obj_id_to_mask[obj_id].float()
            if logits.dim() == 2:
                logits = logits[None]
            mask = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0, 0] > 0
            if bool(mask.any()):
                found.append((session.obj_id_to_prompt_id[obj_id], mask.cpu().numpy()))
        return found


def forget_far(session, frame_idx: int, keep_cond: int = 4) -> None:
    """Drop tracked outputs and per-frame scores more than KEEP_BEHIND frames before `frame_idx`,
    and all but the newest `keep_cond` conditioning outputs of each instance (the detector
    re-conditions the tracker every few frames; the tracker attends to at most its
    `max_cond_frame_num` nearest, which going forwards are the newest): nothing reads the rest
    again, and keeping them would grow with the video (the model also copies its per-frame score
    table on every frame)."""
    limit = frame_idx - KEEP_BEHIND
    for per_obj in session.output_dict_per_obj.values():
        tracked = per_obj["non_cond_frame_outputs"]
        for k in [k for k in tracked if k < limit]:
            del tracked[k]
        cond = per_obj["cond_frame_outputs"]
        for k in sorted(cond)[:-keep_cond] if len(cond) > keep_cond else ():
            del cond[k]
    for table in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
        for k in [k for k in table if k < limit]:
            del table[k]


def load_sam3(folder: PathLike, device: torch.device, dtype: torch.dtype) -> Sam3Tracker:
    """SAM 3's video model and CLIP tokenizer from the checkpoint folder (the caller reports read errors)."""
    from transformers import AutoTokenizer, Sam3VideoModel

    model = Sam3VideoModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    mean, std = normalisation(folder)
    return Sam3Tracker(model, tokenizer, device=device, dtype=dtype, mean=mean, std=std)
