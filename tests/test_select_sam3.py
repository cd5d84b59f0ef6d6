"""Words through SAM 3: transformers' real `Sam3VideoModel` built from a tiny random configuration,
saved with a tiny CLIP tokenizer in the released layout, loaded through the weights module and
driven end to end by the project's tracking code (words on a short clip; the union of instances)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffueraser.errors import InputError
from diffueraser.media import read_video
from diffueraser.select import sam, sam3
from diffueraser.select.command import main as mask_main
from diffueraser.select.prompts import Prompt
from diffueraser.select.track import track_to_file
from footage import make_clip
from select_tiny import SAM3_INPUT, write_tiny_sam3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights3")
    write_tiny_sam3(folder)
    return folder


@pytest.fixture(scope="module")
def tracker(weights):
    return sam.load_tracker("sam3", weights_dir=weights, local_files_only=True, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("sam3") / "in.mp4", frames=6, width=96, audio=False)


def test_checkpoint_and_tokenizer_load_through_the_weights_module(tracker, weights):
    from transformers import Sam3VideoModel

    assert isinstance(tracker, sam3.Sam3Tracker) and isinstance(tracker.model, Sam3VideoModel)
    assert tracker.input_size == SAM3_INPUT and next(tracker.model.parameters()).dtype == torch.float32
    ids, mask = tracker.tokens("The  dog")
    assert ids.shape == mask.shape == (1, sam3.TEXT_TOKENS)
    # <start>, "the" (merged), d, o, g</w>, <end>: 6 real tokens, the rest padding
    assert int(mask.sum()) == 6 and ids[0, 0].item() == 0 and ids[0, 5].item() == 1
    long_ids, _ = tracker.tokens("a " * 100)  # cut to the text encoder's 32 positions
    assert long_ids.shape == (1, sam3.TEXT_TOKENS)
    frame = np.full((30, 50, 3), 255, np.uint8)
    x = tracker.prepare(frame)
    assert x.shape == (3, SAM3_INPUT, SAM3_INPUT) and torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5


def test_normalisation_comes_from_the_processor_config_when_given(tmp_path):
    assert sam3.normalisation(tmp_path) == (sam3.SAM3_MEAN, sam3.SAM3_STD)
    (tmp_path / "processor_config.json").write_text(json.dumps(
        {"video_processor": {"image_mean": [0.4, 0.4, 0.4], "image_std": [0.2, 0.25, 0.3]}}))
    assert sam3.normalisation(tmp_path) == ((0.4, 0.4, 0.4), (0.2, 0.25, 0.3))


def test_words_mask_every_frame_with_the_union_of_their_instances(tracker, monkeypatch):
    frames = np.random.default_rng(0).integers(0, 256, (7, 40, 56, 3), dtype=np.uint8)
    sessions, instances, emitted = [], {}, []
    new_session, find = tracker.new_session, tracker.instances

    def spy_session(f):
        sessions.append(new_session(f))
        return sessions[-1]

    def spy_instances(session, out, h, w):
        found = find(session, out, h, w)
        instances[out.frame_idx] = found
        return found

    monkeypatch.setattr(tracker, "new_session", spy_session)
    monkeypatch.setattr(tracker, "instances", spy_instances)
    monkeypatch.setattr(sam3, "KEEP_BEHIND", 2)
    tracker.track(frames, [Prompt(3, 4, text="the dog")], lambda t, o, m: emitted.append((t, o, m.copy())))
    assert [t for t, _, _ in emitted] == list(range(7)) and {o for _, o, _ in emitted} == {3}
    several = 0
    for t, _, mask in emitted:
        assert mask.shape == (40, 56) and mask.dtype == bool
        union = np.zeros_like(mask)
        for prompt_id, m in instances[t]:
            assert prompt_id == 0
            union |= m
        assert np.array_equal(mask, union)
        # where the instances differ, the union is more than the smaller of them
        several += any(mask.sum() > m.sum() for _, m in instances[t])
    assert several > 0
    (session,) = sessions
    assert dict.__len__(session.processed_frames) == 0  # frames come from the store, none kept
    for outputs in session.output_dict_per_obj.values():
        assert all(k >= 6 - 2 for k in outputs["non_cond_frame_outputs"])
    assert all(k >= 6 - 2 for k in session.obj_id_to_tracker_score_frame_wise)


def test_instances_leave_out_the_suppressed_removed_and_empty_at_the_frame_size(tracker):
    from transformers import Sam3VideoInferenceSession
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoSegmentationOutput

    session = Sam3VideoInferenceSession(dtype=torch.float32)
    low = torch.full((1, 8, 8), -1.0)
    left = low.clone()
    left[:, :, :4] = 1.0
    masks = {0: left, 1: -low, 2: -low, 3: low}
    session.obj_id_to_prompt_id.update({0: 0, 1: 0, 2: 1, 3: 1})
    session.hotstart_removed_obj_ids.add(2)
    out = Sam3VideoSegmentationOutput(object_ids=[0, 1, 2, 3], obj_id_to_mask=masks, suppressed_obj_ids={1},
                                      frame_idx=5)
    found = tracker.instances(session, out, 16, 24)
    assert [pid for pid, _ in found] == [0]  # 1 suppressed, 2 removed, 3 empty
    (mask,) = [m for _, m in found]
    assert mask.shape == (16, 24) and mask[:, :12].all() and not mask[:, 12:].any()


def test_far_outputs_and_old_conditioning_frames_are_forgotten(monkeypatch):
    from transformers import Sam3VideoInferenceSession

    monkeypatch.setattr(sam3, "KEEP_BEHIND", 5)
    session = Sam3VideoInferenceSession(dtype=torch.float32)
    outputs = session.output_dict_per_obj[session.obj_id_to_idx(7)]
    outputs["cond_frame_outputs"].update({k: {"f": k} for k in range(0, 40, 4)})
    outputs["non_cond_frame_outputs"].update({k: {"f": k} for k in range(40) if k % 4})
    session.obj_id_to_tracker_score_frame_wise.update({k: {7: 0.9} for k in range(40)})
    session.suppressed_obj_ids.update({k: set() for k in range(40)})
    sam3.forget_far(session, 39, keep_cond=3)
    assert sorted(outputs["cond_frame_outputs"]) == [28, 32, 36]
    assert sorted(outputs["non_cond_frame_outputs"]) == [k for k in range(34, 40) if k % 4]
    recent = list(range(34, 40))
    assert sorted(session.obj_id_to_tracker_score_frame_wise) == sorted(session.suppressed_obj_ids) == recent


def test_words_and_a_box_in_prompt_json_track_to_one_mask_video(clip, weights, tmp_path):
    out = tmp_path / "mask.mp4"
    prompts = json.dumps([{"object": 1, "text": "the dog", "frame": 2, "points": [[60, 20]]},
                          {"object": 2, "frame": 3, "box": [10, 10, 40, 40]}])
    report = track_to_file(clip, prompts, out, tracker="auto", weights_dir=weights, local_files_only=True,
                           device="cpu")
    video, mask = read_video(clip), read_video(out)
    assert mask.frames.shape == video.frames.shape
    assert report.tracker == "sam3+flow" and report.objects == (1, 2) and report.frames == 6
    assert report.frames_with_mask == 6 and 0 < report.mean_area <= 1


def test_mask_command_with_words(clip, weights, tmp_path, capsys):
    out = tmp_path / "m.mp4"
    code = mask_main([str(clip), "-o", str(out), "--weights", str(weights), "--offline", "--text", "the dog",
                      "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tracker: sam3 (words need SAM 3)" in err and "tracked 1 object(s)" in err
    video, mask = read_video(clip), read_video(out)
    assert mask.frames.shape == video.frames.shape and mask.frames.max() == 255


def test_words_that_match_nothing_are_refused(clip, tmp_path):
    blind = tmp_path / "blind"
    write_tiny_sam3(blind, sees=False)
    with pytest.raises(InputError, match="the words 'the cat' matched nothing in the video: not found"):
        track_to_file(clip, [{"text": "the cat"}], tmp_path / "m.mp4", tracker="sam3", weights_dir=blind,
                      local_files_only=True, device="cpu")
    assert not (tmp_path / "m.mp4").exists()


def test_words_without_the_sam3_checkpoint_name_it_and_the_token(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    code = mask_main([str(clip), "-o", str(tmp_path / "m.mp4"), "--weights", str(tmp_path / "empty"), "--offline",
                      "--text", "the dog"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "facebook/sam3" in err and "HF_TOKEN" in err and not (tmp_path / "m.mp4").exists()


def test_sam3_refuses_clicks_given_to_it_directly(tracker):
    with pytest.raises(InputError, match="SAM 3 here takes words only"):
        tracker.track(np.zeros((2, 8, 8, 3), np.uint8), [Prompt(1, 0, points=((2.0, 2.0),), labels=(1,))],
                      lambda *a: None)


def test_the_words_box_is_offered_when_the_checkpoint_is_at_hand(weights, monkeypatch):
    from diffueraser.app import selecting

    monkeypatch.setattr(selecting, "_weights_dir", lambda: str(weights))
    offered, note = selecting.words_note()
    assert offered and "SAM 3" in note
