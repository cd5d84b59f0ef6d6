"""The page's "Select" mask source: click the object on a frame, see it segmented at once, track it
through the video, correct it on another frame, track again, erase.

Clicks add a point on the object (+), a point that is not the object (−), or a box corner (two
clicks make a box); "Add object" starts the next object; the mask is the union of all objects.
Prompts are kept as the JSON `/segment` takes (the video's pixels). "Track" runs the tracker under
its own `@spaces.GPU` call (duration estimated from the frame count) and shows the tracked mask
over the video as a short preview video, with the mask video to download. Erasing without
"Track" tracks first. The `/segment` endpoint (video, prompts JSON, tracker) -> (mask video,
summary) is the same tracking for scripts.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import media
from ..errors import InputError
from ..progress import Progress
from ..select.prompts import POSITIVE, Prompt, Prompts, check_prompts, parse_prompts
from .sources import MaskSource, frame_or_none, mask_preview, probe_or_none, scratch_file
from .uploads import VIDEO_TYPES, file_kind

SELECT = "Select (click the object)"
POSITIVE_CLICK, NEGATIVE_CLICK, BOX_CLICK = "Object (+)", "Not object (−)", "Box (2 clicks)"
PREVIEW_SECONDS = 10.0
"""The preview shows the tracked mask over this much of the video."""
PREVIEW_MAX_SIDE = 480
SECONDS_PER_FRAME = {("flow", "cpu"): 0.1, ("flow", "cuda"): 0.1, ("sam2", "cpu"): 30.0, ("sam2", "cuda"): 0.1,
                     ("edgetam", "cpu"): 5.0, ("edgetam", "cuda"): 0.05, ("sam3", "cpu"): 190.0, ("sam3", "cuda"): 0.3}
"""Rough tracking cost per frame and object. CPU: measured on this project's shared 2-core machine
(benchmarks/RESULTS.md: flow 6-16 frames/s at 720p, SAM 2.1 tiny ~45 s/frame; SAM 3 at full size,
random weights, ~190 s/frame); the GPU and EdgeTAM figures are guesses until measured."""
GPU_BASE_S, GPU_MIN_S, GPU_MAX_S = 15.0, 20, 300
COLOURS = [(255, 45, 85), (40, 160, 255), (255, 200, 0), (80, 220, 120), (200, 90, 255)]
SEGMENT_DOC = """Track what the prompts select through the video; returns its mask video (white = remove).

