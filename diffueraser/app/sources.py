"""Where the page's mask comes from: one `MaskSource` per way of giving it, chosen with a radio.

A source is its panel of controls, the components whose values the erase request needs, and
`make_mask(video_path, *values) -> mask file | None`, run in the erase request before the model
job (a source whose mask needs a model runs that model under its own `@spaces.GPU` function).
The page shows the chosen source's panel and hands `make_mask` the values of its `inputs`.

A mask file that `make_mask` writes belongs to the request: the page removes it once the job has
read it (or was stopped). Write it with `scratch_file(suffix)`; a file given as one of the
source's input values (an upload) is never removed.

Sources here: a mask video upload, one mask image upload, and a drawing on one frame. Click
selection (`selecting.py`) and text detection (`texting.py`) build theirs the same way.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .. import media
from ..errors import InputError
from .uploads import IMAGE_TYPES, VIDEO_TYPES, file_kind

PREVIEW_MAX_SIDE = 1280  # frames shown for drawing or clicking are at most this large
MASK_VIDEO, MASK_IMAGE, DRAW = "Mask video", "Mask image", "Draw on a frame"
NO_MASK = "Give a mask: upload a mask video or image (white = remove), or draw on a frame."
NOTHING_DRAWN = "Nothing is drawn: paint over what to remove on the frame, or choose another mask source."


@dataclass
class MaskSource:
    """One way of giving the mask, as the page shows and runs it."""

    label: str
    """The choice shown in the page's mask-source radio."""
    panel: Any
    """This source's controls (a `gr.Column`); the page shows it when the source is chosen."""
    inputs: list
    """Components whose values `make_mask` receives, in this order, after the video's path."""
    make_mask: Callable[..., Optional[str]]
    """`make_mask(video_path, *values_of_inputs)` -> path of a mask file (video or image), or None for
    "no mask given"; raises InputError with a user-facing message."""
    frame_index: bool = False
    """Whether the panel works on one frame (the page then shows its frame slider)."""
    missing: str = ""
    """Optional: what the page says when `make_mask` gives None (how to give this source's mask)."""
    example_values: Optional[Callable[[dict], list]] = None
    """Optional: the values of `inputs` that run a gallery example (a dict with video, mask, title)
    through this source; the page fills the panel with them and erases."""
    events: list = field(default_factory=list)
    """The panel's long-running events (tracking, detection), which the page's Stop cancels too."""


def scratch_file(suffix: str) -> Path:
    """A new, empty path for a mask file a request writes (inside the page's output folder)."""
    from .jobs import output_root

    folder = Path(tempfile.mkdtemp(prefix="mask_", dir=output_root()))
    return folder / f"mask{suffix}"


def mask_preview(video: str, mask: str, name: str, colour: tuple[int, int, int], seconds: float,
                 max_side: int) -> str:
    """A short video (the first `seconds`, at most `max_side` px) of the mask over the video in
    `colour`, half transparent, written in the request's scratch folder as `name`."""
    import cv2

    stream = media.VideoStream(video, max_seconds=seconds)
    masks = iter(media.MaskStream(mask, stream.fps, stream.expected_frames, stream.height, stream.width))
    scale = min(1.0, max_side / max(stream.height, stream.width))
    size = (max(2, round(stream.width * scale)), max(2, round(stream.height * scale)))
    path = scratch_file(".mp4").with_name(name)
    tint = 0.5 * np.array(colour, np.float32)
    with media.VideoWriter(path, stream.fps, protect=[video, mask]) as writer:
        for frame, hole in zip(stream, masks):
            shown = frame.astype(np.float32)
            shown[hole] = 0.5 * shown[hole] + tint
            writer.write(cv2.resize(shown.astype(np.uint8), size, interpolation=cv2.INTER_AREA))
    return str(path)


def probe_or_none(video: Optional[str]) -> Optional[media.VideoInfo]:
    """The video's probe, or None when there is no video or it cannot be read (the erase says why)."""
    try:
        return media.probe(video) if video else None
    except InputError:
        return None


def frame_or_none(video: Optional[str], index: float) -> Optional[np.ndarray]:
    """Frame `index` of the video, scaled to at most PREVIEW_MAX_SIDE, or None."""
    if probe_or_none(video) is None:
        return None
    return media.read_frame(video, int(index or 0), PREVIEW_MAX_SIDE)


# ---------------------------------------------------------------------------------------------
# Uploads


def uploaded_mask(kinds: tuple[str, ...], what: str) -> Callable[..., Optional[str]]:
    """`make_mask` of an upload source: the uploaded file, checked to be of the accepted kinds."""

    def make_mask(video: Optional[str], path: Optional[str]) -> Optional[str]:
        if not path:
            return None
        file_kind(path, kinds, what)
        return path

    return make_mask


def build_upload_source(label: str, kinds: tuple[str, ...], what: str, elem_id: str, help_text: str,
                        missing: str) -> MaskSource:
    """A source that is one uploaded file (a mask video, or one image used for every frame)."""
    import gradio as gr

    with gr.Column(visible=False) as panel:
        upload = gr.File(label=help_text, file_types=list(kinds), elem_id=elem_id, height=110)
    return MaskSource(label, panel, [upload], uploaded_mask(kinds, what), missing=missing,
                      example_values=lambda example: [example["mask"]])


