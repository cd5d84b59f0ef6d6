"""BrushNet + unet_main against the released code's tiny fixture (reference README §4, §7).

Every BrushNet residual, every recorded unet_main intermediate and both unet_main outputs must match within
1e-5 x the array's largest magnitude (the reference measured 1.6e-6 between torch versions; a wrong block order
shows up at 1e-2).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from diffusers.models.unets.unet_motion_model import UNetMotionModel as DiffusersUNetMotionModel

import diffueraser.models.unet_motion as unet_motion
from reference import assert_close_rel, load_npz
from tiny import build_brushnet, build_unet_main

REL = 1e-5
FIXTURE, META = load_npz("brushnet_unet_tiny")
NUM_DOWN = sum(k.startswith("brushnet_down_") for k in FIXTURE)
NUM_UP = sum(k.startswith("brushnet_up_") for k in FIXTURE)
DEBUG_KEYS = sorted(k for k in FIXTURE if k.startswith("debug_unet_main_"))
DEBUG_PREFIX = "debug_unet_main_"


def _inputs() -> dict:
    a = FIXTURE
    return dict(
        sample=torch.from_numpy(a["latents"]),
        timestep=torch.from_numpy(a["timestep"]),
        encoder_hidden_states=torch.from_numpy(a["encoder_hidden_states"]),
        brushnet_cond=torch.from_numpy(a["brushnet_cond"]),
        conditioning_scale=float(a["conditioning_scale"]),
        num_frames=int(a["num_frames"]),
    )


def _recording(fn, names, record):
    """Wrap a stage function of unet_motion so its output tensor is stored under the next name."""

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        record[next(names)] = out[0] if isinstance(out, tuple) else out
        return out

    return wrapped


@pytest.fixture(scope="module")
def unet_main():
    return build_unet_main()


@pytest.fixture(scope="module")
def results(unet_main) -> dict[str, np.ndarray]:
    """BrushNet residuals, unet_main intermediates and outputs, named as in the fixture."""
    x = _inputs()
    frames = x["num_frames"]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        residuals = build_brushnet()(
            x["sample"], x["timestep"], x["encoder_hidden_states"].repeat(frames, 1, 1), x["brushnet_cond"],
            conditioning_scale=x["conditioning_scale"],
        )
        out.update({f"brushnet_down_{i:02d}": r for i, r in enumerate(residuals.down_block_res_samples)})
        out["brushnet_mid"] = residuals.mid_block_res_sample
        out.update({f"brushnet_up_{i:02d}": r for i, r in enumerate(residuals.up_block_res_samples)})

        record: dict[str, torch.Tensor] = {}
        handle = unet_main.conv_in.register_forward_hook(lambda _m, _i, o: record.__setitem__("conv_in", o))
        with pytest.MonkeyPatch.context() as mp:
            for attr, names in [
                ("down_block_forward", (f"down_blocks_{i}" for i in itertools.count())),
                ("up_block_forward", (f"up_blocks_{i}" for i in itertools.count())),
                ("_released_mid_block", iter(["mid_block"])),
            ]:
                mp.setattr(unet_motion, attr, _recording(getattr(unet_motion, attr), names, record))
            out["unet_out"] = unet_main(
                x["sample"], x["timestep"], x["encoder_hidden_states"], num_frames=frames,
                down_block_add_samples=residuals.down_block_res_samples,
                mid_block_add_sample=residuals.mid_block_res_sample,
                up_block_add_samples=residuals.up_block_res_samples,
            ).sample
        handle.remove()
        out.update({DEBUG_PREFIX + name: t for name, t in record.items()})
        out["unet_out_no_brushnet"] = unet_main(
            x["sample"], x["timestep"], x["encoder_hidden_states"], num_frames=frames
        ).sample
    return {k: v.numpy() for k, v in out.items()}


def test_fixture_has_released_residual_counts():
    assert (NUM_DOWN, NUM_UP) == (META["num_down_residuals"], META["num_up_residuals"]) == (12, 15)


@pytest.mark.parametrize("name", [f"brushnet_down_{i:02d}" for i in range(NUM_DOWN)] + ["brushnet_mid"]
                         + [f"brushnet_up_{i:02d}" for i in range(NUM_UP)])
def test_brushnet_residual_matches_released_tiny_fixture(results, name):
    assert_close_rel(results[name], FIXTURE[name], REL, name)


@pytest.mark.parametrize("name", DEBUG_KEYS)
def test_unet_main_intermediate_matches_released_tiny_fixture(results, name):
    assert_close_rel(results[name], FIXTURE[name], REL, name)


def test_every_released_intermediate_is_recorded(results):
    assert sorted(k for k in results if k.startswith(DEBUG_PREFIX)) == DEBUG_KEYS


@pytest.mark.parametrize("name", ["unet_out", "unet_out_no_brushnet"])
def test_unet_main_output_matches_released_tiny_fixture(results, name):
    assert_close_rel(results[name], FIXTURE[name], REL, name)


def test_motion_position_table_is_the_released_sinusoid(unet_main):
    pe = unet_main.down_blocks[0].motion_modules[0].transformer_blocks[0].pos_embed.pe
    assert_close_rel(pe.numpy(), FIXTURE["pe_table_dim32"], 0.0, "pe")


def test_diffusers_builtin_forward_differs_from_released_only_by_its_mid_block(unet_main, results):
    """Same weights through diffusers' own forward give the fixture's built-in output, not the released one."""
    x = _inputs()
    frames = x["num_frames"]
    clip = x["sample"].unsqueeze(0).permute(0, 2, 1, 3, 4)  # [1, C, F, h, w], diffusers' layout
    text = x["encoder_hidden_states"].repeat(frames, 1, 1)  # diffusers 0.42.1 no longer repeats it per frame
    with torch.no_grad():
        builtin = DiffusersUNetMotionModel.forward(unet_main, clip, x["timestep"], text).sample
    builtin = builtin.permute(0, 2, 1, 3, 4)[0].numpy()
    assert_close_rel(builtin, FIXTURE["diffusers_builtin_unet_out_no_brushnet"], REL, "builtin")
    gap = np.abs(results["unet_out_no_brushnet"] - builtin).max() / np.abs(builtin).max()
    assert gap > 1e-3, f"released mid block should differ from diffusers' (relative gap {gap:.1e})"