video: mp4, mov, webm, mkv or avi. prompts: JSON, a list of {"object": 1, "frame": 0,
"points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1], "text": "the dog"}
in the video's pixels (labels: 1 = on the object, 0 = not on it; text needs SAM 3). tracker:
auto, sam2, edgetam, sam3 or flow (the weight-free one). Returns the mask video (give it to
/erase as its mask) and a one-line summary."""

_TRACKERS: dict[str, Any] = {}
"""Loaded trackers by name, kept between clicks."""


# ---------------------------------------------------------------------------------------------
# Prompts as the page keeps them: a JSON-ready list of dicts


def add_click(prompts: Sequence[dict], obj: int, frame: int, x: float, y: float, mode: str,
              pending: Optional[list]) -> tuple[list[dict], Optional[list]]:
    """The prompts with one click added (and the pending box corner): a point on `obj` at `frame`,
    or a box corner (the second corner completes the box)."""
    out = [dict(p) for p in prompts]
    entry = next((p for p in out if p["object"] == obj and p["frame"] == frame and "text" not in p), None)
    if entry is None:
        entry = {"object": obj, "frame": frame}
        out.append(entry)
    if mode == BOX_CLICK:
        if not pending or pending[0] != frame:
            if not entry.get("points") and "box" not in entry:
                out.remove(entry)
            return out, [frame, x, y]
        x0, y0 = pending[1], pending[2]
        entry["box"] = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
        parse_prompts([entry])  # a zero-area box is refused now, with its reason
        return out, None
    entry["points"] = list(entry.get("points", [])) + [[x, y]]
    entry["labels"] = list(entry.get("labels", [])) + [POSITIVE if mode == POSITIVE_CLICK else 0]
    return out, pending


def drop_last(prompts: Sequence[dict]) -> list[dict]:
    """The prompts without the last click or box."""
    out = [dict(p) for p in prompts]
    if not out:
        return out
    last = out[-1]
    if last.get("points"):
        last["points"], last["labels"] = last["points"][:-1], last["labels"][:-1]
    elif "box" in last:
        del last["box"]
    if not last.get("points") and "box" not in last and "text" not in last:
        out.pop()
    return out


def valid_prompts(prompts: Sequence[dict]) -> Optional[Prompts]:
    """Prompts from the page's list, None when there are none (an entry of only negatives is left out
    until it has a positive point or box)."""
    usable = [p for p in prompts if p.get("box") or p.get("text") or POSITIVE in p.get("labels", [])]
    return parse_prompts(usable) if usable else None


# ---------------------------------------------------------------------------------------------
# Running the tracker


def pick_tracker(name: str, prompts: Prompts) -> tuple[str, str]:
    from ..select.track import choose_tracker

    return choose_tracker(name or "auto", prompts, _weights_dir())


def _weights_dir() -> Optional[str]:
    """Tracker checkpoints are looked for where the weights module looks by default
    ($DIFFUERASER_WEIGHTS, ./weights, the Hugging Face cache)."""
    return None


def _device() -> str:
    from . import jobs

    return jobs.served_device()


def loaded_tracker(name: str):
    """The tracker `name`, loaded once per process."""
    if name not in _TRACKERS:
        if name == "flow":
            from ..select.flowtrack import FlowTracker

            _TRACKERS[name] = FlowTracker()
        else:
            from ..select import sam

            _TRACKERS[name] = sam.load_tracker(name, weights_dir=_weights_dir(), device=_device())
    return _TRACKERS[name]


def tracking_seconds(frames: int, objects: int, tracker: str, device: str) -> float:
    """Rough seconds to track `objects` objects through `frames` frames."""
    family = "sam2" if tracker.startswith("sam2") else tracker
    per = SECONDS_PER_FRAME.get((family, "cuda" if device == "cuda" else "cpu"), 1.0)
    return frames * max(objects, 1) * per


def gpu_duration(video: Optional[str], prompts_json: str, tracker: str, *rest: Any) -> int:
    """The `@spaces.GPU` duration of one tracking call: its estimate with a margin, within limits."""
    try:
        prompts = parse_prompts(prompts_json)
        info = media.probe(video)
        name, _ = pick_tracker(tracker, prompts)
        seconds = tracking_seconds(info.frames, len(prompts.objects), name, "cuda")
    except Exception:
        return GPU_MAX_S
    return int(min(GPU_MAX_S, max(GPU_MIN_S, GPU_BASE_S + 1.5 * seconds)))


def _gpu_task():
    from .jobs import gpu_task

    return gpu_task


def _track(video: str, prompts_json: str, tracker: str, output: str, report: Any = None, session: str = ""):
    from ..select.track import track_to_file
    from .jobs import raise_if_stopped
    from .texting import max_seconds

    def progress(p: Progress) -> None:
        raise_if_stopped(session)
        if report is not None:
            report(p.fraction, desc=p.describe())

    name, _ = pick_tracker(tracker, parse_prompts(prompts_json))
    return track_to_file(video, prompts_json, output, tracker=name, weights_dir=_weights_dir(),
                         max_seconds=max_seconds(), progress=progress, device=_device())


track_on_gpu = _gpu_task()(duration=gpu_duration)(_track)
"""Tracking as one `@spaces.GPU` call with its own duration."""


def run_tracking(video: Optional[str], prompts: Sequence[dict] | str | None, tracker: str = "auto",
                 report: Any = None):
    """Track into a new mask file of the request: (path, TrackReport). The page session's Stop
    stops it (nothing is left behind)."""
    from .jobs import current_session, remove_scratch

    if not video:
        raise InputError("Upload a video first, or click an example.")
    file_kind(video, VIDEO_TYPES, "a video")
    parsed = parse_prompts(prompts) if isinstance(prompts, str) else valid_prompts(prompts or [])
    if parsed is None:
        raise InputError("Click on the object first (or draw a box around it), then track.")
    output = str(scratch_file(".mp4"))
    try:
        result = track_on_gpu(video, parsed.to_json(), tracker or "auto", output, report, current_session())
    except BaseException:
        remove_scratch(output)
        raise
    return output, result


def summary(report: Any) -> str:
    return (f"Tracked {len(report.objects)} object(s) with **{report.tracker}** through {report.frames} frames "
            f"in {report.seconds:.1f} s: masked on {report.frames_with_mask} frames, "
            f"{report.mean_area:.1%} of the frame on average." + (f" ({report.note})" if report.note else ""))


def segment_frame(video: str, index: int, prompts: Sequence[dict], tracker: str) -> Optional[np.ndarray]:
    """bool [h, w] of the prompted objects on frame `index` as shown (PREVIEW size), or None."""
    from ..select.track import scale_prompts

    parsed = valid_prompts([p for p in prompts if p["frame"] == index and not p.get("text")])
    frame = frame_or_none(video, index)
    info = probe_or_none(video)
    if parsed is None or frame is None or info is None:
        return None
    name, _ = pick_tracker("auto" if tracker == "sam3" else tracker, parsed)  # SAM 3 reads words, not clicks
    here = Prompts(tuple(Prompt(p.object, 0, p.points, p.labels, p.box) for p in parsed))
    scaled = scale_prompts(here, frame.shape[1] / info.width, frame.shape[0] / info.height)
    mask = np.zeros(frame.shape[:2], bool)

    def emit(t: int, obj: int, m: np.ndarray) -> None:
        mask[:] |= m

    loaded_tracker(name).track([frame], scaled, emit)
    return mask


def overlay(frame: np.ndarray, mask: Optional[np.ndarray], prompts: Sequence[dict], index: int,
            scale: float, pending: Optional[list] = None) -> np.ndarray:
    """The frame with the mask tinted and the clicks and boxes of this frame drawn on it."""
    import cv2

    shown = frame.astype(np.float32)
    if mask is not None and mask.any():
        shown[mask] = 0.5 * shown[mask] + 0.5 * np.array(COLOURS[0], np.float32)
    shown = shown.astype(np.uint8)
    radius = max(4, round(0.008 * max(frame.shape[:2])))
    for p in prompts:
        if p["frame"] != index:
            continue
        colour = COLOURS[(p["object"] - 1) % len(COLOURS)]
        if p.get("box"):
            x0, y0, x1, y1 = (int(round(v * scale)) for v in p["box"])
            cv2.rectangle(shown, (x0, y0), (x1, y1), colour, 2)
        for (x, y), label in zip(p.get("points", []), p.get("labels", [])):
            centre = (int(round(x * scale)), int(round(y * scale)))
            cv2.circle(shown, centre, radius, (255, 255, 255), -1)
            cv2.circle(shown, centre, radius - 2, colour if label == POSITIVE else (0, 0, 0), -1)
    if pending and pending[0] == index:
        cv2.drawMarker(shown, (int(round(pending[1] * scale)), int(round(pending[2] * scale))), (255, 255, 255),
                       cv2.MARKER_CROSS, 2 * radius, 2)
    return shown


def preview_video(video: str, mask: str) -> str:
    """A short video of the tracked mask over the video."""
    from .texting import max_seconds

    limit = max_seconds()  # the mask covers what tracking read: no more than the server's limit
    seconds = PREVIEW_SECONDS if limit is None else min(PREVIEW_SECONDS, limit)
    return mask_preview(video, mask, "select-preview.mp4", COLOURS[0], seconds, PREVIEW_MAX_SIDE)


def words_note() -> tuple[bool, str]:
    """Whether the words box can be offered, and the note that says why not when it cannot."""
    from ..select import sam

    missing = sam.unavailable_reason("sam3", _weights_dir())
    if missing:
        return False, ("Words (\"the dog\") need SAM 3 (`facebook/sam3`), which is gated on the Hugging Face Hub: "
                       "accept its licence there and give this Space a token secret (`HF_TOKEN`). "
                       "Not available here: its checkpoint is not installed.")
    return True, ("Words find every instance of what they name on every frame (SAM 3); the mask is their union, "
                  "together with any objects clicked above.")


def before_note(video: Optional[str], prompts: Sequence[dict], tracker: str) -> str:
    """What tracking will cost, said before it starts."""
    parsed = valid_prompts(prompts or [])
    info = probe_or_none(video)
    if parsed is None or info is None:
        return "Click on the object, then **Track**."
    try:
        name, why = pick_tracker(tracker, parsed)
    except InputError as e:
        return str(e)
    device = _device()
    seconds = tracking_seconds(info.frames, len(parsed.objects), name, device)
    from .jobs import format_seconds

    return (f"**Track** runs **{name}** on {len(parsed.objects)} object(s) through {info.frames} frames: "
            f"about {format_seconds(seconds)} on this machine ({'GPU' if device == 'cuda' else 'CPU'}). {why}.")


# ---------------------------------------------------------------------------------------------
# The panel


def build_select_source(video: Any, frame_index: Any) -> MaskSource:
    """The Select source: its panel, its inputs and `make_mask`, and the `/segment` endpoint."""
    import gradio as gr

    from .jobs import page_error, watching

    offered, why_not = words_note()
    with gr.Column(visible=False) as panel:
        image = gr.Image(label="Click on the object (the frame chosen above)", type="numpy", interactive=False,
                         elem_id="select-frame", height=360)
        with gr.Row():
            mode = gr.Radio([POSITIVE_CLICK, NEGATIVE_CLICK, BOX_CLICK], value=POSITIVE_CLICK, label="A click adds",
                            elem_id="select-mode")
            obj = gr.Number(value=1, precision=0, minimum=1, label="Object", elem_id="select-object")
        with gr.Row():
            add_object = gr.Button("Add object", elem_id="select-add-object", size="sm")
            undo = gr.Button("Undo", elem_id="select-undo", size="sm")
            clear = gr.Button("Clear", elem_id="select-clear", size="sm")
        words = gr.Textbox(label="Words (SAM 3)", placeholder="the red car", interactive=offered, visible=offered,
                           elem_id="select-words", info=why_not if offered else None)
        gr.Markdown(why_not, visible=not offered, elem_id="select-words-note")
        tracker = gr.Dropdown(["auto", "sam2", "edgetam", "sam3", "flow"], value="auto", label="Tracker",
                              elem_id="select-tracker")
        note = gr.Markdown("Click on the object, then **Track**.", elem_id="select-note")
        track_button = gr.Button("Track", variant="secondary", elem_id="select-track")
        preview = gr.Video(label="Tracked mask (red) over the video", interactive=False, height=240,
                           elem_id="select-preview")
        tracked_file = gr.File(label="Tracked mask video (download)", interactive=False, elem_id="select-mask")
        prompts = gr.State([])
        pending = gr.State(None)
        tracked = gr.State(None)
        """(video path, prompts JSON, tracker, mask path) of the last "Track", reused by the erase."""
        api_prompts = gr.Textbox(visible=False)
        api_tracker = gr.Textbox(visible=False, value="auto")
        api_mask = gr.File(visible=False)
        api_note = gr.Textbox(visible=False)
        api_button = gr.Button(visible=False)

    def shown(path: Optional[str], index: float, current: list, pend: Optional[list], name: str,
              segment: bool = True):
        index = int(index or 0)
        frame = frame_or_none(path, index)
        info = probe_or_none(path)
        if frame is None or info is None:
            return None
        mask = None
        if segment:
            try:
                mask = segment_frame(path, index, current, name)
            except InputError as e:
                gr.Warning(str(e))
        return overlay(frame, mask, current, index, frame.shape[1] / info.width, pend)

    def on_click(path: Optional[str], index: float, current: list, pend: Optional[list], which: str, number: float,
                 name: str, evt: gr.SelectData):
        try:
            info = probe_or_none(path)
            frame = frame_or_none(path, index)
            if info is None or frame is None:
                raise InputError("Upload a video first, or click an example.")
            scale = info.width / frame.shape[1]
            x, y = evt.index[0] * scale, evt.index[1] * scale
            current, pend = add_click(current, int(number or 1), int(index or 0), x, y, which, pend)
            usable = valid_prompts(current)
            if usable is not None:
                check_prompts(usable, info.width, info.height, info.frames, slack=1)
            return shown(path, index, current, pend, name), current, pend, before_note(path, current, name)
        except Exception as error:
            raise page_error(error)

    on_click.__annotations__["evt"] = gr.SelectData  # a real class (this module's annotations are strings)

    def on_frame(path: Optional[str], index: float, current: list, pend: Optional[list], name: str):
        try:
            return shown(path, index, current, pend, name)
        except Exception as error:
            raise page_error(error)

    def on_undo(path, index, current, pend, name):
        current = drop_last(current)
        return shown(path, index, current, None, name), current, None, before_note(path, current, name)

    def on_clear(path, index, name):
        return shown(path, index, [], None, name, segment=False), [], None, before_note(path, [], name), None, None

    def on_track(path: Optional[str], current: list, text: Optional[str], name: str,
                 progress=gr.Progress(), request=None):
        try:
            entries = list(current) + ([{"object": _next_object(current), "frame": 0, "text": text}]
                                       if text and text.strip() else [])
            with watching(str(getattr(request, "session_hash", "") or "")):
                mask, report = run_tracking(path, entries, name, report=progress)
            shown_video = preview_video(path, mask)
        except Exception as error:
            raise page_error(error)
        return shown_video, mask, summary(report), (path, json.dumps(entries), name, mask)

    on_track.__annotations__["request"] = gr.Request  # the page session, whose Stop stops the tracking

    def api_segment(path: Optional[str], prompts_json: Optional[str], name: Optional[str],
                    progress=gr.Progress()):
        try:
            mask, report = run_tracking(path, prompts_json or "", name or "auto", report=progress)
        except Exception as error:
            raise page_error(error)
        return mask, summary(report).replace("**", "")

    api_segment.__doc__ = SEGMENT_DOC
    private = dict(api_visibility="private", concurrency_limit=None)
    image.select(on_click, [video, frame_index, prompts, pending, mode, obj, tracker],
                 [image, prompts, pending, note], api_visibility="private", concurrency_id="select-click",
                 concurrency_limit=2)
    frame_index.release(on_frame, [video, frame_index, prompts, pending, tracker], image, **private)
    video.change(lambda p: (shown(p, 0, [], None, "flow", segment=False), [], None, None, None, None),
                 video, [image, prompts, pending, tracked, preview, tracked_file], **private)
    add_object.click(new_object, [prompts, obj], obj, **private)
    undo.click(on_undo, [video, frame_index, prompts, pending, tracker], [image, prompts, pending, note], **private)
    clear.click(on_clear, [video, frame_index, tracker], [image, prompts, pending, note, preview, tracked_file],
                **private)
    tracker.change(lambda p, c, n: before_note(p, c, n), [video, prompts, tracker], note, **private)
    track_event = track_button.click(on_track, [video, prompts, words, tracker],
                                     [preview, tracked_file, note, tracked], api_visibility="private",
                                     concurrency_id="select", concurrency_limit=1)
    api_button.click(api_segment, [video, api_prompts, api_tracker], [api_mask, api_note], api_name="segment",
                     concurrency_id="select", concurrency_limit=1)

    def make_mask(path: Optional[str], current: list, text: Optional[str], name: str, last: Any) -> Optional[str]:
        entries = list(current or []) + ([{"object": _next_object(current or []), "frame": 0, "text": text}]
                                         if text and text.strip() else [])
        if not entries or valid_prompts(entries) is None:
            return None
        if isinstance(last, (list, tuple)) and len(last) == 4 and tuple(last[:3]) == (path, json.dumps(entries), name) \
                and Path(last[3]).exists():
            mask = str(scratch_file(".mp4"))
            shutil.copyfile(last[3], mask)  # the erase removes its mask; the download keeps its own
            return mask
        mask, _ = run_tracking(path, entries, name)
        return mask

    return MaskSource(SELECT, panel, [prompts, words, tracker, tracked], make_mask, frame_index=True,
                      events=[track_event])


def _next_object(prompts: Sequence[dict]) -> int:
    """The object number after the highest in use (1 when there is none)."""
    return max((int(p["object"]) for p in prompts), default=0) + 1


def new_object(prompts: Sequence[dict], current: Optional[float]) -> int:
    """"Add object": the next unused object number, or the current one while it has no clicks yet."""
    current = int(current or 1)
    return _next_object(prompts) if any(int(p["object"]) == current for p in prompts) else current
