"""Full SD1.5-size BrushNet + unet_main against the released code (`brushnet_unet_full_small_input.npz`).

Slow (about 6 GB and a minute or more of CPU on 2 cores: most of it drawing 2.2e9 pseudo-weights): the models are
built one after the other, each freed before the next. Checks both unet_main outputs and the recorded
statistics (shape, mean, std, first 16 values) of every BrushNet residual.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from reference import assert_close_rel, load_json, load_npz
from tiny import build_brushnet, build_unet_main

pytestmark = pytest.mark.slow

REL = 1e-5
FIXTURE, _ = load_npz("brushnet_unet_full_small_input")
RESIDUALS = (
    [f"brushnet_down_{i:02d}" for i in range(12)] + ["brushnet_mid"] + [f"brushnet_up_{i:02d}" for i in range(15)]
)
FIRST = 16


@pytest.fixture(scope="module")
def results() -> dict[str, np.ndarray]:
    a = FIXTURE
    sample, timestep = torch.from_numpy(a["latents"]), torch.from_numpy(a["timestep"])
    text, frames = torch.from_numpy(a["encoder_hidden_states"]), int(a["num_frames"])
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        brushnet = build_brushnet(config=load_json("configs/brushnet_config.json"))
        res = brushnet(
            sample, timestep, text.repeat(frames, 1, 1), torch.from_numpy(a["brushnet_cond"]),
            conditioning_scale=float(a["conditioning_scale"]),
        )
        del brushnet
        gc.collect()
        residuals = res.down_block_res_samples + (res.mid_block_res_sample,) + res.up_block_res_samples
        for name, t in zip(RESIDUALS, residuals):
            values = t.double()
            out[f"{name}_shape"] = np.array(t.shape)
            out[f"{name}_mean"] = values.mean().numpy()
            out[f"{name}_std"] = values.std(correction=0).numpy()  # the fixture's std is numpy's (population)
            out[f"{name}_first16"] = t.flatten()[:FIRST].numpy()

        unet = build_unet_main(config=load_json("configs/unet_main_config.json"))
        out["unet_out"] = unet(
            sample, timestep, text, num_frames=frames,
            down_block_add_samples=res.down_block_res_samples,
            mid_block_add_sample=res.mid_block_res_sample,
            up_block_add_samples=res.up_block_res_samples,
        ).sample.numpy()
        out["unet_out_no_brushnet"] = unet(sample, timestep, text, num_frames=frames).sample.numpy()
        del unet
        gc.collect()
    return out


@pytest.mark.parametrize("name", RESIDUALS)
def test_full_size_brushnet_residual_statistics_match_released(results, name):
    assert tuple(results[f"{name}_shape"]) == tuple(FIXTURE[f"{name}_shape"])
    std = float(FIXTURE[f"{name}_std"])
    assert abs(float(results[f"{name}_mean"]) - float(FIXTURE[f"{name}_mean"])) <= REL * std, f"{name} mean"
    assert abs(float(results[f"{name}_std"]) - std) <= REL * std, f"{name} std"
    assert_close_rel(results[f"{name}_first16"], FIXTURE[f"{name}_first16"], REL, f"{name} first16")


@pytest.mark.parametrize("name", ["unet_out", "unet_out_no_brushnet"])
def test_full_size_unet_main_output_matches_released(results, name):
    assert_close_rel(results[name], FIXTURE[name], REL, name)
