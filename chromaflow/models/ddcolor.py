"""DDColor (Kang et al., ICCV 2023): a ConvNeXt encoder, a pixel decoder and a query-based color decoder.

Inference only, in plain PyTorch.  Module and parameter names follow the
official implementation (https://github.com/piddnad/DDColor,
``basicsr/archs/ddcolor_arch.py`` and its ``ddcolor_arch_utils``), so the
official files (``ddcolor_modelscope.pth``, ``ddcolor_artistic.pth``,
``ddcolor_paper.pth``, ``ddcolor_paper_tiny.pth``) load with
``load_state_dict(strict=True)``; the variant (ConvNeXt-T or -L, the number of
color queries and decoder layers) is read from the file
(:func:`ddcolor_config`).  Only the ``MultiScaleColorDecoder`` the published
weights use is implemented.

Differences from the official code, none of which change the output: the
encoder returns its four normalised feature maps instead of exposing them
through forward hooks, and the classification head's unused final norm is
kept only as parameters.

Input and output (as the official pipeline): ``(N, 3, H, W)`` RGB in ``[0, 1]``
made from the gray image's Lab lightness (``Lab(L, 0, 0)`` converted to RGB),
``H`` and ``W`` multiples of 32 (the official pipeline uses 512 x 512); output
``(N, 2, H, W)`` Lab ab in OpenCV's float convention (about ``[-128, 127]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DDColorConfig", "DDColorNet", "ddcolor_config"]

_ENCODERS = {
    "convnext-t": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnext-s": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnext-b": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnext-l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}


@dataclass(frozen=True)
class DDColorConfig:
    """The hyper-parameters a DDColor file fixes.

    Attributes:
        encoder: ``convnext-t`` (DDColor-tiny) or ``convnext-l`` (the large models); ``-s``/``-b`` also load.
        num_queries: color queries (100 in every published file).
        dec_layers: transformer decoder layers (9).
        num_scales: feature scales the decoder attends to (3).
        nf: pixel-decoder width (512).
        num_output_channels: 2 (ab).
    """

    encoder: str = "convnext-l"
    num_queries: int = 100
    dec_layers: int = 9
    num_scales: int = 3
    nf: int = 512
    num_output_channels: int = 2


# --------------------------------------------------------------- ConvNeXt


class LayerNorm(nn.Module):
    """LayerNorm over channels for ``channels_last`` (N, H, W, C) or ``channels_first`` (N, C, H, W) tensors."""

    def __init__(self, channels: int, eps: float = 1e-6, data_format: str = "channels_last") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.channels_first = data_format == "channels_first"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_first:
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, MLP (4x), layer scale ``gamma``, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt feature extractor with a LayerNorm (``norm0`` .. ``norm3``) on each stage's output."""

    def __init__(self, depths: tuple[int, ...], dims: tuple[int, ...]) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm(dims[0], data_format="channels_first"))
        ])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i], data_format="channels_first"), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList([nn.Sequential(*[Block(dims[i]) for _ in range(depths[i])]) for i in range(4)])
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm(dims[i], data_format="channels_first"))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)  # the classifier's final norm: in the files, unused here

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            feats.append(getattr(self, f"norm{i}")(x))
        return feats


