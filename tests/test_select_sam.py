"""SAM 2.1 through transformers' real `Sam2VideoModel`, built from a tiny random configuration and
saved as a checkpoint in the released layout: loaded through the weights module and driven end to
end by the project's tracking code (prompts on two frames, two objects, both directions)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffueraser.errors import CheckpointError, InputError
from diffueraser.media import read_video
from diffueraser.select import sam
from diffueraser.select.command import main as mask_main
from diffueraser.select.prompts import Prompt
from diffueraser.select.prompts import parse_prompts
from diffueraser.select.track import choose_tracker, track_to_file
from footage import make_clip
from select_tiny import TINY_INPUT, write_tiny_sam2

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    write_tiny_sam2(folder)
    return folder


@pytest.fixture(scope="module")
def tracker(weights):
    return sam.load_tracker("sam2", weights_dir=weights, local_files_only=True, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("sam") / "in.mp4", frames=10, width=160, audio=False)


def test_checkpoint_loads_through_the_weights_module_as_the_real_class(tracker):
    from transformers import Sam2VideoModel

    assert isinstance(tracker.model, Sam2VideoModel)
    assert tracker.input_size == TINY_INPUT and tracker.dtype == torch.float32
    assert next(tracker.model.parameters()).dtype == torch.float32


def test_two_objects_on_two_frames_are_tracked_forwards_and_backwards(tracker):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 48, 64, 3), dtype=np.uint8)
    order: list[tuple[int, int]] = []

    def emit(t, obj, mask):
        assert mask.shape == (48, 64) and mask.dtype == bool
        order.append((t, obj))

    prompts = [Prompt(1, 3, points=((20.0, 30.0), (40.0, 10.0)), labels=(1, 0)),
               Prompt(1, 6, points=((25.0, 20.0),), labels=(1,)),
               Prompt(2, 5, box=(5.0, 5.0, 30.0, 40.0))]
    tracker.track(frames, prompts, emit)
    for obj, start in ((1, 3), (2, 5)):
        frames_seen = [t for t, o in order if o == obj]
        assert set(frames_seen) == set(range(9))
        # forwards from the first prompt to the end, then backwards from it to frame 0
        assert frames_seen[: 9 - start] == list(range(start, 9))
        assert frames_seen[9 - start:] == list(range(start, -1, -1))


def test_session_holds_no_frames_and_forgets_what_memory_cannot_reach(tracker, monkeypatch):
    sessions = []
    original = tracker.new_session

    def spy(frames):
        session = original(frames)
        sessions.append(session)
        return session

    monkeypatch.setattr(tracker, "new_session", spy)
    monkeypatch.setattr(sam, "KEEP_BEHIND", 3)
    frames = np.random.default_rng(1).integers(0, 256, (12, 32, 40, 3), dtype=np.uint8)
    tracker.track(frames, [Prompt(1, 4, box=(2.0, 2.0, 20.0, 20.0))], lambda *a: None)
    (session,) = sessions
    assert isinstance(session.processed_frames, sam.LazyFrames)
    assert dict.__len__(session.processed_frames) == 0  # frames are read from the store, not kept
    assert len(session.processed_frames) == 12
    for outputs in session.output_dict_per_obj.values():
        assert len(outputs["non_cond_frame_outputs"]) <= 4
        assert list(outputs["cond_frame_outputs"]) == [4]


def test_prompts_reach_the_model_in_its_input_pixels(tracker):
    inputs = tracker.point_inputs(Prompt(1, 0, points=((32.0, 12.0),), labels=(0,), box=(0.0, 0.0, 64.0, 24.0)),
                                  height=24, width=64)
    s = TINY_INPUT
    coords = inputs["point_coords"].view(-1, 2).tolist()
    assert coords == [[0.0, 0.0], [s, s], [s / 2, s / 2]]
    assert inputs["point_labels"].view(-1).tolist() == [2, 3, 0]


def test_track_to_file_with_sam2_writes_the_union_mask_video(clip, weights, tmp_path):
    out = tmp_path / "mask.mp4"
    prompts = [{"object": 1, "frame": 2, "box": [40, 10, 120, 60]}, {"object": 2, "frame": 7, "points": [[20, 30]]}]
    report = track_to_file(clip, prompts, out, tracker="sam2", weights_dir=weights, local_files_only=True,
                           device="cpu")
    video, mask = read_video(clip), read_video(out)
    assert mask.frames.shape == video.frames.shape
    assert report.tracker == "sam2" and report.frames == video.num_frames and report.objects == (1, 2)


def test_auto_picks_sam2_when_its_checkpoint_is_at_hand(weights):
    name, note = choose_tracker("auto", parse_prompts([{"box": [0, 0, 4, 4]}]), weights)
    assert name == "sam2" and "SAM 2.1 small" in note


def test_mask_command_with_sam2(clip, weights, tmp_path, capsys):
    out = tmp_path / "m.mp4"
    code = mask_main([str(clip), "-o", str(out), "--weights", str(weights), "--offline", "--tracker", "sam2",
                      "--box", "40,10,120,60@3", "--object", "2", "--point", "20,30@8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tracker: sam2" in err and "tracked 2 object(s)" in err
    assert read_video(out).num_frames == 10


def test_an_object_the_model_finds_nowhere_is_refused(clip, tmp_path):
    blind = tmp_path / "blind"
    write_tiny_sam2(blind, sees_nothing=True)
    with pytest.raises(InputError, match="object 1 is empty on every frame: the object was not found"):
        track_to_file(clip, [{"box": [40, 10, 120, 60]}], tmp_path / "m.mp4", tracker="sam2", weights_dir=blind,
                      local_files_only=True, device="cpu")
    assert not (tmp_path / "m.mp4").exists()


def test_missing_tracker_checkpoint_names_it_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:
        sam.load_tracker("sam2-tiny", weights_dir=tmp_path, local_files_only=True)
    assert "facebook/sam2.1-hiera-tiny" in str(e.value) and "weights/sam2.1-hiera-tiny/" in str(e.value)


def test_edgetam_without_timm_says_what_to_install_and_auto_passes_it_over(tmp_path):
    # EdgeTAM's backbone is timm's RepViT, and timm imports torchvision: neither is installed here.
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed")
    with pytest.raises(InputError, match=r"needs the `timm` package and a torchvision built for the installed "
                                         r"torch \(pip install timm torchvision; with a CPU-only torch"):
        sam.load_tracker("edgetam", weights_dir=tmp_path, local_files_only=True)
    assert not sam.available("edgetam", tmp_path)
    assert "timm" in sam.unavailable_reason("edgetam", tmp_path)


def test_words_are_refused_by_a_clicks_only_model(tracker):
    with pytest.raises(InputError, match="SAM 3"):
        tracker.track(np.zeros((2, 8, 8, 3), np.uint8), [Prompt(1, 0, text="the dog")], lambda *a: None)
