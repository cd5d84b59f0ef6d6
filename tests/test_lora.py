"""PCM LoRA loading: a file in the released kohya layout, written here for the tiny unet_main; swapping
it in place when the step count changes, with concurrent calls kept apart."""
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny import build_unet_main
from tiny_checkpoints import write_tiny_weights

from diffueraser import weights
from diffueraser.diffusion.scheduler import load_pcm_lora
from diffueraser.errors import CheckpointError
from diffueraser.settings import Settings

RANK, ALPHA = 4, 2.0
# The layers the PCM training script gives a LoRA (its peft target_modules), matched by name suffix.
PCM_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)


def _pcm_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The SD1.5 (spatial) layers a PCM LoRA covers; the motion modules were not in the trained UNet."""
    return {
        name: m
        for name, m in unet.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
        and "motion_modules" not in name
        and any(name == t or name.endswith("." + t) for t in PCM_TARGETS)
    }


def _kohya_lora(layers: dict[str, torch.nn.Module], seed: int = 0) -> dict[str, torch.Tensor]:
    """`lora_unet_<path with _>.{lora_down.weight, lora_up.weight, alpha}`, as the PCM script writes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in layers.items():
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(m, torch.nn.Conv2d):
            down = torch.randn(RANK, m.in_channels, *m.kernel_size, generator=g) * 0.1
            up = torch.randn(m.out_channels, RANK, 1, 1, generator=g) * 0.1
        else:
            down = torch.randn(RANK, m.in_features, generator=g) * 0.1
            up = torch.randn(m.out_features, RANK, generator=g) * 0.1
        out[f"{key}.lora_down.weight"], out[f"{key}.lora_up.weight"] = down, up
        out[f"{key}.alpha"] = torch.tensor(ALPHA)
    return out


def _delta(lora: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """W + (alpha / rank) · B · A, computed by hand."""
    key = "lora_unet_" + name.replace(".", "_")
    down, up = lora[f"{key}.lora_down.weight"], lora[f"{key}.lora_up.weight"]
    scale = float(lora[f"{key}.alpha"]) / RANK
    if down.dim() == 4:
        return scale * torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
    return scale * up @ down


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def unet_and_file(tmp_path_factory):
    unet = build_unet_main()
    layers = _pcm_layers(unet)
    lora = _kohya_lora(layers)
    path = tmp_path_factory.mktemp("pcm") / "pcm_sd15_smallcfg_2step_converted.safetensors"
    save_file(lora, str(path))
    return unet, layers, lora, path


def test_pcm_lora_is_fused_into_every_layer_it_names(unet_and_file):
    unet, layers, lora, path = unet_and_file
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    kinds = {type(m).__name__ for m in layers.values()}
    assert len(layers) > 100 and kinds == {"Linear", "Conv2d"}

    patched = load_pcm_lora(unet, weights.read_pcm_lora(path))

    assert set(patched) == set(layers) and len(patched) == sum(k.endswith("lora_down.weight") for k in lora)
    after = unet.state_dict()
    assert list(after) == list(before), "the adapter must be gone after fusing: same keys as before"
    changed = {f"{name}.weight" for name in layers}
    for key, value in after.items():
        if key in changed:
            expected = before[key] + _delta(lora, key[: -len(".weight")])
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, before[key]), f"{key} changed though the LoRA does not name it"
    assert not any("lora" in name for name, _ in unet.named_modules())


def test_lora_naming_a_layer_unet_main_lacks_is_refused(tmp_path):
    unet = build_unet_main()
    lora = _kohya_lora(dict(list(_pcm_layers(unet).items())[:3]))
    lora["lora_unet_down_blocks_0_attentions_0_nonexistent_layer.lora_down.weight"] = torch.zeros(RANK, 32)
    lora["lora_unet_down_blocks_0_attentions_0_nonexistent_layer.lora_up.weight"] = torch.zeros(32, RANK)
    path = tmp_path / "bad.safetensors"
    save_file(lora, str(path))
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    with pytest.raises(CheckpointError, match="4 layers but only 3 match unet_main"):
        load_pcm_lora(unet, weights.read_pcm_lora(path))
    after = unet.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_lora_of_the_wrong_width_is_refused(tmp_path):
    unet = build_unet_main()
    name = next(iter(_pcm_layers(unet)))
    lora = {
        f"lora_unet_{name.replace('.', '_')}.lora_down.weight": torch.zeros(RANK, 7, 3, 3),
        f"lora_unet_{name.replace('.', '_')}.lora_up.weight": torch.zeros(5, RANK, 1, 1),
    }
    with pytest.raises(CheckpointError, match="cannot apply the PCM LoRA to unet_main"):
        load_pcm_lora(unet, lora)


