"""A tiny, randomly initialised Stable Diffusion folder for tests and docs (no download).

:func:`write_tiny_sd` writes the diffusers layout of a Stable Diffusion 1.x
model (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) plus a tiny ControlNet in ``controlnet/``,
every network at most a few hundred thousand parameters, so every code path
of the ``sd`` backends runs on a CPU: in a fraction of a second per call on
the tests' 64-pixel frames, in seconds at 512 pixels (the README's figures,
``scripts/sd_speed.py``).  The networks are random:
their colours mean nothing.  The tokenizer is a byte-level CLIP BPE tokenizer
whose vocabulary (the 256 byte symbols, alone and word-final, and the two
special tokens) and empty merge list are written here.  The VAE downsamples by
8, as Stable Diffusion's, so a 512-pixel frame gives a 64x64 latent.

Small where the time goes: the UNet's attention (self-attention, which the
joint keyframes extend, and cross-attention, which the regional prompts use)
sits only at its lowest level and in its middle, a quarter of the latent's
side (16x16 tokens for a 512x512 frame), as the cost of attention grows with
the square of the tokens; the VAE, which L_gray runs forward and backward at
full resolution at every step, has 4 channels, one residual block per decoder
level and no attention; the ControlNet's conditioning encoder, which sees the
full-resolution gray frame, has 4 to 16 channels.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_tiny_sd", "TINY_SEED"]

#: seed of the random initialisation (the same folder every time)
TINY_SEED = 0


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _write_tokenizer(folder: Path) -> int:
    """vocab.json, merges.txt and the tokenizer config; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }), encoding="utf-8")
    return len(vocab)


def write_tiny_sd(folder: str | Path, controlnet: bool = True, inpainting: bool = False) -> Path:
    """Write the tiny model into ``folder`` (created) and return it.

    Layout: a Stable Diffusion 1.x diffusers folder (UNet of three levels of
    8, 16 and 32 channels, self- and cross-attention at the lowest one and the
    middle, 4-channel latents; a 4-level VAE (factor 8) of 4 channels without
    attention; a 2-layer CLIP text encoder of width 32; a DDIM scheduler) and, with
    ``controlnet``, a ControlNet of the UNet's shape in ``folder/controlnet``.
    With ``inpainting`` the UNet is an inpainting UNet (9 input channels:
    latents, mask, masked-image latents), as Stable Diffusion's inpainting checkpoints.
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(TINY_SEED)
    vocab_size = _write_tokenizer(folder / "tokenizer")
    text_config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                                 bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    CLIPTextModel(text_config).eval().save_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=9 if inpainting else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16, 32), down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    unet.save_pretrained(folder / "unet")
    AutoencoderKL(  # layers_per_block 0: no residual block in the encoder's levels, one in the decoder's
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=0, norm_num_groups=4,
        block_out_channels=(4, 4, 4, 4), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, mid_block_add_attention=False,
    ).save_pretrained(folder / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False,
    }, indent=2), encoding="utf-8")
    if controlnet:
        if inpainting:
            raise ValueError("the tiny ControlNet is made for the base UNet (inpainting=False)")
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
        with torch.no_grad():  # ControlNet's zero convolutions made non-zero, so the condition has an effect
            for p in (*net.controlnet_down_blocks.parameters(), *net.controlnet_mid_block.parameters()):
                p.normal_(0.0, 0.02)
        net.save_pretrained(folder / "controlnet")
    return folder
