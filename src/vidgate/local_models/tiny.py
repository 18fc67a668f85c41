"""Tiny random-weight pipelines of each served kind, built offline, for tests and demos.

Shapes follow diffusers' own fast-test components (a few thousand parameters each); the
tokenizer is a T5 unigram vocabulary made in memory, because these machines reach no model hub.
Every component is seeded, so the same kind always gives the same weights.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from vidgate.local_models import PIPELINE_KINDS

TEXT_DIM = 32  # the text encoder's width, which the transformers' cross-attention expects
SEED = 0


def tiny_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer over single characters and word-initial characters."""
    pieces = [*string.ascii_lowercase, *string.digits, *".,!?'-"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(f"\u2581{piece}", -3.0) for piece in pieces] + [(p, -4.0) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _text_encoder(kind: str, vocab_size: int) -> torch.nn.Module:
    sizes: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "decoder_start_token_id": 0,
    }
    torch.manual_seed(SEED)
    if kind.startswith("wan"):  # Wan's encoder is UMT5, LTX-Video's T5 v1.1
        return UMT5EncoderModel(UMT5Config(**sizes))
    return T5EncoderModel(T5Config(**sizes))


def _wan(kind: str) -> Any:
    image = kind == "wan-i2v"
    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(SEED)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        # image-to-video: the noise, a mask and the image latents, side by side
        in_channels=36 if image else 16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4 if image else None,
    )
    tokenizer = tiny_tokenizer()
    parts: dict[str, Any] = {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "text_encoder": _text_encoder(kind, len(tokenizer)),
        "tokenizer": tokenizer,
    }
    if not image:
        return WanPipeline(**parts)
    torch.manual_seed(SEED)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    return WanImageToVideoPipeline(
        **parts,
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )


def _ltx(kind: str) -> Any:
    torch.manual_seed(SEED)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_block_out_channels=(8, 8, 8, 8),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    tokenizer = tiny_tokenizer()
    cls = LTXImageToVideoPipeline if kind == "ltx-i2v" else LTXPipeline
    return cls(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_text_encoder(kind, len(tokenizer)),
        tokenizer=tokenizer,
    )


def build_tiny_pipeline(kind: str) -> Any:
    """A tiny pipeline of `kind` (one of PIPELINE_KINDS), random weights from a fixed seed."""
    if kind not in PIPELINE_KINDS:
        raise ValueError(f"unknown pipeline {kind!r} (known: {', '.join(PIPELINE_KINDS)})")
    return _wan(kind) if kind.startswith("wan") else _ltx(kind)


def make_tiny(kind: str, out: Path) -> Path:
    """Build a tiny `kind` pipeline and save it to `out` in diffusers' folder layout."""
    pipeline = build_tiny_pipeline(kind)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(str(out))
    return out
