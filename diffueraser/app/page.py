"""The page's layout and its small handlers; no model code.

First screen, top to bottom: the title, one line about the engine this server runs (details
folded), the example gallery, then two columns: the input (video, mask source, Erase / Stop with
the expected time, the main settings, "Advanced") and the output (result, before/after and prior
in tabs, the summary naming the engine that ran, downloads). On a phone the columns stack.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from ..errors import InputError
from ..settings import knobs
from . import jobs
from .controls import make_control, page_settings, settings_from_page, with_parameters
from .serving import EngineState, missing_note, status_line
from .sources import (MaskSource, all_inputs, build_mask_image_source, build_mask_video_source, build_sketch_source,
                      choose, probe_or_none, sketch_mask)
from .uploads import IMAGE_TYPES, VIDEO_TYPES, Limits

log = logging.getLogger(__name__)

__all__ = ["TITLE", "build_demo", "launch", "sketch_mask", "estimate_note"]

TITLE = "DiffuEraser: remove objects and watermarks from videos"
CACHE_SWEEP_EVERY_S = 600  # Gradio's delete_cache: how often it looks ...
OUTPUT_MAX_AGE_S = 3600  # ... for served files older than this
INTRO = ("Upload a video, show what to remove, press **Erase**. The result keeps the frame count, the frame rate "
         "and the sound. Model: [DiffuEraser](https://arxiv.org/abs/2501.10018).")
ERASE_DOC = """Remove what the mask covers from the video.

video: mp4, mov, webm, mkv or avi. mask: a mask video (one mask per frame) or one image used for
every frame; white = remove. Instead of (or with) a mask file: prompts, JSON objects to track
(`[{"frame": 0, "points": [[x, y]], "labels": [1]}]` or `"box": [x0, y0, x1, y1]`, `"object": n`;
video pixels), and text_region, where to detect burnt-in text to remove (full, bottom, top or
X0,Y0,X1,Y1); the masks given are combined. Returns the result video (H.264, audio kept), the prior's video (None
without a prior), the before/after video, the files to download, and a one-line summary."""
NO_VIDEO_ESTIMATE = "Upload a video or click an example to see how long it takes here."
CSS = """
#title h3 { margin: 0 0 2px 0; }
#title p, #status p { margin: 0; }
#erase-row { align-items: center; }
#examples .thumbnail-lg { height: 96px; aspect-ratio: auto; }
#estimate p { margin: 0; font-size: 0.9em; }
#sketch, #sketch canvas { max-width: 100%; }
"""
"""Small tightening so that the main path fits a laptop's first screen; phones stack the columns."""


def estimate_note(video: Optional[str], values: dict[str, Any]) -> str:
    """"About 40 s on this machine (CPU) for 25 frames at 432×184", from the one cost model."""
    from ..cost import estimate_app_seconds

    info = probe_or_none(video)
    if info is None:
        return NO_VIDEO_ESTIMATE
    here = jobs.served()
    try:
        settings = settings_from_page(values, here.limits, here.state.loaded)
    except InputError as e:
        return f"Check the settings: {e}"
    frames = info.frames
    if settings.max_seconds is not None:
        frames = min(frames, max(1, round(settings.max_seconds * info.fps)))
    device = jobs.served_device()
    seconds = estimate_app_seconds(frames, info.height, info.width, settings, device)
    where = "GPU" if device == "cuda" else "CPU"
    return (f"Expected time: **about {jobs.format_seconds(seconds)} on this machine** ({where}) for {frames} "
            f"frames at {info.width}×{info.height}.")


def build_sources(video: Any, frame: Any) -> list[MaskSource]:
    """Every mask source the page offers, in the order of the radio: click selection first, text last."""
    from .selecting import build_select_source
    from .texting import build_text_source

    return [build_select_source(video, frame), build_mask_video_source(), build_mask_image_source(),
            build_sketch_source(video, frame), build_text_source(video)]


def on_video(video: Optional[str]):
    """A new video: size the frame slider."""
    import gradio as gr

    info = probe_or_none(video)
    frames = info.frames if info else 1
    return gr.update(maximum=max(frames - 1, 1), value=0, interactive=frames > 1)


def example_values(source: MaskSource, example: dict) -> list:
    """The values of `source`'s inputs that run `example`: the example's own ("values"), else the source's."""
    if "values" in example:
        return list(example["values"])
    if source.example_values is None:
        raise InputError(f"The example '{example.get('title', '')}' cannot run through '{source.label}'.")
    return list(source.example_values(example))


