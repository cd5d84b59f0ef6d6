"""Tiny configurations of every model, in one place, reused by all tests.

The BrushNet / unet_main ones are those of the reference fixture `brushnet_unet_tiny` (SD1.5
layout with narrow channels); the others are the smallest shapes that keep each released
architecture's structure (four VAE levels: scale factor 8; a CLIP text tower with 77 positions).
"""
from __future__ import annotations

from reference import load_json

# Pseudo-weight namespaces of the reference fixtures (reference README §1).
NS_BRUSHNET = "brushnet."
NS_UNET_MAIN = "unet_main."
NS_RAFT = "raft."
NS_FLOW_COMPLETE = "flow_complete."
NS_PROPAINTER = "propainter."


def brushnet_config() -> dict:
    """The tiny BrushNet config.json of the parity fixture."""
    return load_json("parity/brushnet_unet_tiny_brushnet_config.json")


def unet_main_config() -> dict:
    """The tiny unet_main config.json of the parity fixture, with the key the pipeline needs (§4.1)."""
    return {**load_json("parity/brushnet_unet_tiny_unet_main_config.json"), "time_cond_proj_dim": None}


def vae_config() -> dict:
    """AutoencoderKL with the four levels of sd-vae-ft-mse (scale factor 8), narrow channels."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )


def text_encoder_config() -> dict:
    """CLIPTextModel with SD1.5's 77 positions, a small vocabulary and width 32 (= tiny cross_attention_dim)."""
    return dict(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=998,
        eos_token_id=999,
        pad_token_id=999,
    )


def pseudo_model(cls, config: dict, namespace: str):
    """`cls.from_config(config)` carrying the fixtures' pseudo-weights, cheap at any size.

    Parameters are created on the meta device and replaced by the pseudo-weight tensors themselves (no random
    init, no copy), drawn on all cores (numpy releases the GIL while filling); buffers the module computes (the
    motion modules' `pe` tables) stay real.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from accelerate import init_empty_weights

    from pseudo_weights import is_computed, pseudo_tensor

    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items() if not is_computed(name)}
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        values = pool.map(lambda item: pseudo_tensor(item[0], item[1], namespace), shapes.items())
        state = dict(zip(shapes, values))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    assert not unexpected and all(is_computed(name) for name in missing), (missing, unexpected)
    return model.eval()


def build_brushnet(pseudo: bool = True, config: dict | None = None):
    """BrushNetModel (tiny config unless `config` is given), with the fixture pseudo-weights or default init."""
    from diffueraser.models import BrushNetModel

    config = brushnet_config() if config is None else config
    return pseudo_model(BrushNetModel, config, NS_BRUSHNET) if pseudo else BrushNetModel.from_config(config).eval()


def build_unet_main(pseudo: bool = True, config: dict | None = None):
    """unet_main UNetMotionModel (tiny config unless `config` is given), with pseudo-weights or default init."""
    from diffueraser.models import UNetMotionModel

    config = unet_main_config() if config is None else config
    return pseudo_model(UNetMotionModel, config, NS_UNET_MAIN) if pseudo else UNetMotionModel.from_config(config).eval()
