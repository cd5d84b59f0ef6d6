"""Writes complete tiny checkpoint trees in the released formats, so loading is tested without downloads.

Layouts (written from the published descriptions, independently of diffueraser/weights/, so the
tests check that package against the formats rather than against itself):
- "released": the `weights/` folder of lixiaowen-xw/DiffuEraser (diffuEraser/{brushnet,unet_main},
  stable-diffusion-v1-5/{text_encoder,tokenizer,scheduler}, sd-vae-ft-mse, PCM_Weights/sd15,
  propainter/*.pth); `root` is that folder.
- "hub": `root` is an HF_HOME: the Hugging Face cache structure under root/hub
  (models--org--name/snapshots/<rev>/... with refs/main), ProPainter files in root/diffueraser/propainter.

Models carry the reference pseudo-weights (tests/pseudo_weights.py) under tiny configs
(tests/tiny.py); the ProPainter files are full size, from the key lists of tests/fixtures/keys.
Each part is built once per process in a temporary folder and copied from there.
"""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import torch
from safetensors.torch import save_file

import tiny
from pseudo_weights import fill_module, pseudo_state_dict
from reference import load_json

PARTS = ("denoiser", "text", "scheduler", "vae", "pcm", "propainter")
LAYOUTS = ("released", "hub")
PCM_STEPS = (2, 4, 8, 16)
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"  # a made-up commit hash of the cached snapshots

# Released layout: part -> [(path under weights/, hub repository, path inside the repository)].
LAYOUT = {
    "denoiser": [
        ("diffuEraser/brushnet", "lixiaowen/diffuEraser", "brushnet"),
        ("diffuEraser/unet_main", "lixiaowen/diffuEraser", "unet_main"),
    ],
    "text": [
        ("stable-diffusion-v1-5/text_encoder", "stable-diffusion-v1-5/stable-diffusion-v1-5", "text_encoder"),
        ("stable-diffusion-v1-5/tokenizer", "stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"),
    ],
    "scheduler": [("stable-diffusion-v1-5/scheduler", "stable-diffusion-v1-5/stable-diffusion-v1-5", "scheduler")],
    "vae": [("sd-vae-ft-mse", "stabilityai/sd-vae-ft-mse", "")],
    "pcm": [("PCM_Weights/sd15", "wangfuyun/PCM_Weights", "sd15")],
    "propainter": [("propainter", None, None)],
}
PROPAINTER_FILES = {
    "raft-things.pth": ("keys/raft_things.json", tiny.NS_RAFT, "module."),
    "recurrent_flow_completion.pth": ("keys/recurrent_flow_completion.json", tiny.NS_FLOW_COMPLETE, ""),
    "ProPainter.pth": ("keys/propainter_inpaint_generator.json", tiny.NS_PROPAINTER, ""),
}
NS_TEXT_ENCODER = "text_encoder."
NS_VAE = "vae."
NS_PCM = "pcm."
TOKENIZER_MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
PCM_RANK = 4
GENERATOR_WINDOW = (5, 9)  # ProPainter InpaintGenerator's sparse-attention window (rows, columns)


def write_tiny_weights(root: str | Path, layout: str = "released", parts: Iterable[str] = PARTS) -> Path:
    """Write the tiny checkpoints of `parts` under `root` in `layout`; returns root."""
    parts, root = list(parts), Path(root)
    if layout not in LAYOUTS or set(parts) - set(PARTS):
        raise ValueError(f"layout must be one of {LAYOUTS} and parts a subset of {PARTS}")
    for part in parts:
        source = _built(part)
        for local, repo, remote in LAYOUT[part]:
            if layout == "released":
                dest = root / local
            elif repo is None:
                dest = root / "diffueraser" / "propainter"
            else:
                dest = hub_snapshot(root, repo) / remote
            shutil.copytree(source / local, dest, dirs_exist_ok=True)
    return root


def hub_snapshot(hf_home: Path, repo: str) -> Path:
    """The cached snapshot folder of `repo` in the hub layout under `hf_home` (refs/main written)."""
    repo_dir = Path(hf_home) / "hub" / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(HUB_REVISION)
    return repo_dir / "snapshots" / HUB_REVISION


def hub_environment(hf_home: Path) -> dict[str, str]:
    """Environment variables that make huggingface_hub (and diffueraser.weights) use the hub layout, offline."""
    return {"HF_HOME": str(hf_home), "HF_HUB_CACHE": str(Path(hf_home) / "hub"), "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------
# Building each part once per process


@functools.lru_cache(maxsize=1)
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="diffueraser-tiny-weights-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def _built(part: str) -> Path:
    """A released-layout folder holding only `part`, built on first use."""
    root = _workdir() / part
    writers = {
        "denoiser": _write_denoiser,
        "text": _write_text,
        "scheduler": _write_scheduler,
        "vae": _write_vae,
        "pcm": _write_pcm,
        "propainter": _write_propainter,
    }
    writers[part](root)
    return root


def _write_denoiser(root: Path) -> None:
    """Weights saved by our classes; config.json as the released classes wrote it (with their extra keys)."""
    for build, config, (local, _, _) in (
        (tiny.build_brushnet, tiny.brushnet_config(), LAYOUT["denoiser"][0]),
        (tiny.build_unet_main, tiny.unet_main_config(), LAYOUT["denoiser"][1]),
    ):
        build().save_pretrained(root / local, safe_serialization=True)
        (root / local / "config.json").write_text(json.dumps(config, indent=2))


def _write_text(root: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    encoder_dir, tokenizer_dir = (root / local for local, _, _ in LAYOUT["text"])
    model = fill_module(CLIPTextModel(CLIPTextConfig(**tiny.text_encoder_config())), NS_TEXT_ENCODER)
    model.save_pretrained(encoder_dir)
    write_tiny_tokenizer(tokenizer_dir)


def write_tiny_tokenizer(folder: Path) -> None:
    """A byte-level BPE CLIP tokenizer whose ids fit the tiny text encoder (vocabulary 1000, BOS 998, EOS 999).

    Tokens: the 256 byte symbols, the same with the end-of-word mark, then two-letter merges up to the
    special tokens, in SD1.5's tokenizer file formats.
    """
    config = tiny.text_encoder_config()
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    merges = []
    for a in letters:
        for b in letters:
            if len(vocab) < config["bos_token_id"]:
                merges.append(f"{a} {b}</w>")
                vocab[f"{a}{b}</w>"] = len(vocab)
    vocab[BOS], vocab[EOS] = config["bos_token_id"], config["eos_token_id"]
    assert len(vocab) == config["vocab_size"] and vocab[EOS] == config["pad_token_id"]
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        **special, "model_max_length": TOKENIZER_MAX_LENGTH, "do_lower_case": True, "errors": "replace",
        "add_prefix_space": False, "tokenizer_class": "CLIPTokenizer"}))


