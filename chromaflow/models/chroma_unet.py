"""The compact chroma denoiser of the embedded colorization model.

A small U-Net predicts clean chroma (Lab ab, scaled by :data:`AB_SCALE`) on
the stride-4 grid of the frozen EfficientNet-Lite0 encoder, from

- a noisy chroma map ``x_t`` and its noise level ``t`` (for the regression
  baseline ``x_t`` is all zeros and ``t`` is 1: same network, no diffusion);
- the lightness (Lab L) on the same grid;
- hints: sparse chroma values with a mask (references, propagated colours,
  user scribbles);
- the encoder's features at strides 8, 16 and 32, injected at the matching
  levels;
- a palette of 5 Lab colours and a sentence embedding, each with a presence
  flag (0 drops it: that is how conditions are dropped for classifier-free
  guidance), read through FiLM and through cross-attention at the two lowest
  levels.

At the stride-32 bottleneck, self-attention can span a *group* of frames
(GCG's extended attention): with ``group=K`` the batch is read as ``B/K``
groups of ``K`` keyframes whose tokens attend to each other, so jointly
coloured keyframes agree.

The module knows nothing of files, videos or samplers.  Shapes: ``B`` images,
grid ``H x W`` (a multiple of 8; the encoder maps are ``H/2``, ``H/4``,
``H/8``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: ab values are divided by this before entering the network (ab std in photos is about 20).
AB_SCALE = 64.0
#: Lightness is mapped to about [-1, 1] as ``L / 50 - 1``.
L_SCALE = 50.0


@dataclass(frozen=True)
class ChromaUNetConfig:
    """Sizes of :class:`ChromaUNet`.

    Attributes:
        widths: channels at the four levels (grid strides 4, 8, 16, 32 of the image).
        feature_channels: channels of the encoder maps at strides 8, 16, 32.
        text_dim: size of a sentence embedding.
        palette_size: colours in a palette.
        emb_dim: size of the global conditioning vector.
        heads: attention heads.
        bins: bins per ab axis of the chroma-bin classification head
            (:mod:`chromaflow.models.chroma_bins`); 0: no such head.
        bin_step: width of a bin in Lab units.
    """

    widths: tuple[int, int, int, int] = (32, 64, 128, 192)
    feature_channels: tuple[int, int, int] = (40, 112, 320)
    text_dim: int = 384
    palette_size: int = 5
    emb_dim: int = 128
    heads: int = 4
    bins: int = 0
    bin_step: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ChromaUNetConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["feature_channels"] = tuple(d["feature_channels"])
        return cls(**d)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of ``t`` in [0, 1]: ``(B,)`` -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, FiLM from the global vector after the first conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over a group of frames, then cross-attention to condition tokens."""

    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.norm_x = nn.LayerNorm(c)
        self.q_x = nn.Linear(c, c)
        self.kv_x = nn.Linear(c, 2 * c)
        self.proj_x = nn.Linear(c, c)
        for lin in (self.proj, self.proj_x):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor, group: int = 1
    ) -> torch.Tensor:
        b, c, hh, ww = x.shape
        if b % group:
            raise ValueError(f"batch {b} is not a multiple of group {group}")
        seq = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        seq = seq.reshape(b // group, group * hh * ww, c)  # frames of a group share attention
        q, k, v = (self._split(t) for t in self.qkv(seq).chunk(3, dim=2))
        att = self.proj(self._merge(F.scaled_dot_product_attention(q, k, v)))
        y = x + att.reshape(b, hh * ww, c).transpose(1, 2).reshape(b, c, hh, ww)
        # Cross-attention to (palette colours, text, null); absent tokens are masked out.
        seq = self.norm_x(y.flatten(2).transpose(1, 2))
        q = self._split(self.q_x(seq))
        k, v = (self._split(t) for t in self.kv_x(tokens).chunk(2, dim=2))
        bias = torch.zeros(token_mask.shape, dtype=seq.dtype, device=seq.device)
        bias = bias.masked_fill(~token_mask, float("-inf"))[:, None, None, :]
        out = self.proj_x(self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))
        return y + out.transpose(1, 2).reshape(b, c, hh, ww)


