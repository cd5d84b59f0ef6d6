"""Tiny random configurations of transformers' real video segmenters, saved as checkpoints in the
released layout (no download): what the SAM-family tests load through the weights module."""
from __future__ import annotations

from pathlib import Path

import torch

TINY_INPUT = 128
"""The tiny models' square input side (the real ones take 1024)."""


def tiny_sam2_config():
    """A Sam2VideoConfig with every width and depth cut to the minimum: same classes, same code paths."""
    from transformers import Sam2VideoConfig

    s = TINY_INPUT
    return Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=8, image_size=[s, s],
                                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                                 num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                                 global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2]),
            backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
            fpn_hidden_size=128),
        prompt_encoder_config=dict(hidden_size=128, image_size=s, patch_size=16),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        image_size=s, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1)


def write_tiny_sam2(weights_dir: Path, seed: int = 0, sees_nothing: bool = False) -> Path:
    """A tiny random SAM 2.1 video model saved where the weights module looks for SAM 2.1 small.

    `sees_nothing`: its object-score head always says "no object here" (a large negative bias on
    its last layer), as a real model does for an object that is not in view."""
    from transformers import Sam2VideoModel

    torch.manual_seed(seed)
    folder = weights_dir / "sam2.1-hiera-small"
    model = Sam2VideoModel(tiny_sam2_config()).eval()
    if sees_nothing:
        with torch.no_grad():
            model.mask_decoder.pred_obj_score_head.proj_out.weight.zero_()
            model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(-100.0)
    model.save_pretrained(folder)
    return folder


SAM3_INPUT = 112
"""The tiny SAM 3's square input side (8 x 8 patches of 14 px; the real one takes 1008)."""


def tiny_sam3_config():
    """A Sam3VideoConfig (detector, text encoder and tracker) with every width and depth cut to the
    minimum: same classes, same code paths as facebook/sam3. Its hot-start check is off (a random
    tracker's masks never match the detections, so the check would drop every instance) and it
    tracks at most 4 instances, to stay fast."""
    from transformers import Sam3VideoConfig

    s, patches = SAM3_INPUT, SAM3_INPUT // 14
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=s, patch_size=14, window_size=4, global_attn_indexes=[1],
               pretrain_image_size=56)
    vision = dict(backbone_config=vit, fpn_hidden_size=128,
                  backbone_feature_sizes=[[4 * patches] * 2, [2 * patches] * 2, [patches] * 2])
    small = dict(hidden_size=128, num_layers=1, num_attention_heads=2, intermediate_size=64)
    detector = dict(
        model_type="sam3", vision_config=vision,
        text_config=dict(vocab_size=len(TINY_WORDS_VOCAB), hidden_size=32, intermediate_size=64, projection_dim=128,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        geometry_encoder_config=small, detr_encoder_config=small,
        detr_decoder_config=dict(small, num_queries=3),
        mask_decoder_config=dict(hidden_size=128, num_attention_heads=2))
    tracker = dict(
        model_type="sam3_tracker_video", vision_config=vision, image_size=s,
        prompt_encoder_config=dict(hidden_size=128),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=128, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * patches,
                             hotstart_delay=0, max_num_objects=4)
    config.image_size = s
    return config


def _tiny_words_vocab() -> list[str]:
    import string

    letters = list(string.ascii_lowercase)
    return ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters] + ["th", "the</w>"]


TINY_WORDS_VOCAB = _tiny_words_vocab()


def tiny_words_tokenizer():
    """A CLIP tokenizer over a tiny vocabulary (single letters and 'the'), built here: no download."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab={t: i for i, t in enumerate(TINY_WORDS_VOCAB)}, merges=[("t", "h"), ("th", "e</w>")])


def write_tiny_sam3(weights_dir: Path, seed: int = 0, sees: bool = True) -> Path:
    """A tiny random SAM 3 video model with its tokenizer, saved where the weights module looks for
    facebook/sam3.

    `sees`: the detector is sure every query is an instance of any words (its presence and
    query-scoring heads biased high), as a real one is for words that name something in view;
    False: it is sure none is (biased low), as for words that name nothing there."""
    from transformers import Sam3VideoModel

    torch.manual_seed(seed)
    folder = weights_dir / "sam3"
    model = Sam3VideoModel(tiny_sam3_config()).eval()
    detector = model.detector_model
    with torch.no_grad():
        presence = detector.detr_decoder.presence_head.layer3
        presence.weight.zero_()
        presence.bias.fill_(10.0 if sees else -10.0)
        scoring = detector.dot_product_scoring
        for proj in (scoring.query_proj, scoring.text_proj):
            proj.weight.zero_()
            proj.bias.fill_(1.0)
    model.save_pretrained(folder)
    tiny_words_tokenizer().save_pretrained(folder)
    return folder
