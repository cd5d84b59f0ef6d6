"""BrushNet + unet_main behaviour beyond the fixture: SDPA attention, LoRA, low precision, odd sizes, batching."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from reference import assert_close_rel
from tiny import build_brushnet, build_unet_main, unet_main_config

FRAMES = 3
SIDE = 16
TEXT_LEN, TEXT_DIM = 77, unet_main_config()["cross_attention_dim"]
TIMESTEP = 499
LORA_TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
LORA_RANK = 4
BF16_REL = 0.1  # bfloat16 keeps ~3 significant digits; measured 0.02-0.03 of max |output| on the tiny models


def _inputs(frames=FRAMES, height=SIDE, width=SIDE, clips=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(clips * frames, 4, height, width, generator=g),
        text=torch.randn(clips, TEXT_LEN, TEXT_DIM, generator=g),
        cond=torch.cat(
            [torch.randn(clips * frames, 4, height, width, generator=g), torch.ones(clips * frames, 1, height, width)],
            dim=1,
        ),
    )


@pytest.fixture(scope="module")
def brushnet():
    return build_brushnet()


@pytest.fixture(scope="module")
def unet_main():
    return build_unet_main()


def _denoise(brushnet, unet, x, frames=FRAMES):
    """One BrushNet-conditioned unet_main call, as the pipeline makes it."""
    with torch.no_grad():
        res = brushnet(x["sample"], TIMESTEP, x["text"].repeat_interleave(frames, dim=0), x["cond"])
        return unet(
            x["sample"], TIMESTEP, x["text"], num_frames=frames,
            down_block_add_samples=res.down_block_res_samples,
            mid_block_add_sample=res.mid_block_res_sample,
            up_block_add_samples=res.up_block_res_samples,
        ).sample


@pytest.mark.parametrize("which", ["brushnet", "unet_main"])
def test_every_attention_runs_through_torch_sdpa(request, monkeypatch, which):
    model = request.getfixturevalue(which)
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert {type(a.processor) for a in attentions} == {AttnProcessor2_0}
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    x = _inputs()
    with torch.no_grad():
        if which == "brushnet":
            model(x["sample"], TIMESTEP, x["text"].repeat(FRAMES, 1, 1), x["cond"])
        else:
            model(x["sample"], TIMESTEP, x["text"], num_frames=FRAMES)
    # unet_main's mid block runs its one attention once even though it runs resnets[1] twice.
    assert len(calls) == len(attentions)


def test_clips_stacked_on_the_batch_axis_are_denoised_independently(brushnet, unet_main):
    both = _inputs(clips=2)
    out = _denoise(brushnet, unet_main, both)
    for clip in range(2):
        rows = slice(clip * FRAMES, (clip + 1) * FRAMES)
        one = dict(sample=both["sample"][rows], text=both["text"][clip : clip + 1], cond=both["cond"][rows])
        assert_close_rel(out[rows], _denoise(brushnet, unet_main, one), 1e-5, f"clip {clip}")


@pytest.mark.parametrize("height,width", [(13, 10), (12, 20)])
def test_latent_sides_not_multiple_of_8_keep_their_size(brushnet, unet_main, height, width):
    out = _denoise(brushnet, unet_main, _inputs(height=height, width=width))
    assert out.shape == (FRAMES, 4, height, width)
    assert torch.isfinite(out).all()


def test_brushnet_residuals_scale_with_conditioning_scale(brushnet):
    x = _inputs()
    text = x["text"].repeat(FRAMES, 1, 1)
    with torch.no_grad():
        full = brushnet(x["sample"], TIMESTEP, text, x["cond"])
        half = brushnet(x["sample"], TIMESTEP, text, x["cond"], conditioning_scale=0.5, return_dict=False)
    assert (len(full.down_block_res_samples), len(full.up_block_res_samples)) == (12, 15)
    for a, b in zip(full.down_block_res_samples + (full.mid_block_res_sample,) + full.up_block_res_samples,
                    half[0] + (half[1],) + half[2]):
        assert_close_rel(b, 0.5 * a, 1e-6)


def test_partial_or_miscounted_residuals_are_refused(brushnet, unet_main):
    x = _inputs()
    with torch.no_grad():
        res = brushnet(x["sample"], TIMESTEP, x["text"].repeat(FRAMES, 1, 1), x["cond"])
        with pytest.raises(ValueError, match="all three"):
            unet_main(x["sample"], TIMESTEP, x["text"], num_frames=FRAMES,
                      down_block_add_samples=res.down_block_res_samples)
        with pytest.raises(ValueError, match="expected 12 down and 15 up"):
            unet_main(x["sample"], TIMESTEP, x["text"], num_frames=FRAMES,
                      down_block_add_samples=res.down_block_res_samples[:-1],
                      mid_block_add_sample=res.mid_block_res_sample,
                      up_block_add_samples=res.up_block_res_samples)


def test_lora_on_one_spatial_projection_changes_output_and_fuses_exactly():
    """diffusers' LoRA API works on the SD1.5-named layers (how the PCM LoRA is applied to unet_main)."""
    unet = build_unet_main()
    x = _inputs()
    run = lambda: unet(x["sample"], TIMESTEP, x["text"], num_frames=FRAMES).sample  # noqa: E731
    g = torch.Generator().manual_seed(1)
    width = unet.get_submodule(LORA_TARGET).in_features
    lora = {
        f"unet.{LORA_TARGET}.lora_A.weight": torch.randn(LORA_RANK, width, generator=g),
        f"unet.{LORA_TARGET}.lora_B.weight": torch.randn(width, LORA_RANK, generator=g),
    }
    with torch.no_grad():
        base = run()
        unet.load_lora_adapter(lora, prefix="unet", adapter_name="test")
        with_lora = run()
        unet.fuse_lora()
        fused = run()
    assert (with_lora - base).abs().max() > 0.1 * base.abs().max()
    assert_close_rel(fused, with_lora, 1e-5, "fused")