class ChromaUNet(nn.Module):
    """Predicts clean scaled chroma ``ab / AB_SCALE`` on the stride-4 grid."""

    def __init__(self, config: ChromaUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or ChromaUNetConfig()
        self.config = cfg
        w0, w1, w2, w3 = cfg.widths
        e = cfg.emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.palette_color = nn.Sequential(nn.Linear(3, w3), nn.SiLU(), nn.Linear(w3, w3))
        self.palette_slot = nn.Parameter(torch.zeros(cfg.palette_size, w3))
        self.palette_global = nn.Linear(cfg.palette_size * 3, e)
        self.text_token = nn.Linear(cfg.text_dim, w3)
        self.text_global = nn.Linear(cfg.text_dim, e)
        self.null_token = nn.Parameter(torch.zeros(1, 1, w3))
        # x_t (2) + L (1) + hints (2) + hint mask (1)
        self.stem = nn.Conv2d(6, w0, 3, padding=1)
        self.enc0 = ResBlock(w0, w0, e)
        self.down1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.feat1 = nn.Conv2d(cfg.feature_channels[0], w1, 1)
        self.enc1 = ResBlock(w1, w1, e)
        self.down2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.feat2 = nn.Conv2d(cfg.feature_channels[1], w2, 1)
        self.enc2 = ResBlock(w2, w2, e)
        self.down3 = nn.Conv2d(w2, w3, 3, stride=2, padding=1)
        self.feat3 = nn.Conv2d(cfg.feature_channels[2], w3, 1)
        self.mid1 = ResBlock(w3, w3, e)
        self.mid_att = AttentionBlock(w3, cfg.heads)
        self.mid2 = ResBlock(w3, w3, e)
        self.up2 = nn.Conv2d(w3, w2, 1)
        self.dec2 = ResBlock(2 * w2, w2, e)
        self.tok2 = nn.Linear(w3, w2)
        self.att2 = AttentionBlock(w2, cfg.heads)
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.dec1 = ResBlock(2 * w1, w1, e)
        self.up0 = nn.Conv2d(w1, w0, 1)
        self.dec0 = ResBlock(2 * w0, w0, e)
        self.out_norm = nn.GroupNorm(_groups(w0), w0)
        self.out = nn.Conv2d(w0, 2, 3, padding=1)
        # the chroma-bin head and the bin frequencies of its training data (the prior of the read-out)
        q = cfg.bins * cfg.bins
        self.out_bins = nn.Conv2d(w0, q, 1) if cfg.bins else None
        self.register_buffer("bin_prior", torch.full((q,), 1.0 / q) if cfg.bins else None)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        lightness: torch.Tensor,
        hints: torch.Tensor,
        hint_mask: torch.Tensor,
        feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        palette: torch.Tensor,
        palette_on: torch.Tensor,
        text: torch.Tensor,
        text_on: torch.Tensor,
        group: int = 1,
        return_bins: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict clean chroma.

        Args:
            x_t: ``(B, 2, H, W)`` noisy ``ab / AB_SCALE``.
            t: ``(B,)`` noise level in [0, 1] (1 = pure noise).
            lightness: ``(B, 1, H, W)`` Lab L in [0, 100].
            hints: ``(B, 2, H, W)`` hint ab (Lab units); ignored where the mask is 0.
            hint_mask: ``(B, 1, H, W)`` in [0, 1].
            feats: encoder maps ``(B, 40, H/2, W/2)``, ``(B, 112, H/4, W/4)``, ``(B, 320, H/8, W/8)``.
            palette: ``(B, 5, 3)`` Lab colours.
            palette_on: ``(B,)`` bool, False drops the palette.
            text: ``(B, 384)`` sentence embeddings.
            text_on: ``(B,)`` bool, False drops the text.
            group: frames per attention group (``B`` must be a multiple).
            return_bins: also return the chroma-bin head's logits (``config.bins > 0``).

        Returns:
            ``(B, 2, H, W)`` predicted ``ab / AB_SCALE``; with ``return_bins``
            also ``(B, bins * bins, H, W)`` logits over the bins of
            :func:`chromaflow.models.chroma_bins.bin_centers`.
        """
        b = x_t.shape[0]
        pal_on = palette_on.to(x_t.dtype)[:, None]
        txt_on = text_on.to(x_t.dtype)[:, None]
        pal_scaled = torch.cat([palette[..., :1] / L_SCALE - 1.0, palette[..., 1:] / AB_SCALE], dim=2)
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim))
        emb = emb + self.palette_global(pal_scaled.flatten(1)) * pal_on + self.text_global(text) * txt_on
        tokens = torch.cat(
            [
                self.palette_color(pal_scaled) + self.palette_slot[None],
                self.text_token(text)[:, None],
                self.null_token.expand(b, -1, -1),
            ],
            dim=1,
        )
        n_pal = pal_scaled.shape[1]
        token_mask = torch.cat(
            [palette_on[:, None].expand(-1, n_pal), text_on[:, None], torch.ones_like(text_on[:, None])], dim=1
        ).bool()

        mask = hint_mask
        h = torch.cat([x_t, lightness / L_SCALE - 1.0, hints / AB_SCALE * mask, mask], dim=1)
        h0 = self.enc0(self.stem(h), emb)
        h1 = self.enc1(self.down1(h0) + self.feat1(feats[0]), emb)
        h2 = self.enc2(self.down2(h1) + self.feat2(feats[1]), emb)
        m = self.mid1(self.down3(h2) + self.feat3(feats[2]), emb)
        m = self.mid_att(m, tokens, token_mask, group)
        m = self.mid2(m, emb)
        u = F.interpolate(self.up2(m), size=h2.shape[-2:], mode="nearest")
        u = self.dec2(torch.cat([u, h2], dim=1), emb)
        u = self.att2(u, self.tok2(tokens), token_mask, 1)
        u = F.interpolate(self.up1(u), size=h1.shape[-2:], mode="nearest")
        u = self.dec1(torch.cat([u, h1], dim=1), emb)
        u = F.interpolate(self.up0(u), size=h0.shape[-2:], mode="nearest")
        u = self.dec0(torch.cat([u, h0], dim=1), emb)
        u = F.silu(self.out_norm(u))
        if not return_bins:
            return self.out(u)
        if self.out_bins is None:
            raise ValueError("this network has no chroma-bin head (config.bins = 0)")
        return self.out(u), self.out_bins(u)
