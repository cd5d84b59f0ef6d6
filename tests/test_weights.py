"""Checkpoint resolution, fetching and loading (diffueraser/weights/) on tiny checkpoints in the released formats."""
from __future__ import annotations

import ast
import json
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

import tiny_checkpoints
from diffueraser import weights
from diffueraser.errors import CheckpointError, DeviceError, InputError
from pseudo_weights import pseudo_tensor
from reference import load_json
from tiny_checkpoints import hub_snapshot, write_tiny_weights

CHEAP = ["text", "scheduler", "vae", "pcm"]  # small, and no need of diffueraser.models
ALL = list(weights.PARTS)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No weights anywhere, an empty Hugging Face home, offline, and a fresh working directory."""
    for name in ("DIFFUERASER_WEIGHTS", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to download."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download: {args}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _under(path: Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(root).resolve())


# ---------------------------------------------------------------------------------------------
# Each layout resolves


def test_released_weights_folder_in_working_directory_resolves_every_part(isolated, no_network):
    write_tiny_weights(Path("weights"), "released", ALL)
    paths = weights.resolve(ALL, steps=4)
    root = Path("weights").resolve()
    assert (paths.brushnet, paths.unet_main) == (root / "diffuEraser/brushnet", root / "diffuEraser/unet_main")
    assert paths.text_encoder == root / "stable-diffusion-v1-5/text_encoder"
    assert paths.tokenizer == root / "stable-diffusion-v1-5/tokenizer"
    assert paths.scheduler == root / "stable-diffusion-v1-5/scheduler"
    assert paths.vae == root / "sd-vae-ft-mse"
    assert paths.pcm_lora == root / "PCM_Weights/sd15/pcm_sd15_smallcfg_4step_converted.safetensors"
    assert paths.pcm_steps == 4
    assert (paths.raft, paths.flow_completion, paths.propainter) == tuple(
        root / "propainter" / n for n in ("raft-things.pth", "recurrent_flow_completion.pth", "ProPainter.pth"))
    assert weights.resolve(["vae"]).brushnet is None  # not asked for


def test_environment_variable_names_a_weights_folder(isolated, monkeypatch, no_network):
    folder = write_tiny_weights(isolated / "env_weights", "released", CHEAP)
    monkeypatch.setenv("DIFFUERASER_WEIGHTS", str(folder))
    paths = weights.resolve(CHEAP)
    assert all(_under(p, folder) for p in (paths.text_encoder, paths.tokenizer, paths.scheduler, paths.vae, paths.pcm_lora))


def test_explicit_weights_dir_resolves(isolated, no_network):
    folder = write_tiny_weights(isolated / "mine", "released", ["vae", "pcm"])
    paths = weights.resolve(["vae", "pcm"], weights_dir=folder, steps=16)
    assert paths.vae == folder / "sd-vae-ft-mse"
    assert paths.pcm_lora.name == "pcm_sd15_smallcfg_16step_converted.safetensors" and _under(paths.pcm_lora, folder)


def test_hugging_face_cache_layout_resolves_offline(isolated, monkeypatch, no_network):
    home = write_tiny_weights(isolated / "hf_home", "hub", ALL)
    from huggingface_hub.file_download import hf_hub_download  # the real one: no_network patches the package's

    # The simulated cache is the hub's own structure: huggingface_hub itself finds files in it.
    found = hf_hub_download("stabilityai/sd-vae-ft-mse", "config.json", cache_dir=home / "hub", local_files_only=True)
    assert Path(found) == hub_snapshot(home, "stabilityai/sd-vae-ft-mse") / "config.json"

    paths = weights.resolve(ALL)
    diffueraser = hub_snapshot(home, "lixiaowen/diffuEraser")
    assert (paths.brushnet, paths.unet_main) == (diffueraser / "brushnet", diffueraser / "unet_main")
    sd15 = hub_snapshot(home, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert (paths.text_encoder, paths.tokenizer, paths.scheduler) == (sd15 / "text_encoder", sd15 / "tokenizer", sd15 / "scheduler")
    assert paths.vae == hub_snapshot(home, "stabilityai/sd-vae-ft-mse")
    assert paths.pcm_lora == hub_snapshot(home, "wangfuyun/PCM_Weights") / "sd15/pcm_sd15_smallcfg_2step_converted.safetensors"
    assert paths.raft == home / "diffueraser/propainter/raft-things.pth"

    # HF_HUB_CACHE alone (no HF_HOME) is honoured too.
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    assert weights.resolve(["vae"]).vae == hub_snapshot(home, "stabilityai/sd-vae-ft-mse")


def test_precedence_is_argument_then_environment_then_working_directory_then_cache(isolated, monkeypatch, no_network):
    explicit = write_tiny_weights(isolated / "explicit", "released", ["scheduler"])
    env = write_tiny_weights(isolated / "env", "released", ["scheduler"])
    local = write_tiny_weights(Path("weights"), "released", ["scheduler"]).resolve()
    home = write_tiny_weights(isolated / "hf_home", "hub", ["scheduler"])
    monkeypatch.setenv("DIFFUERASER_WEIGHTS", str(env))

    assert _under(weights.resolve(["scheduler"], weights_dir=explicit).scheduler, explicit)
    assert _under(weights.resolve(["scheduler"]).scheduler, env)
    monkeypatch.delenv("DIFFUERASER_WEIGHTS")
    assert _under(weights.resolve(["scheduler"]).scheduler, local)
    shutil.rmtree(local)
    assert _under(weights.resolve(["scheduler"]).scheduler, home / "hub")
    # A part absent from a higher folder is taken from the next one.
    (isolated / "empty").mkdir()
    assert _under(weights.resolve(["scheduler"], weights_dir=isolated / "empty").scheduler, home / "hub")


# ---------------------------------------------------------------------------------------------
# Missing and partial checkpoints


def test_offline_with_nothing_cached_names_every_missing_part_in_one_message(no_network):
    with pytest.raises(CheckpointError) as info:
        weights.resolve(weights.PARTS)
    message = str(info.value)
    for expected in (
        "DiffuEraser BrushNet", "DiffuEraser unet_main", "lixiaowen/diffuEraser", "folder brushnet/", "folder unet_main/",
        "CLIP text encoder", "CLIP tokenizer", "scheduler config", "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "stabilityai/sd-vae-ft-mse", "wangfuyun/PCM_Weights", "sd15/pcm_sd15_smallcfg_2step_converted.safetensors",
        "https://github.com/sczhou/ProPainter/releases/download/v0.1.0/raft-things.pth",
        "https://github.com/sczhou/ProPainter/releases/download/v0.1.0/recurrent_flow_completion.pth",
        "https://github.com/sczhou/ProPainter/releases/download/v0.1.0/ProPainter.pth",
        "weights/diffuEraser/brushnet/", "weights/propainter/", "DIFFUERASER_WEIGHTS", "offline",
    ):
        assert expected in message, expected
    assert message.count("\n  - ") == 10  # one line per checkpoint
    assert "Traceback" not in message
    # The same lines as data, for the app; nothing was tried, so no download error.
    assert len(info.value.missing) == 10 and all(f"  - {line}" in message for line in info.value.missing)
    assert info.value.download_error is None and info.value.exit_code == 3


def test_local_files_only_argument_prevents_downloads_even_when_online(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(CheckpointError, match="ProPainter RAFT"):
        weights.resolve(["propainter"], local_files_only=True)


def test_missing_lists_what_is_absent_without_downloading(isolated, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online, yet missing() must not download
    write_tiny_weights(Path("weights"), "released", CHEAP)
    assert weights.missing(CHEAP) == []
    lines = weights.missing(weights.PARTS, steps=8)
    assert len(lines) == 5
    assert [line.split(" (")[0] for line in lines] == [
        "DiffuEraser BrushNet", "DiffuEraser unet_main", "ProPainter RAFT optical flow",
        "ProPainter recurrent flow completion", "ProPainter inpainting generator"]
    assert "lixiaowen/diffuEraser" in lines[0] and "releases/download/v0.1.0/ProPainter.pth" in lines[4]
    assert weights.missing(["pcm"], steps=8) == []


def test_folder_with_config_but_no_weights_is_reported_as_partial(isolated, no_network):
    write_tiny_weights(Path("weights"), "released", ["vae"])
    (Path("weights") / "sd-vae-ft-mse/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        weights.resolve(["vae"])
    assert "partial checkpoint" in str(info.value)
    assert "no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin" in str(info.value)
    assert len(weights.missing(["vae"])) == 1 and "partial" in weights.missing(["vae"])[0]


def test_partial_folder_is_not_hidden_by_a_complete_copy_in_the_cache(isolated, no_network):
    write_tiny_weights(isolated / "hf_home", "hub", ["text"])
    write_tiny_weights(Path("weights"), "released", ["text"])
    (Path("weights") / "stable-diffusion-v1-5/tokenizer/merges.txt").unlink()
    with pytest.raises(CheckpointError, match=r"CLIP tokenizer \(text\): partial checkpoint .*no merges.txt"):
        weights.resolve(["text"])


def test_truncated_safetensors_is_reported_with_its_size(isolated, no_network):
    write_tiny_weights(Path("weights"), "released", ["text"])
    file = Path("weights") / "stable-diffusion-v1-5/text_encoder/model.safetensors"
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[: size // 2])
    with pytest.raises(CheckpointError) as info:
        weights.resolve(["text"])
    assert f"model.safetensors is truncated or corrupt ({size // 2} bytes, its header describes {size})" in str(info.value)


def test_truncated_torch_file_and_broken_config_are_reported(isolated, no_network):
    write_tiny_weights(Path("weights"), "released", ["propainter", "scheduler"])
    pth = Path("weights/propainter/recurrent_flow_completion.pth")
    pth.write_bytes(pth.read_bytes()[:-1000])
    config = Path("weights/stable-diffusion-v1-5/scheduler/scheduler_config.json")
    config.write_text(config.read_text()[:20])
    with pytest.raises(CheckpointError) as info:
        weights.resolve(["propainter", "scheduler"])
    message = str(info.value)
    assert "recurrent_flow_completion.pth is truncated or corrupt" in message
    assert "scheduler_config.json is truncated or corrupt (not valid JSON)" in message
    assert "raft-things.pth" not in message and "ProPainter.pth" not in message


def test_sharded_checkpoint_resolves_and_a_missing_shard_is_reported(isolated, no_network):
    from diffusers import AutoencoderKL

    folder = Path("weights/sd-vae-ft-mse")
    vae = AutoencoderKL(**tiny_checkpoints.tiny.vae_config())
    vae.save_pretrained(folder, safe_serialization=True, max_shard_size="100KB")
    index = json.loads((folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert weights.resolve(["vae"]).vae == folder.resolve()
    weights.load_vae(weights.resolve(["vae"]))
    (folder / shards[-1]).unlink()
    with pytest.raises(CheckpointError, match=f"no shard {shards[-1]}"):
        weights.resolve(["vae"])


def test_weights_dir_that_does_not_exist_is_named(isolated, monkeypatch, no_network):
    with pytest.raises(CheckpointError, match=r"weights_dir .*nowhere is not a folder"):
        weights.resolve(["scheduler"], weights_dir=isolated / "nowhere")
    monkeypatch.setenv("DIFFUERASER_WEIGHTS", str(isolated / "typo"))
    assert any("$DIFFUERASER_WEIGHTS" in line and "typo is not a folder" in line for line in weights.missing(["scheduler"]))


def test_unknown_part_and_unreleased_step_count_are_refused():
    with pytest.raises(ValueError, match="unknown checkpoint part"):
        weights.resolve(["unet"])
    with pytest.raises(InputError, match="2, 4, 8, 16"):
        weights.pcm_lora_path(3)


# ---------------------------------------------------------------------------------------------
# Downloads (simulated: nothing may reach the internet here)


def test_hub_downloads_only_the_needed_files_preferring_safetensors(isolated, monkeypatch):
    """Online and cache empty: the files asked of huggingface_hub are exactly those the parts need."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    published = write_tiny_weights(isolated / "published", "released", CHEAP)
    # This VAE repository publishes only a .bin (as older repos do).
    vae_dir = published / "sd-vae-ft-mse"
    from diffusers import AutoencoderKL

    AutoencoderKL.from_pretrained(vae_dir).save_pretrained(vae_dir, safe_serialization=False)
    (vae_dir / "diffusion_pytorch_model.safetensors").unlink()
    local_of = {"stable-diffusion-v1-5/stable-diffusion-v1-5": "stable-diffusion-v1-5",
                "stabilityai/sd-vae-ft-mse": "sd-vae-ft-mse", "wangfuyun/PCM_Weights": "PCM_Weights"}
    asked = []

    def fake_download(repo_id, filename, *, cache_dir, **kwargs):
        asked.append(f"{repo_id}:{filename}")
        source = published / local_of[repo_id] / filename
        if not source.is_file():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        dest = hub_snapshot(Path(cache_dir).parent, repo_id) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        return str(dest)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    paths = weights.resolve(CHEAP)
    sd = "stable-diffusion-v1-5/stable-diffusion-v1-5:"
    assert asked == [
        sd + "text_encoder/config.json", sd + "text_encoder/model.safetensors",
        sd + "tokenizer/vocab.json", sd + "tokenizer/merges.txt", sd + "tokenizer/tokenizer_config.json",
        sd + "tokenizer/special_tokens_map.json", sd + "scheduler/scheduler_config.json",
        "stabilityai/sd-vae-ft-mse:config.json", "stabilityai/sd-vae-ft-mse:diffusion_pytorch_model.safetensors",
        "stabilityai/sd-vae-ft-mse:diffusion_pytorch_model.bin",
        "wangfuyun/PCM_Weights:sd15/pcm_sd15_smallcfg_2step_converted.safetensors",
    ]
    assert (paths.vae / "diffusion_pytorch_model.bin").is_file()
    weights.load_vae(paths)
    # Once cached, nothing more is asked.
    asked.clear()
    weights.resolve(CHEAP)
    assert asked == []


