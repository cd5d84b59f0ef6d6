"""ProPainter's InpaintGenerator and image propagation against the released code's fixtures."""
import numpy as np
import pytest
import torch

from diffueraser.prior.propainter.generator import InpaintGenerator
from diffueraser.prior.propainter.propagation import flow_warp, img_propagation
from pseudo_weights import fill_module
from reference import assert_close_rel, load_json, load_npz

REL = 1e-4


@pytest.fixture(scope="module")
def shared():
    arrays, meta = load_npz("propainter_imgprop")
    return arrays, meta


@pytest.fixture(scope="module")
def generator():
    return fill_module(InpaintGenerator(), "propainter.").eval()


def _unit(frames_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames_u8).float().div(255).mul(2).sub(1).permute(0, 3, 1, 2).unsqueeze(0)


def test_state_dict_has_released_keys_shapes_order_and_index_buffers():
    ref = load_json("keys/propainter_inpaint_generator.json")
    sd = InpaintGenerator().state_dict()
    assert list(sd) == list(ref["keys"])
    assert {k: list(v.shape) for k, v in sd.items()} == ref["keys"]
    ints = {k: str(v.dtype).replace("torch.", "") for k, v in sd.items() if not v.is_floating_point()}
    assert ints == ref["non_float32_dtypes"]
    # each window (5x9) sees 4 rolled neighbourhoods minus the part inside the window: 4 * (45 - 2*4)
    assert all(sd[k].tolist() == sd[ref["buffers"][0]].tolist() and len(sd[k]) == 148 for k in ref["buffers"])


def test_loads_a_released_layout_checkpoint_strictly(generator):
    ref = load_json("keys/propainter_inpaint_generator.json")
    model = InpaintGenerator()
    state = {k: v.clone() for k, v in generator.state_dict().items()}  # the fixtures' pseudo-weights
    assert list(state) == list(ref["keys"])
    missing_unexpected = model.load_state_dict(state, strict=True)
    assert not missing_unexpected.missing_keys and not missing_unexpected.unexpected_keys
    torch.testing.assert_close(model.decoder[6].weight, generator.decoder[6].weight)
    with pytest.raises(RuntimeError, match="Missing key"):
        InpaintGenerator().load_state_dict({k: v for k, v in state.items() if "decoder" not in k}, strict=True)


def test_image_propagation_matches_released_fixture(shared):
    a, _ = shared
    frames = _unit(a["frames_uint8"])
    masks = torch.from_numpy(a["masks_dilated"]).float()
    flows_f = torch.from_numpy(a["completed_flows_forward"])
    flows_b = torch.from_numpy(a["completed_flows_backward"])
    prop, left = InpaintGenerator.img_propagation(frames * (1 - masks), flows_f, flows_b, masks, "nearest")
    updated = frames * (1 - masks) + prop * masks
    assert_close_rel(updated.numpy(), a["imgprop_updated_frames"], REL, "imgprop_updated_frames")
    np.testing.assert_array_equal(left.numpy(), a["imgprop_updated_masks"].astype(np.float32))


@pytest.mark.parametrize("run,window", [("gen", 0), ("genref", 0), ("genref", 2)])
def test_generator_window_matches_released_fixture(shared, generator, run, window):
    a, meta = shared
    expected, _ = load_npz(f"propainter_{run}")
    spec = meta["runs"][run]["windows"][window]
    neighbors, refs = spec["neighbor_ids"], spec["ref_ids"]
    ids = neighbors + refs
    frames = torch.from_numpy(a["imgprop_updated_frames"])[:, ids]
    masks_in = torch.from_numpy(a["masks_dilated"]).float()[:, ids]
    masks_left = torch.from_numpy(a["imgprop_updated_masks"]).float()[:, ids]
    flows_f = torch.from_numpy(a["completed_flows_forward"])[:, neighbors[:-1]]
    flows_b = torch.from_numpy(a["completed_flows_backward"])[:, neighbors[:-1]]
    with torch.no_grad():
        pred = generator(frames, flows_f, flows_b, masks_in, masks_left, len(neighbors))
    key = spec["pred_img_key"]
    assert_close_rel(pred[0].numpy(), expected[key], REL, key)


def test_flow_warp_follows_integer_flow_and_reads_zeros_outside():
    x = torch.arange(4 * 5, dtype=torch.float32).view(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 2.0  # read two columns to the right
    flow[:, 1] = -1.0  # and one row up
    out = flow_warp(x, flow, "nearest")
    expected = torch.zeros_like(x)
    expected[..., 1:, :3] = x[..., :3, 2:]
    torch.testing.assert_close(out, expected)


def test_image_propagation_fills_a_hole_from_a_panning_video():
    g = torch.Generator().manual_seed(3)
    texture = torch.rand(1, 3, 24, 60, generator=g) * 2 - 1
    shift, t = 2, 5
    frames = torch.stack([texture[..., 10 - shift * k:50 - shift * k] for k in range(t)], dim=1)  # content moves right
    masks = torch.zeros(1, t, 1, 24, 40)
    masks[:, 2, :, 8:16, 12:28] = 1  # a hole in the middle frame only
    flows_f = torch.zeros(1, t - 1, 2, 24, 40)
    flows_f[:, :, 0] = shift
    flows_b = -flows_f
    prop, left = img_propagation(frames * (1 - masks), flows_f, flows_b, masks)
    filled = frames * (1 - masks) + prop * masks
    torch.testing.assert_close(filled, frames)
    assert left.sum() == 0
