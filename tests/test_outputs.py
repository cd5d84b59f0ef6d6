"""Outputs never overwrite inputs and always have a place to go; the API refuses wrong argument
types by name; the page's messages never show server paths."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from diffueraser import Eraser, Settings
from diffueraser.engine import EraseResult, erase
from diffueraser.errors import InputError
from diffueraser.media import read_video
from diffueraser.outputs import check_outputs
from footage import make_clip

PRIOR_ONLY = Settings(diffusion=False, prior="propagation", device="cpu")


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("outputs") / "in.mp4", frames=20, width=96)


@pytest.fixture(scope="module")
def box(clip) -> np.ndarray:
    """A bool [H, W] mask: one box in the middle of the clip."""
    video = read_video(clip)
    mask = np.zeros((video.height, video.width), bool)
    mask[video.height // 3: video.height // 2, video.width // 3: video.width // 2] = True
    return mask


# ---------------------------------------------------------------------------- check_outputs


def _inputs(tmp_path: Path) -> dict[str, Path]:
    video, mask = tmp_path / "in.mp4", tmp_path / "mask.png"
    video.write_bytes(b"video bytes")
    mask.write_bytes(b"mask bytes")
    return {"input video": video, "mask": mask}


def test_an_output_that_is_an_input_is_refused_naming_both(tmp_path):
    inputs = _inputs(tmp_path)
    with pytest.raises(InputError, match=r"the output .*in.mp4 is the input video .*in.mp4 \(the same file\); "
                                         r"choose another output path"):
        check_outputs(inputs, {"output": tmp_path / "in.mp4"})
    with pytest.raises(InputError, match=r"the prior output .*mask.png is the mask .*mask.png \(the same file\)"):
        check_outputs(inputs, {"output": tmp_path / "out.mp4", "prior output": tmp_path / "." / "mask.png"})


def test_hard_and_symbolic_links_to_an_input_are_refused(tmp_path):
    inputs = _inputs(tmp_path)
    os.link(inputs["input video"], tmp_path / "hard.mp4")
    os.symlink(inputs["input video"], tmp_path / "soft.mp4")
    (tmp_path / "folder_link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match=r"hard.mp4 is the input video .*\(a hard link to the same file\)"):
        check_outputs(inputs, {"output": tmp_path / "hard.mp4"})
    with pytest.raises(InputError, match=r"soft.mp4 is the input video .*\(the same file through a symbolic link\)"):
        check_outputs(inputs, {"output": tmp_path / "soft.mp4"})
    with pytest.raises(InputError, match=r"folder_link/in.mp4 is the input video"):
        check_outputs(inputs, {"output": tmp_path / "folder_link" / "in.mp4"})
    # an input given through a link is protected as well
    with pytest.raises(InputError, match=r"in.mp4 is the input video .*soft.mp4"):
        check_outputs({"input video": tmp_path / "soft.mp4"}, {"output": inputs["input video"]})


def test_two_outputs_on_one_file_are_refused(tmp_path):
    (tmp_path / "folder_link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match=r"the output .*out.mp4 and the prior output .*out.mp4 are the same file; "
                                         r"give each its own path"):
        check_outputs({}, {"output": tmp_path / "out.mp4", "prior output": tmp_path / "out.mp4"})
    with pytest.raises(InputError, match="are the same file through a symbolic link"):
        check_outputs({}, {"output": tmp_path / "out.mp4", "prior output": tmp_path / "folder_link" / "out.mp4"})


def test_outputs_without_a_writable_place_are_refused(tmp_path):
    (tmp_path / "file.txt").write_text("a file")
    cases = {
        tmp_path: "is an existing folder; give a file path ending in .mp4",
        tmp_path / "nowhere" / "out.mp4": "nowhere of the output .*out.mp4 does not exist; create it first",
        tmp_path / "file.txt" / "out.mp4": "file.txt/out.mp4 cannot be written: .*file.txt is a file, not a folder",
        tmp_path / "out.mkv": r"out.mkv must end in .mp4: results are written as H.264 MP4",
        tmp_path / "out": "must end in .mp4",
    }
    for path, words in cases.items():
        with pytest.raises(InputError, match=words):
            check_outputs({}, {"output": path})


def test_an_unwritable_folder_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root) can write into a read-only folder")
        with pytest.raises(InputError, match="locked of the output .*out.mp4 is not writable"):
            check_outputs({}, {"output": folder / "out.mp4"})
    finally:
        folder.chmod(0o700)


def test_fine_outputs_pass_and_missing_folders_pass_when_they_can_be_made(tmp_path):
    inputs = _inputs(tmp_path)
    (tmp_path / "old.mp4").write_bytes(b"an earlier result, not an input")
    outputs = {"output": tmp_path / "old.mp4", "prior output": str(tmp_path / "prior.MP4"), "none": None}
    assert check_outputs({**inputs, "unused": None}, outputs) == {
        "output": tmp_path / "old.mp4", "prior output": tmp_path / "prior.MP4"}
    assert check_outputs(inputs, {"output": tmp_path / "new" / "deeper" / "out.mp4"}, create_folders=True)


# ---------------------------------------------------------------------------- the API


def test_save_refuses_the_results_own_source_and_keeps_it(clip, box, tmp_path):
    result = Eraser(PRIOR_ONLY)(clip, box)
    before = digest(clip)
    os.link(clip, tmp_path / "linked.mp4")
    for target in (clip, tmp_path / "linked.mp4"):
        with pytest.raises(InputError, match="is the input video"):
            result.save(target)
        with pytest.raises(InputError, match="is the input video"):
            result.save_prior(target)
    with pytest.raises(InputError, match="is the audio source"):
        result.save(tmp_path / "sound.mp4", audio_from=tmp_path / "sound.mp4")
    with pytest.raises(InputError, match="must end in .mp4"):
        result.save(tmp_path / "out.avi")
    assert digest(clip) == before
    written = result.save(tmp_path / "made" / "out.mp4")  # save makes missing folders, as write_video does
    assert read_video(written).num_frames == len(result.frames)


def test_erase_checks_the_output_before_loading_anything(clip, tmp_path):
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"not read: the output check comes first")
    before = digest(mask), digest(clip)
    # default settings need checkpoints this machine lacks: an InputError proves nothing was loaded
    with pytest.raises(InputError, match="the output .*mask.png is the mask"):
        erase(clip, mask, mask)
    with pytest.raises(InputError, match="the output .*in.mp4 is the input video"):
        erase(clip, mask, clip)
    with pytest.raises(InputError, match="does not exist"):
        erase(clip, mask, tmp_path / "nowhere" / "out.mp4")
    assert (digest(mask), digest(clip)) == before


def test_erase_writes_the_result_with_the_trimmed_lengths(clip, box, tmp_path):
    result = erase(clip, box, tmp_path / "out.mp4", settings=PRIOR_ONLY.replace(max_seconds=0.2))
    fps = result.fps
    assert result.num_frames == int(0.2 * fps)
    assert result.duration == pytest.approx(result.num_frames / fps)
    assert result.source_duration == pytest.approx(20 / fps, abs=0.05)
    assert result.source_duration > result.duration + 1 / fps
    assert read_video(tmp_path / "out.mp4").num_frames == result.num_frames


def test_results_of_frames_without_a_file_have_no_source_duration(box):
    frames = np.zeros((3, *box.shape, 3), np.uint8)
    result = EraseResult(frames=frames, prior=None, masks=np.repeat(box[None], 3, 0), fps=10.0, seed=0)
    assert result.source_duration is None and result.duration == pytest.approx(0.3)


@pytest.mark.parametrize(
    "video, mask, settings, words",
    [
        (None, "{mask}", None, "video must be a file path (str or pathlib.Path) or a media.Video, got NoneType"),
        (3, "{mask}", None, "or a media.Video, got int"),
        ("{clip}", None, None, "mask must be a file path (str or pathlib.Path) or a numpy array"),
        ("{clip}", [[0, 1]], None, "[T, H, W]), got list"),
        ("  ", "{mask}", None, "video is an empty path"),
        ("{clip}", "{mask}", {"steps": 4}, "settings must be a diffueraser.Settings, e.g. Settings(steps=4), "
                                           "got dict (for a dict, use Settings.from_dict(...))"),
        ("{clip}", "{mask}", 4, "settings must be a diffueraser.Settings, e.g. Settings(steps=4), got int"),
    ],
)
def test_the_api_names_an_argument_of_the_wrong_type(clip, tmp_path, video, mask, settings, words):
    def fill(value):
        return value.format(clip=clip, mask=tmp_path / "m.png") if isinstance(value, str) else value

    video, mask = fill(video), fill(mask)
    with pytest.raises(InputError) as called:
        Eraser(PRIOR_ONLY)(video, mask, settings=settings)
    with pytest.raises(InputError) as erased:
        erase(video, mask, tmp_path / "out.mp4", settings=settings)
    assert words in str(called.value) and words in str(erased.value)


def test_from_pretrained_and_progress_are_checked_too(clip, box):
    with pytest.raises(InputError, match="settings must be a diffueraser.Settings.* got dict"):
        Eraser.from_pretrained({"diffusion": False})
    with pytest.raises(InputError, match="progress must be a function taking a Progress, or None, got str"):
        Eraser(PRIOR_ONLY)(clip, box, progress="tqdm")


# ---------------------------------------------------------------------------- the page


def test_page_errors_show_file_names_never_server_paths(tmp_path):
    from diffueraser import media
    from diffueraser.app.jobs import hide_paths, page_error

    upload = tmp_path / "gradio" / "0123abcd" / "my clip.mp4"
    with pytest.raises(InputError) as missing:
        media.probe(upload)
    bad_image = tmp_path / "mask.png"
    bad_image.write_bytes(b"not an image")
    with pytest.raises(InputError) as unreadable:
        media.read_masks(bad_image, media.Video(np.zeros((1, 8, 8, 3), np.uint8), 25.0))
    for error, name in ((missing.value, "my clip.mp4"), (unreadable.value, "mask.png")):
        assert str(tmp_path) in str(error)  # media names the whole path; the page must not
        shown = page_error(error).message
        assert str(tmp_path) not in shown and name in shown, shown
    text = ("Looked in: /root/.cache/huggingface/hub; ./weights (file:/tmp/gradio/ab/in.mp4: Invalid data). "
            "See https://huggingface.co/lixiaowen/diffuEraser, 24000/1001 fps, true / false.")
    assert hide_paths(text) == ("Looked in: hub; ./weights (file:in.mp4: Invalid data). "
                                "See https://huggingface.co/lixiaowen/diffuEraser, 24000/1001 fps, true / false.")
    assert page_error(InputError(r"cannot read C:\Users\me\in.mp4")).message == "cannot read in.mp4"
