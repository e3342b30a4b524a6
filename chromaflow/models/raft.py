"""RAFT optical flow (Teed & Deng, ECCV 2020) in plain PyTorch, inference only.

Module and parameter names follow the official implementation
(https://github.com/princeton-vl/RAFT, ``core/``), so the official checkpoints
``raft-things.pth``, ``raft-sintel.pth``, ``raft-kitti.pth`` and ``raft-small.pth``
load with ``load_state_dict(strict=True)`` once their ``module.`` prefix (from
``nn.DataParallel``) is removed (see :func:`strip_module_prefix`).

Differences from the official code, none of which change results on inputs the
official code accepts:

* only the test-mode path: :meth:`RAFT.forward` returns the final upsampled flow;
  no dropout, mixed precision, ``flow_init`` or alternate (CUDA) correlation;
* the correlation pyramid also works when a level would be narrower than two
  cells (tiny inputs), where the official code fails or divides by zero.

The networks know nothing of files; :func:`load_raft` reads a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RAFT",
    "BasicEncoder",
    "SmallEncoder",
    "BasicUpdateBlock",
    "SmallUpdateBlock",
    "CorrBlock",
    "load_raft",
    "strip_module_prefix",
    "is_small_state_dict",
]


# --------------------------------------------------------------------- utils


def coords_grid(batch: int, ht: int, wd: int, device: torch.device | str) -> torch.Tensor:
    """``(batch, 2, ht, wd)`` pixel coordinates, channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(
        torch.arange(ht, device=device), torch.arange(wd, device=device), indexing="ij"
    )
    coords = torch.stack((xs, ys), dim=0).float()
    return coords[None].repeat(batch, 1, 1, 1)


def bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (N, C, H, W) at pixel coordinates ``coords`` (N, h, w, 2 = x, y).

    Zero outside the image, as the official ``grid_sample(align_corners=True)``.
    A dimension of size 1 is zero-padded to 2 first (same values, avoids a
    division by zero in the normalisation).
    """
    H, W = img.shape[-2:]
    if H < 2 or W < 2:
        img = F.pad(img, (0, max(0, 2 - W), 0, max(0, 2 - H)))
        H, W = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    xgrid = 2 * xgrid / (W - 1) - 1
    ygrid = 2 * ygrid / (H - 1) - 1
    grid = torch.cat([xgrid, ygrid], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


def upflow8(flow: torch.Tensor) -> torch.Tensor:
    """Bilinear 8x upsampling of a flow field (values multiplied by 8)."""
    new_size = (8 * flow.shape[2], 8 * flow.shape[3])
    return 8 * F.interpolate(flow, size=new_size, mode="bilinear", align_corners=True)


# --------------------------------------------------------------- correlation


class CorrBlock:
    """All-pairs correlation volume with an average-pooled pyramid and local lookup."""

    def __init__(
        self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4
    ) -> None:
        self.num_levels = num_levels
        self.radius = radius
        self.corr_pyramid: list[torch.Tensor] = []
        corr = CorrBlock.corr(fmap1, fmap2)
        batch, h1, w1, dim, h2, w2 = corr.shape
        corr = corr.reshape(batch * h1 * w1, dim, h2, w2)
        self.corr_pyramid.append(corr)
        for _ in range(self.num_levels - 1):
            kh, kw = min(2, corr.shape[-2]), min(2, corr.shape[-1])
            corr = F.avg_pool2d(corr, (kh, kw), stride=(kh, kw))
            self.corr_pyramid.append(corr)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        d = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)
        # Official ordering: torch.stack(torch.meshgrid(dy, dx), -1), i.e. the first
        # window axis offsets x.  The trained weights depend on this layout.
        delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1)
        delta_lvl = delta.view(1, 2 * r + 1, 2 * r + 1, 2)
        out_pyramid = []
        for i in range(self.num_levels):
            corr = self.corr_pyramid[i]
            centroid_lvl = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            coords_lvl = centroid_lvl + delta_lvl
            corr = bilinear_sampler(corr, coords_lvl)
            out_pyramid.append(corr.view(batch, h1, w1, -1))
        out = torch.cat(out_pyramid, dim=-1)
        return out.permute(0, 3, 1, 2).contiguous().float()

    @staticmethod
    def corr(fmap1: torch.Tensor, fmap2: torch.Tensor) -> torch.Tensor:
        batch, dim, ht, wd = fmap1.shape
        fmap1 = fmap1.view(batch, dim, ht * wd)
        fmap2 = fmap2.view(batch, dim, ht * wd)
        corr = torch.matmul(fmap1.transpose(1, 2), fmap2)
        corr = corr.view(batch, ht, wd, 1, ht, wd)
        return corr / torch.sqrt(torch.tensor(dim).float())


# ------------------------------------------------------------------ encoders


def _norm(norm_fn: str, planes: int, num_groups: int) -> nn.Module:
    if norm_fn == "group":
        return nn.GroupNorm(num_groups=num_groups, num_channels=planes)
    if norm_fn == "batch":
        return nn.BatchNorm2d(planes)
    if norm_fn == "instance":
        return nn.InstanceNorm2d(planes)
    if norm_fn == "none":
        return nn.Sequential()
    raise ValueError(f"unknown norm_fn {norm_fn!r}")


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm_fn: str = "group", stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        num_groups = planes // 8
        self.norm1 = _norm(norm_fn, planes, num_groups)
        self.norm2 = _norm(norm_fn, planes, num_groups)
        if stride == 1:
            self.downsample = None
        else:
            self.norm3 = _norm(norm_fn, planes, num_groups)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm3
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BottleneckBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm_fn: str = "group", stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes // 4, kernel_size=1, padding=0)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        num_groups = planes // 8
        self.norm1 = _norm(norm_fn, planes // 4, num_groups)
        self.norm2 = _norm(norm_fn, planes // 4, num_groups)
        self.norm3 = _norm(norm_fn, planes, num_groups)
        if stride == 1:
            self.downsample = None
        else:
            self.norm4 = _norm(norm_fn, planes, num_groups)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm4
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class _Encoder(nn.Module):
    block: type[nn.Module]
    widths: tuple[int, int, int, int]  # stem, layer1, layer2, layer3

    def __init__(self, output_dim: int = 128, norm_fn: str = "batch") -> None:
        super().__init__()
        self.norm_fn = norm_fn
        stem = self.widths[0]
        self.norm1 = _norm(norm_fn, stem, 8)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.in_planes = stem
        self.layer1 = self._make_layer(self.widths[1], stride=1)
        self.layer2 = self._make_layer(self.widths[2], stride=2)
        self.layer3 = self._make_layer(self.widths[3], stride=2)
        self.conv2 = nn.Conv2d(self.widths[3], output_dim, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    nn.init.constant_(m.weight, 1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def _make_layer(self, dim: int, stride: int = 1) -> nn.Sequential:
        layer1 = self.block(self.in_planes, dim, self.norm_fn, stride=stride)
        layer2 = self.block(dim, dim, self.norm_fn, stride=1)
        self.in_planes = dim
        return nn.Sequential(layer1, layer2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.conv2(x)


class BasicEncoder(_Encoder):
    """Full-size feature/context encoder (residual blocks, 1/8 resolution)."""

    block = ResidualBlock
    widths = (64, 64, 96, 128)


class SmallEncoder(_Encoder):
    """RAFT-small encoder (bottleneck blocks, 1/8 resolution)."""

    block = BottleneckBlock
    widths = (32, 32, 64, 96)


# -------------------------------------------------------------- update block


class FlowHead(nn.Module):
    def __init__(self, input_dim: int = 128, hidden_dim: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class ConvGRU(nn.Module):
    def __init__(self, hidden_dim: int = 128, input_dim: int = 192 + 128) -> None:
        super().__init__()
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SepConvGRU(nn.Module):
    def __init__(self, hidden_dim: int = 128, input_dim: int = 192 + 128) -> None:
        super().__init__()
        c = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # horizontal
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz1(hx))
        r = torch.sigmoid(self.convr1(hx))
        q = torch.tanh(self.convq1(torch.cat([r * h, x], dim=1)))
        h = (1 - z) * h + z * q
        # vertical
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz2(hx))
        r = torch.sigmoid(self.convr2(hx))
        q = torch.tanh(self.convq2(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SmallMotionEncoder(nn.Module):
    def __init__(self, corr_levels: int = 4, corr_radius: int = 3) -> None:
        super().__init__()
        cor_planes = corr_levels * (2 * corr_radius + 1) ** 2
        self.convc1 = nn.Conv2d(cor_planes, 96, 1, padding=0)
        self.convf1 = nn.Conv2d(2, 64, 7, padding=3)
        self.convf2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv = nn.Conv2d(128, 80, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc1(corr))
        flo = F.relu(self.convf1(flow))
        flo = F.relu(self.convf2(flo))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class BasicMotionEncoder(nn.Module):
    def __init__(self, corr_levels: int = 4, corr_radius: int = 4) -> None:
        super().__init__()
        cor_planes = corr_levels * (2 * corr_radius + 1) ** 2
        self.convc1 = nn.Conv2d(cor_planes, 256, 1, padding=0)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc1(corr))
        cor = F.relu(self.convc2(cor))
        flo = F.relu(self.convf1(flow))
        flo = F.relu(self.convf2(flo))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class SmallUpdateBlock(nn.Module):
    def __init__(self, corr_levels: int = 4, corr_radius: int = 3, hidden_dim: int = 96) -> None:
        super().__init__()
        self.encoder = SmallMotionEncoder(corr_levels, corr_radius)
        self.gru = ConvGRU(hidden_dim=hidden_dim, input_dim=82 + 64)
        self.flow_head = FlowHead(hidden_dim, hidden_dim=128)

    def forward(self, net, inp, corr, flow):
        motion_features = self.encoder(flow, corr)
        inp = torch.cat([inp, motion_features], dim=1)
        net = self.gru(net, inp)
        delta_flow = self.flow_head(net)
        return net, None, delta_flow


class BasicUpdateBlock(nn.Module):
    def __init__(self, corr_levels: int = 4, corr_radius: int = 4, hidden_dim: int = 128) -> None:
        super().__init__()
        self.encoder = BasicMotionEncoder(corr_levels, corr_radius)
        self.gru = SepConvGRU(hidden_dim=hidden_dim, input_dim=128 + hidden_dim)
        self.flow_head = FlowHead(hidden_dim, hidden_dim=256)
        self.mask = nn.Sequential(
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 64 * 9, 1, padding=0),
        )

    def forward(self, net, inp, corr, flow):
        motion_features = self.encoder(flow, corr)
        inp = torch.cat([inp, motion_features], dim=1)
        net = self.gru(net, inp)
        delta_flow = self.flow_head(net)
        mask = 0.25 * self.mask(net)  # scale as in the official code
        return net, mask, delta_flow


# ---------------------------------------------------------------------- RAFT


class RAFT(nn.Module):
    """RAFT optical flow network (test mode only).

    Args:
        small: build RAFT-small (hidden/context 96/64, correlation radius 3,
            bilinear 8x upsampling) instead of the full model (128/128,
            radius 4, learned convex upsampling).

    ``forward(image1, image2, iters)`` takes ``(N, 3, H, W)`` float images in
    ``[0, 255]`` with ``H`` and ``W`` multiples of 8 and returns the flow from
    ``image1`` to ``image2``, ``(N, 2, H, W)`` in pixels (``image1(x) ~
    image2(x + flow(x))``).
    """

    def __init__(self, small: bool = False) -> None:
        super().__init__()
        self.small = bool(small)
        self.corr_levels = 4
        if self.small:
            self.hidden_dim = hdim = 96
            self.context_dim = cdim = 64
            self.corr_radius = 3
            self.fnet = SmallEncoder(output_dim=128, norm_fn="instance")
            self.cnet = SmallEncoder(output_dim=hdim + cdim, norm_fn="none")
            self.update_block = SmallUpdateBlock(self.corr_levels, self.corr_radius, hdim)
        else:
            self.hidden_dim = hdim = 128
            self.context_dim = cdim = 128
            self.corr_radius = 4
            self.fnet = BasicEncoder(output_dim=256, norm_fn="instance")
            self.cnet = BasicEncoder(output_dim=hdim + cdim, norm_fn="batch")
            self.update_block = BasicUpdateBlock(self.corr_levels, self.corr_radius, hdim)

    @staticmethod
    def initialize_flow(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = img.shape
        coords0 = coords_grid(n, h // 8, w // 8, device=img.device)
        coords1 = coords_grid(n, h // 8, w // 8, device=img.device)
        return coords0, coords1

    @staticmethod
    def upsample_flow(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Upsample ``(N, 2, H/8, W/8)`` flow to ``(N, 2, H, W)`` by convex combination."""
        n, _, h, w = flow.shape
        mask = mask.view(n, 1, 9, 8, 8, h, w)
        mask = torch.softmax(mask, dim=2)
        up_flow = F.unfold(8 * flow, [3, 3], padding=1)
        up_flow = up_flow.view(n, 2, 9, 1, 1, h, w)
        up_flow = torch.sum(mask * up_flow, dim=2)
        up_flow = up_flow.permute(0, 1, 4, 2, 5, 3)
        return up_flow.reshape(n, 2, 8 * h, 8 * w)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12) -> torch.Tensor:
        if image1.shape != image2.shape or image1.ndim != 4 or image1.shape[1] != 3:
            raise ValueError("image1 and image2 must both be (N, 3, H, W)")
        if image1.shape[-2] % 8 or image1.shape[-1] % 8:
            raise ValueError("image height and width must be multiples of 8")
        if int(iters) < 1:
            raise ValueError("iters must be at least 1")
        image1 = (2 * (image1 / 255.0) - 1.0).contiguous()
        image2 = (2 * (image2 / 255.0) - 1.0).contiguous()
        hdim, cdim = self.hidden_dim, self.context_dim

        # The official code runs fnet on the two images concatenated along the
        # batch; fnet uses instance norm, so per-sample results are identical.
        fmap1, fmap2 = torch.split(
            self.fnet(torch.cat([image1, image2], dim=0)), image1.shape[0], dim=0
        )
        corr_fn = CorrBlock(
            fmap1.float(), fmap2.float(), num_levels=self.corr_levels, radius=self.corr_radius
        )

        cnet = self.cnet(image1)
        net, inp = torch.split(cnet, [hdim, cdim], dim=1)
        net = torch.tanh(net)
        inp = torch.relu(inp)

        coords0, coords1 = self.initialize_flow(image1)
        up_mask = None
        for _ in range(int(iters)):
            coords1 = coords1.detach()
            corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, up_mask, delta_flow = self.update_block(net, inp, corr, flow)
            coords1 = coords1 + delta_flow
        # Only the last iteration's upsampling is needed in test mode.
        if up_mask is None:
            return upflow8(coords1 - coords0)
        return self.upsample_flow(coords1 - coords0, up_mask)


