"""RAFT ("things") against the released key layout and the reference fixtures (pseudo-weights)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from pseudo_weights import fill_module, pseudo_state_dict
from reference import assert_close_rel, load_json, load_npz

from diffueraser.weights import load_raft
from diffueraser.errors import CheckpointError
from diffueraser.prior.propainter.raft import (
    RAFT,
    CorrelationPyramid,
    bidirectional_flows,
    coords_grid,
    raft_padding,
)

REL = 1e-4
NAMESPACE = "raft."


@pytest.fixture(scope="module")
def keys():
    return load_json("keys/raft_things.json")


@pytest.fixture(scope="module")
def raft():
    return fill_module(RAFT().eval(), NAMESPACE)


@pytest.fixture(scope="module")
def fixture():
    return load_npz("propainter_raft")


def _frames(arrays) -> torch.Tensor:
    """[1, T, 3, H, W] in [-1, 1], the reference input convention."""
    x = torch.from_numpy(arrays["frames_uint8"]).float() / 255 * 2 - 1
    return x.permute(0, 3, 1, 2).unsqueeze(0)


def test_raft_state_dict_has_released_keys_shapes_and_aliases(keys):
    state = RAFT().state_dict(keep_vars=True)
    assert list(state) == list(keys["keys"])
    assert {k: list(v.shape) for k, v in state.items()} == keys["keys"]
    for alias, target in keys["aliases"].items():
        assert state[alias] is state[target], alias


def test_load_raft_strips_module_prefix_and_loads_strictly(tmp_path, keys):
    values = pseudo_state_dict(keys["keys"], NAMESPACE, keys["aliases"])
    path = tmp_path / "raft-things.pth"
    torch.save({"module." + k: v for k, v in values.items()}, path)

    model = load_raft(path)
    assert not model.training
    loaded = model.state_dict()
    for name, value in values.items():
        assert torch.equal(loaded[name], value), name

    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in values.items() if not k.startswith("update_block.mask")}, broken)
    with pytest.raises(CheckpointError, match="broken.pth.*update_block.mask"):
        load_raft(broken)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_raft(garbage)


def test_correlation_lookup_reads_scaled_dot_products_with_released_window_order():
    gen = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(2, 1, 8, 16, 16, generator=gen)
    lookup = CorrelationPyramid(f1, f2)(coords_grid(1, 16, 16, f1.device))
    assert lookup.shape == (1, 4 * 81, 16, 16)
    r, side = 4, 9
    dot = lambda dx, dy: (f1[0, :, 4:12, 4:12] * f2[0, :, 4 + dy : 12 + dy, 4 + dx : 12 + dx]).sum(0) / math.sqrt(8)
    # level 0: the window's row index shifts x, its column index shifts y (released quirk)
    for dx, dy in [(0, 0), (1, 0), (0, 1), (-2, 3)]:
        channel = (r + dx) * side + (r + dy)
        torch.testing.assert_close(lookup[0, channel, 4:12, 4:12], dot(dx, dy), atol=1e-5, rtol=1e-5)


def test_raft_iterations_match_released_pair0(raft, fixture):
    arrays, meta = fixture
    frames = _frames(arrays)
    with torch.no_grad():
        fmaps = raft.features(frames[0, :2])
        net, inp = raft.context(frames[0, :1])
        steps = list(raft.iterate(fmaps[:1], fmaps[1:], net, inp, meta["raft_iters"]))
        per_iter = torch.cat([raft.upsample(flow, net) for flow, net in steps])
        full = raft(frames[:, 0], frames[:, 1], iters=meta["raft_iters"])
    assert_close_rel(per_iter, arrays["raft_pair0_forward_flow_per_iter"], REL, "per_iter")
    assert_close_rel(steps[-1][0][0], arrays["raft_pair0_forward_flow_lowres"], REL, "lowres")
    assert_close_rel(full[0], arrays["raft_pair0_forward_flow_per_iter"][-1], REL, "forward()")


def test_bidirectional_flows_match_released_clip_in_bounded_batches(raft, fixture):
    arrays, meta = fixture
    frames = _frames(arrays)
    three_pairs = 3 * CorrelationPyramid.bytes_per_pair(128 // 8, 160 // 8)
    forward, backward = bidirectional_flows(raft, frames, iters=meta["raft_iters"], corr_budget_bytes=three_pairs)
    assert forward.dtype == backward.dtype == torch.float32
    assert_close_rel(forward, arrays["raft_flows_forward"], REL, "raft_flows_forward")
    assert_close_rel(backward, arrays["raft_flows_backward"], REL, "raft_flows_backward")


@pytest.mark.parametrize("height, width", [(64, 96), (120, 192), (100, 150)])
def test_small_or_unaligned_inputs_give_finite_flows_of_the_input_size(raft, height, width):
    gen = torch.Generator().manual_seed(height)
    frames = torch.rand(1, 2, 3, height, width, generator=gen) * 2 - 1
    forward, backward = bidirectional_flows(raft, frames, iters=2)
    assert forward.shape == backward.shape == (1, 1, 2, height, width)
    assert torch.isfinite(forward).all() and torch.isfinite(backward).all()
    left, right, top, bottom = raft_padding(height, width)
    assert (height + top + bottom) % 8 == 0 and height + top + bottom >= 128
    assert (width + left + right) % 8 == 0 and width + left + right >= 128


def test_released_behaviour_without_the_size_guard_is_nan_below_128(raft):
    # Why the guard exists: unpadded, the coarsest correlation level is one cell high.
    frames = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        fmaps = raft.features(frames)
        net, inp = raft.context(frames[:1])
        flow, _ = list(raft.iterate(fmaps[:1], fmaps[1:], net, inp, 1))[-1]
    assert torch.isnan(flow).any()
    assert raft_padding(128, 160) == (0, 0, 0, 0)


def test_clip_of_one_frame_has_no_flows(raft):
    forward, backward = bidirectional_flows(raft, torch.zeros(1, 1, 3, 128, 128), iters=1)
    assert forward.shape == backward.shape == (1, 0, 2, 128, 128)


def test_float16_raft_stays_close_to_float32(raft):
    # The released runner keeps RAFT in float32; half precision must still work (GPU runs).
    frames = torch.rand(1, 2, 3, 128, 128, generator=torch.Generator().manual_seed(5)) * 2 - 1
    reference = bidirectional_flows(raft, frames, iters=2)
    half = bidirectional_flows(copy.deepcopy(raft).half(), frames, iters=2)
    for ref, out in zip(reference, half):
        assert out.dtype == torch.float32
        assert_close_rel(out, ref, 1e-2, "float16 flows")