def test_hub_unreachable_gives_the_message(isolated, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("connection error")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(CheckpointError, match=r"VAE sd-vae-ft-mse \(vae\): not found \(cannot reach the Hugging Face Hub\)") as info:
        weights.resolve(["vae"])
    assert info.value.download_error == "cannot reach the Hugging Face Hub"
    assert [line.split(" (")[0] for line in info.value.missing] == ["VAE sd-vae-ft-mse"]


def _published_propainter(name: str) -> bytes:
    return (tiny_checkpoints._built("propainter") / "propainter" / name).read_bytes()


def test_propainter_download_goes_through_torch_hub_and_appears_only_when_complete(isolated, monkeypatch):
    """Online: each release file is fetched by torch.hub into a temporary file, then renamed into the cache."""
    cache = weights.propainter_cache_dir()
    fetched = []

    def fake_download(url, dst, *args, **kwargs):
        name = url.rsplit("/", 1)[1]
        final = cache / name
        assert Path(dst) != final and Path(dst).parent == cache
        assert not final.exists()  # nothing at the final name while the download runs
        fetched.append(url)
        Path(dst).write_bytes(_published_propainter(name))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    paths = weights.propainter_paths()
    assert fetched == [f"https://github.com/sczhou/ProPainter/releases/download/v0.1.0/{n}"
                       for n in ("raft-things.pth", "recurrent_flow_completion.pth", "ProPainter.pth")]
    assert list(paths) == [cache / "raft-things.pth", cache / "recurrent_flow_completion.pth", cache / "ProPainter.pth"]
    assert all(p.read_bytes() == _published_propainter(p.name) for p in paths)
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == sorted(p.name for p in paths)
    fetched.clear()
    weights.propainter_paths()  # cached now: nothing fetched again
    assert fetched == []


def test_interrupted_or_truncated_propainter_download_leaves_nothing_behind(isolated, monkeypatch):
    cache = weights.propainter_cache_dir()

    def interrupted(url, dst, *args, **kwargs):
        Path(dst).write_bytes(b"PK partial")
        raise urllib.error.URLError("connection reset")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "download_url_to_file", interrupted)
    got = weights.fetch_url("https://example.invalid/ProPainter.pth", cache / "ProPainter.pth")
    assert got.path is None and got.error == "download failed: URLError: <urlopen error connection reset>"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []

    def truncated(url, dst, *args, **kwargs):  # the server closed early without an error
        data = _published_propainter("ProPainter.pth")
        Path(dst).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(torch.hub, "download_url_to_file", truncated)
    with pytest.raises(CheckpointError) as info:
        weights.resolve(["propainter"])
    assert "download failed: the downloaded file is unusable" in str(info.value)
    assert "ProPainter.pth is truncated or corrupt" in str(info.value)
    assert info.value.download_error.startswith("download failed: the downloaded file is unusable")
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_propainter_download_failure_names_the_url(isolated, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError) as info:
        weights.propainter_paths()
    assert info.value.args[0].count("download failed") == 3
    assert "releases/download/v0.1.0/ProPainter.pth" in str(info.value)
    assert info.value.download_error == "download failed: URLError: <urlopen error no route to host>"
    assert len(info.value.missing) == 3