# ------------------------------------------------------------------- loading


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    return {
        (k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()
    }


def is_small_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when a (prefix-stripped) state dict is RAFT-small's."""
    w = state_dict.get("fnet.conv1.weight")
    if w is None:
        raise ValueError("not a RAFT state dict (no 'fnet.conv1.weight')")
    return int(w.shape[0]) == 32


def load_raft(
    path: str | Path, small: bool | None = None, device: str | torch.device = "cpu"
) -> RAFT:
    """Build a :class:`RAFT` in eval mode from a local checkpoint file.

    Accepts plain state dicts with or without the ``module.`` prefix (the
    official ``raft-*.pth`` files), or a dict holding one under ``"state_dict"``
    or ``"model"``.  ``small=None`` detects the variant from the weights.
    Raises ``ValueError`` with a one-line message when the file is missing or
    not a matching RAFT checkpoint.  Never downloads anything.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"RAFT checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised as a one-line ValueError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read RAFT checkpoint {p}: {msg}") from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"not a RAFT state dict: {p}")
    sd = strip_module_prefix(obj)
    detected = is_small_state_dict(sd)
    if small is None:
        small = detected
    model = RAFT(small=bool(small))
    # Tolerate checkpoints saved without BatchNorm's ``num_batches_tracked``
    # (unused in eval mode); every other key must match exactly.
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        variant = "RAFT-small" if small else "RAFT"
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{p} does not match {variant}: {first}") from e
    return model.to(device).eval()
