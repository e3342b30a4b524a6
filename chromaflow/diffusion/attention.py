"""Attention processors for joint keyframes (GCG) and regional prompts, on diffusers' ``Attention``.

Both wrap diffusers' ``AttnProcessor2_0`` (scaled dot-product attention) and
change only what it attends to:

* :class:`JointAttnProcessor` (self-attention, ``attn1``): the UNet's batch is
  split into groups of ``group`` consecutive images (the keyframes of a shot,
  plus a colour reference last when there is one), and each image's queries
  attend to the keys and values of every image of its group: GCG's extended
  self-attention, so the keyframes agree and a reference lends its colours.
  As every image of a group attends to the same keys, this is self-attention
  over the group's tokens laid end to end: one sequence of ``group * N``
  tokens, whose keys and values are projected once (not once per image).
  With ``group == 1`` it is plain self-attention.
* :class:`RegionalAttnProcessor` (cross-attention, ``attn2``): the generic
  prompt's cross-attention everywhere, and inside each region's mask the
  cross-attention to that region's own phrase (``"a red car"``), blended by
  the mask at the layer's resolution: ``out = base + sum_r m_r (out_r - base)``
  with the masks summing to at most 1, so a mask of zeros leaves ``base``
  exactly.  Only the batch entries of the conditional half of
  classifier-free guidance take the regions.

:func:`processors` installs them on a UNet (and a ControlNet) for the
duration of a ``with`` block and restores the previous processors after.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["JointAttnProcessor", "RegionalAttnProcessor", "Regions", "processors"]


def _plain():
    from diffusers.models.attention_processor import AttnProcessor2_0

    return AttnProcessor2_0()


class JointAttnProcessor:
    """Self-attention extended across the images of each group (see the module doc).

    Args:
        group: images per group; the batch size must be a multiple of it.
    """

    def __init__(self, group: int = 1) -> None:
        self.group = max(1, int(group))
        self._plain = _plain()

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs) -> torch.Tensor:
        g = self.group
        if g == 1 or encoder_hidden_states is not None or hidden_states.ndim != 3:
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        b, n, c = hidden_states.shape
        if b % g:
            raise ValueError(f"batch of {b} is not a whole number of groups of {g}")
        # (B/g, g*N, C): the tokens of every image of the group
        joint = hidden_states.reshape(b // g, g * n, c)
        if attention_mask is None and attn.group_norm is None and attn.spatial_norm is None:
            # token-wise layers only (Stable Diffusion's attn1): the group's queries in one sequence
            return self._plain(attn, joint, None, None, temb).reshape(b, n, -1)
        joint = joint[:, None].expand(-1, g, -1, -1).reshape(b, g * n, c)  # keys and values: one copy per image
        return self._plain(attn, hidden_states, joint, attention_mask, temb)


@dataclass
class Regions:
    """Regional prompts for one batch.

    Attributes:
        embeds: ``(R, S, D)`` text-encoder states of the R region phrases.
        masks: ``(B_cond, R, h, w)`` in ``[0, 1]`` at latent resolution, one
            row per image of the conditional batch (the rows sum to at most 1
            per pixel; an image without a region has zeros).
        cond: the slice of the UNet batch the masks apply to (the conditional half).
    """

    embeds: torch.Tensor
    masks: torch.Tensor
    cond: slice


class RegionalAttnProcessor:
    """Cross-attention to the generic prompt, and to each region's phrase inside its mask (module doc).

    Args:
        regions: the batch's :class:`Regions`, or ``None`` (plain cross-attention).
    """

    def __init__(self, regions: Regions | None = None) -> None:
        self.regions = regions
        self._plain = _plain()

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs) -> torch.Tensor:
        base = self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        r = self.regions
        if r is None or encoder_hidden_states is None or hidden_states.ndim != 3 or not len(r.embeds):
            return base
        part = hidden_states[r.cond]
        masks = _masks_at(r.masks, part.shape[1]).to(base.dtype)  # (Bc, R, N)
        out = base.clone()
        acc = base[r.cond]
        for k in range(len(r.embeds)):
            m = masks[:, k, :, None]
            if not bool(m.any()):
                continue
            text = r.embeds[k : k + 1].to(part.dtype).expand(part.shape[0], -1, -1)
            acc = acc + m * (self._plain(attn, part, text, None, temb) - base[r.cond])
        out[r.cond] = acc
        return out


def _masks_at(masks: torch.Tensor, tokens: int) -> torch.Tensor:
    """``(B, R, h, w)`` masks -> ``(B, R, tokens)`` at the layer whose feature map has ``tokens`` cells."""
    h, w = masks.shape[-2:]
    for s in range(8):
        f = 2 ** s
        hh, ww = math.ceil(h / f), math.ceil(w / f)
        if hh * ww == tokens:
            small = masks if f == 1 else F.adaptive_avg_pool2d(masks, (hh, ww))
            return small.flatten(2)
    raise ValueError(f"no feature map of {tokens} tokens under a {h}x{w} latent")


@contextlib.contextmanager
def processors(*nets, group: int = 1, regions: Regions | None = None) -> Iterator[None]:
    """Joint self-attention (``group``) and regional cross-attention (``regions``) on ``nets``
    (a UNet, a ControlNet; ``None`` entries skipped) inside the block; the old processors after."""
    nets = [n for n in nets if n is not None]
    saved = [dict(n.attn_processors) for n in nets]
    joint, regional = JointAttnProcessor(group), RegionalAttnProcessor(regions)
    try:
        for n in nets:
            n.set_attn_processor({k: (regional if k.endswith("attn2.processor") else joint)
                                  for k in n.attn_processors})
        yield
    finally:
        for n, old in zip(nets, saved):
            n.set_attn_processor(old)
