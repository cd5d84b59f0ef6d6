"""Checkpoint compatibility: released key lists at full size, released folder layout, clear errors on bad files.

Folders are read by the weights package's strict loader (`load_strict`); the models only describe themselves.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffueraser.errors import CheckpointError
from diffueraser.models import BrushNetModel, UNetMotionModel
from diffueraser.weights import load_strict
from reference import load_json
from tiny import brushnet_config, build_brushnet, build_unet_main, unet_main_config

SAFETENSORS = "diffusion_pytorch_model.safetensors"
BIN = "diffusion_pytorch_model.bin"
MODELS = {
    "brushnet": (BrushNetModel, build_brushnet, brushnet_config),
    "unet_main": (UNetMotionModel, build_unet_main, unet_main_config),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_full_size_state_dict_equals_released_key_list(name):
    cls = MODELS[name][0]
    released = load_json(f"keys/{name}.json")
    with torch.device("meta"):
        model = cls.from_config(load_json(f"configs/{name}_config.json"))
    ours = {key: list(t.shape) for key, t in model.state_dict().items()}
    assert list(ours.items()) == list(released["keys"].items())
    assert sum(p.numel() for p in model.parameters()) == released["num_parameters"]


def _released_folder(tmp_path: Path, name: str, safe: bool = True) -> Path:
    """A tiny model saved like the released folders: the released config.json (with its extra keys) + weights."""
    _, build, config = MODELS[name]
    folder = tmp_path / name
    build().save_pretrained(folder, safe_serialization=safe)
    (folder / "config.json").write_text(json.dumps({**config(), "a_key_from_a_future_version": 1}))
    return folder


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
@pytest.mark.parametrize("name", list(MODELS))
def test_released_folder_loads_every_tensor_exactly(tmp_path, name, safe):
    cls, build, _ = MODELS[name]
    folder = _released_folder(tmp_path, name, safe)
    assert (folder / (SAFETENSORS if safe else BIN)).exists()
    model = load_strict(cls, folder)
    assert type(model) is cls
    expected = build().state_dict()
    loaded = model.state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / SAFETENSORS)
    edit(tensors)
    save_file(tensors, folder / SAFETENSORS)


@pytest.mark.parametrize("name", list(MODELS))
def test_missing_tensor_is_refused_by_name(tmp_path, name):
    folder = _released_folder(tmp_path, name)
    key = "time_embedding.linear_2.weight"
    _edit_weights(folder, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=rf"missing tensors: {key}"):
        load_strict(MODELS[name][0], folder)


@pytest.mark.parametrize("name", list(MODELS))
def test_misshaped_tensor_is_refused_by_name(tmp_path, name):
    folder = _released_folder(tmp_path, name)
    key = "up_blocks.1.resnets.0.conv1.weight"
    _edit_weights(folder, lambda t: t.__setitem__(key, t[key][:, :-1].contiguous()))
    with pytest.raises(CheckpointError, match=key):
        load_strict(MODELS[name][0], folder)


def test_every_bad_tensor_is_named_at_once(tmp_path):
    """diffusers stops at the first wrong shape and only warns about missing tensors; the error lists both."""
    folder = _released_folder(tmp_path, "brushnet")
    misshaped, missing = "brushnet_up_blocks.3.weight", "conv_in_condition.bias"

    def edit(tensors):
        tensors[misshaped] = torch.zeros(1, 1, 1, 1)
        del tensors[missing]

    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError) as caught:
        load_strict(BrushNetModel, folder)
    message = str(caught.value)
    assert f"missing tensors: {missing}" in message
    assert f"wrong shapes: {misshaped} (file (1, 1, 1, 1), model (64, 64, 1, 1))" in message


def test_unexpected_tensor_is_refused_by_name(tmp_path):
    folder = _released_folder(tmp_path, "unet_main")
    _edit_weights(folder, lambda t: t.__setitem__("controlnet_cond_embedding.conv_in.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: controlnet_cond_embedding\.conv_in\.weight"):
        load_strict(UNetMotionModel, folder)


def test_folder_without_weights_is_a_checkpoint_error(tmp_path):
    folder = _released_folder(tmp_path, "brushnet")
    (folder / SAFETENSORS).unlink()
    with pytest.raises(CheckpointError, match=str(folder)):
        load_strict(BrushNetModel, folder)


def test_config_switch_the_released_model_lacks_is_refused():
    with pytest.raises(CheckpointError, match="class_embed_type"):
        BrushNetModel.from_config({**brushnet_config(), "class_embed_type": "timestep"})


def test_unet_main_config_keeps_what_the_pipeline_reads():
    """The released pipeline reads `time_cond_proj_dim` (reference §4.1); the released extras do not reach __init__."""
    model = UNetMotionModel.from_config(load_json("parity/brushnet_unet_tiny_unet_main_config.json"))
    assert model.config.time_cond_proj_dim is None
    assert "conditioning_channels" not in model.config