# ---------------------------------------------------------------------------------------------
# Loaders build working objects


def test_tiny_text_encoder_encodes_the_empty_prompt(isolated):
    write_tiny_weights(Path("weights"), "released", ["text"])
    tokenizer, model = weights.load_text_encoder(weights.resolve(["text"]), "cpu", torch.float32)
    ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    assert ids[0].tolist() == [998] + [999] * 76
    with torch.no_grad():
        embeds = model(ids)[0]
    assert embeds.shape == (1, 77, 32) and torch.isfinite(embeds).all()
    assert tokenizer.convert_ids_to_tokens(tokenizer("a cat").input_ids) == ["<|startoftext|>", "a</w>", "c", "at</w>", "<|endoftext|>"]


def test_vae_loads_in_the_requested_dtype_and_round_trips_shapes(isolated):
    write_tiny_weights(Path("weights"), "released", ["vae"])
    vae = weights.load_vae(weights.resolve(["vae"]), "cpu", torch.bfloat16)
    assert vae.dtype == torch.bfloat16 and not vae.training
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 64, 48, dtype=torch.bfloat16)).latent_dist.mode()
        assert latents.shape == (1, 4, 8, 6)
        assert vae.decode(latents).sample.shape == (1, 3, 64, 48)


def test_scheduler_config_is_the_sd15_one(isolated):
    write_tiny_weights(Path("weights"), "released", ["scheduler"])
    config = weights.load_scheduler_config(weights.resolve(["scheduler"]))
    expected = load_json("parity/schedule.json")["prior_injection_add_noise_t0"]["sd15_scheduler_config"]
    assert config == expected and config["beta_schedule"] == "scaled_linear"


