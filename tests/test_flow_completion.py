"""ProPainter's recurrent flow completion against the released key layout and the reference fixtures."""
from __future__ import annotations

import copy

import pytest
import torch
from pseudo_weights import fill_module, pseudo_state_dict
from reference import assert_close_rel, load_json, load_npz

from diffueraser.weights import load_flow_completion
from diffueraser.errors import CheckpointError
from diffueraser.prior.propainter.flow_completion import (
    RecurrentFlowCompleteNet,
    complete_flows,
)

REL = 1e-4
NAMESPACE = "flow_complete."


@pytest.fixture(scope="module")
def net():
    return fill_module(RecurrentFlowCompleteNet().eval(), NAMESPACE)


@pytest.fixture(scope="module")
def fixture():
    arrays, _ = load_npz("propainter_flowcomp")
    flows = (torch.from_numpy(arrays["raft_flows_forward"]), torch.from_numpy(arrays["raft_flows_backward"]))
    masks = torch.from_numpy(arrays["flow_masks"]).float()
    return arrays, flows, masks


def _random_clip(frames: int, height: int, width: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    flows = tuple(torch.randn(1, frames - 1, 2, height, width, generator=gen) * 3 for _ in range(2))
    masks = torch.zeros(1, frames, 1, height, width)
    for t in range(frames):
        masks[0, t, 0, height // 4 : height // 2, width // 5 + t : width // 2 + t] = 1
    return flows, masks


def test_flow_completion_state_dict_has_released_keys_and_shapes():
    keys = load_json("keys/recurrent_flow_completion.json")["keys"]
    state = RecurrentFlowCompleteNet().state_dict()
    assert list(state) == list(keys)
    assert {k: list(v.shape) for k, v in state.items()} == keys


def test_load_flow_completion_is_strict(tmp_path):
    keys = load_json("keys/recurrent_flow_completion.json")["keys"]
    values = pseudo_state_dict(keys, NAMESPACE)
    path = tmp_path / "recurrent_flow_completion.pth"
    torch.save(values, path)
    loaded = load_flow_completion(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in values.items())

    extra = tmp_path / "extra.pth"
    torch.save({**values, "spare.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match="extra.pth.*spare.weight"):
        load_flow_completion(extra)


def test_bidirectional_completion_and_combination_match_released(net, fixture):
    arrays, flows, masks = fixture
    with torch.no_grad():
        pred = net.forward_bidirect_flow(flows, masks)
    combined = net.combine_flow(flows, pred, masks)
    assert_close_rel(pred[0], arrays["flowcomp_pred_forward"], REL, "flowcomp_pred_forward")
    assert_close_rel(pred[1], arrays["flowcomp_pred_backward"], REL, "flowcomp_pred_backward")
    assert_close_rel(combined[0], arrays["completed_flows_forward"], REL, "completed_flows_forward")
    assert_close_rel(combined[1], arrays["completed_flows_backward"], REL, "completed_flows_backward")


def test_pieces_whose_padding_covers_the_clip_equal_one_pass(net):
    flows, masks = _random_clip(frames=4, height=32, width=48)
    whole = complete_flows(net, flows, masks)
    pieces = complete_flows(net, flows, masks, piece_flows=2, piece_padding=5)
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pieces_keep_raft_flows_outside_the_holes_and_complete_inside(net):
    flows, masks = _random_clip(frames=5, height=32, width=48, seed=1)
    fwd, bwd = complete_flows(net, flows, masks, piece_flows=2, piece_padding=1)
    assert fwd.shape == bwd.shape == flows[0].shape
    for out, raft, mask in ((fwd, flows[0], masks[:, :-1]), (bwd, flows[1], masks[:, 1:])):
        known = (mask == 0).expand_as(out)
        assert torch.equal(out[known], raft[known])
        assert not torch.allclose(out[~known], raft[~known])


def test_sizes_not_multiple_of_8_are_completed_at_their_size(net):
    flows, masks = _random_clip(frames=3, height=36, width=44)
    with torch.no_grad():
        fwd, bwd = net.forward_bidirect_flow(flows, masks)
    assert fwd.shape == bwd.shape == (1, 2, 2, 36, 44)
    assert torch.isfinite(fwd).all() and torch.isfinite(bwd).all()


def test_edge_head_gives_probabilities_per_pixel(net):
    with torch.no_grad():
        edges = net.edgeDetector(torch.randn(3, 2, 16, 24))
    assert edges.shape == (3, 1, 16, 24)
    assert ((edges > 0) & (edges < 1)).all()


def test_float16_completion_stays_close_to_float32(net):
    # The released runner completes flows in float16 on GPU.
    flows, masks = _random_clip(frames=3, height=64, width=64, seed=2)
    reference = complete_flows(net, flows, masks)
    half = complete_flows(copy.deepcopy(net).half(), tuple(f.half() for f in flows), masks.half())
    for ref, out in zip(reference, half):
        assert out.dtype == torch.float16
        assert_close_rel(out.float(), ref, 1e-2, "float16 flows")