def test_text_encoder_lora_is_refused():
    lora = {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(RANK, 32)}
    with pytest.raises(CheckpointError, match="text-encoder"):
        load_pcm_lora(build_unet_main(), lora)


def test_unreadable_lora_file_names_the_file(tmp_path):
    path = tmp_path / "pcm_sd15_smallcfg_2step_converted.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read the PCM LoRA file .*pcm_sd15_smallcfg_2step"):
        weights.read_pcm_lora(path)


# ---- swapping the LoRA of a loaded Diffuser -------------------------------------------------------

DIFFUSION_PARTS = ["denoiser", "text", "vae", "pcm"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return write_tiny_weights(tmp_path_factory.mktemp("weights"), "released", DIFFUSION_PARTS)


def _paths(folder, steps=2):
    return weights.resolve(DIFFUSION_PARTS, folder, local_files_only=True, steps=steps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swapping_the_lora_in_place_gives_the_weights_of_a_fresh_load(tiny_weights, monkeypatch, dtype):
    paths = _paths(tiny_weights)
    diffuser = weights.load_diffuser(paths, "cpu", dtype, tiny_weights, local_files_only=True)
    fresh = {}
    for steps in (2, 4, 16):
        unet = weights.load_denoiser(paths, "cpu", dtype).unet_main
        load_pcm_lora(unet, weights.read_pcm_lora(weights.pcm_lora_path(steps, tiny_weights, True)))
        fresh[steps] = unet.state_dict()
    unet, base = diffuser.unet, diffuser.base_weights
    read = []

    def recorded(names):
        for name, tensor in base(names):
            read.append(name)
            yield name, tensor

    def no_reload(*args, **kwargs):
        raise AssertionError("a swap must not load a network from disk")

    monkeypatch.setattr(weights.load, "load_strict", no_reload)
    diffuser.base_weights = recorded
    assert diffuser.lora_steps == 2
    for steps in (4, 2, 16, 16, 4):
        read.clear()
        diffuser.use_lora(steps)
        assert diffuser.unet is unet and diffuser.lora_steps == steps
        swapped = unet.state_dict()
        assert list(swapped) == list(fresh[steps])
        assert all(torch.equal(swapped[k], v) for k, v in fresh[steps].items()), steps
        # Only the layers the LoRA patches were read back from the checkpoint (none when nothing changed).
        assert all(name.endswith(".weight") and "motion_modules" not in name for name in read)
        assert len(read) in (0, sum(k.endswith("lora_down.weight") for k in weights.read_pcm_lora(
            weights.pcm_lora_path(steps, tiny_weights, True))))


def _video(frames=3, size=32):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    holes = np.zeros((frames, size, size), dtype=bool)
    holes[:, 8:24, 8:20] = True
    return video, holes


def test_two_threads_with_different_steps_each_get_the_result_they_get_alone(tiny_weights):
    diffuser = weights.load_diffuser(_paths(tiny_weights), "cpu", torch.float32, tiny_weights, local_files_only=True)
    video, holes = _video()
    settings = {steps: Settings(steps=steps, device="cpu") for steps in (2, 4)}
    alone = {steps: diffuser(video, holes, None, s, seed=5) for steps, s in settings.items()}
    assert not np.array_equal(alone[2], alone[4])

    def slow(progress):  # each report lets the other thread run while this one is denoising
        time.sleep(0.002)

    results, errors = {}, []

    def run(steps, i):
        try:
            results[steps, i] = diffuser(video, holes, None, settings[steps], seed=5, progress=slow)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(steps, i)) for i in range(2) for steps in (4, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    for (steps, _), frames in results.items():
        assert np.array_equal(frames, alone[steps]), steps