def test_propainter_files_have_the_released_keys_and_load_strictly_into_the_prior(isolated):
    from diffueraser.prior.propainter import InpaintGenerator, ProPainterPrior

    write_tiny_weights(Path("weights"), "released", ["propainter"])
    paths = weights.propainter_paths()
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    assert all(k.startswith("module.") for k in states[0])  # as released (saved from DataParallel)
    states[0] = {k.removeprefix("module."): v for k, v in states[0].items()}
    for state, keys_file in zip(states, ("keys/raft_things.json", "keys/recurrent_flow_completion.json",
                                         "keys/propainter_inpaint_generator.json")):
        info = load_json(keys_file)
        assert {k: list(v.shape) for k, v in state.items()} == info["keys"] and list(state) == list(info["keys"])
    for alias, target in load_json("keys/raft_things.json")["aliases"].items():
        assert torch.equal(states[0][alias], states[0][target]), alias
    first = "encoder.layers.0.weight"
    assert torch.equal(states[2][first], pseudo_tensor(first, [64, 5, 3, 3], tiny_checkpoints.tiny.NS_PROPAINTER))
    # The index tables written are those the generator computes itself.
    computed = InpaintGenerator().state_dict()
    for name in load_json("keys/propainter_inpaint_generator.json")["non_float32_dtypes"]:
        assert torch.equal(states[2][name], computed[name]), name
    prior = weights.load_propainter(weights.resolve(["propainter"]))  # strict loading of all three files
    assert isinstance(prior, ProPainterPrior)


