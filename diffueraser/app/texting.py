"""The page's "Text" mask source: burnt-in text (subtitles, captions) found by a text detector.

The panel: where to look (whole frame, bottom or top band, or a rectangle), "Detect text" to see
the detected mask over the video (a short preview) and download it, and an optional mask file
whose white is removed as well (a corrected mask, a logo). Erasing without pressing "Detect"
detects first. The endpoint `/detect_text` (video, region) -> (mask video, summary) is the same
detection for scripts; `/erase` then takes that mask.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..select.text import REGION_HELP, TextReport, parse_region, text_mask_to_file
from ..select.combine import union_mask_files
from .sources import MaskSource, mask_preview, scratch_file
from .uploads import IMAGE_TYPES, VIDEO_TYPES, file_kind

TEXT = "Text (subtitles, captions)"
REGIONS = [("Whole frame", "full"), ("Bottom band (subtitles)", "bottom"), ("Top band", "top"),
           ("Rectangle", "rect")]
PREVIEW_SECONDS = 4.0
"""The preview shows the detected mask over this much of the video."""
PREVIEW_MAX_SIDE = 640
DETECT_DOC = f"""Find the burnt-in text of a video and return its mask video (white = remove).

video: mp4, mov, webm, mkv or avi. region: {REGION_HELP}. Returns the mask video (give it to
/erase as its mask) and a one-line summary. No text found is an error that says so."""


def region_text(choice: Optional[str], rectangle: Optional[str]) -> str:
    """The region string from the radio and the rectangle box (InputError if the rectangle is bad)."""
    if choice == "rect":
        if not (rectangle or "").strip():
            raise InputError("Type the rectangle as X0,Y0,X1,Y1 in the video's pixels, or choose another region.")
        return str(parse_region(rectangle))
    return str(parse_region(choice or "full"))


def max_seconds() -> Optional[float]:
    """The server's limit on the seconds a request works on (what an erase would read)."""
    from . import jobs
    from .uploads import Limits

    return (jobs.SERVED.limits if jobs.SERVED is not None else Limits.from_env()).max_seconds


def summary(report: TextReport) -> str:
    text = (f"Text found on {report.frames_with_mask} of {report.frames} frames, covering "
            f"{report.mean_area:.1%} of the frame on average (region: {report.region}; "
            f"{report.detections} detections, {report.seconds:.1f} s).")
    return text + (f" Warning: {report.warning}." if report.warning else "")


def preview_video(video: str, mask: str) -> str:
    """A short video of the detected mask over the video (red, half transparent)."""
    return mask_preview(video, mask, "text-preview.mp4", (255, 30, 60), PREVIEW_SECONDS, PREVIEW_MAX_SIDE)