def example_updates(sources: list[MaskSource], examples: list[dict], index: int) -> list[Any]:
    """The page filled in for example `index`: video, source, frame slider, panels, every source's inputs."""
    import gradio as gr

    example = examples[index]
    chosen = next(s for s in sources if s.label == example["source"])
    values = example_values(chosen, example)
    info = probe_or_none(example["video"])
    frames = info.frames if info else 1
    fills = []
    for s in sources:
        fills += list(values) if s is chosen else [gr.skip()] * len(s.inputs)
    panels = choose(sources, chosen.label)
    frame = gr.update(maximum=max(frames - 1, 1), value=0, interactive=frames > 1, visible=chosen.frame_index)
    return [example["video"], chosen.label, frame, *panels[:-1], *fills]


def build_demo(state: EngineState, limits: Optional[Limits] = None,
               examples: Optional[list[dict[str, str]]] = None):
    """The page, serving `state`'s engine under `limits` (one engine per process).

    `examples`: dicts with video, mask and title, and optionally source (a mask source's label;
    by default the mask file's kind) and still (the thumbnail; see `app.examples`).
    """
    import gradio as gr

    from .examples import source_of, with_still

    limits = limits or Limits.from_env()
    jobs.SERVED = jobs.Served(state, limits)
    defaults = state.loaded  # the released settings, or the rung that runs without the missing checkpoints
    names = page_settings()
    gallery_examples = [with_still({**ex, "source": ex.get("source") or source_of(ex["mask"])})
                        for ex in examples or []]
    with gr.Blocks(title="DiffuEraser", delete_cache=(CACHE_SWEEP_EVERY_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(f"### {TITLE}\n{INTRO}", elem_id="title")
        if state.full and not state.offline_reason:
            gr.Markdown(status_line(state), elem_id="status")
        else:  # one line; what is missing and how to provide it folded under it
            with gr.Accordion(status_line(state), open=False, elem_id="status"):
                gr.Markdown(missing_note(state), elem_id="missing-checkpoints")

        gallery = gr.Gallery([(ex["still"] or None, ex["title"]) for ex in gallery_examples],
                             label="Examples: click one to run it", show_label=True, columns=6, rows=1, height=118,
                             allow_preview=False, fit_columns=False, object_fit="cover", elem_id="examples",
                             visible=bool(gallery_examples))
        controls: dict[str, Any] = {}
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                video = gr.Video(label="Video (mp4, mov, webm, mkv, avi)", sources=["upload"], height=170,
                                 elem_id="input-video")
                source = gr.Radio([], label="Mask: what to remove", elem_id="mask-source")
                with gr.Row(elem_id="erase-row"):
                    run = gr.Button("Erase", variant="primary", elem_id="erase-button", scale=3)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop-button", scale=1)
                estimate = gr.Markdown(NO_VIDEO_ESTIMATE, elem_id="estimate")
                with gr.Row():
                    for name in names:
                        if knobs()[name].page == "main":
                            controls[name] = make_control(name, getattr(defaults, name), limits)
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    for name in names:
                        if name not in controls:
                            controls[name] = make_control(name, getattr(defaults, name), limits)
            with gr.Column(scale=1, min_width=300):
                # The mask is made where the result will show: the chosen source's panel is the first
                # tab; Erase and the examples turn to the result.
                with gr.Tabs(elem_id="outputs", selected="mask") as tabs:
                    with gr.Tab("Mask", id="mask", elem_id="mask-tab"):
                        frame = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, visible=False,
                                          elem_id="frame-index")
                        sources = build_sources(video, frame)
                    with gr.Tab("Result", id="result"):
                        result = gr.Video(label="Result", elem_id="result-video", interactive=False, height=300)
                    with gr.Tab("Before / after", id="comparison"):
                        comparison = gr.Video(label="Before and after", elem_id="comparison-video",
                                              interactive=False, height=300)
                    with gr.Tab("Prior", id="prior"):
                        prior_video = gr.Video(label="Prior (the first fill, before diffusion)", elem_id="prior-video",
                                               interactive=False, height=300)
                summary = gr.Markdown(elem_id="summary")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        # The radio is above the panels but knows its choices only now (read when the page is served).
        source.choices = [(s.label, s.label) for s in sources]
        source.value = sources[0].label
        for s in sources:
            s.panel.visible = s is sources[0]
        frame.visible = sources[0].frame_index
        # The scripting endpoint: a video and a mask file (hidden: the page gives its mask through a source).
        api_mask = gr.File(visible=False, elem_id="api-mask", file_types=list(VIDEO_TYPES + IMAGE_TYPES))
        api_button = gr.Button(visible=False)

        params = [controls[name] for name in names]
        outputs = [result, prior_video, comparison, downloads, summary]
        source_inputs = all_inputs(sources)

        api_prompts = gr.Textbox(visible=False)
        api_text_region = gr.Textbox(visible=False)
        api_button.click(with_parameters(jobs.erase_api, ["video", "mask", "prompts", "text_region"], names, ERASE_DOC,
                                         progress=gr.Progress(), defaults={"mask": None, "prompts": None, "text_region": None}),
                         [video, api_mask, api_prompts, api_text_region, *params], outputs, api_name="erase",
                         concurrency_limit=limits.gpu_jobs, concurrency_id="erase")

        def page_erase(label: str, video_path: Optional[str], *rest: Any):
            *values, settings, progress, session = rest
            return jobs.erase_from_source(sources, label, video_path, values, settings, progress, session)

        leading = ["source", "video", *[f"source_input_{i}" for i in range(len(source_inputs))]]
        to_result = dict(fn=lambda: gr.Tabs(selected="result"), inputs=None, outputs=tabs, api_visibility="private",
                         queue=False)
        erase_event = run.click(**to_result).then(
            with_parameters(page_erase, leading, names, ERASE_DOC, progress=gr.Progress(), session=True),
            [source, video, *source_inputs, *params], outputs, api_visibility="private",
            concurrency_limit=limits.gpu_jobs, concurrency_id="erase")

        source.input(lambda label: [*choose(sources, label), gr.Tabs(selected="mask")], source,
                      [*[s.panel for s in sources], frame, tabs], api_visibility="private", queue=False)
        video.upload(on_video, video, frame, api_visibility="private", concurrency_limit=None)

        estimate_inputs = [video, *params]
        estimate_fn = with_parameters(lambda path, values, _: estimate_note(path, values), ["video"], names, "")
        for trigger in (video.change, *[c.change for c in params]):
            trigger(estimate_fn, estimate_inputs, estimate, api_visibility="private", concurrency_limit=None,
                    show_progress="hidden")

        cancels = [erase_event, *[event for s in sources for event in s.events]]
        if gallery_examples:
            chosen = gr.State(0)

            def pick(evt: gr.SelectData):
                if not any(s.label == gallery_examples[evt.index]["source"] for s in sources):
                    raise gr.Error(f"The '{gallery_examples[evt.index]['source']}' mask source is not available here.")
                return [evt.index, *example_updates(sources, gallery_examples, evt.index)]

            pick.__annotations__ = {"evt": gr.SelectData}  # how Gradio finds the event data (a real class)

            def example_erase(index: int, *rest: Any):
                *_, settings, progress, session = rest
                example = gallery_examples[int(index)]
                chosen_source = next(s for s in sources if s.label == example["source"])
                values = []
                for s in sources:
                    values += example_values(s, example) if s is chosen_source else [None] * len(s.inputs)
                return jobs.erase_from_source(sources, chosen_source.label, example["video"], values, settings,
                                              progress, session)

            example_event = gallery.select(
                pick, None, [chosen, video, source, frame, *[s.panel for s in sources], *source_inputs],
                api_visibility="private", queue=False,
            ).then(**to_result).then(
                with_parameters(example_erase, ["index"], names, ERASE_DOC, progress=gr.Progress(), session=True),
                [chosen, *params], outputs, api_visibility="private", concurrency_limit=limits.gpu_jobs,
                concurrency_id="erase")
            cancels.append(example_event)

        stop.click(_annotate_request(stop_job), None, summary, cancels=cancels, api_visibility="private",
                   queue=False)
    return demo


def stop_job(request: Any = None) -> str:
    """Stop button: the session's running job stops at its next progress report (its thread and
    temporary files freed); Gradio cancels the event and the next job runs."""
    jobs.stop(str(getattr(request, "session_hash", "") or ""))
    return jobs.STOPPED


def _annotate_request(fn: Callable) -> Callable:
    import gradio as gr

    fn.__annotations__ = {"request": gr.Request, "return": str}
    return fn



def launch(demo, limits: Limits, **kwargs: Any) -> Any:
    """Queue and serve the page. Erase jobs (the button's, the examples' and the API's: one
    concurrency group) run `limits.gpu_jobs` at a time; uploads over the limit are refused; no run
    history is kept (links to one user's outputs are not stored anywhere)."""
    from .examples import EXAMPLES_DIR, _scratch

    demo.queue(default_concurrency_limit=limits.gpu_jobs)
    return demo.launch(ssr_mode=False, max_file_size=f"{limits.max_upload_mb:g}mb", show_error=False,
                       run_history=False, allowed_paths=[str(EXAMPLES_DIR), str(_scratch())], css=CSS, **kwargs)