def test_corrupt_checkpoint_that_passes_the_cheap_checks_fails_loading_with_its_path(isolated):
    write_tiny_weights(Path("weights"), "released", ["vae"])
    config = Path("weights/sd-vae-ft-mse/config.json")
    config.write_text(json.dumps({**json.loads(config.read_text()), "latent_channels": 8}))
    with pytest.raises(CheckpointError, match=r"cannot load the VAE from .*sd-vae-ft-mse"):
        weights.load_vae(weights.resolve(["vae"]))


def test_denoiser_loads_the_released_folders_with_every_tensor(isolated):
    import tiny

    write_tiny_weights(isolated / "hf_home", "hub", ["denoiser"])
    brushnet, unet_main = weights.load_denoiser(weights.resolve(["denoiser"]), "cpu", torch.float32)
    assert type(brushnet).__name__ == "BrushNetModel" and type(unet_main).__name__ == "UNetMotionModel"
    assert not brushnet.training and not unet_main.training
    for loaded, built in ((brushnet, tiny.build_brushnet()), (unet_main, tiny.build_unet_main())):
        expected = built.state_dict()
        assert all(torch.equal(t, expected[k]) for k, t in loaded.state_dict().items())
    half = weights.load_denoiser(weights.resolve(["denoiser"]), "cpu", torch.float16)
    assert half.brushnet.dtype == half.unet_main.dtype == torch.float16