def build_text_source(video: Any) -> MaskSource:
    """The Text source: its panel, its inputs and `make_mask`, and the `/detect_text` endpoint."""
    import gradio as gr

    from .jobs import page_error, watching

    with gr.Column(visible=False) as panel:
        choice = gr.Radio(REGIONS, value="full", label="Where to look for text", elem_id="text-region")
        rectangle = gr.Textbox(label="Rectangle X0,Y0,X1,Y1 (the video's pixels)", placeholder="0,560,1280,720",
                               visible=False, elem_id="text-rectangle")
        detect_button = gr.Button("Detect text", elem_id="text-detect")
        preview = gr.Video(label="Detected text (red) over the first seconds", interactive=False, height=200,
                           elem_id="text-preview")
        found = gr.File(label="Text mask: download it, correct it, upload it back as a mask video",
                        interactive=False, elem_id="text-mask")
        note = gr.Markdown(elem_id="text-summary")
        extra = gr.File(label="Also remove (optional): a mask video or image, white = remove",
                        file_types=list(VIDEO_TYPES + IMAGE_TYPES), elem_id="text-extra", height=100)
        detected = gr.State(None)
        """(video path, region, mask path) of the last "Detect", reused by the erase when they match."""
        api_region = gr.Textbox(visible=False)
        api_mask = gr.File(visible=False)
        api_note = gr.Textbox(visible=False)
        api_button = gr.Button(visible=False)

    def on_detect(path: Optional[str], chosen: str, rect: Optional[str], request=None):
        try:
            region = region_text(chosen, rect)
            with watching(str(getattr(request, "session_hash", "") or "")):
                mask, report = run_detection(path, region)
            shown = preview_video(path, mask)
        except Exception as error:
            raise page_error(error)
        if report.warning:
            gr.Warning(report.warning)
        return shown, mask, summary(report), (path, region, mask)

    def api_detect(path: Optional[str], region: Optional[str]):
        try:
            mask, report = run_detection(path, str(parse_region(region)))
        except Exception as error:
            raise page_error(error)
        return mask, summary(report)

    on_detect.__annotations__["request"] = gr.Request  # the page session, whose Stop stops the detection
    api_detect.__doc__ = DETECT_DOC
    choice.change(lambda c: gr.update(visible=c == "rect"), choice, rectangle, api_visibility="private",
                  queue=False)
    detect_event = detect_button.click(on_detect, [video, choice, rectangle], [preview, found, note, detected],
                                       api_visibility="private", concurrency_id="text", concurrency_limit=1)
    api_button.click(api_detect, [video, api_region], [api_mask, api_note], api_name="detect_text",
                     concurrency_id="text", concurrency_limit=1)

    def make_mask(path: Optional[str], chosen: str, rect: Optional[str], last: Any, also: Optional[str]):
        region = region_text(chosen, rect)
        if isinstance(last, (list, tuple)) and len(last) == 3 and tuple(last[:2]) == (path, region) \
                and Path(last[2]).exists():
            mask = str(scratch_file(".mp4"))
            shutil.copyfile(last[2], mask)  # the erase removes its mask; the download keeps its own
        else:
            mask, report = run_detection(path, region)
            if report.warning:
                gr.Warning(report.warning)
        if also:
            mask = _joined(mask, also, path)
        return mask

    return MaskSource(TEXT, panel, [choice, rectangle, detected, extra], make_mask, events=[detect_event])


def run_detection(video: Optional[str], region: str) -> tuple[str, TextReport]:
    """Detect the text of `video` into a new mask file of the request; (path, report). The page
    session's Stop stops it (nothing is left behind)."""
    from .jobs import current_session, raise_if_stopped, remove_scratch

    if not video:
        raise InputError("Upload a video first, or click an example.")
    file_kind(video, VIDEO_TYPES, "a video")
    session, output = current_session(), scratch_file(".mp4")
    try:
        report = text_mask_to_file(video, output, region=region, max_seconds=max_seconds(),
                                   progress=lambda _: raise_if_stopped(session))
    except BaseException:
        remove_scratch(str(output))
        raise
    return report.output, report


def _joined(detected: str, mask: str, video: str) -> str:
    """One new mask file: the union of the detected text's mask (removed, it was the request's
    own) and the user's `mask`."""
    from .jobs import remove_scratch

    try:
        file_kind(mask, VIDEO_TYPES + IMAGE_TYPES, "a mask video or image")
        return str(union_mask_files([detected, mask], video, scratch_file(".mp4"), max_seconds=max_seconds()))
    finally:
        remove_scratch(detected)


def mask_with_text(video: Optional[str], mask: Optional[str], text_region: Optional[str]) -> Optional[str]:
    """For `/erase`'s text mode: with a `text_region` ('full', 'bottom', 'top', 'X0,Y0,X1,Y1'), the
    detected text's mask of `video`, joined with `mask` when one is given too (new files of the
    request); without one, `mask` unchanged. InputError for a bad region or no text found."""
    if not (text_region or "").strip():
        return mask
    detected, report = run_detection(video, str(parse_region(text_region)))
    if report.warning:
        import gradio as gr

        gr.Warning(report.warning)
    return _joined(detected, mask, video) if mask else detected
