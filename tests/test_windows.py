import numpy as np
import pytest
import torch
from reference import load_json

from diffueraser.diffusion.windows import RampBlender, clip_windows, pre_inference_indices

SCHEDULE = load_json("parity/schedule.json")
CONTEXT = SCHEDULE["get_frames_context_swap"]
PRE = SCHEDULE["pre_inference_sample_index"]


@pytest.mark.parametrize("n", sorted(int(n) for n in CONTEXT["results"]))
def test_windows_equal_released_get_frames_context_swap(n):
    expected = CONTEXT["results"][str(n)]
    schedule = clip_windows(n, CONTEXT["num_frames_per_clip"], CONTEXT["overlap"])
    assert [list(w) for w in schedule.even] == expected["context_list"]
    assert [list(w) for w in schedule.odd] == expected["context_list_swap"]
    assert schedule.for_step(0) is schedule.even and schedule.for_step(3) is schedule.odd


@pytest.mark.parametrize("n", [1, 2, 5, 21])
def test_video_shorter_than_a_clip_gets_one_window_of_all_its_frames(n):
    schedule = clip_windows(n, 22, 5)
    assert schedule.even == schedule.odd == [range(n)]
    assert schedule.clip_length == n


@pytest.mark.parametrize("n, clip, overlap", [(23, 22, 5), (50, 8, 2), (97, 16, 0), (10, 1, 0), (40, 7, 6)])
def test_every_step_covers_every_frame_with_full_length_increasing_windows(n, clip, overlap):
    schedule = clip_windows(n, clip, overlap)
    for windows in (schedule.even, schedule.odd):
        assert all(len(w) == clip for w in windows)
        assert [w.start for w in windows] == sorted({w.start for w in windows})
        assert set().union(*map(set, windows)) == set(range(n))


def test_odd_step_borders_fall_inside_even_step_windows():
    schedule = clip_windows(100, 22, 5)
    for w in schedule.odd[1:-1]:
        assert any(e.start < w.start < e.stop - 1 for e in schedule.even)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one frame"):
        clip_windows(0, 22, 5)
    with pytest.raises(ValueError, match="overlap"):
        clip_windows(30, 8, 8)


def _released_blend(windows, values, n):
    """The reference README §5.2 rule, written out literally with a per-frame write count."""
    out = np.zeros((n,), np.float32)
    count = np.zeros((n,), int)
    for j, (w, new) in enumerate(zip(windows, values)):
        idx = list(w)
        count[idx] += 1
        if j == 0:
            out[idx] = new
            continue
        shared = [p for p in range(len(idx)) if count[idx[p]] > 1]
        r = np.linspace(0, 1, len(shared) + 2, dtype=np.float32)[1:-1]
        for p in shared:
            out[idx[p]] = out[idx[p]] * (np.float32(1) - r[p]) + new[p] * r[p]
        last = shared[-1] if shared else 0
        out[idx[last:]] = new[last:]
    return out


@pytest.mark.parametrize("n, clip, overlap", [(45, 22, 5), (100, 22, 5), (30, 22, 5), (50, 10, 0)])
def test_ramp_blender_follows_the_released_rule(n, clip, overlap):
    rng = np.random.default_rng(n)
    for windows in (clip_windows(n, clip, overlap).even, clip_windows(n, clip, overlap).odd):
        values = [rng.standard_normal(len(w)).astype(np.float32) for w in windows]
        blender = RampBlender(torch.zeros(n))
        for w, v in zip(windows, values):
            blender.add(w, torch.from_numpy(v))
        np.testing.assert_allclose(blender.out.numpy(), _released_blend(windows, values, n), rtol=0, atol=1e-6)


def test_ramp_weights_for_a_five_frame_overlap():
    blender = RampBlender(torch.zeros(10, 1))
    blender.add(range(0, 7), torch.zeros(7, 1))
    blender.add(range(2, 10), torch.ones(8, 1))
    # shared frames 2..6 (k = 5): ramps 1/6..4/6 on frames 2..5, frame 6 fully new
    expected = [0, 0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 1, 1, 1, 1]
    np.testing.assert_allclose(blender.out[:, 0].numpy(), expected, atol=1e-6)


def test_ramp_blender_refuses_a_gap():
    blender = RampBlender(torch.zeros(10))
    blender.add(range(0, 4), torch.ones(4))
    with pytest.raises(ValueError, match="gap"):
        blender.add(range(5, 9), torch.ones(4))


@pytest.mark.parametrize("n", sorted(int(n) for n in PRE["results"]))
def test_pre_inference_indices_equal_released(n):
    assert pre_inference_indices(n, 22) == PRE["results"][str(n)]


@pytest.mark.parametrize("n", [1, 22, 44])
def test_no_pre_inference_up_to_two_clips(n):
    assert pre_inference_indices(n, 22) is None