def test_bfloat16_models_stay_finite_and_close_to_float32(brushnet, unet_main):
    x = _inputs()
    reference = _denoise(brushnet, unet_main, x)
    low = {k: v.to(torch.bfloat16) for k, v in x.items()}
    out = _denoise(copy.deepcopy(brushnet).to(torch.bfloat16), copy.deepcopy(unet_main).to(torch.bfloat16), low)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    err = float((out.float() - reference).abs().max() / reference.abs().max())
    assert err < BF16_REL, f"bfloat16 relative error {err:.3f}"  # measured about 0.02


def test_up_block_motion_modules_keep_32_groups_whatever_the_unet_uses():
    """Released quirk (reference §4.6): only UpBlockMotion's motion modules ignore `norm_num_groups`."""
    from diffueraser.models import UNetMotionModel

    groups = 16
    with torch.device("meta"):
        unet = UNetMotionModel.from_config({**unet_main_config(), "norm_num_groups": groups})
    up_block_motion, *others = [unet.up_blocks[0], *unet.down_blocks, unet.mid_block, *unet.up_blocks[1:]]
    assert [m.norm.num_groups for m in up_block_motion.motion_modules] == [32] * 3
    assert {m.norm.num_groups for block in others for m in block.motion_modules} == {groups}


def test_feed_forward_chunking_changes_no_value_and_is_idempotent():
    from diffusers.models.attention import FeedForward

    from diffueraser.models.chunking import chunk_feed_forward

    brushnet, unet = build_brushnet(), build_unet_main()  # own copies: chunking sets their forwards
    x = _inputs()
    whole = _denoise(brushnet, unet, x)
    seen = []
    feed_forwards = [m for model in (brushnet, unet) for m in model.modules() if isinstance(m, FeedForward)]
    for ff in feed_forwards:  # the GEGLU inside sees each slice
        ff.net[0].register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1].numel()))
    # 7 divides none of the token counts (3 frames x 16², 8², 4², 2²), so every slicing ends short
    assert chunk_feed_forward(brushnet, 7) + chunk_feed_forward(unet, 7) == len(feed_forwards)
    chunk_feed_forward(unet, 7)  # a second call must not wrap the wrapper
    sliced = _denoise(brushnet, unet, x)
    assert max(seen) == 7 and min(seen) < 7, "the feed-forwards must see at most 7 tokens at a time"
    # A GEMM over 7 rows may block its sums differently from one over all rows: float32 rounding
    # (measured 1.0e-6 relative on one CPU, 0.0 on another), nothing more.
    assert_close_rel(sliced, whole, 1e-5, "chunked feed-forward")
    # a copy slices its own weights: changing the copy's feed-forwards must change only its output
    twin = copy.deepcopy(unet)
    for ff in (m for m in twin.modules() if isinstance(m, FeedForward)):
        ff.net[-1].weight.data.mul_(2)
    assert_close_rel(_denoise(brushnet, unet, x), whole, 1e-5, "original after copying")
    assert not torch.allclose(_denoise(brushnet, twin, x), whole)
    with pytest.raises(ValueError, match="at least 1"):
        chunk_feed_forward(unet, 0)


def test_residuals_handed_over_as_lists_are_released_once_added_and_tuples_kept(brushnet, unet_main):
    import weakref

    x = _inputs()
    with torch.no_grad():
        res = brushnet(x["sample"], TIMESTEP, x["text"].repeat_interleave(FRAMES, dim=0), x["cond"])
        counts = len(res.down_block_res_samples), len(res.up_block_res_samples)
        kept = unet_main(
            x["sample"], TIMESTEP, x["text"], num_frames=FRAMES, down_block_add_samples=res.down_block_res_samples,
            mid_block_add_sample=res.mid_block_res_sample, up_block_add_samples=res.up_block_res_samples,
        ).sample
        # fresh copies that only the lists hold, watched through weak references
        down = [r.clone() for r in res.down_block_res_samples]
        up = [r.clone() for r in res.up_block_res_samples]
        watched = [weakref.ref(r) for r in down]
        alive_at_up_blocks = []
        hook = unet_main.up_blocks[0].resnets[0].register_forward_pre_hook(
            lambda mod, args: alive_at_up_blocks.append(sum(ref() is not None for ref in watched))
        )
        try:
            taken = unet_main(
                x["sample"], TIMESTEP, x["text"], num_frames=FRAMES, down_block_add_samples=down,
                mid_block_add_sample=res.mid_block_res_sample, up_block_add_samples=up,
            ).sample
        finally:
            hook.remove()
    assert down == [] and up == [], "the lists are emptied"
    assert alive_at_up_blocks == [0], "every down residual is freed before the up blocks run"
    assert (len(res.down_block_res_samples), len(res.up_block_res_samples)) == counts, "tuples are left alone"
    torch.testing.assert_close(taken, kept, rtol=0, atol=0)