def build_mask_video_source() -> MaskSource:
    return build_upload_source(MASK_VIDEO, VIDEO_TYPES, "a mask video", "mask-video",
                               "Mask video: one mask per frame, white = remove",
                               "Give a mask: upload a mask video (white = remove), or choose another mask source.")


def build_mask_image_source() -> MaskSource:
    return build_upload_source(MASK_IMAGE, IMAGE_TYPES, "a mask image", "mask-image",
                               "Mask image: used for every frame (logos, watermarks), white = remove",
                               "Give a mask: upload a mask image (white = remove), or choose another mask source.")


# ---------------------------------------------------------------------------------------------
# Drawing on a frame


def sketch_mask(editor: Optional[dict], size: Optional[tuple[int, int]] = None) -> Optional[np.ndarray]:
    """bool [H, W] of everything painted on the editor's layers (alpha > 0), None if nothing is.

    `size` (width, height) scales the mask to the video's own size, for a frame shown smaller.
    """
    import cv2

    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or [] if layer is not None]
    painted = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not painted or not np.any(painted):
        return None
    mask = np.logical_or.reduce(painted)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        mask = cv2.resize(mask.astype(np.uint8), tuple(size), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def drawn_mask(video: Optional[str], editor: Optional[dict]) -> Optional[str]:
    """`make_mask` of the drawing: what is painted, at the video's size, as a mask image."""
    import cv2

    info = probe_or_none(video)
    mask = sketch_mask(editor, (info.width, info.height) if info else None)
    if mask is None:
        return None
    path = scratch_file(".png")
    cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
    return str(path)


def editor_value(frame: Optional[np.ndarray], painted: Optional[np.ndarray] = None) -> Optional[dict]:
    """The editor's value: `frame` to draw on and, if given, a bool mask already painted on it."""
    if frame is None:
        return None
    layers = []
    if painted is not None:
        layer = np.zeros((*frame.shape[:2], 4), np.uint8)
        layer[painted] = (255, 45, 85, 255)
        layers.append(layer)
    return {"background": frame, "layers": layers, "composite": None}


def build_sketch_source(video: Any, frame_index: Any) -> MaskSource:
    """Paint over what to remove on one frame; the drawing is the mask of every frame."""
    import gradio as gr

    with gr.Column(visible=False) as panel:
        editor = gr.ImageEditor(
            label="Paint over what to remove (used for every frame)", type="numpy", image_mode="RGBA",
            sources=(), transforms=(), layers=False, brush=gr.Brush(colors=["#ff2d55"], color_mode="fixed"),
            elem_id="sketch")

    def show(path: Optional[str], index: float):
        frame = frame_or_none(path, index)
        return editor_value(frame) if frame is not None else gr.skip()

    # On upload only: an example sets the video and its drawing together (a change would clear it).
    video.upload(lambda path: show(path, 0), video, editor, api_visibility="private", concurrency_limit=None)
    frame_index.release(show, [video, frame_index], editor, api_visibility="private", concurrency_limit=None)
    return MaskSource(DRAW, panel, [editor], drawn_mask, frame_index=True, missing=NOTHING_DRAWN,
                      example_values=drawing_of)


def drawing_of(example: dict) -> list:
    """The editor's value for an example: its first frame with the example's mask image painted on it."""
    import cv2

    frame = frame_or_none(example["video"], 0)
    mask = cv2.imread(str(example["mask"]), cv2.IMREAD_GRAYSCALE) if example.get("mask") else None
    if frame is None or mask is None:
        raise InputError(f"The example '{example.get('title', '')}' cannot be drawn.")
    painted = cv2.resize(mask, frame.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 127
    return [editor_value(frame, painted)]


# ---------------------------------------------------------------------------------------------
# Choosing


def choose(sources: Sequence[MaskSource], label: str) -> list[Any]:
    """Visibility updates: the chosen source's panel shown, the others hidden, then the frame slider."""
    import gradio as gr

    chosen = next((s for s in sources if s.label == label), None)
    panels = [gr.update(visible=s is chosen) for s in sources]
    return panels + [gr.update(visible=bool(chosen and chosen.frame_index))]


def split_values(sources: Sequence[MaskSource], values: Sequence[Any]) -> dict[str, list[Any]]:
    """The flat values of every source's inputs (in `all_inputs` order), per source label."""
    out, at = {}, 0
    for s in sources:
        out[s.label] = list(values[at:at + len(s.inputs)])
        at += len(s.inputs)
    return out


def all_inputs(sources: Sequence[MaskSource]) -> list[Any]:
    """Every source's inputs, one flat list (the page's erase request receives them all)."""
    return [component for s in sources for component in s.inputs]


def make_chosen_mask(sources: Sequence[MaskSource], label: str, video: Optional[str],
                     values: Sequence[Any]) -> tuple[str, bool]:
    """(mask file, whether the request owns it) from the chosen source; InputError if none is given."""
    chosen = next((s for s in sources if s.label == label), None)
    if chosen is None:
        raise InputError(f"Choose where the mask comes from ({', '.join(s.label for s in sources)}).")
    own = split_values(sources, values)[label]
    mask = chosen.make_mask(video, *own)
    if not mask:
        raise InputError(chosen.missing or f"No mask from '{chosen.label}' yet: {NO_MASK}")
    given = {str(v) for v in own if isinstance(v, (str, Path))}
    return str(mask), str(mask) not in given