class Encoder(nn.Module):
    """Holds the ConvNeXt under ``arch`` (the official key prefix ``encoder.arch.``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        depths, dims = _ENCODERS[name]
        self.arch = ConvNeXt(depths, dims)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.arch(x)


# ----------------------------------------------------------- pixel decoder


def _conv(ni: int, nf: int, ks: int, *, activ: bool, bn: bool) -> nn.Sequential:
    """Spectral-normalised conv (bias only without batch norm), then ReLU and BatchNorm as asked."""
    conv = nn.utils.spectral_norm(nn.Conv2d(ni, nf, kernel_size=ks, padding=(ks - 1) // 2, bias=not bn))
    layers: list[nn.Module] = [conv]
    if activ:
        layers.append(nn.ReLU(True))
    if bn:
        layers.append(nn.BatchNorm2d(nf))
    return nn.Sequential(*layers)


class CustomPixelShuffle_ICNR(nn.Module):  # noqa: N801 - the official class name
    """1x1 conv to ``nf * scale**2`` channels, ReLU, pixel shuffle, then a 2x2 blur (replication padded)."""

    def __init__(self, ni: int, nf: int, scale: int = 2, extra_bn: bool = False) -> None:
        super().__init__()
        self.conv = _conv(ni, nf * scale**2, 1, activ=False, bn=extra_bn)
        self.shuf = nn.PixelShuffle(scale)
        self.pad = nn.ReplicationPad2d((1, 0, 1, 0))
        self.blur = nn.AvgPool2d(2, stride=1)
        self.relu = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(self.pad(self.shuf(self.relu(self.conv(x)))))


class UnetBlockWide(nn.Module):
    """Upsample ``up_in``, concatenate with the batch-normed skip feature, 3x3 conv."""

    def __init__(self, up_in_c: int, x_in_c: int, n_out: int) -> None:
        super().__init__()
        self.shuf = CustomPixelShuffle_ICNR(up_in_c, n_out, extra_bn=True)
        self.bn = nn.BatchNorm2d(x_in_c)
        self.conv = _conv(n_out + x_in_c, n_out, 3, activ=True, bn=True)
        self.relu = nn.ReLU()

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.conv(self.relu(torch.cat([up, self.bn(skip)], dim=1)))


# ----------------------------------------------------------- color decoder


def _sine_position(x: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised sine position embedding of a ``(N, C, H, W)`` map: ``(N, 2 * num_feats, H, W)``."""
    n, _, h, w = x.shape
    scale = 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)[None, :, None].expand(n, h, w)
    xx = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)[None, None, :].expand(n, h, w)
    y = y / (h + 1e-6) * scale
    xx = xx / (w + 1e-6) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    px = xx[..., None] / dim_t
    py = y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention over the queries (positions added to queries and keys)."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, q, value=tgt)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention from the queries to one scale of image features."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        out = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory)[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    """Post-norm feed-forward layer (ReLU)."""

    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """Linear layers with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MultiScaleColorDecoder(nn.Module):
    """Color queries refined by cross-attention to three scales of the pixel decoder, round robin."""

    def __init__(self, in_channels: tuple[int, ...], num_queries: int, num_scales: int, dec_layers: int,
                 hidden_dim: int = 256, nheads: int = 8, dim_feedforward: int = 2048,
                 color_embed_dim: int = 256) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_scales, hidden_dim)
        self.input_proj = nn.ModuleList(nn.Conv2d(c, hidden_dim, kernel_size=1) for c in in_channels[:num_scales])
        self.color_embed = MLP(hidden_dim, hidden_dim, color_embed_dim, 3)

    def forward(self, feats: list[torch.Tensor], img_features: torch.Tensor) -> torch.Tensor:
        src, pos = [], []
        for i, f in enumerate(feats):
            pos.append(_sine_position(f, self.hidden_dim // 2).flatten(2).permute(2, 0, 1))
            src.append((self.input_proj[i](f).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        bs = src[0].shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
        out = self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)
        for i in range(len(self.transformer_self_attention_layers)):
            level = i % len(feats)
            out = self.transformer_cross_attention_layers[i](out, src[level], pos[level], query_pos)
            out = self.transformer_self_attention_layers[i](out, query_pos)
            out = self.transformer_ffn_layers[i](out)
        color_embed = self.color_embed(self.decoder_norm(out).transpose(0, 1))  # (N, Q, C)
        return torch.einsum("bqc,bchw->bqhw", color_embed, img_features)


class Decoder(nn.Module):
    """The pixel decoder (three U-Net blocks and a 4x pixel shuffle) plus the color decoder."""

    def __init__(self, dims: tuple[int, ...], config: DDColorConfig) -> None:
        super().__init__()
        nf = config.nf
        widths = (nf, nf, nf // 2)
        blocks, in_c = [], dims[3]
        for skip_c, out_c in zip((dims[2], dims[1], dims[0]), widths):
            blocks.append(UnetBlockWide(in_c, skip_c, out_c))
            in_c = out_c
        self.layers = nn.Sequential(*blocks)
        self.last_shuf = CustomPixelShuffle_ICNR(nf // 2, nf // 2, scale=4)
        self.color_decoder = MultiScaleColorDecoder(widths, config.num_queries, config.num_scales, config.dec_layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out0 = self.layers[0](feats[3], feats[2])
        out1 = self.layers[1](out0, feats[1])
        out2 = self.layers[2](out1, feats[0])
        out3 = self.last_shuf(out2)
        return self.color_decoder([out0, out1, out2], out3)


class DDColorNet(nn.Module):
    """DDColor: ``(N, 3, H, W)`` gray-as-RGB in ``[0, 1]`` -> ``(N, 2, H, W)`` Lab ab (see the module doc).

    Args:
        config: the variant (:func:`ddcolor_config` reads it from a file).
    """

    def __init__(self, config: DDColorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DDColorConfig()
        if config.encoder not in _ENCODERS:
            raise ValueError(f"unknown DDColor encoder {config.encoder!r}")
        self.encoder = Encoder(config.encoder)
        self.decoder = Decoder(self.encoder.dims, config)
        self.refine_net = nn.Sequential(_conv(config.num_queries + 3, config.num_output_channels, 1, activ=False, bn=False))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        out = self.decoder(self.encoder(x))
        return self.refine_net(torch.cat([out, x], dim=1))


#: keys of the official files the official network does not have (a commented-out classifier head)
IGNORED_KEYS = ("encoder.arch.head_cls.weight", "encoder.arch.head_cls.bias")


def ddcolor_config(state_dict: Mapping[str, torch.Tensor]) -> DDColorConfig:
    """The :class:`DDColorConfig` of an official DDColor state dict.

    Raises:
        ValueError: not a DDColor (MultiScaleColorDecoder, spectral last norm) state dict.
    """
    need = ("refine_net.0.0.weight_orig", "decoder.color_decoder.query_feat.weight",
            "decoder.last_shuf.conv.0.weight_orig", "encoder.arch.stages.0.0.norm.weight")
    absent = [k for k in need if k not in state_dict]
    if absent:
        raise ValueError(f"not a DDColor state dict (no {absent[0]})")
    depths = []
    for stage in range(4):
        prefix = f"encoder.arch.stages.{stage}."
        depths.append(1 + max(int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)))
    dims = tuple(int(state_dict[f"encoder.arch.stages.{i}.0.norm.weight"].shape[0]) for i in range(4))
    encoder = next((name for name, (d, w) in _ENCODERS.items() if tuple(depths) == d and dims == w), None)
    if encoder is None:
        raise ValueError(f"unknown DDColor encoder (depths {depths}, widths {list(dims)})")
    refine = state_dict["refine_net.0.0.weight_orig"]
    layers = 1 + max(int(k.split(".")[3]) for k in state_dict
                     if k.startswith("decoder.color_decoder.transformer_self_attention_layers."))
    return DDColorConfig(
        encoder=encoder,
        num_queries=int(refine.shape[1]) - 3,
        dec_layers=layers,
        num_scales=int(state_dict["decoder.color_decoder.level_embed.weight"].shape[0]),
        nf=int(state_dict["decoder.last_shuf.conv.0.weight_orig"].shape[0]) // 8,
        num_output_channels=int(refine.shape[0]),
    )