@pytest.mark.parametrize("layout", ["safetensors", "bin", "sharded"])
def test_tensor_source_reads_the_named_tensors_of_every_weights_layout(isolated, layout):
    import tiny

    unet = tiny.build_unet_main()
    folder = isolated / "unet_main"
    if layout == "sharded":
        unet.save_pretrained(folder, safe_serialization=True, max_shard_size="200KB")
        assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    else:
        unet.save_pretrained(folder, safe_serialization=layout == "safetensors")
    expected = unet.state_dict()
    names = [k for k in expected if k.endswith("proj_in.weight") or k.startswith("conv_out")]
    read = dict(weights.tensor_source(folder, "unet_main")(names))
    assert sorted(read) == sorted(names) and all(torch.equal(read[k], expected[k]) for k in names)
    with pytest.raises(CheckpointError, match=r"cannot read the unet_main weights from .*unet_main: .*no.such.weight"):
        list(weights.tensor_source(folder, "unet_main")(["no.such.weight"]))


def test_tiny_pcm_lora_files_are_accepted_by_the_pcm_loader(isolated):
    import tiny
    from diffueraser.diffusion.scheduler import load_pcm_lora
    from safetensors.torch import load_file

    write_tiny_weights(Path("weights"), "released", ["pcm"])
    unet = tiny.build_unet_main()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    path = weights.pcm_lora_path(8)
    layers = sum(k.endswith("lora_down.weight") for k in load_file(path))
    assert len(load_pcm_lora(unet, weights.read_pcm_lora(path))) == layers > 0
    changed = [k for k, v in unet.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == layers and not any("motion_modules" in k for k in changed)


# ---------------------------------------------------------------------------------------------
# Device failures are not checkpoint failures


@pytest.fixture
def device_fails(monkeypatch):
    """Moving a module to "cuda" raises what the device raised (set `error`); CPU moves work as usual."""
    original = torch.nn.Module.to
    state = {"error": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")}

    def to(self, *args, **kwargs):
        if any("cuda" in str(a) for a in (*args, *kwargs.values())):
            raise state["error"]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return state


def test_out_of_memory_while_moving_to_the_gpu_is_a_device_error_not_a_checkpoint_error(isolated, device_fails):
    write_tiny_weights(Path("weights"), "released", ["vae", "denoiser", "propainter"])
    with pytest.raises(DeviceError) as info:
        weights.load_vae(weights.resolve(["vae"]), "cuda:0")
    message = str(info.value)
    assert message.startswith("Not enough GPU memory to load the VAE on cuda:0 (CUDA out of memory.")
    assert "--device cpu" in message and "delete" not in message and info.value.exit_code == 4
    assert not isinstance(info.value, CheckpointError)
    with pytest.raises(DeviceError, match="Not enough GPU memory to load BrushNet on cuda:0"):
        weights.load_denoiser(weights.resolve(["denoiser"]), "cuda:0")
    with pytest.raises(DeviceError, match="Not enough GPU memory to load ProPainter on cuda:0"):
        weights.load_propainter(weights.resolve(["propainter"]), "cuda:0")


def test_driver_error_while_moving_to_the_gpu_is_a_device_error(isolated, device_fails):
    write_tiny_weights(Path("weights"), "released", ["vae"])
    device_fails["error"] = RuntimeError("CUDA error: no kernel image is available for execution on the device")
    with pytest.raises(DeviceError, match=r"Cannot put the VAE on cuda \(RuntimeError: CUDA error: no kernel image"):
        weights.load_vae(weights.resolve(["vae"]), "cuda")


# ---------------------------------------------------------------------------------------------
# Only the weights package reads checkpoints

PACKAGE = Path(__file__).resolve().parents[1] / "diffueraser"
FILE_READERS = {"open", "safe_open", "load_file", "read_text", "read_bytes", "from_pretrained", "load_config"}


def _file_access(path: Path) -> list[str]:
    """Imports of the weights package and calls that read files, in one module: 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [a.name for a in node.names]
            if (module.split(".")[-1] == "weights" or module.startswith("weights") or "weights" in names
                    or module.startswith("diffueraser.weights")):
                found.append(f"{node.lineno}: imports {'.' * node.level}{module} {names}")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("diffueraser.weights")]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if name in FILE_READERS or (name == "load" and owner in ("torch", "np", "numpy", "json", "pickle")):
                found.append(f"{node.lineno}: calls {owner + '.' if owner else ''}{name}")
    return found


def test_models_diffusion_and_priors_never_read_files_or_import_the_weights_package():
    modules = [p for folder in ("models", "diffusion", "prior") for p in sorted((PACKAGE / folder).rglob("*.py"))]
    assert len(modules) > 10
    offending = {str(p.relative_to(PACKAGE)): hits for p in modules if (hits := _file_access(p))}
    assert offending == {}


def test_the_file_access_scan_sees_what_it_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..weights import resolve\nimport torch\nx = torch.load('a')\n"
                     "from safetensors import safe_open\nsafe_open('b', 'pt')\nopen('c')\nPath('d').read_text()\n")
    assert [hit.split(": ")[1].split(" ")[0] for hit in _file_access(probe)] == ["imports", "calls", "calls", "calls", "calls"]