def _byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: printable Latin-1 bytes stand for themselves, the others for 256 + n."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _write_scheduler(root: Path) -> None:
    config = load_json("parity/schedule.json")["prior_injection_add_noise_t0"]["sd15_scheduler_config"]
    folder = root / LAYOUT["scheduler"][0][0]
    folder.mkdir(parents=True)
    (folder / "scheduler_config.json").write_text(json.dumps(config, indent=2))


def _write_vae(root: Path) -> None:
    from diffusers import AutoencoderKL

    vae = fill_module(AutoencoderKL(**tiny.vae_config()), NS_VAE)
    vae.save_pretrained(root / LAYOUT["vae"][0][0], safe_serialization=True)


def _write_pcm(root: Path) -> None:
    """PCM LoRAs for the tiny unet_main in the kohya format of the released *_converted files."""
    folder = root / LAYOUT["pcm"][0][0]
    folder.mkdir(parents=True)
    for steps in PCM_STEPS:
        name = f"pcm_sd15_smallcfg_{steps}step_converted.safetensors"
        save_file(tiny_pcm_lora_state_dict(f"{NS_PCM}{steps}."), str(folder / name))


def tiny_pcm_lora_state_dict(namespace: str = NS_PCM) -> dict[str, torch.Tensor]:
    """A LoRA of the tiny unet_main in the layout of the released PCM files: kohya names
    (`lora_unet_<module path with '_'>.{lora_down.weight, lora_up.weight, alpha}`) for the spatial
    SD1.5 layers (attention projections, proj_in/out, feed-forwards, resnet convs and time
    projections, resamplers), none for the motion modules; pseudo-weights, alpha = rank."""
    from diffueraser.models import UNetMotionModel

    with torch.device("meta"):
        unet = UNetMotionModel.from_config(tiny.unet_main_config())
    shapes = {}
    for name, module in unet.named_modules():
        if "motion_modules" in name or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        if not name.startswith(("down_blocks.", "mid_block.", "up_blocks.")) or name.endswith("conv_shortcut"):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(module, torch.nn.Linear):
            shapes[f"{key}.lora_down.weight"] = (PCM_RANK, module.in_features)
            shapes[f"{key}.lora_up.weight"] = (module.out_features, PCM_RANK)
        else:
            shapes[f"{key}.lora_down.weight"] = (PCM_RANK, module.in_channels, *module.kernel_size)
            shapes[f"{key}.lora_up.weight"] = (module.out_channels, PCM_RANK, 1, 1)
    state = pseudo_state_dict(shapes, namespace)
    for key in sorted({k.rsplit(".", 2)[0] for k in shapes}):
        state[f"{key}.alpha"] = torch.tensor(float(PCM_RANK))
    return state


def _write_propainter(root: Path) -> None:
    folder = root / LAYOUT["propainter"][0][0]
    folder.mkdir(parents=True)
    for name, (keys_file, namespace, prefix) in PROPAINTER_FILES.items():
        state = propainter_state_dict(keys_file, namespace)
        torch.save({prefix + k: v for k, v in state.items()}, folder / name)


def propainter_state_dict(keys_file: str, namespace: str) -> dict[str, torch.Tensor]:
    """Every entry of a released ProPainter network, in the released order: pseudo-weights for the
    floating-point ones, and the values the modules compute for the others."""
    info = load_json(keys_file)
    integer = info["non_float32_dtypes"]
    floats = pseudo_state_dict({k: v for k, v in info["keys"].items() if k not in integer}, namespace, info["aliases"])
    out = {}
    for name, shape in info["keys"].items():
        if name in floats:
            out[name] = floats[name]
        elif name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("valid_ind_rolled"):
            out[name] = _rolled_window_indices(GENERATOR_WINDOW)
        else:
            raise AssertionError(f"no value rule for {name}")
        assert list(out[name].shape) == list(shape), name
    return out


def _rolled_window_indices(window: tuple[int, int]) -> torch.Tensor:
    """Indices of the tokens that the generator's sparse attention takes from the four diagonally
    rolled windows: each rolled window minus the corner block that duplicates the window itself."""
    h, w = window
    eh, ew = (h + 1) // 2, (w + 1) // 2
    keep = torch.ones(4, h, w)
    keep[0, :-eh, :-ew] = 0
    keep[1, :-eh, ew:] = 0
    keep[2, eh:, :-ew] = 0
    keep[3, eh:, ew:] = 0
    return keep.flatten().nonzero().view(-1)
